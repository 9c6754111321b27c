"""Routing vectors: where a request head goes (proxy/routing.py), as a table like the policy's.

Each row is (listener, request head, expected route or error): explicit absolute-URI requests,
CONNECT, /healthz, intercepted origin-form requests, and the near misses that must be refused.
"""

from __future__ import annotations

import ipaddress

import pytest

from proxy.errors import BadRequest, HostMismatch, RequestError
from proxy.http1 import HeadParser, RequestHead
from proxy.policy import Policy
from proxy.reasons import Reason
from proxy.routing import Kind, health_allowed, reuses, route

POLICY = Policy.build(allow_domains=["example.com", "http://plain.test", "https://tls.test"],
                      allow_ports=[8080])

EXPLICIT = None  # the transparent_port of an explicit listener


def head(text: str) -> RequestHead:
    parsed = HeadParser().feed(text.replace("\n", "\r\n").encode() + b"\r\n")
    assert parsed is not None
    return parsed


# (listener, head, kind, host, port, path, url, reason)
ROUTES: list[tuple[int | None, str, Kind, str, int, bytes, str | None, Reason | None]] = [
    # explicit absolute-URI forwarding; Host agrees (default port may be omitted)
    (EXPLICIT, "GET http://example.com/a?b HTTP/1.1\nHost: example.com\n",
     Kind.FORWARD, "example.com", 80, b"/a?b", "http://example.com/a?b", None),
    (EXPLICIT, "GET http://Example.COM:80/ HTTP/1.1\nHost: example.com\n",
     Kind.FORWARD, "example.com", 80, b"/", "http://Example.COM:80/", None),
    (EXPLICIT, "GET http://example.com:8080 HTTP/1.1\nHost: example.com:8080\n",
     Kind.FORWARD, "example.com", 8080, b"/", "http://example.com:8080", None),
    (EXPLICIT, "GET http://example.com?q HTTP/1.1\n",
     Kind.FORWARD, "example.com", 80, b"/?q", "http://example.com?q", None),
    (EXPLICIT, "POST http://plain.test/x HTTP/1.1\nHost: plain.test\nContent-Length: 0\n",
     Kind.FORWARD, "plain.test", 80, b"/x", "http://plain.test/x", None),
    # ... and its denials are values, not errors
    (EXPLICIT, "GET http://tls.test/ HTTP/1.1\n",
     Kind.FORWARD, "tls.test", 80, b"/", "http://tls.test/", Reason.SCHEME_DENIED),
    (EXPLICIT, "GET http://example.com.evil.test/ HTTP/1.1\n",
     Kind.FORWARD, "example.com.evil.test", 80, b"/", "http://example.com.evil.test/",
     Reason.DOMAIN_NOT_ALLOWED),
    (EXPLICIT, "GET http://example.com:9999/ HTTP/1.1\nHost: example.com:9999\n",
     Kind.FORWARD, "example.com", 9999, b"/", "http://example.com:9999/", Reason.PORT_DENIED),
    (EXPLICIT, "GET http://127.0.0.1/ HTTP/1.1\n",
     Kind.FORWARD, "127.0.0.1", 80, b"/", "http://127.0.0.1/", Reason.IP_LITERAL),
    # CONNECT
    (EXPLICIT, "CONNECT example.com:443 HTTP/1.1\nHost: example.com:443\n",
     Kind.TUNNEL, "example.com", 443, b"", None, None),
    (EXPLICIT, "CONNECT tls.test:443 HTTP/1.1\n", Kind.TUNNEL, "tls.test", 443, b"", None, None),
    (EXPLICIT, "CONNECT plain.test:443 HTTP/1.1\n",
     Kind.TUNNEL, "plain.test", 443, b"", None, Reason.SCHEME_DENIED),
    (EXPLICIT, "CONNECT example.com:22 HTTP/1.1\n",
     Kind.TUNNEL, "example.com", 22, b"", None, Reason.PORT_DENIED),
    # the proxy's own health answer
    (EXPLICIT, "GET /healthz HTTP/1.1\nHost: x\n", Kind.HEALTH, "", 0, b"", None, None),
    (EXPLICIT, "GET /healthz?verbose HTTP/1.1\n", Kind.HEALTH, "", 0, b"", None, None),
    # transparent: the name is Host's, the port the original destination's
    (80, "GET /a HTTP/1.1\nHost: example.com\n",
     Kind.FORWARD, "example.com", 80, b"/a", "http://example.com/a", None),
    (8080, "GET /a HTTP/1.1\nHost: example.com\n",
     Kind.FORWARD, "example.com", 8080, b"/a", "http://example.com:8080/a", None),
    (80, "GET /healthz HTTP/1.1\nHost: example.com\n",
     Kind.FORWARD, "example.com", 80, b"/healthz", "http://example.com/healthz", None),
    (80, "GET / HTTP/1.1\nHost: other.test\n",
     Kind.FORWARD, "other.test", 80, b"/", "http://other.test/", Reason.DOMAIN_NOT_ALLOWED),
    (443, "GET / HTTP/1.1\nHost: tls.test\n",
     Kind.FORWARD, "tls.test", 443, b"/", "http://tls.test:443/", Reason.SCHEME_DENIED),
    (8080, "GET /a HTTP/1.1\nHost: example.com:8080\n",
     Kind.FORWARD, "example.com", 8080, b"/a", "http://example.com:8080/a", None),
    (80, "GET /a HTTP/1.1\nHost: example.com:80\n",
     Kind.FORWARD, "example.com", 80, b"/a", "http://example.com/a", None),
    (80, "GET http://example.com/x HTTP/1.1\nHost: example.com\n",
     Kind.FORWARD, "example.com", 80, b"/x", "http://example.com/x", None),
]


@pytest.mark.parametrize(
    ("listener", "text", "kind", "host", "port", "path", "url", "reason"), ROUTES
)
def test_route(listener: int | None, text: str, kind: Kind, host: str, port: int, path: bytes,
               url: str | None, reason: Reason | None) -> None:
    r = route(head(text), POLICY, transparent_port=listener)
    assert r.kind is kind
    if kind is Kind.HEALTH:
        assert r.decision is None
        return
    assert r.decision is not None
    assert (r.decision.host, r.port, r.path, r.url) == (host, port, path, url)
    assert r.decision.reason == reason
    assert r.decision.allowed == (reason is None)


REFUSED: list[tuple[int | None, str, type[RequestError]]] = [
    # an explicit listener is a proxy: origin-form other than /healthz is refused
    (EXPLICIT, "GET / HTTP/1.1\nHost: example.com\n", BadRequest),
    (EXPLICIT, "POST /healthz HTTP/1.1\nContent-Length: 0\n", BadRequest),
    (EXPLICIT, "GET https://example.com/ HTTP/1.1\n", BadRequest),
    (EXPLICIT, "GET ftp://example.com/ HTTP/1.1\n", BadRequest),
    (EXPLICIT, "CONNECT example.com HTTP/1.1\n", BadRequest),  # no port
    (EXPLICIT, "CONNECT example.com:0 HTTP/1.1\n", BadRequest),
    # the Host header must name the URI's authority
    (EXPLICIT, "GET http://example.com/ HTTP/1.1\nHost: other.test\n", HostMismatch),
    (EXPLICIT, "GET http://example.com/ HTTP/1.1\nHost: example.com:8080\n", HostMismatch),
    (EXPLICIT, "GET http://example.com:8080/ HTTP/1.1\nHost: example.com\n", HostMismatch),
    # transparent: no CONNECT, and a Host is needed
    (443, "CONNECT example.com:443 HTTP/1.1\n", BadRequest),
    (80, "GET / HTTP/1.0\n", BadRequest),
    # transparent: a port in Host must be the original destination's (issue 20)
    (80, "GET / HTTP/1.1\nHost: example.com:8080\n", BadRequest),
    (8080, "GET / HTTP/1.1\nHost: example.com:80\n", BadRequest),
    (8080, "GET / HTTP/1.1\nHost: example.com:443\n", BadRequest),
]


@pytest.mark.parametrize(("listener", "text", "error"), REFUSED)
def test_route_refused(listener: int | None, text: str, error: type[RequestError]) -> None:
    with pytest.raises(error):
        route(head(text), POLICY, transparent_port=listener)


def test_a_bad_name_is_reported_before_a_host_mismatch() -> None:
    r = route(head("GET http://exa$mple.com/ HTTP/1.1\nHost: other.test\n"), POLICY)
    assert r.decision is not None
    assert r.decision.reason == Reason.BAD_REQUEST


# (first request, second request on the same kept-alive client, reuses the first's origin?)
REUSE: list[tuple[str, str, bool]] = [
    ("GET http://example.com/a HTTP/1.1\n", "GET http://example.com/b HTTP/1.1\n", True),
    ("GET http://example.com/ HTTP/1.1\n", "GET http://EXAMPLE.com./ HTTP/1.1\n", True),
    ("GET http://example.com/ HTTP/1.1\n", "GET http://example.com:80/ HTTP/1.1\n", True),
    ("GET http://example.com/ HTTP/1.1\n", "GET http://sub.example.com/ HTTP/1.1\n", False),
    ("GET http://example.com/ HTTP/1.1\n", "GET http://example.com:8080/ HTTP/1.1\n", False),
    ("GET http://example.com/ HTTP/1.1\n", "CONNECT example.com:80 HTTP/1.1\n", False),
    ("GET http://example.com/ HTTP/1.1\n", "GET http://other.test/ HTTP/1.1\n", False),
]


@pytest.mark.parametrize(("first", "second", "reused"), REUSE)
def test_same_authority_reuses_a_kept_alive_upstream(first: str, second: str,
                                                     reused: bool) -> None:
    key = route(head(first), POLICY).key
    assert reuses(route(head(second), POLICY), key) == reused


TOKEN = "s3cret-token.value"

# (peer, Authorization header, --healthz-token, may read /healthz)
HEALTH_READERS: list[tuple[str | None, bytes | None, str | None, bool]] = [
    ("127.0.0.1", None, None, True),
    ("127.8.9.10", None, None, True),
    ("::1", None, None, True),
    ("::ffff:127.0.0.1", None, None, True),
    ("192.0.2.7", None, None, False),
    ("10.0.0.1", None, None, False),
    ("::ffff:192.0.2.7", None, None, False),
    (None, None, None, False),
    ("192.0.2.7", b"Bearer " + TOKEN.encode(), None, False),  # no token configured
    ("192.0.2.7", b"Bearer " + TOKEN.encode(), TOKEN, True),
    ("192.0.2.7", b"bearer " + TOKEN.encode(), TOKEN, True),
    ("192.0.2.7", b"Bearer " + TOKEN.encode() + b"x", TOKEN, False),
    ("192.0.2.7", b"Bearer " + TOKEN[:-1].encode(), TOKEN, False),
    ("192.0.2.7", b"Basic " + TOKEN.encode(), TOKEN, False),
    ("192.0.2.7", TOKEN.encode(), TOKEN, False),
    ("192.0.2.7", b"Bearer", TOKEN, False),
]


@pytest.mark.parametrize(("peer", "authorization", "token", "allowed"), HEALTH_READERS)
def test_health_allowed(peer: str | None, authorization: bytes | None, token: str | None,
                        allowed: bool) -> None:
    ip = ipaddress.ip_address(peer) if peer is not None else None
    assert health_allowed(ip, authorization, token) == allowed
