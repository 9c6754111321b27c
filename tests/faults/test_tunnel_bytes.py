"""No byte is lost between a tunnel's two sides being dialled and joined (issue 18, item 2)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from tests.integration.test_explicit import ORIGIN, policy_args, wait_log
from tests.support.client import connect
from tests.support.origins import Origin, echo_origin, tcp_origin
from tests.support.proxyproc import running_proxy

pytestmark = pytest.mark.integration

ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
GREETING = b"220 greeting.test ESMTP-like hello, sent before the client says anything\r\n"


def greeting_origin(*, close: bool = False) -> contextlib.AbstractAsyncContextManager[Origin]:
    """Speaks first: writes GREETING on accept (then closes, with `close`), else echoes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(GREETING)
            await writer.drain()
            if not close:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    return tcp_origin(handle)


async def tunnel_greeting(proxy_port: int, origin_port: int, *, then: bytes = b"") -> bytes:
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        try:
            writer.write(connect(f"{ORIGIN}:{origin_port}"))
            assert await reader.readexactly(len(ESTABLISHED)) == ESTABLISHED
            got = await reader.readexactly(len(GREETING))
            if then:
                writer.write(then)
                got += await reader.readexactly(len(then))
            return got
        finally:
            writer.close()


async def test_a_server_that_speaks_first_is_heard_through_connect(tmp_path: Path) -> None:
    async with greeting_origin() as origin, running_proxy(*policy_args(origin.port)) as proxy:
        got = [await tunnel_greeting(proxy.port, origin.port, then=b"ping") for _ in range(100)]
    assert got == [GREETING + b"ping"] * 100


async def test_a_greeting_and_fin_before_the_join_are_delivered(tmp_path: Path) -> None:
    """The origin greets and closes at once: the greeting, then EOF, and the tunnel is logged."""
    async with greeting_origin(close=True) as origin, running_proxy(
        *policy_args(origin.port), "--log-dir", str(tmp_path)
    ) as proxy:
        for _ in range(20):
            async with asyncio.timeout(5):
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                writer.write(connect(f"{ORIGIN}:{origin.port}"))
                assert await reader.read(-1) == ESTABLISHED + GREETING
                writer.close()
        records = await wait_log(tmp_path / "access.jsonl", 20)
        await proxy.stop()
    assert {(r["method"], r["status"], r["bytes_down"]) for r in records} == {
        ("CONNECT", 200, len(GREETING))}
    assert "Traceback" not in proxy.stderr


async def test_connect_and_its_first_payload_in_one_segment() -> None:
    async with echo_origin() as origin, running_proxy(*policy_args(origin.port)) as proxy:
        for _ in range(50):
            async with asyncio.timeout(5):
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                writer.write(connect(f"{ORIGIN}:{origin.port}") + b"hello, origin")
                assert await reader.readexactly(len(ESTABLISHED)) == ESTABLISHED
                assert await reader.readexactly(13) == b"hello, origin"
                writer.write_eof()
                assert await reader.read(-1) == b"<bye>"
                writer.close()
