"""Issue 16 item 4: the host as tools expect it, through a real Docker run (chroot host mode).

One awf run with a temporary HOME (awf takes the home from $HOME when not under sudo) and a
$GITHUB_PATH file naming a directory with a tool in it; the script prints what it sees as
key=value lines, and the host is checked afterwards for what it wrote to the shared places.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.test_docker_run import awf_argv
from tests.support.needs import need_docker, need_root

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

GH_AW = Path("/tmp/gh-aw")
SCRIPT = r'''
echo "tool=$(TOOL 2>&1)"
echo "path=$PATH"
echo "cred=$(wc -c < ~/.claude/.credentials.json)"
echo "claude_settings=$(cat ~/.claude/settings.json)"
echo from-sandbox > ~/.copilot/x; echo "copilot_rc=$?"
echo from-sandbox > ~/.m2/written; echo "m2_rc=$?"
echo "m2_settings=$(wc -c < ~/.m2/settings.xml)"
echo "ghaw=$(cat /tmp/gh-aw/IN)"
echo from-sandbox > /tmp/gh-aw/OUT; echo "ghaw_rc=$?"
echo "mcp_logs=$(ls -A /tmp/gh-aw/mcp-logs | wc -l)"
cat /tmp/gh-aw/mcp-logs/SECRET >/dev/null 2>&1; echo "mcp_secret_rc=$?"
echo "node_ca=${NODE_EXTRA_CA_CERTS:-unset}"
echo "ssl_cert_file=${SSL_CERT_FILE:-unset}"
echo "java=$(java -version 2>&1 | head -1)"
echo "etc_apt=$(test -d /etc/apt && echo yes)"
echo "etc_shadow=$(test -e /etc/shadow && echo yes || echo no)"
echo "ssl_private=$(ls -A /etc/ssl/private 2>/dev/null | wc -l)"
echo "done=1"
'''


@dataclass
class Outcome:
    seen: dict[str, str]
    stderr: str
    home: Path
    tag: str


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    need_docker()
    need_root()
    tag = secrets.token_hex(4)
    top = tmp_path_factory.mktemp("hostview")
    home, ws, tools = top / "home", top / "ws", top / "tools"
    for d in (home / ".claude", home / ".m2", ws, tools):
        d.mkdir(parents=True)
    (home / ".claude" / ".credentials.json").write_text("SECRET token\n")
    (home / ".claude" / "settings.json").write_text("visible\n")
    (home / ".m2" / "settings.xml").write_text("<password>SECRET</password>\n")
    tool = tools / f"awf-hv-tool-{tag}"
    tool.write_text("#!/bin/sh\necho hello-from-github-path\n")
    tool.chmod(0o755)
    github_path = top / "github_path"
    github_path.write_text(f"/nonexistent/bin\n{tools}\n")
    for p in [top, *top.rglob("*")]:
        if not p.is_symlink():
            os.chmod(p, 0o755 if p.is_dir() else (0o755 if p == tool else 0o644))
    made_gh_aw = not GH_AW.exists()
    (GH_AW / "mcp-logs").mkdir(parents=True, exist_ok=True)
    ins, out, secret = (GH_AW / f"in-{tag}", GH_AW / f"out-{tag}",
                        GH_AW / "mcp-logs" / f"secret-{tag}")
    ins.write_text("from-host\n")
    secret.write_text("SECRET mcp log\n")
    script = (SCRIPT.replace("TOOL", tool.name).replace("/tmp/gh-aw/IN", str(ins))
              .replace("/tmp/gh-aw/OUT", str(out)).replace("mcp-logs/SECRET", secret.name))
    env = {**os.environ, "HOME": str(home), "GITHUB_PATH": str(github_path),
           "NODE_EXTRA_CA_CERTS": "/etc/ssl/certs/ca-certificates.crt",
           "SSL_CERT_FILE": str(top / "not-visible.pem"),
           # the images stay where they were built (awf caches them under $HOME otherwise)
           "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")}
    (top / "not-visible.pem").write_text("x\n")
    env.pop("GITHUB_WORKSPACE", None)
    try:
        done = subprocess.run(
            awf_argv("--allow-domains", "allowed.test", "--share-home", str(home / ".m2"),
                     "--", script),
            capture_output=True, text=True, timeout=300, check=False, cwd=ws, env=env)
        seen = dict(ln.split("=", 1) for ln in done.stdout.splitlines() if "=" in ln)
        assert seen.get("done") == "1", done.stdout + done.stderr[-3000:]
        yield Outcome(seen, done.stderr, home, tag)
        assert out.read_text() == "from-sandbox\n"
    finally:
        for p in (ins, out, secret):
            p.unlink(missing_ok=True)
        if made_gh_aw:
            shutil.rmtree(GH_AW, ignore_errors=True)


def test_a_tool_in_a_github_path_directory_runs_by_name(outcome: Outcome) -> None:
    assert outcome.seen["tool"] == "hello-from-github-path"
    path = outcome.seen["path"].split(":")
    assert path[0].endswith("/tools")
    assert "/nonexistent/bin" not in path
    assert "/usr/bin" in path


def test_engine_state_is_written_to_the_host_and_credentials_stay_masked(
        outcome: Outcome) -> None:
    assert outcome.seen["copilot_rc"] == "0"
    assert (outcome.home / ".copilot" / "x").read_text() == "from-sandbox\n"
    assert outcome.seen["cred"] == "0"
    assert outcome.seen["claude_settings"] == "visible"


def test_share_home_is_read_write_with_its_credentials_masked(outcome: Outcome) -> None:
    assert outcome.seen["m2_rc"] == "0"
    assert (outcome.home / ".m2" / "written").read_text() == "from-sandbox\n"
    assert outcome.seen["m2_settings"] == "0"


def test_gh_aw_is_shared_and_its_mcp_logs_are_not_readable(outcome: Outcome) -> None:
    assert outcome.seen["ghaw"] == "from-host"
    assert outcome.seen["ghaw_rc"] == "0"  # and the fixture checks the host has the file
    assert outcome.seen["mcp_logs"] == "0"
    assert outcome.seen["mcp_secret_rc"] != "0"


def test_ca_variables_pass_when_their_file_is_visible(outcome: Outcome) -> None:
    assert outcome.seen["node_ca"] == "/etc/ssl/certs/ca-certificates.crt"
    assert outcome.seen["ssl_cert_file"] == "unset"
    assert "SSL_CERT_FILE=" in outcome.stderr
    assert "not visible in the sandbox" in outcome.stderr


def test_java_runs_with_the_hosts_configuration(outcome: Outcome) -> None:
    if shutil.which("java") is None:
        pytest.skip("no JDK on this host (java is not on PATH)")
    assert "version" in outcome.seen["java"], outcome.seen["java"]
    assert "Error" not in outcome.seen["java"]


def test_etc_shows_toolchain_config_but_not_secrets(outcome: Outcome) -> None:
    if Path("/etc/apt").is_dir():
        assert outcome.seen["etc_apt"] == "yes"
    assert outcome.seen["etc_shadow"] == "no"
    assert outcome.seen["ssl_private"] == "0"


def test_no_leftovers(outcome: Outcome) -> None:
    assert_run_removed(outcome.stderr)


def assert_run_removed(stderr: str) -> None:
    """Nothing of this run is left (other runs may be live on this machine meanwhile)."""
    found = re.search(r"awf-logs-([0-9a-f]{8})", stderr)
    assert found, stderr[-2000:]
    for kind in ("ps -a", "network ls"):
        left = subprocess.run(["docker", *kind.split(), "-q", "--filter",
                               f"label=io.awf.run={found.group(1)}"], capture_output=True,
                              text=True, check=True, timeout=30).stdout.split()
        assert left == [], (kind, left)
