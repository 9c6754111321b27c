"""SSL bump on the transparent listener, in a throwaway network namespace (docs/proxy.md §11):
the client's TLS to a redirected address is terminated with a leaf for its SNI, and each inner
request is checked against --allow-urls before it reaches the (trustme) origin.

As in test_transparent_tunnel: the client (source 127.0.0.2) connects to 127.0.0.5:9443, the
nat hook redirects it to the transparent listener on 127.0.0.1:7443, and the proxy dials its own
checked address for the SNI name, 127.0.0.1:9443.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme

from tests.privileged.test_origdst import Netns, _require_root_and_tools, in_netns

# the same intercepted path (redirect rule, client address) as the tunnel test's
from tests.privileged.test_transparent_tunnel import RULES, client_socket

pytestmark = pytest.mark.privileged

NAME = "origin.test"
POLICY = ("--allow-urls", f"GET https://{NAME}/ok", "--resolve", f"{NAME}=127.0.0.1",
          "--allow-range", "127.0.0.1/32", "--allow-ports", "9443")


@pytest.fixture(scope="module")
def ns() -> Iterator[Netns]:
    _require_root_and_tools()
    with Netns("-b") as netns:
        netns.nft(RULES)
        yield netns


@pytest.fixture
async def origin(ns: Netns, tmp_path: Path) -> AsyncIterator[list[bytes]]:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "origin-ca.pem"))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(NAME).configure_cert(ctx)
    seen: list[bytes] = []

    def listening() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 9443))
        sock.listen(128)
        sock.setblocking(False)
        return sock

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                seen.append(head.split(b"\r\n", 1)[0])
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, sock=in_netns(ns.name, listening), ssl=ctx)
    async with server:
        yield seen


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    ca_dir = tmp_path / "ca"
    done = subprocess.run([sys.executable, "-m", "proxy.main", "--make-ca", str(ca_dir),
                           *POLICY], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return ca_dir


@pytest.fixture
async def proxy(ns: Netns, origin: list[bytes], ca_dir: Path,
                tmp_path: Path) -> AsyncIterator[Path]:
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns.name, sys.executable, "-m", "proxy.main",
        "--listen", "127.0.0.1:3128", "--transparent-listen", "127.0.0.1:7443", *POLICY,
        "--ssl-bump", "--ca-cert", str(ca_dir / "ca.pem"), "--ca-key",
        str(ca_dir / "ca-key.pem"), "--extra-ca-certs", str(tmp_path / "origin-ca.pem"),
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
        yield ca_dir / "ca.pem"
    finally:
        proc.terminate()
        await proc.wait()


async def ask(ns: Netns, ca: Path, target: str, host: str = f"{NAME}:9443") -> bytes:
    ctx = ssl.create_default_context(cafile=str(ca))
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection(sock=client_socket(ns), ssl=ctx,
                                                       server_hostname=NAME)
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        writer.close()
    return head.split(b"\r\n", 1)[0]


async def test_intercepted_tls_is_bumped_and_each_url_checked(
    ns: Netns, origin: list[bytes], proxy: Path,
) -> None:
    assert await ask(ns, proxy, "/ok") == b"HTTP/1.1 200 OK"
    assert (await ask(ns, proxy, "/other")).startswith(b"HTTP/1.1 403")
    assert (await ask(ns, proxy, "/x/../other")).startswith(b"HTTP/1.1 403")
    assert (await ask(ns, proxy, "/ok", host="evil.test")).startswith(b"HTTP/1.1 421")
    assert origin == [b"GET /ok HTTP/1.1"]
