"""`awf run --backend netns` end to end: real namespaces, real nftables, a fake internet.

Each probe below runs inside the sandbox as a real client (curl, dig, nc, python) against the
wan namespace's servers. One awf run executes a batch of probes and reports their results as
JSON, and each probe is asserted in its own test; behaviour that needs its own run (exit codes,
signals, timeouts, a dying proxy, many runs in a row) gets its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import wan as wanmod
from tests.support.fulldisk import disk_that_fills
from tests.support.needs import need_root

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(300)]

POLICY = (
    "--allow-domains", "allowed.test",
    "--resolve", f"allowed.test={wanmod.V4}", "--resolve", f"allowed.test={wanmod.V6}",
    "--resolve", f"api.allowed.test={wanmod.V4}",
    "--resolve", f"other.test={wanmod.V4}",
    "--allow-ports", "8080",
)


def awf(*args: str, timeout: float = 120,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = None
    if cwd is not None:  # the workspace: the only host directory besides the system's it sees
        env = {**os.environ, "GITHUB_WORKSPACE": str(cwd)}
    return subprocess.run([sys.executable, "-m", "awf.cli", "run", "--backend", "netns", *args],
                          capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd,
                          env=env)


PROBES = r'''
import json, os, socket, subprocess, sys
ca = sys.argv[1]
def run(*cmd, timeout=20):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return {"rc": p.returncode, "out": p.stdout[-400:], "err": p.stderr[-400:]}
    except subprocess.TimeoutExpired:
        return {"rc": "timeout", "out": "", "err": ""}
def udp(addr, port, family=socket.AF_INET):
    s = socket.socket(family, socket.SOCK_DGRAM); s.settimeout(2)
    try:
        s.connect((addr, port)); s.send(b"x" * 12); s.recv(100); return "answered"
    except OSError as e:
        return type(e).__name__
def two_on_one(pipelined):
    """Two requests on one intercepted connection, the second for a name not allowed."""
    a = b"GET /a HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
    b = b"GET /b HTTP/1.1\r\nHost: other.test\r\n\r\n"
    data = b""
    try:
        with socket.create_connection(("198.51.100.10", 80), timeout=5) as s:
            s.sendall(a + b if pipelined else a)
            while not pipelined and b"hello allowed.test" not in data:
                data += s.recv(65536) or b"!"
            if not pipelined:
                s.sendall(b)
            while chunk := s.recv(65536):
                data += chunk
    except OSError as e:
        data += b" " + type(e).__name__.encode()
    import re
    return {"rc": 0, "out": " ".join(m.decode() for m in re.findall(rb"HTTP/1\.1 (\d{3})", data)),
            "err": data[-200:].decode("latin-1")}
C = ["curl", "-sS", "-m", "8"]
r = {
 "transparent_second_request": two_on_one(False),
 "transparent_pipelined": two_on_one(True),
 "proxy_http": run(*C, "http://allowed.test/"),
 "proxy_https": run(*C, "--cacert", ca, "https://allowed.test/"),
 "proxy_subdomain": run(*C, "http://api.allowed.test/"),
 "proxy_allowed_port": run(*C, "http://allowed.test:8080/"),
 "proxy_denied": run(*C, "-o", "/dev/null", "-w", "%{http_code}", "http://other.test/"),
 "proxy_denied_https": run(*C, "https://other.test/"),
 "transparent_http": run(*C, "--noproxy", "*", "http://allowed.test/"),
 "transparent_https": run(*C, "--noproxy", "*", "--cacert", ca, "https://allowed.test/"),
 "transparent_http_v6": run(*C, "-6", "--noproxy", "*", "http://allowed.test/"),
 "transparent_https_v6": run(*C, "-6", "--noproxy", "*", "--cacert", ca, "https://allowed.test/"),
 "transparent_denied": run(*C, "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code}",
                           "--resolve", "other.test:80:198.51.100.10", "http://other.test/"),
 "transparent_denied_sni": run(*C, "--noproxy", "*", "--cacert", ca, "--resolve",
                               "other.test:443:198.51.100.10", "https://other.test/"),
 "ip_literal": run(*C, "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code}",
                   "http://198.51.100.10/"),
 "ip_literal_v6": run(*C, "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code}",
                      "http://[2001:db8:100::10]/"),
 "ip_literal_tls": run(*C, "--noproxy", "*", "-k", "https://198.51.100.10/"),
 "dns_allowed": run("dig", "+short", "+time=2", "+tries=1", "allowed.test"),
 "dns_allowed_aaaa": run("dig", "+short", "+time=2", "+tries=1", "AAAA", "allowed.test"),
 "dns_denied_name": run("dig", "+time=2", "+tries=1", "other-not-allowed.test"),
 "dns_other_resolver": run("dig", "+time=2", "+tries=1", "@198.51.100.53", "allowed.test"),
 "dns_other_resolver_tcp": run("dig", "+tcp", "+time=2", "+tries=1", "@198.51.100.53",
                               "allowed.test"),
 "dns_other_resolver_v6": run("dig", "+time=2", "+tries=1", "@2001:db8:100::53", "allowed.test"),
 "tcp22": run("nc", "-z", "-w", "3", "198.51.100.10", "22"),
 "tcp22_v6": run("nc", "-z", "-w", "3", "2001:db8:100::10", "22"),
 "connect_port22": run(*C, "-p", "-o", "/dev/null", "-w", "%{http_code}",
                       "http://allowed.test:22/"),
 "udp_out": udp("198.51.100.10", 9999),
 "udp_out_v6": udp("2001:db8:100::10", 9999, socket.AF_INET6),
 "nft_flush": run("nft", "flush", "ruleset"),
 "route_del": run("ip", "route", "del", "default"),
 "route_del_v6": run("ip", "-6", "route", "del", "default"),
 "link_down": run("ip", "link", "set", "eth0", "down"),
 "still_blocked_after_tampering": run("nc", "-z", "-w", "3", "198.51.100.10", "22"),
 "still_working_after_tampering": run(*C, "http://allowed.test/"),
 "caps": run("grep", "-E", "^(CapEff|CapBnd|NoNewPrivs)", "/proc/self/status"),
 # straight to the transparent listener (the proxy's own address, port 3129): refused
 "self_connection": run(*C, "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code}",
                        "-H", "Host: allowed.test",
                        os.environ["HTTP_PROXY"].replace(":3128", ":3129") + "/"),
}
print("PROBES " + json.dumps(r))
'''


@pytest.fixture(scope="module")
def probes(wan: wanmod.Wan,
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    # the sandbox sees the workspace, not the host's /tmp: the script and the CA go there, and
    # the host's python3 runs it (a venv under the worktree is not in the sandbox)
    ws = tmp_path_factory.mktemp("probes")
    (ws / "probes.py").write_text(PROBES)
    (ws / "ca.pem").write_bytes(wan.ca_pem.read_bytes())
    logs = str(tmp_path_factory.mktemp("logs"))
    done = awf(*POLICY, "--proxy-logs-dir", logs, "--", "python3", "probes.py", "ca.pem",
               timeout=240, cwd=ws)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("PROBES ")), None)
    assert line, f"no probe output; exit {done.returncode}; stderr: {done.stderr[-2000:]}"
    results: dict[str, dict[str, object]] = json.loads(line[len("PROBES "):])
    return results


def ok(p: dict[str, object]) -> bool:
    return p["rc"] == 0


@pytest.mark.parametrize("name", ["proxy_http", "proxy_subdomain", "proxy_allowed_port",
                                  "transparent_http", "transparent_http_v6"])
def test_allowed_http_works(probes: dict[str, dict[str, object]], name: str) -> None:
    assert ok(probes[name]), probes[name]
    assert "hello" in str(probes[name]["out"])


@pytest.mark.parametrize("name", ["proxy_https", "transparent_https", "transparent_https_v6"])
def test_allowed_https_works_end_to_end(probes: dict[str, dict[str, object]], name: str) -> None:
    assert ok(probes[name]), probes[name]
    assert "hello allowed.test" in str(probes[name]["out"])


@pytest.mark.parametrize("name", ["proxy_denied", "transparent_denied", "ip_literal",
                                  "ip_literal_v6", "connect_port22"])
def test_denied_http_gets_403(probes: dict[str, dict[str, object]], name: str) -> None:
    assert "403" in str(probes[name]["out"]) + str(probes[name]["err"]), probes[name]


@pytest.mark.parametrize("name", ["transparent_second_request", "transparent_pipelined"])
def test_every_request_on_an_intercepted_connection_is_checked(
        probes: dict[str, dict[str, object]], name: str) -> None:
    """The Host of a later request on the same redirected connection is checked too, whether
    it arrives after the first answer or in the same segment as the first head."""
    assert probes[name]["out"] == "200 403", probes[name]


@pytest.mark.parametrize("name", ["proxy_denied_https", "transparent_denied_sni",
                                  "ip_literal_tls"])
def test_denied_tls_fails(probes: dict[str, dict[str, object]], name: str) -> None:
    assert not ok(probes[name]), probes[name]
    assert "hello" not in str(probes[name]["out"])


def test_transparent_listener_is_not_reachable_directly(
        probes: dict[str, dict[str, object]]) -> None:
    """The agent's table lets it reach the proxy only on 3128 and 53: a direct connection to the
    transparent port is refused before it could ever be a self-connection."""
    probe = probes["self_connection"]
    assert probe["rc"] == 7, probe  # curl: could not connect
    assert "hello" not in str(probe["out"])


def test_dns_answers_allowed_names(probes: dict[str, dict[str, object]]) -> None:
    assert str(probes["dns_allowed"]["out"]).split() == [wanmod.V4]
    assert str(probes["dns_allowed_aaaa"]["out"]).split() == [wanmod.V6]


def test_dns_for_names_not_allowed_is_nxdomain(probes: dict[str, dict[str, object]]) -> None:
    assert "NXDOMAIN" in str(probes["dns_denied_name"]["out"]), probes["dns_denied_name"]


@pytest.mark.parametrize("name", ["dns_other_resolver", "dns_other_resolver_tcp",
                                  "dns_other_resolver_v6"])
def test_dns_to_another_resolver_fails(probes: dict[str, dict[str, object]],
                                       wan: wanmod.Wan, name: str) -> None:
    assert not ok(probes[name]) or "ANSWER SECTION" not in str(probes[name]["out"]), probes[name]
    assert wan.counts()["dns"] == 0  # the wan's resolver never saw a query


@pytest.mark.parametrize("name", ["tcp22", "tcp22_v6", "still_blocked_after_tampering"])
def test_tcp_22_is_refused(probes: dict[str, dict[str, object]], wan: wanmod.Wan,
                           name: str) -> None:
    assert not ok(probes[name]), probes[name]
    assert wan.counts()["tcp22"] == 0


@pytest.mark.parametrize("name", ["udp_out", "udp_out_v6"])
def test_udp_out_fails_at_once(probes: dict[str, object], name: str) -> None:
    assert probes[name] in ("ConnectionRefusedError", "PermissionError", "OSError"), probes[name]


@pytest.mark.parametrize("name", ["nft_flush", "route_del", "route_del_v6", "link_down"])
def test_command_cannot_change_rules_or_routes(probes: dict[str, dict[str, object]],
                                               name: str) -> None:
    assert not ok(probes[name]), probes[name]


def test_tampering_changed_nothing(probes: dict[str, dict[str, object]]) -> None:
    assert ok(probes["still_working_after_tampering"])


def test_command_has_no_capabilities(probes: dict[str, dict[str, object]]) -> None:
    status = dict(line.split(":\t") for line in str(probes["caps"]["out"]).splitlines())
    assert int(status["CapEff"], 16) == 0
    assert int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"


# -- exit codes, signals, timeouts, failure ------------------------------------------------------


@pytest.mark.parametrize(("command", "code"), [
    (["true"], 0), (["false"], 1), (["bash", "-c", "exit 42"], 42), (["exit 7"], 7),
    (["nonexistent-command-xyz"], 127), (["bash", "-c", "kill -TERM $$"], 143),
])
def test_exit_code_is_propagated(wan: wanmod.Wan, command: list[str], code: int) -> None:
    done = awf(*POLICY, "--", *command)
    assert done.returncode == code, done.stderr


def test_stdout_is_the_commands(wan: wanmod.Wan) -> None:
    done = awf(*POLICY, "--", "printf", "a b\\n")
    assert done.stdout == "a b\n"
    assert "[awf]" in done.stderr
    assert "logs:" in done.stderr


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_to_awf_stops_and_cleans_up(wan: wanmod.Wan, sig: int, code: int) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "awf.cli", "run", "--backend", "netns",
                             *POLICY, "--", "bash", "-c", "echo started; sleep 60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    proc.send_signal(sig)
    assert proc.wait(30) == code
    assert_no_leftovers()


def test_run_json_times_the_teardown_and_the_log_is_complete(wan: wanmod.Wan,
                                                             tmp_path: Path) -> None:
    """The teardown's phases are in run.json, in order (the counters and the proxy's stop run
    at once, both before `removed`), and the proxy flushed every record before it was stopped
    (awf ends without the interpreter's own teardown)."""
    logs = tmp_path / "logs"
    script = "for i in 1 2 3 4 5; do curl -s -m 5 -o /dev/null http://allowed.test/$i; done"
    done = awf(*POLICY, "--proxy-logs-dir", str(logs), "--", "bash", "-c", script)
    assert done.returncode == 0, done.stderr
    assert "5 requests: 5 allowed" in done.stderr
    timings = json.loads((logs / "run.json").read_text())["timings"]
    phases = ["sandbox", "exec", "exited", "teardown", "counters", "proxy_stopped", "removed",
              "end"]
    assert set(phases) <= set(timings)
    for parallel in ("counters", "proxy_stopped"):
        order = [k for k in phases if k != parallel]
        assert [timings[k] for k in order] == sorted(timings[k] for k in order)
    urls = [json.loads(x).get("url") for x in (logs / "access.jsonl").read_text().splitlines()]
    want = [f"http://allowed.test/{i}" for i in range(1, 6)]
    assert sorted(u for u in urls if u in want) == want
    assert_no_leftovers()


def test_agent_timeout_is_124(wan: wanmod.Wan) -> None:
    t0 = time.monotonic()
    done = awf(*POLICY, "--agent-timeout", "0.02", "--", "sleep", "60")
    assert done.returncode == 124, done.stderr
    assert time.monotonic() - t0 < 30


def test_proxy_death_stops_the_command_and_exits_125(wan: wanmod.Wan) -> None:
    script = ("echo started; for i in $(seq 100); do "
              "curl -s -m 2 http://allowed.test/ >/dev/null || echo FAILED; sleep 0.2; done")
    proc = subprocess.Popen([sys.executable, "-m", "awf.cli", "run", "--backend", "netns",
                             *POLICY, "--", "bash", "-c", script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    # the proxy is a forked child of awf: same command line, parent awf
    proxies = [p for p in _pids_with(b"awf.cli") if _ppid(p) == proc.pid]
    assert len(proxies) == 1
    os.kill(proxies[0], signal.SIGKILL)
    assert proc.wait(30) == 125
    err = proc.stderr.read() if proc.stderr is not None else ""
    assert "awf-proxy died" in err
    assert_no_leftovers()


def test_fifty_runs_some_killed_leave_nothing_behind(wan: wanmod.Wan, tmp_path: Path) -> None:
    runs = 50
    # every run's argv names a logs dir under tmp_path: awf and its forked proxy carry it in
    # their command line, so the check below sees only this test's processes
    marker = str(tmp_path).encode()
    nap = f"60.{os.getpid()}"  # the killed runs' commands, recognisable by their argument
    for i in range(runs):
        logs = ("--proxy-logs-dir", str(tmp_path / f"run{i}"))
        if i % 5 == 4:  # kill -9 awf mid-run: the proxy and the command die with it
            proc = subprocess.Popen([sys.executable, "-m", "awf.cli", "run", "--backend",
                                     "netns", *POLICY, *logs, "--", "bash", "-c",
                                     f"echo started; sleep {nap}"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "started"
            proc.kill()
            proc.wait(10)
        else:
            assert awf(*POLICY, *logs, "--", "true").returncode == 0
    _wait_gone(lambda: [p for p in _pids_with(marker) if p != os.getpid()])
    _wait_gone(lambda: _pids_with(f"sleep\x00{nap}".encode()))
    cleanup = subprocess.run([sys.executable, "-m", "awf.cli", "cleanup"], capture_output=True,
                             text=True, timeout=60, check=False)
    assert cleanup.returncode == 0, cleanup.stderr
    assert_no_leftovers()


# -- helpers ------------------------------------------------------------------------------------


def assert_no_leftovers() -> None:
    spaces = [n for n in os.listdir("/run/netns") if n.startswith("awf-")] \
        if os.path.isdir("/run/netns") else []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True,
                           check=True).stdout
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                            check=True).stdout
    from awf import leftovers

    live = [n for n in spaces if leftovers.alive(n[len("awf-"):])]
    assert [n for n in spaces if n not in live] == []
    assert [ln for ln in links.splitlines() if ": awf-" in ln and not any(
        r[len("awf-"):] in ln for r in live)] == []
    assert [ln for ln in tables.splitlines() if "awf_" in ln] == []
    assert not list(Path("/etc/netns").glob("awf-*")) if Path("/etc/netns").exists() else True


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def _pids_with(needle: bytes) -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit() and needle in _cmdline(int(d))]


def _wait_gone(find: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        left = find()  # type: ignore[operator]
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"processes left behind: {left}")
        time.sleep(0.1)


def test_a_chatty_proxy_does_not_stall_the_run(wan: wanmod.Wan, tmp_path: Path) -> None:
    """At --log-level debug the proxy writes a line per decision to its stderr; awf keeps
    reading it for the whole run (into proxy.log), so 3000 requests (~125 KB of lines, twice a
    pipe's buffer) never block the proxy, and the lines are kept."""
    done = awf(*POLICY, "--log-level", "debug", "--proxy-logs-dir", str(tmp_path),
               "--agent-timeout", "1", "--", "curl", "-sS", "-m", "5", "-o", "/dev/null", "-w",
               "%{http_code}\\n", "-Z", "--parallel-max", "20", "http://allowed.test/[1-3000]",
               timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["200"] * 3000
    assert (tmp_path / "proxy.log").read_text().count("awf-proxy: allow") >= 3000


@pytest.mark.parametrize("delay", [0.15, 0.3, 0.45])
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_in_the_first_half_second_is_128_plus_n(wan: wanmod.Wan, sig: int, code: int,
                                                         delay: float) -> None:
    """From main()'s first line on, SIGINT/SIGTERM end awf with 130/143 (never killed by the
    signal) and whatever it had started is cleaned up."""
    proc = subprocess.Popen([sys.executable, "-m", "awf.cli", "run", "--backend", "netns",
                             *POLICY, "--", "sleep", "30"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(sig)
    assert proc.wait(30) == code, proc.stderr.read() if proc.stderr is not None else ""
    _wait_gone(lambda: [p for p in _pids_with(b"awf.cli") if _ppid(p) == proc.pid])
    assert_no_leftovers()


def test_cleanup_never_removes_a_live_run_without_force(tmp_path: Path) -> None:
    """`awf cleanup`, `--run ID` and `--all` leave a live run alone (naming it); only --force
    with --run removes it."""
    need_root()
    proc = subprocess.Popen([sys.executable, "-m", "awf.cli", "run", "--backend", "netns",
                             *POLICY, "--proxy-logs-dir", str(tmp_path), "--", "bash", "-c",
                             "echo started; sleep 60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        run = next(p.stem for p in Path("/run/awf/runs").glob("*.pid")
                   if p.read_text().strip() == str(proc.pid))
        space = Path("/run/netns") / f"awf-{run}"

        def cleanup(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "awf.cli", "cleanup", *args],
                                  capture_output=True, text=True, timeout=60, check=False)

        for args in ([], ["--run", run], ["--all"]):
            done = cleanup(*args)
            assert done.returncode == 0, done.stderr
            assert space.exists(), (args, done.stderr)
            assert f"awf-{run}" not in done.stderr, (args, done.stderr)
        assert f"run {run} is alive" in cleanup("--run", run).stderr
        done = cleanup("--run", run, "--force")
        assert done.returncode == 0, done.stderr
        assert not space.exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert_no_leftovers()


def test_records_dropped_on_a_full_log_disk_are_in_the_summary(tmp_path: Path) -> None:
    """The logs directory's disk fills once the proxy started: the proxy drops the decision
    records it cannot write, and the run's summary says how many (its counts, read from the
    file, miss them)."""
    need_root()
    with disk_that_fills(tmp_path / "tiny") as logs:
        done = awf(*POLICY, "--proxy-logs-dir", str(logs), "--", "curl", "-s", "-Z",
                   "--parallel-max", "20", "-o", "/dev/null", "http://other.test/[1-1500]",
                   timeout=120)
    assert done.returncode in (0, 22), done.stderr[-2000:]  # curl: 403s are not errors without -f
    dropped = [ln for ln in done.stderr.splitlines() if "dropped by the proxy" in ln]
    assert len(dropped) == 1, done.stderr[-2000:]
    assert int(dropped[0].split("[awf] ", 1)[1].split()[0]) > 0
    assert_no_leftovers()
