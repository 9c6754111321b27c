"""bench/guard.py: the ratios `make bench-quick` compares with the last full run's, and the 15 %
rule (pure functions; nothing is timed here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import guard


def _case(**per: dict[str, float]) -> dict[str, Any]:
    return {"per_proxy": {proxy: {"metrics": {k: {"median": v} for k, v in metrics.items()}}
                          for proxy, metrics in per.items()}}


CASES = {
    "a": _case(**{"awf-proxy": {"rate": 2000.0, "cpu_us_per_unit": 40.0},
                  "squid": {"rate": 1000.0, "cpu_us_per_unit": 60.0}}),
    "d-1000": _case(**{"awf-proxy": {"kb_per_tunnel": 4.0}, "squid": {"kb_per_tunnel": 32.0}}),
    "c-get": _case(**{"awf-proxy": {"mb_per_s": 900.0}}),  # Squid failed: no ratio
    "f": {"backends": {}},  # awf alone: no ratio
}


def test_ratios_are_oriented_so_that_higher_is_better() -> None:
    assert guard.ratios(CASES) == {"a/rate": 2.0, "a/cpu_us_per_unit": 1.5,
                                   "d-1000/kb_per_tunnel": 8.0}


def test_a_fall_of_more_than_15_percent_fails_and_less_does_not() -> None:
    base = {"a/rate": 2.0, "b/rate": 1.0, "c-get/mb_per_s": 3.0, "d-10000/kb_per_tunnel": 8.0}
    now = {"a/rate": 1.69, "b/rate": 0.86, "c-get/mb_per_s": 4.0, "e/rate": 1.0}
    rows = guard.compare(now, base)
    assert [r.key for r in rows] == ["a/rate", "b/rate", "c-get/mb_per_s",
                                     "d-10000/kb_per_tunnel", "e/rate"]
    assert [r.key for r in guard.failures(rows)] == ["a/rate"]  # -15.5 %; b/rate is -14 %
    text = guard.render(rows)
    assert "REGRESSED" in text.splitlines()[2]
    assert "not compared" in text.splitlines()[5]  # a size the quick run does not measure


def test_check_against_a_baseline_file(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    text, ok = guard.check({"cases": CASES}, path)
    assert ok
    assert "no baseline" in text
    guard.write_baseline({"meta": {"finished": "then"}, "cases": CASES}, path)
    assert json.loads(path.read_text())["ratios"]["a/rate"] == 2.0
    text, ok = guard.check({"cases": CASES}, path)
    assert ok
    assert text.endswith("bench guard: ok")
    worse = json.loads(json.dumps(CASES))
    worse["a"]["per_proxy"]["awf-proxy"]["metrics"]["cpu_us_per_unit"]["median"] = 50.0
    text, ok = guard.check({"cases": worse}, path)
    assert not ok  # 60/50 = 1.2 against 1.5: -20 %
    assert text.splitlines()[-1].endswith("a/cpu_us_per_unit")


def test_the_recorded_baseline_has_every_full_case() -> None:
    ratios = json.loads(guard.BASELINE.read_text())["ratios"]
    assert {k.split("/")[0] for k in ratios} >= {"a", "b", "b1", "c-tunnel", "c-get", "d-1000"}
