"""Case (f): warm start of `awf run`, from exec of awf to the command's first byte on stdout.

    python -m bench.warmstart [--backend netns|docker] [--runs N] [--json PATH]

Each run starts `awf run ... -- printf x` and times, on the wall clock, the span from just before
the exec to the first byte the command writes; it also reads awf's own `run.json` timings
(t0 = after awf's imports) to show where the time goes. Needs root (netns) or Docker. Bounded:
N runs, each with a 60 s limit.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import time
from pathlib import Path


def one(backend: str) -> tuple[float, dict[str, float], float]:
    argv = [sys.executable, "-m", "awf.cli", "run", "--backend", backend,
            "--allow-domains", "bench.test", "--", "printf", "x"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stderr is not None
    first = None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    if ready and proc.stdout.read(1) == b"x":
        first = time.perf_counter() - t0
    _, err = proc.communicate(timeout=60)
    total = time.perf_counter() - t0
    if first is None or proc.returncode != 0:
        raise RuntimeError(f"awf run failed ({proc.returncode}): {err.decode()[-500:]}")
    logs = next((ln.split("logs: ", 1)[1].strip() for ln in err.decode().splitlines()
                 if "logs: " in ln), None)
    timings: dict[str, float] = {}
    if logs and Path(logs, "run.json").exists():
        timings = json.loads(Path(logs, "run.json").read_text()).get("timings", {})
    return first, timings, total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", default="netns", choices=("netns", "docker"))
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if args.backend == "netns" and os.geteuid() != 0:
        print("bench.warmstart: the netns backend needs root", file=sys.stderr)
        return 2
    one(args.backend)  # warm the page cache and the images
    firsts, totals, exec_marks = [], [], []
    for _ in range(args.runs):
        first, timings, total = one(args.backend)
        firsts.append(first)
        totals.append(total)
        if "exec" in timings:
            exec_marks.append(timings["exec"])
    firsts.sort()
    result = {
        "backend": args.backend,
        "runs": args.runs,
        "first_byte_median_s": round(statistics.median(firsts), 3),
        "first_byte_p95_s": round(firsts[min(len(firsts) - 1, int(0.95 * len(firsts)))], 3),
        "first_byte_min_s": round(firsts[0], 3),
        "awf_t0_to_exec_median_s": round(statistics.median(exec_marks), 3) if exec_marks else None,
        "whole_run_median_s": round(statistics.median(totals), 3),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
