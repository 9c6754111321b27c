"""`awf run --backend docker` end to end: real containers, real nftables, a fake internet.

The fake internet is tests/support/wan.py's namespace (TEST-NET addresses, HTTP, TLS, TCP 22
and a DNS responder that count what reaches them), joined to the host by a veth: the proxy
container reaches it through its -ext bridge and the host's routing, like any origin. Nothing
leaves the machine. One awf run executes a batch of probes as real clients inside the agent
container and reports JSON; each probe is asserted in its own test. Exit codes, signals,
timeouts, a dying proxy and many runs in a row get their own runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv6Network
from pathlib import Path

import pytest

from tests.support import wan as wanmod
from tests.support.fulldisk import disk_that_fills

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

POLICY = (
    "--allow-domains", "allowed.test",
    "--resolve", f"allowed.test={wanmod.V4}",
    "--resolve", f"api.allowed.test={wanmod.V4}",
    "--resolve", f"other.test={wanmod.V4}",
    "--resolve", f"blocked.allowed.test={wanmod.V4}",
    "--block-domains", "blocked.allowed.test",
    "--allow-ports", "8080",
)


def awf_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "awf.cli", "run", "--backend", "docker", *args]


def awf(*args: str, timeout: float = 180, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(awf_argv(*args), capture_output=True, text=True, timeout=timeout,
                          check=False, env=env)


PROBES = r'''
import json, socket, subprocess, sys
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
def raw(family, proto):
    try:
        socket.socket(family, socket.SOCK_RAW, proto).close(); return "opened"
    except OSError as e:
        return type(e).__name__
C = ["curl", "-sS", "-m", "8"]
CODE = ["-o", "/dev/null", "-w", "%{http_code}"]
r = {
 "proxy_http": run(*C, "http://allowed.test/"),
 "proxy_https": run(*C, "--cacert", ca, "https://allowed.test/"),
 "proxy_subdomain": run(*C, "http://api.allowed.test/"),
 "proxy_allowed_port": run(*C, "http://allowed.test:8080/"),
 "proxy_denied": run(*C, *CODE, "http://other.test/"),
 "proxy_blocklisted": run(*C, *CODE, "http://blocked.allowed.test/"),
 "proxy_denied_https": run(*C, "--cacert", ca, "https://other.test/"),
 "transparent_http": run(*C, "--noproxy", "*", "http://allowed.test/"),
 "transparent_https": run(*C, "--noproxy", "*", "--cacert", ca, "https://allowed.test/"),
 "transparent_http_v6": run(*C, "-6", "--noproxy", "*", "--resolve",
                            f"allowed.test:80:[{sys.argv[3]}]", "http://allowed.test/"),
 "transparent_denied": run(*C, "--noproxy", "*", *CODE,
                           "--resolve", f"other.test:80:{sys.argv[2]}", "http://other.test/"),
 "transparent_denied_sni": run(*C, "--noproxy", "*", "--cacert", ca, "--resolve",
                               f"other.test:443:{sys.argv[2]}", "https://other.test/"),
 "ip_literal": run(*C, "--noproxy", "*", *CODE, f"http://{sys.argv[2]}/"),
 "ip_literal_v6": run(*C, "--noproxy", "*", *CODE, f"http://[{sys.argv[3]}]/"),
 "ip_literal_tls": run(*C, "--noproxy", "*", "-k", f"https://{sys.argv[2]}/"),
 "dns_allowed": run("dig", "+short", "+time=2", "+tries=1", "allowed.test"),
 "dns_denied_name": run("dig", "+time=2", "+tries=1", "other-not-allowed.test"),
 "dns_other_resolver": run("dig", "+time=2", "+tries=1", f"@{sys.argv[4]}", "allowed.test"),
 "dns_other_resolver_tcp": run("dig", "+tcp", "+time=2", "+tries=1", f"@{sys.argv[4]}",
                               "allowed.test"),
 "dns_docker_resolver": run("dig", "+time=2", "+tries=1", "@127.0.0.11", "allowed.test"),
 "tcp22": run("nc", "-z", "-w", "3", sys.argv[2], "22"),
 "tcp22_v6": run("nc", "-z", "-w", "3", sys.argv[3], "22"),
 "udp_out": udp(sys.argv[2], 9999),
 "udp_out_v6": udp(sys.argv[3], 9999, socket.AF_INET6),
 "raw_socket": raw(socket.AF_INET, socket.IPPROTO_ICMP),
 "raw_socket_v6": raw(socket.AF_INET6, socket.IPPROTO_ICMPV6),
 "nft_flush": run("nft", "flush", "ruleset"),
 "route_del": run("ip", "route", "del", "default"),
 "route_add": run("ip", "route", "add", "198.51.100.0/24", "dev", "eth0"),
 "route_del_v6": run("ip", "-6", "route", "del", "default"),
 "link_down": run("ip", "link", "set", "eth0", "down"),
 "still_blocked_after_tampering": run("nc", "-z", "-w", "3", sys.argv[2], "22"),
 "still_working_after_tampering": run(*C, "http://allowed.test/"),
 "caps": run("grep", "-E", "^(CapEff|CapBnd|NoNewPrivs)", "/proc/self/status"),
 "docker_socket": run("ls", "/var/run/docker.sock"),
}
print("PROBES " + json.dumps(r))
'''


@pytest.fixture(scope="module")
def probes(wan: wanmod.Wan,
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    d = tmp_path_factory.mktemp("probes")
    (d / "probes.py").write_text(PROBES)
    os.chmod(d, 0o755)
    os.chmod(d / "probes.py", 0o644)
    logs = str(tmp_path_factory.mktemp("logs"))
    done = awf(*POLICY, "--proxy-logs-dir", logs, "-v", f"{d}:/probes:ro", "-v",
               f"{wan.ca_pem}:/ca.pem:ro", "--",
               "python3", "/probes/probes.py", "/ca.pem", wanmod.V4, wanmod.V6, wanmod.V4_DNS,
               timeout=300)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("PROBES ")), None)
    assert line, f"no probe output; exit {done.returncode}; stderr: {done.stderr[-3000:]}"
    results: dict[str, dict[str, object]] = json.loads(line[len("PROBES "):])
    return results


def ok(p: dict[str, object]) -> bool:
    return p["rc"] == 0


@pytest.mark.parametrize("name", ["proxy_http", "proxy_subdomain", "proxy_allowed_port",
                                  "transparent_http", "transparent_http_v6"])
def test_allowed_http_works(probes: dict[str, dict[str, object]], name: str) -> None:
    assert ok(probes[name]), probes[name]
    assert "hello" in str(probes[name]["out"])


@pytest.mark.parametrize("name", ["proxy_https", "transparent_https"])
def test_allowed_https_works_end_to_end(probes: dict[str, dict[str, object]], name: str) -> None:
    assert ok(probes[name]), probes[name]
    assert "hello allowed.test" in str(probes[name]["out"])


@pytest.mark.parametrize("name", ["proxy_denied", "proxy_blocklisted", "transparent_denied",
                                  "ip_literal", "ip_literal_v6"])
def test_denied_http_gets_403(probes: dict[str, dict[str, object]], name: str) -> None:
    assert "403" in str(probes[name]["out"]) + str(probes[name]["err"]), probes[name]


@pytest.mark.parametrize("name", ["proxy_denied_https", "transparent_denied_sni",
                                  "ip_literal_tls"])
def test_denied_tls_fails(probes: dict[str, dict[str, object]], name: str) -> None:
    assert not ok(probes[name]), probes[name]
    assert "hello" not in str(probes[name]["out"])


def test_dns_answers_allowed_names(probes: dict[str, dict[str, object]]) -> None:
    assert str(probes["dns_allowed"]["out"]).split() == [wanmod.V4]


def test_dns_for_names_not_allowed_is_nxdomain(probes: dict[str, dict[str, object]]) -> None:
    assert "NXDOMAIN" in str(probes["dns_denied_name"]["out"]), probes["dns_denied_name"]


@pytest.mark.parametrize("name", ["dns_other_resolver", "dns_other_resolver_tcp",
                                  "dns_docker_resolver"])
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


@pytest.mark.parametrize("name", ["raw_socket", "raw_socket_v6"])
def test_raw_sockets_are_refused(probes: dict[str, object], name: str) -> None:
    assert probes[name] == "PermissionError", probes[name]


@pytest.mark.parametrize("name", ["nft_flush", "route_del", "route_add", "route_del_v6",
                                  "link_down"])
def test_command_cannot_change_rules_or_routes(probes: dict[str, dict[str, object]],
                                               name: str) -> None:
    assert not ok(probes[name]), probes[name]
    assert "not permitted" in str(probes[name]["err"]).lower() or "denied" in str(
        probes[name]["err"]).lower(), probes[name]


def test_tampering_changed_nothing(probes: dict[str, dict[str, object]]) -> None:
    assert ok(probes["still_working_after_tampering"]), probes["still_working_after_tampering"]


def test_command_has_no_capabilities(probes: dict[str, dict[str, object]]) -> None:
    status = dict(line.split(":\t") for line in str(probes["caps"]["out"]).splitlines())
    assert int(status["CapEff"], 16) == 0
    assert int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"


def test_no_docker_socket(probes: dict[str, dict[str, object]]) -> None:
    assert not ok(probes["docker_socket"])


# -- exit codes, signals, timeouts, failure ------------------------------------------------------


@pytest.mark.parametrize(("command", "code"), [
    (["true"], 0), (["false"], 1), (["bash", "-c", "exit 42"], 42), (["exit 7"], 7),
    (["bash", "-c", "kill -TERM $$"], 143),
])
def test_exit_code_is_propagated(wan: wanmod.Wan, command: list[str], code: int) -> None:
    done = awf(*POLICY, "--", *command)
    assert done.returncode == code, done.stderr
    assert_no_leftovers()


def test_stdout_and_stderr_are_the_commands(wan: wanmod.Wan) -> None:
    done = awf(*POLICY, "--", "bash", "-c", "printf 'a b\\n'; echo oops >&2")
    assert done.stdout == "a b\n"
    assert "oops" in done.stderr
    assert "[awf]" in done.stderr
    assert "logs:" in done.stderr


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_to_awf_stops_and_cleans_up(wan: wanmod.Wan, sig: int, code: int) -> None:
    proc = subprocess.Popen(awf_argv(*POLICY, "--", "bash", "-c", "echo started; sleep 60"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    proc.send_signal(sig)
    assert proc.wait(60) == code
    assert_no_leftovers()


@pytest.mark.parametrize("delay", [0.2, 0.45])
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_in_the_first_half_second_is_128_plus_n(wan: wanmod.Wan, sig: int, code: int,
                                                         delay: float) -> None:
    """From main()'s first line on, SIGINT/SIGTERM end awf with 130/143 (never killed by the
    signal), and nothing it started is left."""
    proc = subprocess.Popen(awf_argv(*POLICY, "--", "sleep", "30"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(sig)
    assert proc.wait(60) == code, proc.stderr.read() if proc.stderr is not None else ""
    assert_no_leftovers()


def test_records_dropped_on_a_full_log_disk_are_in_the_summary(wan: wanmod.Wan,
                                                               tmp_path: Path) -> None:
    """The logs directory's disk fills once the proxy started: the proxy container drops the
    records it cannot write, and the run's summary says how many."""
    with disk_that_fills(tmp_path / "tiny") as logs:
        done = awf(*POLICY, "--proxy-logs-dir", str(logs), "--", "curl", "-s", "-Z",
                   "--parallel-max", "20", "-o", "/dev/null", "http://other.test/[1-1500]")
    assert done.returncode == 0, done.stderr[-2000:]
    dropped = [ln for ln in done.stderr.splitlines() if "dropped by the proxy" in ln]
    assert len(dropped) == 1, done.stderr[-2000:]
    assert int(dropped[0].split("[awf] ", 1)[1].split()[0]) > 0
    assert_no_leftovers()


def test_agent_timeout_is_124(wan: wanmod.Wan) -> None:
    t0 = time.monotonic()
    done = awf(*POLICY, "--agent-timeout", "0.02", "--", "sleep", "60")
    assert done.returncode == 124, done.stderr
    assert time.monotonic() - t0 < 40
    assert_no_leftovers()


def test_killing_the_proxy_stops_traffic_and_exits_125(wan: wanmod.Wan) -> None:
    script = ("echo started; for i in $(seq 150); do "
              "if curl -s -m 2 http://allowed.test/ >/dev/null; then echo OK; else echo FAILED; "
              "fi; sleep 0.2; done")
    proc = subprocess.Popen(awf_argv(*POLICY, "--", "bash", "-c", script),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    assert proc.stdout.readline().strip() == "OK"
    proxies = _containers(f"label=io.awf.owner-pid={proc.pid}", "label=io.awf.role=proxy")
    assert len(proxies) == 1
    subprocess.run(["docker", "kill", proxies[0]], check=True, capture_output=True, timeout=30)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 125, err
    assert "awf-proxy died" in err
    assert "OK" not in out.split("FAILED", 1)[1] if "FAILED" in out else True
    assert_no_leftovers()


def test_a_port_clash_is_exit_2_before_anything_exists(wan: wanmod.Wan) -> None:
    before = _containers("label=io.awf.run")
    done = awf("--allow-domains", "allowed.test", "--allow-ports", "3129", "--", "true")
    assert done.returncode == 2, done.stderr
    assert "3129" in done.stderr
    assert _containers("label=io.awf.run") == before


def test_sigkill_of_awf_ends_egress_and_the_command_within_a_second_or_two(wan: wanmod.Wan) -> None:
    script = ("echo started; for i in $(seq 300); do "
              "if curl -s -m 1 http://allowed.test/ >/dev/null; then echo OK; else echo FAILED; "
              "fi; sleep 0.1; done")
    proc = subprocess.Popen(awf_argv(*POLICY, "--", "bash", "-c", script),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    assert proc.stdout.readline().strip() == "OK"
    agents = _containers(f"label=io.awf.owner-pid={proc.pid}", "label=io.awf.role=agent")
    assert len(agents) == 1
    proc.kill()
    proc.wait(10)
    killed = time.monotonic()
    proxy = _containers(f"label=io.awf.owner-pid={proc.pid}", "label=io.awf.role=proxy")
    deadline = killed + 10
    while proxy and _running(proxy[0]):
        assert time.monotonic() < deadline, "the proxy outlived awf"
        time.sleep(0.1)
    stopped_after = time.monotonic() - killed
    assert stopped_after < 3, stopped_after
    # the agent's PID 1 waits on the same lease: the command is gone too (target 2 s; the
    # bound leaves room for a loaded machine)
    deadline = killed + 10
    while _running(agents[0]):
        assert time.monotonic() < deadline, "the command outlived awf"
        time.sleep(0.1)
    assert time.monotonic() - killed < 3
    assert "awf is gone" in subprocess.run(["docker", "logs", agents[0]], capture_output=True,
                                           text=True, timeout=30, check=True).stderr
    cleanup = subprocess.run([sys.executable, "-m", "awf.cli", "cleanup"], capture_output=True,
                             text=True, timeout=120, check=False)
    assert cleanup.returncode == 0, cleanup.stderr
    assert_no_leftovers()


def _last_line(container: str) -> str:
    out = subprocess.run(["docker", "logs", "--tail", "1", container], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    return out.strip()


def _running(container: str) -> bool:
    out = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", container],
                         capture_output=True, text=True, timeout=30, check=False).stdout
    return out.strip() == "true"


def test_twenty_runs_some_interrupted_leave_nothing_behind(wan: wanmod.Wan) -> None:
    for i in range(20):
        if i % 5 in (2, 4):  # interrupt mid-run: SIGINT (cleans up) or SIGKILL (awf cleanup)
            proc = subprocess.Popen(awf_argv(*POLICY, "--", "bash", "-c",
                                             "echo started; sleep 60"),
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "started"
            if i % 5 == 2:
                proc.send_signal(signal.SIGINT)
                assert proc.wait(60) == 130
            else:
                proc.kill()
                proc.wait(10)
        else:
            assert awf(*POLICY, "--", "true").returncode == 0
    cleanup = subprocess.run([sys.executable, "-m", "awf.cli", "cleanup"], capture_output=True,
                             text=True, timeout=120, check=False)
    assert cleanup.returncode == 0, cleanup.stderr
    assert_no_leftovers()


# -- environment, mounts, workdir, logs -----------------------------------------------------------


def test_env_flags(wan: wanmod.Wan, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=file value\nOVERRIDDEN=file\n")
    env = {**os.environ, "MY_VAR": "mine", "GITHUB_TOKEN": "ghp_secret", "SKIP_ME": "x",
           "LANG": "C.UTF-8"}
    done = awf(*POLICY, "--env-all", "--exclude-env", "SKIP_ME", "--env-file", str(env_file),
               "-e", "OVERRIDDEN=flag", "-e", "EXPLICIT=yes", "--", "env", env=env)
    assert done.returncode == 0, done.stderr
    got = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert got["MY_VAR"] == "mine"
    assert got["FROM_FILE"] == "file value"
    assert got["OVERRIDDEN"] == "flag"
    assert got["EXPLICIT"] == "yes"
    assert "GITHUB_TOKEN" not in got
    assert "SKIP_ME" not in got
    assert got["HTTPS_PROXY"] == got["http_proxy"]
    assert got["HTTPS_PROXY"].endswith(".10:3128")


def test_default_env_is_small(wan: wanmod.Wan) -> None:
    env = {**os.environ, "MY_VAR": "mine", "LANG": "C.UTF-8"}
    done = awf(*POLICY, "--", "env", env=env)
    got = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert "MY_VAR" not in got
    assert got["LANG"] == "C.UTF-8"
    assert "NO_PROXY" in got
    assert "no_proxy" in got


def test_mounts_and_workdir(wan: wanmod.Wan, tmp_path: Path) -> None:
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "in.txt").write_text("read me\n")
    done = awf(*POLICY, "-v", f"{rw}:/work", "-v", f"{ro}:/data:ro", "--container-workdir",
               "/work", "--", "bash -c 'pwd; cat /data/in.txt; echo out > result.txt; "
               "touch /data/nope 2>/dev/null && echo WROTE_RO || echo ro_refused'")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["/work", "read me", "ro_refused"]
    assert (rw / "result.txt").read_text() == "out\n"


def test_bad_mount_is_exit_2_and_creates_nothing(wan: wanmod.Wan, tmp_path: Path) -> None:
    done = awf(*POLICY, "-v", f"{tmp_path}/missing:/x", "--", "true")
    assert done.returncode == 2, done.stderr
    done = awf(*POLICY, "-v", f"{tmp_path}:/proc/x", "--", "true")
    assert done.returncode == 2, done.stderr
    assert_no_leftovers()


def test_logs_are_readable_by_the_caller(wan: wanmod.Wan, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    env = {**os.environ, "SUDO_UID": "4321", "SUDO_GID": "4321"}
    done = awf(*POLICY, "--proxy-logs-dir", str(logs), "--", "bash", "-c",
               "id -u; curl -s -m 5 -o /dev/null http://allowed.test/; "
               "curl -s -m 5 -o /dev/null http://other.test/", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "4321"
    access = logs / "access.jsonl"
    records = [json.loads(x) for x in access.read_text().splitlines()]
    mine = [r for r in records if r.get("host") in ("allowed.test", "other.test")]
    assert {(r["host"], r["decision"]) for r in mine} == {("allowed.test", "allow"),
                                                         ("other.test", "deny")}
    for f in [access, logs / "run.json"]:
        st = f.stat()
        assert st.st_uid == 4321, f
        assert st.st_mode & 0o777 == 0o644, f
    run = json.loads((logs / "run.json").read_text())
    assert run["exit_code"] == 0
    assert run["timings"]["exec"] > 0
    assert "1 allowed, 1 denied" in done.stderr
    # the teardown's phases, in order (dockerstart.stop_run), and the end
    timings = run["timings"]
    phases = ["exec", "exited", "teardown", "proxy_stopped", "containers_removed",
              "networks_removed", "end"]
    assert [k for k in timings if k in phases] == phases
    assert [timings[k] for k in phases] == sorted(timings[k] for k in phases)
    assert timings["teardown"] <= timings["counters"] <= timings["containers_removed"]


def test_agent_image_flag(wan: wanmod.Wan) -> None:
    done = awf(*POLICY, "--agent-image", "awf-no-such-image:none", "--", "true")
    assert done.returncode == 125
    assert "awf-no-such-image" in done.stderr
    # any local image: here a tag of the runtime image, told apart by its /opt/awf
    from containers.driver import DockerDriver
    from containers.images import ensure_images

    driver = DockerDriver.from_env()
    tag = f"awf-test-agent:{os.getpid()}"
    try:
        driver.tag(ensure_images(driver, progress=lambda line: None).runtime, tag)
        done = awf(*POLICY, "--agent-image", tag, "--", "bash", "-c",
                   "test -d /opt/awf && curl -sS -m 5 http://allowed.test/")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "hello allowed.test"
    finally:
        driver.remove_image(tag)
        driver.close()


# -- helpers ------------------------------------------------------------------------------------


def _containers(*filters: str) -> list[str]:
    args = ["docker", "ps", "-a", "-q"]
    for f in filters:
        args += ["--filter", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=30).stdout
    return out.split()


def _live_runs() -> set[str]:
    """Runs whose awf is still alive (another test's, or a concurrent user's)."""
    out = subprocess.run(["docker", "ps", "-a", "--filter", "label=io.awf.run", "--format",
                          '{{.Label "io.awf.run"}} {{.Label "io.awf.owner-pid"}}'],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    live = set()
    for line in out.splitlines():
        run, _, pid = line.partition(" ")
        try:
            os.kill(int(pid), 0)
            live.add(run)
        except (ValueError, ProcessLookupError):
            pass
    return live


def assert_no_leftovers() -> None:
    live = _live_runs()
    out = subprocess.run(["docker", "ps", "-a", "--filter", "label=io.awf.run", "--format",
                          '{{.Names}} {{.Label "io.awf.run"}}'], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    left = [ln for ln in out.splitlines() if ln.split()[-1] not in live]
    assert left == [], f"containers left behind: {left}"
    nets = subprocess.run(["docker", "network", "ls", "--filter", "label=io.awf.run",
                           "--format", '{{.Name}} {{.Label "io.awf.run"}}'], capture_output=True,
                          text=True, check=True, timeout=30).stdout
    left = [ln for ln in nets.splitlines() if ln.split()[-1] not in live]
    assert left == [], f"networks left behind: {left}"


def test_a_failed_start_names_the_container_and_quotes_its_last_lines(wan: wanmod.Wan) -> None:
    """What awf does when the keeper (or the proxy) fails before it is ready: the real
    readiness watch on a real container that prints the keeper's failure line and exits."""
    from containers import labels
    from containers.dockerstart import Watch, start, wait_ready
    from containers.driver import DockerDriver
    from containers.images import ensure_images
    from containers.keeper import FAILED, READY
    from containers.spec import ContainerSpec
    from netfilter.errors import SandboxError

    driver = DockerDriver.from_env()
    image = ensure_images(driver, progress=lambda line: None).runtime
    name = f"awf-test-fail-{os.getpid()}"
    spec = ContainerSpec(name=name, image=image, entrypoint=("sh", "-c"),
                         command=(f"echo starting; echo '{FAILED} self-test failed: boom'; "
                                  "exit 125",),
                         labels=((labels.TEST, "1"),), network_mode="none")

    created: list[str] = []
    watch = Watch(driver, name, lambda ls: any(ln.startswith(READY) for ln in ls), FAILED,
                  time.monotonic())
    try:
        start(driver, [(spec, watch)], created)
        with pytest.raises(SandboxError) as info:
            wait_ready([watch], 30.0)
        text = str(info.value)
        assert name in text
        assert "boom" in text
        assert "starting" in text
    finally:
        driver.remove(name)
        driver.close()


# -- subnets ------------------------------------------------------------------------------------


def _run_json(logs: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((logs / "run.json").read_text())
    return data


def test_a_taken_default_subnet_falls_back_to_the_pool(wan: wanmod.Wan, tmp_path: Path) -> None:
    name = f"awf-test-taken-{os.getpid()}"
    subprocess.run(["docker", "network", "create", "--label", "io.awf.test=1", "--subnet",
                    "172.30.0.0/24", name], check=True, capture_output=True, timeout=60)
    try:
        done = awf(*POLICY, "--proxy-logs-dir", str(tmp_path), "--", "curl", "-sS", "-m", "5",
                   "http://allowed.test/")
        assert done.returncode == 0, done.stderr
        assert "hello" in done.stdout
        subnets = _run_json(tmp_path)["subnets"]
        assert isinstance(subnets, dict)
        assert str(subnets["v4"]).startswith("10.213."), subnets
        n = int(str(subnets["v4"]).split(".")[2])  # 10.213.N.0/24 pairs with fd61:7766:0:N::/64
        assert subnets["v6"] == str(IPv6Network(f"fd61:7766:0:{n:x}::/64")), subnets
    finally:
        subprocess.run(["docker", "network", "rm", name], capture_output=True, timeout=60,
                       check=False)
    assert_no_leftovers()


def test_explicit_subnets(wan: wanmod.Wan, tmp_path: Path) -> None:
    done = awf(*POLICY, "--subnet", "172.29.77.0/24", "--subnet6", "fd99:1:2:3::/64",
               "--proxy-logs-dir", str(tmp_path), "--", "bash", "-c",
               "echo $HTTPS_PROXY; curl -sS -m 5 http://allowed.test/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["http://172.29.77.10:3128", "hello allowed.test"]
    subnets = _run_json(tmp_path)["subnets"]
    assert isinstance(subnets, dict)
    assert (subnets["v4"], subnets["v6"]) == ("172.29.77.0/24", "fd99:1:2:3::/64")


def test_ipv6_off(wan: wanmod.Wan) -> None:
    done = awf(*POLICY, "--ipv6", "off", "--", "bash", "-c",
               "cat /proc/sys/net/ipv6/conf/all/disable_ipv6; curl -sS -m 5 http://allowed.test/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["1", "hello allowed.test"]


def test_concurrent_runs_get_their_own_subnets(wan: wanmod.Wan, tmp_path: Path) -> None:
    procs = []
    for i in range(3):
        logs = tmp_path / str(i)
        procs.append((logs, subprocess.Popen(
            awf_argv(*POLICY, "--proxy-logs-dir", str(logs), "--", "bash", "-c",
                     "sleep 2; curl -sS -m 5 http://allowed.test/"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    seen = set()
    for logs, proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert out.strip() == "hello allowed.test"
        subnets = _run_json(logs)["subnets"]
        assert isinstance(subnets, dict)
        seen.add(subnets["v4"])
    assert len(seen) == 3
    assert_no_leftovers()


def test_piped_stdin_reaches_the_command(wan: wanmod.Wan) -> None:
    """`printf hi | awf run -- wc -c` prints 2, as on the netns backend, and EOF ends it."""
    done = subprocess.run(awf_argv(*POLICY, "--", "wc", "-c"), input="hi", capture_output=True,
                          text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"


def test_tty_without_a_terminal_is_exit_2_at_once(wan: wanmod.Wan) -> None:
    """-t with stdin not a terminal: one line, exit 2, nothing created (it used to hang)."""
    done = subprocess.run(awf_argv(*POLICY, "-t", "--", "true"), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1
    assert "-t" in done.stderr
    assert "terminal" in done.stderr


def test_tty_gives_a_terminal_and_forwards_input(wan: wanmod.Wan) -> None:
    import pty
    import select

    pid, master = pty.fork()
    if pid == 0:  # the child: awf on the pty's slave side
        env = {k: v for k, v in os.environ.items() if k != "TERM"}  # else the caller's wins
        os.execve(sys.executable, awf_argv(*POLICY, "--tty", "--", "bash", "-c",
                                           "tty; echo TERM=$TERM; read x; echo got:$x"), env)
    out = b""
    sent = False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the pty
                break
            if not chunk:
                break
            out += chunk
            if not sent and b"TERM=" in out:
                os.write(master, b"hello\r")
                sent = True
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(master)
    text = out.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "/dev/pts/" in text
    assert "TERM=xterm-256color" in text
    assert "got:hello" in text


def test_wildcard_entries(wan: wanmod.Wan) -> None:
    policy = ("--allow-domains", "*.wild.test", "--resolve", f"a.wild.test={wanmod.V4}",
              "--resolve", f"b.c.wild.test={wanmod.V4}", "--resolve", f"wild.test={wanmod.V4}")
    script = ("for h in a.wild.test b.c.wild.test wild.test; do "
              "curl -s -o /dev/null -w \"$h %{http_code}\\n\" http://$h/; done")
    done = awf(*policy, "--", script)
    assert done.returncode == 0, done.stderr
    codes = dict(line.split() for line in done.stdout.splitlines())
    assert codes == {"a.wild.test": "200", "b.c.wild.test": "200", "wild.test": "403"}


@pytest.fixture
def host_service() -> Iterator[int]:
    """An HTTP service on this host (all addresses, a free port), as a developer's database or
    dev server would be."""
    import http.server
    import threading

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello from the host\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Hello)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


def test_enable_host_access_reaches_host_docker_internal(wan: wanmod.Wan,
                                                        host_service: int) -> None:
    url = f"http://host.docker.internal:{host_service}/"
    done = awf("--enable-host-access", "--allow-host-ports", str(host_service), "--",
               "curl", "-sS", "-m", "8", url)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello from the host\n"
    # transparently too, and only on the listed port
    done = awf("--enable-host-access", "--allow-host-ports", str(host_service), "--", "bash",
               "-c", f"curl -sS -m 8 --noproxy '*' {url} && "
               "! nc -z -w 3 host.docker.internal 22")
    assert done.returncode == 0, done.stdout + done.stderr


def test_without_host_access_the_host_is_unreachable(wan: wanmod.Wan, host_service: int) -> None:
    done = awf("--allow-host-ports", str(host_service), "--", "curl", "-sS", "-m", "8",
               "-o", "/dev/null", "-w", "%{http_code}",
               f"http://host.docker.internal:{host_service}/")
    assert done.stdout != "200"


def test_host_access_never_opens_a_dangerous_port(wan: wanmod.Wan) -> None:
    done = awf("--enable-host-access", "--allow-host-ports", "5432", "--", "true")
    assert done.returncode == 2
    assert "5432" in done.stderr


def test_work_dir_holds_the_run_and_is_cleaned(wan: wanmod.Wan, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen(awf_argv("--work-dir", str(work), "--", "bash", "-c",
                                     "echo started; sleep 3"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    during = [p.name for p in work.iterdir()]
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert len(during) == 1
    assert during[0].startswith("awf-")  # the run's directory was made here...
    assert list(work.iterdir()) == []  # ...and removed at the end
    assert awf("--work-dir", str(tmp_path / "missing"), "--", "true").returncode == 2


def test_an_allow_domains_file_works_on_the_docker_backend(wan: wanmod.Wan,
                                                           tmp_path: Path) -> None:
    """The list is read on the host: the proxy container never sees the caller's path."""
    lists = tmp_path / "allow.txt"
    lists.write_text("# the run's allowlist\nallowed.test\n")
    done = awf("--allow-domains-file", str(lists), "--resolve", f"allowed.test={wanmod.V4}",
               "--resolve", f"other.test={wanmod.V4}", "--", "bash", "-c",
               "curl -sS -m 10 http://allowed.test/; echo; "
               "curl -sS -m 10 -o /dev/null -w '%{http_code}' http://other.test/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["hello", "allowed.test", "403"], done.stdout
