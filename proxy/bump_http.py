"""The HTTP/1.1 requests inside a bumped connection (docs/proxy.md §11).

`BumpedHttp` is an `HttpConnection` whose transport is the client's TLS, terminated here by
the loop's TLS protocol (`tls_layer.wrap`), and whose every request is judged by
`urlrules.decide_bumped` instead of `routing.route`:

    request head -> Host must name the tunnel's host and port (421 misdirected), the blocklist,
                    the URL rules (403 url_not_allowed, 400 bad_request) -> deny: answer, close
                 -> allowed: an `Exchange` with the NORMALISED target, on an idle verified TLS
                    connection to the origin (`Bumper.pool`), or on a new one: an address the
                    proxy resolved and checked itself, then TLS 1.2 or later with the hostname
                    and chain verified (else 502 upstream_tls_failed; never relaxed)

Bodies, timeouts, keep-alive and backpressure are the plain path's. Each request's record has
`"tls": "bumped"` and `url` (without the query); the tunnel's own record is written by
`bump.BumpedConnection`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import TYPE_CHECKING, Protocol, cast

from proxy import tls_layer
from proxy.context import ConnectionContext
from proxy.errors import BadRequest, RequestError, UpstreamTlsFailed
from proxy.exchange import Exchange
from proxy.flowcontrol import tune
from proxy.http1 import RequestHead, parse_absolute_target
from proxy.http_connection import WORK, HttpConnection
from proxy.policy import Scheme
from proxy.reasons import Reason
from proxy.upstream import Pool, Upstream
from proxy.urlrules import UrlRules, decide_bumped

if TYPE_CHECKING:
    from proxy.bump_setup import Bumper


class Outer(Protocol):
    """What a `BumpedHttp` tells the connection that holds its slot (`bump.BumpedConnection`)."""

    def tls_ready(self) -> None:
        """The client's handshake completed."""
        ...

    def count(self, up: int, down: int) -> None:
        """A request is over: its byte counts, for the tunnel's record."""
        ...

    def finish(self) -> None:
        """The connection closed: write the tunnel's record, free the slot."""
        ...


class BumpedHttp(HttpConnection):
    """The requests read inside one bumped client connection (its TLS transport)."""

    tls = "bumped"

    __slots__ = ("_bumper", "_host", "_outer", "_port", "_rules", "_shown")

    def __init__(self, ctx: ConnectionContext, outer: Outer, bumper: Bumper,
                 rules: UrlRules, *, host: str, port: int, mode: str, peer: str) -> None:
        super().__init__(ctx, mode=mode)
        self._outer = outer
        self._bumper = bumper
        self._rules = rules
        self._host = host
        self._port = port
        self._shown = f"[{host}]" if ":" in host else host
        self.peer = peer

    @property
    def pool(self) -> Pool:
        return self._bumper.pool

    # -- the TLS transport -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The client's handshake completed (the outer connection holds the registry slot)."""
        self.transport = t = cast(asyncio.Transport, transport)
        tune(t)
        self._arm_timer(self._ctx.limits.head_timeout)
        self._outer.tls_ready()

    def _released(self) -> None:
        self._outer.finish()

    # -- the requests ------------------------------------------------------------------

    def _url(self, target: bytes) -> str:
        path = target.split(b"?", 1)[0].decode("latin-1")
        port = "" if self._port == 443 else f":{self._port}"
        return f"https://{self._shown}{port}{path}"

    def _dispatch(self, head: RequestHead, rest: bytes) -> None:
        started = time.time()
        ctx = self._ctx
        host, port = self._host, self._port
        method = head.method.decode("latin-1")
        if head.method == b"CONNECT":
            raise BadRequest("CONNECT inside a bumped connection")
        verdict = decide_bumped(ctx.urlrules or self._rules, host, port, method, head.host,
                                head.target)
        if verdict.target is not None:
            path = verdict.target.encode("ascii")
        else:
            path = head.target
            if not path.startswith(b"/"):
                try:
                    path = parse_absolute_target(path)[2]
                except RequestError:
                    path = b"/"
        url = self._url(path)
        decision = ctx.policy.decide(host, port, Scheme.HTTPS)
        if not verdict.allowed or not decision.allowed:
            reason = verdict.reason or decision.reason or Reason.URL_NOT_ALLOWED
            ctx.log_record(self._record(method, host, port, url, reason, reason.status, started))
            self._answer(reason.status, reason,
                         f"awf-proxy: https://{self._shown}:{port} {url} denied: {reason}")
            return
        ex = Exchange(ctx, self, head, path, decision, port, url, started)
        upstream = self._bumper.pool.take(host, port)
        if upstream is not None:
            ex.begin(upstream, rest)
            return
        self._state = WORK
        self._task = ctx.loop.create_task(self._open_exchange(ex, rest))

    async def _dial_upstream(self, ex: Exchange) -> Upstream:
        """A verified TLS connection to the origin, at an address the proxy checked itself."""
        ctx = self._ctx
        host, port = self._host, self._port
        addresses = await ctx.destinations(ex.decision, port)
        raw, _ = await ctx.dial(addresses, port, asyncio.Protocol, host)
        upstream = Upstream((host, port))
        handshake = tls_layer.wrap(ctx.loop, raw, upstream, self._bumper.upstream_ssl,
                                   server_side=False, server_hostname=host,
                                   handshake_timeout=ctx.limits.connect_timeout)
        try:
            await handshake
        except ssl.SSLError as exc:
            raw.abort()
            shown = getattr(exc, "verify_message", None) or exc.reason or exc
            raise UpstreamTlsFailed(f"TLS with {host}:{port} failed: {shown}") from exc
        except OSError as exc:  # reset, or a handshake slower than the connect timeout
            raw.abort()
            raise UpstreamTlsFailed(f"TLS with {host}:{port} failed: {exc!r}") from exc
        except BaseException:
            raw.abort()
            raise
        return upstream

    # -- the tunnel's byte counts: what its requests carried --------------------------------

    def exchange_done(self, keep_alive: bool) -> None:
        ex = self._exchange
        if ex is not None:
            self._outer.count(ex.bytes_up, ex.bytes_down)
        super().exchange_done(keep_alive)

    def exchange_failed(self, ex: Exchange, exc: RequestError) -> None:
        self._outer.count(ex.bytes_up, ex.bytes_down)
        super().exchange_failed(ex, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        ex = self._exchange
        if ex is not None:
            self._outer.count(ex.bytes_up, ex.bytes_down)
        super().connection_lost(exc)

    # -- records ---------------------------------------------------------------------------

    def _record(self, method: str, host: str, port: int, url: str | None,
                reason: Reason | None, status: int, started: float) -> dict[str, object]:
        rec = super()._record(method, host or self._host, port or self._port, url, reason,
                              status, started)
        rec["tls"] = "bumped"
        return rec
