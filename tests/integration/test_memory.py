"""A 1 GiB download through a CONNECT tunnel and through an absolute-URI GET keeps RSS < 100 MB."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

from tests.support.client import connect
from tests.support.proxyproc import ProxyProc, running_proxy

pytestmark = pytest.mark.integration

GIB = 1 << 30
RSS_LIMIT_KIB = 100 * 1000


@pytest.fixture
async def bulk_port() -> AsyncIterator[int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.bulk_origin", stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    port = int(await asyncio.wait_for(proc.stdout.readline(), 10))
    try:
        yield port
    finally:
        proc.kill()
        await proc.wait()


async def drain_body(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    got = 0
    while got < length:
        chunk = await reader.read(1 << 20)
        if not chunk:
            break
        got += len(chunk)
    return got


async def proxy_for(port: int) -> ProxyProc:
    return await ProxyProc.start("--allow-domains", "bulk.test", "--resolve",
                                 "bulk.test=127.0.0.1", "--allow-range", "127.0.0.1/32",
                                 "--allow-ports", str(port))


@pytest.mark.timeout(300)
async def test_gib_through_connect_tunnel(bulk_port: int) -> None:
    async with running_proxy("--allow-domains", "bulk.test", "--resolve", "bulk.test=127.0.0.1",
                             "--allow-range", "127.0.0.1/32", "--allow-ports",
                             str(bulk_port)) as p:
        reader, writer = await asyncio.open_connection("127.0.0.1", p.port, limit=1 << 20)
        writer.write(connect(f"bulk.test:{bulk_port}"))
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"GET /{GIB} HTTP/1.1\r\nHost: bulk.test\r\n\r\n".encode())
        assert await asyncio.wait_for(drain_body(reader), 240) == GIB
        writer.close()
        assert p.rss_peak_kib() < RSS_LIMIT_KIB


@pytest.mark.timeout(300)
async def test_gib_through_absolute_get(bulk_port: int) -> None:
    async with running_proxy("--allow-domains", "bulk.test", "--resolve", "bulk.test=127.0.0.1",
                             "--allow-range", "127.0.0.1/32", "--allow-ports",
                             str(bulk_port)) as p:
        reader, writer = await asyncio.open_connection("127.0.0.1", p.port, limit=1 << 20)
        writer.write(f"GET http://bulk.test:{bulk_port}/{GIB} HTTP/1.1\r\n"
                     f"Host: bulk.test:{bulk_port}\r\n\r\n".encode())
        assert await asyncio.wait_for(drain_body(reader), 240) == GIB
        writer.close()
        assert p.rss_peak_kib() < RSS_LIMIT_KIB
