"""What agents run daily, through `awf run --backend netns`: pip, git, npm, cargo, clients that
ignore the proxy variables, and the exit codes scripts depend on.

The registries and the forge are tests/support/forge.py's stand-ins in the wan's namespace,
reached by name over HTTPS with the wan's CA: resolved by DNS (`--dns-servers`, the forge's
resolver) unless a test says `--resolve`. Each workload is allowed in one run and denied in
another (its name not in `--allow-domains`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import forge as forgemod
from tests.support import wan as wanmod
from tests.support import workloads as wl
from tests.support.needs import need_root

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(300)]

ALLOWED = ("--allow-domains", ",".join(forgemod.NAMES), *forgemod.DNS_POLICY)
DENIED = ("--allow-domains", "allowed.test", *forgemod.DNS_POLICY)


@pytest.fixture(scope="module")
def wan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[wanmod.Wan]:
    need_root()
    w = wanmod.start(tmp_path_factory.mktemp("wan"))
    try:
        yield w
    finally:
        w.close()


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


def awf(policy: tuple[str, ...], script: str, ws: Path, ca: Path,
        extra_env: dict[str, str] | None = None, timeout: float = 180,
        ) -> subprocess.CompletedProcess[str]:
    """`awf run` as users call it; the netns backend passes the caller's environment on, so the
    test gives it a clean one (this machine's own CA and pip variables would win otherwise)."""
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env = {**base, **wl.client_env(str(ws), str(ca)), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "awf.cli", "run", "--backend", "netns",
                           *policy, "--", script], capture_output=True, text=True,
                          timeout=timeout, check=False, env=env, cwd=ws)


def explain(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\nstdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-3000:]}"


# -- pip -----------------------------------------------------------------------------------------


def test_pip_install_allowed(forge: forgemod.Forge, wan: wanmod.Wan, ws: Path) -> None:
    done = awf(ALLOWED, wl.PIP_INSTALL, ws, wan.ca_pem)
    assert done.returncode == 0, explain(done)
    assert "tiny from pypi.test" in done.stdout
    assert any(r["path"].startswith("/files/") for r in forge.requests("pypi.test"))


def test_pip_install_allowed_by_resolve(forge: forgemod.Forge, wan: wanmod.Wan,
                                        ws: Path) -> None:
    """The same with `--resolve` instead of DNS."""
    policy = ("--allow-domains", "pypi.test", *forgemod.RESOLVE_POLICY)
    done = awf(policy, wl.PIP_INSTALL, ws, wan.ca_pem)
    assert done.returncode == 0, explain(done)
    assert "tiny from pypi.test" in done.stdout


def test_pip_install_denied_fails_fast_with_403(forge: forgemod.Forge, wan: wanmod.Wan,
                                                ws: Path) -> None:
    """With the README's PIP_RETRIES=1, pip prints the proxy's 403 once and gives up."""
    before = len(forge.requests("pypi.test"))
    done = awf(DENIED, wl.timed(wl.PIP_INSTALL), ws, wan.ca_pem, extra_env=wl.PIP_FAST_FAIL)
    assert done.returncode != 0, explain(done)
    assert "Tunnel connection failed: 403 Forbidden" in done.stderr, explain(done)
    assert "denied pypi.test:443" in done.stderr, explain(done)  # awf's own summary
    assert wl.elapsed_ms(done.stdout) < 10_000, explain(done)
    assert len(forge.requests("pypi.test")) == before


# -- git -----------------------------------------------------------------------------------------


def test_git_clone_and_push_allowed(forge: forgemod.Forge, wan: wanmod.Wan, ws: Path) -> None:
    done = awf(ALLOWED, wl.GIT_CLONE_AND_PUSH.format(tag="netns"), ws, wan.ca_pem)
    assert done.returncode == 0, explain(done)
    assert "a repository on git.test" in done.stdout
    assert "pushed from netns" in forge.git_log()


def test_git_clone_denied_names_the_host(forge: forgemod.Forge, wan: wanmod.Wan,
                                         ws: Path) -> None:
    done = awf(DENIED, wl.GIT_CLONE, ws, wan.ca_pem)
    assert done.returncode != 0, explain(done)
    assert "git.test" in done.stderr, explain(done)
    assert "403" in done.stderr, explain(done)


def test_git_push_denied_names_the_host(forge: forgemod.Forge, wan: wanmod.Wan,
                                        ws: Path) -> None:
    assert awf(ALLOWED, wl.GIT_CLONE, ws, wan.ca_pem).returncode == 0
    done = awf(DENIED, wl.GIT_PUSH, ws, wan.ca_pem)
    assert done.returncode != 0, explain(done)
    assert "git.test" in done.stderr, explain(done)
    assert "403" in done.stderr, explain(done)
    assert "denied push" not in forge.git_log()


# -- npm, cargo ----------------------------------------------------------------------------------


def test_npm_install_allowed(forge: forgemod.Forge, wan: wanmod.Wan, ws: Path) -> None:
    npm = wl.tool("npm")
    if npm is None or wl.tool("node") is None:
        pytest.skip("npm and node are not installed on this machine")
    done = awf(ALLOWED, wl.npm_install(npm), ws, wan.ca_pem)
    assert done.returncode == 0, explain(done)
    assert "tiny from npm.test" in done.stdout


def test_npm_install_denied(forge: forgemod.Forge, wan: wanmod.Wan, ws: Path) -> None:
    npm = wl.tool("npm")
    if npm is None:
        pytest.skip("npm is not installed on this machine")
    done = awf(DENIED, wl.npm_install(npm), ws, wan.ca_pem)
    assert done.returncode != 0, explain(done)
    assert "E403" in done.stderr, explain(done)
    assert "npm.test" in done.stderr, explain(done)


def test_cargo_fetch_allowed(forge: forgemod.Forge, wan: wanmod.Wan, ws: Path) -> None:
    cargo = wl.tool("cargo")
    if cargo is None:
        pytest.skip("cargo is not installed on this machine")
    done = awf(ALLOWED, wl.cargo_fetch(cargo), ws, wan.ca_pem)
    assert done.returncode == 0, explain(done)
    assert any("/download" in r["path"] for r in forge.requests("crates.test"))


def test_cargo_fetch_denied(forge: forgemod.Forge, wan: wanmod.Wan, ws: Path) -> None:
    cargo = wl.tool("cargo")
    if cargo is None:
        pytest.skip("cargo is not installed on this machine")
    done = awf(DENIED, wl.cargo_fetch(cargo), ws, wan.ca_pem, extra_env=wl.CARGO_FAST_FAIL)
    assert done.returncode != 0, explain(done)
    assert "crates.test" in done.stderr, explain(done)
    assert "403" in done.stderr, explain(done)


# -- clients that ignore the proxy variables ----------------------------------------------------


def _clients() -> list[str]:
    return ["curl", "python"] + (["node"] if wl.tool("node") else [])


CLIENTS = {"curl": wl.CURL_NOPROXY, "python": wl.PY_NOPROXY, "node": wl.NODE_FETCH}


@pytest.mark.parametrize("client", _clients())
def test_client_ignoring_proxy_vars_is_intercepted(forge: forgemod.Forge, wan: wanmod.Wan,
                                                   ws: Path, client: str) -> None:
    script = CLIENTS[client].format(host="pypi.test") + "; " + \
        CLIENTS[client].format(host="elsewhere.test") + " && echo REACHED_ELSEWHERE || true"
    before = forge.hits(forgemod.V4_ELSEWHERE)
    done = awf(ALLOWED, script, ws, wan.ca_pem)
    assert done.returncode == 0, explain(done)
    assert f"addr={forgemod.V4} host=pypi.test" in done.stdout, explain(done)
    assert "REACHED_ELSEWHERE" not in done.stdout, explain(done)
    assert forge.hits(forgemod.V4_ELSEWHERE) == before


@pytest.mark.parametrize("port", [443, 80])
def test_allowed_name_sent_to_a_foreign_address_reaches_its_own(
        forge: forgemod.Forge, wan: wanmod.Wan, ws: Path, port: int) -> None:
    """`curl --connect-to allowed:PORT:other-ip:PORT`: the SNI (443) or Host (80) is allowed,
    the destination address is not the name's; the proxy must dial the name's own address."""
    before = forge.hits(forgemod.V4_ELSEWHERE)
    done = awf(ALLOWED, wl.connect_to(port), ws, wan.ca_pem)
    assert forge.hits(forgemod.V4_ELSEWHERE) == before, explain(done)
    assert done.returncode == 0, explain(done)
    assert done.stdout.strip() == f"addr={forgemod.V4} host=pypi.test", explain(done)
