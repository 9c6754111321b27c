"""What agents run daily, through `awf run --backend netns`: the tests are
tests/support/workload_suite.py's (pip, git, npm, cargo, clients that ignore the proxy variables,
an allowed name sent to a foreign address), run against tests/support/forge.py's stand-ins.
"""

from __future__ import annotations

import os
import shutil
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

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(300)]


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
        """`awf run` as users call it; the netns backend passes the caller's environment on, so
        the test gives it a clean one (this machine's own CA and pip variables would win)."""
        base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
        ca = ws / ".wan-ca.pem"  # the sandbox sees the workspace, never the host's /tmp
        shutil.copyfile(wan.ca_pem, ca)
        # the sandbox passes the caller's variables only when asked, as on Docker: -e each
        wanted = {**wl.client_env(str(ws), str(ca)), **(extra_env or {})}
        flags = [a for k, v in wanted.items() for a in ("-e", f"{k}={v}")]
        return subprocess.run([sys.executable, "-m", "awf.cli", "run", "--backend", "netns",
                               *policy, *flags, "--", *argv(script)], capture_output=True,
                              text=True, timeout=180, check=False,
                              env=with_caller_env(base, caller_env), cwd=ws)
    return run


# -- --container-workdir -------------------------------------------------------------------------


def test_container_workdir_is_refused_with_netns(ws: Path, wan: wanmod.Wan) -> None:
    """The netns backend runs the command in awf's current directory; rather than ignore
    --container-workdir (a script would run somewhere else), awf refuses it: exit 2."""
    done = subprocess.run([sys.executable, "-m", "awf.cli", "run", "--backend", "netns",
                           "--allow-domains", "allowed.test", "--container-workdir",
                           str(ws / "missing"), "--", "pwd"], capture_output=True, text=True,
                          timeout=60, check=False, cwd=ws)
    assert done.returncode == 2, done.stderr
    assert "--container-workdir" in done.stderr
    assert done.stdout == ""
    assert not (ws / "missing").exists()
