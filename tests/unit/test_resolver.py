"""Resolver parts that need no DNS: flag parsing, A/AAAA merging, static entries."""

from __future__ import annotations

import ipaddress

import pytest

from proxy.errors import ConfigError, DnsFailure
from proxy.resolver import (
    FAILURE_TTL,
    NEGATIVE_TTL,
    Lookup,
    Outcome,
    Resolver,
    _combine,
    _Family,
    parse_dns_servers,
    parse_resolve,
)

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


@pytest.mark.parametrize(
    ("spec", "name", "ip"),
    [
        ("example.test=192.0.2.1", "example.test", V4("192.0.2.1")),
        ("Example.TEST.=192.0.2.1", "example.test", V4("192.0.2.1")),
        (" api.example.test = 2001:db8::1 ", "api.example.test", V6("2001:db8::1")),
        ("v6.test=[2001:db8::2]", "v6.test", V6("2001:db8::2")),
        ("bücher.test=192.0.2.3", "xn--bcher-kva.test", V4("192.0.2.3")),
        ("_svc.example.test=::1", "_svc.example.test", V6("::1")),
    ],
)
def test_parse_resolve(spec: str, name: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address):
    assert parse_resolve(spec) == (name, ip)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("example.test", "expected NAME=IP"),
        ("=192.0.2.1", "expected NAME=IP"),
        ("example.test=", "expected NAME=IP"),
        ("exa mple.test=192.0.2.1", "not a valid hostname"),
        ("a..b=192.0.2.1", "not a valid hostname"),
        ("example.test=192.0.2", "not an IPv4 or IPv6 address"),
        ("example.test=999.0.2.1", "not an IPv4 or IPv6 address"),
        ("example.test=example.org", "not an IPv4 or IPv6 address"),
        ("example.test=fe80::1%eth0", "not an IPv4 or IPv6 address"),
        ("example.test=[192.0.2.1", "not an IPv4 or IPv6 address"),
    ],
)
def test_parse_resolve_rejects(spec: str, fragment: str):
    with pytest.raises(ConfigError, match="--resolve") as info:
        parse_resolve(spec)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert repr(spec) in message


@pytest.mark.parametrize(
    ("spec", "servers"),
    [
        ("1.1.1.1", (("1.1.1.1", 53),)),
        (
            "1.1.1.1,127.0.0.1:5353,[2606:4700::1111]:53,::1",
            (("1.1.1.1", 53), ("127.0.0.1", 5353), ("2606:4700::1111", 53), ("::1", 53)),
        ),
        (" 9.9.9.9 , [::1]", (("9.9.9.9", 53), ("::1", 53))),
        ("[2001:DB8::0001]:5300", (("2001:db8::1", 5300),)),
        ("1.1.1.1,1.1.1.1:53", (("1.1.1.1", 53),)),  # duplicates collapse
    ],
)
def test_parse_dns_servers(spec: str, servers: tuple[tuple[str, int], ...]):
    assert parse_dns_servers(spec) == servers


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "1.1.1.1,",
        "dns.google",
        "1.1.1.1:0",
        "1.1.1.1:65536",
        "1.1.1.1:port",
        "1.1.1.1:+53",
        "1.1.1.1:",
        "[1.1.1.1]:53",
        "[::1",
        "[::1]53",
        "[::1]:",
        "::1:53:x",
        "fe80::1%eth0",
        "1.1.1",
    ],
)
def test_parse_dns_servers_rejects(spec: str):
    with pytest.raises(ConfigError, match="--dns-servers") as info:
        parse_dns_servers(spec)
    assert "\n" not in str(info.value)


def ok(*ips: str, ttl: float = 30.0) -> _Family:
    return _Family(Outcome.OK, tuple(ipaddress.ip_address(i) for i in ips), ttl)


def test_combine_orders_a_first_and_dedups():
    v4, v6 = ok("192.0.2.1", "192.0.2.1", ttl=20), ok("::1", ttl=40)
    lookup, cache_for = _combine("x.test", v4, v6, 60)
    assert lookup.addresses == (V4("192.0.2.1"), V6("::1"))
    assert lookup.outcome is Outcome.OK
    assert cache_for == 20


def test_combine_caps_ttl():
    _lookup, cache_for = _combine("x.test", ok("192.0.2.1", ttl=3600), _Family(Outcome.NODATA), 60)
    assert cache_for == 60


def test_combine_partial_failure_is_cached_briefly():
    lookup, cache_for = _combine("x.test", ok("192.0.2.1", ttl=300), _Family(Outcome.TIMEOUT), 60)
    assert lookup.addresses == (V4("192.0.2.1"),)
    assert cache_for == NEGATIVE_TTL


@pytest.mark.parametrize(
    ("v4", "v6", "outcome", "cache_for"),
    [
        (Outcome.NXDOMAIN, Outcome.NXDOMAIN, Outcome.NXDOMAIN, NEGATIVE_TTL),
        (Outcome.NODATA, Outcome.NODATA, Outcome.NODATA, NEGATIVE_TTL),
        (Outcome.NODATA, Outcome.TIMEOUT, Outcome.TIMEOUT, FAILURE_TTL),
        (Outcome.SERVFAIL, Outcome.TIMEOUT, Outcome.SERVFAIL, FAILURE_TTL),
        (Outcome.NXDOMAIN, Outcome.SERVFAIL, Outcome.NXDOMAIN, NEGATIVE_TTL),
    ],
)
def test_combine_failures(v4: Outcome, v6: Outcome, outcome: Outcome, cache_for: float):
    lookup, cached = _combine("x.test", _Family(v4), _Family(v6), 60)
    assert lookup.outcome is outcome
    assert lookup.addresses == ()
    assert cached == cache_for


def test_failure_message():
    failure = Lookup("x.test", Outcome.NXDOMAIN).failure()
    assert isinstance(failure, DnsFailure)
    assert str(failure) == "cannot resolve 'x.test': NXDOMAIN"
    assert failure.reason == "dns_failure"


async def test_static_entries_need_no_dns():
    # Port 9 (discard) on loopback: any query would time out, so a hit proves the static path.
    resolver = Resolver(
        static={"static.test": [V4("192.0.2.7"), V6("2001:db8::7"), V4("192.0.2.7")]},
        servers=[("127.0.0.1", 9)],
        timeout=0.2,
    )
    assert await resolver.resolve("static.test") == (V4("192.0.2.7"), V6("2001:db8::7"))
    lookup = await resolver.lookup("static.test")
    assert lookup.outcome is Outcome.OK


def test_empty_server_list_is_a_config_error():
    with pytest.raises(ConfigError, match="no servers"):
        Resolver(servers=[])
