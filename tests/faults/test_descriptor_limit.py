"""Near the file-descriptor limit new clients are answered 503 overloaded, logged, with one
stderr line; none is dropped silently (issue 18, item 6). The proxy runs with RLIMIT_NOFILE
lowered to 128 (soft and hard), so it cannot raise it for itself."""

from __future__ import annotations

import asyncio
import resource
import socket
from pathlib import Path

import pytest

from tests.integration.test_explicit import wait_log
from tests.support.client import roundtrip
from tests.support.proxyproc import ProxyProc

pytestmark = pytest.mark.integration

LIMIT = 128
CLIENTS = 200
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


def state(sock: socket.socket) -> str:
    """'open' (admitted, waiting for a head), 'answered: <first line>' or 'reset'/'closed'."""
    try:
        data = sock.recv(4096)
    except BlockingIOError:
        return "open"
    except ConnectionResetError:
        return "reset"
    if not data:
        return "closed"
    return "answered: " + data.split(b"\r\n", 1)[0].decode() + (
        " overloaded" if b"X-Awf-Reason: overloaded" in data else "")


async def test_clients_past_the_descriptor_limit_get_503(tmp_path: Path) -> None:
    p = await ProxyProc.start("--allow-domains", "origin.test", "--log-dir", str(tmp_path),
                              preexec_fn=low_fd_limit)
    socks: list[socket.socket] = []
    try:
        for _ in range(CLIENTS):
            s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
            s.setblocking(False)
            socks.append(s)
            await asyncio.sleep(0)  # let the proxy accept in step
        await asyncio.sleep(1)
        states = [state(s) for s in socks]
        refused = [x for x in states if x != "open"]
        assert set(refused) == {"answered: HTTP/1.1 503 Service Unavailable overloaded"}
        assert 20 < states.count("open") < LIMIT // 2
        busy = await roundtrip(p.port, HEALTH)  # still an answer, not a reset
        assert (busy.status, busy.reason) == (503, "overloaded")
        records = await wait_log(tmp_path / "access.jsonl", len(refused) + 1)
        assert {r["reason"] for r in records} == {"overloaded"}
    finally:
        for s in socks:
            s.close()
    try:
        status = 0
        async with asyncio.timeout(5):
            while status != 200:  # the slots come back once the clients are gone
                await asyncio.sleep(0.1)
                status = (await roundtrip(p.port, HEALTH)).status
    finally:
        await p.stop()
    assert p.stderr.count("near the file-descriptor limit") == 1
    assert "Traceback" not in p.stderr
