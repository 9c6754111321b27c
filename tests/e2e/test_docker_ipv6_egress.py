"""Issue 19, item 4: IPv6 egress on the Docker backend.

An allowed name whose DNS has only an AAAA record (`allowed.test` -> the wan's IPv6 origin
2001:db8:100::10) is reached through `awf run`, explicitly (curl through HTTPS_PROXY: CONNECT,
TLS to the origin verified against the wan's CA) and transparently (`--noproxy '*'`: the agent
resolves through the proxy's forwarder and connects over IPv6). The name is resolved by DNS
only: a small resolver of this test answers in the wan's namespace on an address of its own
(198.51.100.56), named by --dns-servers. The host reaches the wan's /64 over its veth, so this
host "has IPv6" (`containers.topology.host_has_ipv6`), and -ext is dual-stack; the host's
masquerade table `inet awf_<run>` exists during the run and is gone after it.

Without IPv6 egress (`--ipv6 off` here: the same proxy path as a host without IPv6) the
request fails at once with `connect_failed` and a note saying there is no IPv6 route.
A killed run's masquerade table is removed by `awf cleanup`.
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

from tests.e2e.test_docker_run import assert_no_leftovers, awf, awf_argv
from tests.support import wan as wanmod
from tests.support.needs import need_docker, need_root

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

DNS_V4 = "198.51.100.56"  # this test's resolver, in the wan's namespace

DNS_SERVER = r'''
import socket, sys
import dns.message, dns.rrset, dns.rcode, dns.rdatatype
answers = {"allowed.test.": sys.argv[1]}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # the wan's own counter holds ::53
s.bind((sys.argv[2], 53))
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(2048)
    try:
        q = dns.message.from_wire(data)
    except Exception:
        continue
    r = dns.message.make_response(q)
    qn = q.question[0].name.to_text().lower() if q.question else ""
    if qn in answers and q.question[0].rdtype == dns.rdatatype.AAAA:
        r.answer.append(dns.rrset.from_text(qn, 30, "IN", "AAAA", answers[qn]))
    elif qn not in answers:
        r.set_rcode(dns.rcode.NXDOMAIN)
    s.sendto(r.to_wire(), addr)  # an A query for a known name: NOERROR, no answer
'''


@pytest.fixture(scope="module")
def wan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[wanmod.Wan]:
    need_docker()
    need_root()
    wanmod.reap()
    w = wanmod.start(tmp_path_factory.mktemp("wan"))
    os.chmod(w.ca_pem.parent, 0o755)
    os.chmod(w.ca_pem, 0o644)
    inside = ("ip", "netns", "exec", w.netns)
    proc: subprocess.Popen[bytes] | None = None
    try:
        wanmod.sh(*inside, "ip", "addr", "add", f"{DNS_V4}/24", "dev", "eth0")
        proc = subprocess.Popen([*inside, sys.executable, "-c", DNS_SERVER, wanmod.V6, DNS_V4],
                                stdout=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        yield w
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(10)
        w.close()


POLICY = ("--allow-domains", "allowed.test", "--dns-servers", DNS_V4)


def _nat_tables() -> list[str]:
    from netfilter import apply as nft

    return nft.list_tables("awf_")


def _access(logs: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (logs / "access.jsonl").read_text().splitlines()
            if line.strip()]


def test_an_aaaa_only_name_is_reached_explicitly_and_transparently(
        wan: wanmod.Wan, tmp_path: Path) -> None:
    before = set(_nat_tables())
    logs = tmp_path / "logs"
    script = ("getent ahostsv6 allowed.test | head -1; "
              "curl -sS -m 20 --cacert /ca.pem https://allowed.test/; "
              "curl -sS -m 20 http://allowed.test/; "
              "curl -sS -m 20 --noproxy '*' --cacert /ca.pem https://allowed.test/; "
              "curl -sS -m 20 --noproxy '*' http://allowed.test/; "
              "nft list tables 2>/dev/null; true")
    done = awf(*POLICY, "--proxy-logs-dir", str(logs), "-v", f"{wan.ca_pem}:/ca.pem:ro", "--",
               "bash", "-c", script, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("hello allowed.test") == 4, (done.stdout, done.stderr[-3000:])
    assert wanmod.V6 in done.stdout  # the agent saw the AAAA answer
    records = _access(logs)
    modes = sorted(str(r["mode"]) for r in records if r["host"] == "allowed.test"
                   and r["reason"] is None)
    assert modes == ["explicit"] * 2 + ["transparent"] * 2, records
    run = json.loads((logs / "run.json").read_text())
    ext_v6 = run["subnets"]["ext_v6"]
    assert ext_v6, run["subnets"]
    assert ext_v6.startswith("fd61:7766:2:"), run["subnets"]
    assert set(_nat_tables()) == before  # the masquerade table went with the run
    assert "Traceback" not in done.stderr
    assert_no_leftovers()


def test_without_ipv6_egress_an_aaaa_only_name_is_connect_failed_no_ipv6_route(
        wan: wanmod.Wan, tmp_path: Path) -> None:
    """`--ipv6 off`: -ext is IPv4 only and the proxy has no IPv6 route, as on a host with no
    IPv6. The request fails at once, and the log says why."""
    logs = tmp_path / "logs"
    done = awf(*POLICY, "--ipv6", "off", "--proxy-logs-dir", str(logs), "--",
               "curl", "-sS", "-m", "20", "http://allowed.test/", timeout=300)
    assert "hello" not in done.stdout
    assert "connect_failed" in done.stdout, (done.stdout, done.stderr[-3000:])
    assert "no IPv6 route" in done.stdout
    records = [r for r in _access(logs) if r["host"] == "allowed.test"]
    assert [r["reason"] for r in records] == ["connect_failed"], records
    assert "no IPv6 route" in str(records[0].get("note")), records
    run = json.loads((logs / "run.json").read_text())
    assert run["subnets"]["ext_v6"] is None
    assert_no_leftovers()


def test_awf_cleanup_removes_a_killed_runs_masquerade_table(wan: wanmod.Wan,
                                                           tmp_path: Path) -> None:
    before = set(_nat_tables())
    logs = tmp_path / "logs"
    proc = subprocess.Popen(awf_argv(*POLICY, "--proxy-logs-dir", str(logs), "--",
                                     "sleep", "600"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        new: set[str] = set()
        while time.monotonic() < deadline:
            new = set(_nat_tables()) - before
            if new and (logs / "run.json").exists():
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.5)
        assert len(new) == 1, new
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert set(_nat_tables()) - before == new  # a killed awf leaves it behind
        table = next(iter(new))
        run = table[len("awf_"):]
        cleanup = [sys.executable, "-m", "awf.cli", "cleanup", "--run", run]
        dry = subprocess.run([*cleanup, "--dry-run"], capture_output=True, text=True,
                             timeout=120, check=False)
        assert table in dry.stdout + dry.stderr, (dry.stdout, dry.stderr)
        done = subprocess.run(cleanup, capture_output=True, text=True, timeout=180,
                              check=False)
        assert done.returncode == 0, done.stderr
        assert set(_nat_tables()) - before == set()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert_no_leftovers()
