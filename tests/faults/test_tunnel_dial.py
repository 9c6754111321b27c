"""A CONNECT still dialling its origin when the proxy is told to stop: past --drain-timeout the
client is aborted, the dial is stopped with it (not left to --connect-timeout), the proxy exits
cleanly and logs nothing for it. The tunnel's dial runs without a task (`tunnel.Opening`); this
is its cancel path. (While the dial runs the client's reading is paused, so that a FIN sent
right after the CONNECT is passed on after the join: a client leaving is noticed then.)"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import pytest

from tests.integration.test_explicit import ORIGIN, policy_args
from tests.support.client import connect
from tests.support.proxyproc import ProxyProc

pytestmark = pytest.mark.integration


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_a_drain_stops_a_dial_in_progress(tmp_path: Path) -> None:
    # a listener whose accept queue is full: further SYNs are dropped, the connect stalls
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    p = await ProxyProc.start(*policy_args(port, extra=("--connect-timeout", "60")),
                              "--drain-timeout", "1", "--log-dir", str(tmp_path))
    try:
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            try:
                f.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(f)
        await asyncio.sleep(0.2)
        base = open_fds(p.pid)
        clients = []
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
            writer.write(connect(f"{ORIGIN}:{port}"))
            clients.append((reader, writer))
        async with asyncio.timeout(10):
            while open_fds(p.pid) < base + 6:  # each client's socket and its dial's
                await asyncio.sleep(0.02)
        began = time.monotonic()
        code = await p.stop(timeout=30)
        took = time.monotonic() - began
        for reader, writer in clients:
            try:
                got = await reader.read()
            except ConnectionResetError:
                got = b""
            assert got == b""  # aborted, nothing answered
            writer.close()
    finally:
        for f in fillers:
            f.close()
        listener.close()
        if p.proc.returncode is None:
            await p.stop()
    assert code == 0
    assert took < 20  # the drain's 1 s and the exit, not the 60 s connect timeout
    log = tmp_path / "access.jsonl"
    assert not log.exists() or log.read_text() == ""
    assert "Traceback" not in p.stderr
