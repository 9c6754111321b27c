"""awf-proxy under faults: origins that reset or stall, slow clients, signals under load, a dead
resolver. Every fault ends in an answer or a visible close, and in a true record; the proxy keeps
serving. Each loop is bounded in count and time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.client import connect, get, read_response, roundtrip
from tests.support.origins import Origin, http_origin
from tests.support.proxyproc import running_proxy

pytestmark = pytest.mark.integration

ORIGIN = "origin.test"


def policy(*ports: int) -> tuple[str, ...]:
    return ("--allow-domains", ORIGIN, "--resolve", f"{ORIGIN}=127.0.0.1",
            "--allow-range", "127.0.0.1/32", "--allow-ports", ",".join(map(str, ports)))


def records(log_dir: Path) -> list[dict[str, object]]:
    path = log_dir / "access.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


async def wait_records(log_dir: Path, n: int, timeout: float = 5.0) -> list[dict[str, object]]:
    async with asyncio.timeout(timeout):
        while len(got := records(log_dir)) < n:
            await asyncio.sleep(0.05)
    return got


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a crashing origin does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@contextlib.asynccontextmanager
async def resetting_origin(first: bytes, *, read_head: bool = True) -> AsyncIterator[Origin]:
    """Sends `first` after reading a request head (or, if not told to, the client's first
    bytes), then resets."""
    origin = Origin(port=0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        origin.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            if read_head:
                await reader.readuntil(b"\r\n\r\n")
            else:
                await reader.read(100)
            writer.write(first)
            await writer.drain()
            await asyncio.sleep(0.1)
        reset(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    origin.port = server.sockets[0].getsockname()[1]
    try:
        yield origin
    finally:
        server.close()
        await server.wait_closed()


async def test_origin_reset_mid_body_closes_the_client_and_is_recorded(tmp_path: Path) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    async with (resetting_origin(head + b"x" * 100) as o,
                running_proxy(*policy(o.port), "--log-dir", str(tmp_path)) as p):
        reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
        writer.write(get(f"http://{ORIGIN}:{o.port}/cut"))
        async with asyncio.timeout(5):
            got = await reader.read(65536)
            while chunk := await reader.read(65536):
                got += chunk
        writer.close()
        assert got.startswith(b"HTTP/1.1 200")
        assert len(got.split(b"\r\n\r\n", 1)[1]) == 100  # cut short, and visibly closed
        (rec,) = await wait_records(tmp_path, 1)
        assert rec["bytes_down"] == 100
        assert rec["reason"] is not None  # the record says the exchange failed
        # and the proxy serves on
        async with http_origin() as good, running_proxy(*policy(good.port)) as p2:
            ok = await roundtrip(p2.port, get(f"http://{ORIGIN}:{good.port}/small"))
            assert ok.status == 200


async def test_origin_reset_mid_tunnel_closes_the_client(tmp_path: Path) -> None:
    async with (resetting_origin(b"hello from the origin", read_head=False) as o,
                running_proxy(*policy(o.port), "--log-dir", str(tmp_path)) as p):
        reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
        writer.write(connect(f"{ORIGIN}:{o.port}"))
        resp = await read_response(reader, head_only=True)
        assert resp.status == 200
        writer.write(b"ping")
        got = b""
        with contextlib.suppress(ConnectionResetError):
            async with asyncio.timeout(5):
                while chunk := await reader.read(65536):
                    got += chunk
        writer.close()
        assert got == b"hello from the origin"
        (rec,) = await wait_records(tmp_path, 1)
        assert (rec["method"], rec["decision"]) == ("CONNECT", "allow")
        assert (rec["bytes_up"], rec["bytes_down"]) == (4, len(b"hello from the origin"))


async def test_slowloris_is_answered_408_and_others_are_served() -> None:
    async with http_origin() as o, running_proxy(*policy(o.port), "--head-timeout", "1") as p:

        async def slow() -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
            # read as it comes: a write into the closed connection would reset it and the
            # kernel would throw the unread answer away
            answer = asyncio.create_task(reader.read(200))
            try:
                for byte in b"GET http://origin.test/ HTTP/1.1\r\nX: ":
                    if answer.done():
                        break
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.1)
                async with asyncio.timeout(5):
                    return await answer
            except ConnectionError:
                return b""
            finally:
                answer.cancel()
                writer.close()

        loris = [asyncio.create_task(slow()) for _ in range(50)]
        await asyncio.sleep(0.3)
        ok = await roundtrip(p.port, get(f"http://{ORIGIN}:{o.port}/small"))
        assert ok.status == 200
        answers = await asyncio.gather(*loris)
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[:3]


async def test_sighup_and_sigterm_under_load_lose_nothing(tmp_path: Path) -> None:
    allow = tmp_path / "allow.txt"
    allow.write_text(f"{ORIGIN}\n")
    async with http_origin() as o:
        p_args = ("--allow-domains-file", str(allow), "--resolve", f"{ORIGIN}=127.0.0.1",
                  "--allow-range", "127.0.0.1/32", "--allow-ports", str(o.port),
                  "--log-dir", str(tmp_path))
        async with running_proxy(*p_args) as p:
            statuses: list[int] = []
            stop = time.monotonic() + 3.0

            async def client() -> None:
                reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
                try:
                    while time.monotonic() < stop:
                        writer.write(get(f"http://{ORIGIN}:{o.port}/small"))
                        statuses.append((await read_response(reader)).status)
                finally:
                    writer.close()

            clients = [asyncio.create_task(client()) for _ in range(8)]
            for _ in range(30):
                p.signal(signal.SIGHUP)
                await asyncio.sleep(0.08)
            await asyncio.gather(*clients)
            assert statuses
            assert set(statuses) == {200}
            sent = len(statuses)
        assert p.proc.returncode == 0
        assert len(records(tmp_path)) == sent  # every answered request is in the log


async def test_a_dead_resolver_fails_fast(tmp_path: Path) -> None:
    async with running_proxy("--allow-domains", "dead.test", "--dns-servers", "127.0.0.1:9",
                             "--log-dir", str(tmp_path)) as p:
        start = time.monotonic()
        for _ in range(3):
            resp = await roundtrip(p.port, get("http://dead.test/"))
            assert (resp.status, resp.reason) == (502, "dns_failure")
        assert time.monotonic() - start < 2.0
