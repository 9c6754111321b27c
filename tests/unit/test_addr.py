"""IP literal spellings (docs/proxy.md §3), embedded IPv4 and denied ranges (docs/proxy.md §4)."""

from __future__ import annotations

import ipaddress

import pytest

from proxy.addr import AddressSet, IPAddress, embedded_ipv4, is_denied_address, parse_ip_literal
from proxy.errors import ConfigError

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
LOOPBACK = V4("127.0.0.1")


@pytest.mark.parametrize("host", [
    "127.0.0.1",
    "127.1",
    "127.0.1",
    "0x7f.0.0.1",
    "0X7F.0.0.1",
    "0x7F.1",
    "0x7f.0x0.0x0.0x1",
    "0177.0.0.1",
    "0177.1",
    "00000177.0.0.01",
    "2130706433",
    "0x7f000001",
    "0x00007f000001",
    "017700000001",
    "127.0.0.1.",             # one trailing dot, as for names
    " 127.0.0.1 ",
    "\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11",  # full-width, mapped by UTS 46
])
def test_ipv4_spellings_of_loopback(host: str) -> None:
    assert parse_ip_literal(host) == LOOPBACK


@pytest.mark.parametrize(("host", "expected"), [
    ("[::1]", V6("::1")),
    ("::1", V6("::1")),
    ("[0:0::1]", V6("::1")),
    ("[0000:0000:0000:0000:0000:0000:0000:0001]", V6("::1")),
    ("[::1%lo]", V6("::1")),
    ("[::1%25lo]", V6("::1")),
    ("::1%lo", V6("::1")),
    ("[fe80::1%25eth0]", V6("fe80::1")),
    ("[::ffff:127.0.0.1]", V6("::ffff:7f00:1")),
    ("[::FFFF:7F00:1]", V6("::ffff:7f00:1")),
    ("[2001:DB8::1]", V6("2001:db8::1")),
    ("0.0.0.0", V4("0.0.0.0")),
    ("0", V4("0.0.0.0")),
    ("255.255.255.255", V4("255.255.255.255")),
    ("4294967295", V4("255.255.255.255")),
    ("1.2.3", V4("1.2.0.3")),             # the last part fills the remaining bytes
    ("1.65535", V4("1.0.255.255")),
    ("0x.1", V4("0.0.0.1")),              # "0x" alone is 0, as WHATWG reads it
    ("169.254.169.254", V4("169.254.169.254")),
    ("0xa9fea9fe", V4("169.254.169.254")),
])
def test_parse_ip_literal(host: str, expected: IPAddress) -> None:
    assert parse_ip_literal(host) == expected


@pytest.mark.parametrize("host", [
    "github.com",
    "a.b",
    "localhost",
    "1.2.3.4.nip.io",       # numeric labels, but the last is a name
    "0x7f.com",
    "1a",
    "123abc",
    "0xg",
    "",
    "github.com..",         # not an address; normalise_name rejects it
    "\u2488com",            # unmappable: not an address, normalise_name says why
])
def test_names_are_not_literals(host: str) -> None:
    assert parse_ip_literal(host) is None


@pytest.mark.parametrize("host", [
    "1.2.3.4.5",            # ends in a number, too many parts
    "0x1g.1",
    "08.1",                 # 8 is not octal
    "09",
    "foo.123",              # WHATWG: a name ending in a number must be an IPv4 address
    "github.com.1",
    "256.0.0.1",
    "1.256.0.0",
    "1.2.65536",
    "1.16777216",
    "4294967296",
    "0x100000000",
    "99999999999999999999",
    "1..1",
    "127.0.0.1..1",
    "[::1",
    "::1]",
    "[127.0.0.1]",
    "[github.com]",
    "::g",
    "1:2",
    "github.com:443",
    "[::1]:443",
    "::ffff:127.1",
])
def test_malformed_literals_raise(host: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_ip_literal(host)


@pytest.mark.parametrize(("ip", "expected"), [
    ("::ffff:127.0.0.1", "127.0.0.1"),      # IPv4-mapped
    ("::ffff:8.8.8.8", "8.8.8.8"),
    ("::127.0.0.1", "127.0.0.1"),           # IPv4-compatible
    ("::2", "0.0.0.2"),
    ("::", None),
    ("::1", None),
    ("::ffff:0:a00:1", "10.0.0.1"),         # IPv4-translated (RFC 2765)
    ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # NAT64
    ("64:ff9b::808:808", "8.8.8.8"),
    ("64:ff9b:1::a00:1", None),             # not the well-known NAT64 prefix
    ("2002:a00:1::", "10.0.0.1"),           # 6to4
    ("2002:7f00:1:1234:5678::9", "127.0.0.1"),
    ("2003:a00:1::", None),
    ("2001:db8::1", None),
    ("fe80::1", None),
])
def test_embedded_ipv4(ip: str, expected: str | None) -> None:
    found = embedded_ipv4(V6(ip))
    assert found == (None if expected is None else V4(expected))


DENIED = [
    # first and last address of every IPv4 range, plus well-known members
    "0.0.0.0", "0.255.255.255",
    "10.0.0.0", "10.255.255.255",
    "100.64.0.0", "100.127.255.255",
    "127.0.0.0", "127.0.0.1", "127.255.255.255",
    "169.254.0.0", "169.254.169.254", "169.254.255.255",
    "172.16.0.0", "172.31.255.255",
    "192.168.0.0", "192.168.255.255",
    "224.0.0.0", "239.255.255.255",
    "240.0.0.0", "255.255.255.255",
    # IPv6
    "::", "::1",
    "fc00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "fe80::", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "fec0::1",
    "ff00::", "ff02::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    # embedded forms, judged by their IPv4
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.1.2.3", "::ffff:0.0.0.0",
    "::10.0.0.1", "::ffff:0:a9fe:a9fe",
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::c0a8:1",
    "2002:7f00:1::", "2002:a9fe:a9fe::", "2002:ac10::1", "2002:e000::",
]
ALLOWED = [
    # near misses around every IPv4 range
    "1.0.0.0", "9.255.255.255", "11.0.0.0",
    "100.63.255.255", "100.128.0.0",
    "126.255.255.255", "128.0.0.0",
    "169.253.255.255", "169.255.0.0",
    "172.15.255.255", "172.32.0.0",
    "192.167.255.255", "192.169.0.0",
    "223.255.255.255",
    "8.8.8.8", "1.1.1.1", "140.82.112.3", "192.0.2.1", "203.0.113.7",
    # IPv6 near misses
    "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::", "::ffff:0:808:808",
    "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "2001:4860:4860::8888", "2606:4700::1111", "2001:db8::1",
]


@pytest.mark.parametrize("ip", DENIED)
def test_denied_ranges(ip: str) -> None:
    assert is_denied_address(ipaddress.ip_address(ip))


@pytest.mark.parametrize("ip", ALLOWED)
def test_public_addresses_are_not_denied(ip: str) -> None:
    assert not is_denied_address(ipaddress.ip_address(ip))


def test_address_set_membership() -> None:
    s = AddressSet.parse(["10.0.0.0/8", "127.0.0.1", "::1/128", "[2001:db8::]/32",
                          "192.168.1.0/24,192.168.2.0/24"], what="--allow-range")
    assert len(s) == 6
    for member in ["10.0.0.0", "10.255.255.255", "127.0.0.1", "::1", "2001:db8::5",
                   "192.168.1.7", "192.168.2.255",
                   "::ffff:10.1.2.3", "::ffff:127.0.0.1", "64:ff9b::a00:1", "2002:7f00:1::"]:
        assert ipaddress.ip_address(member) in s, member
    for outsider in ["9.255.255.255", "11.0.0.0", "127.0.0.2", "::2", "2001:db9::",
                     "192.168.3.0", "::ffff:127.0.0.2", "8.8.8.8"]:
        assert ipaddress.ip_address(outsider) not in s, outsider
    assert "10.0.0.1" not in s  # only addresses are members


def test_address_set_merges_overlaps() -> None:
    s = AddressSet.parse(["10.0.0.0/8", "10.1.0.0/16", "11.0.0.0/8", "12.0.0.0/31"], what="x")
    assert s.v4_starts == (int(V4("10.0.0.0")),)
    assert s.v4_ends == (int(V4("12.0.0.1")),)
    assert V4("11.200.0.1") in s
    assert V4("12.0.0.2") not in s


def test_empty_address_set() -> None:
    s = AddressSet.parse([], what="--allow-range")
    assert not s
    assert len(s) == 0
    assert V4("127.0.0.1") not in s
    assert V6("::1") not in s


@pytest.mark.parametrize(("entry", "message"), [
    ("10.0.0.1/8",
     r"--allow-range: '10\.0\.0\.1/8' has host bits set; did you mean '10\.0\.0\.0/8'"),
    ("banana", r"--allow-range: 'banana' is not an IP address or CIDR"),
    ("10.0.0.0/33", r"'10\.0\.0\.0/33' is not an IP address or CIDR"),
    ("", r"--allow-range: '' is empty"),
    ("fe80::1%eth0", r"'fe80::1%eth0' is not an IP address or CIDR"),
    ("127.1", r"'127\.1' is not an IP address or CIDR"),
])
def test_address_set_errors(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AddressSet.parse([entry], what="--allow-range")
