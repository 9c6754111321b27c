"""The bench's pure parts: /proc parsing, percentile math, generator output, report verdicts.

No load here and nothing timed: the harness itself is exercised by `make bench-quick`.
"""

from __future__ import annotations

import statistics
from array import array
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench import origin, report, squid, stats
from bench.cases import CaseError, status_of, wrk_lua
from bench.procstat import (
    ProcStatError,
    busy_percent,
    descendants,
    parse_cpu_times,
    parse_stat,
)

# A real line from /proc/<pid>/stat (squid -N), with comm edited to contain ') (' and spaces.
STAT_LINE = (
    "4242 (odd) (name x) S 4200 4242 4242 0 -1 4194560 8263 0 0 0 123 45 6 7 20 0 1 0 "
    "1868130 244314112 12345 18446744073709551615 1 1 0 0 0 0 0 4096 16391 0 0 0 17 1 0 0 "
    "0 0 0 0 0 0 0 0 0 0 0\n"
)


def test_parse_stat_fields_after_last_paren():
    st_ = parse_stat(STAT_LINE)
    assert st_.pid == 4242
    assert st_.comm == "odd) (name x"
    assert st_.ppid == 4200
    assert (st_.utime, st_.stime, st_.cutime, st_.cstime) == (123, 45, 6, 7)
    assert st_.cpu_ticks == 181
    assert st_.rss_pages == 12345


def test_parse_stat_of_this_process_matches_os():
    import os

    st_ = parse_stat(Path(f"/proc/{os.getpid()}/stat").read_text())
    assert st_.pid == os.getpid()
    assert st_.ppid == os.getppid()
    assert st_.rss_pages > 0


@pytest.mark.parametrize("bad", ["", "12 noparen S 1", "x (a) S 1 2", "12 (a) S 1 2 3"])
def test_parse_stat_rejects_malformed(bad):
    with pytest.raises(ProcStatError):
        parse_stat(bad)


def test_descendants_walks_the_tree_and_ignores_others():
    parents = {1: 0, 10: 1, 11: 10, 12: 10, 13: 11, 20: 1, 21: 20}
    assert descendants(10, parents) == [10, 11, 12, 13]
    assert descendants(13, parents) == [13]
    assert sorted(descendants(99, parents)) == [99]


def test_descendants_survives_a_cycle():
    assert sorted(descendants(1, {1: 2, 2: 1})) == [1, 2]


PROC_STAT = """\
cpu  300 0 100 1000 10 0 5 0 0 0
cpu0 100 0 50 500 5 0 5 0 0 0
cpu1 200 0 50 500 5 3 0 7 0 0
intr 12345
ctxt 99
"""


def test_parse_cpu_times_per_cpu_busy_and_total():
    # busy = user + nice + system + steal; irq/softirq (the bench's own loopback) excluded
    assert parse_cpu_times(PROC_STAT) == {0: (150, 660), 1: (257, 765)}


def test_busy_percent_between_readings():
    after = {0: (150 + 50, 660 + 100), 1: (257 + 25, 765 + 100)}
    assert busy_percent(parse_cpu_times(PROC_STAT), after) == {0: 50.0, 1: 25.0}


def test_parse_cpu_times_rejects_garbage():
    with pytest.raises(ProcStatError):
        parse_cpu_times("cpu0 1 2 x 4 5 6 7 8\n")
    with pytest.raises(ProcStatError):
        parse_cpu_times("cpu0 1 2 3 4 5\n")


def test_percentile_known_values():
    xs = [1.0, 2.0, 3.0, 4.0]
    assert stats.percentile(xs, 0) == 1.0
    assert stats.percentile(xs, 100) == 4.0
    assert stats.percentile(xs, 50) == 2.5
    assert stats.percentile([7.0], 99) == 7.0
    assert stats.percentile(list(range(101)), 99) == 99.0


def test_percentile_rejects_empty_and_bad_q():
    with pytest.raises(stats.BenchParseError):
        stats.percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        stats.percentile([1.0], 101)


@given(st.lists(st.integers(0, 10**9), min_size=2, max_size=200))
def test_percentile_matches_statistics_inclusive(values):
    ordered = sorted(values)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    for q in (1, 50, 99):
        assert stats.percentile(ordered, q) == pytest.approx(cuts[q - 1], rel=1e-9, abs=1e-6)


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=50), st.floats(0, 100), st.floats(0, 100))
def test_percentile_is_bounded_and_monotone(values, q1, q2):
    ordered = sorted(values)
    lo, hi = sorted((q1, q2))
    a, b = stats.percentile(ordered, lo), stats.percentile(ordered, hi)
    assert ordered[0] - 1e-9 <= a <= b + 1e-9 <= ordered[-1] + 2e-9


def test_spread_is_median_with_range():
    sp = stats.spread([3.0, 1.0, 2.0])
    assert (sp.median, sp.lo, sp.hi, sp.n) == (2.0, 1.0, 3.0, 3)
    assert stats.spread([5.0, 1.0]).median == 3.0


def test_latencies_from_bytes_roundtrip_and_sorted():
    raw = array("I", [30, 10, 20]).tobytes()
    assert stats.latencies_from_bytes(raw) == [10, 20, 30]
    with pytest.raises(stats.BenchParseError):
        stats.latencies_from_bytes(b"\x00\x01\x02")


def test_parse_wrk_output_reads_the_marker_line():
    out = (
        "Running 3s test @ http://127.0.0.1:1/\n  1 threads and 64 connections\n"
        'AWF_BENCH_JSON {"requests":100,"duration_us":3000000,"bytes":1,"p50_us":5,'
        '"p99_us":9,"max_us":10,"err_connect":0,"err_read":0,"err_write":0,"err_status":2,'
        '"err_timeout":0}\n'
    )
    w = stats.parse_wrk_output(out)
    assert w["requests"] == 100
    assert w["err_status"] == 2
    with pytest.raises(stats.BenchParseError):
        stats.parse_wrk_output("Running 3s test\n")
    with pytest.raises(stats.BenchParseError):
        stats.parse_wrk_output('AWF_BENCH_JSON {"requests":1}\n')


def test_wrk_lua_sets_absolute_target_and_host():
    lua = wrk_lua("origin.test:8080")
    assert 'wrk.path = "http://origin.test:8080/small"' in lua
    assert 'wrk.headers["Host"] = "origin.test:8080"' in lua
    assert "AWF_BENCH_JSON {" in lua


def test_parse_loadgen_output_skips_ready_line():
    out = (
        "READY 10 0\n"
        '{"mode":"idle","completed":10,"elapsed_s":1.5,"bytes":1000,'
        '"errors":{"connect":0,"status":1},"first_error":"status 403"}\n'
    )
    d = stats.parse_loadgen_output(out)
    assert d["completed"] == 10
    assert stats.total_errors(d["errors"]) == 1
    assert stats.parse_ready_line("READY 10 0") == (10, 0)
    with pytest.raises(stats.BenchParseError):
        stats.parse_ready_line("READY ten")
    with pytest.raises(stats.BenchParseError):
        stats.parse_loadgen_output("READY 1 0\n")


def test_status_of_response_heads():
    assert status_of(b"HTTP/1.1 200 Connection established\r\n\r\n") == 200
    assert status_of(b"HTTP/1.0 403 Forbidden\r\nX: y\r\n\r\n") == 403
    with pytest.raises(CaseError):
        status_of(b"SSH-2.0-OpenSSH\r\n")


def test_squid_conf_has_the_same_policy(tmp_path):
    conf = squid.squid_conf(squid.SquidLayout(tmp_path, 3129), [18080, 18443], 20000)
    assert "acl allowed_dst dstdomain .origin.test" in conf
    assert "acl bench_ports port 80 443 18080 18443" in conf
    assert "http_port 127.0.0.1:3129" in conf
    assert f"hosts_file {tmp_path}/hosts" in conf
    assert "max_filedescriptors 20000" in conf
    assert "http_access deny all" in conf
    assert "cache_dir" not in conf


def test_nginx_conf_serves_small_body_on_loopback(tmp_path):
    conf = origin.nginx_conf(origin.OriginLayout(tmp_path, 18080, 18443), 1000)
    assert "listen 127.0.0.1:18080" in conf
    assert "listen 127.0.0.1:18443 ssl" in conf
    assert f'return 200 "{"x" * 99}\\n"' in conf
    assert len(origin.SMALL_BODY) == 100


def _sample(units: int, elapsed: float, cpu: float, rss: int | None = None) -> dict[str, Any]:
    return {
        "units": units,
        "elapsed_s": elapsed,
        "proxy_cpu_s": cpu,
        "load_cpu_s": 0.5,
        "p50_us": 100.0,
        "p99_us": 900.0,
        "errors": 0,
        "rss_delta_bytes": rss,
        "detail": {"rss_before": 1 << 20, "rss_after": 2 << 20, "cpu_busy_pct": {"1": 99.0}},
    }


def _results() -> dict[str, Any]:
    specs = {s.case_id: s for s in report.case_specs([1000])}
    per_a = {
        report.SQUID: [
            _sample(10000, 1.0, 0.8),
            _sample(12000, 1.0, 0.8),
            _sample(11000, 1.0, 0.8),
        ],
        report.AWF: [_sample(20000, 1.0, 0.9), _sample(18000, 1.0, 0.9), _sample(16000, 1.0, 0.9)],
    }
    per_d = {
        report.SQUID: [_sample(1000, 0.2, 0.1, rss=32 * 1024 * 1000)],
        report.AWF: [_sample(1000, 0.2, 0.1, rss=4 * 1024 * 1000)],
    }
    cases: dict[str, Any] = {}
    for cid, per in (("a", per_a), ("d-1000", per_d)):
        cases[cid] = {
            "title": specs[cid].title,
            "status": "ok",
            "per_proxy": {
                n: {"status": "ok", "samples": s, "metrics": report.summarise(specs[cid], s)}
                for n, s in per.items()
            },
        }
    return cases


def test_summarise_and_verdicts():
    cases = _results()
    a = cases["a"]["per_proxy"]
    assert a[report.SQUID]["metrics"]["rate"] == {
        "median": 11000,
        "min": 10000,
        "max": 12000,
        "n": 3,
    }
    assert a[report.AWF]["metrics"]["cpu_us_per_unit"]["median"] == pytest.approx(50.0)
    v = {(x["case"], x["metric"]): x for x in report.verdicts(report.targets([1000]), cases)}
    assert v[("a", "rate")]["ratio"] == pytest.approx(18000 / 11000)
    assert v[("a", "rate")]["met"] is False  # 1.64 < 1.7
    assert v[("a", "cpu_us_per_unit")]["met"] is False  # 50.0 > 42
    assert v[("d-1000", "kb_per_tunnel")]["awf"] == pytest.approx(4.0)
    assert v[("d-1000", "kb_per_tunnel")]["met"] is True  # 4.0 <= 4
    assert v[("b", "rate")]["met"] is None  # not run: no verdict


def test_render_smoke():
    cases = _results()
    results = {
        "meta": {
            "mode": "quick",
            "idle_sizes": [1000],
            "entry": "bench/run.sh --quick",
            "finished": "2026-01-01T00:00:00+00:00",
            "wall_s": 10.0,
            "reps": 3,
            "notes": ["a note"],
        },
        "proxies": {report.SQUID: {"status": "ok"}, report.AWF: {"status": "ok"}},
        "cases": cases,
        "not_measured": [{"case": "e", "title": "(e) x", "status": "not yet available: y"}],
        "targets": report.verdicts(report.targets([1000]), cases),
        "commands": ["taskset -c 1 squid -N"],
    }
    md = report.render(results)
    assert "| a | ≥ 1.7x Squid req/s | 18,000 | 11,000 | 1.64\u00d7 | **not met** |" in md
    assert "not yet available: y" in md
    assert "taskset -c 1 squid -N" in md
    assert "11,000 [10,000\u201312,000]" in md


def test_squid_with_workers_runs_smp_in_the_foreground(tmp_path):
    layout = squid.SquidLayout(tmp_path, 3129)
    assert "\nworkers " not in squid.squid_conf(layout, [18080], 20000)
    conf = squid.squid_conf(layout, [18080], 20000, workers=2)
    assert conf.splitlines()[1] == "workers 2"
    assert squid.squid_argv(layout)[:5] == ["taskset", "-c", "1", "squid", "-N"]
    argv = squid.squid_argv(layout, 2, "0-1")
    assert argv[:5] == ["taskset", "-c", "0-1", "squid", "--foreground"]
    assert "-N" not in argv


def test_a_cost_target_is_met_at_or_below_squids() -> None:
    def case(awf: float, squid: float) -> dict[str, object]:
        return {"per_proxy": {
            report.AWF: {"metrics": {"cpu_us_per_unit": {"median": awf}}},
            report.SQUID: {"metrics": {"cpu_us_per_unit": {"median": squid}}},
        }}

    b1 = [t for t in report.targets([]) if t.case_id == "b1"]
    assert [t.kind for t in b1] == ["ratio<="]
    assert report.verdicts(b1, {"b1": case(350.0, 380.0)})[0]["met"] is True
    assert report.verdicts(b1, {"b1": case(400.0, 380.0)})[0]["met"] is False
    assert report.verdicts(b1, {})[0]["met"] is None


def test_the_addenda_follow_a_full_runs_results() -> None:
    out = report.with_addenda("# results\n\nbody\n\n", "\n## Addenda\n\nkept\n")
    assert out == "# results\n\nbody\n\n## Addenda\n\nkept\n"
    from bench import harness

    assert harness.ADDENDA.exists()  # the kept sections are where the harness looks
