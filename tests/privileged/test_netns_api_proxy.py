"""`awf run --backend netns` with provider keys: the API proxy sidecar end to end.

OPENAI_API_KEY and ANTHROPIC_API_KEY are in awf's environment; tests/support/api_origin.py plays
both providers (TLS, its own CA) at an address of ours in the wan namespace, reached through
--openai-api-target/--anthropic-api-target and --extra-ca-certs. The command calls the
sidecar's base URLs (streamed and not) and gets the origin's answers; the origin saw the real
keys; the command's env, every /proc/*/environ it can read and every log file hold none; the
same calls straight to the target are refused.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import api_origin, api_run
from tests.support import wan as wanmod
from tests.support.needs import need_root

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(300)]


def awf(*args: str, timeout: float = 120, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    env = api_run.awf_env()
    if cwd is not None:  # the workspace: the only host directory besides the system's it sees
        env["GITHUB_WORKSPACE"] = str(cwd)
    return subprocess.run([sys.executable, "-m", "awf.cli", "run", "--backend", "netns", *args],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env=env, cwd=cwd)


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[api_origin.Origin]:
    need_root()
    w = wanmod.start(tmp_path_factory.mktemp("wan"))
    try:
        o = api_origin.start(w.netns, tmp_path_factory.mktemp("origin"))
        try:
            yield o
        finally:
            o.close()
    finally:
        w.close()


@pytest.fixture(scope="module")
def run(origin: api_origin.Origin, tmp_path_factory: pytest.TempPathFactory
        ) -> tuple[subprocess.CompletedProcess[str], dict[str, object], Path]:
    ws = tmp_path_factory.mktemp("probe")  # the sandbox sees the workspace, not the host's /tmp
    (ws / "probe.py").write_text(api_run.PROBE)
    (ws / "ca.pem").write_bytes(origin.ca_pem.read_bytes())
    os.chmod(ws, 0o755)
    logs = tmp_path_factory.mktemp("logs")
    done = awf(*api_run.flags(origin.ca_pem), "--proxy-logs-dir", str(logs), "--",
               "python3", "probe.py", "ca.pem", api_origin.ADDR, str(api_origin.PORT), cwd=ws)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, api_run.results(done.stdout), logs


def sidecar_host(logs: Path) -> str:
    nft = (logs / "agent.nft").read_text()
    # the agent's ruleset names the sidecar's address (the veth's host end) with its ports
    line = next(ln for ln in nft.splitlines() if "10000" in ln)
    return next(w for w in line.replace(",", " ").split() if w.count(".") == 3)


def test_calls_reach_the_origin_through_the_sidecar(run: tuple[
        subprocess.CompletedProcess[str], dict[str, object], Path]) -> None:
    api_run.check_calls(run[1])


def test_the_origin_saw_the_real_keys(run: tuple[
        subprocess.CompletedProcess[str], dict[str, object], Path],
        origin: api_origin.Origin) -> None:
    api_run.check_origin(origin)


def test_no_real_key_in_the_sandbox(run: tuple[
        subprocess.CompletedProcess[str], dict[str, object], Path]) -> None:
    api_run.check_env(run[1], sidecar_host(run[2]))


def test_direct_calls_to_the_target_are_denied(run: tuple[
        subprocess.CompletedProcess[str], dict[str, object], Path]) -> None:
    api_run.check_direct_denied(run[1])


def test_the_sidecar_leaves_through_the_one_proxy_as_its_client(run: tuple[
        subprocess.CompletedProcess[str], dict[str, object], Path]) -> None:
    api_run.check_one_proxy(run[2])


def test_no_key_in_logs_and_the_summary_counts_tokens(run: tuple[
        subprocess.CompletedProcess[str], dict[str, object], Path]) -> None:
    done, _, logs = run
    api_run.check_logs(logs, done.stderr)
    timings = json.loads((logs / "run.json").read_text())["timings"]
    assert timings["api_proxy"] < timings["exec"]  # ready before the command started
    assert not list(Path("/dev/shm").glob("awf-*/api-keys"))  # wiped


def test_no_api_proxy_starts_no_sidecar(origin: api_origin.Origin, tmp_path: Path) -> None:
    done = awf("--no-api-proxy", "--allow-domains", "allowed.test", "--",
               "bash", "-c", "echo ${OPENAI_BASE_URL:-none} ${OPENAI_API_KEY:-nokey}",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "none nokey"  # and no key: agentenv never passes them
    assert "api-proxy:" not in done.stderr


def test_rate_limit_rpm_1_the_second_call_gets_429(origin: api_origin.Origin,
                                                   tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    call = ('curl -sS -m 20 -o /dev/null -D - -H "content-type: application/json" '
            '-d \'{"model":"m","messages":[]}\' "$OPENAI_BASE_URL/chat/completions"')
    done = awf(*api_run.flags(origin.ca_pem), "--rate-limit-rpm", "1", "--proxy-logs-dir",
               str(logs), "--", "bash", "-c", f"{call}; {call}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    heads = [h for h in done.stdout.replace("\r", "").split("\n\n") if h.strip()]
    assert [h.split()[1] for h in heads] == ["200", "429"], done.stdout
    limited = {k.lower(): v.strip() for k, _, v in (
        ln.partition(":") for ln in heads[1].splitlines()[1:])}
    assert int(limited["retry-after"]) >= 1
    assert limited["x-ratelimit-limit"] == "1"
    assert limited["x-ratelimit-remaining"] == "0"
    assert limited["x-awf-reason"] == "rate_limited"
    records = [json.loads(ln) for ln in
               (logs / "api-proxy" / "api-proxy.jsonl").read_text().splitlines()]
    assert [(r["status"], r["error"]) for r in records] == [(200, None), (429, "rate_limited")]
    assert "api-proxy: openai 2 requests (1 failed)" in done.stderr


def test_a_sidecar_that_dies_mid_run_fails_closed(origin: api_origin.Origin,
                                                  tmp_path: Path) -> None:
    ws, logs = tmp_path / "ws", tmp_path / "logs"
    ws.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "awf.cli", "run", "--backend", "netns",
         *api_run.flags(origin.ca_pem), "--proxy-logs-dir", str(logs), "--",
         "bash", "-c", "echo started; sleep 60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ws,
        env={**api_run.awf_env(), "GITHUB_WORKSPACE": str(ws)})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        entry = _descendant(proc.pid, b"containers.api_entry")
        assert entry is not None
        os.kill(entry, signal.SIGKILL)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - t0 < 10
        assert proc.returncode == 125, err
        assert "API proxy sidecar died" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _descendant(root: int, marker: bytes) -> int | None:
    """A process below `root` whose command line holds `marker`."""
    todo, seen = [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            if pid != root and marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return None
