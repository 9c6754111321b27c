"""Policy golden tables (docs/proxy.md §2, §3, §6), ported from upstream's policy vectors
(../shared/docs/UPSTREAM-TESTS.md §2, the external catalogue of upstream's tests, outside this
repository) and adjusted where our contract differs: we normalise case and one trailing dot,
reject one-label names and paths in entries, and let `*` match `_`. Port-scoped entries
(`svc.example.com:8080`, docs/proxy.md §2) have their own table."""

from __future__ import annotations

import ipaddress
import time

import pytest

from proxy import policy as policy_module
from proxy.errors import ConfigError
from proxy.policy import (
    DANGEROUS_PORTS,
    Decision,
    Policy,
    Scheme,
    parse_domain_list,
    parse_entry,
    parse_ports,
)
from proxy.reasons import Reason

HTTP, HTTPS = Scheme.HTTP, Scheme.HTTPS

POLICY = Policy.build(
    allow_domains=[
        "github.com",
        "*.githubusercontent.com",
        "api-*.example.com",
        "http://plain.example.org",
        "https://secure.example.net",
        "https://tls.example.edu/",        # one trailing '/' is ignored
        "*.co.uk",
        "münchen.de",
        "_dmarc.mail.test",
        "  Spaces.Example.Info  ",
        "Upper.Example.Info.",
        "203.0.113.7",
        "198.51.100.0/24",
        "[2001:db8::1]",
        "http://192.0.2.80",
        "a*b*c*d.glob.test",
    ],
    block_domains=[
        "gist.github.com",
        "*.evil.githubusercontent.com",
        "https://blocked.tls.example.edu",  # the prefix is ignored: blocks plain HTTP too
        "198.51.100.128/25",
    ],
    allow_ports=sorted(parse_ports("8080,9000-9010")),
)

NAMES: list[tuple[str, int, Scheme, Reason | None]] = [
    # plain entries cover themselves and every subdomain, nothing else
    ("github.com", 443, HTTPS, None),
    ("api.github.com", 443, HTTPS, None),
    ("a.b.github.com", 443, HTTPS, None),
    ("github.com", 80, HTTP, None),
    ("API.GITHUB.COM", 443, HTTPS, None),          # case-insensitive
    ("github.com.", 443, HTTPS, None),             # one trailing dot
    ("notgithub.com", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("github.com.evil.test", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("github.co", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("hub.com", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("com", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("example.com", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("localhost", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("githubxcom", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("spaces.example.info", 443, HTTPS, None),     # the entry was trimmed
    ("upper.example.info", 443, HTTPS, None),      # the entry was normalised
    # ports
    ("github.com", 8080, HTTPS, None),
    ("github.com", 9000, HTTPS, None),
    ("github.com", 9010, HTTP, None),
    ("github.com", 9011, HTTPS, Reason.PORT_DENIED),
    ("github.com", 22, HTTPS, Reason.PORT_DENIED),
    ("github.com", 5432, HTTPS, Reason.PORT_DENIED),
    ("github.com", 8443, HTTPS, Reason.PORT_DENIED),
    ("github.com", 65535, HTTPS, Reason.PORT_DENIED),
    ("github.com", 1, HTTPS, Reason.PORT_DENIED),
    # the blocklist beats the allowlist, by subdomain too
    ("gist.github.com", 443, HTTPS, Reason.DOMAIN_BLOCKED),
    ("GIST.github.com.", 443, HTTPS, Reason.DOMAIN_BLOCKED),
    ("raw.gist.github.com", 443, HTTPS, Reason.DOMAIN_BLOCKED),
    ("notgist.github.com", 443, HTTPS, None),
    ("gist.github.com.evil.test", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("blocked.tls.example.edu", 443, HTTPS, Reason.DOMAIN_BLOCKED),
    # wildcards: `*` is any run of [a-z0-9_.-], possibly empty, crossing dots; whole name
    ("raw.githubusercontent.com", 443, HTTPS, None),
    ("a.b.githubusercontent.com", 443, HTTPS, None),
    ("RAW.GitHubUserContent.com", 443, HTTPS, None),
    ("_x.githubusercontent.com", 443, HTTPS, None),
    ("githubusercontent.com", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("notgithubusercontent.com", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("githubusercontent.com.evil.com", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("raw.githubusercontent.com.evil.com", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("evil.githubusercontent.com", 443, HTTPS, None),
    ("x.evil.githubusercontent.com", 443, HTTPS, Reason.DOMAIN_BLOCKED),
    ("api-v2.example.com", 443, HTTPS, None),
    ("api-.example.com", 443, HTTPS, None),
    ("api-a.b.example.com", 443, HTTPS, None),
    ("api-_x.example.com", 443, HTTPS, None),
    ("api.example.com", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("xapi-v2.example.com", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("api-evil.attacker.com", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("api-v2.example.com.evil.test", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("api-v2.example.comx", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("abcd.glob.test", 443, HTTPS, None),
    ("a1b2c3d.glob.test", 443, HTTPS, None),
    ("a.b.c.d.glob.test", 443, HTTPS, None),
    ("abcabcd.glob.test", 443, HTTPS, None),
    ("abdc.glob.test", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("acbd.glob.test", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("abcd.glob.test.evil", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("foo.co.uk", 443, HTTPS, None),
    ("co.uk", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    # scheme prefixes: matched with the wrong scheme -> scheme_denied
    ("plain.example.org", 80, HTTP, None),
    ("www.plain.example.org", 80, HTTP, None),
    ("plain.example.org", 443, HTTPS, Reason.SCHEME_DENIED),
    ("secure.example.net", 443, HTTPS, None),
    ("secure.example.net", 80, HTTP, Reason.SCHEME_DENIED),
    ("tls.example.edu", 443, HTTPS, None),
    ("tls.example.edu", 80, HTTP, Reason.SCHEME_DENIED),
    ("api-v2.example.com", 80, HTTP, None),
    # IDN and underscore names
    ("münchen.de", 443, HTTPS, None),
    ("MÜNCHEN.DE.", 443, HTTPS, None),
    ("xn--mnchen-3ya.de", 443, HTTPS, None),
    ("www.münchen.de", 443, HTTPS, None),
    ("muenchen.de", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
    ("_dmarc.mail.test", 443, HTTPS, None),
    ("mail.test", 443, HTTPS, Reason.DOMAIN_NOT_ALLOWED),
]

PRECEDENCE: list[tuple[str, int, Scheme, Reason | None]] = [
    # docs/proxy.md §6: bad_request, ip_literal, domain_blocked, domain_not_allowed, scheme_denied,
    # port_denied
    ("gist.github.com", 22, HTTPS, Reason.DOMAIN_BLOCKED),       # blocked before port
    ("example.com", 22, HTTPS, Reason.DOMAIN_NOT_ALLOWED),       # not allowed before port
    ("plain.example.org", 22, HTTPS, Reason.SCHEME_DENIED),      # scheme before port
    ("blocked.tls.example.edu", 80, HTTP, Reason.DOMAIN_BLOCKED),  # blocked before scheme
    ("gist.github.com", 0, HTTPS, Reason.BAD_REQUEST),           # bad port before all
    ("127.0.0.1", 22, HTTPS, Reason.IP_LITERAL),                 # literal before port
    ("127.0.0.1", 0, HTTPS, Reason.BAD_REQUEST),
    ("198.51.100.200", 22, HTTPS, Reason.DOMAIN_BLOCKED),        # allowed+blocked literal
    ("192.0.2.80", 22, HTTPS, Reason.SCHEME_DENIED),
    ("203.0.113.7", 22, HTTPS, Reason.PORT_DENIED),
]

BAD_REQUESTS: list[tuple[str, int]] = [
    ("", 443),
    ("   ", 443),
    (".", 443),
    ("a..b.com", 443),
    (".github.com", 443),
    ("github.com..", 443),
    ("git hub.com", 443),
    ("github.com/", 443),
    ("github.com:443", 443),
    ("*.github.com", 443),
    ("a" * 64 + ".github.com", 443),
    (("a" * 60 + ".") * 4 + "github.com", 443),     # 254+ characters
    ("1.2.3.4.5", 443),                              # ends in a number, not an address
    ("0x1g.1", 443),
    ("github.com.1", 443),
    ("[::1", 443),
    ("[github.com]", 443),
    ("git\x00hub.com", 443),
    ("github.com", 0),
    ("github.com", -1),
    ("github.com", 65536),
    ("github.com", 10**9),
]

LITERALS: list[tuple[str, Reason | None, str]] = [
    # every spelling of a denied literal is ip_literal; the allowed ones name their address
    ("127.0.0.1", Reason.IP_LITERAL, "127.0.0.1"),
    ("127.1", Reason.IP_LITERAL, "127.0.0.1"),
    ("0x7f.0.0.1", Reason.IP_LITERAL, "127.0.0.1"),
    ("0177.0.0.1", Reason.IP_LITERAL, "127.0.0.1"),
    ("2130706433", Reason.IP_LITERAL, "127.0.0.1"),
    ("0x7f000001", Reason.IP_LITERAL, "127.0.0.1"),
    ("127.0.0.1.", Reason.IP_LITERAL, "127.0.0.1"),
    ("[::1]", Reason.IP_LITERAL, "::1"),
    ("::1", Reason.IP_LITERAL, "::1"),
    ("[0:0::1]", Reason.IP_LITERAL, "::1"),
    ("[::1%lo]", Reason.IP_LITERAL, "::1"),
    ("[::1%25lo]", Reason.IP_LITERAL, "::1"),
    ("[::ffff:127.0.0.1]", Reason.IP_LITERAL, "::ffff:7f00:1"),
    ("169.254.169.254", Reason.IP_LITERAL, "169.254.169.254"),
    ("8.8.8.8", Reason.IP_LITERAL, "8.8.8.8"),
    ("203.0.113.8", Reason.IP_LITERAL, "203.0.113.8"),
    ("[2001:db8::2]", Reason.IP_LITERAL, "2001:db8::2"),
    # allowed by an IP/CIDR entry, in any spelling
    ("203.0.113.7", None, "203.0.113.7"),
    ("0xcb007107", None, "203.0.113.7"),
    ("203.0.28935", None, "203.0.113.7"),
    ("[::ffff:203.0.113.7]", None, "::ffff:cb00:7107"),
    ("198.51.100.0", None, "198.51.100.0"),
    ("198.51.100.127", None, "198.51.100.127"),
    ("[2001:db8::1]", None, "2001:db8::1"),
    ("[2001:DB8:0::1%25eth0]", None, "2001:db8::1"),
    # blocked by an IP/CIDR entry, even though a wider entry allows it
    ("198.51.100.128", Reason.DOMAIN_BLOCKED, "198.51.100.128"),
    ("198.51.100.255", Reason.DOMAIN_BLOCKED, "198.51.100.255"),
    ("[::ffff:198.51.100.200]", Reason.DOMAIN_BLOCKED, "::ffff:c633:64c8"),
]


@pytest.mark.parametrize(("host", "port", "scheme", "reason"), NAMES + PRECEDENCE)
def test_decide(host: str, port: int, scheme: Scheme, reason: Reason | None) -> None:
    decision = POLICY.decide(host, port, scheme)
    assert decision.reason == reason
    assert decision.allowed is (reason is None)


@pytest.mark.parametrize(("host", "port"), BAD_REQUESTS)
@pytest.mark.parametrize("scheme", [HTTP, HTTPS])
def test_bad_requests(host: str, port: int, scheme: Scheme) -> None:
    decision = POLICY.decide(host, port, scheme)
    assert decision == Decision(False, Reason.BAD_REQUEST, decision.host, decision.address)
    assert decision.reason is not None
    assert decision.reason.status == 400


@pytest.mark.parametrize(("host", "reason", "canonical"), LITERALS)
def test_ip_literals(host: str, reason: Reason | None, canonical: str) -> None:
    decision = POLICY.decide(host, 443, HTTPS)
    assert decision.reason == reason
    assert decision.allowed is (reason is None)
    assert decision.host == canonical
    assert decision.address == ipaddress.ip_address(canonical)


def test_ip_entry_scheme_prefix() -> None:
    assert POLICY.decide("192.0.2.80", 80, HTTP).allowed
    assert POLICY.decide("192.0.2.80", 443, HTTPS).reason == Reason.SCHEME_DENIED


def test_decision_fields() -> None:
    assert POLICY.decide("API.GitHub.com.", 443, HTTPS) == Decision(True, None, "api.github.com")
    assert POLICY.decide("MÜNCHEN.de", 443, HTTPS).host == "xn--mnchen-3ya.de"
    denied = POLICY.decide("example.com", 443, HTTPS)
    assert denied == Decision(False, Reason.DOMAIN_NOT_ALLOWED, "example.com", None)
    assert POLICY.decide("127.1", 443, HTTPS).address == ipaddress.IPv4Address("127.0.0.1")


def test_scheme_accepts_plain_strings_and_rejects_others() -> None:
    assert POLICY.decide("github.com", 443, "https").allowed  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown scheme"):
        POLICY.decide("github.com", 443, "ftp")  # type: ignore[arg-type]


def test_empty_policy_denies_every_name() -> None:
    empty = Policy.build(allow_domains=[])
    assert empty.decide("github.com", 443, HTTPS).reason == Reason.DOMAIN_NOT_ALLOWED
    assert empty.decide("127.0.0.1", 443, HTTPS).reason == Reason.IP_LITERAL
    assert empty.counts() == {"allow": 0, "block": 0, "allow_ranges": 0, "ports": 2}


def test_a_name_matched_with_the_right_scheme_anywhere_is_allowed() -> None:
    p = Policy.build(allow_domains=["http://example.com", "https://api.example.com",
                                    "https://*.cdn.example.com"])
    assert p.decide("api.example.com", 443, HTTPS).allowed
    assert p.decide("api.example.com", 80, HTTP).allowed          # via http://example.com
    assert p.decide("www.example.com", 443, HTTPS).reason == Reason.SCHEME_DENIED
    assert p.decide("a.cdn.example.com", 443, HTTPS).allowed      # via the https pattern
    assert p.decide("a.cdn.example.com", 80, HTTP).allowed        # via http://example.com


def test_every_entry_keeps_its_own_scheme() -> None:
    # upstream's redundancy rules: a single-scheme parent never hides a child of another scheme
    p = Policy.build(allow_domains=["https://github.com", "http://api.github.com",
                                    "https://example.com", "www.example.com"])
    assert p.decide("api.github.com", 443, HTTPS).allowed
    assert p.decide("api.github.com", 80, HTTP).allowed
    assert p.decide("x.api.github.com", 80, HTTP).allowed
    assert p.decide("www.github.com", 80, HTTP).reason == Reason.SCHEME_DENIED
    assert p.decide("www.example.com", 80, HTTP).allowed
    assert p.decide("example.com", 80, HTTP).reason == Reason.SCHEME_DENIED


def test_allowing_and_blocking_the_same_name_blocks_it() -> None:
    p = Policy.build(allow_domains=["github.com", "*.githubusercontent.com"],
                     block_domains=["github.com", "*.githubusercontent.com"])
    assert p.decide("github.com", 443, HTTPS).reason == Reason.DOMAIN_BLOCKED
    assert p.decide("api.github.com", 443, HTTPS).reason == Reason.DOMAIN_BLOCKED
    assert p.decide("raw.githubusercontent.com", 443, HTTPS).reason == Reason.DOMAIN_BLOCKED


def test_build_wants_lists_not_strings() -> None:
    with pytest.raises(TypeError, match="list of entries"):
        Policy.build(allow_domains="github.com")


def test_block_patterns_and_addresses() -> None:
    p = Policy.build(allow_domains=["example.com", "10.0.0.0/8"],
                     block_domains=["*-admin.example.com", "http://10.9.0.0/16"])
    assert p.decide("x-admin.example.com", 443, HTTPS).reason == Reason.DOMAIN_BLOCKED
    assert p.decide("a.b-admin.example.com", 443, HTTPS).reason == Reason.DOMAIN_BLOCKED
    assert p.decide("admin.example.com", 443, HTTPS).allowed
    assert p.decide("10.9.1.1", 443, HTTPS).reason == Reason.DOMAIN_BLOCKED
    assert p.decide("10.8.1.1", 443, HTTPS).allowed
    # a blocked address is never dialled for a name either
    assert not p.address_allowed(ipaddress.ip_address("10.9.1.1"))
    assert not p.address_allowed(ipaddress.ip_address("::ffff:10.9.1.1"))


def test_address_allowed() -> None:
    ip = ipaddress.ip_address
    default = Policy.build(allow_domains=["example.com"])
    assert default.address_allowed(ip("140.82.112.3"))
    assert default.address_allowed(ip("2606:4700::1111"))
    for denied in ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "::ffff:127.0.0.1",
                   "64:ff9b::a9fe:a9fe", "2002:a00:1::", "fd00::1", "255.255.255.255"]:
        assert not default.address_allowed(ip(denied)), denied
    ranged = Policy.build(allow_domains=["example.com"],
                          allow_ranges=["127.0.0.0/8", "fd00::/8,10.1.0.0/16"])
    for allowed in ["127.0.0.1", "127.255.0.1", "::ffff:127.0.0.1", "fd00::1", "10.1.2.3"]:
        assert ranged.address_allowed(ip(allowed)), allowed
    for denied in ["10.2.0.1", "::1", "169.254.169.254"]:
        assert not ranged.address_allowed(ip(denied)), denied
    assert ranged.counts()["allow_ranges"] == 3


def test_ports_and_counts() -> None:
    assert POLICY.ports == frozenset({80, 443, 8080, *range(9000, 9011)})
    assert POLICY.counts() == {"allow": 16, "block": 4, "allow_ranges": 0, "ports": 14}
    dup = Policy.build(allow_domains=["github.com", "GitHub.com.", "github.com"])
    assert dup.counts()["allow"] == 1


def test_allows_name() -> None:
    assert POLICY.allows_name("api.github.com")
    assert POLICY.allows_name("plain.example.org")       # some scheme allows it
    assert POLICY.allows_name("secure.example.net")
    assert not POLICY.allows_name("gist.github.com")
    assert not POLICY.allows_name("example.com")
    assert not POLICY.allows_name("203.0.113.7")         # literals are not names
    assert not POLICY.allows_name("1.2.3.4.5")
    assert not POLICY.allows_name("a..b")


def test_decide_is_memoised_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    p = Policy.build(allow_domains=["github.com"])
    first = p.decide("api.github.com", 443, HTTPS)
    assert p.decide("api.github.com", 443, HTTPS) is first
    assert p.decide("api.github.com", 443, "https") is first  # type: ignore[arg-type]
    assert p.decide("api.github.com", 80, HTTP) is not first
    monkeypatch.setattr(policy_module, "_CACHE_MAX", 8)
    for i in range(50):
        p.decide(f"h{i}.github.com", 443, HTTPS)
    assert len(p._cache) <= 8
    assert p.decide("h49.github.com", 443, HTTPS).allowed
    size = len(p._cache)
    p.decide("a" * 300, 443, HTTPS)  # long garbage is answered, not remembered
    assert len(p._cache) == size


@pytest.mark.timeout(10)
def test_no_catastrophic_backtracking() -> None:
    # A backtracking translation of these patterns would need ~len(name)**stars steps.
    stars = "*a" * 12
    p = Policy.build(allow_domains=[f"{stars}*b.redos.test", f"a{stars}.redos.test",
                                    "*.*a*a*a*a*a*a*a*x.redos.test"])
    name = ("a" * 62 + ".") * 3 + "a.redos.tes"
    started = time.perf_counter()
    for host in [name, name + "t", "a" * 240 + ".redos.test"]:
        p.decide(host, 443, HTTPS)
    assert time.perf_counter() - started < 5
    assert p.decide("a" * 30 + "b.redos.test", 443, HTTPS).allowed
    assert p.decide("a" * 30 + "c.redos.test", 443, HTTPS).allowed is False


# ---------------------------------------------------------------------------- entries


@pytest.mark.parametrize(("raw", "canonical"), [
    ("github.com", "github.com"),
    ("  github.com  ", "github.com"),
    ("GitHub.COM", "github.com"),
    ("github.com.", "github.com"),
    ("http://github.com", "http://github.com"),
    ("HTTPS://GitHub.com/", "https://github.com"),
    ("https://example.com/", "https://example.com"),
    ("*.github.com", "*.github.com"),
    ("**.github.com", "*.github.com"),
    ("api-*.example.com", "api-*.example.com"),
    ("a.*.example.com", "a.*.example.com"),
    ("*.co.uk", "*.co.uk"),
    ("*-api.example.com", "*-api.example.com"),
    ("_dmarc.example.com", "_dmarc.example.com"),
    ("_acme-challenge.example.com", "_acme-challenge.example.com"),
    ("_srv._tcp.example.com", "_srv._tcp.example.com"),
    ("*._tcp.example.com", "*._tcp.example.com"),
    ("münchen.de", "xn--mnchen-3ya.de"),
    ("*.München.de", "*.xn--mnchen-3ya.de"),
    ("10.0.0.1", "10.0.0.1/32"),
    ("127.1", "127.0.0.1/32"),
    ("10.0.0.0/8", "10.0.0.0/8"),
    ("https://10.0.0.0/8/", "https://10.0.0.0/8"),
    ("::1", "::1/128"),
    ("[::1]", "::1/128"),
    ("[2001:db8::]/32", "2001:db8::/32"),
    ("2001:db8::/32", "2001:db8::/32"),
])
def test_entry_canonical_form(raw: str, canonical: str) -> None:
    assert str(parse_entry(raw)) == canonical


@pytest.mark.parametrize(("raw", "message"), [
    # too broad
    ("*", "too broad"),
    ("*.*", "too broad"),
    ("*.*.*", "too broad"),
    ("*.", "too broad"),
    (".*", "too broad"),
    (".", "too broad"),
    ("..", "too broad"),
    ("*.com", "too broad"),
    ("*.*.com", "too broad"),
    ("https://*.com", "too broad"),
    ("http://*", "too broad"),
    ("com", "too broad"),
    ("https://com/", "too broad"),
    ("foo*.com", "too broad"),          # would match foo.evil.com
    ("ex*ample.com", "too broad"),      # would match ex.evil.sample.com
    ("www.example.*", "too broad"),     # would match www.example.evil.test
    ("*github.com", "too broad"),       # would match notgithub.com
    ("10.0.0.*", "too broad"),
    # empty
    ("", "empty entry"),
    ("   ", "empty entry"),
    ("https://", "no domain after its prefix"),
    ("http:///", "no domain after its prefix"),
    # characters no domain has
    ("github.com\n", "U\\+000A"),
    ("git\rhub.com", "U\\+000D"),
    ("git\x00hub.com", "U\\+0000"),
    ("git\thub.com", "U\\+0009"),
    ("git\x7fhub.com", "U\\+007F"),
    ("git hub.com", "whitespace"),
    ("git\u00a0hub.com", "whitespace"),
    ("github.com;", "';'"),
    ("github.com#x", "'#'"),
    ("git\\hub.com", "'\\\\\\\\'"),
    ("'github.com'", "\"'\""),
    ('"github.com"', "'\"'"),
    ("github.com,gitlab.com", "separate entries"),
    ("fe80::1%eth0", "'%'"),
    ("user@github.com", "not a valid domain"),
    ("api+*.example.com", "not a valid domain"),     # upstream escaped these; no domain has them
    ("api[1].example.com", "not a valid domain"),
    ("api?.example.com", "not a valid domain"),
    # paths, ports and schemes
    ("github.com/path", "has a path"),
    ("https://github.com/user", "has a path"),
    ("github.com//", "has a path"),
    ("github.com:22", "22 is never allowed"),           # port-scoped entries: dangerous ports
    ("github.com:3000-3400", "includes 3306"),
    ("github.com:0", "port 0 cannot be allowed"),
    ("github.com:70000", "over 65535"),
    ("github.com:", "bad port"),
    ("github.com:http", "bad port"),
    ("github.com:9010-9000", "starts after it ends"),
    ("[::1]:", "bad port"),
    ("ftp://github.com", "scheme"),
    ("https://http://github.com", "scheme"),
    # invalid names and addresses
    (".github.com", "starts with a dot; write 'github.com'"),
    ("a..b.com", "empty label"),
    ("a" * 64 + ".com", "over 63"),
    ("1.2.3.4.5", "neither a domain nor an IP address"),
    ("foo.123", "neither a domain nor an IP address"),
    ("*.0.0.1", "pattern of IP addresses"),
    ("*.example.0x10", "pattern of IP addresses"),
    ("10.0.0.1/8", "host bits set; did you mean '10.0.0.0/8'"),
    ("10.0.0.0/33", "not an IP address or CIDR"),
    ("10.0.0.0/255.0.0.0", "prefix length"),
    ("1:2:3", "neither a domain nor an IP address"),
    ("*ü.de", "not a valid domain"),
])
def test_entry_rejected(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_entry(raw, what="--allow-domains")
    assert str(info.value).startswith("--allow-domains: ")


def test_build_names_the_flag_and_the_entry() -> None:
    with pytest.raises(ConfigError, match=r"^--allow-domains: '\*\.com' is too broad"):
        Policy.build(allow_domains=["github.com", "*.com"])
    with pytest.raises(ConfigError, match=r"^--block-domains: '\*' is too broad"):
        Policy.build(allow_domains=["github.com"], block_domains=["*"])
    with pytest.raises(ConfigError, match=r"^--allow-range: 'banana'"):
        Policy.build(allow_domains=["github.com"], allow_ranges=["banana"])
    with pytest.raises(ConfigError, match=r"^--allow-ports: 5432 is never allowed \(PostgreSQL\)"):
        Policy.build(allow_domains=["github.com"], allow_ports=[8080, 5432])
    with pytest.raises(ConfigError, match=r"^--allow-ports: 0 is not a port"):
        Policy.build(allow_domains=["github.com"], allow_ports=[0])
    with pytest.raises(ConfigError, match=r"^--allow-ports: 70000 is not a port"):
        Policy.build(allow_domains=["github.com"], allow_ports=[70000])


def test_block_entries_ignore_the_prefix() -> None:
    p = Policy.build(allow_domains=["example.com"], block_domains=["http://x.example.com"])
    assert p.decide("x.example.com", 443, HTTPS).reason == Reason.DOMAIN_BLOCKED
    assert [str(e) for e in p.block_entries] == ["x.example.com"]


# ---------------------------------------------------------------------------- ports and lists


@pytest.mark.parametrize(("spec", "ports"), [
    ("8080", {8080}),
    ("8080,9000-9010", {8080, *range(9000, 9011)}),
    (" 8080 , 9000 ", {8080, 9000}),
    ("1", {1}),
    ("65535", {65535}),
    ("00080", {80}),
    ("5433-5440", set(range(5433, 5441))),
    ("3000-3000", {3000}),
    ("8080,8080", {8080}),
])
def test_parse_ports(spec: str, ports: set[int]) -> None:
    assert parse_ports(spec) == frozenset(ports)


@pytest.mark.parametrize(("spec", "message"), [
    ("0", "port 0 cannot be allowed"),
    ("65536", "65536 is over 65535"),
    ("99999999999999999999999", "is over 65535"),
    ("-1", "'-1' is negative"),
    ("abc", "'abc' is not a port number"),
    ("80a", "'80a' is not a port number"),
    ("9010-9000", "starts after it ends; write it as '9000-9010'"),
    ("8080\n9000", "line break"),
    ("8080\r", "line break"),
    ("", "no ports given"),
    ("  ", "no ports given"),
    ("8080,,9000", "empty item"),
    ("8080,", "empty item"),
    ("1-2-3", "not a port number or range"),
    ("\u0038\u0030", None),  # plain ASCII "80": accepted, checked below
    ("\u0668\u0660", "not a port number"),  # Arabic-Indic digits are not ports
    ("20-25", "range '20-25' includes 22, which is never allowed \\(SSH\\)"),
    ("3300-3310", "includes 3306, which is never allowed \\(MySQL\\)"),
    ("5400-5500", "includes 5432, which is never allowed \\(PostgreSQL\\)"),
    ("8080-8090", "includes 8086, which is never allowed \\(InfluxDB\\)"),
    ("1-65535", "includes 22"),
])
def test_parse_ports_rejects(spec: str, message: str | None) -> None:
    if message is None:
        assert parse_ports(spec) == frozenset({80})
        return
    with pytest.raises(ConfigError, match=f"^--allow-ports: .*{message}"):
        parse_ports(spec)


@pytest.mark.parametrize("port", sorted(DANGEROUS_PORTS))
def test_every_dangerous_port_is_rejected(port: int) -> None:
    name = DANGEROUS_PORTS[port]
    expected = f"--allow-ports: {port} is never allowed ({name}); remove it"
    with pytest.raises(ConfigError) as info:
        parse_ports(f"8080,{port}")
    assert str(info.value) == expected
    with pytest.raises(ConfigError, match="never allowed"):
        parse_ports(f"{port - 1}-{port + 1}")


def test_dangerous_ports_match_the_contract() -> None:
    assert set(DANGEROUS_PORTS) == {22, 23, 25, 110, 143, 445, 1433, 1521, 3306, 3389, 5432,
                                    5984, 6379, 6984, 8086, 8088, 9200, 9300, 27017, 27018,
                                    28017}
    assert DANGEROUS_PORTS[5432] == "PostgreSQL"
    assert DANGEROUS_PORTS[22] == "SSH"


def test_parse_ports_names_its_flag() -> None:
    with pytest.raises(ConfigError, match=r"^--allow-host-ports: 22 is never allowed"):
        parse_ports("22", what="--allow-host-ports")


@pytest.mark.parametrize(("text", "entries"), [
    ("github.com", ["github.com"]),
    ("github.com,gitlab.com", ["github.com", "gitlab.com"]),
    ("github.com, gitlab.com ,", ["github.com", "gitlab.com"]),
    ("# comment\ngithub.com\n\n  gitlab.com  # trailing\n", ["github.com", "gitlab.com"]),
    ("github.com\r\ngitlab.com\r\n", ["github.com", "gitlab.com"]),
    ("\tgithub.com\t\n", ["github.com"]),
    ("a.com,b.com\nc.com,,d.com", ["a.com", "b.com", "c.com", "d.com"]),
    ("#github.com", []),
    ("", []),
    ("https://x.com/ # comment", ["https://x.com/"]),
])
def test_parse_domain_list(text: str, entries: list[str]) -> None:
    assert parse_domain_list(text) == entries


def test_domain_list_leaves_odd_characters_for_validation() -> None:
    [entry] = parse_domain_list("git\x0bhub.com\n")
    with pytest.raises(ConfigError, match="U\\+000B"):
        parse_entry(entry)


# -- port-scoped entries (docs/proxy.md §2) --------------------------------------------------------

SCOPED = Policy.build(
    allow_domains=["svc.example.com:8080", "range.example.com:8000-8010",
                   "https://tls.example.com:8443", "*.mcp.example.com:3000", "both.example.com",
                   "both.example.com:9000",
                   "192.0.2.5:8081", "[2001:db8::5]:8082"],
    allow_ports=[7000],
)


@pytest.mark.parametrize(("host", "port", "scheme", "reason"), [
    ("svc.example.com", 8080, HTTP, None),
    ("svc.example.com", 8080, HTTPS, None),
    ("a.svc.example.com", 8080, HTTP, None),             # subdomains, as for any entry
    ("svc.example.com", 80, HTTP, Reason.PORT_DENIED),   # 80 and 443 only if listed
    ("svc.example.com", 443, HTTPS, Reason.PORT_DENIED),
    ("svc.example.com", 7000, HTTP, Reason.PORT_DENIED),  # --allow-ports is not for it either
    ("svc.example.com", 8081, HTTP, Reason.PORT_DENIED),
    ("range.example.com", 8000, HTTP, None),
    ("range.example.com", 8010, HTTP, None),
    ("range.example.com", 8011, HTTP, Reason.PORT_DENIED),
    ("tls.example.com", 8443, HTTPS, None),
    ("tls.example.com", 8443, HTTP, Reason.SCHEME_DENIED),
    ("x.mcp.example.com", 3000, HTTP, None),
    ("mcp.example.com", 3000, HTTP, Reason.DOMAIN_NOT_ALLOWED),  # '*.' needs a label
    ("x.mcp.example.com", 443, HTTPS, Reason.PORT_DENIED),
    ("both.example.com", 443, HTTPS, None),               # the plain entry: the global ports
    ("both.example.com", 7000, HTTP, None),
    ("both.example.com", 9000, HTTP, None),               # the scoped one: its port
    ("both.example.com", 9001, HTTP, Reason.PORT_DENIED),
    ("192.0.2.5", 8081, HTTP, None),
    ("192.0.2.5", 80, HTTP, Reason.PORT_DENIED),
    ("[2001:db8::5]", 8082, HTTPS, None),
    ("2001:db8::5", 8082, HTTPS, None),
    ("192.0.2.6", 8081, HTTP, Reason.IP_LITERAL),
    ("other.example.com", 8080, HTTP, Reason.DOMAIN_NOT_ALLOWED),
    ("notsvc.example.com", 8080, HTTP, Reason.DOMAIN_NOT_ALLOWED),
])
def test_port_scoped_entries(host: str, port: int, scheme: Scheme, reason: Reason | None) -> None:
    decision = SCOPED.decide(host, port, scheme)
    assert (decision.allowed, decision.reason) == (reason is None, reason)


def test_port_scoped_entries_blocked_and_for_dns() -> None:
    policy = Policy.build(allow_domains=["svc.example.com:8080"],
                          block_domains=["bad.svc.example.com"])
    assert policy.decide("bad.svc.example.com", 8080, HTTP).reason == Reason.DOMAIN_BLOCKED
    assert policy.allows_name("svc.example.com")
    assert not policy.allows_name("bad.svc.example.com")
    assert policy.scoped_ports() == frozenset({8080})
    assert SCOPED.scoped_ports() == frozenset(
        {8080, 8443, 3000, 9000, 8081, 8082, *range(8000, 8011)})


@pytest.mark.parametrize(("raw", "canonical"), [
    ("svc.example.com:8080", "svc.example.com:8080"),
    ("HTTPS://Svc.Example.com:08443/", "https://svc.example.com:8443"),
    ("svc.example.com:8000-8010", "svc.example.com:8000-8010"),
    ("192.0.2.5:81", "192.0.2.5/32:81"),
    ("[2001:db8::5]:8082", "[2001:db8::5/128]:8082"),
])
def test_port_scoped_canonical_form(raw: str, canonical: str) -> None:
    assert str(parse_entry(raw)) == canonical


def test_a_blocked_entry_with_a_port_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"--block-domains: 'bad.example.com:8080' has a port; a "
                       r"blocked domain is blocked on every port: write 'bad.example.com'"):
        Policy.build(allow_domains=[], block_domains=["bad.example.com:8080"])
