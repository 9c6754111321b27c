"""Where one request head goes: a pure function from (head, policy, listener) to a `Route`.

    explicit listener     CONNECT host:port             -> TUNNEL  (policy: https)
                          GET http://host[:port]/path   -> FORWARD (policy: http; Host must agree)
                          GET /healthz                  -> HEALTH
                          any other origin-form         -> BadRequest (this is a proxy)
    transparent listener  origin-form + Host            -> FORWARD to Host's name on the original
                                                           destination's port (a port in Host
                                                           must be that port: else BadRequest)
                          absolute-form                 -> FORWARD, as on the explicit listener
                          CONNECT                       -> BadRequest

A denial is a `Decision` inside the route, not an exception; a malformed request raises a
`RequestError` (`BadRequest`, `HostMismatch`). A bad name is reported before a Host mismatch
(docs/proxy.md §6 order). A FORWARD route may ride a kept-alive origin connection only if that
connection was dialled for the same `key` (normalised host, port): `reuses()`.
"""

from __future__ import annotations

import enum
import hmac
from typing import NamedTuple

from proxy.addr import IPAddress, embedded_ipv4
from proxy.errors import BadRequest, HostMismatch, RequestError
from proxy.http1 import RequestHead, parse_absolute_target, parse_authority
from proxy.policy import Decision, Policy, Scheme
from proxy.reasons import Reason


class Kind(enum.Enum):
    TUNNEL = "tunnel"  # CONNECT: a byte tunnel to decision.host:port
    FORWARD = "forward"  # plain HTTP: forward the request to decision.host:port
    HEALTH = "health"  # the proxy's own /healthz


class Route(NamedTuple):
    """A request's route. A NamedTuple: one is made per request on the hot path."""

    kind: Kind
    decision: Decision | None  # None for HEALTH
    port: int = 0
    path: bytes = b""  # FORWARD: the origin-form target the origin gets
    url: str | None = None  # FORWARD: the URL logged

    @property
    def key(self) -> tuple[str, int]:
        """The (host, port) an origin connection for this route is dialled and pooled under."""
        return (self.decision.host if self.decision is not None else "", self.port)


_HEALTH = Route(Kind.HEALTH, None)


def route(head: RequestHead, policy: Policy, *, transparent_port: int | None = None) -> Route:
    """The route of `head` on an explicit listener (`transparent_port` None) or on a
    transparent one (the original destination's port)."""
    target = head.target
    if head.method == b"CONNECT":
        if transparent_port is not None:
            raise BadRequest("CONNECT goes to the explicit proxy port, not intercepted")
        authority = parse_authority(target, default_port=None)
        decision = policy.decide(authority.host, authority.port, Scheme.HTTPS)
        return Route(Kind.TUNNEL, decision, authority.port)
    if target.startswith(b"/"):
        if transparent_port is None:
            if head.method == b"GET" and target.split(b"?", 1)[0] == b"/healthz":
                return _HEALTH
            raise BadRequest(
                "this is a proxy: send an absolute URI (GET http://host/path) or CONNECT host:port"
            )
        if head.host is None:
            raise BadRequest("an intercepted HTTP request needs a Host header")
        port = transparent_port
        given = parse_authority(head.host, default_port=port)
        if given.port != port:  # the name is checked, dialled and logged with the port used
            raise BadRequest(
                f"Host {head.host.decode('latin-1')!r} names port {given.port}, but the "
                f"connection was made to port {port}; the port must match (or be left out)"
            )
        host = given.host
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}{'' if port == 80 else f':{port}'}{target.decode('latin-1')}"
        return Route(Kind.FORWARD, policy.decide(host, port, Scheme.HTTP), port, target, url)
    scheme, authority, path = parse_absolute_target(target)
    if scheme != b"http":
        raise BadRequest(
            "absolute https:// URIs are not proxied; use CONNECT host:443 (HTTPS_PROXY)"
        )
    host, port = authority.host, authority.port
    decision = policy.decide(host, port, Scheme.HTTP)
    if (
        decision.reason != Reason.BAD_REQUEST  # a bad name is reported first
        and head.host is not None
        and not same_authority(head.host, host, port, target)
    ):
        raise HostMismatch(
            f"Host {head.host.decode('latin-1')!r} does not match the URI's authority"
        )
    return Route(Kind.FORWARD, decision, port, path, target.decode("latin-1"))


def health_allowed(peer: IPAddress | None, authorization: bytes | None,
                   token: str | None) -> bool:
    """May this client read /healthz? Loopback clients may; with --healthz-token, so may any
    client sending `Authorization: Bearer <token>` (compared in constant time)."""
    if peer is not None:
        v4 = embedded_ipv4(peer) if peer.version == 6 else None
        if peer.is_loopback or (v4 is not None and v4.is_loopback):
            return True
    if token is None or authorization is None:
        return False
    scheme, _, given = authorization.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token.encode())


def reuses(r: Route, key: tuple[str, int]) -> bool:
    """May an idle origin connection dialled for `key` carry this request?"""
    return (
        r.kind is Kind.FORWARD and r.decision is not None and r.decision.allowed and r.key == key
    )


def same_authority(host_header: bytes, host: str, port: int, target: bytes = b"") -> bool:
    """Does the Host header name the URI's authority (default port may be omitted)?"""
    if target:  # fast path: the header is the URI's authority, byte for byte
        start = target.find(b"://") + 3
        end = target.find(b"/", start)
        if target[start:end if end >= 0 else None].lower() == host_header.lower():
            return True
    try:
        given = parse_authority(host_header, default_port=80)
    except RequestError:
        return False
    return given.port == port and given.host.lower().rstrip(".") == host.lower().rstrip(".")
