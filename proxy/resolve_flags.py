"""The resolver flags, `--resolve NAME=IP` and `--dns-servers LIST`, parsed without DNS code.

Kept apart from `proxy.resolver` so that validating a configuration (awf, awf-proxy's startup)
does not import dnspython.
"""

from __future__ import annotations

import ipaddress

from proxy.errors import AwfError, ConfigError
from proxy.hostnames import normalise_name

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_resolve(spec: str) -> tuple[str, IPAddress]:
    """Parse one `--resolve NAME=IP` value; the IP may be bracketed (`[::1]`)."""
    name, sep, addr = spec.partition("=")
    if not sep or not name.strip() or not addr.strip():
        raise ConfigError(f"--resolve {spec!r}: expected NAME=IP, such as 'example.test=192.0.2.1'")
    try:
        host = normalise_name(name.strip())
    except (AwfError, ValueError) as exc:
        raise ConfigError(f"--resolve {spec!r}: {name.strip()!r} is not a valid hostname") from exc
    text = addr.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    ip = parse_ip_text(text)
    if ip is None:
        raise ConfigError(f"--resolve {spec!r}: {addr.strip()!r} is not an IPv4 or IPv6 address")
    return host, ip


def parse_dns_servers(spec: str) -> tuple[tuple[str, int], ...]:
    """Parse `--dns-servers`: comma-separated IP, IP:PORT, [IPv6]:PORT or IPv6; port 53 default."""
    servers: list[tuple[str, int]] = []
    for raw in spec.split(","):
        entry = raw.strip()
        server = _parse_server(entry)
        if server is None:
            raise ConfigError(
                f"--dns-servers: {entry!r} is not a server address; "
                "use IP, IP:PORT or [IPv6]:PORT, "
                "such as '1.1.1.1,127.0.0.1:5353,[2606:4700::1111]:53'"
            )
        if server not in servers:
            servers.append(server)
    return tuple(servers)


def parse_ip_text(text: str) -> IPAddress | None:
    # Strict dotted-quad / RFC 4291 forms only; a zone id makes no sense for a server or an answer.
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _parse_port(text: str) -> int | None:
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        return None
    port = int(text)
    return port if 1 <= port <= 65535 else None


def _parse_server(entry: str) -> tuple[str, int] | None:
    host, port = entry, 53
    if entry.startswith("["):
        close = entry.find("]")
        if close < 0:
            return None
        host, rest = entry[1:close], entry[close + 1 :]
        if rest:
            if not rest.startswith(":") or (parsed := _parse_port(rest[1:])) is None:
                return None
            port = parsed
        ip = parse_ip_text(host)
        return (str(ip), port) if isinstance(ip, ipaddress.IPv6Address) else None
    if entry.count(":") == 1:
        host, _, port_text = entry.partition(":")
        if (parsed := _parse_port(port_text)) is None:
            return None
        port = parsed
        ip = parse_ip_text(host)
        return (str(ip), port) if isinstance(ip, ipaddress.IPv4Address) else None
    ip = parse_ip_text(host)
    return (str(ip), port) if ip is not None else None
