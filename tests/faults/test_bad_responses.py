"""Malformed framing in a response is 502 bad_response, or a visible truncation once the head
was forwarded, and is logged as such, never as `allow 200` (issue 18, item 4)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from tests.integration.test_explicit import ORIGIN, policy_args, wait_log
from tests.support.client import get, read_response, roundtrip
from tests.support.origins import Origin, raw_origin, tcp_origin
from tests.support.proxyproc import running_proxy

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
], ids=["bare-lf-chunks", "bad-chunk-size", "bad-status-line", "two-lengths", "upgrade"])
async def test_bad_response_before_the_head_is_forwarded_is_502(answer: bytes,
                                                                tmp_path: Path) -> None:
    async with raw_origin(answer) as o, running_proxy(
        *policy_args(o.port), "--log-dir", str(tmp_path)
    ) as p:
        resp = await roundtrip(p.port, get(f"http://{ORIGIN}:{o.port}/"), timeout=5)
        [rec] = await wait_log(tmp_path / "access.jsonl", 1)
        await p.stop()
    assert (resp.status, resp.reason) == (502, "bad_response")
    assert (rec["decision"], rec["reason"], rec["status"]) == ("allow", "bad_response", 502)
    assert "Traceback" not in p.stderr


def breaking_origin() -> contextlib.AbstractAsyncContextManager[Origin]:
    """A chunked answer whose first chunk is fine and whose second chunk-size line is not."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(b"nothex\r\nworld\r\n0\r\n\r\n")
            await writer.drain()
            await reader.read()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return tcp_origin(handle)


async def test_bad_body_after_the_head_was_forwarded_closes_the_client(tmp_path: Path) -> None:
    async with breaking_origin() as o, running_proxy(
        *policy_args(o.port), "--log-dir", str(tmp_path)
    ) as p:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
            writer.write(get(f"http://{ORIGIN}:{o.port}/"))
            head = await read_response(reader, head_only=True)
            rest = await reader.read()  # until the proxy closes
            writer.close()
        [rec] = await wait_log(tmp_path / "access.jsonl", 1)
        await p.stop()
    assert head.status == 200
    assert rest == b"5\r\nhello\r\n"  # no last chunk: the client sees the truncation
    assert (rec["decision"], rec["reason"], rec["status"]) == ("allow", "bad_response", 502)
    assert "Traceback" not in p.stderr
