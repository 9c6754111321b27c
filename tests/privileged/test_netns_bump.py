"""`awf run --backend netns --ssl-bump --allow-urls` end to end (issue 15), against the fake
internet: the scenario of tests/support/bump_run.py. The command trusts the run's CA with no
flag (curl, Python and Node through the proxy variables and the transparent redirect), the URL
rule holds, the CA key is nowhere the command can read, and nothing of the CA is left."""

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
pytestmark = [pytest.mark.privileged, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def scenario(wan: wanmod.Wan, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[dict[str, Any], Path]:
    ws = tmp_path_factory.mktemp("bump-ws")
    (ws / "probes.py").write_text(bump_run.PROBES)
    logs = tmp_path_factory.mktemp("bump-logs")
    done = subprocess.run(
        [sys.executable, "-m", "awf.cli", "run", "--backend", "netns",
         *bump_run.argv(wan.ca_pem, logs), "--", "python3", "probes.py"],
        capture_output=True, text=True, timeout=300, check=False, cwd=ws,
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
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            check=True).stdout
    assert f"awf-{run}" not in spaces
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                            check=True).stdout
    assert f"awf_{run}" not in tables


def test_an_https_rule_without_ssl_bump_is_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "awf.cli", "run", "--backend", "netns", "--allow-urls",
         bump_run.RULE, "--", "true"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "needs --ssl-bump" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
