"""The nft layer on real traffic: a real agent namespace and veth (``netfilter.netns``), the
agent's table inside it and the proxy-side table in the host namespace (``netfilter.apply``), and
small listeners on the host end standing in for awf-proxy. Every probe runs as a Python client
inside the agent namespace (``ip netns exec``).

Needs root, nft, iproute2 and util-linux (setpriv). Without them the module fails, unless
``AWF_ALLOW_SKIP=1`` is set, when it skips and says why.
"""

from __future__ import annotations

import errno
import json
import os
import queue
import secrets
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address

import pytest

from netfilter import apply as nft
from netfilter import netns
from netfilter.errors import NetfilterError, SandboxError
from netfilter.ruleset import AgentRuleset, ProxySideRuleset

pytestmark = pytest.mark.privileged

RUN = f"test{secrets.token_hex(3)}"  # awf-test1a2b3c / awf-test1a2b3ch
HOST_TABLE = f"awf_{RUN}"
AGENT_TABLE = "awf"
SO_ORIGINAL_DST = 80  # IP(6)T_SO_ORIGINAL_DST, at SOL_IP (0) and SOL_IPV6 (41)
DEADLINE = 5.0


def _missing() -> list[str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("not root")
    for tool in ("nft", "ip", "setpriv", "nsenter"):
        if shutil.which(tool) is None:
            problems.append(f"no {tool!r} on PATH")
    return problems


@pytest.fixture(scope="module", autouse=True)
def _needs_root() -> None:
    problems = _missing()
    if problems:
        reason = "privileged netfilter tests need root, nft, iproute2, util-linux: " + \
            ", ".join(problems)
        if os.environ.get("AWF_ALLOW_SKIP") == "1":
            pytest.skip(reason)
        pytest.fail(reason + " (set AWF_ALLOW_SKIP=1 to skip instead)")


# --- listeners on the host end (stand-ins for awf-proxy) -------------------------------------


@dataclass(frozen=True)
class Hit:
    kind: str  # "transparent" | "explicit" | "dns"
    peer: str
    original: tuple[str, int] | None  # SO_ORIGINAL_DST of an accepted TCP socket
    data: bytes


def original_dst(conn: socket.socket) -> tuple[str, int]:
    """SO_ORIGINAL_DST inlined: struct sockaddr_in / sockaddr_in6, port and address in network
    byte order."""
    if conn.family == socket.AF_INET:
        raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), struct.unpack("!H", raw[2:4])[0]
    raw = conn.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, 28)
    return socket.inet_ntop(socket.AF_INET6, raw[8:24]), struct.unpack("!H", raw[2:4])[0]


class Listeners:
    """TCP and UDP sockets served by one thread; every hit goes to ``hits``."""

    def __init__(self) -> None:
        self.hits: queue.Queue[Hit] = queue.Queue()
        self._socks: dict[socket.socket, str] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="awf-test-listeners",
                                        daemon=True)

    def bind_pair(self, kind: str, addrs: list[str], udp: bool = False) -> int:
        """Bind ``kind`` on the same free port at every address in ``addrs``."""
        for _ in range(50):
            socks: list[socket.socket] = []
            port = 0
            try:
                for addr in addrs:
                    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
                    s = socket.socket(fam, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
                    socks.append(s)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((addr, port))
                    port = s.getsockname()[1]
                    if not udp:
                        s.listen(16)
            except OSError as exc:
                for s in socks:
                    s.close()
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise
            for s in socks:
                self._socks[s] = f"{kind}/{'udp' if udp else 'tcp'}"
            return port
        raise RuntimeError(f"no free common port for {kind} on {addrs}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._wake_w.send(b"x")
        self._thread.join(DEADLINE)
        for s in (*self._socks, self._wake_r, self._wake_w):
            s.close()

    def _serve(self) -> None:
        while True:
            ready, _, _ = select.select([*self._socks, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            for s in ready:
                kind, _, proto = self._socks[s].partition("/")
                if proto == "udp":
                    data, peer = s.recvfrom(2048)
                    self.hits.put(Hit(kind, peer[0], None, data))
                    s.sendto(b"dns:" + data, peer)
                    continue
                conn, peer = s.accept()
                with conn:
                    orig = original_dst(conn) if kind == "transparent" else None
                    conn.settimeout(DEADLINE)
                    self.hits.put(Hit(kind, peer[0], orig, b""))
                    conn.sendall(f"{kind}\n".encode())

    def drain(self) -> list[Hit]:
        out = []
        while True:
            try:
                out.append(self.hits.get_nowait())
            except queue.Empty:
                return out

    def next(self, timeout: float = DEADLINE) -> Hit:
        return self.hits.get(timeout=timeout)


# --- the topology ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Topology:
    link: netns.AgentLink
    listeners: Listeners
    explicit_port: int
    transparent_port: int
    dns_port: int
    agent: AgentRuleset
    proxy: ProxySideRuleset
    create_ms: float

    @property
    def hosts(self) -> tuple[str, str]:
        """The host end's IPv4 and IPv6 addresses (where the listeners are)."""
        assert self.link.host_v6 is not None
        return str(self.link.host_v4.ip), str(self.link.host_v6.ip)

    @property
    def agents(self) -> tuple[str, str]:
        assert self.link.agent_v6 is not None
        return str(self.link.agent_v4.ip), str(self.link.agent_v6.ip)

    def apply(self) -> None:
        nft.apply(self.agent, netns=self.link.netns)
        nft.apply(self.proxy)


@pytest.fixture(scope="module")
def topo(_needs_root: None) -> Iterator[Topology]:
    v4, v6 = netns.choose_subnet(RUN)
    link = netns.AgentLink.for_run(RUN, v4, v6)
    started = time.perf_counter()
    netns.create(link)
    create_ms = 1000 * (time.perf_counter() - started)
    listeners = Listeners()
    try:
        assert link.host_v6 is not None
        hosts = [str(link.host_v4.ip), str(link.host_v6.ip)]
        explicit = listeners.bind_pair("explicit", hosts)
        transparent = listeners.bind_pair("transparent", hosts)
        dns = listeners.bind_pair("dns", hosts, udp=True)
        listeners.start()
        agent = AgentRuleset(table=AGENT_TABLE, proxy_v4=link.host_v4.ip,
                             proxy_v6=link.host_v6.ip, proxy_ports=frozenset({explicit, 53}),
                             tcp_ports=frozenset({80, 443}))
        proxy = ProxySideRuleset(table=HOST_TABLE, agent_ifname=link.host_if,
                                 agent_net_v4=link.host_v4.network,
                                 agent_net_v6=link.host_v6.network,
                                 redirect_tcp_ports=frozenset({80, 443}),
                                 transparent_port=transparent, dns_port=dns,
                                 listen_ports=frozenset({explicit, transparent, dns}))
        yield Topology(link, listeners, explicit, transparent, dns, agent, proxy, create_ms)
    finally:
        listeners.stop()
        nft.remove(HOST_TABLE)
        netns.destroy(link)


@pytest.fixture
def t(topo: Topology) -> Topology:
    """Both tables freshly applied (a test may tamper with them), no stale hits."""
    topo.apply()
    topo.listeners.drain()
    return topo


# --- probes from inside the agent namespace --------------------------------------------------

CLIENT = r"""
import errno, json, os, socket, sys, time
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[4]))
began = time.monotonic()
try:
    s.connect(socket.getaddrinfo(host, port, fam, s.type)[0][4])  # keeps a %scope
    if kind == "udp":
        s.send(b"query")
    out = {"ok": True, "data": s.recv(100).decode()}
except OSError as e:
    out = {"ok": False, "errno": e.errno, "error": errno.errorcode.get(e.errno, str(e))}
out["elapsed"] = time.monotonic() - began
print(json.dumps(out))
"""


def probe(t: Topology, kind: str, host: str, port: int, timeout: float = 2.0,
          ) -> dict[str, object]:
    done = subprocess.run(
        ["ip", "netns", "exec", t.link.netns, sys.executable, "-I", "-c", CLIENT, kind, host,
         str(port), str(timeout)],
        capture_output=True, text=True, timeout=timeout + 10, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def in_agent(t: Topology, *argv: str, user: bool = False) -> subprocess.CompletedProcess[str]:
    drop = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all"] if user else []
    return subprocess.run(["ip", "netns", "exec", t.link.netns, *drop, *argv],
                          capture_output=True, text=True, timeout=10, check=False)


def refused_fast(result: dict[str, object], *errnos: str) -> None:
    assert result["ok"] is False, result
    assert result["error"] in (errnos or ("ECONNREFUSED",)), result
    assert isinstance(result["elapsed"], float)
    assert result["elapsed"] < 1.0, result


# --- tests -----------------------------------------------------------------------------------


def test_create_is_fast_and_shaped(topo: Topology) -> None:
    link = topo.link
    assert topo.create_ms < 200, f"netns.create took {topo.create_ms:.1f} ms"
    assert link.netns in netns.leftovers()
    assert link.host_if in netns.leftovers()
    routes = in_agent(topo, "ip", "-4", "route", "show", "default").stdout
    assert f"via {link.host_v4.ip}" in routes
    routes6 = in_agent(topo, "ip", "-6", "route", "show", "default").stdout
    assert f"via {topo.hosts[1]}" in routes6
    sysctl = in_agent(topo, "sysctl", "-n", "net.ipv6.conf.all.accept_ra",
                      "net.ipv6.conf.default.autoconf", f"net.ipv6.conf.{link.agent_if}.accept_ra")
    assert sysctl.stdout.split() == ["0", "0", "0"]
    addrs = in_agent(topo, "ip", "-6", "addr", "show", "dev", link.agent_if).stdout
    assert "tentative" not in addrs


def test_live_tables_verify(t: Topology) -> None:
    nft.verify(t.agent, netns=t.link.netns)
    nft.verify(t.proxy)
    assert nft.list_tables("awf", netns=t.link.netns) == [AGENT_TABLE]
    assert HOST_TABLE in nft.list_tables("awf_")


@pytest.mark.parametrize("dst", ["198.51.100.7", "2001:db8::7"])
def test_tcp_443_anywhere_reaches_transparent_listener(t: Topology, dst: str) -> None:
    result = probe(t, "tcp", dst, 443)
    assert result == {"ok": True, "data": "transparent\n", "elapsed": result["elapsed"]}
    hit = t.listeners.next()
    assert hit.kind == "transparent"
    assert hit.original == (dst, 443)  # the NAT happened where the listener lives
    assert ip_address(hit.peer) == ip_address(t.agents[":" in dst])


@pytest.mark.parametrize("dst", ["198.51.100.7", "2001:db8::7"])
def test_tcp_22_anywhere_is_refused_at_once(t: Topology, dst: str) -> None:
    refused_fast(probe(t, "tcp", dst, 22))
    assert t.listeners.drain() == []


def test_tcp_to_proxy_explicit_port(t: Topology) -> None:
    for host in t.hosts:
        assert probe(t, "tcp", host, t.explicit_port)["data"] == "explicit\n"


def test_dns_to_proxy_is_redirected_to_forwarder(t: Topology) -> None:
    assert t.dns_port != 53  # so a hit on the listener proves the redirect
    for host in t.hosts:
        result = probe(t, "udp", host, 53)
        assert result["data"] == "dns:query", result
        hit = t.listeners.next()
        assert (hit.kind, hit.data) == ("dns", b"query")


@pytest.mark.parametrize(("dst", "port"), [("198.51.100.53", 53), ("2001:db8::53", 53),
                                           ("198.51.100.53", 9999), ("127.0.0.11", 9999)])
def test_udp_elsewhere_fails_in_agent_netns(t: Topology, dst: str, port: int) -> None:
    # docs/architecture.md §6 check 5: DNS goes to the proxy only
    result = probe(t, "udp", dst, port)
    if dst.startswith("127."):  # loopback is the agent's own: nothing listens there
        assert result["ok"] is False, result
        assert isinstance(result["elapsed"], float)
        assert result["elapsed"] < 1.0, result
    else:
        refused_fast(result, "EPERM")  # refused on the way out: send() fails
    assert t.listeners.drain() == []


def test_proxy_side_table_alone(t: Topology) -> None:
    """Without the agent's table, the host table still redirects DNS to any address, refuses
    other UDP, keeps host services on other interfaces out of reach, and forwards nothing."""
    assert nft.remove(AGENT_TABLE, netns=t.link.netns) is True
    result = probe(t, "udp", "198.51.100.53", 53)
    assert result["data"] == "dns:query", result
    assert t.listeners.next().kind == "dns"
    for host in t.hosts:
        # ICMP admin-prohibited from the host: EHOSTUNREACH for IPv4, EACCES for IPv6
        refused_fast(probe(t, "udp", host, 9999), "EHOSTUNREACH", "EACCES")
    refused_fast(probe(t, "tcp", str(t.link.host_v4.ip), 22))
    other = _other_host_ipv4(t)
    if other is not None:  # a listen port on another of the host's addresses: refused
        with socket.create_server((str(other), 0)) as srv:
            port = srv.getsockname()[1]
            proxy = ProxySideRuleset(**{**_fields(t.proxy),  # type: ignore[arg-type]
                                        "listen_ports": t.proxy.listen_ports | {port}})
            nft.apply(proxy)
            refused_fast(probe(t, "tcp", str(other), port))
            assert probe(t, "tcp", str(t.link.host_v4.ip), t.explicit_port)["ok"] is True
            assert t.listeners.next().kind == "explicit"
    # netns.create turned IPv4 forwarding off on the host end; turn it on, as a host with
    # ip_forward=1 and a careless default would, to prove the forward chain alone holds.
    knob = f"/proc/sys/net/ipv4/conf/{t.link.host_if}/forwarding"
    before = _forward_drops()
    _write(knob, "1")
    try:
        for kind, dst, port in (("tcp", "198.51.100.7", 8080), ("udp", "198.51.100.53", 9999),
                                ("tcp", "2001:db8::7", 8080)):  # routed, never redirected
            result = probe(t, kind, dst, port, timeout=0.3)
            assert result["ok"] is False, result
    finally:
        _write(knob, "0")
    if _read("/proc/sys/net/ipv4/ip_forward") == "1":
        assert _forward_drops() > before  # dropped by our forward chain, not by luck
    assert t.listeners.drain() == []


def _fields(r: ProxySideRuleset | AgentRuleset) -> dict[str, object]:
    return {name: getattr(r, name) for name in r.__dataclass_fields__}


def _other_host_ipv4(t: Topology) -> IPv4Address | None:
    """The host's own source address towards the outside (not on the veth), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("203.0.113.1", 9))  # no packet is sent: this only picks a route
        except OSError:
            return None
        ip = IPv4Address(s.getsockname()[0])
    return None if ip == t.link.host_v4.ip or ip.is_loopback else ip


def _read(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read().strip()


def _write(path: str, value: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(value)


def _forward_drops() -> int:
    done = subprocess.run(["nft", "-j", "list", "chain", "inet", HOST_TABLE, "forward"],
                          capture_output=True, text=True, timeout=10, check=True)
    total = 0
    for obj in json.loads(done.stdout)["nftables"]:
        for stmt in obj.get("rule", {}).get("expr", []):
            if "counter" in stmt:
                total += int(stmt["counter"]["packets"])
    return total


def test_unprivileged_process_cannot_undo_the_rules(t: Topology) -> None:
    for argv in (["nft", "flush", "ruleset"], ["ip", "route", "del", "default"],
                 ["ip", "-6", "route", "del", "default"], ["ip", "link", "set", "eth0", "down"]):
        done = in_agent(t, *argv, user=True)
        assert done.returncode != 0, (argv, done.stdout)
        assert "ermission" in done.stderr or "ermitted" in done.stderr, (argv, done.stderr)
    nft.verify(t.agent, netns=t.link.netns)
    assert f"via {t.link.host_v4.ip}" in in_agent(t, "ip", "route", "show", "default").stdout
    refused_fast(probe(t, "tcp", "198.51.100.7", 22))


@pytest.mark.parametrize("tamper", [
    ["add", "rule", "inet", AGENT_TABLE, "output", "tcp", "dport", "22", "accept"],
    ["insert", "rule", "inet", AGENT_TABLE, "output", "accept"],
    ["chain", "inet", AGENT_TABLE, "output", "{ policy accept ; }"],
    ["delete", "chain", "inet", AGENT_TABLE, "input"],
    ["add", "chain", "inet", AGENT_TABLE, "extra"],
    "replace-tcp-ports",
])
def test_verify_fails_after_tampering(t: Topology, tamper: list[str] | str) -> None:
    nft.verify(t.agent, netns=t.link.netns)
    if tamper == "replace-tcp-ports":  # same rule count, one more port accepted
        handle = _handle(t, "output", "443")
        argv = ["replace", "rule", "inet", AGENT_TABLE, "output", "handle", str(handle),
                "meta", "l4proto", "tcp", "th", "dport", "{ 22, 80, 443 }", "accept"]
    else:
        assert isinstance(tamper, list)
        argv = list(tamper)
        if argv[:2] == ["delete", "chain"]:  # a base chain with rules: flush it first
            assert in_agent(t, "nft", "flush", "chain", "inet", AGENT_TABLE, "input"
                            ).returncode == 0
    done = in_agent(t, "nft", *argv)
    assert done.returncode == 0, done.stderr
    with pytest.raises(NetfilterError, match=f"inet {AGENT_TABLE}"):
        nft.verify(t.agent, netns=t.link.netns)
    t.apply()
    nft.verify(t.agent, netns=t.link.netns)


def _handle(t: Topology, chain: str, needle: str) -> int:
    done = in_agent(t, "nft", "-a", "list", "chain", "inet", AGENT_TABLE, chain)
    for line in done.stdout.splitlines():
        if needle in line and "# handle" in line:
            return int(line.rsplit("# handle", 1)[1])
    raise AssertionError(f"no rule with {needle!r} in {done.stdout}")


def test_counters_record_refused_port_22(t: Topology) -> None:
    for _ in range(2):
        refused_fast(probe(t, "tcp", "198.51.100.9", 22))
    refused_fast(probe(t, "tcp", "2001:db8::9", 22))
    refused_fast(probe(t, "udp", "198.51.100.9", 9999), "EPERM")
    rows = nft.counters(AGENT_TABLE, netns=t.link.netns)
    assert {"dst": "198.51.100.9", "proto": "tcp", "port": 22, "count": 2} in rows
    assert {"dst": "2001:db8::9", "proto": "tcp", "port": 22, "count": 1} in rows
    assert any(r["dst"] == "198.51.100.9" and r["proto"] == "udp" and r["port"] == 9999
               for r in rows), rows
    assert not any(ip_address(str(r["dst"])).is_multicast for r in rows), rows  # no MLD noise
    counts = [r["count"] for r in rows]
    assert counts == sorted(counts, reverse=True)  # type: ignore[type-var]


def test_docker_dns_flag_refuses_127_0_0_11(t: Topology) -> None:
    agent = AgentRuleset(**{**_fields(t.agent), "docker_dns": True})  # type: ignore[arg-type]
    nft.apply(agent, netns=t.link.netns)
    nft.verify(agent, netns=t.link.netns)
    refused_fast(probe(t, "udp", "127.0.0.11", 53), "EPERM")
    assert probe(t, "udp", "127.0.0.1", 53)["error"] == "ECONNREFUSED"  # lo itself still open
    rows = nft.counters(AGENT_TABLE, netns=t.link.netns)
    assert rows == [{"dst": "127.0.0.11", "proto": "udp", "port": 53, "count": 1}]


def test_tcp_80_443_to_the_host_link_local_address_is_refused_and_counted(t: Topology) -> None:
    """Issue 20: routed TCP leaves only via the proxy's next hop; the host end's fe80::
    address is on-link, its own next hop, so the agent's table refuses it and counts it."""
    shown = subprocess.run(["ip", "-j", "-6", "addr", "show", "dev", t.link.host_if, "scope",
                            "link"], capture_output=True, text=True, check=True, timeout=10)
    infos = [a for link in json.loads(shown.stdout) for a in link.get("addr_info", [])
             if str(a.get("local", "")).startswith("fe80:")]
    if not infos:
        pytest.skip("the host end has no link-local address")
    ll = str(infos[0]["local"])
    for port in (80, 443):
        refused_fast(probe(t, "tcp", f"{ll}%{t.link.agent_if}", port))
    rows = nft.counters(AGENT_TABLE, netns=t.link.netns)
    for port in (80, 443):
        assert {"dst": ll, "proto": "tcp", "port": port, "count": 1} in rows, rows
    assert t.listeners.drain() == []


def test_apply_errors_name_the_table(t: Topology) -> None:
    with pytest.raises(NetfilterError, match="does not exist"):
        nft.apply(t.agent, netns="awf-no-such-netns")
    assert nft.remove("awf_missing", netns="awf-no-such-netns") is False
    with pytest.raises(NetfilterError, match="missing"):
        nft.verify(ProxySideRuleset(**{**_fields(t.proxy),  # type: ignore[arg-type]
                                       "table": "awf_nosuchtable"}))


def test_a_fresh_apply_refuses_a_table_that_exists_and_leaves_it(t: Topology) -> None:
    """`fresh` (a run's own new table) creates it: one that is there already fails the whole
    transaction, and the live table stays as it was."""
    nft.apply(t.agent, netns=t.link.netns)
    with pytest.raises(NetfilterError, match="could not apply"):
        nft.apply(t.agent, netns=t.link.netns, fresh=True)
    nft.verify(t.agent, netns=t.link.netns)


def test_remove_deletes_the_table(t: Topology) -> None:
    assert nft.remove(AGENT_TABLE, netns=t.link.netns) is True
    assert nft.remove(AGENT_TABLE, netns=t.link.netns) is False
    assert nft.list_tables("awf", netns=t.link.netns) == []
    with pytest.raises(NetfilterError, match="missing"):
        nft.verify(t.agent, netns=t.link.netns)


def test_ipv4_only_namespace_has_ipv6_disabled(topo: Topology) -> None:
    run = f"{RUN[:-1]}g"  # not a hex digit: never the fixture's own run id (RUN may end in 4)
    v4, _ = netns.choose_subnet(run)
    link = netns.AgentLink.for_run(run, v4, None)
    netns.create(link)
    try:
        done = subprocess.run(["ip", "netns", "exec", link.netns, "sysctl", "-n",
                               "net.ipv6.conf.all.disable_ipv6",
                               f"net.ipv6.conf.{link.agent_if}.disable_ipv6"],
                              capture_output=True, text=True, timeout=10, check=True)
        assert done.stdout.split() == ["1", "1"]
        six = subprocess.run(["ip", "netns", "exec", link.netns, sys.executable, "-I", "-c",
                              CLIENT, "tcp", "2001:db8::7", "443", "1"],
                             capture_output=True, text=True, timeout=10, check=True)
        assert json.loads(six.stdout)["ok"] is False
    finally:
        netns.destroy(link)
    assert not [n for n in netns.leftovers() if n.startswith(link.netns)]


def test_create_rolls_back_on_failure(topo: Topology) -> None:
    clash = netns.AgentLink(  # a new namespace, but the host end's name is taken
        run=f"{RUN[:-1]}x", netns=f"awf-{RUN[:-1]}x", host_if=topo.link.host_if,
        agent_if="eth0", host_v4=topo.link.host_v4, agent_v4=topo.link.agent_v4,
        host_v6=None, agent_v6=None)
    with pytest.raises(SandboxError, match=clash.netns):
        netns.create(clash)
    assert clash.netns not in netns.leftovers()
    assert topo.link.host_if in netns.leftovers()  # someone else's: left alone
    with pytest.raises(SandboxError, match="already exists"):
        netns.create(topo.link)


def test_no_leftovers_after_teardown(topo: Topology) -> None:
    """Last: tear down by hand (the fixture's teardown is idempotent) and look for traces."""
    nft.remove(HOST_TABLE)
    netns.destroy(topo.link)
    netns.destroy(topo.link)  # idempotent
    assert [n for n in netns.leftovers() if RUN[:-1] in n or n.startswith("awf-test")] == []
    assert nft.list_tables(HOST_TABLE) == []
    assert not os.path.exists(f"/run/netns/{topo.link.netns}")
    host_addrs = {str(n.network_address) for n in netns.host_networks()}
    assert topo.hosts[0] not in host_addrs
    assert topo.hosts[1] not in host_addrs

