"""1 GiB up and 1 GiB down through awf-api-proxy in bounded memory (the sidecar's RSS peak,
VmHWM from /proc, stays far below the body size)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.api_proxy import (
    KEYS,
    ApiProxyProc,
    FakeProviders,
    fake_providers,
    running_api_proxy,
    target_args,
    write_keys,
)

pytestmark = pytest.mark.integration

GIB = 1 << 30
PIECE = b"u" * (256 * 1024)
MAX_GROWTH_KIB = 32 * 1024  # the peak may grow by flow-control windows and TLS buffers, no more


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakeProviders]:
    async with fake_providers(tmp_path) as f:
        yield f


@pytest.fixture
async def sidecar(fake: FakeProviders, tmp_path: Path) -> AsyncIterator[ApiProxyProc]:
    keys = write_keys(tmp_path / "keys", KEYS)
    async with running_api_proxy("--keys-file", str(keys), "--extra-ca-certs", str(fake.ca_file),
                                 "--log-dir", str(tmp_path / "logs"),
                                 *target_args(fake.port)) as p:
        yield p


async def _gib() -> AsyncIterator[bytes]:
    for _ in range(GIB // len(PIECE)):
        yield PIECE


@pytest.mark.timeout(600)
async def test_one_gib_each_way_in_bounded_memory(sidecar: ApiProxyProc) -> None:
    timeout = aiohttp.ClientTimeout(total=540)
    async with aiohttp.ClientSession(timeout=timeout) as client:
        async with client.get(sidecar.url("openai", "/bytes/1000")) as warm:
            assert len(await warm.read()) == 1000
        baseline = sidecar.rss_peak_kib()
        t0 = time.monotonic()
        async with client.post(sidecar.url("openai", "/upload"), data=_gib(),
                               headers={"Content-Length": str(GIB)}) as up:
            assert up.status == 200
            assert await up.json() == {"size": GIB, "tail": "u" * 16}
        t1 = time.monotonic()
        received = 0
        async with client.get(sidecar.url("openai", f"/bytes/{GIB}")) as down:
            assert down.status == 200
            assert down.headers["Content-Length"] == str(GIB)
            async for chunk in down.content.iter_any():
                received += len(chunk)
        t2 = time.monotonic()
    assert received == GIB
    peak = sidecar.rss_peak_kib()
    print(f"sidecar VmHWM {baseline} KiB before, {peak} KiB after; "
          f"up {GIB / (t1 - t0) / 1e6:.0f} MB/s, down {GIB / (t2 - t1) / 1e6:.0f} MB/s")
    assert peak - baseline < MAX_GROWTH_KIB
