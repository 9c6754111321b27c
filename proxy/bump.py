"""SSL bump (docs/proxy.md §11): a client connection whose TLS this proxy terminates, and
whose HTTP/1.1 requests are each checked and forwarded on a verified upstream TLS connection.

    CONNECT host:443 (allowed, bumped)   -> 200, then the client's TLS is terminated here with
    transparent TLS (allowed, bumped)       a leaf for `host` (LeafCache), in the loop's own TLS
                                            protocol (`tls_layer`); within 10 s, else closed; a
                                            first byte that is not a TLS handshake record is
                                            closed as `not_tls`
    each inner request, in order         -> `bump_http.BumpedHttp`: Host must name the tunnel's
                                            host and port (421 misdirected), the blocklist, the
                                            URL rules, then forwarded with the NORMALISED target
                                            on a pooled, verified upstream TLS connection

Responses stream with backpressure; bodies are never held whole. One access-log record for the
tunnel (written when it closes) and one per inner request, each with `"tls": "bumped"`. Every
error answer closes the connection, as on the explicit listener.
"""

from __future__ import annotations

import asyncio
import time

from proxy import tls_layer
from proxy.access_log import decision_record
from proxy.bump_http import BumpedHttp
from proxy.bump_setup import Bumper
from proxy.context import ConnectionContext, Registered
from proxy.flowcontrol import tune
from proxy.http1 import error_response
from proxy.reasons import NO_ANSWER, Reason
from proxy.urlrules import UrlRules

HANDSHAKE_TIMEOUT = 10.0  # a client handshake slower than this is closed (docs/proxy.md §11)
_TLS_HANDSHAKE = 0x16


class Plan:
    """What happens to TLS for an allowed host: bumped, an opaque tunnel, or refused."""

    BUMP = "bump"
    TUNNEL = "tunnel"
    DENY = "deny"  # a host restricted by --allow-urls that cannot be bumped: fail closed


def plan_for(ctx: ConnectionContext, host: str) -> str:
    rules = ctx.urlrules
    restricted = rules is not None and rules.restricts(host)
    bumper = ctx.bumper
    if bumper is not None and (restricted or not bumper.excluded(host)):
        return Plan.BUMP
    return Plan.DENY if restricted else Plan.TUNNEL


def start_bump(ctx: ConnectionContext, owner: Registered, transport: asyncio.Transport,
               host: str, port: int, *, peer: str, mode: str, method: str, reply: bytes,
               first: bytes, started: float, extra: dict[str, object] | None = None) -> None:
    """The one entry from CONNECT (`reply` is the 200) and from intercepted TLS (`reply`
    empty): bump the connection, or refuse a restricted host that cannot be bumped. The
    caller paused reading and gives up the transport."""
    status = 200 if reply else NO_ANSWER
    bumper, rules = ctx.bumper, ctx.urlrules
    refusal: str | None = None
    conn: BumpedConnection | None = None
    if plan_for(ctx, host) == Plan.DENY or bumper is None or rules is None:
        refusal = "the host is restricted by --allow-urls, and only a bumped connection shows URLs"
    else:
        record = decision_record(started, peer, mode, method, host, port, None, None, status)
        record.update(extra or {})
        try:
            conn = BumpedConnection(ctx, bumper, rules, peer=peer, mode=mode, host=host,
                                    port=port, record=record, started=started)
        except ValueError as exc:  # outside the CA's name constraints (a reload widened them)
            refusal = f"cannot bump {host}: {exc}"
    if conn is None:
        reason = Reason.URL_NOT_ALLOWED
        rec = decision_record(started, peer, mode, method, host, port, None, reason,
                              reason.status if reply else NO_ANSWER)
        rec.update(extra or {})
        rec["note"] = refusal
        ctx.log_record(rec)
        if reply and not transport.is_closing():
            shown = f"[{host}]" if ":" in host else host
            transport.write(error_response(reason.status, reason,
                                           f"awf-proxy: {shown}:{port} denied: {reason}"))
        transport.close()
        ctx.release(owner)
        return
    ctx.swap(owner, conn)
    transport.set_protocol(conn)
    conn.start(transport, reply=reply, first=first)


# ---------------------------------------------------------------------------- the connection


class BumpedConnection(asyncio.Protocol):
    """A client connection whose TLS this proxy terminates (after CONNECT, or intercepted).

    It holds the connection's slot in the registry and writes the tunnel's record. It is the
    socket's protocol only until the first bytes: a TLS handshake record hands the socket to
    the loop's TLS protocol (`tls_layer.wrap`), whose requests a `BumpedHttp` serves; anything
    else is closed (`not_tls`). The handshake is due within HANDSHAKE_TIMEOUT of the start."""

    def __init__(self, ctx: ConnectionContext, bumper: Bumper, rules: UrlRules, *, peer: str,
                 mode: str, host: str, port: int, record: dict[str, object],
                 started: float) -> None:
        self._ctx = ctx
        self._bumper = bumper
        self._rules = rules
        self.peer = peer
        self.mode = mode
        self.host = host
        self.port = port
        self._record = record
        self._started = started
        self._context = bumper.leaves.context_for(host)  # ValueError: outside the CA's names
        self.transport: asyncio.Transport | None = None
        self._inner: BumpedHttp | None = None  # once the first bytes were a TLS handshake
        self._ready = False  # the handshake completed
        self._timer: asyncio.TimerHandle | None = None
        self._draining = False
        self._finished = False
        self.bytes_up = 0  # the inner requests' counts (their heads as sent, and bodies)
        self.bytes_down = 0

    # -- before TLS: the raw socket's protocol ------------------------------------------------

    def start(self, transport: asyncio.Transport, *, reply: bytes, first: bytes) -> None:
        """Take over `transport` (reading paused by the caller) and bump it."""
        self.transport = transport
        tune(transport)
        if reply:
            transport.write(reply)
        self._timer = self._ctx.loop.call_later(HANDSHAKE_TIMEOUT, self._timed_out)
        if first:
            self._begin_tls(first)
        elif not transport.is_closing():
            transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            self._begin_tls(data)

    def eof_received(self) -> bool:
        return False  # the client left before its handshake

    def connection_lost(self, exc: Exception | None) -> None:
        # the raw socket's own: called only if it closed before TLS was put on it
        self.finish()

    def _begin_tls(self, first: bytes) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        if first[0] != _TLS_HANDSHAKE:
            self._note(Reason.NOT_TLS, "the client did not start TLS", NO_ANSWER)
            t.abort()
            return
        t.pause_reading()
        inner = self._inner = BumpedHttp(self._ctx, self, self._bumper, self._rules,
                                         host=self.host, port=self.port, mode=self.mode,
                                         peer=self.peer)
        handshake = tls_layer.wrap(self._ctx.loop, t, inner, self._context, server_side=True,
                                   first=first, handshake_timeout=HANDSHAKE_TIMEOUT + 1)
        handshake.add_done_callback(self._handshake_ended)

    # -- the handshake's outcome ---------------------------------------------------------------

    def tls_ready(self) -> None:
        """From BumpedHttp.connection_made: the client finished its handshake."""
        self._ready = True
        self._cancel_timer()
        if self._draining and self._inner is not None:
            self._inner.drain()

    def _handshake_ended(self, fut: asyncio.Future[None]) -> None:
        exc = None if fut.cancelled() else fut.exception()
        if exc is None and not fut.cancelled():
            return
        self._cancel_timer()
        if self._record.get("reason") is None:  # not already a refusal (a slow handshake)
            shown = getattr(exc, "reason", None) or exc or "cancelled"
            self._record["note"] = f"client TLS handshake failed: {shown}"
        if self.transport is not None:
            self.transport.abort()
        self.finish()

    def _timed_out(self) -> None:
        self._timer = None
        if self._ready:
            return
        self._note(Reason.HEAD_TIMEOUT, f"no TLS handshake within {HANDSHAKE_TIMEOUT:g} s",
                   NO_ANSWER)
        if self.transport is not None:
            self.transport.abort()

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    # -- for the registry ----------------------------------------------------------------------

    def drain(self) -> None:
        self._draining = True
        if self._ready and self._inner is not None:
            self._inner.drain()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- records -------------------------------------------------------------------------------

    def count(self, up: int, down: int) -> None:
        self.bytes_up += up
        self.bytes_down += down

    def _note(self, reason: Reason, note: str, status: int) -> None:
        """The tunnel's record ends as a refusal (not_tls, a slow handshake)."""
        rec = decision_record(self._started, self.peer, self.mode,
                              str(self._record.get("method", "-")), self.host, self.port, None,
                              reason, status)
        rec.update({k: v for k, v in self._record.items() if k not in rec})
        rec["note"] = note
        self._record = rec

    def finish(self) -> None:
        """The connection is over: the tunnel's record, and its slot freed (once)."""
        if self._finished:
            return
        self._finished = True
        self._cancel_timer()
        out = dict(self._record)
        out["bytes_up"] = self.bytes_up
        out["bytes_down"] = self.bytes_down
        out["duration_ms"] = round((time.time() - self._started) * 1000, 1)
        out["tls"] = "bumped"
        self._ctx.log_record(out)
        self._ctx.release(self)
