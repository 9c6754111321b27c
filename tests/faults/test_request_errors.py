"""Every request error is a logged decision and an answer (400 bad_request, then close): never a
task exception, a traceback on stderr or a silent `allow 200` (issue 18, items 1 and 4)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.integration.test_explicit import ORIGIN, policy_args, wait_log
from tests.support.client import get, read_response, roundtrip
from tests.support.origins import Origin
from tests.support.proxyproc import running_proxy

pytestmark = pytest.mark.integration

BAD_CHUNKS = (b"ZZZ\r\n", b"5 ;a\r\nhello\r\n0\r\n\r\n", b"5\nhello\n0\n\n")


def chunked_post(port: int, body: bytes) -> bytes:
    return (f"POST http://{ORIGIN}:{port}/echo HTTP/1.1\r\nHost: {ORIGIN}:{port}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode() + body


async def post_and_read(proxy_port: int, raw: bytes) -> tuple[int, str | None, bytes]:
    """Send one request; the answer, then what follows it (b'' when the proxy closed)."""
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        try:
            writer.write(raw)
            resp = await read_response(reader)
            after = await reader.read(1)
            return resp.status, resp.reason, after
        finally:
            writer.close()


async def test_malformed_request_chunks_on_fresh_upstreams_are_400(
    origin: Origin, tmp_path: Path,
) -> None:
    n = 1000
    async with running_proxy(*policy_args(origin.port), "--log-dir", str(tmp_path)) as proxy:
        gate = asyncio.Semaphore(20)

        async def one(i: int) -> tuple[int, str | None, bytes]:
            async with gate:
                return await post_and_read(proxy.port,
                                           chunked_post(origin.port, BAD_CHUNKS[i % 3]))

        answers = await asyncio.gather(*(one(i) for i in range(n)))
        assert set(answers) == {(400, "bad_request", b"")}
        ok = await roundtrip(proxy.port, get(f"http://{ORIGIN}:{origin.port}/small"))
        assert ok.status == 200
        records = await wait_log(tmp_path / "access.jsonl", n + 1, timeout=15)
        await proxy.stop()
    assert "Traceback" not in proxy.stderr
    assert "Task exception" not in proxy.stderr
    assert len(records) == n + 1
    bad = [r for r in records if r["method"] == "POST"]
    assert len(bad) == n
    assert {(r["decision"], r["status"], r["reason"], r["host"]) for r in bad} == {
        ("deny", 400, "bad_request", ORIGIN)}


async def test_malformed_request_chunk_on_a_pooled_upstream_is_one_400(
    origin: Origin, tmp_path: Path,
) -> None:
    """The same on a kept-alive connection whose origin connection came from the pool: one
    record (400), not a second `connect_failed` one when the client connection closes."""
    async with running_proxy(*policy_args(origin.port), "--log-dir", str(tmp_path)) as proxy:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(get(f"http://{ORIGIN}:{origin.port}/small"))
            first = await read_response(reader)
            writer.write(chunked_post(origin.port, b"ZZZ\r\n"))
            second = await read_response(reader)
            assert await reader.read(1) == b""
            writer.close()
        records = await wait_log(tmp_path / "access.jsonl", 2)
        await asyncio.sleep(0.3)  # a wrong second record for the POST would come now
        await proxy.stop()
    assert first.status == 200
    assert (second.status, second.reason) == (400, "bad_request")
    records = [r for r in records if r["method"] == "POST"]
    assert [(r["status"], r["reason"]) for r in records] == [(400, "bad_request")]
    assert "Traceback" not in proxy.stderr


async def test_malformed_request_chunk_after_a_good_one_is_400(
    origin: Origin, tmp_path: Path,
) -> None:
    """The body goes bad in a later segment, after the request head went upstream."""
    async with running_proxy(*policy_args(origin.port), "--log-dir", str(tmp_path)) as proxy:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(chunked_post(origin.port, b"5\r\nhello\r\n"))
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(b"nothex\r\n")
            resp = await read_response(reader)
            writer.close()
        await proxy.stop()
    assert (resp.status, resp.reason) == (400, "bad_request")
    assert "Traceback" not in proxy.stderr
