"""`awf run --backend docker` with provider keys: the API proxy sidecar end to end.

As tests/privileged/test_netns_api_proxy.py, in containers: the origin (tests/support/
api_origin.py) is reached through the proxy's -ext bridge like any provider. The run keeps its
containers so that `docker inspect` of every awf container can be searched for the keys, then
removes them with `awf cleanup --run`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import api_origin, api_run
from tests.support import wan as wanmod
from tests.support.needs import need_docker, need_root

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def awf_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "awf.cli", "run", "--backend", "docker", *args]


def awf(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(awf_argv(*args), capture_output=True, text=True, timeout=timeout,
                          check=False, env=api_run.awf_env())


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[api_origin.Origin]:
    need_docker()
    need_root()
    wanmod.reap()
    w = wanmod.start(tmp_path_factory.mktemp("wan"))
    try:
        o = api_origin.start(w.netns, tmp_path_factory.mktemp("origin"))
        try:
            yield o
        finally:
            o.close()
    finally:
        w.close()


Run = tuple[subprocess.CompletedProcess[str], dict[str, object], Path, str]


@pytest.fixture(scope="module")
def run(origin: api_origin.Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    d = tmp_path_factory.mktemp("probe")
    (d / "probe.py").write_text(api_run.PROBE)
    os.chmod(d, 0o755)
    os.chmod(d / "probe.py", 0o644)
    logs = tmp_path_factory.mktemp("logs")
    done = awf(*api_run.flags(origin.ca_pem), "--proxy-logs-dir", str(logs),
               "--keep-containers", "-v", f"{d}:/probe:ro", "-v", f"{origin.ca_pem}:/ca.pem:ro",
               "--", "python3", "/probe/probe.py", "/ca.pem", api_origin.ADDR,
               str(api_origin.PORT))
    run_id = json.loads((logs / "run.json").read_text())["id"]
    try:
        inspect = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=io.awf.run={run_id}"],
            capture_output=True, text=True, check=True).stdout.split()
        names = subprocess.run(["docker", "inspect", *inspect], capture_output=True, text=True,
                               check=True).stdout
        assert done.returncode == 0, done.stderr[-3000:]
        yield done, api_run.results(done.stdout), logs, names
    finally:
        subprocess.run([sys.executable, "-m", "awf.cli", "cleanup", "--run", run_id],
                       capture_output=True, check=False, timeout=120)


def test_calls_reach_the_origin_through_the_sidecar(run: Run) -> None:
    api_run.check_calls(run[1])


def test_the_origin_saw_the_real_keys(run: Run, origin: api_origin.Origin) -> None:
    api_run.check_origin(origin)


def test_no_real_key_in_the_sandbox(run: Run) -> None:
    subnets = json.loads((run[2] / "run.json").read_text())["subnets"]
    proxy = str(__import__("ipaddress").ip_network(subnets["v4"]).network_address + 10)
    api_run.check_env(run[1], proxy)


def test_no_real_key_in_docker_inspect(run: Run) -> None:
    inspect = run[3]
    assert '"io.awf.role": "api"' in inspect  # the sidecar container was there
    for key in api_run.REAL_KEYS:
        assert key not in inspect


def test_direct_calls_to_the_target_are_denied(run: Run) -> None:
    api_run.check_direct_denied(run[1])


def test_the_sidecar_leaves_through_the_one_proxy_as_its_client(run: Run) -> None:
    api_run.check_one_proxy(run[2])


def test_no_key_in_logs_and_the_summary_counts_tokens(run: Run) -> None:
    done, _, logs, _ = run
    api_run.check_logs(logs, done.stderr)
    timings = json.loads((logs / "run.json").read_text())["timings"]
    assert timings["api_proxy"] < timings["exec"]
    assert not list(Path("/dev/shm").glob("awf-*/api-keys"))


def test_a_sidecar_that_dies_mid_run_fails_closed(origin: api_origin.Origin,
                                                  tmp_path: Path) -> None:
    proc = subprocess.Popen(
        awf_argv(*api_run.flags(origin.ca_pem), "--proxy-logs-dir", str(tmp_path), "--",
                 "bash", "-c", "echo started; sleep 120"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=api_run.awf_env())
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        names = subprocess.run(["docker", "ps", "--format", "{{.Names}}", "--filter",
                                "label=io.awf.role=api"], capture_output=True, text=True,
                               check=True).stdout.split()
        mine = [n for n in names if _owner(n) == proc.pid]
        assert len(mine) == 1, names
        name = mine[0]
        subprocess.run(["docker", "kill", name], capture_output=True, check=True)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=60)
        assert time.monotonic() - t0 < 20
        assert proc.returncode == 125, err
        assert "API proxy sidecar died" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _owner(container: str) -> int:
    out = subprocess.run(["docker", "inspect", "-f",
                          '{{index .Config.Labels "io.awf.owner-pid"}}', container],
                         capture_output=True, text=True, check=False).stdout.strip()
    return int(out) if out.isdigit() else -1
