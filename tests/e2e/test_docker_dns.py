"""Issue 19, item 0: DNS that works on every host (Docker backend).

A cloud host's resolver is a private address (a VPC's 10.x, 168.63.129.16, 169.254.169.253).
The proxy container's egress refused private addresses before it allowed DNS, so every name was
`dns_failure` after 5 s. Here the host's resolv.conf (bind-mounted over /etc/resolv.conf in a
mount namespace of awf's own: nothing else on the machine sees it) names a resolver on a
private address in a namespace of this test's, answering `allowed.test` with the address of an
HTTP origin in the same namespace (203.0.113.80, a host route of its own: the shared wan and its
lock are not needed). Names resolve ONLY by DNS (no --resolve). A resolver that does not answer
stops the run before the command, exit 125, one line naming it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.test_docker_run import assert_no_leftovers
from tests.support import wan as wanmod
from tests.support.needs import need_docker, need_root

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

NET = "10.199.53"  # a private /24 of this test's; .1 the host, .53 the resolver
RESOLVER, DEAD = f"{NET}.53", f"{NET}.54"
ORIGIN = "203.0.113.80"  # TEST-NET-3, routed (/32) into the namespace

DNS_SERVER = r'''
import socket, sys
import dns.message, dns.rrset, dns.rcode, dns.rdatatype
import http.server, threading
answers = {"allowed.test.": sys.argv[1]}
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello " + self.headers.get("Host", "") + "\n").encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
web = http.server.ThreadingHTTPServer((sys.argv[1], 80), H)
threading.Thread(target=web.serve_forever, daemon=True).start()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[2], 53))
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(2048)
    try:
        q = dns.message.from_wire(data)
    except Exception:
        continue
    r = dns.message.make_response(q)
    qn = q.question[0].name.to_text().lower() if q.question else ""
    if qn in answers and q.question[0].rdtype == dns.rdatatype.A:
        r.answer.append(dns.rrset.from_text(qn, 30, "IN", "A", answers[qn]))
    elif qn not in answers:
        r.set_rcode(dns.rcode.NXDOMAIN)
    s.sendto(r.to_wire(), addr)
'''


@dataclass
class Resolver:
    netns: str
    host_if: str
    proc: subprocess.Popen[bytes]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        subprocess.run(["ip", "link", "delete", self.host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True, check=False)
        (wanmod.OWNERS / self.netns).unlink(missing_ok=True)


def _images() -> None:
    from containers.driver import DockerDriver
    from containers.images import ensure_images

    ensure_images(DockerDriver.from_env(), progress=lambda line: None)


@pytest.fixture(scope="module")
def resolver() -> Iterator[Resolver]:
    """A DNS server on a private address and an origin, in an `awt-` namespace (the wan's
    reaper knows the prefix)."""
    need_docker()
    need_root()
    _images()  # built with the host's own resolv.conf (pip needs PyPI), before the test's
    wanmod.reap()
    ns = f"{wanmod.PREFIX}{secrets.token_hex(3)}"
    host_if = f"{ns}h"
    wanmod.sh("ip", "netns", "add", ns)
    wanmod.OWNERS.mkdir(parents=True, exist_ok=True)
    (wanmod.OWNERS / ns).write_text(f"{os.getpid()}\n")
    inside = ("ip", "netns", "exec", ns)
    try:
        wanmod.sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0",
                  "netns", ns)
        wanmod.sh("ip", "addr", "add", f"{NET}.1/24", "dev", host_if)
        wanmod.sh("ip", "link", "set", host_if, "up")
        wanmod.sh(*inside, "ip", "link", "set", "lo", "up")
        for a in (RESOLVER, DEAD):  # DEAD is there, with nothing listening on it
            wanmod.sh(*inside, "ip", "addr", "add", f"{a}/24", "dev", "eth0")
        wanmod.sh(*inside, "ip", "addr", "add", f"{ORIGIN}/32", "dev", "eth0")
        wanmod.sh(*inside, "ip", "link", "set", "eth0", "up")
        wanmod.sh(*inside, "ip", "route", "add", "default", "via", f"{NET}.1")
        wanmod.sh("ip", "route", "add", f"{ORIGIN}/32", "via", RESOLVER, "dev", host_if)
        proc = subprocess.Popen([*inside, sys.executable, "-c", DNS_SERVER, ORIGIN, RESOLVER],
                                stdout=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
    except BaseException:
        subprocess.run(["ip", "link", "delete", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)
        raise
    r = Resolver(ns, host_if, proc)
    try:
        yield r
    finally:
        r.close()


def awf_with_resolv_conf(conf: Path, *args: str, timeout: float = 300, backend: str = "docker"
                         ) -> subprocess.CompletedProcess[str]:
    """`awf run --backend BACKEND ARGS` with `conf` as the host's /etc/resolv.conf (a private
    mount namespace: only this awf sees it)."""
    script = 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"'
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            str(conf), sys.executable, "-m", "awf.cli", "run", "--backend", backend, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def test_a_private_resolver_from_the_hosts_resolv_conf_works(resolver: Resolver,
                                                             tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {RESOLVER}\n")
    done = awf_with_resolv_conf(
        conf, "--allow-domains", "allowed.test", "--",
        "sh", "-c", "curl -sS -m 10 http://allowed.test/ && "
                    "curl -sS -m 10 --noproxy '*' http://allowed.test/ && "
                    "dig +short +time=3 +tries=1 allowed.test")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("hello allowed.test") == 2, (done.stdout, done.stderr[-2000:])
    assert ORIGIN in done.stdout
    assert "Traceback" not in done.stderr
    assert_no_leftovers()


def test_a_dead_resolver_stops_the_run_before_the_command(resolver: Resolver,
                                                          tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {DEAD}\n")
    done = awf_with_resolv_conf(conf, "--allow-domains", "allowed.test", "--",
                                "echo", "the-command-ran")
    assert done.returncode == 125, (done.stdout, done.stderr[-3000:])
    assert "the-command-ran" not in done.stdout
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    named = [ln for ln in lines if DEAD in ln]
    assert len(named) == 1, done.stderr[-3000:]
    assert "--dns-servers" in named[0]
    assert "Traceback" not in done.stderr
    assert_no_leftovers()


def test_dns_servers_flag_names_a_private_resolver(resolver: Resolver, tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {DEAD}\n")  # not asked: --dns-servers wins
    done = awf_with_resolv_conf(conf, "--allow-domains", "allowed.test",
                                "--dns-servers", RESOLVER, "--",
                                "curl", "-sS", "-m", "10", "http://allowed.test/")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "hello allowed.test" in done.stdout


def test_the_hosts_file_is_the_hosts_not_the_containers(resolver: Resolver,
                                                        tmp_path: Path) -> None:
    """Item 3: the proxy container reads the host's hosts file (here the one --hosts-file
    names: the host's own /etc/hosts is the machine's, not this test's; the default mount is
    checked in tests/unit/test_resolvers.py), with the usual address checks."""
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {RESOLVER}\n")
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{ORIGIN} hosted.test\n10.1.2.3 private.test\n")
    done = awf_with_resolv_conf(
        conf, "--allow-domains", "hosted.test,private.test", "--hosts-file", str(hosts), "--",
        "sh", "-c", "curl -sS -m 10 http://hosted.test/; "
                    "curl -sS -m 10 --noproxy '*' http://hosted.test/; "
                    "curl -sS -m 10 -o /dev/null -w 'private=%{http_code}\\n' "
                    "http://private.test/")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("hello hosted.test") == 2, (done.stdout, done.stderr[-2000:])
    assert "private=403" in done.stdout



def test_netns_a_private_resolver_works_and_a_dead_one_stops_the_run(resolver: Resolver,
                                                                     tmp_path: Path) -> None:
    """The same on the netns backend: its proxy runs on the host and asks the host's resolver;
    a dead one is found before the command (awf probes it first), not per request."""
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {RESOLVER}\n")
    done = awf_with_resolv_conf(conf, "--allow-domains", "allowed.test", "--",
                                "curl", "-sS", "-m", "10", "http://allowed.test/",
                                backend="netns")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "hello allowed.test" in done.stdout
    conf.write_text(f"nameserver {DEAD}\n")
    done = awf_with_resolv_conf(conf, "--allow-domains", "allowed.test", "--",
                                "echo", "the-command-ran", backend="netns")
    assert done.returncode == 125, (done.stdout, done.stderr[-3000:])
    assert "the-command-ran" not in done.stdout
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert DEAD in lines[0]
    assert "--dns-servers" in lines[0]
