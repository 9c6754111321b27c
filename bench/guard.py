"""The regression guard of `make bench-quick`: awf-proxy's standing against Squid, per case,
compared with the last full run's (bench/baseline.json); a ratio 15 % below its baseline fails.

Each ratio is oriented so that higher is better for awf-proxy: awf/Squid for a throughput
(req/s, tunnels/s, MB/s), Squid/awf for a cost (CPU µs per unit, kB per idle tunnel). Both
proxies are measured in the same run, so load from other work on the machine falls on both
sides alike; that is why the guard compares ratios, never absolute figures. The comparison is a
pure function (`compare`); `make test` never times anything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AWF = "awf-proxy"
SQUID = "squid"
TOLERANCE = 0.15  # a ratio may fall this far below its baseline before the guard fails
BASELINE = Path(__file__).resolve().parent / "baseline.json"

# (metric key, higher is better for the proxy)
_METRICS: tuple[tuple[str, bool], ...] = (
    ("rate", True),
    ("mb_per_s", True),
    ("cpu_us_per_unit", False),
    ("kb_per_tunnel", False),
)


def _median(case: Mapping[str, Any], proxy: str, metric: str) -> float | None:
    m = case.get("per_proxy", {}).get(proxy, {}).get("metrics", {}).get(metric)
    return None if m is None else float(m["median"])


def ratios(cases: Mapping[str, Any]) -> dict[str, float]:
    """`case/metric` -> awf-proxy's standing against Squid (higher is better), for every case
    and metric both proxies have a median for."""
    out: dict[str, float] = {}
    for cid, case in cases.items():
        if not isinstance(case, Mapping):
            continue
        for metric, higher_better in _METRICS:
            a, s = _median(case, AWF, metric), _median(case, SQUID, metric)
            if a is None or s is None or a <= 0 or s <= 0:
                continue
            out[f"{cid}/{metric}"] = a / s if higher_better else s / a
    return out


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    baseline: float | None
    current: float | None

    @property
    def change(self) -> float | None:
        """current / baseline - 1; None unless both exist."""
        if self.baseline is None or self.current is None or self.baseline <= 0:
            return None
        return self.current / self.baseline - 1.0

    def regressed(self, tolerance: float = TOLERANCE) -> bool:
        change = self.change
        return change is not None and change < -tolerance


def compare(current: Mapping[str, float], baseline: Mapping[str, float]) -> list[Row]:
    """One row per ratio in either, baseline order first; a ratio missing on one side is shown
    but never fails (a quick run measures fewer idle sizes than a full one)."""
    keys = list(dict.fromkeys([*baseline, *current]))
    return [Row(k, baseline.get(k), current.get(k)) for k in keys]


def failures(rows: list[Row], tolerance: float = TOLERANCE) -> list[Row]:
    return [r for r in rows if r.regressed(tolerance)]


def render(rows: list[Row], tolerance: float = TOLERANCE) -> str:
    """A plain-text table: ratio, baseline, current, change, verdict."""
    def num(v: float | None, fmt: str, width: int, unit: str = "") -> str:
        return f"{'-':>{width}}" if v is None else format(v, fmt) + unit

    lines = [f"{'case/metric':<28} {'baseline':>9} {'now':>9} {'change':>8}  verdict",
             "-" * 66]
    for r in rows:
        if r.change is None:
            verdict = "not compared"
        elif r.regressed(tolerance):
            verdict = f"REGRESSED (more than {tolerance:.0%} below)"
        else:
            verdict = "ok"
        change = None if r.change is None else 100 * r.change
        lines.append(f"{r.key:<28} {num(r.baseline, '9.3f', 9)} {num(r.current, '9.3f', 9)} "
                     f"{num(change, '+7.1f', 8, '%')}  {verdict}")
    return "\n".join(lines)


def baseline_doc(results: Mapping[str, Any]) -> dict[str, Any]:
    """What a full run records in bench/baseline.json."""
    meta = results.get("meta", {})
    return {"source": "the last full `make bench` (bench/run.sh)",
            "generated": meta.get("finished"), "tolerance": TOLERANCE,
            "ratios": ratios(results.get("cases", {}))}


def write_baseline(results: Mapping[str, Any], path: Path = BASELINE) -> None:
    path.write_text(json.dumps(baseline_doc(results), indent=1, sort_keys=True) + "\n")


def check(results: Mapping[str, Any], path: Path = BASELINE) -> tuple[str, bool]:
    """(the text to print, whether the run passes) for a quick run's results."""
    if not path.exists():
        return (f"bench guard: no baseline at {path}; run a full `make bench` to record one",
                True)
    base = json.loads(path.read_text())
    rows = compare(ratios(results.get("cases", {})), base.get("ratios", {}))
    bad = failures(rows)
    head = (f"bench guard: awf-proxy's standing against Squid (higher is better) vs the full run "
            f"of {base.get('generated', '?')}")
    tail = (f"bench guard: {len(bad)} ratio(s) more than {TOLERANCE:.0%} below the baseline: "
            + ", ".join(r.key for r in bad)) if bad else "bench guard: ok"
    return "\n".join([head, render(rows), tail]), not bad
