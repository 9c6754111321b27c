"""`awf run --learn` end to end (issue 17), netns backend, against the fake internet.

A command that reaches three hosts runs in learn mode: nothing is blocked by name, the three
are logged `would_deny`, and `awf logs suggest --format yaml` writes an allowlist that, fed back
as `--config`, lets the same command through with nothing denied. In learn mode the hard rules
still hold: an IP literal, port 22 and 169.254.169.254 (as a literal and as a name's address)
stay denied."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import wan as wanmod

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(400)]

RESOLVE = ("--resolve", f"allowed.test={wanmod.V4}", "--resolve", f"other.test={wanmod.V4}",
           "--resolve", f"third.example={wanmod.V4}",
           "--resolve", "meta.example=169.254.169.254")
# three hosts: plain HTTP through the proxy, HTTPS through a CONNECT tunnel, and a client that
# ignores the proxy variables (redirected to the transparent listener)
THREE = ("set -e; C='curl -fsS -m 8'; "
         "$C http://other.test/; $C --cacert ca.pem https://allowed.test/; "
         "$C --noproxy '*' http://third.example/")
HARD = ("C='curl -sS -m 8 -o /dev/null -w %{http_code}\\n'; "
        f"$C http://{wanmod.V4}/; $C -p -w '%{{http_connect}}\\n' http://allowed.test:22/; "
        "$C http://169.254.169.254/latest/meta-data/; $C http://meta.example/; "
        f"nc -z -w 3 {wanmod.V4} 22 && echo tcp22-open || echo tcp22-refused")


def awf(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = None
    if cwd is not None:
        import os

        env = {**os.environ, "GITHUB_WORKSPACE": str(cwd)}
    return subprocess.run([sys.executable, "-m", "awf.cli", *args], capture_output=True,
                          text=True, timeout=240, check=False, cwd=cwd, env=env)


def records(logs: Path, name: str = "access.jsonl") -> list[dict[str, object]]:
    path = logs / name
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if "selftest" not in str(r.get("host"))]


@pytest.fixture
def ws(wan: wanmod.Wan, tmp_path: Path) -> Path:
    work = tmp_path / "ws"
    work.mkdir()
    (work / "ca.pem").write_bytes(wan.ca_pem.read_bytes())
    return work


def test_learn_then_suggest_then_the_suggestion_lets_the_command_through(
        ws: Path, tmp_path: Path) -> None:
    learn_then_suggest(ws, tmp_path, "netns")


def learn_then_suggest(ws: Path, tmp_path: Path, backend: str) -> None:
    """The scenario, for either backend (tests/e2e/test_docker_learn.py runs it on Docker)."""
    learn_logs = tmp_path / "learn-logs"
    done = awf("run", "--backend", backend, "--learn", "--allow-domains", "seed.example",
               *RESOLVE, "--proxy-logs-dir", str(learn_logs), "--", "bash", "-c", THREE, cwd=ws)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("hello ") == 3, done.stdout
    err = done.stderr
    first = next(ln for ln in err.splitlines() if "WARNING" in ln or "requests" in ln)
    assert "WARNING: learn mode: every domain is let through" in first, err
    assert "WARNING: learn mode: nothing was blocked by name; 3 requests would have been " \
           "denied" in err, err
    assert "3 requests: 0 allowed, 0 denied, 3 would be denied" in err, err
    recs = records(learn_logs)
    assert sorted((r["host"], r["decision"], r["reason"]) for r in recs) == [
        ("allowed.test", "would_deny", "domain_not_allowed"),
        ("other.test", "would_deny", "domain_not_allowed"),
        ("third.example", "would_deny", "domain_not_allowed"),
    ], recs
    assert all(int(str(r["bytes_up"])) > 0 for r in recs), recs

    suggested = awf("logs", "suggest", "--source", str(learn_logs), "--format", "yaml")
    assert suggested.returncode == 0, suggested.stderr
    for name in ("allowed.test", "other.test", "third.example", "seed.example"):
        assert f"  - {name}\n" in suggested.stdout, suggested.stdout
    config = tmp_path / "suggested.yaml"
    config.write_text(suggested.stdout)

    logs = tmp_path / "logs"
    again = awf("run", "--backend", backend, "--config", str(config), *RESOLVE,
                "--proxy-logs-dir", str(logs), "--", "bash", "-c", THREE, cwd=ws)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("hello ") == 3, again.stdout
    assert "3 requests: 3 allowed, 0 denied" in again.stderr, again.stderr
    assert "learn mode" not in again.stderr
    assert {r["decision"] for r in records(logs)} == {"allow"}


def test_learn_mode_keeps_the_hard_rules(ws: Path, tmp_path: Path, wan: wanmod.Wan) -> None:
    hard_rules_hold(ws, tmp_path, wan, "netns")


def hard_rules_hold(ws: Path, tmp_path: Path, wan: wanmod.Wan, backend: str) -> None:
    logs = tmp_path / "logs"
    done = awf("run", "--backend", backend, "--learn", "--allow-domains", "seed.example",
               *RESOLVE, "--proxy-logs-dir", str(logs), "--", "bash", "-c", HARD, cwd=ws)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["403", "403", "403", "403", "tcp22-refused"], (
        done.stdout, done.stderr[-2000:])
    assert wan.counts()["tcp22"] == 0
    got = {(r["host"], r["port"], r["decision"], r["reason"]) for r in records(logs)}
    assert (wanmod.V4, 80, "deny", "ip_literal") in got, got
    assert ("allowed.test", 22, "deny", "port_denied") in got, got
    assert ("169.254.169.254", 80, "deny", "ip_literal") in got, got
    assert ("meta.example", 80, "deny", "denied_address") in got, got
    assert "nothing was blocked by name; 0 requests would have been denied" in done.stderr


def test_the_summary_counts_outcomes_dns_refusals_and_drops(ws: Path, tmp_path: Path) -> None:
    """Not learn mode: the post-run summary of every run. Requests that all fail upstream
    (dns_failure: the host's resolver has no such name) are shown failed, not just allowed; a
    client that ignores the proxy is counted where it was stopped (the DNS forwarder, the
    network layer); the self-test's own probes are not counted; the hint ends it."""
    script = ("curl -sS -m 8 http://nowhere.example/; curl -sS -m 8 http://nowhere.example/x; "
              "dig +time=2 +tries=1 refused.example; "
              f"nc -z -w 3 {wanmod.V4} 22; true")
    done = awf("run", "--backend", "netns", "--allow-domains", "nowhere.example",
               "--proxy-logs-dir", str(tmp_path / "logs"),
               "--", "bash", "-c", script, cwd=ws)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [ln.removeprefix("[awf] ") for ln in done.stderr.splitlines()]
    [head] = [ln for ln in lines if " requests: " in ln or " request: " in ln]
    assert head.startswith("2 requests: 2 allowed (2 failed upstream), 0 denied · 1 DNS name "
                           "refused · "), head
    assert "network-layer drop" in head, head
    assert "  failed nowhere.example:80 (dns_failure) \u00d72" in lines, lines
    assert lines[-1] == ("To allow the denied domains: --allow-domains nowhere.example,"
                         "refused.example"), lines
