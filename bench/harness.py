"""Load benchmarks of awf-proxy against Squid, in one run, on this machine; writes RESULTS.md.

Run through bench/run.sh (it installs squid, nginx, wrk and compiles bench/loadgen.c). Layout of
a run: the harness and everything it starts for load (wrk, loadgen, the nginx origin) are pinned
to CPU 0; each proxy under test is pinned to CPU 1 with taskset. Everything listens on 127.0.0.1
and lives under one temp dir on /dev/shm (logs included), removed at the end; every process is
stopped by its PID. Cases alternate the proxy order between repetitions to spread drift evenly.
Cases (e) (transparent mode through a real nft redirect, bench/transparent.py) and (f) (`awf run`
warm start, bench/warmstart.py) measure awf alone and need root; without it they say so.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from bench import bump, cases, guard, origin, report, squid, transparent
from bench.cases import CaseError, Env, Sample
from bench.report import AWF, SQUID
from bench.services import Service, ServiceError, free_port, set_group_nice
from bench.stats import BenchParseError

REPO = Path(__file__).resolve().parents[1]
# hand-written sections (measurements made outside this harness), appended to a full run's file
ADDENDA = REPO / "bench" / "RESULTS-addenda.md"
LOAD_CPU = 0
PROXY_CPU = 1
# What one measurement may raise; it marks that proxy's case failed, the run goes on.
MEASURE_ERRORS = (CaseError, ServiceError, BenchParseError, OSError, subprocess.TimeoutExpired)


@dataclass(frozen=True, slots=True)
class Plan:
    quick: bool
    reps: int
    duration: float
    warmup: float
    conns: int
    idle_sizes: tuple[int, ...]
    bulk_deadline: float
    cases: frozenset[str]
    warm_runs: int = 10


def make_plan(quick: bool, reps: int | None, duration: float | None, only: str | None) -> Plan:
    all_cases = frozenset({"a", "b", "b1", "c", "d", "e", "f", "h"})
    chosen = all_cases if not only else frozenset(c.strip() for c in only.split(",") if c.strip())
    if "e1" in chosen:  # e measures e1 too, as b does b1
        chosen = (chosen - {"e1"}) | {"e"}
    if chosen & {"h1", "h2"}:  # h measures both bump cases
        chosen = (chosen - {"h1", "h2"}) | {"h"}
    unknown = chosen - all_cases
    if unknown:
        raise SystemExit(
            f"bench: unknown case(s) {sorted(unknown)!r}; choose from {sorted(all_cases)!r}"
        )
    return Plan(
        quick=quick,
        reps=reps or (1 if quick else 3),
        duration=duration or (3.0 if quick else 10.0),
        warmup=1.0 if quick else 2.0,
        conns=64,
        idle_sizes=(1000, 5000) if quick else (1000, 5000, 10000),
        bulk_deadline=120.0,
        cases=chosen,
        warm_runs=5 if quick else 10,
    )


# ---------------------------------------------------------------------------------------------
# proxies


@dataclass(slots=True)
class ProxyLauncher:
    name: str
    port: int
    argv: list[str]
    ready_pattern: str
    log_path: Path
    record: Callable[[Sequence[str]], None]
    nice: int = 0

    def start(self) -> Service:
        self.record(self.argv)
        # the port too: Squid has printed its line and still refused the pre-flight's connects
        svc = Service(
            self.name, self.argv, self.log_path, ready_pattern=self.ready_pattern,
            ready_port=self.port, nice=self.nice,
        )
        svc.start(timeout=30.0)
        return svc


def proxy_cpus(workers: int) -> str:
    """Where the proxies run: CPU 1, or with --workers N > 1 every CPU (the load stays on 0)."""
    return str(PROXY_CPU) if workers <= 1 else f"0-{(os.cpu_count() or 2) - 1}"


def awf_launcher(
    tmp: Path, awf_bin: Path, http_port: int, tls_port: int, max_conns: int, record: Any,
    workers: int = 1,
) -> ProxyLauncher:
    port = free_port()
    log_dir = tmp / "awf-log"
    log_dir.mkdir()
    argv = [
        "taskset", "-c", proxy_cpus(workers), str(awf_bin),
        *(["--workers", str(workers)] if workers > 1 else []),
        "--listen", f"127.0.0.1:{port}",
        "--allow-domains", origin.ORIGIN_NAME,
        "--resolve", f"{origin.ORIGIN_NAME}=127.0.0.1",
        "--allow-range", "127.0.0.1/32",
        "--allow-ports", f"{http_port},{tls_port}",
        "--log-dir", str(log_dir),
        "--max-connections", str(max_conns),
    ]  # fmt: skip
    pattern = rf"awf-proxy listening on 127\.0\.0\.1:{port}\b"
    return ProxyLauncher(AWF, port, argv, pattern, tmp / "awf-proxy.stderr", record)


def squid_launcher(
    tmp: Path, http_port: int, tls_port: int, max_fds: int, record: Any, workers: int = 1
) -> ProxyLauncher:
    layout = squid.SquidLayout(tmp / "squid", free_port())
    squid.prepare(layout, [http_port, tls_port], max_fds, workers)
    return ProxyLauncher(
        SQUID, layout.port, squid.squid_argv(layout, workers, proxy_cpus(workers)),
        squid.READY_PATTERN,
        tmp / "squid.stderr", record,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# machine facts


def _run_text(argv: Sequence[str]) -> str:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    return (res.stdout + res.stderr).strip()


def machine_facts(awf_bin: Path) -> dict[str, str]:
    model = "?"
    for line in _run_text(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    awf_version = _run_text([str(awf_bin), "--version"]).splitlines() if awf_bin.exists() else []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    git = _run_text(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = _run_text(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    return {
        "cpu_model": model,
        "cpus": str(os.cpu_count()),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0] + f" ({sys.executable})",
        "squid": squid.squid_version(),
        "nginx": _run_text(["nginx", "-v"]).splitlines()[0] if shutil.which("nginx") else "missing",
        "wrk": _run_text(["wrk", "-v"]).splitlines()[0] if shutil.which("wrk") else "missing",
        "awf_proxy": awf_version[-1] if awf_version else "not installed",
        "nofile": f"RLIMIT_NOFILE soft {soft} / hard {hard}",
        "git": (git if "fatal" not in git else "no commit yet")
        + (" (+ local changes)" if dirty else ""),
    }


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# ---------------------------------------------------------------------------------------------
# the run


WARM_TITLE = "(f) `awf run` warm start: exec of awf to the command's first byte"


class Runner:
    def __init__(
        self,
        plan: Plan,
        env: Env,
        launchers: dict[str, ProxyLauncher],
        awf_bin: Path | None = None,
    ) -> None:
        self.plan = plan
        self.env = env
        self.launchers = launchers
        self.awf_bin = awf_bin
        self.running: dict[str, Service] = {}
        self.status: dict[str, str] = {}
        self.results: dict[str, Any] = {}
        self.preflight: dict[str, Any] = {}
        self.transparent_setup: dict[str, Any] = {}

    def log(self, msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def start(self, name: str) -> None:
        old = self.running.pop(name, None)
        if old is not None:
            old.stop()
        self.running[name] = self.launchers[name].start()

    def stop_all(self) -> None:
        for name in list(self.running):
            self.running.pop(name).stop()

    def bring_up(self) -> None:
        for name in self.launchers:
            try:
                self.start(name)
            except (ServiceError, OSError) as exc:
                self.status[name] = f"unavailable: {str(exc).splitlines()[0]}"
                self.log(f"{name}: {exc}")
                continue
            lp = self.launchers[name]
            checks = cases.preflight(lp.port, self.env.http_port, self.env.tls_port)
            self.preflight[name] = checks
            bad = [c for c in checks if not c["ok"]]
            if bad:
                self.status[name] = "excluded: pre-flight allow/deny checks failed: " + "; ".join(
                    f"{c['probe']} expected {c['expect']} got {c['got']}" for c in bad
                )
                self.running.pop(name).stop()
            else:
                self.status[name] = "ok"
            self.log(f"{name} on 127.0.0.1:{lp.port}: {self.status[name]}")
        if self.status.get(SQUID) != "ok":
            raise SystemExit(
                f"bench: Squid is not usable ({self.status.get(SQUID)}); nothing to compare with"
            )

    def active(self, rep: int) -> list[str]:
        names = [n for n in (SQUID, AWF) if self.status.get(n) == "ok"]
        return names if rep % 2 == 0 else names[::-1]

    def run_case(
        self,
        case_id: str,
        fn: Callable[[Service, int], Sample],
        *,
        warmup: Callable[[Service, int], Any] | None,
    ) -> None:
        per: dict[str, Any] = {n: {"status": "ok", "samples": []} for n in self.active(0)}
        if warmup is not None:
            for name in self.active(0):
                try:
                    warmup(self.running[name], self.launchers[name].port)
                except MEASURE_ERRORS as exc:
                    per[name]["status"] = f"failed in warm-up: {exc}"
        for rep in range(self.plan.reps):
            for name in self.active(rep):
                if per[name]["status"] != "ok":
                    continue
                try:
                    s = fn(self.running[name], self.launchers[name].port)
                except MEASURE_ERRORS as exc:
                    per[name]["status"] = f"failed: {exc}"
                    self.log(f"{case_id} {name}: FAILED {exc}")
                    continue
                per[name]["samples"].append(s.as_dict())
                self.log(f"{case_id} rep {rep + 1} {name}: {_brief(s)}")
        self._store(case_id, per)

    def _store(self, case_id: str, per: dict[str, Any]) -> None:
        spec = next(s for s in report.case_specs(self.plan.idle_sizes) if s.case_id == case_id)
        for p in per.values():
            p["metrics"] = report.summarise(spec, p["samples"])
        self.results[case_id] = {"title": spec.title, "status": "ok", "per_proxy": per}

    def run_idle(self, size: int, nofile_hard: int) -> None:
        case_id = f"d-{size}"
        n = min(size, (nofile_hard - 256) // 2)  # the proxy holds 2 fds per tunnel
        per: dict[str, Any] = {name: {"status": "ok", "samples": []} for name in self.active(0)}
        for rep in range(self.plan.reps):
            for name in self.active(rep):
                if per[name]["status"] != "ok":
                    continue
                try:
                    self.start(name)  # fresh: the baseline is not blurred by earlier cases
                    warm = cases.probes(self.env.http_port, self.env.tls_port)[0].request
                    if cases.probe(self.launchers[name].port, warm) != 200:
                        raise CaseError("warm-up GET through the fresh proxy failed")
                    s = cases.case_idle(
                        self.env, self.running[name], self.launchers[name].port, n, 120.0
                    )
                except MEASURE_ERRORS as exc:
                    per[name]["status"] = f"failed: {exc}"
                    self.log(f"{case_id} {name}: FAILED {exc}")
                    continue
                per[name]["samples"].append(s.as_dict())
                self.log(f"{case_id} rep {rep + 1} {name}: {_brief(s)}")
        self._store(case_id, per)
        if n != size:
            self.results[case_id]["note"] = (
                f"capped to {n} tunnels: each tunnel costs the proxy 2 fds and the hard "
                f"RLIMIT_NOFILE is {nofile_hard} here (raising it needs CAP_SYS_RESOURCE)"
            )

    def run(self) -> None:
        p, env = self.plan, self.env
        if "a" in p.cases:
            self.log("case (a): keep-alive absolute-URI GET (wrk)")
            self.run_case(
                "a",
                partial(cases.case_a, env, conns=p.conns, duration=p.duration),
                warmup=partial(cases.case_a, env, conns=p.conns, duration=p.warmup),
            )
        for cid, tls in (("b", False), ("b1", True)):
            if cid in p.cases or (cid == "b1" and "b" in p.cases):
                self.log(f"case ({cid}): a new CONNECT tunnel per request{' + TLS' if tls else ''}")
                self.run_case(
                    cid,
                    partial(cases.case_tunnels, env, tls=tls, conns=p.conns, duration=p.duration),
                    warmup=partial(
                        cases.case_tunnels, env, tls=tls, conns=p.conns, duration=p.warmup
                    ),
                )
        if "c" in p.cases:
            for cid, tunnel in (("c-tunnel", True), ("c-get", False)):
                self.log(f"case ({cid}): 256 MiB {'through a tunnel' if tunnel else 'as one GET'}")
                bulk = partial(cases.case_bulk, env, tunnel=tunnel, deadline=p.bulk_deadline)
                self.run_case(cid, bulk, warmup=bulk)
        if "d" in p.cases:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            for size in p.idle_sizes:
                self.log(f"case (d): {size} idle tunnels (fresh proxies)")
                self.run_idle(size, hard)
        if "e" in p.cases:
            self.run_transparent()
        if "f" in p.cases:
            self.run_warm_start()
        if "h" in p.cases:
            self.run_bump()

    def run_bump(self) -> None:
        """(h1)/(h2): a bumping awf-proxy and a bumping Squid, started for these cases only."""
        self.log("cases (h1)/(h2): SSL bump, keep-alive GETs and new connections")
        p = self.plan
        out = bump.run(
            bump.Params(
                env=self.env,
                awf_bin=self.awf_bin or Path("/nonexistent/awf-proxy"),
                proxy_cpu=PROXY_CPU,
                reps=p.reps,
                duration=p.duration,
                warmup=p.warmup,
                conns=p.conns,
                max_fds=resource.getrlimit(resource.RLIMIT_NOFILE)[1],
                log=self.log,
                proxies=tuple(n for n in (SQUID, AWF) if n in self.launchers),
            )
        )
        self.results.update(out["cases"])
        for name, checks in out["setup"].get("preflight", {}).items():
            self.preflight[f"{name} (h, ssl-bump)"] = checks

    def run_transparent(self) -> None:
        """(e)/(e1): a separate awf-proxy with --transparent-listen, fed through nftables."""
        titles = {s.case_id: s.title for s in report.case_specs(())}
        why = (
            "skipped: awf-proxy was not requested (--proxies)"
            if self.awf_bin is None
            else transparent.skip_reason(self.awf_bin)
        )
        if why is not None or self.awf_bin is None:
            for cid in transparent.CASE_VARIANTS:
                self.results[cid] = {"title": titles[cid], "status": why}
            self.log(f"case (e): {why}")
            return
        self.log("case (e): transparent-mode tunnels through an nft redirect (client netns)")
        p = self.plan
        out = transparent.run(
            transparent.Params(
                env=self.env,
                awf_bin=self.awf_bin,
                proxy_cpu=PROXY_CPU,
                load_cpu=LOAD_CPU,
                reps=p.reps,
                duration=p.duration,
                warmup=p.warmup,
                conns=p.conns,
                log=self.log,
            )
        )
        self.results.update(out["cases"])
        self.transparent_setup = out["setup"]
        if "preflight" in out["setup"]:
            self.preflight[f"{AWF} (e, transparent)"] = out["setup"]["preflight"]

    def run_warm_start(self) -> None:
        """(f): `python -m bench.warmstart` on both CPUs (awf forks its proxy to run in
        parallel, so the harness's own CPU-0 pinning must not be inherited), per backend."""
        case: dict[str, Any] = {"title": WARM_TITLE, "status": "ok", "backends": {}}
        self.results["f"] = case
        for backend in ("netns", "docker"):
            case["backends"][backend] = self._warm_backend(backend)

    def _warm_backend(self, backend: str) -> dict[str, Any]:
        runs = self.plan.warm_runs
        result: dict[str, Any] = {"status": "ok"}
        if os.geteuid() != 0:
            result["status"] = f"skipped: `awf run --backend {backend}` needs root here"
            self.log(f"case (f): {result['status']}")
            return result
        if backend == "docker" and not os.path.exists("/var/run/docker.sock"):
            result["status"] = "skipped: no Docker engine at /var/run/docker.sock"
            self.log(f"case (f): {result['status']}")
            return result
        out = self.env.tmp / f"warmstart-{backend}.json"
        argv = [
            "taskset", "-c", f"{LOAD_CPU},{PROXY_CPU}", sys.executable, "-m", "bench.warmstart",
            "--backend", backend, "--runs", str(runs), "--json", str(out),
            "--logs-root", str(self.env.tmp / f"warmstart-logs-{backend}"),
        ]  # fmt: skip
        self.env.record(argv)
        self.log(f"case (f): {runs} warm starts of `awf run --backend {backend} -- printf x`")
        try:
            res = run_graceful(argv, nice=self.env.nice, timeout=(runs + 1) * 130.0)
            if res.returncode != 0:
                raise CaseError(
                    f"bench.warmstart exited {res.returncode}: {res.stderr.strip()[-500:]!r}"
                )
            raw = json.loads(out.read_text())
        except (CaseError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
            result["status"] = f"failed: {exc}"
            self.log(f"case (f): FAILED {exc}")
            return result
        result["raw"] = raw
        result["metrics"] = report.warm_summary(
            raw.get("first_byte_s", []), raw.get("whole_run_s", []), raw.get("timings", [])
        )
        m = result["metrics"]
        self.log(
            f"case (f): {backend} first byte median {m['first_byte']['median']:.3f}s "
            f"p95 {m['first_byte_p95']:.3f}s"
        )
        return result

def run_graceful(
    argv: Sequence[str], *, nice: int, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Like services.run_load, from the repo, but a stop is SIGTERM to the group first, so an
    `awf run` in it can remove its namespace and table before the SIGKILL."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=REPO,
    )
    set_group_nice(proc.pid, nice)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        if proc.returncode is None:  # not reaped yet: the group ID is still ours
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate(timeout=10)
        raise
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def _brief(s: Sample) -> str:
    rate = s.units / s.elapsed_s if s.elapsed_s else 0.0
    parts = [
        f"units={s.units}",
        f"elapsed={s.elapsed_s:.2f}s",
        f"rate={rate:,.0f}/s",
        f"proxy_cpu={s.cpu_s:.2f}s",
        f"load_cpu={s.load_cpu_s:.2f}s",
        f"errors={s.errors}",
    ]
    if s.p99_us is not None:
        parts.append(f"p50={s.p50_us:.0f}us p99={s.p99_us:.0f}us")
    if s.rss_delta_bytes is not None and s.units:
        parts.append(f"rss/tunnel={s.rss_delta_bytes / s.units / 1024:.1f}kB")
    return " ".join(parts)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def notes(plan: Plan, conns: int) -> list[str]:
    return [
        f"CPU pinning: each proxy runs under `taskset -c {PROXY_CPU}`; the harness, wrk, loadgen "
        f"and the nginx origin (1 worker) under `taskset -c {LOAD_CPU}`. Other processes on the "
        "machine are not fenced off; the load averages above show how busy it was.",
        "Proxy CPU = utime+stime (+ reaped children) of the proxy's process tree from "
        "/proc/<pid>/stat, read just before and just after each measured window (10 ms ticks). "
        "'generator+origin CPU' is the same for CPU 0 (loadgen/wrk via RUSAGE_CHILDREN, plus "
        "nginx); near 100 % there means the load side, not the proxy, was the limit. "
        "'CPU N used by other processes' = user+nice+system+steal ticks of that CPU in "
        "/proc/stat over the same window minus the bench's own processes there (irq/softirq "
        "left out: the bench's loopback traffic lands there); above 10 % on CPU 1 the case is "
        "flagged, as other work on the machine competed with the proxy.",
        f"(a) `wrk -t1 -c{conns}` with a Lua script setting the request target to the absolute "
        f"URI `http://origin.test:PORT/small` and the matching Host; {plan.duration:g} s per "
        f"repetition after a {plan.warmup:g} s warm-up. Latency percentiles are wrk's.",
        f"(b)/(b1) bench/loadgen.c (C, epoll): {conns} concurrent slots, each doing connect -> "
        "CONNECT -> [TLS 1.3 handshake, no verification, no resumption] -> GET /small "
        f"(Connection: close) -> close, {plan.duration:g} s per repetition after a "
        f"{plan.warmup:g} s warm-up; latency is connect() to the last body byte.",
        "(c) one 256 MiB response (sparse file on tmpfs, nginx sendfile) read through one "
        "CONNECT tunnel, or as one absolute-URI GET, after one warm-up transfer; MB = 10^6 "
        "bytes; time from connect() to the last byte.",
        "(d) each repetition starts a fresh proxy, sends one GET through it, then reads the RSS "
        "of its process tree (stable to 1 %) before and after opening N tunnels (CONNECT + one "
        "keep-alive GET each, then idle); kB = 1024 bytes. Squid's max_filedescriptors is set "
        "to the hard RLIMIT_NOFILE the harness can give it.",
        "(e)/(e1) transparent mode, root only: a client namespace `awf-bench-<id>` joined to the "
        "host by a veth (netfilter.netns, as `awf run --backend netns` makes it), and in the host "
        "namespace table `inet awf_bench_<id>` (netfilter.ruleset.ProxySideRuleset, the netns "
        "backend's host table) whose prerouting nat chain redirects the client's TCP 80/443 to "
        "a separate awf-proxy's `--transparent-listen` port on the host end of the veth (pinned "
        f"to CPU {PROXY_CPU}). loadgen runs in the namespace (`ip netns exec`, CPU {LOAD_CPU}) "
        "and dials 192.0.2.1:80 (origin-form GET /small, Host: origin.test) or 192.0.2.1:443 "
        "(TLS 1.3 handshake with SNI origin.test, then the GET): TEST-NET-1 is never routed, so "
        "only the redirect gets the connection anywhere. The proxy reads the original "
        "destination with SO_ORIGINAL_DST, names the origin by Host or SNI and dials origin.test "
        "through `--resolve origin.test=127.0.80.1` (a second nginx with the same config, on "
        "127.0.80.1:80 and :443, because a transparent proxy dials the original port). The "
        "same proxy is also measured as an explicit CONNECT proxy over the same veth (its "
        "`--listen` port), the fairest baseline; the loopback case (b)/(b1) is shown beside it. "
        "Pre-flight from the namespace: allowed Host/SNI pass, denied.test gets 403 (plain) or "
        "a closed connection (TLS). Squid is not compared: intercepting TLS by SNI needs Squid's "
        "ssl-bump (peek/splice) with an `https_port ... intercept ssl-bump` listener, which "
        "Debian's squid package is not built for (that needs squid-openssl) and which would "
        "measure a different code path from (b). Namespace, veth and table are removed on "
        "every path (Ctrl-C included).",
        f"(f) `python -m bench.warmstart --runs {plan.warm_runs}` (after one unmeasured warm-up "
        "run): each run execs `awf run --backend netns --allow-domains bench.test -- printf x` "
        "and times, on the wall clock, exec of awf to the first byte the command writes, and "
        "exec to awf's exit; awf's own run.json `timings` (seconds since awf's t0, taken after "
        "its imports) show where the time goes. It runs on both CPUs (`taskset -c 0,1`): awf "
        "forks its proxy to start it in parallel. p95 is interpolated (numpy type 7). Target: "
        f"median ≤ {report.WARM_START_NETNS_S:g} s for the netns backend.",
        "(h1)/(h2) SSL bump (bench/bump.py): a second awf-proxy (`--ssl-bump --ca-cert "
        "--ca-key --extra-ca-certs`) and a second Squid (squid-openssl: `http_port ... ssl-bump "
        "generate-host-certificates=on`, `sslcrtd_program security_file_certgen`, `ssl_bump bump "
        "all`, `tls_outgoing_options cafile=`), both on CPU 1, sharing one ECDSA P-256 CA from "
        "`awf-proxy --make-ca` (Squid's leaves reuse the CA key, awf's a P-256 key of their own); "
        "both verify the origin (the harness's nginx TLS port) against its certificate. (h1) "
        f"loadgen `tunnel-tls-ka`: {conns} connections, each CONNECT + one TLS handshake, then "
        "keep-alive GET /small one after another (unit: a request); (h2) loadgen `tunnel-tls`: "
        "CONNECT + full TLS handshake with the leaf (no resumption) + GET /small (Connection: "
        "close) + close (unit: a connection). Pre-flight: a GET whose leaf verifies against the "
        "run's CA (so it was bumped), and denied.test refused (Squid bumps it first).",
        "Both proxies log every request to a file on tmpfs (/dev/shm): Squid `access_log stdio:`,"
        " awf-proxy `--log-dir`. Squid has no cache_dir and `cache deny all`.",
        "Repetitions alternate which proxy goes first. With `--nice N` the harness and every "
        "process it starts (each in its own session, so its scheduler autogroup) run at niceness "
        "N, the same for both proxies.",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.harness", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="1 repetition, 3 s loads, 1k/5k idle")
    ap.add_argument("--reps", type=int, help="repetitions per case (default 3, quick 1)")
    ap.add_argument("--duration", type=float, help="seconds per timed load (default 10, quick 3)")
    ap.add_argument("--cases", help="comma-separated subset of a,b,b1,c,d,e,f,h")
    ap.add_argument("--proxies", default=f"{SQUID},{AWF}", help="comma-separated: squid,awf-proxy")
    ap.add_argument(
        "--workers", type=int, default=1,
        help="N > 1: awf-proxy --workers N against Squid's `workers N`, both on every CPU; the "
        "results go to out/RESULTS-workersN.md (use with --cases a,b)",
    )
    ap.add_argument("--loadgen", type=Path, default=REPO / "bench" / "out" / "loadgen")
    ap.add_argument("--awf-proxy", type=Path, default=REPO / ".venv" / "bin" / "awf-proxy")
    ap.add_argument("--out-dir", type=Path, default=REPO / "bench" / "out")
    ap.add_argument(
        "--results-md", type=Path, help="default bench/RESULTS.md (quick: out/RESULTS-quick.md)"
    )
    ap.add_argument("--entry", help="the command line to print as the way to reproduce")
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness for the harness and all it starts (negative puts the bench ahead of "
        "other work on a shared machine; the same for both proxies)",
    )
    ap.add_argument(
        "--keep-tmp", action="store_true", help="leave the /dev/shm temp dir for inspection"
    )
    ap.add_argument(
        "--render-from",
        type=Path,
        help="only rewrite the Markdown (to --results-md, default bench/RESULTS.md) from a "
        "results JSON of an earlier run",
    )
    args = ap.parse_args(argv)
    if args.render_from is not None:
        md = args.results_md or REPO / "bench" / "RESULTS.md"
        md.write_text(report.render(json.loads(args.render_from.read_text())))
        print(f"[bench] wrote {md}", file=sys.stderr)
        return 0
    plan = make_plan(args.quick, args.reps, args.duration, args.cases)

    if (os.cpu_count() or 1) < 2:
        raise SystemExit("bench: needs 2 CPUs (proxy on CPU 1, load on CPU 0)")
    if not args.loadgen.exists():
        raise SystemExit(
            f"bench: no load generator at {str(args.loadgen)!r}; run bench/run.sh to build it"
        )
    for tool in ("squid", "nginx", "wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool!r} is not installed; run bench/run.sh (it installs it)")
    os.sched_setaffinity(0, {LOAD_CPU})
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # inherited by every process we start
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)

    wanted = [p.strip() for p in args.proxies.split(",") if p.strip()]
    entry = args.entry or shlex.join(
        [Path(sys.executable).name, "-m", "bench.harness", *(argv or sys.argv[1:])]
    )
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    workers: int = args.workers
    if workers < 1:
        raise SystemExit("bench: --workers must be at least 1")
    tag = f"workers{workers}" if workers > 1 else ("quick" if plan.quick else "")
    md_path: Path = args.results_md or (
        out_dir / f"RESULTS-{tag}.md" if tag else REPO / "bench" / "RESULTS.md"
    )
    json_path = out_dir / (f"results-{tag}.json" if tag else "results.json")

    started = time.monotonic()
    commands: list[str] = []

    def record(cmd: Sequence[str]) -> None:
        line = shlex.join(cmd)
        if line not in commands:
            commands.append(line)

    meta: dict[str, Any] = {
        "mode": "quick" if plan.quick else "full",
        "entry": entry,
        "reps": plan.reps,
        "idle_sizes": list(plan.idle_sizes),
        "workers": workers,
        "started": _now(),
        "loadavg_start": loadavg(),
    }
    meta.update(machine_facts(args.awf_proxy))
    meta["niceness"] = str(os.getpriority(os.PRIO_PROCESS, 0))
    tmp = Path(tempfile.mkdtemp(prefix="awf-bench-", dir="/dev/shm"))
    tmp.chmod(0o755)  # squid and nginx workers drop root and must reach their files
    max_idle = max(plan.idle_sizes)
    runner: Runner | None = None
    try:
        with ExitStack() as stack:
            layout = origin.OriginLayout(tmp / "origin", free_port(), free_port())
            layout.root.mkdir()
            origin.prepare(layout, max_conns=max_idle + 1024)
            ng_argv = origin.nginx_argv(layout)
            record(ng_argv)
            ng = Service(
                "nginx", ng_argv, tmp / "nginx.stderr", ready_port=layout.tls_port, nice=args.nice
            )
            ng.start()
            stack.callback(ng.stop)
            env = Env(
                tmp=tmp,
                loadgen=args.loadgen.resolve(),
                origin=ng,
                http_port=layout.http_port,
                tls_port=layout.tls_port,
                record=record,
                nice=args.nice,
            )
            launchers: dict[str, ProxyLauncher] = {}
            if SQUID in wanted:
                launchers[SQUID] = squid_launcher(
                    tmp, layout.http_port, layout.tls_port, hard, record, workers
                )
            if AWF in wanted and args.awf_proxy.exists():
                launchers[AWF] = awf_launcher(
                    tmp, args.awf_proxy, layout.http_port, layout.tls_port, max_idle * 2, record,
                    workers,
                )
            for launcher in launchers.values():
                launcher.nice = args.nice
            runner = Runner(
                plan, env, launchers, awf_bin=args.awf_proxy if AWF in wanted else None
            )
            if AWF in wanted and AWF not in launchers:
                runner.status[AWF] = f"unavailable: {str(args.awf_proxy)!r} does not exist"
            stack.callback(runner.stop_all)
            runner.bring_up()
            runner.run()
    finally:
        if runner is not None:
            _save_logs(tmp, out_dir)
        if args.keep_tmp:
            print(f"[bench] temp dir kept: {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    assert runner is not None

    meta.update(
        {
            "finished": _now(),
            "wall_s": time.monotonic() - started,
            "loadavg_end": loadavg(),
            "notes": notes(plan, plan.conns),
        }
    )
    not_measured: list[dict[str, str]] = []
    results: dict[str, Any] = {
        "meta": meta,
        "proxies": {n: {"status": runner.status.get(n, "not requested")} for n in (SQUID, AWF)},
        "preflight": runner.preflight,
        "cases": runner.results,
        "not_measured": not_measured,
        "targets": report.verdicts(report.targets(plan.idle_sizes), runner.results),
        "targets_own": report.own_verdicts(runner.results),
        "transparent_setup": runner.transparent_setup,
        "commands": commands,
    }
    json_path.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    md_text = report.render(results)
    if md_path == REPO / "bench" / "RESULTS.md" and ADDENDA.exists():  # a full run's file
        md_text = report.with_addenda(md_text, ADDENDA.read_text())
    md_path.write_text(md_text)
    print(f"[bench] wrote {md_path} and {json_path}", file=sys.stderr)
    if workers > 1:
        return 0  # a side comparison: neither the baseline nor the guard
    if not plan.quick and args.cases is None and set(wanted) == {SQUID, AWF}:
        guard.write_baseline(results)  # the full run is the quick runs' reference
        print(f"[bench] wrote {guard.BASELINE}", file=sys.stderr)
    elif plan.quick:
        text, ok = guard.check(results)
        print(text)
        return 0 if ok else 1
    return 0


def _save_logs(tmp: Path, out_dir: Path) -> None:
    """Keep the services' stderr and squid's cache.log (small) for post-mortems."""
    logs = out_dir / "logs"
    logs.mkdir(exist_ok=True)
    for src in (*tmp.glob("*.stderr"), tmp / "squid" / "cache.log"):
        if src.exists():
            shutil.copyfile(src, logs / src.name)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


if __name__ == "__main__":
    sys.exit(main())
