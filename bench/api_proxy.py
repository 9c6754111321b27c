"""What awf-api-proxy adds to a streamed LLM request: latency and the sidecar's CPU.

The same streamed request (an OpenAI-style SSE completion of `--events` chunks plus the usage
chunk) is made `--requests` times directly to a local TLS origin, then through the sidecar
(plain HTTP in, TLS out, key injected, usage metered, one log line each), one at a time and
then `--concurrency` at once. The client and the origin share this process; the sidecar is a
real `awf-api-proxy` process whose CPU time comes from /proc/<pid>/stat. No assertions: it
prints a table.

    python -m bench.api_proxy [--requests 300] [--events 50] [--concurrency 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.support.api_proxy import (
    KEYS,
    ApiProxyProc,
    fake_providers,
    running_api_proxy,
    target_args,
    write_keys,
)


@dataclass(frozen=True, slots=True)
class Run:
    """One repetition of one case."""

    latencies: list[float]  # seconds, request start to the end of the stream
    first_event: list[float]  # seconds to the first bytes of the stream
    wall_s: float
    cpu_s: float | None  # the sidecar's CPU over the run

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p95_ms(self) -> float:
        return sorted(self.latencies)[int(0.95 * (len(self.latencies) - 1))] * 1000


def spread(values: Sequence[float], fmt: str) -> str:
    """'median [min-max]' over the repetitions, as the rest of bench/ reports."""
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} [{format(min(values), fmt)} to {format(max(values), fmt)}]"


def row(case: str, runs: list[Run], base: list[Run] | None, n: int) -> str:
    added = "" if base is None else spread(
        [r.median_ms - b.median_ms for r, b in zip(runs, base, strict=True)], "+.2f")
    cpus = [r.cpu_s / n * 1e6 for r in runs if r.cpu_s is not None]
    cpu = spread(cpus, ",.0f") if cpus else ""
    return (f"| {case} | {spread([r.median_ms for r in runs], '.2f')} | "
            f"{spread([r.p95_ms for r in runs], '.2f')} | "
            f"{spread([statistics.median(r.first_event) * 1000 for r in runs], '.2f')} | "
            f"{added} | {spread([n / r.wall_s for r in runs], ',.0f')} | {cpu} |")


async def one(session: aiohttp.ClientSession, url: str, body: bytes,
              headers: dict[str, str]) -> tuple[float, float]:
    t0 = time.perf_counter()
    first = 0.0
    async with session.post(url, data=body, headers=headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url}: {resp.status} {await resp.text()}")
        async for _ in resp.content.iter_any():
            if not first:
                first = time.perf_counter() - t0
    return time.perf_counter() - t0, first


async def run_case(url: str, n: int, concurrency: int, ctx: ssl.SSLContext,
                   headers: dict[str, str], sidecar: ApiProxyProc | None) -> Run:
    body = b'{"model":"gpt-bench","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    connector = aiohttp.TCPConnector(ssl=ctx, limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(min(20, n)):  # warm: connections, caches
            await one(session, url, body, headers)
        cpu0 = sidecar.cpu_seconds() if sidecar else None
        latencies: list[float] = []
        firsts: list[float] = []
        todo = iter(range(n))

        async def worker() -> None:
            for _ in todo:
                total, first = await one(session, url, body, headers)
                latencies.append(total)
                firsts.append(first)

        t0 = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(concurrency):
                tg.create_task(worker())
        wall = time.perf_counter() - t0
        cpu = sidecar.cpu_seconds() - cpu0 if sidecar and cpu0 is not None else None
    return Run(latencies, firsts, wall, cpu)


async def bench(n: int, events: int, concurrency: int, repeat: int) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="awf-bench-api-") as tmp_name:
        tmp = Path(tmp_name)
        async with fake_providers(tmp) as fake:
            ctx = ssl.create_default_context(cafile=str(fake.ca_file))
            keys = write_keys(tmp / "keys", KEYS)
            path = f"/stream/{events}"
            direct_url = f"https://127.0.0.1:{fake.port}{path}"
            direct_headers = {"Authorization": f"Bearer {KEYS['OPENAI_API_KEY']}",
                              "Content-Type": "application/json"}
            proxied_headers = {"Authorization": "Bearer placeholder",
                               "Content-Type": "application/json"}
            async with running_api_proxy(
                "--keys-file", str(keys), "--extra-ca-certs", str(fake.ca_file),
                "--log-dir", str(tmp / "logs"), *target_args(fake.port),
            ) as sidecar:
                url = sidecar.url("openai", path)
                results: dict[int, tuple[list[Run], list[Run]]] = {
                    c: ([], []) for c in (1, concurrency)}
                for _ in range(repeat):  # interleaved, so a load change hits both sides
                    for c, (direct, via) in results.items():
                        direct.append(await run_case(direct_url, n, c, ctx, direct_headers,
                                                     None))
                        via.append(await run_case(url, n, c, ctx, proxied_headers, sidecar))
                rss = sidecar.rss_peak_kib()
    load = os.getloadavg()[0]
    lines = [
        f"awf-api-proxy bench: {n} streamed requests per case and repetition, {events} SSE "
        f"events each (+ usage), {repeat} repetitions (median [range]), {os.cpu_count()} "
        f"CPUs, load average {load:.1f}; sidecar RSS peak {rss / 1024:.1f} MiB",
        "",
        "| case | median ms | p95 ms | first bytes ms | added ms (median) | req/s "
        "| sidecar CPU µs/req |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c, (direct, via) in results.items():
        lines.append(row(f"direct, c={c}", direct, None, n))
        lines.append(row(f"via awf-api-proxy, c={c}", via, direct, n))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.api_proxy",
                                 description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    for line in asyncio.run(bench(args.requests, args.events, args.concurrency, args.repeat)):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
