"""Case (f): warm start of `awf run`, from exec of awf to the command's first byte on stdout.

    python -m bench.warmstart [--backend netns|docker] [--runs N] [--json PATH] [--logs-root DIR]

Each run starts `awf run ... -- printf x` and times, on the wall clock, the span from just before
the exec to the first byte the command writes; it also reads awf's own `run.json` timings
(t0 = after awf's imports) to show where the time goes, the teardown's phases included
(`exited` -> `end`: the command's exit to run.json; then awf exits). Needs root (netns) or
Docker. awf runs without PYTHONDONTWRITEBYTECODE (`user_env`). Bounded: N runs, each with a
60 s limit. Before them, one unmeasured warm-up run (the page cache, the bytecode caches); for
Docker, awf's images are first made sure of through `awf images build` (on a fresh machine
that builds them, minutes: debootstrap and all), its progress shown on stderr, with a limit of
its own (BUILD_LIMIT), and the warm-up run gets WARM_UP_LIMIT. Each run's logs
go to their own directory under --logs-root (a temporary one on /dev/shm by default), removed
once its run.json is read. The JSON result keeps every run's figures (first_byte_s,
whole_run_s, timings) besides the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN_LIMIT = 60.0  # each measured run
WARM_UP_LIMIT = 600.0  # the unmeasured warm-up run (a first container start may be slow)
BUILD_LIMIT = 1200.0  # `awf images build` on a fresh machine


def user_env() -> dict[str, str]:
    """The environment awf runs in, as a user's shell has it: without PYTHONDONTWRITEBYTECODE
    (set in some CI and sandbox shells), which would make every run compile awf's modules
    again (about 0.2 s); the warm-up run writes the bytecode caches."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def one(backend: str, logs: Path, limit: float = RUN_LIMIT
        ) -> tuple[float, dict[str, float], float]:
    argv = [sys.executable, "-m", "awf.cli", "run", "--backend", backend,
            "--allow-domains", "bench.test", "--proxy-logs-dir", str(logs), "--", "printf", "x"]
    # awf's stderr to a file, not a pipe: nothing reads a pipe while the first byte is awaited,
    # and a long stderr (an image build's progress) would fill it and stall awf
    with tempfile.TemporaryFile() as errf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errf, env=user_env())
        assert proc.stdout is not None
        try:
            first = None
            ready, _, _ = select.select([proc.stdout], [], [], limit)
            if ready and proc.stdout.read(1) == b"x":
                first = time.perf_counter() - t0
            proc.communicate(timeout=max(1.0, limit - (time.perf_counter() - t0)))
        except BaseException:  # timeout or interrupted: let awf clean up (SIGTERM), then insist
            stop(proc, 10)
            raise
        total = time.perf_counter() - t0
        errf.seek(0)
        err = errf.read()
    if first is None or proc.returncode != 0:
        what = "no first byte" if first is None and proc.returncode == 0 else "failed"
        raise RuntimeError(f"awf run {what} ({proc.returncode}): {err.decode()[-500:]}")
    timings: dict[str, float] = {}
    run_json = logs / "run.json"
    if run_json.exists():
        timings = json.loads(run_json.read_text()).get("timings", {})
    shutil.rmtree(logs, ignore_errors=True)
    return first, timings, total


def stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM (awf cleans up), then after `grace` seconds SIGKILL; reaped either way."""
    proc.terminate()
    try:
        proc.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)


def phase_medians(timings: list[dict[str, float]]) -> dict[str, float]:
    """Each run.json mark's median (seconds after awf's t0), in the order the runs met them."""
    names = list(dict.fromkeys(k for t in timings for k in t))
    medians = {k: round(statistics.median([t[k] for t in timings if k in t]), 3) for k in names}
    return dict(sorted(medians.items(), key=lambda kv: kv[1]))


def build_images() -> None:
    """`awf images build`: awf's own images made sure of (built on a fresh machine), its
    progress and tags on our stderr, before any run is timed."""
    argv = [sys.executable, "-m", "awf.cli", "images", "build"]
    print("bench.warmstart: making sure of awf's images (`awf images build`)", file=sys.stderr,
          flush=True)
    proc = subprocess.Popen(argv, stdout=sys.stderr, stderr=sys.stderr, env=user_env())
    try:
        code = proc.wait(timeout=BUILD_LIMIT)
    except BaseException:
        stop(proc, 30)
        raise
    if code != 0:
        raise RuntimeError(f"awf images build failed ({code})")


def _on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--backend", default="netns", choices=("netns", "docker"))
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--json", type=Path)
    p.add_argument("--logs-root", type=Path, help="where each run's logs go (then removed)")
    args = p.parse_args()
    if args.backend == "netns" and os.geteuid() != 0:
        print("bench.warmstart: the netns backend needs root", file=sys.stderr)
        return 2
    if args.runs < 1:
        print("bench.warmstart: --runs must be at least 1", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_signal)
    made_root = args.logs_root is None
    root = Path(tempfile.mkdtemp(prefix="awf-bench-warm-", dir="/dev/shm")) if made_root \
        else args.logs_root
    root.mkdir(parents=True, exist_ok=True)
    try:
        if args.backend == "docker":
            build_images()
        one(args.backend, root / "warm-up", WARM_UP_LIMIT)  # the page cache, a first start
        firsts, totals, all_timings = [], [], []
        for i in range(args.runs):
            first, timings, total = one(args.backend, root / f"run-{i + 1}")
            firsts.append(first)
            totals.append(total)
            all_timings.append(timings)
    finally:
        if made_root:
            shutil.rmtree(root, ignore_errors=True)
    exec_marks = [t["exec"] for t in all_timings if "exec" in t]
    ends = [t["end"] - t["exited"] for t in all_timings if "end" in t and "exited" in t]
    ordered = sorted(firsts)
    result = {
        "backend": args.backend,
        "runs": args.runs,
        "first_byte_median_s": round(statistics.median(ordered), 3),
        "first_byte_p95_s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
        "first_byte_min_s": round(ordered[0], 3),
        "awf_t0_to_exec_median_s": round(statistics.median(exec_marks), 3) if exec_marks else None,
        "whole_run_median_s": round(statistics.median(totals), 3),
        # run.json's phases (start and teardown), medians in run order; the teardown is the
        # span from the command's exit to run.json (`exited` -> `end`)
        "phases_median_s": phase_medians(all_timings),
        "teardown_median_s": round(statistics.median(ends), 3) if ends else None,
        "first_byte_s": [round(x, 4) for x in firsts],
        "whole_run_s": [round(x, 4) for x in totals],
        "timings": all_timings,
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
