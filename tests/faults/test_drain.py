"""SIGTERM drain: in-flight keep-alive requests finish, each last answer says `Connection:
close`, and nothing is reset (issue 18, item 7)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest

from tests.integration.test_explicit import ORIGIN, policy_args
from tests.support.client import get, read_response
from tests.support.origins import Origin
from tests.support.proxyproc import ProxyProc

pytestmark = pytest.mark.integration

CLIENTS = 30


async def keep_asking(port: int, url: str, outcome: dict[str, int]) -> None:
    """Requests back to back on one connection until an answer says close; counts what happens."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            writer.write(get(url))
            outcome["sent"] += 1
            try:
                resp = await read_response(reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                outcome["lost"] += 1
                return
            if resp.status != 200 or resp.body != b"s" * 100:
                outcome["bad"] += 1
                return
            outcome["answered"] += 1
            if resp.headers.get("connection", "").lower() == "close":
                outcome["closed_politely"] += 1
                if await reader.read(1) == b"":
                    outcome["then_eof"] += 1
                return
    finally:
        writer.close()


async def test_sigterm_lets_in_flight_keep_alive_requests_finish(origin: Origin,
                                                                 tmp_path: Path) -> None:
    p = await ProxyProc.start(*policy_args(origin.port), "--drain-timeout", "5",
                              "--log-dir", str(tmp_path))
    url = f"http://{ORIGIN}:{origin.port}/slow/100"
    outcome = dict.fromkeys(("sent", "answered", "lost", "bad", "closed_politely", "then_eof"), 0)
    try:
        async with asyncio.timeout(20):
            clients = [asyncio.create_task(keep_asking(p.port, url, outcome))
                       for _ in range(CLIENTS)]
            await asyncio.sleep(0.5)
            p.signal(signal.SIGTERM)
            await asyncio.gather(*clients)
            code = await p.proc.wait()
    finally:
        if p.proc.returncode is None:
            await p.stop()
    records = [json.loads(x) for x in (tmp_path / "access.jsonl").read_text().splitlines()]
    assert code == 0
    assert (outcome["lost"], outcome["bad"]) == (0, 0)
    assert outcome["closed_politely"] == outcome["then_eof"] == CLIENTS
    assert outcome["answered"] == outcome["sent"]
    assert len(records) == outcome["sent"]
    assert {(r["status"], r["reason"]) for r in records} == {(200, None)}
