"""SIGKILL of awf-proxy under load, then a restart on the same --log-dir: every line stays whole.

A process killed in the middle of writing a batch can leave a record cut short; the next proxy on
the same log dir must not glue its first record to it (issue: 2 corrupt lines in 40 cycles).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path

import pytest

from tests.support.proxyproc import ProxyProc

pytestmark = pytest.mark.integration

CYCLES = 20
LOAD_S = 0.25


async def _deny_requests(port: int, stop: asyncio.Event) -> None:
    """Keep one connection busy with requests the proxy denies and logs (no origin needed)."""
    request = b"GET http://denied.test/x HTTP/1.1\r\nHost: denied.test\r\n\r\n"
    while not stop.is_set():
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                while not stop.is_set():
                    writer.write(request * 8)
                    await writer.drain()
                    for _ in range(8):
                        head = await reader.readuntil(b"\r\n\r\n")
                        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                        await reader.readexactly(length)
            finally:
                writer.close()


async def test_every_line_is_whole_after_kills_and_restarts(tmp_path: Path) -> None:
    log = tmp_path / "access.jsonl"
    for _ in range(CYCLES):
        proc = await ProxyProc.start("--log-dir", str(tmp_path), "--allow-domains", "ok.test")
        stop = asyncio.Event()
        load = [asyncio.create_task(_deny_requests(proc.port, stop)) for _ in range(4)]
        await asyncio.sleep(LOAD_S)
        await proc.stop(signal.SIGKILL)
        stop.set()
        async with asyncio.timeout(10):
            await asyncio.gather(*load, return_exceptions=True)
    # one more start cuts a partial tail left by the last kill
    final = await ProxyProc.start("--log-dir", str(tmp_path), "--allow-domains", "ok.test")
    assert await final.stop() == 0
    lines = log.read_bytes().split(b"\n")
    assert lines[-1] == b""
    bad = []
    for n, line in enumerate(lines[:-1], 1):
        try:
            record = json.loads(line)
        except ValueError:
            bad.append((n, line[:120]))
            continue
        assert record["reason"] == "domain_not_allowed"
    assert bad == []
    assert len(lines) > CYCLES  # the load really was logged
