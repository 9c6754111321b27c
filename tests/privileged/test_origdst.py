"""original_destination() against real nftables redirects inside throwaway network namespaces.

Two set-ups, both removed afterwards (names start with `awf-test-`):

* one namespace whose `output` nat hook redirects loopback port 9999 to local listeners, so
  client and listener share the namespace (v4, v6, dual-stack listener, uvloop transport);
* the production shape (docs/architecture.md §3.1): a client namespace routes everything over a veth
  pair to a proxy namespace whose `prerouting` hook redirects 192.0.2.1:443 and
  [2001:db8::1]:443 to the listener.

Sockets are created by a short-lived thread that first joins the namespace (setns affects
only the calling thread), so the test process itself never leaves its own namespace.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
import uvloop

from netfilter import netns
from proxy.origdst import original_destination

pytestmark = pytest.mark.privileged

T = TypeVar("T")


def _require_root_and_tools() -> None:
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if os.geteuid() == 0 and not missing:
        return
    why = f"test_origdst needs root and `ip`/`nft` (euid {os.geteuid()}, missing {missing})"
    if os.environ.get("AWF_ALLOW_SKIP") == "1":
        pytest.skip(why)
    pytest.fail(f"{why}; run as root, or set AWF_ALLOW_SKIP=1 to skip", pytrace=False)


def run(*argv: str, stdin: str | None = None) -> None:
    done = subprocess.run(
        argv, input=stdin, text=True, capture_output=True, timeout=20, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)!r} failed: {done.stderr.strip()}")


def in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run fn in a fresh thread that has joined network namespace `name`."""
    return netns.run_in(name, fn, timeout=30, what=f"a probe in {name!r}")


class Netns:
    def __init__(self, suffix: str = "") -> None:
        self.name = f"awf-test-{secrets.token_hex(4)}{suffix}"
        self.table = f"awf_test_{secrets.token_hex(4)}"

    def __enter__(self) -> Netns:
        run("ip", "netns", "add", self.name)
        run("ip", "-n", self.name, "link", "set", "lo", "up")
        return self

    def __exit__(self, *exc: object) -> None:
        run("ip", "netns", "delete", self.name)

    def sh(self, *argv: str, stdin: str | None = None) -> None:
        run("ip", "netns", "exec", self.name, *argv, stdin=stdin)

    def nft(self, chains: str) -> None:
        self.sh("nft", "-f", "-", stdin=f"table inet {self.table} {{\n{chains}\n}}\n")


def listener(family: socket.AddressFamily, port: int, *, v6only: bool = True) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
    sock.bind(("0.0.0.0" if family == socket.AF_INET else "::", port))
    sock.listen(8)
    sock.settimeout(5)
    return sock


def dial_and_accept(
    ns: str, lsock: socket.socket, family: socket.AddressFamily, dest: tuple[str, int]
) -> tuple[str, int]:
    client = in_netns(ns, lambda: socket.socket(family, socket.SOCK_STREAM))
    try:
        client.settimeout(5)
        client.connect(dest)
        conn, _ = lsock.accept()
        with conn:
            return original_destination(conn)
    finally:
        client.close()


LOOPBACK_RULES = """
  chain out {
    type nat hook output priority -100; policy accept;
    ip daddr 127.0.0.0/8 tcp dport 9999 redirect to :7001
    ip6 daddr ::1 tcp dport 9999 redirect to :7002
    ip daddr 127.0.0.0/8 tcp dport 9998 redirect to :7003
    ip daddr 127.0.0.0/8 tcp dport 9997 redirect to :7004
  }
"""


@pytest.fixture(scope="module")
def loop_ns() -> Iterator[Netns]:
    _require_root_and_tools()
    with Netns() as ns:
        ns.nft(LOOPBACK_RULES)
        yield ns


@pytest.fixture(scope="module")
def listeners(loop_ns: Netns) -> Iterator[dict[str, socket.socket]]:
    socks = in_netns(
        loop_ns.name,
        lambda: {
            "v4": listener(socket.AF_INET, 7001),
            "v6": listener(socket.AF_INET6, 7002),
            "dual": listener(socket.AF_INET6, 7003, v6only=False),
        },
    )
    yield socks
    for sock in socks.values():
        sock.close()


@pytest.mark.parametrize("dest", [("127.0.0.1", 9999), ("127.0.0.2", 9999), ("127.9.8.7", 9999)])
def test_ipv4_redirect(loop_ns: Netns, listeners: dict[str, socket.socket], dest) -> None:
    assert dial_and_accept(loop_ns.name, listeners["v4"], socket.AF_INET, dest) == dest


def test_ipv6_redirect(loop_ns: Netns, listeners: dict[str, socket.socket]) -> None:
    got = dial_and_accept(loop_ns.name, listeners["v6"], socket.AF_INET6, ("::1", 9999))
    assert got == ("::1", 9999)


def test_ipv4_on_dual_stack_listener(loop_ns: Netns, listeners: dict[str, socket.socket]) -> None:
    got = dial_and_accept(loop_ns.name, listeners["dual"], socket.AF_INET, ("127.0.0.3", 9998))
    assert got == ("127.0.0.3", 9998)


def test_not_redirected_gives_the_local_address(
    loop_ns: Netns, listeners: dict[str, socket.socket]
) -> None:
    # conntrack still tracks the connection: its original destination is the listener itself
    got = dial_and_accept(loop_ns.name, listeners["v4"], socket.AF_INET, ("127.0.0.1", 7001))
    assert got == ("127.0.0.1", 7001)


def test_no_conntrack_entry_raises(loop_ns: Netns) -> None:
    def sockets() -> tuple[socket.socket, socket.socket]:
        return socket.socket(socket.AF_INET), socket.socket(socket.AF_INET6)

    for sock in in_netns(loop_ns.name, sockets):
        with sock, pytest.raises(OSError, match=r"No such file|not connected"):
            original_destination(sock)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with udp, pytest.raises(OSError, match="Protocol not available"):
        original_destination(udp)


@pytest.mark.parametrize("use_uvloop", [True, False], ids=["uvloop", "asyncio"])
def test_transport_socket(loop_ns: Netns, use_uvloop: bool) -> None:
    """The socket view handed out by asyncio and uvloop transports works too."""

    async def main() -> tuple[str, int]:
        got: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                got.set_result(original_destination(writer.get_extra_info("socket")))
            except OSError as exc:
                got.set_exception(exc)
            writer.close()

        server = await asyncio.start_server(on_client, "127.0.0.1", 7004)
        async with server, asyncio.timeout(5):
            _, writer = await asyncio.open_connection("127.0.0.44", 9997)
            result = await got
            writer.close()
            return result

    def in_loop() -> tuple[str, int]:
        if use_uvloop:
            return uvloop.run(main())
        return asyncio.run(main())

    assert in_netns(loop_ns.name, in_loop) == ("127.0.0.44", 9997)


# --- the production shape: client namespace -> veth -> proxy namespace, prerouting redirect ---

PREROUTING_RULES = """
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "veth0" ip daddr 192.0.2.1 tcp dport 443 redirect to :3129
    iifname "veth0" ip6 daddr 2001:db8::1 tcp dport 443 redirect to :3129
  }
"""


@pytest.fixture(scope="module")
def routed() -> Iterator[tuple[Netns, Netns]]:
    _require_root_and_tools()
    with Netns("-a") as agent, Netns("-p") as proxy:
        run("ip", "-n", agent.name, "link", "add", "veth0", "type", "veth",
            "peer", "name", "veth0", "netns", proxy.name)  # fmt: skip
        for ns, v4, v6 in ((agent, "10.99.0.2", "fd00:99::2"), (proxy, "10.99.0.1", "fd00:99::1")):
            run("ip", "-n", ns.name, "addr", "add", f"{v4}/24", "dev", "veth0")
            run("ip", "-n", ns.name, "-6", "addr", "add", f"{v6}/64", "dev", "veth0", "nodad")
            run("ip", "-n", ns.name, "link", "set", "veth0", "up")
        run("ip", "-n", agent.name, "route", "add", "default", "via", "10.99.0.1")
        run("ip", "-n", agent.name, "-6", "route", "add", "default", "via", "fd00:99::1")
        proxy.nft(PREROUTING_RULES)
        yield agent, proxy


def test_prerouting_redirect_from_another_namespace(routed: tuple[Netns, Netns]) -> None:
    agent, proxy = routed
    lsock = in_netns(proxy.name, lambda: listener(socket.AF_INET6, 3129, v6only=False))
    with lsock:
        v4 = dial_and_accept(agent.name, lsock, socket.AF_INET, ("192.0.2.1", 443))
        v6 = dial_and_accept(agent.name, lsock, socket.AF_INET6, ("2001:db8::1", 443))
    assert v4 == ("192.0.2.1", 443)
    assert v6 == ("2001:db8::1", 443)
