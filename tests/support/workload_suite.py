"""The workload tests both backends run: pip, git, npm, cargo, clients that ignore the proxy
variables, an allowed name sent to a foreign address, and the exit codes users script against.

tests/privileged/test_netns_workloads.py and tests/e2e/test_docker_workloads.py import these
tests and provide the fixtures: `forge` (tests/support/forge.py's stand-ins, in the wan's
namespace), `ws` (a fresh workspace directory on the host) and `sandbox`, which runs one
`bash -c` line in `awf run` with that workspace as `$WS` and the wan's CA as `$CA` (see
tests/support/workloads.py's client_env). Names are resolved by the forge's DNS server
(`--dns-servers`) unless a test says `--resolve`. Each workload is allowed in one run and
denied in another (its name not in `--allow-domains`).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import pytest

from tests.support import forge as forgemod
from tests.support import workloads as wl

ALLOWED = ("--allow-domains", ",".join(forgemod.NAMES), *forgemod.DNS_POLICY)
DENIED = ("--allow-domains", "allowed.test", *forgemod.DNS_POLICY)


class Sandbox(Protocol):
    """Runs `script` (one string: `bash -c`; a list: an argv) in `awf run`. `extra_env` is
    given to the command with `-e`; `caller_env` changes awf's own environment (None unsets a
    name), for what awf derives from it."""

    def __call__(self, policy: tuple[str, ...], script: str | list[str], ws: Path,
                 extra_env: dict[str, str] | None = None,
                 caller_env: Mapping[str, str | None] | None = None
                 ) -> subprocess.CompletedProcess[str]:
        ...


def with_caller_env(base: Mapping[str, str], changes: Mapping[str, str | None] | None
                    ) -> dict[str, str]:
    env = dict(base)
    for name, value in (changes or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def argv(script: str | list[str]) -> list[str]:
    return [script] if isinstance(script, str) else script


def explain(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\nstdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-3000:]}"


# -- pip -----------------------------------------------------------------------------------------


def test_pip_install_allowed(forge: forgemod.Forge, sandbox: Sandbox, ws: Path) -> None:
    done = sandbox(ALLOWED, wl.PIP_INSTALL, ws)
    assert done.returncode == 0, explain(done)
    assert "tiny from pypi.test" in done.stdout
    assert any(r["path"].startswith("/files/") for r in forge.requests("pypi.test"))


def test_pip_install_allowed_by_resolve(forge: forgemod.Forge, sandbox: Sandbox,
                                        ws: Path) -> None:
    """The same with `--resolve` instead of DNS."""
    policy = ("--allow-domains", "pypi.test", *forgemod.RESOLVE_POLICY)
    done = sandbox(policy, wl.PIP_INSTALL, ws)
    assert done.returncode == 0, explain(done)
    assert "tiny from pypi.test" in done.stdout


@pytest.mark.parametrize("transparent", [False, True])
def test_pip_install_over_plain_http(forge: forgemod.Forge, sandbox: Sandbox, ws: Path,
                                     transparent: bool) -> None:
    """Plain HTTP to the index, through the proxy variables or, with them unset, intercepted."""
    unset = "unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy; " if transparent else ""
    done = sandbox(ALLOWED, unset + wl.PIP_INSTALL_HTTP, ws)
    assert done.returncode == 0, explain(done)
    assert "tiny from pypi.test" in done.stdout


def test_git_clone_over_plain_http(forge: forgemod.Forge, sandbox: Sandbox, ws: Path) -> None:
    done = sandbox(ALLOWED, wl.GIT_CLONE_HTTP, ws)
    assert done.returncode == 0, explain(done)
    assert "a repository on git.test" in done.stdout


def test_pip_install_denied_fails_fast_with_403(forge: forgemod.Forge, sandbox: Sandbox,
                                                ws: Path) -> None:
    """With the README's PIP_RETRIES=1, pip prints the proxy's 403 once and gives up."""
    before = len(forge.requests("pypi.test"))
    done = sandbox(DENIED, wl.timed(wl.PIP_INSTALL), ws, extra_env=wl.PIP_FAST_FAIL)
    assert done.returncode != 0, explain(done)
    assert "Tunnel connection failed: 403 Forbidden" in done.stderr, explain(done)
    assert "denied pypi.test:443" in done.stderr, explain(done)  # awf's own summary
    assert wl.elapsed_ms(done.stdout) < 10_000, explain(done)
    assert len(forge.requests("pypi.test")) == before


# -- git -----------------------------------------------------------------------------------------


def test_git_clone_and_push_allowed(forge: forgemod.Forge, sandbox: Sandbox, ws: Path) -> None:
    done = sandbox(ALLOWED, wl.GIT_CLONE_AND_PUSH.format(tag="the sandbox"), ws)
    assert done.returncode == 0, explain(done)
    assert "a repository on git.test" in done.stdout
    assert "pushed from the sandbox" in forge.git_log()


def test_git_clone_denied_names_the_host(forge: forgemod.Forge, sandbox: Sandbox,
                                         ws: Path) -> None:
    done = sandbox(DENIED, wl.GIT_CLONE, ws)
    assert done.returncode != 0, explain(done)
    assert "git.test" in done.stderr, explain(done)
    assert "403" in done.stderr, explain(done)


def test_git_push_denied_names_the_host(forge: forgemod.Forge, sandbox: Sandbox,
                                        ws: Path) -> None:
    assert sandbox(ALLOWED, wl.GIT_CLONE, ws).returncode == 0
    done = sandbox(DENIED, wl.GIT_PUSH, ws)
    assert done.returncode != 0, explain(done)
    assert "git.test" in done.stderr, explain(done)
    assert "403" in done.stderr, explain(done)
    assert "denied push" not in forge.git_log()


# -- npm, cargo ----------------------------------------------------------------------------------


def test_npm_install_allowed(forge: forgemod.Forge, sandbox: Sandbox, ws: Path) -> None:
    npm = wl.tool("npm")
    if npm is None or wl.tool("node") is None:
        pytest.skip("npm and node are not installed on this machine")
    done = sandbox(ALLOWED, wl.npm_install(npm), ws)
    assert done.returncode == 0, explain(done)
    assert "tiny from npm.test" in done.stdout


def test_npm_install_denied(forge: forgemod.Forge, sandbox: Sandbox, ws: Path) -> None:
    npm = wl.tool("npm")
    if npm is None:
        pytest.skip("npm is not installed on this machine")
    done = sandbox(DENIED, wl.npm_install(npm), ws)
    assert done.returncode != 0, explain(done)
    assert "E403" in done.stderr, explain(done)
    assert "npm.test" in done.stderr, explain(done)


def test_cargo_fetch_allowed(forge: forgemod.Forge, sandbox: Sandbox, ws: Path) -> None:
    cargo = wl.tool("cargo")
    if cargo is None:
        pytest.skip("cargo is not installed on this machine")
    done = sandbox(ALLOWED, wl.cargo_fetch(cargo), ws)
    assert done.returncode == 0, explain(done)
    assert any("/download" in r["path"] for r in forge.requests("crates.test"))


def test_cargo_fetch_denied(forge: forgemod.Forge, sandbox: Sandbox, ws: Path) -> None:
    cargo = wl.tool("cargo")
    if cargo is None:
        pytest.skip("cargo is not installed on this machine")
    done = sandbox(DENIED, wl.cargo_fetch(cargo), ws, extra_env=wl.CARGO_FAST_FAIL)
    assert done.returncode != 0, explain(done)
    assert "crates.test" in done.stderr, explain(done)
    assert "403" in done.stderr, explain(done)


# -- clients that ignore the proxy variables ----------------------------------------------------


def _clients() -> list[str]:
    return ["curl", "python"] + (["node"] if wl.tool("node") else [])


CLIENTS = {"curl": wl.CURL_NOPROXY, "python": wl.PY_NOPROXY, "node": wl.NODE_FETCH}


@pytest.mark.parametrize("client", _clients())
def test_client_ignoring_proxy_vars_is_intercepted(forge: forgemod.Forge, sandbox: Sandbox,
                                                   ws: Path, client: str) -> None:
    script = CLIENTS[client].format(host="pypi.test") + "; " + \
        CLIENTS[client].format(host="elsewhere.test") + " && echo REACHED_ELSEWHERE || true"
    before = forge.hits(forgemod.V4_ELSEWHERE)
    done = sandbox(ALLOWED, script, ws)
    assert done.returncode == 0, explain(done)
    assert f"addr={forgemod.V4} host=pypi.test" in done.stdout, explain(done)
    assert "REACHED_ELSEWHERE" not in done.stdout, explain(done)
    assert forge.hits(forgemod.V4_ELSEWHERE) == before


@pytest.mark.parametrize("port", [443, 80])
def test_allowed_name_sent_to_a_foreign_address_reaches_its_own(
        forge: forgemod.Forge, sandbox: Sandbox, ws: Path, port: int) -> None:
    """`curl --connect-to allowed:PORT:other-ip:PORT`: the SNI (443) or Host (80) is allowed,
    the destination address is not the name's; the proxy must dial the name's own address."""
    before = forge.hits(forgemod.V4_ELSEWHERE)
    done = sandbox(ALLOWED, wl.connect_to(port), ws)
    assert forge.hits(forgemod.V4_ELSEWHERE) == before, explain(done)
    assert done.returncode == 0, explain(done)
    assert done.stdout.strip() == f"addr={forgemod.V4} host=pypi.test", explain(done)


# -- enterprise hosts: GH_HOST from GITHUB_SERVER_URL (docs/config.md §8) ----------------------

# a `gh`-like client: it talks to $GH_HOST (gh's /api/v3 on an enterprise host)
GH_LIKE = ('echo "GH_HOST=$GH_HOST"; echo "API=$GITHUB_API_URL"; '
           'curl -sS -m 20 -o /dev/null -w "code=%{http_code}\\n" "https://$GH_HOST/api/v3/meta"')


@pytest.mark.parametrize("env_all", [False, True], ids=["passthrough", "env-all"])
def test_gh_host_follows_an_enterprise_github_server_url(forge: forgemod.Forge, sandbox: Sandbox,
                                                         ws: Path, env_all: bool) -> None:
    """GITHUB_SERVER_URL in awf's environment names a GHES host (the forge's git.test): the
    command gets GH_HOST and GITHUB_API_URL for it, with and without --env-all, and a client
    using $GH_HOST reaches that host through the firewall."""
    before = len([r for r in forge.requests("git.test") if r["path"] == "/api/v3/meta"])
    policy = (*ALLOWED, *(["--env-all"] if env_all else []))
    done = sandbox(policy, GH_LIKE, ws, caller_env={
        "GITHUB_SERVER_URL": "https://git.test", "GH_HOST": None, "GITHUB_API_URL": None})
    assert done.returncode == 0, explain(done)
    lines = done.stdout.splitlines()
    assert "GH_HOST=git.test" in lines, explain(done)
    assert "API=https://git.test/api/v3" in lines, explain(done)
    assert any(ln.startswith("code=") and ln != "code=000" for ln in lines), explain(done)
    after = [r for r in forge.requests("git.test") if r["path"] == "/api/v3/meta"]
    assert len(after) == before + 1, explain(done)


def test_an_explicit_gh_host_is_kept(forge: forgemod.Forge, sandbox: Sandbox, ws: Path) -> None:
    """A GH_HOST given with -e stays; the API URL missing is still derived."""
    done = sandbox(ALLOWED, 'echo "GH_HOST=$GH_HOST"; echo "API=$GITHUB_API_URL"', ws,
                   extra_env={"GH_HOST": "pypi.test"},
                   caller_env={"GITHUB_SERVER_URL": "https://git.test", "GH_HOST": None,
                               "GITHUB_API_URL": None})
    assert done.returncode == 0, explain(done)
    assert done.stdout.splitlines() == ["GH_HOST=pypi.test", "API=https://git.test/api/v3"], \
        explain(done)


# -- what the run says it enforces ------------------------------------------------------------


def test_the_run_says_what_it_enforces(forge: forgemod.Forge, sandbox: Sandbox, ws: Path,
                                       tmp_path: Path) -> None:
    """One line for the allowed entries and one for the blocked ones at the start; run.json
    keeps the effective configuration (redacted) and the policy."""
    logs = tmp_path / "logs"
    policy = (*ALLOWED, "--block-domains", "npm.test", "--proxy-logs-dir", str(logs))
    done = sandbox(policy, "true", ws, extra_env={"MY_TOKEN": "s3cret-value-21"})
    assert done.returncode == 0, explain(done)
    err = done.stderr.splitlines()
    assert f"[awf] allowed: {', '.join(forgemod.NAMES)}" in err, explain(done)
    assert "[awf] blocked: npm.test" in err, explain(done)
    assert err.index("[awf] blocked: npm.test") < len(err) - 1  # at the start, not the end
    text = (logs / "run.json").read_text()
    assert "s3cret-value-21" not in text
    doc = json.loads(text)
    settings = {s["key"]: s for s in doc["config"]["settings"]}
    allow = settings["allow_domains"]["value"]  # as given: one comma-separated item
    assert [name for item in allow for name in item.split(",")] == list(forgemod.NAMES), allow
    assert settings["allow_domains"]["source"] == "flag"
    assert "MY_TOKEN=[REDACTED]" in settings["env"]["value"]
    rules = doc["policy"]["rules"]
    assert [r["match"]["domain"] for r in rules if r.get("reason") == "domain_blocked"] == [
        "npm.test"]
    assert [r["match"]["domain"] for r in rules if r["action"] == "allow"] == list(
        forgemod.NAMES)


def test_an_empty_allowlist_is_a_warning(sandbox: Sandbox, ws: Path) -> None:
    done = sandbox(("--allow-domains", ""), "true", ws)
    assert done.returncode == 0, explain(done)
    assert ("[awf] WARNING: no domain is allowed: every request will be denied"
            in done.stderr.splitlines()), explain(done)


# -- exit codes users script against -------------------------------------------------------------
# (as a shell line, `bash -c` decides; as an argv, awf's exec in the sandbox does)

NO_NET = ("--allow-domains", "allowed.test")


@pytest.mark.parametrize("form", ["shell", "argv"])
def test_command_not_found_is_127(sandbox: Sandbox, ws: Path, form: str) -> None:
    done = sandbox(NO_NET, "no-such-command-awf" if form == "shell" else
                   ["no-such-command-awf", "arg"], ws)
    assert done.returncode == 127, explain(done)
    assert "no-such-command-awf" in done.stderr, explain(done)


@pytest.mark.parametrize("form", ["shell", "argv", "directory"])
def test_not_executable_is_126(sandbox: Sandbox, ws: Path, form: str) -> None:
    scripts: dict[str, str | list[str]] = {"shell": "/etc/passwd", "argv": ["/etc/passwd", "arg"],
                                           "directory": ["/usr", "arg"]}
    script = scripts[form]
    done = sandbox(NO_NET, script, ws)
    assert done.returncode == 126, explain(done)


@pytest.mark.parametrize("script", ["exit 255", ["bash", "-c", "exit 255"]])
def test_exit_255_is_passed_through(sandbox: Sandbox, ws: Path,
                                    script: str | list[str]) -> None:
    done = sandbox(NO_NET, script, ws)
    assert done.returncode == 255, explain(done)


@pytest.mark.parametrize(("sig", "code"), [("KILL", 137), ("SEGV", 139), ("HUP", 129),
                                           ("TERM", 143)])
def test_a_command_killed_by_signal_n_is_128_plus_n(sandbox: Sandbox, ws: Path, sig: str,
                                                   code: int) -> None:
    done = sandbox(NO_NET, ["bash", "-c", f"kill -{sig} $$"], ws)
    assert done.returncode == code, explain(done)
