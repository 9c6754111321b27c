"""The bench cases: one function per case, each producing one Sample for one proxy.

A Sample charges the proxy for everything its process tree spent (utime+stime, reaped children
included) between a /proc reading just before the load starts and one just after it stops, and
also records the load side's CPU (generator + origin, sharing CPU 0) so a reader can see which
side was saturated.
"""

from __future__ import annotations

import resource
import select
import shlex
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import stats
from bench.origin import DENIED_NAME, ORIGIN_NAME
from bench.procstat import busy_percent, read_cpu_times, sample_tree
from bench.services import Service, run_load, set_group_nice


class CaseError(RuntimeError):
    """A case that could not produce a measurement (generator failure, proxy gone)."""


@dataclass(slots=True)
class Sample:
    """One measured window against one proxy."""

    units: int  # requests, tunnels, bytes or idle tunnels, depending on the case
    elapsed_s: float
    cpu_s: float  # proxy process tree
    load_cpu_s: float  # generator + origin (CPU 0)
    p50_us: float | None = None
    p99_us: float | None = None
    errors: int = 0
    rss_delta_bytes: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "elapsed_s": self.elapsed_s,
            "proxy_cpu_s": self.cpu_s,
            "load_cpu_s": self.load_cpu_s,
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "errors": self.errors,
            "rss_delta_bytes": self.rss_delta_bytes,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Env:
    """What every case needs to know about the run."""

    tmp: Path
    loadgen: Path
    origin: Service
    http_port: int
    tls_port: int
    record: Callable[[Sequence[str]], None]  # remember an exact command for RESULTS.md
    nice: int = 0


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class _Window:
    """CPU of proxy tree, origin tree and reaped generator children across one load window."""

    def __init__(self, proxy: Service, origin: Service) -> None:
        self._proxy = proxy
        self._origin = origin
        self._p0 = sample_tree(proxy.pid).cpu_s
        self._o0 = sample_tree(origin.pid).cpu_s
        self._g0 = _children_cpu_s()
        self._cpus0 = read_cpu_times()
        self.busy_pct: dict[str, float] = {}

    def close(self) -> tuple[float, float]:
        self.busy_pct = {str(k): v for k, v in busy_percent(self._cpus0, read_cpu_times()).items()}
        if not self._proxy.alive():
            raise CaseError(f"{self._proxy.name} died during the case; see {self._proxy.log_path}")
        proxy_cpu = sample_tree(self._proxy.pid).cpu_s - self._p0
        load_cpu = (sample_tree(self._origin.pid).cpu_s - self._o0) + (_children_cpu_s() - self._g0)
        return proxy_cpu, load_cpu


# ---------------------------------------------------------------------------------------------
# pre-flight: both proxies must allow and deny the same way


@dataclass(frozen=True, slots=True)
class Probe:
    label: str
    request: bytes
    expect: int


def probes(http_port: int, tls_port: int) -> list[Probe]:
    o = f"{ORIGIN_NAME}:{http_port}"
    t = f"{ORIGIN_NAME}:{tls_port}"
    return [
        Probe(
            f"GET http://{o}/",
            f"GET http://{o}/ HTTP/1.1\r\nHost: {o}\r\nConnection: close\r\n\r\n".encode(),
            200,
        ),
        Probe(
            f"GET http://{DENIED_NAME}/",
            f"GET http://{DENIED_NAME}/ HTTP/1.1\r\nHost: {DENIED_NAME}\r\n"
            "Connection: close\r\n\r\n".encode(),
            403,
        ),
        Probe(f"CONNECT {o}", f"CONNECT {o} HTTP/1.1\r\nHost: {o}\r\n\r\n".encode(), 200),
        Probe(f"CONNECT {t}", f"CONNECT {t} HTTP/1.1\r\nHost: {t}\r\n\r\n".encode(), 200),
        Probe(
            f"CONNECT {DENIED_NAME}:443",
            f"CONNECT {DENIED_NAME}:443 HTTP/1.1\r\nHost: {DENIED_NAME}:443\r\n\r\n".encode(),
            403,
        ),
    ]


def status_of(head: bytes) -> int:
    """Status code of an HTTP/1.x response head (pure)."""
    line = head.split(b"\r\n", 1)[0]
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise CaseError(f"not an HTTP/1.x response: {line[:80]!r}")
    return int(parts[1])


def probe(port: int, request: bytes, timeout: float = 5.0) -> int:
    """Send one request to the proxy, return the response status (reads the head only)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in buf:
            if time.monotonic() > deadline or len(buf) > 65536:
                raise CaseError(f"no complete response head from 127.0.0.1:{port}: {buf[:200]!r}")
            chunk = s.recv(65536)
            if not chunk:
                raise CaseError(f"connection closed before a response head: {buf[:200]!r}")
            buf += chunk
        return status_of(buf)


def preflight(port: int, http_port: int, tls_port: int) -> list[dict[str, Any]]:
    out = []
    for p in probes(http_port, tls_port):
        try:
            got: int | str = probe(port, p.request)
        except (OSError, CaseError) as exc:
            got = f"error: {exc}"
        out.append({"probe": p.label, "expect": p.expect, "got": got, "ok": got == p.expect})
    return out


# ---------------------------------------------------------------------------------------------
# (a) keep-alive absolute-URI GET with wrk

WRK_LUA = """\
-- awf bench: absolute-URI GET through a proxy; generated
wrk.method = "GET"
wrk.path = "http://{authority}/small"
wrk.headers["Host"] = "{authority}"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'AWF_BENCH_JSON {{"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,' ..
    '"err_timeout":%d}}\\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def wrk_lua(authority: str) -> str:
    return WRK_LUA.format(authority=authority)


def case_a(env: Env, proxy: Service, port: int, conns: int, duration: float) -> Sample:
    script = env.tmp / "absolute-get.lua"
    if not script.exists():
        script.write_text(wrk_lua(f"{ORIGIN_NAME}:{env.http_port}"))
    argv = [
        "taskset", "-c", "0", "wrk", "-t1", f"-c{conns}", f"-d{duration:g}s", "--timeout", "5s",
        "-s", str(script), f"http://127.0.0.1:{port}/",
    ]  # fmt: skip
    env.record(argv)
    window = _Window(proxy, env.origin)
    res = run_load(argv, nice=env.nice, timeout=duration + 60)
    cpu, load_cpu = window.close()
    if res.returncode != 0:
        raise CaseError(f"wrk exited {res.returncode}: {res.stderr[-400:]!r}")
    w = stats.parse_wrk_output(res.stdout)
    errors = sum(v for k, v in w.items() if k.startswith("err_"))
    return Sample(
        units=w["requests"],
        elapsed_s=w["duration_us"] / 1e6,
        cpu_s=cpu,
        load_cpu_s=load_cpu,
        p50_us=float(w["p50_us"]),
        p99_us=float(w["p99_us"]),
        errors=errors,
        detail={"wrk": w, "cpu_busy_pct": window.busy_pct},
    )


# ---------------------------------------------------------------------------------------------
# (b), (b1), (c) with the C generator


def _run_loadgen(env: Env, argv: list[str], timeout: float) -> dict[str, Any]:
    env.record(argv)
    res = run_load(argv, nice=env.nice, timeout=timeout)
    if res.returncode != 0:
        raise CaseError(f"loadgen exited {res.returncode}: {res.stderr[-400:]!r}")
    return stats.parse_loadgen_output(res.stdout)


def case_tunnels(
    env: Env, proxy: Service, port: int, *, tls: bool, conns: int, duration: float
) -> Sample:
    target_port = env.tls_port if tls else env.http_port
    lat = env.tmp / "latencies.bin"
    argv = [
        "taskset", "-c", "0", str(env.loadgen), "tunnel-tls" if tls else "tunnel",
        "--proxy", f"127.0.0.1:{port}", "--target", f"{ORIGIN_NAME}:{target_port}",
        "--path", "/small", "-c", str(conns), "-d", f"{duration:g}", "--lat-out", str(lat),
    ]  # fmt: skip
    return loadgen_units(env, proxy, argv, lat, duration + 60)


def loadgen_units(
    env: Env, proxy: Service, argv: list[str], lat: Path, timeout: float
) -> Sample:
    """One timed loadgen run of many small units (tunnels), `argv` writing latencies to `lat`."""
    window = _Window(proxy, env.origin)
    out = _run_loadgen(env, argv, timeout)
    cpu, load_cpu = window.close()
    lats = stats.latencies_from_bytes(lat.read_bytes())
    lat.unlink()
    return Sample(
        units=int(out["completed"]),
        elapsed_s=float(out["elapsed_s"]),
        cpu_s=cpu,
        load_cpu_s=load_cpu,
        p50_us=stats.percentile(lats, 50) if lats else None,
        p99_us=stats.percentile(lats, 99) if lats else None,
        errors=stats.total_errors(out["errors"]),
        detail={"loadgen": out, "cpu_busy_pct": window.busy_pct},
    )


def case_bulk(env: Env, proxy: Service, port: int, *, tunnel: bool, deadline: float) -> Sample:
    argv = [
        "taskset", "-c", "0", str(env.loadgen), "bulk-connect" if tunnel else "bulk-get",
        "--proxy", f"127.0.0.1:{port}", "--target", f"{ORIGIN_NAME}:{env.http_port}",
        "--path", "/big", "-d", f"{deadline:g}", "--timeout", f"{deadline:g}",
    ]  # fmt: skip
    window = _Window(proxy, env.origin)
    out = _run_loadgen(env, argv, deadline + 60)
    cpu, load_cpu = window.close()
    errors = stats.total_errors(out["errors"])
    if int(out["completed"]) != 1:
        errors = max(errors, 1)
    return Sample(
        units=int(out["bytes"]),
        elapsed_s=float(out["elapsed_s"]),
        cpu_s=cpu,
        load_cpu_s=load_cpu,
        errors=errors,
        detail={"loadgen": out, "cpu_busy_pct": window.busy_pct},
    )


# ---------------------------------------------------------------------------------------------
# (d) idle tunnels


def _readline(proc: subprocess.Popen[str], deadline: float) -> str:
    assert proc.stdout is not None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise CaseError("loadgen did not report READY in time")
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 1.0))
        if ready:
            return proc.stdout.readline()
        if proc.poll() is not None:
            raise CaseError(f"loadgen exited {proc.returncode} before READY")


def stable_rss(pid: int, tries: int = 10, interval: float = 0.2) -> tuple[int, int]:
    """RSS (bytes) and fd count of a process tree once two readings agree within 1 %."""
    prev = sample_tree(pid)
    for _ in range(tries):
        time.sleep(interval)
        cur = sample_tree(pid)
        if abs(cur.rss_bytes - prev.rss_bytes) <= prev.rss_bytes * 0.01:
            return cur.rss_bytes, cur.fds
        prev = cur
    return prev.rss_bytes, prev.fds


def case_idle(env: Env, proxy: Service, port: int, tunnels: int, setup_timeout: float) -> Sample:
    """RSS growth of a fresh proxy holding `tunnels` idle tunnels (one keep-alive GET each)."""
    base_rss, base_fds = stable_rss(proxy.pid)
    argv = [
        "taskset", "-c", "0", str(env.loadgen), "idle",
        "--proxy", f"127.0.0.1:{port}", "--target", f"{ORIGIN_NAME}:{env.http_port}",
        "--path", "/small", "-c", str(tunnels), "-d", f"{setup_timeout + 120:g}",
        "--timeout", "30",
    ]  # fmt: skip
    env.record(argv)
    window = _Window(proxy, env.origin)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    set_group_nice(proc.pid, env.nice)
    try:
        ok, errs = stats.parse_ready_line(_readline(proc, t0 + setup_timeout))
        setup_s = time.monotonic() - t0
        rss, fds = stable_rss(proxy.pid)
    finally:
        try:
            out_text, err_text = proc.communicate(input="", timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out_text, err_text = proc.communicate(timeout=10)
    cpu, load_cpu = window.close()
    out = stats.parse_loadgen_output(out_text)
    return Sample(
        units=ok,
        elapsed_s=setup_s,
        cpu_s=cpu,
        load_cpu_s=load_cpu,
        errors=errs + stats.total_errors(out["errors"]),
        rss_delta_bytes=rss - base_rss,
        detail={
            "requested": tunnels,
            "rss_before": base_rss,
            "rss_after": rss,
            "fds_before": base_fds,
            "fds_after": fds,
            "loadgen": out,
            "loadgen_stderr": err_text[-400:],
        },
    )


def command_line(argv: Sequence[str]) -> str:
    return shlex.join(argv)
