"""Issue 20: no route around the proxy from the Docker sandbox (the agent and its --enable-docker
siblings, which share its namespace).

The kernel gives eth0 an `fe80::/64` route, and the agent's rules used to accept TCP 80/443 to
any address: `curl --noproxy '*' 'http://[fe80::…%eth0]/'` reached a listener on the host (the
-int bridge's own link-local address), outside the proxy, logged nowhere. Here the host listens
on that address, port 80 and 443; the agent and a sibling reach for it; nothing may arrive, and
the run's l3-drops.json must count the refusals.

The sandbox and the test meet in a shared directory: the command writes its hostname (the
keeper's container), the test finds the run's -int bridge and its link-local address, listens
there, and writes the address back.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field

import pytest

from tests.e2e.test_docker_run import POLICY, assert_no_leftovers, awf_argv
from tests.support.needs import need_docker, need_root

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

SCRIPT = r'''
x=/xchg
python3 -c 'import socket; print(socket.gethostname())' > $x/host.tmp && mv $x/host.tmp $x/host.txt
for i in $(seq 1 900); do [ -s $x/bridge.txt ] && break; sleep 0.1; done
ll=$(cat $x/bridge.txt)
# p SCHEME [PREFIX...]: what a client gets from SCHEME://[ll%eth0]/, bypassing the proxy
p() { local scheme=$1; shift; "$@" curl -sS -k -m 5 --noproxy '*' -o /dev/null \
      -w '%{http_code}' "$scheme://[$ll%25eth0]/" 2>/dev/null; echo " rc=$?"; }
sib() { docker run --rm --entrypoint= awf-agent:latest "$@"; }
echo "agent_http=$(p http)"
echo "agent_https=$(p https)"
echo "sibling_http=$(p http sib)"
echo "sibling_https=$(p https sib)"
echo "agent_accept_ra=$(cat /proc/sys/net/ipv6/conf/eth0/accept_ra)"
echo "agent_routes6=$(ip -6 route show | tr '\n' ';')"
echo "done=1"
'''


IPV6_FREEBIND = 78  # linux/in6.h; the bridge's address is tentative until DAD is done


@dataclass
class HostListener:
    """TCP listeners on the host's link-local address of the run's bridge, counting arrivals."""

    hits: list[tuple[int, str]] = field(default_factory=list)
    socks: list[socket.socket] = field(default_factory=list)

    def listen(self, addr: str, ifname: str) -> None:
        scope = socket.if_nametoindex(ifname)
        for port in (80, 443):
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)  # it may still be tentative
            s.bind((addr, port, 0, scope))
            s.listen(16)
            self.socks.append(s)
            threading.Thread(target=self._serve, args=(s, port), daemon=True).start()

    def _serve(self, s: socket.socket, port: int) -> None:
        while True:
            try:
                conn, peer = s.accept()
            except OSError:
                return
            self.hits.append((port, str(peer[0])))
            with conn:
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nhostleak\n")

    def close(self) -> None:
        for s in self.socks:
            s.close()


def _bridge_of(hostname: str) -> tuple[str, str]:
    """(bridge interface, its fe80:: address) of the -int network of the run whose container
    is `hostname`."""
    name = subprocess.run(["docker", "inspect", "-f", "{{.Name}}", hostname], capture_output=True,
                          text=True, check=True, timeout=30).stdout.strip().lstrip("/")
    run = name.removeprefix("awf-").rsplit("-", 1)[0]
    net_id = subprocess.run(["docker", "network", "inspect", "-f", "{{.Id}}", f"awf-{run}-int"],
                            capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    bridge = f"br-{net_id[:12]}"
    addrs = json.loads(subprocess.run(["ip", "-j", "-6", "addr", "show", "dev", bridge,
                                       "scope", "link"], capture_output=True, text=True,
                                      check=True, timeout=10).stdout)
    for a in addrs[0]["addr_info"]:
        if a.get("family") == "inet6" and str(a["local"]).startswith("fe80:"):
            return bridge, str(a["local"])
    raise AssertionError(f"{bridge} has no link-local address: {addrs}")


@dataclass
class Outcome:
    results: dict[str, str]
    hits: list[tuple[int, str]]
    address: str
    drops: list[dict[str, object]]
    stderr: str


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    need_docker()
    need_root()
    xchg = tmp_path_factory.mktemp("xchg")
    os.chmod(xchg, 0o777)
    logs = tmp_path_factory.mktemp("logs")
    listener = HostListener()
    proc = subprocess.Popen(
        awf_argv(*POLICY, "--enable-docker", "--proxy-logs-dir", str(logs),
                 "-v", f"{xchg}:/xchg", "--", SCRIPT),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    address = ""
    try:
        deadline = time.monotonic() + 240
        while not (xchg / "host.txt").exists():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the command never started"
            time.sleep(0.2)
        bridge, address = _bridge_of((xchg / "host.txt").read_text().strip())
        listener.listen(address, bridge)
        (xchg / "bridge.tmp").write_text(address)
        os.replace(xchg / "bridge.tmp", xchg / "bridge.txt")
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.communicate(timeout=60)
        listener.close()
    results = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert results.get("done") == "1", out + err[-3000:]
    drops_file = logs / "l3-drops.json"
    drops = json.loads(drops_file.read_text()) if drops_file.exists() else []
    return Outcome(results, listener.hits, address, drops, err)


@pytest.mark.parametrize("who", ["agent", "sibling"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_host_link_local_is_not_reachable(outcome: Outcome, who: str, scheme: str) -> None:
    got = outcome.results[f"{who}_{scheme}"]
    assert not got.startswith("200"), got
    assert outcome.hits == [], f"reached the host's {outcome.address} outside the proxy"


@pytest.mark.parametrize("port", [80, 443])
def test_link_local_refusals_are_counted_in_l3_drops(outcome: Outcome, port: int) -> None:
    counted = [d for d in outcome.drops
               if d["dst"] == outcome.address and d["proto"] == "tcp" and d["port"] == port]
    assert counted, outcome.drops
    assert isinstance(counted[0]["count"], int)
    assert counted[0]["count"] >= 2  # the agent's and the sibling's (curl may retry)


def test_only_awfs_routes_and_no_router_advertisements(outcome: Outcome) -> None:
    assert outcome.results["agent_accept_ra"] == "0"
    routes = [r.split() for r in outcome.results["agent_routes6"].split(";") if r]
    proxy = next(r[2] for r in routes if r[:2] == ["default", "via"])
    # the proxy's host route, the kernel's link-local one (refused by the rules), the default
    assert sorted(r[0] for r in routes) == sorted([proxy, "fe80::/64", "default"]), routes


def test_no_leftovers(outcome: Outcome) -> None:
    assert_no_leftovers()
