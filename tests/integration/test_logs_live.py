"""`awf logs` over real log directories: a real awf-proxy (explicit listener and DNS forwarder)
on loopback, local origins and a stub upstream DNS server, then every filter, format and
subcommand of `awf logs` on what the proxy wrote; `-f` on a live proxy's log.

Only `l3-drops.json` is written by hand (netfilter's format): drops need nft and a namespace.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.asyncquery
import dns.message
import pytest
import yaml

from awf.cli import main as awf_main
from awf.logs import read
from awf.logs.stats import count
from proxy.config import build_policy, load_file, merge
from proxy.policy import Scheme
from tests.dns_stub import StubDns, Zone
from tests.support.client import connect, get, read_response, roundtrip
from tests.support.origins import http_origin
from tests.support.proxyproc import ProxyProc, running_proxy

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RUN = "feedc0de"
API_PROXY_SOURCE = "127.0.0.30"  # .30 of run.json's subnet: the API-proxy sidecar's address


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def policy_args(origin_port: int, dead_port: int, stub: tuple[str, int]) -> list[str]:
    names = ["api.github.com", "codeload.github.com", "dead.github.com", "nx.github.com"]
    return [
        "--allow-domains", ",".join(names),
        *[a for n in names[:3] for a in ("--resolve", f"{n}=127.0.0.1")],
        "--allow-range", "127.0.0.1/32",
        "--allow-ports", f"{origin_port},{dead_port}",
        "--dns-servers", f"{stub[0]}:{stub[1]}",
        "--dns-listen", "127.0.0.1:0",
    ]


async def request_from(source: str, port: int, raw: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        writer.write(raw)
        await writer.drain()
        return (await read_response(reader)).status
    finally:
        writer.close()


async def dns_query(proxy: ProxyProc, name: str) -> str:
    host, port = proxy.endpoint(1)
    q = dns.message.make_query(name, "A")
    reply = await dns.asyncquery.udp(q, host, port=port, timeout=3)
    return dns.rcode.to_text(reply.rcode())


async def produce(logs: Path) -> None:
    """One run's worth of traffic through a real proxy; its logs end up in `logs`."""
    stub = StubDns(Zone())
    await stub.start()
    dead = free_port()
    try:
        async with http_origin() as origin:
            op = origin.port
            async with running_proxy(*policy_args(op, dead, stub.address),
                                     "--log-dir", str(logs)) as proxy:
                p = proxy.port
                statuses = [
                    (await roundtrip(p, get(f"http://api.github.com:{op}/small"))).status,
                    (await roundtrip(p, get(f"http://api.github.com:{op}/small"))).status,
                    await request_from(API_PROXY_SOURCE, p,
                                       get(f"http://codeload.github.com:{op}/small")),
                    (await roundtrip(p, get(f"http://dead.github.com:{dead}/"))).status,
                    (await roundtrip(p, get(f"http://nx.github.com:{op}/"))).status,
                    (await roundtrip(p, get("http://example.com/"))).status,
                    (await roundtrip(p, connect("api.denied.com:443"))).status,
                    (await roundtrip(p, connect("www.denied.com:443"))).status,
                    (await roundtrip(p, get("http://169.254.169.254/latest"))).status,
                    (await roundtrip(p, get("http://awf-selftest.invalid/"))).status,
                ]
                assert statuses == [200, 200, 200, 502, 502, 403, 403, 403, 403, 403]
                rcodes = [await dns_query(proxy, n)
                          for n in ("api.github.com", "evil.org", "awf-selftest.invalid")]
                assert rcodes == ["NOERROR", "NXDOMAIN", "NXDOMAIN"]
    finally:
        await stub.close()
    (logs / "l3-drops.json").write_text(json.dumps([
        {"dst": "203.0.113.7", "proto": "tcp", "port": 22, "count": 1},
        {"dst": "192.0.2.1", "proto": "tcp", "port": 22, "count": 1},  # the self-test's probe
    ]))
    (logs / "run.json").write_text(json.dumps({
        "id": RUN, "version": "0.1.0", "backend": "docker", "exit_code": 0,
        "awf_error": None, "logs": str(logs), "subnets": {"v4": "127.0.0.0/24"}}))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    logs = tmp_path_factory.mktemp("tmpdir") / f"awf-logs-{RUN}"
    logs.mkdir()
    asyncio.run(produce(logs))
    return logs


@pytest.fixture(autouse=True)
def no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWF_LOGS_DOCKER", "0")
    monkeypatch.delenv("NO_COLOR", raising=False)


@dataclass
class Out:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


def awf(capsys: pytest.CaptureFixture[str], *args: str) -> Out:
    code = awf_main(["logs", *args])
    got = capsys.readouterr()
    return Out(code, got.out, got.err)


def awf_proc(*args: str, env: dict[str, str] | None = None, user: int | None = None,
             timeout: float = 30) -> Out:
    argv = [sys.executable, "-m", "awf.cli", "logs", *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    full = {**os.environ, "AWF_LOGS_DOCKER": "0", "PYTHONPATH": str(ROOT), **(env or {})}
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=full,
                       cwd="/")
    return Out(p.returncode, p.stdout, p.stderr)


def records(run_dir: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in (run_dir / "access.jsonl").read_text().splitlines()]


# -- the log the proxy wrote, and the true count --------------------------------------------


def test_the_proxy_wrote_what_the_tests_rely_on(run_dir: Path) -> None:
    recs = records(run_dir)
    assert len(recs) == 10
    reasons = {str(r["host"]): r["reason"] for r in recs}
    assert reasons["dead.github.com"] == "connect_failed"
    assert reasons["nx.github.com"] == "dns_failure"
    assert reasons["169.254.169.254"] == "ip_literal"


def test_true_count_of_a_real_run(run_dir: Path) -> None:
    src = read.dir_source(run_dir, docker=False)
    c = read.load_counts(src)
    assert (c.requests, c.answered, c.failed, c.denied, c.would_deny) == (9, 3, 2, 4, 0)
    assert c.failures == {"connect_failed": 1, "dns_failure": 1}
    assert c.denials == {"domain_not_allowed": 3, "ip_literal": 1}
    assert c.bytes_down == 300  # three answered /small: 100 body bytes each
    assert (c.dns_queries, c.dns_refused, c.dns_refused_names) == (2, 1, {"evil.org":
                                                                          "domain_not_allowed"})
    assert [str(d) for d in c.drops] == ["203.0.113.7 tcp/22 \u00d71"]
    assert c.selftest == 3  # one proxy record, one DNS query, one drop
    assert c.clients == {"agent": 8, "api-proxy": 1}
    # the pure function gives the same over the same records
    dns = [json.loads(x) for x in (run_dir / "dns.jsonl").read_text().splitlines()]
    drops = json.loads((run_dir / "l3-drops.json").read_text())
    again = count(records(run_dir), dns, drops, api_proxy=frozenset({API_PROXY_SOURCE}))
    assert again.to_json() == c.to_json()


# -- awf logs: formats and filters --------------------------------------------------------


def test_pretty_lines(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = awf(capsys, "--source", str(run_dir))
    assert r.code == 0
    assert len(r.lines) == 9  # the self-test's record is hidden
    t = r"\d\d:\d\d:\d\d\.\d{3}"
    assert re.fullmatch(rf"{t} DENY GET example\.com:80 403 domain_not_allowed", r.lines[5])
    assert re.fullmatch(rf"{t} ALLOW GET api\.github\.com:\d+ 200", r.lines[0])
    assert re.fullmatch(rf"{t} FAIL GET dead\.github\.com:\d+ 502 connect_failed", r.lines[3])
    assert re.fullmatch(rf"{t} DENY CONNECT api\.denied\.com:443 403 domain_not_allowed",
                        r.lines[6])
    assert "\x1b[" not in r.out  # not a terminal: no colour


def test_all_shows_the_selftest(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = awf(capsys, "--source", str(run_dir), "--all")
    assert len(r.lines) == 10
    assert r.lines[-1].endswith("awf-selftest.invalid:80 403 domain_not_allowed (self-test)")


def test_raw_is_the_file_itself(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = awf(capsys, "--source", str(run_dir), "--format", "raw", "--all")
    assert r.out == (run_dir / "access.jsonl").read_text()


def test_json_is_one_object_per_line(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = awf(capsys, "--source", str(run_dir), "--format", "json")
    assert [json.loads(x) for x in r.lines] == records(run_dir)[:9]


@pytest.mark.parametrize(("args", "hosts"), [
    (("--decision", "deny"), ["example.com", "api.denied.com", "www.denied.com",
                              "169.254.169.254"]),
    (("--decision", "allow"), ["api.github.com", "api.github.com", "codeload.github.com",
                               "dead.github.com", "nx.github.com"]),
    (("--decision", "would_deny"), []),
    (("--host", "*.denied.com"), ["api.denied.com", "www.denied.com"]),
    (("--host", "*:443"), ["api.denied.com", "www.denied.com"]),
    (("--host", "API.GITHUB.COM"), ["api.github.com", "api.github.com"]),
    (("--reason", "connect_failed,dns_failure"), ["dead.github.com", "nx.github.com"]),
    (("--reason", "ip_literal"), ["169.254.169.254"]),
    (("--reason", "none"), ["api.github.com", "api.github.com", "codeload.github.com"]),
    (("--client", "api-proxy"), ["codeload.github.com"]),
    (("--decision", "deny", "--host", "*.com", "--reason", "domain_not_allowed"),
     ["example.com", "api.denied.com", "www.denied.com"]),
])
def test_filters(run_dir: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
                 hosts: list[str]) -> None:
    r = awf(capsys, "--source", str(run_dir), "--format", "json", *args)
    assert r.code == 0
    assert [json.loads(x)["host"] for x in r.lines] == hosts


def test_client_agent(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = awf(capsys, "--source", str(run_dir), "--client", "agent")
    assert len(r.lines) == 8


def test_since_and_until(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recs = records(run_dir)
    first, fifth, last = str(recs[0]["ts"]), str(recs[4]["ts"]), str(recs[8]["ts"])
    r = awf(capsys, "--source", str(run_dir), "--since", first, "--until", last)
    assert len(r.lines) == 9
    r = awf(capsys, "--source", str(run_dir), "--until", fifth, "--format", "json")
    assert all(str(json.loads(x)["ts"]) <= fifth for x in r.lines)
    assert len(r.lines) >= 5
    r = awf(capsys, "--source", str(run_dir), "--since", "2h")
    assert len(r.lines) == 9
    r = awf(capsys, "--source", str(run_dir), "--since", "2999-01-01T00:00:00Z")
    assert r.lines == []
    r = awf(capsys, "--source", str(run_dir), "--until", "2000-01-01T00:00:00Z")
    assert r.lines == []


def test_a_bad_time_is_a_usage_error(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = awf(capsys, "--source", str(run_dir), "--since", "yesterday-ish")
    assert r.code == 2
    assert r.err.count("\n") == 1
    assert "--since 'yesterday-ish'" in r.err


def test_dns_file_as_source(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = awf(capsys, "--source", str(run_dir / "dns.jsonl"))
    assert len(r.lines) == 2
    assert re.fullmatch(r"\S+ DENY DNS A evil\.org NXDOMAIN domain_not_allowed", r.lines[1])


# -- sources ------------------------------------------------------------------------------


def test_run_id_and_default_source(run_dir: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(run_dir.parent))
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert len(awf(capsys, "--source", RUN[:4]).lines) == 9
    assert len(awf(capsys).lines) == 9
    listed = awf(capsys, "--list")
    assert listed.lines[0].split()[:3] == ["finished", "(exit", "0)"]
    assert listed.lines[0].endswith(str(run_dir))


def test_no_source_is_exit_1_with_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = awf_proc(env={"TMPDIR": str(empty)})
    assert r.code == 1
    assert r.out == ""
    assert r.err.count("\n") == 1
    assert f"looked for running runs and in {empty}/awf-logs-*" in r.err
    r = awf_proc("--source", "running", env={"TMPDIR": str(empty)})
    assert (r.code, r.err.count("\n")) == (1, 1)
    r = awf_proc("--source", str(empty / "nope"))
    assert (r.code, r.err.count("\n")) == (1, 1)


@pytest.fixture
def sleeper() -> Iterator[int]:
    p = subprocess.Popen(["sleep", "60"])
    try:
        yield p.pid
    finally:
        p.kill()
        p.wait()


def test_running_runs_come_first(run_dir: Path, tmp_path: Path, sleeper: int,
                                 capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    live = tmp_path / "awf-logs-11111111"
    dead = tmp_path / "awf-logs-22222222"
    for d in (live, dead):
        shutil.copytree(run_dir, d)
    (live / "run.json").write_text(json.dumps({"id": "11111111", "pid": sleeper}))
    (dead / "run.json").write_text(json.dumps({"id": "22222222", "pid": 2 ** 22 + 7}))
    os.utime(live / "access.jsonl", (1, 1))  # older than the others: still listed first
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    listed = awf(capsys, "--list", "--format", "json")
    states = [(json.loads(x)["id"], json.loads(x)["state"]) for x in listed.lines]
    assert states[0] == ("11111111", "running")
    assert ("22222222", "unfinished") in states
    src = read.resolve("running")
    assert src.run is not None
    assert (src.run.id, src.run.pid) == ("11111111", sleeper)
    assert read.resolve(None).label == str(live)


def test_a_non_root_user_reads_their_logs(run_dir: Path) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to become another user")
    top = Path(tempfile.mkdtemp(prefix="awf-logs-test-"))
    try:
        top.chmod(0o755)
        logs = top / f"awf-logs-{RUN}"
        shutil.copytree(run_dir, logs)
        for p in [logs, *logs.iterdir()]:
            os.chown(p, 65534, 65534)
            p.chmod(0o755 if p.is_dir() else 0o644)
        r = awf_proc("stats", "--format", "json", env={"TMPDIR": str(top)}, user=65534)
        assert r.code == 0, r.err
        assert json.loads(r.out)["requests"] == 9
    finally:
        shutil.rmtree(top)


# -- stats, summary, suggest --------------------------------------------------------------


def test_stats_formats(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(awf(capsys, "stats", "--source", str(run_dir), "--format", "json").out)
    assert (doc["requests"], doc["allowed"], doc["answered"], doc["failed"], doc["denied"]) == (
        9, 5, 3, 2, 4)
    assert doc["run"] == RUN
    assert doc["dns"]["refused_names"] == {"evil.org": "domain_not_allowed"}
    assert doc["network_drops"]["packets"] == 1
    assert doc["selftest_excluded"] == 3
    assert doc["time"]["first"] <= doc["time"]["last"]
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert hosts["api.github.com"]["bytes_down"] == 200
    pretty = awf(capsys, "stats", "--source", str(run_dir)).out
    assert "requests   9: 5 allowed (3 answered, 2 failed upstream), 4 denied" in pretty
    assert "DNS        2 queries: 1 allowed (0 failed), 1 refused (evil.org)" in pretty
    assert "network    1 drop: 203.0.113.7 tcp/22 \u00d71" in pretty
    md = awf(capsys, "stats", "--source", str(run_dir), "--format", "markdown").out
    assert md.startswith("### awf firewall: 9 requests")
    assert "| Host | Answered | Failed | Denied | Up | Down | Reasons |" in md


SUMMARY = """\
<details open>
<summary>awf firewall: 9 requests · 5 allowed (2 failed upstream) · 4 denied · 8 hosts · 1 network-layer drop</summary>

| Host | Allowed | Denied | Reason |
|---|---:|---:|---|
| api.github.com | 2 | 0 | |
| codeload.github.com | 1 | 0 | |
| dead.github.com | 1 | 0 | connect_failed (upstream) |
| nx.github.com | 1 | 0 | dns_failure (upstream) |
| 169.254.169.254 | 0 | 1 | ip_literal |
| api.denied.com | 0 | 1 | domain_not_allowed |
| example.com | 0 | 1 | domain_not_allowed |
| www.denied.com | 0 | 1 | domain_not_allowed |

DNS: 2 queries, 1 refused (evil.org). Network layer: 203.0.113.7 tcp/22 \u00d71.

To allow the denied domains: `--allow-domains denied.com,evil.org,example.com,github.com`
</details>
"""  # noqa: E501


def test_summary_markdown_snapshot(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert awf(capsys, "summary", "--source", str(run_dir)).out == SUMMARY


def test_step_summary_appends(run_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "step.md"
    target.write_text("# before\n")
    for _ in range(2):
        r = awf_proc("summary", "--source", str(run_dir), "--step-summary",
                     env={"GITHUB_STEP_SUMMARY": str(target)})
        assert (r.code, r.out, r.err) == (0, "", "")
    assert target.read_text() == "# before\n" + SUMMARY + SUMMARY


def test_step_summary_without_the_variable(run_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    p = subprocess.run([sys.executable, "-m", "awf.cli", "logs", "summary", "--source",
                        str(run_dir), "--step-summary"], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=30)
    assert p.returncode == 1
    assert p.stdout == ""
    assert p.stderr.count("\n") == 1
    assert "GITHUB_STEP_SUMMARY is not set" in p.stderr


def test_suggest_flags_and_yaml(run_dir: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    r = awf(capsys, "suggest", "--source", str(run_dir))
    flag, blank, *rest = r.lines
    assert flag == "--allow-domains denied.com,evil.org,example.com,github.com"
    assert blank == ""
    doc = yaml.safe_load("\n".join(rest))
    assert doc == {"allow_domains": ["denied.com", "evil.org", "example.com", "github.com"]}
    only = awf(capsys, "suggest", "--source", str(run_dir), "--format", "yaml").out
    (tmp_path / "awf.yaml").write_text(only)
    # the file is a config awf-proxy takes, and its policy lets every denied name through
    cfg = merge({}, tmp_path / "awf.yaml")
    assert load_file(tmp_path / "awf.yaml")["allow_domains"] == doc["allow_domains"]
    policy = build_policy(cfg)
    for name in ("example.com", "api.denied.com", "www.denied.com", "evil.org",
                 "api.github.com", "nx.github.com"):
        assert policy.decide(name, 443, Scheme.HTTPS).allowed, name


def test_suggest_reads_would_deny(run_dir: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    learn = tmp_path / "learn"
    learn.mkdir()
    recs = records(run_dir)
    rec = dict(recs[0], host="objects.githubusercontent.com", decision="would_deny",
               reason="domain_not_allowed", status=200)
    (learn / "access.jsonl").write_text(
        "".join(json.dumps(x) + "\n" for x in (*recs[:3], rec)))
    r = awf(capsys, "suggest", "--source", str(learn), "--format", "flags")
    assert r.out == "--allow-domains github.com,objects.githubusercontent.com\n"
    shown = awf(capsys, "--source", str(learn), "--decision", "would_deny")
    assert re.fullmatch(r"\S+ WOULD-DENY GET objects\.githubusercontent\.com:\d+ 200 "
                        r"domain_not_allowed", shown.out.strip())


# -- malformed lines ----------------------------------------------------------------------


def test_malformed_lines_one_warning_naming_file_and_line(
        run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    lines = (run_dir / "access.jsonl").read_text().splitlines(keepends=True)
    lines[2:2] = ['{"ts": "2026-12-06T13:00:00.000Z", "host": \n', "[1, 2]\n"]
    lines.insert(6, "\x00\xff garbage\n")
    (broken / "access.jsonl").write_text("".join(lines))
    for args in ((), ("stats",), ("summary",), ("suggest",)):
        sub, rest = (args[0], args[1:]) if args else (None, ())
        r = awf(capsys, *([sub] if sub else []), "--source", str(broken), *rest)
        assert r.code == 0
        assert "Traceback" not in r.err
        assert r.err.count("\n") == 1, r.err
        assert f"{broken / 'access.jsonl'}: line 3 " in r.err
    r = awf(capsys, "--source", str(broken))
    assert len(r.lines) == 9
    doc = json.loads(awf(capsys, "stats", "--source", str(broken), "--format", "json").out)
    assert (doc["requests"], doc["malformed"]) == (9, 3)
    r = awf(capsys, "stats", "--source", str(broken))
    assert "malformed  3 lines skipped" in r.out


# -- following a live proxy ---------------------------------------------------------------


async def test_follow_a_running_proxy_until_it_ends(tmp_path: Path) -> None:
    logs = tmp_path / "awf-logs-0f0f0f0f"
    logs.mkdir()
    async with http_origin() as origin, running_proxy(
            "--allow-domains", "api.github.com", "--resolve", "api.github.com=127.0.0.1",
            "--allow-range", "127.0.0.1/32", "--allow-ports", str(origin.port),
            "--log-dir", str(logs)) as proxy:
        # a run record that names a live pid and no exit code: a running run
        (logs / "run.json").write_text(json.dumps({"id": "0f0f0f0f", "pid": proxy.pid}))
        await roundtrip(proxy.port, get("http://example.com/"))
        follower = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "awf.cli", "logs", "-f", "--source", "running",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
            env={**os.environ, "TMPDIR": str(tmp_path), "AWF_LOGS_DOCKER": "0"})
        assert follower.stdout is not None
        try:
            async with asyncio.timeout(20):
                first = (await follower.stdout.readline()).decode()
                assert " DENY GET example.com:80 403 domain_not_allowed" in first
                await roundtrip(proxy.port, get(f"http://api.github.com:{origin.port}/small"))
                second = (await follower.stdout.readline()).decode()
                assert " ALLOW GET api.github.com:" in second
                assert follower.returncode is None  # still following
                await roundtrip(proxy.port, connect("late.example:443"))
                await proxy.stop(signal.SIGTERM)  # the run ends: the proxy flushes and exits
                rest, err = await follower.communicate()
                code = await follower.wait()
        finally:
            if follower.returncode is None:
                follower.kill()
                await follower.wait()
    assert code == 0, err
    assert " DENY CONNECT late.example:443 403 domain_not_allowed" in rest.decode()
    assert err == b""


def test_colour_on_a_terminal_only(run_dir: Path) -> None:
    import pty

    primary, secondary = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "awf.cli", "logs", "--source", str(run_dir),
                            "--decision", "deny"], stdout=secondary, stderr=subprocess.PIPE,
                           cwd=ROOT, timeout=30, env={**os.environ, "TERM": "xterm"})
        os.close(secondary)
        secondary = -1
        out = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    assert p.returncode == 0
    assert out.count(b"\x1b[31mDENY\x1b[0m") == 4
    plain = awf_proc("--source", str(run_dir), "--decision", "deny")
    assert "\x1b" not in plain.out
