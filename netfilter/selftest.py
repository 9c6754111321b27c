"""The fail-closed self-test (docs/architecture.md §6), run from inside the agent's namespace.

Before the command exists, prove that the proxy answers and that the rules hold: a connection to
the proxy works; TCP to port 22 anywhere is refused at once; UDP to a resolver other than the
proxy fails; HTTP to an arbitrary address on port 80 is intercepted and denied by the
transparent listener; the DNS forwarder answers NXDOMAIN for a name that is not allowed. Any
failure raises SandboxError and the command never runs.

The netns backend runs the checks in a thread that `netfilter.netns.run_in` puts in the agent
namespace, so no process is started for them; the keeper runs them in a child of its own.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from netfilter.errors import SandboxError

PROBE_V4 = "192.0.2.1"  # TEST-NET-1: never a real destination
PROBE_V6 = "2001:db8::1"
NAME = "awf-selftest.invalid"


@dataclass(frozen=True, slots=True)
class Target:
    proxy_v4: IPv4Address
    proxy_v6: IPv6Address | None
    explicit_port: int = 3128
    dns_port: int = 53


def _http(family: int, addr: tuple[str, int], request: bytes) -> bytes:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect(addr)
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


def _status(head: bytes) -> tuple[int, str]:
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ")[1])
    except (IndexError, ValueError):
        return 0, ""
    reason = ""
    for line in lines[1:]:
        if line.lower().startswith("x-awf-reason:"):
            reason = line.split(":", 1)[1].strip()
    return status, reason


def _refused_tcp(family: int, addr: tuple[str, int]) -> None:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        try:
            s.connect(addr)
        except (ConnectionRefusedError, OSError) as exc:
            if isinstance(exc, TimeoutError):
                raise SandboxError(f"TCP to {addr} was not refused at once (it hung)") from exc
            return
        raise SandboxError(f"TCP to {addr[0]}:{addr[1]} got through")


def _dns_query(name: str) -> bytes:
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", 0x4157, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)


def _udp_fails(family: int, addr: tuple[str, int]) -> None:
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(1.5)
        s.connect(addr)
        try:
            s.send(_dns_query("example.com"))
            s.recv(512)
        except OSError:
            return
        raise SandboxError(f"UDP to {addr[0]}:{addr[1]} got an answer")


def _nxdomain(family: int, addr: tuple[str, int]) -> None:
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.connect(addr)
        s.send(_dns_query(NAME))
        try:
            reply = s.recv(4096)
        except OSError as exc:
            raise SandboxError(f"the DNS forwarder at {addr[0]} did not answer: {exc}") from exc
    if len(reply) < 4 or reply[3] & 0x0F != 3:
        raise SandboxError(f"the DNS forwarder did not answer NXDOMAIN for {NAME}")


def checks(target: Target) -> list[tuple[str, Callable[[], None]]]:
    """The list of (description, check) for this target: v4 always, v6 when configured."""
    out: list[tuple[str, Callable[[], None]]] = []
    families: list[tuple[int, str, str]] = [(socket.AF_INET, str(target.proxy_v4), PROBE_V4)]
    if target.proxy_v6 is not None:
        families.append((socket.AF_INET6, str(target.proxy_v6), PROBE_V6))
    for family, proxy, probe in families:

        def health(family: int = family, proxy: str = proxy) -> None:
            # the proxy answers, and keeps /healthz (policy counts) from the sandbox: only
            # loopback clients and --healthz-token holders may read it. Host names NAME: the
            # proxy logs the refusal under it, so the run's summary knows it for the self-test's
            head = _http(family, (proxy, target.explicit_port),
                         f"GET /healthz HTTP/1.1\r\nHost: {NAME}\r\n\r\n".encode())
            if _status(head) != (403, "self_connection"):
                raise SandboxError(f"awf-proxy at {proxy}:{target.explicit_port} did not answer "
                                   f"/healthz with 403 self_connection (got {head[:60]!r})")

        def intercepted(family: int = family, probe: str = probe) -> None:
            head = _http(family, (probe, 80),
                         f"GET / HTTP/1.1\r\nHost: {NAME}\r\n\r\n".encode())
            if _status(head) != (403, "domain_not_allowed"):
                raise SandboxError(f"HTTP to {probe}:80 was not intercepted and denied "
                                   f"(got {head[:60]!r})")

        def connect_denied(family: int = family, proxy: str = proxy) -> None:
            head = _http(family, (proxy, target.explicit_port),
                         f"CONNECT {NAME}:443 HTTP/1.1\r\nHost: {NAME}:443\r\n\r\n".encode())
            if _status(head)[0] != 403:
                raise SandboxError(f"CONNECT {NAME}:443 was not denied by the proxy")

        def ssh_refused(family: int = family, probe: str = probe) -> None:
            _refused_tcp(family, (probe, 22))

        def udp_fails(family: int = family, probe: str = probe) -> None:
            _udp_fails(family, (probe, 53))

        def nxdomain(family: int = family, proxy: str = proxy) -> None:
            _nxdomain(family, (proxy, target.dns_port))

        out += [
            (f"proxy answers on {proxy}", health),
            (f"HTTP to {probe}:80 is intercepted and denied", intercepted),
            (f"CONNECT to a name not allowed is denied ({proxy})", connect_denied),
            (f"TCP to {probe}:22 is refused", ssh_refused),
            (f"UDP to {probe}:53 fails", udp_fails),
            (f"DNS for {NAME} is NXDOMAIN", nxdomain),
        ]
    return out


def run(target: Target) -> None:
    """Every check, from the calling thread's namespace; SandboxError names the first that
    failed."""
    for what, check in checks(target):
        try:
            check()
        except (SandboxError, OSError) as exc:
            raise SandboxError(f"self-test failed: {what}: {exc}") from exc


def run_in_netns(netns_path: str, target: Target, timeout: float = 15.0) -> None:
    """`run` from inside the namespace at `netns_path` (a thread of ours enters it)."""
    from netfilter import netns  # netlink and ctypes: only here (the keeper and awf's Docker
    # backend import this module for `run` and `Target`)
    try:
        netns.run_in(netns_path, lambda: run(target), timeout=timeout, what="self-test")
    except SandboxError:
        raise
    except Exception as exc:
        raise SandboxError(f"self-test failed: {exc!r}") from exc
