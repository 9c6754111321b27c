"""--response-timeout, and clients that give up while their origin is silent (issue 18, item 3)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.test_explicit import ORIGIN, policy_args, wait_log
from tests.support.client import get, roundtrip
from tests.support.origins import Origin, tcp_origin
from tests.support.proxyproc import running_proxy

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def silent_origin() -> AsyncIterator[Origin]:
    """Accepts, reads whatever comes, never answers."""
    open_now: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_now.add(writer)
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        finally:
            open_now.discard(writer)
            writer.close()

    async with tcp_origin(handle) as origin:
        try:
            yield origin
        finally:
            for w in list(open_now):
                w.close()


async def test_no_response_head_in_time_is_504(tmp_path: Path) -> None:
    async with silent_origin() as origin, running_proxy(
        *policy_args(origin.port), "--response-timeout", "1", "--log-dir", str(tmp_path)
    ) as proxy:
        t0 = time.monotonic()
        resp = await roundtrip(proxy.port, get(f"http://{ORIGIN}:{origin.port}/never"))
        waited = time.monotonic() - t0
        [rec] = await wait_log(tmp_path / "access.jsonl", 1)
    assert (resp.status, resp.reason) == (504, "response_timeout")
    assert 0.9 < waited < 5
    assert (rec["decision"], rec["reason"], rec["status"]) == ("allow", "response_timeout", 504)
    assert rec["url"] == f"http://{ORIGIN}:{origin.port}/never"


async def test_response_timeout_flag_is_validated() -> None:
    with pytest.raises(RuntimeError, match="response-timeout"):
        async with running_proxy("--allow-domains", ORIGIN, "--response-timeout", "soon"):
            pass


async def test_clients_that_give_up_free_their_slots() -> None:
    """20 clients wait on a silent origin at --max-connections 20, then close: the proxy must
    notice each FIN while it waits for the answer, close the origin connections and free the
    slots, so /healthz answers 200 again (on the base commit it paused reading, never saw the
    FINs, and answered 503 overloaded until --response-timeout... which did not exist)."""
    async with silent_origin() as origin, running_proxy(
        *policy_args(origin.port), "--max-connections", "20"
    ) as proxy:
        writers = []
        async with asyncio.timeout(10):
            for _ in range(20):
                _, w = await asyncio.open_connection("127.0.0.1", proxy.port)
                w.write(get(f"http://{ORIGIN}:{origin.port}/never"))
                writers.append(w)
            while origin.connections < 20:  # every request reached the origin
                await asyncio.sleep(0.02)
        for w in writers:
            w.close()  # the clients give up
        status = 0
        async with asyncio.timeout(5):
            while status != 200:
                await asyncio.sleep(0.1)
                resp = await roundtrip(proxy.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                status = resp.status
        health = json.loads(resp.body)
    assert health["connections"] <= 1
