"""What agents run daily, through `awf run --backend docker`: the tests are
tests/support/workload_suite.py's (pip, git, npm, cargo, clients that ignore the proxy variables,
an allowed name sent to a foreign address), run against tests/support/forge.py's stand-ins.

The agent container sees the host's tools (chroot host mode: /usr, the toolchains in $HOME);
the workspace is mounted at /ws and the wan's CA at /ca.pem, and the clients' variables are
passed with -e, as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.support import forge as forgemod
from tests.support import wan as wanmod
from tests.support import workloads as wl
from tests.support.workload_suite import *  # noqa: F403  (the tests themselves)
from tests.support.workload_suite import Sandbox, argv, with_caller_env

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def forge(wan: wanmod.Wan, tmp_path_factory: pytest.TempPathFactory) -> Iterator[forgemod.Forge]:
    f = forgemod.start(wan, tmp_path_factory.mktemp("forge"))
    try:
        yield f
    finally:
        f.close()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    d = tmp_path / "ws"
    d.mkdir()
    return d


@pytest.fixture
def sandbox(wan: wanmod.Wan) -> Sandbox:
    def run(policy: tuple[str, ...], script: str | list[str], ws: Path,
            extra_env: dict[str, str] | None = None,
            caller_env: Mapping[str, str | None] | None = None
            ) -> subprocess.CompletedProcess[str]:
        env = {**wl.client_env("/ws", "/ca.pem"), **(extra_env or {})}
        flags = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
        return subprocess.run([sys.executable, "-m", "awf.cli", "run", "--backend", "docker",
                               *policy, "-v", f"{ws}:/ws", "-v", f"{wan.ca_pem}:/ca.pem:ro",
                               "--container-workdir", "/ws", *flags, "--", *argv(script)],
                              capture_output=True, text=True, timeout=300, check=False, cwd=ws,
                              env=with_caller_env(os.environ, caller_env))
    return run


# -- --container-workdir -------------------------------------------------------------------------


def _in_workdir(wan: wanmod.Wan, ws: Path, workdir: str, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "awf.cli", "run", "--backend", "docker",
                           "--allow-domains", "allowed.test", "-v", f"{ws}:/ws",
                           "--container-workdir", workdir, "--", "bash", "-c",
                           "pwd; touch here"], capture_output=True, text=True, timeout=300,
                          check=False, cwd=ws, env=env)


def test_a_missing_container_workdir_is_created(wan: wanmod.Wan, ws: Path) -> None:
    """As `docker run -w` does, by the command's user; the command runs there."""
    done = _in_workdir(wan, ws, "/ws/made/by/awf")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["/ws/made/by/awf"]
    assert (ws / "made" / "by" / "awf" / "here").exists()


def test_a_container_workdir_that_cannot_be_made_is_a_clear_error(wan: wanmod.Wan,
                                                                   ws: Path) -> None:
    """Never a silent run in another directory: exit 125, the directory named."""
    done = _in_workdir(wan, ws, "/usr/awf-no-such-dir")
    assert done.returncode == 125, done.stderr
    assert "/usr/awf-no-such-dir" in done.stderr
    assert done.stdout == ""


def test_a_missing_container_workdir_belongs_to_the_sudo_caller(wan: wanmod.Wan,
                                                                ws: Path) -> None:
    os.chown(ws, 4321, 4321)
    env = {**os.environ, "SUDO_UID": "4321", "SUDO_GID": "4321"}
    done = _in_workdir(wan, ws, "/ws/mine", env)
    assert done.returncode == 0, done.stderr
    assert (ws / "mine").stat().st_uid == 4321
    assert (ws / "mine" / "here").stat().st_uid == 4321
