"""The transparent listener honours --head-timeout for a slow HTTP head: 408 head_timeout,
logged (issue 18, item 5). No redirect is needed to reach the peek: a direct connection to the
listener is sniffed the same way."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.test_explicit import wait_log
from tests.support.client import read_response
from tests.support.proxyproc import ProxyProc, running_proxy

pytestmark = pytest.mark.integration


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[ProxyProc]:
    async with running_proxy(
        "--allow-domains", "origin.test", "--transparent-listen", "127.0.0.1:0",
        "--head-timeout", "1", "--log-dir", str(tmp_path),
    ) as p:
        yield p


async def test_slow_http_head_on_the_transparent_listener_is_408(proxy: ProxyProc,
                                                               tmp_path: Path) -> None:
    host, port = proxy.endpoint(1)
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection(host, port)
        t0 = time.monotonic()
        writer.write(b"GET / HTTP/1.1\r\nHost: origin.te")  # and then nothing
        resp = await read_response(reader)
        waited = time.monotonic() - t0
        writer.close()
    [rec] = await wait_log(tmp_path / "access.jsonl", 1)
    assert (resp.status, resp.reason) == (408, "head_timeout")
    assert 0.9 < waited < 3
    assert (rec["mode"], rec["reason"], rec["status"]) == ("transparent", "head_timeout", 408)


async def test_slow_tls_hello_is_still_closed_without_an_answer(proxy: ProxyProc,
                                                                tmp_path: Path) -> None:
    host, port = proxy.endpoint(1)
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"\x16\x03\x01\x02\x00")  # a TLS record header, then nothing
        assert await reader.read() == b""
        writer.close()
    [rec] = await wait_log(tmp_path / "access.jsonl", 1)
    assert (rec["reason"], rec["status"]) == ("head_timeout", 0)
