"""The Resolver against a real DNS server on loopback (tests/dns_stub.py) that counts queries."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator

import pytest

from proxy.errors import DnsFailure
from proxy.resolver import FAILURE_TTL, NEGATIVE_TTL, Outcome, Resolver
from tests.dns_stub import StubDns, Zone

pytestmark = pytest.mark.integration

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


BOTH = (V4("192.0.2.1"), V4("192.0.2.2"), V6("2001:db8::1"))


def a_then_aaaa(ips: tuple[object, ...]) -> bool:
    """BOTH's addresses, A records first (a server may order records within a set as it likes)."""
    return set(ips[:2]) == set(BOTH[:2]) and ips[2:] == BOTH[2:]


def zone() -> Zone:
    return Zone(
        records={
            "both.test": {"A": ["192.0.2.1", "192.0.2.2"], "AAAA": ["2001:db8::1"]},
            "v4.test": {"A": ["192.0.2.4"]},
            "v6.test": {"AAAA": ["2001:db8::6"]},
            "long.test": {"A": ["192.0.2.9"]},
            "txt.test": {"TXT": ['"hello"']},
            "alias.test": {"CNAME": ["target.test"]},
            "target.test": {"A": ["192.0.2.10"]},
            "big.test": {"A": ["192.0.2.11"]},
        },
        ttl={"both.test": 30, "long.test": 3600, "alias.test": 10, "target.test": 100},
        silent={"silent.test"},
        servfail={"broken.test"},
        truncate={"big.test"},
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def stub() -> AsyncIterator[StubDns]:
    server = StubDns(zone())
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def resolver(stub: StubDns, clock: Clock) -> Resolver:
    return Resolver(servers=[stub.address], timeout=2.0, clock=clock)


async def test_a_then_aaaa(resolver: Resolver, stub: StubDns):
    async with asyncio.timeout(10):
        ips = await resolver.resolve("both.test")
    assert a_then_aaaa(ips)
    assert stub.counts == {("both.test", "A"): 1, ("both.test", "AAAA"): 1}


@pytest.mark.parametrize(
    ("name", "ips"),
    [("v4.test", (V4("192.0.2.4"),)), ("v6.test", (V6("2001:db8::6"),))],
)
async def test_one_family(resolver: Resolver, name: str, ips: tuple[object, ...]):
    async with asyncio.timeout(10):
        assert await resolver.resolve(name) == ips


async def test_cname_chain_uses_smallest_ttl(resolver: Resolver, stub: StubDns, clock: Clock):
    async with asyncio.timeout(10):
        assert await resolver.resolve("alias.test") == (V4("192.0.2.10"),)
        clock.now += 9.5
        await resolver.resolve("alias.test")
        assert stub.counts[("alias.test", "A")] == 1
        clock.now += 1.0  # past the CNAME's 10 s, though the A record says 100 s
        await resolver.resolve("alias.test")
        assert stub.counts[("alias.test", "A")] == 2


async def test_cache_and_ttl_expiry(resolver: Resolver, stub: StubDns, clock: Clock):
    async with asyncio.timeout(10):
        first = await resolver.resolve("both.test")
        clock.now += 29.0
        assert await resolver.resolve("both.test") is first
        lookup = await resolver.lookup("both.test")
        assert lookup.ttl == pytest.approx(1.0)
        assert stub.counts[("both.test", "A")] == 1
        clock.now += 1.5
        assert a_then_aaaa(await resolver.resolve("both.test"))
        assert stub.counts[("both.test", "A")] == 2
        assert stub.counts[("both.test", "AAAA")] == 2


async def test_ttl_capped_by_max_ttl(resolver: Resolver, stub: StubDns, clock: Clock):
    async with asyncio.timeout(10):
        await resolver.resolve("long.test")
        clock.now += 59.0
        await resolver.resolve("long.test")
        assert stub.counts[("long.test", "A")] == 1
        clock.now += 2.0
        await resolver.resolve("long.test")
        assert stub.counts[("long.test", "A")] == 2


async def test_cache_clear(resolver: Resolver, stub: StubDns):
    async with asyncio.timeout(10):
        await resolver.resolve("v4.test")
        resolver.cache_clear()
        await resolver.resolve("v4.test")
    assert stub.counts[("v4.test", "A")] == 2


async def test_single_flight(resolver: Resolver, stub: StubDns):
    stub.gate.clear()  # hold every answer until all callers are waiting
    async with asyncio.timeout(10):
        tasks = [asyncio.create_task(resolver.resolve("both.test")) for _ in range(100)]
        while stub.total() < 2:
            await asyncio.sleep(0.01)
        for _ in range(10):
            await asyncio.sleep(0)  # let every caller reach the shared lookup
        stub.gate.set()
        results = await asyncio.gather(*tasks)
    assert len(set(results)) == 1
    assert a_then_aaaa(results[0])
    assert stub.counts == {("both.test", "A"): 1, ("both.test", "AAAA"): 1}


async def test_cancelled_caller_does_not_cancel_others(resolver: Resolver, stub: StubDns):
    stub.gate.clear()
    async with asyncio.timeout(10):
        first = asyncio.create_task(resolver.resolve("both.test"))
        second = asyncio.create_task(resolver.resolve("both.test"))
        while stub.total() < 2:
            await asyncio.sleep(0.01)
        first.cancel()
        stub.gate.set()
        assert len(await second) == 3
        with pytest.raises(asyncio.CancelledError):
            await first
    assert stub.counts[("both.test", "A")] == 1


async def test_nxdomain_is_dns_failure_and_cached(resolver: Resolver, stub: StubDns, clock: Clock):
    async with asyncio.timeout(10):
        with pytest.raises(DnsFailure, match=r"^cannot resolve 'missing\.test': NXDOMAIN$"):
            await resolver.resolve("missing.test")
        with pytest.raises(DnsFailure):
            await resolver.resolve("missing.test")
        assert stub.counts[("missing.test", "A")] == 1
        clock.now += NEGATIVE_TTL + 0.1
        with pytest.raises(DnsFailure):
            await resolver.resolve("missing.test")
        assert stub.counts[("missing.test", "A")] == 2


async def test_no_addresses(resolver: Resolver):
    async with asyncio.timeout(10):
        with pytest.raises(DnsFailure, match=r"'txt\.test': no addresses"):
            await resolver.resolve("txt.test")
        assert (await resolver.lookup("txt.test")).outcome is Outcome.NODATA


async def test_servfail_is_cached_briefly(resolver: Resolver, stub: StubDns, clock: Clock):
    """A burst of requests to a name whose DNS fails costs one query, and it is asked again soon."""
    async with asyncio.timeout(10):
        for _ in range(3):
            with pytest.raises(DnsFailure, match=r"'broken\.test': SERVFAIL"):
                await resolver.resolve("broken.test")
        assert stub.counts[("broken.test", "A")] == 1
        clock.now += FAILURE_TTL + 0.1
        with pytest.raises(DnsFailure, match=r"'broken\.test': SERVFAIL"):
            await resolver.resolve("broken.test")
        assert stub.counts[("broken.test", "A")] == 2


async def test_timeout_is_cached_briefly(stub: StubDns):
    resolver = Resolver(servers=[stub.address], timeout=0.5)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(5):
        with pytest.raises(DnsFailure, match=r"'silent\.test': timeout"):
            await resolver.resolve("silent.test")
        start = loop.time()
        with pytest.raises(DnsFailure, match=r"'silent\.test': timeout"):
            await resolver.resolve("silent.test")
    assert loop.time() - start < 0.1


async def test_refusing_server_fails_at_once():
    """ICMP port unreachable ends the lookup at once, not after the resolver timeout."""
    resolver = Resolver(servers=[("127.0.0.1", 9)], timeout=5.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.timeout(10):
        with pytest.raises(DnsFailure, match=r"cannot resolve 'v4\.test'"):
            await resolver.resolve("v4.test")
    assert loop.time() - start < 1.0


async def test_truncated_answer_is_asked_again_over_tcp(resolver: Resolver, stub: StubDns):
    async with asyncio.timeout(10):
        assert await resolver.resolve("big.test") == (V4("192.0.2.11"),)
    assert stub.counts[("big.test", "A")] == 2  # UDP (truncated), then TCP


async def test_timeout(stub: StubDns):
    resolver = Resolver(servers=[stub.address], timeout=0.5)
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.timeout(5):
        with pytest.raises(DnsFailure, match=r"'silent\.test': timeout"):
            await resolver.resolve("silent.test")
    assert loop.time() - start < 2.5


async def test_dead_first_server_falls_back_to_second(stub: StubDns):
    # Port 9 on loopback: nothing listens, the UDP query gets ICMP port unreachable.
    resolver = Resolver(servers=[("127.0.0.1", 9), stub.address], timeout=3.0)
    async with asyncio.timeout(10):
        assert await resolver.resolve("v4.test") == (V4("192.0.2.4"),)


async def test_unreachable_server_is_dns_failure():
    resolver = Resolver(servers=[("127.0.0.1", 9)], timeout=0.5)
    async with asyncio.timeout(5):
        with pytest.raises(DnsFailure, match=r"cannot resolve 'v4\.test'"):
            await resolver.resolve("v4.test")
