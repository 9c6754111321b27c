"""--allow-urls golden tables (proxy/urlrules.py, docs/proxy.md §11): pattern syntax, target
normalisation and decisions, near misses and the usual tricks included (dot segments, escaped
dots and slashes, NUL, other method, other host, host-prefix tricks, port, query)."""

from __future__ import annotations

import time

import pytest

from proxy.errors import BadRequest, ConfigError
from proxy.policy import Policy, Scheme
from proxy.reasons import Reason
from proxy.urlrules import (
    UrlRules,
    decide_bumped,
    decide_url,
    normalise_target,
    parse_rule,
    parse_url_list,
)

HTTP, HTTPS = Scheme.HTTP, Scheme.HTTPS
OK = None
NOT_URL = Reason.URL_NOT_ALLOWED
BAD = Reason.BAD_REQUEST

RULES = UrlRules.build(
    [
        "GET|HEAD https://api.github.com/repos/*",
        "https://api-*.example.com/v1/items",          # anchored: no trailing '*'
        "https://uploads.example.org/files/*/raw",      # '*' in the middle, crossing '/'
        "POST https://hooks.example.net/hook?token=*",  # the query is compared
        "https://search.example.net/q?*",
        "https://svc.example.edu:8443/*",               # this port only
        "http://plain.example.info/status",             # plain HTTP only
        "https://[2001:db8::1]/ipv6/*",
        "https://203.0.113.7/ip/*",
        "https://*.cdn.test/assets/*",
        "https://dup.example.net/a/*",
        "GET https://dup.example.net/b",
    ],
    allow_domains=["github.com", "*.example.org", "example.info"],
    block_domains=["blocked.api.github.com", "gist.github.com"],
    allow_ports=[8080, 8443],
)

VECTORS: list[tuple[str, Scheme, str, int, str, Reason | None]] = [
    # methods
    ("GET", HTTPS, "api.github.com", 443, "/repos/octo/hello", OK),
    ("HEAD", HTTPS, "api.github.com", 443, "/repos/octo/hello", OK),
    ("POST", HTTPS, "api.github.com", 443, "/repos/octo/hello", NOT_URL),
    ("DELETE", HTTPS, "api.github.com", 443, "/repos/octo/hello", NOT_URL),
    ("get", HTTPS, "api.github.com", 443, "/repos/octo/hello", NOT_URL),   # methods are exact
    # path anchoring and '*'
    ("GET", HTTPS, "api.github.com", 443, "/repos/", OK),
    ("GET", HTTPS, "api.github.com", 443, "/repos", NOT_URL),
    ("GET", HTTPS, "api.github.com", 443, "/reposx", NOT_URL),
    ("GET", HTTPS, "api.github.com", 443, "/user", NOT_URL),
    ("GET", HTTPS, "api.github.com", 443, "/", NOT_URL),
    ("GET", HTTPS, "api.github.com", 443, "/x/repos/a", NOT_URL),
    ("GET", HTTPS, "api.github.com", 443, "/REPOS/a", NOT_URL),            # paths are exact
    ("GET", HTTPS, "api.github.com", 443, "/repos/a?per_page=1", OK),      # query ignored
    ("GET", HTTPS, "api.github.com", 443, "/%72epos/a", OK),               # %72 is 'r'
    # dot segments, plain and escaped
    ("GET", HTTPS, "api.github.com", 443, "/repos/../admin", NOT_URL),
    ("GET", HTTPS, "api.github.com", 443, "/repos/a/../../admin", NOT_URL),
    ("GET", HTTPS, "api.github.com", 443, "/repos/%2e%2e/admin", NOT_URL),
    ("GET", HTTPS, "api.github.com", 443, "/repos/%2E%2E/admin", NOT_URL),
    ("GET", HTTPS, "api.github.com", 443, "/repos/.%2e/admin", NOT_URL),
    ("GET", HTTPS, "api.github.com", 443, "/repos/%2e./admin", NOT_URL),
    ("GET", HTTPS, "api.github.com", 443, "/repos/./a", OK),
    ("GET", HTTPS, "api.github.com", 443, "/repos/a/../b", OK),            # stays inside
    ("GET", HTTPS, "api.github.com", 443, "/admin/../repos/a", OK),        # lands inside
    ("GET", HTTPS, "api.github.com", 443, "/repos/..", NOT_URL),           # -> '/'
    ("GET", HTTPS, "api.github.com", 443, "/repos/a/..", OK),              # -> '/repos/'
    ("GET", HTTPS, "api.github.com", 443, "/repos/...", OK),               # not a dot segment
    ("GET", HTTPS, "api.github.com", 443, "/repos/..a", OK),
    ("GET", HTTPS, "api.github.com", 443, "/repos/../repos/a?x=/../..", OK),  # query untouched
    # refused outright (400), whatever the patterns say
    ("GET", HTTPS, "api.github.com", 443, "/repos/a%2Fb", BAD),
    ("GET", HTTPS, "api.github.com", 443, "/repos/a%2fb", BAD),
    ("GET", HTTPS, "api.github.com", 443, "/repos/a%2F..%2F..%2Fadmin", BAD),
    ("GET", HTTPS, "api.github.com", 443, "/repos/a%00", BAD),
    ("GET", HTTPS, "api.github.com", 443, "/repos/a%0a", BAD),
    ("GET", HTTPS, "api.github.com", 443, "/repos/a%5C..%5Cadmin", BAD),
    ("GET", HTTPS, "api.github.com", 443, "/repos/a\\..\\admin", BAD),
    ("GET", HTTPS, "api.github.com", 443, "/repos/%252e%252e/admin", BAD),
    ("GET", HTTPS, "api.github.com", 443, "/repos/a%252Fb", BAD),
    ("GET", HTTPS, "api.github.com", 443, "/repos//../admin", BAD),
    ("GET", HTTPS, "api.github.com", 443, "/repos/..;/admin", BAD),
    ("GET", HTTPS, "api.github.com", 443, "/repos/.;x/admin", BAD),
    ("GET", HTTPS, "api.github.com", 443, "/repos/..%3b/admin", BAD),
    ("GET", HTTPS, "api.github.com", 443, "/repos/a%zz", BAD),
    ("GET", HTTPS, "api.github.com", 443, "/repos/a%", BAD),
    ("GET", HTTPS, "api.github.com", 443, "/repos/a#frag", BAD),
    ("GET", HTTPS, "api.github.com", 443, "/repos/a b", BAD),
    ("GET", HTTPS, "api.github.com", 443, "/repos/\u00e9", BAD),
    ("GET", HTTPS, "api.github.com", 443, "repos/a", BAD),
    ("OPTIONS", HTTPS, "api.github.com", 443, "*", BAD),
    ("GET", HTTPS, "api.github.com", 443, "/repos/a?q=%zz", BAD),
    ("GET", HTTPS, "api.github.com", 443, "/repos/a?q=%2F", OK),           # fine in a query
    ("GET", HTTPS, "api.github.com", 443, "/repos//a", OK),                # '//' alone is fine
    # hosts: the parsed host, docs/proxy.md §2 (a name covers its subdomains)
    ("GET", HTTPS, "API.GitHub.COM.", 443, "/repos/a", OK),
    ("GET", HTTPS, "x.api.github.com", 443, "/repos/a", OK),
    ("GET", HTTPS, "x.api.github.com", 443, "/user", NOT_URL),             # restricted too
    ("GET", HTTPS, "github.com", 443, "/user", OK),          # --allow-domains, not restricted
    ("POST", HTTPS, "raw.github.com", 443, "/anything", OK),
    ("GET", HTTPS, "gist.github.com", 443, "/repos/a", Reason.DOMAIN_BLOCKED),
    ("GET", HTTPS, "blocked.api.github.com", 443, "/repos/a", Reason.DOMAIN_BLOCKED),
    ("GET", HTTPS, "api.github.com.evil.test", 443, "/repos/a", Reason.DOMAIN_NOT_ALLOWED),
    ("GET", HTTPS, "notapi.github.com", 443, "/user", OK),   # github.com covers it, unrestricted
    ("GET", HTTPS, "api.github.co", 443, "/repos/a", Reason.DOMAIN_NOT_ALLOWED),
    ("GET", HTTPS, "api.github.com:443", 443, "/repos/a", BAD),            # not a host
    # wildcard hosts: the URL's path can never reach the host part
    ("GET", HTTPS, "api-v2.example.com", 443, "/v1/items", OK),
    ("GET", HTTPS, "api-v2.example.com", 443, "/v1/items?page=2", OK),
    ("GET", HTTPS, "api-v2.example.com", 443, "/v1/items/", NOT_URL),
    ("GET", HTTPS, "api-v2.example.com", 443, "/v1/itemsx", NOT_URL),
    ("GET", HTTPS, "api-v2.example.com", 443, "/v1/items/1", NOT_URL),
    ("GET", HTTPS, "api-evil.test", 443, "/.example.com/v1/items", Reason.DOMAIN_NOT_ALLOWED),
    ("GET", HTTPS, "api-evil.attacker.com", 443, "/.example.com/v1/items",
     Reason.DOMAIN_NOT_ALLOWED),
    ("GET", HTTPS, "api.example.com", 443, "/v1/items", Reason.DOMAIN_NOT_ALLOWED),
    ("GET", HTTPS, "api-v2.example.com.evil.test", 443, "/v1/items", Reason.DOMAIN_NOT_ALLOWED),
    ("GET", HTTPS, "example.com", 443, "/v1/items", Reason.DOMAIN_NOT_ALLOWED),
    ("GET", HTTPS, "a.cdn.test", 443, "/assets/x.js", OK),
    ("GET", HTTPS, "a.cdn.test", 443, "/x.js", NOT_URL),
    ("GET", HTTPS, "cdn.test", 443, "/assets/x.js", Reason.DOMAIN_NOT_ALLOWED),
    # '*' in the middle crosses '/'
    ("GET", HTTPS, "uploads.example.org", 443, "/files/a/raw", OK),
    ("GET", HTTPS, "uploads.example.org", 443, "/files/a/b/c/raw", OK),
    ("GET", HTTPS, "uploads.example.org", 443, "/files//raw", OK),
    ("GET", HTTPS, "uploads.example.org", 443, "/files/raw", NOT_URL),
    ("GET", HTTPS, "uploads.example.org", 443, "/files/a/raw/x", NOT_URL),
    ("GET", HTTPS, "uploads.example.org", 443, "/files/a/raw/..", NOT_URL),   # -> /files/a/
    ("GET", HTTPS, "other.example.org", 443, "/anything", OK),    # *.example.org, unrestricted
    # queries compared when the pattern has '?'
    ("POST", HTTPS, "hooks.example.net", 443, "/hook?token=abc", OK),
    ("POST", HTTPS, "hooks.example.net", 443, "/hook?token=", OK),
    ("POST", HTTPS, "hooks.example.net", 443, "/hook?token=a&b=c", OK),
    ("POST", HTTPS, "hooks.example.net", 443, "/hook?x=1&token=abc", NOT_URL),
    ("POST", HTTPS, "hooks.example.net", 443, "/hook", NOT_URL),
    ("POST", HTTPS, "hooks.example.net", 443, "/hook?", NOT_URL),
    ("POST", HTTPS, "hooks.example.net", 443, "/hook?%74oken=abc", OK),       # %74 is 't'
    ("GET", HTTPS, "hooks.example.net", 443, "/hook?token=abc", NOT_URL),
    ("POST", HTTPS, "hooks.example.net", 443, "/hook/?token=abc", NOT_URL),
    ("GET", HTTPS, "search.example.net", 443, "/q?anything=at/all", OK),
    ("GET", HTTPS, "search.example.net", 443, "/q", OK),                      # '*' matches ''
    ("GET", HTTPS, "search.example.net", 443, "/q/x", NOT_URL),
    # ports: none in the pattern means any allowed port; a pattern's port narrows
    ("GET", HTTPS, "api.github.com", 8080, "/repos/a", OK),
    ("GET", HTTPS, "api.github.com", 8443, "/repos/a", OK),
    ("GET", HTTPS, "api.github.com", 9999, "/repos/a", Reason.PORT_DENIED),
    ("GET", HTTPS, "api.github.com", 22, "/repos/a", Reason.PORT_DENIED),
    ("GET", HTTPS, "svc.example.edu", 8443, "/x", OK),
    ("GET", HTTPS, "svc.example.edu", 443, "/x", NOT_URL),
    ("GET", HTTPS, "svc.example.edu", 8080, "/x", NOT_URL),
    # schemes
    ("GET", HTTP, "plain.example.info", 80, "/status", OK),
    ("GET", HTTP, "plain.example.info", 80, "/status/x", NOT_URL),
    ("GET", HTTPS, "plain.example.info", 443, "/status", NOT_URL),  # example.info allows https
    ("GET", HTTP, "api.github.com", 80, "/repos/a", NOT_URL),       # restricted over both
    ("GET", HTTP, "svc.example.edu", 80, "/x", Reason.SCHEME_DENIED),
    # IP hosts
    ("GET", HTTPS, "2001:db8::1", 443, "/ipv6/a", OK),
    ("GET", HTTPS, "[2001:db8:0::1]", 443, "/ipv6/a", OK),
    ("GET", HTTPS, "2001:db8::1", 443, "/other", NOT_URL),
    ("GET", HTTPS, "203.0.113.7", 443, "/ip/a", OK),
    ("GET", HTTPS, "203.0.113.7", 443, "/ipx", NOT_URL),
    ("GET", HTTPS, "203.0.113.8", 443, "/ip/a", Reason.IP_LITERAL),
    ("GET", HTTPS, "127.1", 443, "/ip/a", Reason.IP_LITERAL),
    # two patterns for one host: either may match
    ("PUT", HTTPS, "dup.example.net", 443, "/a/x", OK),
    ("GET", HTTPS, "dup.example.net", 443, "/b", OK),
    ("PUT", HTTPS, "dup.example.net", 443, "/b", NOT_URL),
    # hosts nobody named
    ("GET", HTTPS, "evil.test", 443, "/repos/a", Reason.DOMAIN_NOT_ALLOWED),
]


@pytest.mark.parametrize(("method", "scheme", "host", "port", "target", "reason"), VECTORS)
def test_decide_url(method: str, scheme: Scheme, host: str, port: int, target: str,
                    reason: Reason | None) -> None:
    decision = decide_url(RULES, method, scheme, host, port, target)
    assert decision.reason == reason
    assert decision.allowed is (reason is None)


def test_decision_names_the_rule_and_the_target() -> None:
    d = decide_url(RULES, "GET", HTTPS, "api.github.com", 443, "/repos/a/%2e%2e/b?x=%7e")
    assert d.rule == "GET|HEAD https://api.github.com/repos/*"
    assert d.target == "/repos/b?x=~"     # what was matched is what to forward
    assert d.host == "api.github.com"
    unrestricted = decide_url(RULES, "GET", HTTPS, "github.com", 443, "/x/../y")
    assert unrestricted.allowed
    assert unrestricted.rule is None
    assert unrestricted.target is None
    denied = decide_url(RULES, "GET", HTTPS, "api.github.com", 443, "/user/../x")
    assert denied.target == "/x"


def test_scheme_as_string() -> None:
    assert decide_url(RULES, "GET", "https", "api.github.com", 443, "/repos/a").allowed


def test_no_patterns_is_the_plain_policy() -> None:
    rules = UrlRules.build([], allow_domains=["github.com"])
    assert rules.restricted is None
    assert decide_url(rules, "GET", HTTPS, "api.github.com", 443, "/a%2Fb").allowed
    assert decide_url(rules, "GET", HTTPS, "evil.test", 443, "/").reason == \
        Reason.DOMAIN_NOT_ALLOWED


def test_the_policy_is_unchanged_for_other_hosts() -> None:
    """The combined policy decides exactly like Policy.build on the same flags, plus the
    patterns' hosts."""
    plain = Policy.build(allow_domains=["github.com", "*.example.org", "example.info"],
                         block_domains=["blocked.api.github.com", "gist.github.com"],
                         allow_ports=[8080, 8443])
    for host in ("github.com", "gist.github.com", "a.example.org", "evil.test",
                 "example.info", "127.0.0.1", "api-v2.example.com"):
        for port in (80, 443, 8080, 22):
            for scheme in (HTTP, HTTPS):
                ours = RULES.policy.decide(host, port, scheme)
                theirs = plain.decide(host, port, scheme)
                if theirs.allowed or theirs.reason != Reason.DOMAIN_NOT_ALLOWED:
                    assert ours == theirs


def test_host_entries() -> None:
    assert RULES.host_entries()[:3] == ("https://api.github.com", "https://api-*.example.com",
                                        "https://uploads.example.org")
    assert "https://2001:db8::1/128" in RULES.host_entries()
    assert "http://plain.example.info" in RULES.host_entries()


def test_restricts() -> None:
    assert RULES.restricts("api.github.com")
    assert RULES.restricts("a.api.github.com")
    assert not RULES.restricts("github.com")
    assert RULES.restricts("2001:db8::1")


# ---------------------------------------------------------------------------- pattern syntax


@pytest.mark.parametrize(("pattern", "message"), [
    ("", "empty pattern"),
    ("ftp://x.test/", "must start with 'https://' or 'http://'"),
    ("x.test/a", "must start with"),
    ("https://x.test", "has no path"),
    ("https://", "has no path"),
    ("https:///a", "has no host"),
    ("https://user@x.test/", "user information"),
    ("https://user:pw@x.test/", "user information"),
    ("https://x.test:0/", "bad port"),
    ("https://x.test:99999/", "bad port"),
    ("https://x.test:abc/", "bad port"),
    ("https://x.test:/", "bad port"),
    ("https://x.test:22/", "never allowed (SSH)"),
    ("https://x.test:8000/", "port 8000, which is not allowed; add it to --allow-ports"),
    ("https://x.test/a/../b", "dot segments"),
    ("https://x.test/a/./b", "dot segments"),
    ("https://x.test/a/%2e%2e/b", "dot segments"),
    ("https://x.test/a%2Fb", "escaped '/'"),
    ("https://x.test/a%00", "control character"),
    ("https://x.test/a%zz", "bad escape"),
    ("https://x.test/a\\b", "contains '\\\\'"),
    ("https://x.test/a#b", "fragment"),
    ("GET POST https://x.test/", "spaces inside"),
    ("GET https://x.test/ a", "spaces inside"),
    ("G@T https://x.test/", "not a method"),
    ("GET| https://x.test/", "not a method"),
    ("https://*/x", "too broad"),
    ("https://*.com/x", "too broad"),
    ("https://com/x", "too broad"),
    ("https://x..test/", "not a valid domain"),
    ("https://2001:db8::1/x", "in brackets"),
    ("https://[2001:db8::1/x", "unclosed"),
    ("https://[2001:db8::1]x/y", "after its IPv6 address"),
    ("https://[nope]/x", "neither a domain nor an IP address"),
    ("https://x.test;evil/x", "contains ';'"),
])
def test_bad_patterns(pattern: str, message: str) -> None:
    with pytest.raises(ConfigError, match="--allow-urls") as info:
        UrlRules.build([pattern], allow_ports=[8443])
    assert message in str(info.value)
    if pattern:
        assert repr(pattern) in str(info.value)


def test_good_patterns() -> None:
    r = parse_rule("get|Head HTTPS://API.GitHub.com:8443/a/*?x=*", ports=[443, 8443])
    assert r.methods == frozenset({"GET", "HEAD"})
    assert r.scheme == HTTPS
    assert r.host == "api.github.com"
    assert r.port == 8443
    assert r.query is not None
    assert r.path.fullmatch("/a/b/c")
    assert parse_rule("https://münchen.de/x").host == "xn--mnchen-3ya.de"
    assert parse_rule("https://x.test/a**b").path.fullmatch("/a/b")
    assert parse_rule("https://x.test/%7euser").path.fullmatch("/~user")
    assert parse_rule("https://x.test/").path.fullmatch("/")
    assert not parse_rule("https://x.test/").path.fullmatch("/a")


def test_build_wants_lists() -> None:
    with pytest.raises(TypeError):
        UrlRules.build("https://x.test/*")


def test_build_checks_the_domain_flags_too() -> None:
    with pytest.raises(ConfigError, match="--allow-domains"):
        UrlRules.build(["https://x.test/*"], allow_domains=["*"])
    with pytest.raises(ConfigError, match="--allow-ports"):
        UrlRules.build(["https://x.test/*"], allow_ports=[5432])


def test_parse_url_list() -> None:
    text = ("# comment\nGET|HEAD https://api.github.com/repos/*  # trailing\n"
            "https://a.test/x, https://b.test/y\n\n")
    assert parse_url_list(text) == ["GET|HEAD https://api.github.com/repos/*",
                                     "https://a.test/x", "https://b.test/y"]


# ---------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(("target", "path", "query"), [
    ("/", "/", None),
    ("/a/b", "/a/b", None),
    ("/a/./b", "/a/b", None),
    ("/a/b/.", "/a/b/", None),
    ("/a/b/..", "/a/", None),
    ("/a/b/../c", "/a/c", None),
    ("/..", "/", None),
    ("/../../a", "/a", None),
    ("/a/%2e%2E/b", "/b", None),
    ("/a/%2E/b", "/a/b", None),
    ("/%7Euser/%41%62", "/~user/Ab", None),
    ("/a%3bb%3Ac", "/a%3Bb%3Ac", None),
    ("/a%20b", "/a%20b", None),
    ("/a%25b", "/a%25b", None),
    ("/a//b", "/a//b", None),
    ("/a?", "/a", ""),
    ("/a?b=%2f&c=%7e", "/a", "b=%2F&c=~"),
    ("/a?b=../..", "/a", "b=../.."),
    ("/a/..?x", "/", "x"),
])
def test_normalise_target(target: str, path: str, query: str | None) -> None:
    assert normalise_target(target) == (path, query)
    again = path if query is None else f"{path}?{query}"
    assert normalise_target(again) == (path, query)


@pytest.mark.parametrize("target", [
    "", "a", "*", "/a%2F", "/a%2f", "/a%5c", "/a%00", "/a%1F", "/a%7f", "/a%", "/a%4", "/a%g0",
    "/a\\b", "/a#b", "/a b", "/a\tb", "/a\x00", "/\u00e9", "/a%252e", "/a%252F", "/a%2500",
    "/a%255c", "/a//..", "//./a", "/a/..;/b", "/a/.;/b", "/a/%2e%2e;/b", "/a/..%3B/b",
    "/a?b#c", "/a?b c", "/a?%zz",
])
def test_normalise_target_refuses(target: str) -> None:
    with pytest.raises(BadRequest):
        normalise_target(target)


def test_no_catastrophic_backtracking() -> None:
    rules = UrlRules.build(["https://r.test/*a*a*a*a*a*a*a*a*b"])
    path = "/" + "a" * 60_000
    started = time.perf_counter()
    d = decide_url(rules, "GET", HTTPS, "r.test", 443, path)
    assert d.reason == NOT_URL
    assert time.perf_counter() - started < 2.0
    assert decide_url(rules, "GET", HTTPS, "r.test", 443, path + "b").allowed


# ---------------------------------------------------------------------------- inside a bump

BUMPED: list[tuple[str, int, str, bytes | None, bytes, Reason | None]] = [
    ("api.github.com", 443, "GET", b"api.github.com", b"/repos/a", OK),
    ("api.github.com", 443, "GET", b"API.GitHub.com.", b"/repos/a", OK),
    ("api.github.com", 443, "GET", b"api.github.com:443", b"/repos/a", OK),
    ("API.github.com", 443, "GET", b"api.github.com", b"/repos/a", OK),
    ("api.github.com", 443, "GET", b"api.github.com", b"/user", NOT_URL),
    ("api.github.com", 443, "GET", b"api.github.com", b"/repos/a%2Fb", BAD),
    # the Host check comes first: a request for another host on this tunnel is 421
    ("api.github.com", 443, "GET", b"evil.test", b"/repos/a", Reason.MISDIRECTED),
    ("api.github.com", 443, "GET", b"github.com", b"/user", Reason.MISDIRECTED),
    ("github.com", 443, "GET", b"api.github.com", b"/user", Reason.MISDIRECTED),
    ("api.github.com", 443, "GET", b"api.github.com:8443", b"/repos/a", Reason.MISDIRECTED),
    ("api.github.com", 8443, "GET", b"api.github.com", b"/repos/a", Reason.MISDIRECTED),
    ("api.github.com", 8443, "GET", b"api.github.com:8443", b"/repos/a", OK),
    ("api.github.com", 443, "GET", b"gist.github.com", b"/", Reason.MISDIRECTED),
    ("api.github.com", 443, "GET", None, b"/repos/a", BAD),
    ("api.github.com", 443, "GET", b"user@api.github.com", b"/repos/a", BAD),
    ("api.github.com", 443, "GET", b"api.github.com:x", b"/repos/a", BAD),
    ("api.github.com", 443, "GET", b"", b"/repos/a", BAD),
    ("api.github.com", 443, "GET", b"api.github.com", b"/repos/\xc3\xa9", BAD),
    # absolute-form inside the tunnel: its authority must agree too
    ("api.github.com", 443, "GET", b"api.github.com", b"https://api.github.com/repos/a", OK),
    ("api.github.com", 443, "GET", b"api.github.com", b"https://evil.test/repos/a",
     Reason.MISDIRECTED),
    ("api.github.com", 443, "GET", b"api.github.com", b"http://api.github.com/repos/a",
     Reason.MISDIRECTED),
    ("api.github.com", 443, "GET", b"api.github.com",
     b"https://api.github.com:8443/repos/a", Reason.MISDIRECTED),
    ("api.github.com", 443, "GET", b"api.github.com", b"https://api.github.com/user",
     NOT_URL),
    # IP tunnels
    ("2001:db8::1", 443, "GET", b"[2001:db8::1]", b"/ipv6/a", OK),
    ("2001:db8::1", 443, "GET", b"[2001:db8:0::1]:443", b"/ipv6/a", OK),
    ("203.0.113.7", 443, "GET", b"203.0.113.7", b"/ip/a", OK),
    ("203.0.113.7", 443, "GET", b"203.0.113.8", b"/ip/a", Reason.MISDIRECTED),
    # the blocklist and the allowlist still rule
    ("gist.github.com", 443, "GET", b"gist.github.com", b"/", Reason.DOMAIN_BLOCKED),
    ("evil.test", 443, "GET", b"evil.test", b"/", Reason.DOMAIN_NOT_ALLOWED),
    ("github.com", 443, "POST", b"github.com", b"/anything", OK),
]


@pytest.mark.parametrize(("tunnel", "port", "method", "host", "target", "reason"), BUMPED)
def test_decide_bumped(tunnel: str, port: int, method: str, host: bytes | None, target: bytes,
                       reason: Reason | None) -> None:
    decision = decide_bumped(RULES, tunnel, port, method, host, target)
    assert decision.reason == reason
    assert decision.allowed is (reason is None)


def test_misdirected_is_421() -> None:
    assert Reason.MISDIRECTED.status == 421
    assert Reason.URL_NOT_ALLOWED.status == 403
    assert Reason.UPSTREAM_TLS_FAILED.status == 502


def test_the_ca_covers_every_pattern_host() -> None:
    """The integration feeds --allow-domains plus the patterns' hosts to the CA's constraints."""
    from proxy.bump_ca import constraints_for
    c = constraints_for(["github.com", "*.example.org", "example.info", *RULES.host_entries()])
    for host in ("api.github.com", "api-v2.example.com", "a.cdn.test", "svc.example.edu",
                 "2001:db8::1", "203.0.113.7", "uploads.example.org"):
        assert c.permits(host), host
    assert not c.permits("plain.example.info.evil.test")
    assert not c.permits("203.0.113.8")
