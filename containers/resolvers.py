"""Which DNS resolvers the Docker backend's proxy asks, and whether they answer (issue 19).

The proxy container asks exactly the resolvers it is given, and its egress rules let port 53
reach exactly those (before any private-range refusal): the host's, from its resolv.conf, or
`--dns-servers`. A cloud VPC resolver is private or link-local (10.0.0.2, 168.63.129.16,
169.254.169.253), and that is fine. A loopback resolver on the host (systemd-resolved's stub
127.0.0.53) is out of the container's reach: like Docker, awf then takes the upstream servers
systemd-resolved lists in /run/systemd/resolve/resolv.conf.

`host_resolvers` is pure; `read_host_resolvers` reads the two files; `probe` asks each resolver
one query from where it runs (the proxy container, after its rules are applied), so a resolver
that cannot be reached stops the run before the command starts, not 5 s into each request.
"""

from __future__ import annotations

import contextlib
import secrets
import select
import socket
import struct
import time
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

from containers.errors import DockerError
from proxy.errors import ConfigError

IPAddress = IPv4Address | IPv6Address

RESOLV_CONF = Path("/etc/resolv.conf")
SYSTEMD_RESOLV_CONF = Path("/run/systemd/resolve/resolv.conf")
FIX = "pass --dns-servers with resolvers the host can reach"


def nameservers(text: str) -> tuple[IPAddress, ...]:
    """The `nameserver` addresses of a resolv.conf, in order, without duplicates (a zone id,
    as in fe80::1%eth0, is dropped: the container has its own interfaces)."""
    found: list[IPAddress] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) >= 2 and words[0] == "nameserver":
            with contextlib.suppress(ValueError):
                ip = ip_address(words[1].split("%", 1)[0])
                if ip not in found:
                    found.append(ip)
    return tuple(found)


def host_resolvers(resolv_conf: str, systemd_resolv_conf: str | None = None
                   ) -> tuple[IPAddress, ...]:
    """The resolvers the proxy container should ask for this host's resolv.conf text.

    Loopback entries (a local stub) are replaced by systemd-resolved's upstream list when there
    is one; DockerError if nothing reachable from a container is left."""
    listed = nameservers(resolv_conf)
    if not listed:
        raise DockerError(f"the host's {RESOLV_CONF} lists no nameserver; {FIX}")
    usable = [ip for ip in listed if not ip.is_loopback]
    if len(usable) < len(listed) and systemd_resolv_conf is not None:
        usable += [ip for ip in nameservers(systemd_resolv_conf)
                   if not ip.is_loopback and ip not in usable]
    if not usable:
        local = ", ".join(str(ip) for ip in listed)
        raise DockerError(f"the host's resolver {local} is on its loopback, out of the proxy "
                          f"container's reach, and no upstream is listed in "
                          f"{SYSTEMD_RESOLV_CONF}; {FIX}")
    return tuple(usable)


def read_host_resolvers(resolv_conf: Path = RESOLV_CONF,
                        systemd_resolv_conf: Path = SYSTEMD_RESOLV_CONF
                        ) -> tuple[IPAddress, ...]:
    try:
        text = resolv_conf.read_text()
    except OSError as exc:
        raise DockerError(f"cannot read the host's {resolv_conf} ({exc.strerror}); "
                          f"{FIX}") from exc
    systemd: str | None = None
    with contextlib.suppress(OSError):
        systemd = systemd_resolv_conf.read_text()
    return host_resolvers(text, systemd)


# --- the probe: one query to each resolver, from where the proxy runs --------------------------


def _query(qid: int) -> bytes:
    """A standard query for the root's NS records: any resolver answers it (even REFUSED is
    an answer: the resolver is reachable)."""
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    return header + b"\x00" + struct.pack("!HH", 2, 1)


def probe(servers: Iterable[tuple[IPAddress, int]], *, timeout: float = 3.0,
          tries: int = 3) -> tuple[tuple[IPAddress, int], ...]:
    """The servers that gave no answer over UDP within `timeout` (asked `tries` times each)."""
    pending: dict[socket.socket, tuple[tuple[IPAddress, int], bytes]] = {}
    try:
        for ip, port in servers:
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            qid = secrets.randbelow(1 << 16)
            pending[sock] = ((ip, port), _query(qid))
            with contextlib.suppress(OSError):
                sock.connect((str(ip), port))
        deadline = time.monotonic() + timeout
        resend_every = timeout / tries
        next_send = 0.0
        answered: set[socket.socket] = set()
        while len(answered) < len(pending):
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_send:
                for sock, (_server, query) in pending.items():
                    if sock not in answered:
                        with contextlib.suppress(OSError):
                            sock.send(query)
                next_send = now + resend_every
            waiting = [s for s in pending if s not in answered]
            ready, _, _ = select.select(waiting, [], [], max(0.0, min(next_send, deadline) - now))
            for sock in ready:
                try:
                    data = sock.recv(4096)
                except OSError:
                    continue  # ICMP unreachable: no answer; keep asking until the deadline
                if len(data) >= 12 and data[:2] == pending[sock][1][:2]:
                    answered.add(sock)
        return tuple(server for sock, (server, _q) in pending.items() if sock not in answered)
    finally:
        for sock in pending:
            sock.close()


def dead_resolvers_message(dead: Sequence[tuple[IPAddress, int]],
                           where: str = "the proxy container") -> str:
    names = ", ".join(f"{ip}" if port == 53 else f"{ip}:{port}" for ip, port in dead)
    which = "resolver" if len(dead) == 1 else "resolvers"
    return (f"the DNS {which} {names} did not answer from {where}; {FIX} "
            f"(the host's are read from {RESOLV_CONF})")




DOCKER_DNS = "127.0.0.11"  # Docker's embedded resolver, on a container's own loopback


def for_proxy(given: Sequence[tuple[str, int]] | None, *, ipv6_egress: bool = False,
              host: tuple[IPAddress, ...] | None = None
              ) -> tuple[tuple[IPAddress, ...], tuple[str, ...]]:
    """The proxy container's resolvers and the awf-proxy flags that name them.

    `given` is `--dns-servers` (port 53 only: the egress rules open that port alone); without
    it, the host's (`host`, else read now), IPv6 ones only when the proxy has IPv6 egress.
    DockerError (exit 125) when the host has none the container can reach."""
    if given:
        servers: list[IPAddress] = []
        for name, port in given:
            ip = ip_address(name.strip("[]"))
            if port != 53:
                raise ConfigError(f"--dns-servers {name}:{port}: the Docker backend's proxy "
                                  "reaches resolvers on port 53 only")
            servers.append(ip)
        return tuple(servers), ()
    found = host if host is not None else read_host_resolvers()
    usable = found if ipv6_egress else tuple(ip for ip in found if ip.version == 4)
    if not usable:
        raise DockerError(f"the host's resolvers ({', '.join(map(str, found))}) are IPv6 and "
                          f"the proxy has no IPv6 egress; {FIX}")
    return usable, ("--dns-servers", ",".join(str(ip) for ip in usable))


def probe_entries(servers: Iterable[IPAddress]) -> list[str]:
    """The spec's "dns_probe": IP:53 or [IPv6]:53."""
    return [f"{ip}:53" if ip.version == 4 else f"[{ip}]:53" for ip in servers]




# --- the hosts file (issue 19, item 3) ---------------------------------------------------------

HOST_HOSTS = Path("/etc/hosts")
PROXY_HOSTS = "/run/awf-hosts"  # where the proxy container sees the host's hosts file


def hosts_file_for_proxy(given: Path | None, *, named: bool
                         ) -> tuple[str | None, tuple[str, ...]]:
    """The host file to mount read-only into the proxy container and awf-proxy's flags.

    The host's /etc/hosts (or the file `--hosts-file` names: `named`), not the container's own:
    a name the host lists resolves for the agent as on the host, with the usual address checks.
    `given` None (`--hosts-file ''`) is none at all. A missing default is none too; a missing
    named file is a ConfigError (exit 2)."""
    if given is None:
        return None, ("--hosts-file", "")
    path = given if given.is_absolute() else Path.cwd() / given
    if not path.is_file():
        if named:
            raise ConfigError(f"--hosts-file: no file {str(given)!r}; pass --hosts-file '' to "
                              "use none")
        return None, ("--hosts-file", "")
    return str(path.resolve()), ("--hosts-file", PROXY_HOSTS)


__all__ = ["dead_resolvers_message", "for_proxy", "host_resolvers", "hosts_file_for_proxy",
           "nameservers", "probe", "probe_entries", "read_host_resolvers"]
