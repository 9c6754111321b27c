"""Time-boxed fuzzing of a running awf-proxy: every input gets an answer, and the proxy lives on.

Mutated requests (heads, chunked bodies, CONNECT) go to a real awf-proxy on loopback whose one
allowed origin answers as soon as it reads anything. Each input, on its own connection, must be
answered with an HTTP status line within ANSWER_S (`--head-timeout 1` turns an incomplete head
into 408): a silent close or a hang is a failure, and so is a traceback on the proxy's stderr.
Afterwards an allowed request still works.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.fuzz.mutate import inputs
from tests.support.client import get, roundtrip
from tests.support.proxyproc import running_proxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ANSWER_S = 5.0
PARALLEL = 16


@contextlib.asynccontextmanager
async def eager_origin() -> AsyncIterator[int]:
    """Answers 200 and closes as soon as a request starts arriving; never reads a body."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def seeds(port: int) -> list[bytes]:
    origin = f"origin.test:{port}".encode()
    return [
        b"GET http://" + origin + b"/x HTTP/1.1\r\nHost: " + origin + b"\r\n\r\n",
        b"GET http://" + origin + b"/x HTTP/1.1\r\nHost: " + origin + b"\r\n\r\n"
        b"GET http://" + origin + b"/y HTTP/1.1\r\nHost: " + origin + b"\r\n\r\n",
        b"POST http://" + origin + b"/p HTTP/1.1\r\nHost: " + origin
        + b"\r\nContent-Length: 5\r\n\r\nhello",
        b"POST http://" + origin + b"/p HTTP/1.1\r\nHost: " + origin
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: x\r\n\r\n",
        b"PUT http://" + origin + b"/u HTTP/1.1\r\nHost: " + origin
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n5 ;a\r\nhello\r\n0\r\n\r\n",
        b"CONNECT " + origin + b" HTTP/1.1\r\nHost: " + origin + b"\r\n\r\n",
        b"GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ]


async def answer(port: int, data: bytes) -> str:
    """'answered', 'closed' (no status line) or 'hang'."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        got = b""
        async with asyncio.timeout(ANSWER_S):
            while b"\r\n" not in got:
                chunk = await reader.read(4096)
                if not chunk:
                    break
                got += chunk
        return "answered" if got.startswith(b"HTTP/1.1 ") and b"\r\n" in got else "closed"
    except TimeoutError:
        return "hang"
    except ConnectionResetError:
        return "closed"
    finally:
        writer.close()


async def test_every_input_is_answered() -> None:
    async with eager_origin() as origin_port:
        args = ("--head-timeout", "1", "--allow-domains", "origin.test",
                "--resolve", "origin.test=127.0.0.1", "--allow-range", "127.0.0.1/32",
                "--allow-ports", str(origin_port))
        async with running_proxy(*args) as proxy:
            failures: list[tuple[str, bytes]] = []
            batch: list[bytes] = []
            tried = 0

            async def flush() -> None:
                results = await asyncio.gather(*(answer(proxy.port, d) for d in batch))
                failures.extend((r, d) for r, d in zip(results, batch, strict=True)
                                if r != "answered")
                batch.clear()

            for data in inputs(seeds(origin_port), name="live"):
                if not data.strip(b"\r\n"):
                    continue  # nothing but empty lines: nothing to answer
                batch.append(data)
                tried += 1
                if len(batch) == PARALLEL:
                    await flush()
            await flush()
            ok = await roundtrip(proxy.port, get(f"http://origin.test:{origin_port}/after"))
            assert ok.status == 200
            assert proxy.proc.returncode is None
        assert "Traceback" not in proxy.stderr
        assert "exception was never retrieved" not in proxy.stderr
        assert failures[:20] == [], f"{len(failures)} of {tried} inputs not answered"
