"""Where the Docker backend's proxy container reaches `--upstream-proxy`'s parent.

The parent is resolved once, on the host, as the host's own tools would resolve it: the run's
`--resolve` entries for its name first, else the host's resolver (`/etc/hosts`, then DNS). The
proxy container's egress rules then admit exactly those addresses on the parent's port, before
the private-range refusal (a corporate proxy is usually private), and awf-proxy is told the
same addresses with `--resolve NAME=IP`, so it never dials one the rules refuse. A parent on the
host's loopback is out of the container's reach: exit 2 with the fix. IPv6 addresses are kept
only when the proxy has IPv6 egress.

`for_proxy` is pure but for `lookup`, which defaults to `socket.getaddrinfo`.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address

from proxy.errors import ConfigError
from proxy.parent import Parent

IPAddress = IPv4Address | IPv6Address
Lookup = Callable[[str], Sequence[IPAddress]]
FLAG = "--upstream-proxy"


def host_lookup(name: str) -> tuple[IPAddress, ...]:
    """The host's answer for `name` (getaddrinfo: /etc/hosts, then DNS), in its order."""
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{FLAG}: this host cannot resolve the parent proxy's name "
                          f"{name!r} ({why}); give its IP address") from None
    found: list[IPAddress] = []
    for info in infos:
        with contextlib.suppress(ValueError):
            ip = ip_address(str(info[4][0]).split("%", 1)[0])
            if ip not in found:
                found.append(ip)
    return tuple(found)


def for_proxy(parent: Parent, resolve: Sequence[tuple[str, IPAddress]] = (), *,
              ipv6_egress: bool = False, lookup: Lookup = host_lookup
              ) -> tuple[tuple[IPAddress, ...], tuple[str, ...]]:
    """The parent's addresses the proxy container may reach, and the awf-proxy flags that pin
    its name to them. ConfigError (exit 2, the URL's credentials never named) when none is
    usable."""
    shown = parent.shown
    try:
        given: tuple[IPAddress, ...] = (ip_address(parent.host),)
        literal = True
    except ValueError:
        literal = False
        pinned = tuple(ip for name, ip in resolve if name == parent.host)
        given = pinned or tuple(lookup(parent.host))
    if not given:
        raise ConfigError(f"{FLAG}: the parent proxy {shown} has no address here; "
                          "give its IP address")
    local = [ip for ip in given if ip.is_loopback or ip.is_unspecified]
    usable = [ip for ip in given if ip not in local and (ipv6_egress or ip.version == 4)]
    if not usable:
        if local:
            raise ConfigError(
                f"{FLAG}: the parent proxy {shown} is on this host's loopback "
                f"({', '.join(map(str, local))}), out of the Docker proxy container's reach; "
                "have it listen on an address containers reach (e.g. the docker0 gateway "
                "172.17.0.1) and name that, or use --backend netns")
        raise ConfigError(f"{FLAG}: the parent proxy {shown} has only IPv6 addresses "
                          f"({', '.join(map(str, given))}) and the Docker proxy container has "
                          "no IPv6 egress; name an IPv4 address")
    if literal or any(name == parent.host for name, _ in resolve):
        return tuple(usable), ()  # awf-proxy dials the literal, or the run's own --resolve
    flags: list[str] = []
    for ip in usable:
        flags += ["--resolve", f"{parent.host}={ip}"]
    return tuple(usable), tuple(flags)


__all__ = ["for_proxy", "host_lookup"]
