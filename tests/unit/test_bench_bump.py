"""The bench's SSL-bump cases (h1)/(h2), pure parts: Squid's bump config, the commands, the
case filter, the verdicts and the report.

The measurements themselves run in `bench/run.sh --cases h`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import bump, report
from bench.cases import Env
from bench.harness import make_plan


def _env(tmp_path: Path) -> Env:
    return Env(tmp=tmp_path, loadgen=Path("/x/loadgen"), origin=None,  # type: ignore[arg-type]
               http_port=18080, tls_port=18443, record=lambda argv: None)


def _params(tmp_path: Path) -> bump.Params:
    return bump.Params(env=_env(tmp_path), awf_bin=Path("/x/awf-proxy"), proxy_cpu=1, reps=3,
                       duration=10.0, warmup=2.0, conns=64, max_fds=20000, log=print)


def test_squid_bump_conf_bumps_on_the_listener_with_the_same_policy(tmp_path: Path) -> None:
    conf = bump.squid_bump_conf(tmp_path, 3129, [18080, 18443], 20000)
    lines = conf.splitlines()
    listener = [ln for ln in lines if ln.startswith("http_port")]
    assert listener == [
        f"http_port 127.0.0.1:3129 ssl-bump tls-cert={tmp_path}/ca.pem "
        f"tls-key={tmp_path}/ca-key.pem generate-host-certificates=on "
        "dynamic_cert_mem_cache_size=4MB"
    ]
    assert f"sslcrtd_program /usr/lib/squid/security_file_certgen -s {tmp_path}/ssl_db -M 4MB" \
        in lines
    assert "ssl_bump bump all" in lines
    assert f"tls_outgoing_options cafile={tmp_path}/origin-ca.pem min-version=1.2" in lines
    # the plain cases' policy and logging (bench/squid.py), unchanged
    assert "acl allowed_dst dstdomain .origin.test" in lines
    assert "acl bench_ports port 80 443 18080 18443" in lines
    assert f"access_log stdio:{tmp_path}/access.log" in lines
    assert "cache deny all" in lines
    assert "http_access deny all" in lines
    assert not any("workers" in ln for ln in lines)  # one process (-N), as the plain Squid


def test_loadgen_modes_and_target(tmp_path: Path) -> None:
    env = _env(tmp_path)
    lat = tmp_path / "lat"
    h1 = bump.loadgen_argv(env, bump.MODES["h1"], 4001, 64, 10.0, lat)
    assert h1[:3] == ["taskset", "-c", "0"]
    assert h1[4] == "tunnel-tls-ka"
    assert h1[h1.index("--proxy") + 1] == "127.0.0.1:4001"
    assert h1[h1.index("--target") + 1] == "origin.test:18443"  # the origin's TLS port
    assert h1[h1.index("-c", 4) + 1] == "64"
    assert bump.MODES["h2"] == "tunnel-tls"


def test_awf_argv_bumps_with_the_run_ca_and_trusts_the_origin(tmp_path: Path) -> None:
    argv = bump.awf_argv(_params(tmp_path), 4001, tmp_path / "ca", tmp_path / "o.crt",
                         tmp_path / "log")
    assert argv[:3] == ["taskset", "-c", "1"]
    assert "--ssl-bump" in argv
    assert argv[argv.index("--ca-cert") + 1] == f"{tmp_path}/ca/ca.pem"
    assert argv[argv.index("--ca-key") + 1] == f"{tmp_path}/ca/ca-key.pem"
    assert argv[argv.index("--extra-ca-certs") + 1] == f"{tmp_path}/o.crt"
    assert argv[argv.index("--allow-ports") + 1] == "18080,18443"
    assert argv[argv.index("--log-dir") + 1] == f"{tmp_path}/log"


def test_make_plan_h1_h2_mean_h() -> None:
    assert make_plan(True, None, None, "h1").cases == frozenset({"h"})
    assert make_plan(True, None, None, "a,h2").cases == frozenset({"a", "h"})
    assert "h" in make_plan(False, None, None, None).cases  # a full run measures them
    with pytest.raises(SystemExit):
        make_plan(True, None, None, "h3")


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
        "detail": {"cpu_busy_pct": {"0": 80.0, "1": 99.0}},
    }


def _case(cid: str, squid_units: int, awf_units: int) -> dict[str, Any]:
    spec = next(s for s in report.case_specs(()) if s.case_id == cid)
    per = {}
    for name, units in ((report.SQUID, squid_units), (report.AWF, awf_units)):
        samples = [_sample(units, 0.99)]
        per[name] = {"status": "ok", "samples": samples,
                     "metrics": report.summarise(spec, samples)}
    return {"title": spec.title, "status": "ok", "per_proxy": per}


def test_bump_verdicts_and_render() -> None:
    cases = {"h1": _case("h1", 8000, 4000), "h2": _case("h2", 800, 1000)}
    v = {x["case"]: x for x in report.verdicts(report.targets(()), cases)}
    assert v["h1"]["ratio"] == pytest.approx(0.5)
    assert v["h1"]["met"] is False
    assert v["h2"]["ratio"] == pytest.approx(1.25)
    assert v["h2"]["met"] is True
    assert cases["h2"]["per_proxy"][report.AWF]["metrics"]["cpu_us_per_unit"]["median"] == \
        pytest.approx(990.0)
    results = {
        "meta": {"mode": "full", "idle_sizes": [], "entry": "bench/run.sh --cases h",
                 "finished": "2026-12-06T00:00:00+00:00", "wall_s": 1.0, "reps": 1,
                 "notes": []},
        "proxies": {report.SQUID: {"status": "ok"}, report.AWF: {"status": "ok"}},
        "cases": cases,
        "targets": report.verdicts(report.targets(()), cases),
        "commands": [],
    }
    md = report.render(results)
    assert "| h1 | ≥ 1.0x Squid bumped req/s | 4,000 | 8,000 | 0.50\u00d7 | **not met** |" in md
    assert "| h2 | ≥ 1.0x Squid bumped connections/s | 1,000 | 800 | 1.25\u00d7 | met |" in md
    assert "### (h1) SSL bump, keep-alive HTTPS GET" in md
    assert "| proxy CPU µs per connection | 1,237.5 | 990.0 | 0.80\u00d7 |" in md


def test_skip_reason_names_the_missing_package(tmp_path: Path) -> None:
    why = bump.skip_reason(tmp_path / "no-awf-proxy")
    assert why is not None
    assert ("squid-openssl" in why) or ("no awf-proxy" in why)
