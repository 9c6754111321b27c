"""The DNS forwarder over real UDP and TCP sockets, in front of a counting stub upstream."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest

from proxy.dnsfwd import DnsForwarder
from proxy.policy import Policy
from proxy.resolver import Resolver
from tests.dns_stub import StubDns, Zone

pytestmark = pytest.mark.integration

TIMEOUT = 3.0

ZONE = Zone(
    records={
        "allowed.test": {"A": ["192.0.2.1"], "AAAA": ["2001:db8::1"], "TXT": ['"t"']},
        "internal.allowed.test": {"A": ["10.0.0.5"]},
        "mixed.allowed.test": {"A": ["10.0.0.6", "192.0.2.6"]},
        "many.allowed.test": {"A": [f"192.0.2.{i}" for i in range(1, 101)]},
        "denied.test": {"A": ["192.0.2.66"]},
        "blocked.allowed.test": {"A": ["192.0.2.77"]},
    },
    silent={"slow.allowed.test"},
)


def policy(*ranges: str) -> Policy:
    return Policy.build(
        allow_domains=["allowed.test"],
        block_domains=["blocked.allowed.test"],
        allow_ranges=list(ranges),
    )


@dataclass
class Rig:
    stub: StubDns
    forwarder: DnsForwarder
    address: tuple[str, int]
    logs: list[Mapping[str, object]] = field(default_factory=list)
    policy: Policy = field(default_factory=policy)

    async def udp(self, name: str, rdtype: str = "A", **kw: object) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
        host, port = self.address
        return await dns.asyncquery.udp(q, host, port=port, timeout=TIMEOUT)

    async def tcp(self, name: str, rdtype: str = "A", **kw: object) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
        host, port = self.address
        return await dns.asyncquery.tcp(q, host, port=port, timeout=TIMEOUT)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    stub = StubDns(ZONE)
    await stub.start()
    logs: list[Mapping[str, object]] = []
    holder: list[Policy] = [policy()]
    forwarder = DnsForwarder(
        policy_ref=lambda: holder[0],
        resolver=Resolver(servers=[stub.address], timeout=0.5),
        log=logs.append,
        local_answers={"awf-proxy": [ipaddress.ip_address("172.30.0.10")]},
        clock=lambda: 1_795_464_001.5,
    )
    try:
        address = await forwarder.start("127.0.0.1", 0)
        r = Rig(stub, forwarder, address, logs)
        yield r
    finally:
        await forwarder.close()
        await stub.close()


def ede(msg: dns.message.Message) -> list[tuple[int, str | None]]:
    return [(int(o.code), o.text) for o in msg.options if isinstance(o, dns.edns.EDEOption)]


def addresses(msg: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in msg.answer for rd in rrset}


async def test_binds_udp_and_tcp_on_one_port(rig: Rig):
    host, port = rig.address
    assert host == "127.0.0.1"
    assert port > 0
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s,
        pytest.raises(OSError, match="in use"),
    ):
        s.bind((host, port))
    async with asyncio.timeout(TIMEOUT):
        _reader, writer = await asyncio.open_connection(host, port)  # TCP on the same port
    writer.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_allowed_name(rig: Rig, transport: str):
    ask = rig.udp if transport == "udp" else rig.tcp
    a = await ask("Allowed.Test", "A")
    assert a.rcode() == dns.rcode.NOERROR
    assert addresses(a) == {"192.0.2.1"}
    assert 0 < a.answer[0].ttl <= 60
    aaaa = await ask("allowed.test", "AAAA")
    assert addresses(aaaa) == {"2001:db8::1"}
    # A and AAAA share one resolver lookup and its cache.
    assert rig.stub.counts == {("allowed.test", "A"): 1, ("allowed.test", "AAAA"): 1}


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(
    ("name", "reason"),
    [("denied.test", "domain_not_allowed"), ("blocked.allowed.test", "domain_blocked"),
     ("x.blocked.allowed.test", "domain_blocked"), ("10.0.0.5", "ip_literal")],
)
async def test_denied_name_is_blocked_without_upstream_query(
    rig: Rig, transport: str, name: str, reason: str
):
    ask = rig.udp if transport == "udp" else rig.tcp
    for rdtype in ("A", "AAAA", "TXT", "HTTPS"):
        reply = await ask(name, rdtype, use_edns=0)
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert reply.answer == []
        assert ede(reply) == [(15, reason)]
    assert rig.stub.total() == 0


async def test_denied_without_edns_is_plain_nxdomain(rig: Rig):
    reply = await rig.udp("denied.test", "A", use_edns=False)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.edns < 0
    assert rig.stub.total() == 0


async def test_other_types_need_no_upstream(rig: Rig):
    for rdtype in ("TXT", "MX", "HTTPS", "ANY"):
        reply = await rig.udp("allowed.test", rdtype)
        assert reply.rcode() == dns.rcode.NOERROR
        assert reply.answer == []
    assert rig.stub.total() == 0


async def test_private_answer_is_nxdomain(rig: Rig):
    reply = await rig.udp("internal.allowed.test", "A", use_edns=0)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert ede(reply) == [(15, "denied_address")]
    assert rig.stub.counts[("internal.allowed.test", "A")] == 1


async def test_allow_range_admits_private_answer():
    stub = StubDns(ZONE)
    await stub.start()
    forwarder = DnsForwarder(
        policy_ref=lambda: policy("10.0.0.0/8"),
        resolver=Resolver(servers=[stub.address], timeout=0.5),
        log=lambda _rec: None,
    )
    try:
        host, port = await forwarder.start("127.0.0.1", 0)
        q = dns.message.make_query("internal.allowed.test", "A")
        reply = await dns.asyncquery.udp(q, host, port=port, timeout=TIMEOUT)
        assert reply.rcode() == dns.rcode.NOERROR
        assert addresses(reply) == {"10.0.0.5"}
    finally:
        await forwarder.close()
        await stub.close()


async def test_mixed_answer_is_filtered(rig: Rig):
    reply = await rig.tcp("mixed.allowed.test")
    assert addresses(reply) == {"192.0.2.6"}


async def test_upstream_nxdomain_and_timeout(rig: Rig):
    gone = await rig.udp("gone.allowed.test")
    assert gone.rcode() == dns.rcode.NXDOMAIN
    assert ede(gone) == []
    slow = await rig.tcp("slow.allowed.test")
    assert slow.rcode() == dns.rcode.SERVFAIL


async def test_local_answer(rig: Rig):
    reply = await rig.udp("awf-proxy", "A")
    assert addresses(reply) == {"172.30.0.10"}
    assert (await rig.udp("awf-proxy", "AAAA")).answer == []
    assert rig.stub.total() == 0


async def test_policy_is_read_per_query():
    stub = StubDns(ZONE)
    await stub.start()
    holder = [policy()]
    forwarder = DnsForwarder(
        policy_ref=lambda: holder[0],
        resolver=Resolver(servers=[stub.address], timeout=0.5),
        log=lambda _rec: None,
    )
    try:
        host, port = await forwarder.start("127.0.0.1", 0)
        q = dns.message.make_query("denied.test", "A")
        first = await dns.asyncquery.udp(q, host, port=port, timeout=TIMEOUT)
        assert first.rcode() == dns.rcode.NXDOMAIN
        holder[0] = Policy.build(allow_domains=["denied.test"])  # what SIGHUP does
        second = await dns.asyncquery.udp(q, host, port=port, timeout=TIMEOUT)
        assert addresses(second) == {"192.0.2.66"}
    finally:
        await forwarder.close()
        await stub.close()


async def test_udp_truncation_then_tcp(rig: Rig):
    udp = await rig.udp("many.allowed.test", "A")
    assert udp.flags & dns.flags.TC
    assert 0 < len(addresses(udp)) < 100
    tcp = await rig.tcp("many.allowed.test", "A")
    assert not tcp.flags & dns.flags.TC
    assert len(addresses(tcp)) == 100


async def test_malformed_udp_gets_refused(rig: Rig):
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        await loop.sock_connect(s, rig.address)
        await loop.sock_sendall(s, b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05junk")
        async with asyncio.timeout(TIMEOUT):
            data = await loop.sock_recv(s, 512)
    reply = dns.message.from_wire(data)
    assert reply.id == 0xABCD
    assert reply.rcode() == dns.rcode.REFUSED
    assert rig.logs[-1]["rcode"] == "REFUSED"
    assert rig.logs[-1]["reason"] == "bad_request"


async def test_tcp_several_queries_per_connection(rig: Rig):
    names = ["allowed.test", "denied.test", "awf-proxy", "mixed.allowed.test"]
    queries = [dns.message.make_query(n, "A") for n in names]
    reader, writer = await asyncio.open_connection(*rig.address)
    try:
        writer.write(b"".join(q.to_wire(prepend_length=True) for q in queries))  # pipelined
        await writer.drain()
        replies = []
        async with asyncio.timeout(TIMEOUT):
            for _ in queries:
                size = int.from_bytes(await reader.readexactly(2), "big")
                replies.append(dns.message.from_wire(await reader.readexactly(size)))
    finally:
        writer.close()
    assert [r.id for r in replies] == [q.id for q in queries]
    assert [dns.rcode.to_text(r.rcode()) for r in replies] == [
        "NOERROR", "NXDOMAIN", "NOERROR", "NOERROR"]
    assert addresses(replies[3]) == {"192.0.2.6"}


async def test_tcp_bad_framing_closes_only_that_connection(rig: Rig):
    reader, writer = await asyncio.open_connection(*rig.address)
    try:
        writer.write(b"\x00\x05abc")  # promises 5 bytes, sends 3, then half-closes
        writer.write_eof()
        async with asyncio.timeout(TIMEOUT):
            assert await reader.read() == b""
    finally:
        writer.close()
    assert (await rig.tcp("allowed.test")).rcode() == dns.rcode.NOERROR


async def test_log_records(rig: Rig):
    await rig.udp("allowed.test", "A")
    await rig.udp("denied.test", "AAAA")
    allowed, denied = rig.logs
    assert list(allowed) == [
        "ts", "client", "qname", "qtype", "decision", "reason", "rcode", "answers"]
    assert allowed["ts"] == "2026-11-23T20:00:01.500Z"
    assert str(allowed["client"]).startswith("127.0.0.1:")
    assert (allowed["qname"], allowed["qtype"], allowed["decision"], allowed["reason"],
            allowed["rcode"], allowed["answers"]) == (
        "allowed.test", "A", "allow", None, "NOERROR", ["192.0.2.1"])
    assert (denied["qname"], denied["qtype"], denied["decision"], denied["reason"],
            denied["rcode"], denied["answers"]) == (
        "denied.test", "AAAA", "deny", "domain_not_allowed", "NXDOMAIN", [])


async def test_many_concurrent_udp_queries_share_one_lookup(rig: Rig):
    rig.stub.gate.clear()
    tasks = [asyncio.create_task(rig.udp("mixed.allowed.test")) for _ in range(50)]
    async with asyncio.timeout(TIMEOUT):
        while rig.stub.total() < 2:
            await asyncio.sleep(0.01)
    rig.stub.gate.set()
    async with asyncio.timeout(TIMEOUT):
        replies = await asyncio.gather(*tasks)
    assert all(addresses(r) == {"192.0.2.6"} for r in replies)
    assert rig.stub.counts[("mixed.allowed.test", "A")] == 1


async def test_close_stops_listening():
    forwarder = DnsForwarder(
        policy_ref=policy,
        resolver=Resolver(servers=[("127.0.0.1", 9)], timeout=0.5),
        log=lambda _rec: None,
    )
    host, port = await forwarder.start("127.0.0.1", 0)
    await forwarder.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(host, port)


async def test_ipv6_loopback():
    if not socket.has_ipv6:
        pytest.fail("IPv6 is unavailable on this host")
    forwarder = DnsForwarder(
        policy_ref=policy,
        resolver=Resolver(servers=[("127.0.0.1", 9)], timeout=0.5),
        log=lambda _rec: None,
    )
    try:
        host, port = await forwarder.start("::1", 0)
        assert host == "::1"
        q = dns.message.make_query("denied.test", "A", use_edns=0)
        udp = await dns.asyncquery.udp(q, "::1", port=port, timeout=TIMEOUT)
        tcp = await dns.asyncquery.tcp(q, "::1", port=port, timeout=TIMEOUT)
        assert ede(udp) == ede(tcp) == [(15, "domain_not_allowed")]
    finally:
        await forwarder.close()


async def test_port_in_use_is_a_config_error(rig: Rig):
    from proxy.errors import ConfigError

    other = DnsForwarder(policy_ref=policy, resolver=Resolver(servers=[("127.0.0.1", 9)]),
                         log=lambda _rec: None)
    with pytest.raises(ConfigError, match=r"--dns-listen 127\.0\.0\.1:\d+: cannot bind UDP"):
        await other.start(*rig.address)
    await other.close()


# --- the exfiltration budget (issue 20) ------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_long_subdomain_of_allowed_name_is_refused_without_upstream(rig: Rig, transport: str):
    """A 240-character subdomain of an allowed name (four 59-character labels) used to be
    looked up upstream, carrying ~230 bytes to the allowed domain's nameservers."""
    name = ".".join(["d" * 59] * 4) + ".allowed.test"
    assert len(name) > 240
    ask = rig.udp if transport == "udp" else rig.tcp
    reply = await ask(name, "A")
    assert reply.rcode() == dns.rcode.REFUSED
    assert rig.stub.total() == 0
    assert rig.logs[-1]["decision"] == "deny"
    assert rig.logs[-1]["reason"] == "name_too_long"
    assert rig.logs[-1]["rcode"] == "REFUSED"
    assert rig.logs[-1]["qname"] == name
    short = await ask("x" * 60 + ".allowed.test", "A")  # 73 characters: under the default 100
    assert short.rcode() != dns.rcode.REFUSED


async def test_distinct_subdomains_past_the_budget_are_refused():
    stub = StubDns(ZONE)
    await stub.start()
    logs: list[Mapping[str, object]] = []
    now = [1000.0]
    fwd = DnsForwarder(
        policy_ref=policy,
        resolver=Resolver(servers=[stub.address], timeout=0.5),
        log=logs.append,
        subdomain_budget=3,
        monotonic=lambda: now[0],
    )
    try:
        host, port = await fwd.start("127.0.0.1", 0)

        async def ask(name: str) -> dns.message.Message:
            q = dns.message.make_query(name, "A")
            return await dns.asyncquery.udp(q, host, port=port, timeout=TIMEOUT)

        for i in range(3):
            assert (await ask(f"s{i}.allowed.test")).rcode() == dns.rcode.NXDOMAIN  # upstream's
        asked = stub.total()
        over = await ask("s3.allowed.test")
        assert over.rcode() == dns.rcode.REFUSED
        assert stub.total() == asked  # never went upstream
        assert logs[-1]["reason"] == "dns_budget"
        assert logs[-1]["qname"] == "s3.allowed.test"
        assert (await ask("s0.allowed.test")).rcode() != dns.rcode.REFUSED  # counted already
        now[0] += 61
        assert (await ask("s3.allowed.test")).rcode() != dns.rcode.REFUSED  # the window moved
    finally:
        await fwd.close()
        await stub.close()
