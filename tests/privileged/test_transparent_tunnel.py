"""Intercepted TLS through the transparent listener, in a throwaway network namespace: an origin
that speaks first is heard (issue 18, item 2: bytes that arrive before the tunnel's two sides
are joined are delivered, in order).

One namespace (name `awf-test-...`, removed afterwards) holds the client, awf-proxy and the
origin; its `output` nat hook redirects the client's connections (source 127.0.0.2) to
127.0.0.5:9443 to the transparent listener on 127.0.0.1:7443. The proxy reads the SNI, resolves
it to 127.0.0.1 and dials the original destination's port, 9443, where the origin greets.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.privileged.test_origdst import Netns, _require_root_and_tools, in_netns
from tests.unit.sni_hellos import python_hello

pytestmark = pytest.mark.privileged

REPO = Path(__file__).resolve().parents[2]
NAME = "greet.test"
GREETING = b"220 greet.test speaks first\r\n"
RULES = """
  chain out {
    type nat hook output priority -100; policy accept;
    ip saddr 127.0.0.2 ip daddr 127.0.0.5 tcp dport 9443 redirect to :7443
  }
"""


@pytest.fixture(scope="module")
def ns() -> Iterator[Netns]:
    _require_root_and_tools()
    with Netns("-t") as netns:
        netns.nft(RULES)
        yield netns


@pytest.fixture
async def greeting_origin(ns: Netns) -> AsyncIterator[None]:
    def listening() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 9443))
        sock.listen(128)
        sock.setblocking(False)
        return sock

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(GREETING)
            await writer.drain()
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, sock=in_netns(ns.name, listening))
    async with server:
        yield


@pytest.fixture
async def proxy(ns: Netns) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns.name, sys.executable, "-m", "proxy.main",
        "--listen", "127.0.0.1:3128", "--transparent-listen", "127.0.0.1:7443",
        "--allow-domains", NAME, "--resolve", f"{NAME}=127.0.0.1",
        "--allow-range", "127.0.0.1/32", "--allow-ports", "9443",
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(15):
            listening = 0
            while listening < 2:
                line = await proc.stderr.readline()
                assert line, "awf-proxy exited before listening"
                listening += line.startswith(b"awf-proxy listening on ")
        yield proc
    finally:
        proc.terminate()
        await proc.wait()


def client_socket(ns: Netns) -> socket.socket:
    def dial() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.2", 0))
        sock.settimeout(5)
        sock.connect(("127.0.0.5", 9443))
        sock.setblocking(False)
        return sock

    return in_netns(ns.name, dial)


async def test_an_origin_that_speaks_first_is_heard_through_intercepted_tls(
    ns: Netns, greeting_origin: None, proxy: asyncio.subprocess.Process,
) -> None:
    hello = python_hello(NAME)
    heard = []
    for _ in range(100):
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection(sock=client_socket(ns))
            writer.write(hello)
            try:
                heard.append(await reader.readexactly(len(GREETING)))
            except asyncio.IncompleteReadError as exc:
                heard.append(exc.partial)
            writer.close()
    assert heard == [GREETING] * 100
