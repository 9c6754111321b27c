"""Bench case (e) for real: a client namespace, an nft redirect in the host namespace, awf-proxy's
transparent listener; and whatever happens (success, a set-up failure, Ctrl-C), the namespace,
the veth, the table and the /run/awf/runs entries are gone afterwards.

Needs the bench's tools: nginx (make test installs it) and bench/out/loadgen (built here from
bench/loadgen.c when missing or older than its source).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from awf import leftovers
from bench import transparent
from bench.cases import Env
from tests.support.needs import need, need_root

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
LOADGEN = REPO / "bench" / "out" / "loadgen"
AWF_PROXY = REPO / ".venv" / "bin" / "awf-proxy"


def _bench_objects() -> list[str]:
    found = []
    found += [n for n in os.listdir("/run/netns") if n.startswith("awf-bench-")] \
        if os.path.isdir("/run/netns") else []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    found += [ln.split(":")[1].strip() for ln in links.stdout.splitlines()
              if ": awf-bench-" in ln]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    found += [ln for ln in tables.stdout.splitlines() if "awf_bench_" in ln]
    if leftovers.RUNS.is_dir():
        found += [p.name for p in leftovers.RUNS.iterdir() if p.name.startswith("bench")]
    return found


@pytest.fixture
def tmp_shm() -> Iterator[Path]:
    need_root()
    need(shutil.which("nginx") is not None, "nginx (apt-get install nginx-light; make test does)")
    source = REPO / "bench" / "loadgen.c"
    if not LOADGEN.exists() or LOADGEN.stat().st_mtime < source.stat().st_mtime:
        LOADGEN.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(LOADGEN), str(source), "-lssl",
                        "-lcrypto"], check=True, capture_output=True, timeout=120)
    d = Path(tempfile.mkdtemp(prefix="awf-bench-test-", dir="/dev/shm"))
    d.chmod(0o755)
    before = _bench_objects()
    yield d
    shutil.rmtree(d, ignore_errors=True)
    assert _bench_objects() == before


def _params(tmp: Path, awf_bin: Path, log: Any = print) -> transparent.Params:
    env = Env(tmp=tmp, loadgen=LOADGEN, origin=None,  # type: ignore[arg-type]  # replaced by e's
              http_port=0, tls_port=0, record=lambda argv: None)
    return transparent.Params(env=env, awf_bin=awf_bin, proxy_cpu=1, load_cpu=0, reps=1,
                              duration=0.5, warmup=0.2, conns=4, log=log)


def test_transparent_case_measures_redirected_tunnels_and_cleans_up(tmp_shm: Path):
    out = transparent.run(_params(tmp_shm, AWF_PROXY))
    assert all(c["ok"] for c in out["setup"]["preflight"]), out["setup"]["preflight"]
    assert any("redirect to :" in r for r in out["setup"]["redirect"])
    for cid in ("e", "e1"):
        case = out["cases"][cid]
        assert case["status"] == "ok", case
        for key in ("explicit", "transparent"):
            v = case["variants"][key]
            assert v["status"] == "ok", v
            assert v["samples"][0]["units"] > 0
            assert v["samples"][0]["errors"] == 0
            assert v["metrics"]["cpu_us_per_unit"]["median"] > 0
    log = (tmp_shm / "awf-log-e" / "access.jsonl").read_text()
    assert '"original_dst":"192.0.2.1:443"' in log.replace(" ", "")


def test_a_failed_set_up_removes_what_it_made(tmp_shm: Path):
    out = transparent.run(_params(tmp_shm, tmp_shm / "no-such-awf-proxy"))
    for cid in ("e", "e1"):
        assert out["cases"][cid]["status"].startswith("failed: could not set up"), out
    assert out["setup"]["table"].startswith("inet awf_bench_")


def test_ctrl_c_during_the_case_removes_what_it_made(tmp_shm: Path):
    def interrupt_once_set_up(msg: str) -> None:
        if msg.startswith("case (e): awf-bench-"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        transparent.run(_params(tmp_shm, AWF_PROXY, log=interrupt_once_set_up))
