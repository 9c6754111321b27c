"""The bench's cases (e) and (f), pure parts: their rulesets and commands, verdicts and report.

The measurements themselves run in `make bench-quick`; tests/privileged/test_bench_transparent.py
checks that the namespace, veth and table are always removed.
"""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from bench import report, transparent
from bench.cases import Env
from bench.harness import make_plan
from netfilter import netns


def _sample(units: int, cpu: float) -> dict[str, Any]:
    return {
        "units": units,
        "elapsed_s": 1.0,
        "proxy_cpu_s": cpu,
        "load_cpu_s": 0.5,
        "p50_us": 100.0,
        "p99_us": 900.0,
        "errors": 0,
        "rss_delta_bytes": None,
        "detail": {"cpu_busy_pct": {"0": 80.0, "1": 60.0}},
    }


def _variant_case(cid: str, explicit_cpu: float, transparent_cpu: float) -> dict[str, Any]:
    spec = next(s for s in report.case_specs(()) if s.case_id == cid)
    variants = {}
    for key, cpu in (("explicit", explicit_cpu), ("transparent", transparent_cpu)):
        samples = [_sample(1000, cpu)]
        variants[key] = {
            "label": f"{key} label",
            "status": "ok",
            "samples": samples,
            "metrics": report.summarise(spec, samples),
        }
    return {"title": spec.title, "status": "ok", "variants": variants}


def _b_case(cid: str, cpu: float) -> dict[str, Any]:
    spec = next(s for s in report.case_specs(()) if s.case_id == cid)
    samples = [_sample(1000, cpu)]
    return {
        "title": spec.title,
        "status": "ok",
        "per_proxy": {report.AWF: {"status": "ok", "samples": samples,
                                   "metrics": report.summarise(spec, samples)}},
    }


def _warm_case(firsts: list[float]) -> dict[str, Any]:
    timings = [{"netns": 0.05, "exec": 0.1 + i / 100} for i in range(len(firsts))]
    return {
        "title": "(f) warm",
        "status": "ok",
        "backends": {
            "netns": {"status": "ok", "metrics": report.warm_summary(firsts, firsts, timings)},
            "docker": {"status": "not yet available: later"},
        },
    }


def test_warm_summary_median_p95_and_marks():
    s = report.warm_summary([0.5, 0.1, 0.2, 0.3, 0.4], [1.0] * 5,
                            [{"exec": 0.1}, {"exec": 0.3, "netns": 0.05}])
    assert s["runs"] == 5
    assert s["first_byte"]["median"] == pytest.approx(0.3)
    assert (s["first_byte"]["min"], s["first_byte"]["max"]) == (0.1, 0.5)
    assert s["first_byte_p95"] == pytest.approx(0.48)  # type 7: 0.4 + 0.8 * 0.1
    assert s["marks"]["exec"]["median"] == pytest.approx(0.2)
    assert s["marks"]["netns"]["n"] == 1


def test_own_verdicts_transparent_against_both_references():
    cases = {
        "b": _b_case("b", 0.300),  # 300 µs per tunnel
        "b1": _b_case("b1", 0.500),
        "e": _variant_case("e", 0.290, 0.315),  # +15 over (b), +25 over explicit
        "e1": _variant_case("e1", 0.520, 0.530),  # +30 over (b1), +10 over explicit
        "f": _warm_case([0.2, 0.25, 0.29, 0.31, 0.4]),
    }
    rows = report.own_verdicts(cases)
    by = {(r["case"], r["reference_label"].split()[0]): r for r in rows}
    assert by[("e", "(b)")]["difference"] == pytest.approx(15.0)
    assert by[("e", "(b)")]["met"] is True
    assert by[("e", "explicit")]["difference"] == pytest.approx(25.0)
    assert by[("e", "explicit")]["met"] is False
    assert by[("e1", "(b1)")]["met"] is False
    assert by[("e1", "explicit")]["met"] is True
    netns_row = next(r for r in rows if r["case"] == "f-netns")
    assert netns_row["measured"] == pytest.approx(0.29)
    assert netns_row["met"] is True  # 0.29 <= 0.3
    docker_row = next(r for r in rows if r["case"] == "f-docker")
    assert docker_row["met"] is None
    assert docker_row["target"].startswith("median ≤ 2 s")  # no figures: met is None


def test_own_verdicts_without_reference_case_is_no_verdict():
    rows = report.own_verdicts({"e": _variant_case("e", 0.3, 0.3)})
    b_row = next(r for r in rows if r["reference_label"].startswith("(b)"))
    assert b_row["reference"] is None
    assert b_row["met"] is None


def test_render_transparent_and_warm_start_sections():
    cases = {
        "b": _b_case("b", 0.300),
        "e": _variant_case("e", 0.290, 0.315),
        "e1": {"title": "(e1) x", "status": "skipped: needs root"},
        "f": _warm_case([0.2, 0.25, 0.29, 0.31, 0.4]),
    }
    results = {
        "meta": {"mode": "quick", "idle_sizes": [], "entry": "bench/run.sh --quick",
                 "finished": "2026-01-01T00:00:00+00:00", "wall_s": 1.0, "reps": 1,
                 "notes": []},
        "proxies": {report.SQUID: {"status": "ok"}, report.AWF: {"status": "ok"}},
        "cases": cases,
        "targets": report.verdicts(report.targets([]), cases),
        "targets_own": report.own_verdicts(cases),
        "commands": [],
    }
    md = report.render(results)
    assert "| proxy CPU µs per tunnel | 300.0 | 290.0 | 315.0 | +25.0 | +15.0 |" in md
    assert "skipped: needs root" in md
    assert "| e | ≤ 20 µs proxy CPU per tunnel above (b) CONNECT on loopback | 315.0 µs" in md
    assert (f"| exec of awf → first byte of the command (s) | 0.290 [0.200{report.DASH}0.400] | "
            f"{report.DASH} |") in md
    assert "not yet available: later" in md
    assert "**Interference:** other processes took up to 31 %" in md


def test_make_plan_e1_means_e_and_warm_runs():
    assert "e" in make_plan(True, None, None, "e1").cases
    assert make_plan(True, None, None, None).warm_runs == 5
    assert make_plan(False, None, None, None).warm_runs == 10


def _link() -> netns.AgentLink:
    return netns.AgentLink.for_run("bench-ab12", IPv4Network("10.213.7.0/30"), None)


def test_side_ruleset_redirects_the_clients_80_443_to_the_transparent_port():
    rules = transparent.side_ruleset("awf_bench_ab12", _link(), 4001, 4002, 4003)
    text = rules.render()
    assert "table inet awf_bench_ab12 {" in text
    assert ('iifname "awf-bench-ab12h" ip saddr 10.213.7.0/30 meta l4proto tcp '
            "th dport { 80, 443 } redirect to :4002") in text
    assert "hook forward" in text
    assert 'iifname "awf-bench-ab12h" counter drop' in text


def test_loadgen_argv_transparent_dials_test_net_and_explicit_dials_the_proxy(tmp_path: Path):
    env = Env(tmp=tmp_path, loadgen=Path("/x/loadgen"), origin=None,  # type: ignore[arg-type]
              http_port=1, tls_port=2, record=lambda argv: None)
    p = transparent.Params(env=env, awf_bin=Path("/x/awf-proxy"), proxy_cpu=1, load_cpu=0,
                           reps=1, duration=3.0, warmup=1.0, conns=64, log=print)
    plain, tls = transparent.CASE_VARIANTS["e"], transparent.CASE_VARIANTS["e1"]
    lat = tmp_path / "lat"
    t = transparent.loadgen_argv(p, "awf-bench-ab12", plain[1], "10.213.7.1", 4001, 80, 3.0, lat)
    assert t[:4] == ["ip", "netns", "exec", "awf-bench-ab12"]
    assert t[t.index("--proxy") + 1] == "192.0.2.1:80"
    assert t[t.index("--target") + 1] == "origin.test"
    assert t[8] == "transparent"
    x = transparent.loadgen_argv(p, "awf-bench-ab12", plain[0], "10.213.7.1", 4001, 80, 3.0, lat)
    assert x[8] == "get"
    assert x[x.index("--proxy") + 1] == "10.213.7.1:4001"
    assert x[x.index("--target") + 1] == "origin.test:80"
    s = transparent.loadgen_argv(p, "awf-bench-ab12", tls[1], "10.213.7.1", 4001, 443, 3.0, lat)
    assert s[8] == "transparent-tls"
    assert s[s.index("--proxy") + 1] == "192.0.2.1:443"


def test_proxy_argv_resolves_origin_to_its_own_loopback_address(tmp_path: Path):
    env = Env(tmp=tmp_path, loadgen=Path("/x/loadgen"), origin=None,  # type: ignore[arg-type]
              http_port=1, tls_port=2, record=lambda argv: None)
    p = transparent.Params(env=env, awf_bin=Path("/x/awf-proxy"), proxy_cpu=1, load_cpu=0,
                           reps=1, duration=3.0, warmup=1.0, conns=64, log=print)
    argv = transparent.proxy_argv(p, "10.213.7.1", 4001, 4002, tmp_path)
    assert argv[:3] == ["taskset", "-c", "1"]
    assert argv[argv.index("--transparent-listen") + 1] == "10.213.7.1:4002"
    assert argv[argv.index("--resolve") + 1] == f"origin.test={transparent.ORIGIN_ADDR}"
    assert argv[argv.index("--allow-range") + 1] == f"{transparent.ORIGIN_ADDR}/32"



def test_the_whole_command_and_the_teardown_are_targets_too():
    timings = [{"exec": 0.1, "exited": 0.15, "teardown": 0.15, "end": 0.15 + d}
               for d in (0.05, 0.07, 0.09)]
    metrics = report.warm_summary([0.12] * 3, [0.2, 0.24, 0.3], timings)
    assert metrics["teardown"]["median"] == pytest.approx(0.07)
    assert list(metrics["marks"]) == ["exec", "exited", "teardown", "end"]
    cases = {"f": {"title": "(f)", "status": "ok", "backends": {
        "netns": {"status": "ok", "metrics": metrics},
        "docker": {"status": "ok", "metrics": report.warm_summary([1.0], [1.6], [])}}}}
    rows = [r for r in report.own_verdicts(cases) if "whole command" in r["target"]]
    assert [(r["case"], r["measured"], r["met"]) for r in rows] == [
        ("f-netns", 0.24, True), ("f-docker", 1.6, False)]
    assert rows[0]["reference"] == pytest.approx(0.07)
    md = report.render({"meta": {"mode": "quick", "idle_sizes": [], "entry": "x", "reps": 1,
                                 "finished": "t", "wall_s": 1.0, "notes": []},
                        "proxies": {}, "cases": cases, "targets": [],
                        "targets_own": report.own_verdicts(cases), "commands": []})
    assert "| run.json t0 → end (s) |" in md
    assert (f"| teardown: the command's exit → run.json (s) | 0.070 [0.050{report.DASH}0.090] "
            "|") in md
