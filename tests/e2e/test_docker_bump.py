"""`awf run --backend docker --ssl-bump --allow-urls` end to end (issue 15), against the fake
internet: the scenario of tests/support/bump_run.py, as tests/privileged/test_netns_bump.py runs
it on the netns backend. The command (chroot host mode) trusts the run's CA with no flag, the URL
rule holds, the CA key (mounted into the proxy container alone) is nowhere the command can read,
and neither the key nor a container or network of the run is left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import bump_run
from tests.support import wan as wanmod

# the wan is one per machine: another test run may hold it for a while
pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def scenario(wan: wanmod.Wan, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[dict[str, Any], Path]:
    ws = tmp_path_factory.mktemp("bump-ws")
    (ws / "probes.py").write_text(bump_run.PROBES)
    for p in (ws, ws / "probes.py"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    logs = tmp_path_factory.mktemp("bump-logs")
    done = subprocess.run(
        [sys.executable, "-m", "awf.cli", "run", "--backend", "docker",
         *bump_run.argv(wan.ca_pem, logs), "--", "python3", "probes.py"],
        capture_output=True, text=True, timeout=900, check=False, cwd=ws,
        env={**os.environ, "GITHUB_WORKSPACE": str(ws)})
    return bump_run.results(done), logs


def test_the_command_trusts_the_run_ca_and_the_url_rule_holds(
        scenario: tuple[dict[str, Any], Path]) -> None:
    bump_run.check_rule_holds(scenario[0])


def test_the_trust_variables_name_the_bundle_and_the_ca(
        scenario: tuple[dict[str, Any], Path]) -> None:
    bump_run.check_trust_variables(scenario[0])


def test_the_ca_key_is_not_readable_in_the_sandbox(
        scenario: tuple[dict[str, Any], Path]) -> None:
    bump_run.check_key_unreachable(scenario[0])


def test_each_inner_request_is_logged(scenario: tuple[dict[str, Any], Path]) -> None:
    bump_run.check_log(scenario[1])


def test_nothing_is_left_after_the_run(scenario: tuple[dict[str, Any], Path]) -> None:
    run = bump_run.check_nothing_left(scenario[1])
    for kind in ("ps", "network ls"):
        out = subprocess.run(["docker", *kind.split(), *(["-a"] if kind == "ps" else []),
                              "-q", "--filter", f"label=io.awf.run={run}"],
                             capture_output=True, text=True, check=True, timeout=60).stdout
        assert out.strip() == "", (kind, out)
