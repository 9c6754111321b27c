"""One accepted client connection that speaks HTTP/1.1 to the proxy: explicit requests
(absolute-URI forwarding, CONNECT, /healthz) or, handed over by `TransparentConnection`,
intercepted plain HTTP.

One `HttpConnection` per socket, an asyncio Protocol driven by `data_received`:

    HEAD --head--> route (routing.route) --deny--> answer, close
         --TUNNEL allowed--> WORK (resolve, dial) --> the transport gets a TunnelSide
         --FORWARD allowed--> [WORK] --> BODY (request body streams up)
                                      --> RESPONSE (response streams down) --> HEAD (keep-alive)

A request whose origin connection is pooled never leaves the callback: no task, no DNS. The
request and its response are an `exchange.Exchange`. Anything unexpected closes this connection
(fail closed) and leaves the others alone.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback
from functools import partial
from ipaddress import ip_address
from typing import cast

from proxy.access_log import Entry, decision_record, peer_text
from proxy.addr import IPAddress
from proxy.context import ConnectionContext
from proxy.errors import (
    ConnectFailed,
    ConnectTimeout,
    HeadTimeout,
    RequestError,
    ResponseTimeout,
    SelfConnection,
)
from proxy.exchange import Exchange
from proxy.flowcontrol import tune
from proxy.hostnames import normalise_name
from proxy.http1 import BodyFramer, HeadParser, RequestHead, error_response
from proxy.parent import ParentFailed, ParentTimeout
from proxy.policy import Decision
from proxy.reasons import Reason
from proxy.routing import Kind, health_allowed, route
from proxy.tunnel import Opening, TunnelSide, open_tunnel, start_tunnel
from proxy.upstream import Pool, Upstream

HEAD, WORK, BODY, RESPONSE, CLOSED = range(5)

_ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
PENDING_LIMIT = 64 * 1024  # bytes read ahead while a request is in progress; then pause


def send_error(transport: asyncio.Transport | None, status: int, reason: str, line: str) -> None:
    """Answer `status` with `X-Awf-Reason: reason` and close, unless the socket is closing."""
    if transport is not None and not transport.is_closing():
        transport.write(error_response(status, reason, line))
        transport.close()


def report_bug(transport: asyncio.Transport | None) -> None:
    """An exception that is not a RequestError is a bug: print it and close that connection
    only (fail closed); every other connection goes on."""
    print("awf-proxy: internal error; closing one connection:", file=sys.stderr)
    traceback.print_exc(file=sys.stderr)
    if transport is not None:
        transport.abort()


def _host_name(head: RequestHead) -> str:
    """The name in a request's Host field, normalised; "" when it holds none."""
    raw = (head.header(b"host") or b"").decode("latin-1")
    try:
        return normalise_name(raw.rsplit(":", 1)[0] if raw.count(":") == 1 else raw)
    except ValueError:
        return ""


def deny_line(host: str, port: int, reason: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"awf-proxy: {shown}:{port} denied: {reason}"


class HttpConnection(asyncio.Protocol):
    tls: str | None = None  # the records' `tls` field: "bumped" in bump_http.BumpedHttp

    __slots__ = (
        "_body",
        "_ctx",
        "_deadline",
        "_exchange",
        "_orig",
        "_orig_ip",
        "_parser",
        "_pending",
        "_state",
        "_task",
        "_timer",
        "_timer_at",
        "_transparent_port",
        "_up_paused",
        "mode",
        "peer",
        "transport",
    )

    def __init__(
        self, ctx: ConnectionContext, *, mode: str = "explicit", orig: tuple[str, int] = ("", 0)
    ) -> None:
        self._ctx = ctx
        self.mode = mode  # "transparent": redirected traffic, origin-form requests named by Host
        self._orig = orig  # transparent: the original destination (address, port)
        self._transparent_port = orig[1] if mode == "transparent" else None
        self._orig_ip: IPAddress | None = None  # the same address, parsed on first use
        self._parser = HeadParser()
        self._state = HEAD
        self._pending = b""
        # one timer per connection for --head-timeout and --response-timeout, moved lazily
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # loop time the timer fires at
        self._deadline = 0.0  # loop time by which the awaited head (request or response) is due
        self._task: asyncio.Task[None] | Opening | None = None  # either: cancel() on loss
        self._exchange: Exchange | None = None
        self._body: BodyFramer | None = None
        self._up_paused = False
        self.peer = "unknown"
        self.transport: asyncio.Transport | None = None

    @property
    def pool(self) -> Pool:
        """Where an exchange puts back a reusable origin connection."""
        return self._ctx.pool

    # -- asyncio callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = t = cast(asyncio.Transport, transport)
        self.peer = peer_text(t)
        ctx = self._ctx
        if not ctx.admit(self):
            ctx.log_record(self._record("-", "", 0, None, Reason.OVERLOADED, 503, time.time()))
            t.write(
                error_response(
                    503, Reason.OVERLOADED, "awf-proxy: too many connections: overloaded",
                    extra=(("Retry-After", "1"),),
                )
            )
            t.close()
            self._state = CLOSED
            return
        tune(t)
        self._arm_timer(self._ctx.limits.head_timeout)

    def adopt(
        self, transport: asyncio.Transport, client: str, head: RequestHead, rest: bytes
    ) -> None:
        """Take over an admitted transport whose first head the sniffer already parsed
        (intercepted HTTP): it is handled as if it had just been read here."""
        self.transport = transport
        self.peer = client
        try:
            self._dispatch(head, rest)
        except RequestError as exc:
            self._fail(exc)
        except Exception:  # a bug: fail closed on this connection only
            self._bug()

    def data_received(self, data: bytes) -> None:
        state = self._state
        try:
            if state == HEAD:
                self._read_head(data)
            elif state == BODY:
                self._request_body(data)
            else:  # a pipelined request, or what raced in: kept, read on later (bounded)
                self._pending += data
                if len(self._pending) > PENDING_LIMIT:
                    self._pause()
        except RequestError as exc:
            self._fail(exc)
        except Exception:  # a bug: fail closed on this connection only
            self._bug()

    def eof_received(self) -> bool:
        # The client closed. With no request in progress that ends the connection; with one
        # (waiting for its origin or its response), the client gave up: connection_lost aborts
        # the exchange and closes its origin connection, and the slot is freed. Reading is not
        # paused while an answer is awaited (only past PENDING_LIMIT), so this is seen at once.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = CLOSED
        self._cancel_timer()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        ex, self._exchange = self._exchange, None
        if ex is not None:
            ex.abandon()
        self._released()

    def _released(self) -> None:
        """The connection is over: its slot in the registry is free."""
        self._ctx.release(self)

    def pause_writing(self) -> None:  # the client's send buffer is full
        ex = self._exchange
        if ex is not None:
            ex.pause_reading()

    def resume_writing(self) -> None:
        ex = self._exchange
        if ex is not None:
            ex.resume_reading()

    # -- for the server ----------------------------------------------------------------

    def drain(self) -> None:
        if self._state == HEAD and self._parser.pending == 0 and not self._pending:
            self._close()  # idle: a FIN, which keep-alive clients expect at any time
        # otherwise the request in progress finishes; its answer says close (ctx.draining)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- request heads -----------------------------------------------------------------

    def _read_head(self, data: bytes) -> None:
        head = self._parser.feed(data)
        if head is not None:
            self._dispatch(head, self._parser.take_rest())

    def _dispatch(self, head: RequestHead, rest: bytes) -> None:
        """One complete request head: a tunnel, a forwarded request, /healthz or an error."""
        started = time.time()
        r = route(head, self._ctx.policy, transparent_port=self._transparent_port)
        decision = r.decision
        if decision is None:
            self._health(head)
        elif not decision.allowed:
            self._deny(head.method, decision, r.port, r.url, started)
        elif r.kind is Kind.TUNNEL and self._bump(decision, r.port, rest, started):
            return  # bumped, or refused (a host restricted by --allow-urls: docs/proxy.md §11)
        elif r.kind is Kind.TUNNEL:
            self._pause()
            self._state = WORK
            self._start_tunnel(decision, r.port, rest, started)
        else:
            self._forward(head, rest, decision, r.port, r.path, r.url, started)

    def _bump(self, decision: Decision, port: int, rest: bytes, started: float) -> bool:
        """An allowed CONNECT under --ssl-bump or --allow-urls: True if `bump.start_bump` took
        the connection (bumped, or refused); False for an opaque tunnel."""
        if self._ctx.urlrules is None:
            return False
        from proxy.bump import Plan, plan_for, start_bump

        if plan_for(self._ctx, decision.host) == Plan.TUNNEL:
            return False
        t = self.transport
        if t is None:
            return True
        self._cancel_timer()
        self._pause()
        self._state = CLOSED  # the transport now belongs to the bumped connection
        first, self._pending = rest + self._pending, b""
        start_bump(self._ctx, self, t, decision.host, port, peer=self.peer, mode=self.mode,
                   method="CONNECT", reply=_ESTABLISHED, first=first, started=started)
        return True

    def _health(self, head: RequestHead) -> None:
        t = self.transport
        if t is None:
            return
        peer = t.get_extra_info("peername")
        try:
            peer_ip = ip_address(peer[0].split("%")[0]) if peer else None
        except ValueError:
            peer_ip = None
        if not health_allowed(peer_ip, head.header(b"authorization"), self._ctx.healthz_token):
            # --- logged with the name in its Host field, so that the sandbox self-test's probe
            # (Host: netfilter.selftest.NAME) is known as its own in the run's summary ---
            exc = SelfConnection("/healthz answers loopback clients, or a client sending "
                                 "'Authorization: Bearer <--healthz-token>'")
            self._ctx.log_record(self._record("GET", _host_name(head), 0, None, exc.reason,
                                              exc.status, time.time()))
            self._answer(exc.status, exc.reason, f"awf-proxy: {exc.reason}: {exc}")
            return
        body = json.dumps(self._ctx.health()).encode() + b"\n"
        t.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        t.close()
        self._state = CLOSED

    def _forward(
        self, head: RequestHead, rest: bytes, decision: Decision, port: int, path: bytes,
        url: str | None, started: float,
    ) -> None:
        """Forward one allowed plain-HTTP request, on a pooled origin connection if one is idle."""
        ctx = self._ctx
        if self._transparent_port is not None:
            orig_ip = self._orig_ip
            if orig_ip is None:  # once per connection (a ValueError here is a bug: fail closed)
                orig_ip = self._orig_ip = ip_address(self._orig[0].split("%")[0])
            if ctx.is_self(orig_ip, port):
                raise SelfConnection(f"{self._orig[0]}:{port} is this proxy")
        rules = ctx.urlrules
        if rules is not None and rules.restricts(decision.host):  # --allow-urls, plain HTTP
            from proxy.urlrules import decide_url

            verdict = decide_url(rules, head.method.decode("latin-1"), "http", decision.host,
                                 port, path.decode("latin-1"))
            if not verdict.allowed:
                reason = verdict.reason or Reason.URL_NOT_ALLOWED
                self._ctx.log_record(self._record(head.method.decode("latin-1"),
                                                  decision.host, port, url, reason,
                                                  reason.status, started))
                self._answer(reason.status, reason, deny_line(decision.host, port, reason))
                return
            if verdict.target is not None:
                path = verdict.target.encode("ascii")
        ex = Exchange(ctx, self, head, path, decision, port, url, started)
        upstream = ctx.pool.take(decision.host, port)
        if upstream is not None:
            ex.begin(upstream, rest)
            return
        self._state = WORK  # reading goes on: a client that gives up is noticed
        self._task = ctx.loop.create_task(self._open_exchange(ex, rest))

    # -- async steps (DNS, connect) ------------------------------------------------------

    def _start_tunnel(self, decision: Decision, port: int, rest: bytes, started: float) -> None:
        """Dial and join without a task when the addresses are known at once (tunnel.Opening
        calls back tunnel_opened or tunnel_failed); with DNS to wait for, in a task."""
        t = self.transport
        if t is None:
            return
        # logged when the tunnel ends (tunnel.ended fills in the byte counts)
        record = Entry(started, started, self.peer, self.mode, "CONNECT", decision.host, port,
                       None, "allow", None, 200, 0, 0)
        try:
            opening = start_tunnel(self._ctx, self, t, decision, port, reply=_ESTABLISHED,
                                   first_up=rest, record=record, started=started)
        except RequestError as exc:
            self.tunnel_failed(exc, decision.host, port, started)
            return
        if opening is not None:
            if self._state == WORK:  # not already opened or failed
                self._task = opening
            return
        self._task = self._ctx.loop.create_task(self._open_tunnel(t, decision, port, rest, record))

    async def _open_tunnel(
        self, t: asyncio.Transport, decision: Decision, port: int, rest: bytes, record: Entry
    ) -> None:
        try:
            mine = await open_tunnel(self._ctx, self, t, decision, port, reply=_ESTABLISHED,
                                     first_up=rest, record=record, started=record.started)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.tunnel_failed(exc, decision.host, port, record.started)
            return
        self.tunnel_opened(mine)

    def tunnel_opened(self, mine: TunnelSide | None) -> None:
        self._task = None
        t = self.transport
        if mine is None or t is None:
            return
        self._cancel_timer()
        self._state = CLOSED  # this object is done; the transport now belongs to the tunnel
        if self._pending:
            mine.data_received(self._pending)
            self._pending = b""
        t.resume_reading()

    def tunnel_failed(self, exc: Exception, host: str, port: int, started: float) -> None:
        """A RequestError is answered and logged; anything else is a bug (called inside the
        except block that caught it)."""
        self._task = None
        if not isinstance(exc, RequestError):
            self._bug()
            return
        self._fail(exc, method=b"CONNECT", host=host, port=port, started=started)

    async def _open_exchange(self, ex: Exchange, rest: bytes) -> None:
        try:
            upstream = await self._dial_upstream(ex)
            self._task = None
            if self._state == CLOSED:
                upstream.close()
                return
            pending, self._pending = self._pending, b""
            ex.begin(upstream, rest + pending)  # request body errors are answered inside
        except RequestError as exc:
            self._task = None
            ex.fail(exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._task = None
            self._bug()

    async def _dial_upstream(self, ex: Exchange) -> Upstream:
        """A new origin connection for `ex`, to an address checked for it (RequestError if
        none can be had)."""
        ctx = self._ctx
        addresses = await ctx.destinations(ex.decision, ex.port)
        _, upstream = await ctx.dial(addresses, ex.port,
                                     partial(Upstream, (ex.decision.host, ex.port)),
                                     ex.decision.host)
        return upstream

    # -- for the exchange (exchange.ExchangeClient) -----------------------------------------

    def _request_body(self, data: bytes) -> None:
        ex, body = self._exchange, self._body
        if ex is None or body is None:
            self._pending += data
            return
        try:
            n = body.feed(data)
        except RequestError as exc:  # bad request framing: this request fails, logged once
            self._body = None
            ex.fail(exc)
            return
        if n:
            ex.send_up(data[:n] if n < len(data) else data)
        if body.done:
            self._body = None
            self._state = RESPONSE
            if n < len(data):
                self._pending += data[n:]
            ex.request_sent()
            self._await_response()

    def exchange_started(self, ex: Exchange, framer: BodyFramer | None, rest: bytes) -> None:
        self._exchange = ex
        self._body = framer
        self._state = BODY if framer is not None else RESPONSE
        if framer is None:
            self._pending = rest + self._pending
            ex.request_sent()
            self._await_response()
        else:
            self._resume()
            if rest:
                self._request_body(rest)

    def exchange_done(self, keep_alive: bool) -> None:
        """The response was written completely; wait for the next request or close."""
        self._exchange = None
        self._body = None
        t = self.transport
        if t is None or self._state == CLOSED:
            return
        if not keep_alive or (self._ctx.draining and not self._pending):
            self._close()
            return
        self._state = HEAD
        self._arm_timer(self._ctx.limits.head_timeout)
        pending, self._pending = self._pending, b""
        self._resume()
        if pending:
            self.data_received(pending)

    def exchange_failed(self, ex: Exchange, exc: RequestError) -> None:
        self._exchange = None
        self._fail(exc, method=ex.head.method, host=ex.decision.host, port=ex.port, url=ex.url,
                   started=ex.started)

    def upstream_paused(self, paused: bool) -> None:
        self._up_paused = paused
        if paused:
            self._pause()
        elif self._state == BODY:
            self._resume()

    def redial(self, ex: Exchange) -> None:
        self._state = WORK
        self._task = self._ctx.loop.create_task(self._open_exchange(ex, b""))

    # -- answers and endings -----------------------------------------------------------------

    def _deny(
        self, method: bytes, decision: Decision, port: int, url: str | None, started: float
    ) -> None:
        reason = decision.reason or Reason.DOMAIN_NOT_ALLOWED
        status = reason.status
        rec = self._record(method.decode("latin-1"), decision.host, port, url, reason, status,
                           started)
        self._ctx.log_record(rec)
        self._answer(status, reason, deny_line(decision.host, port, reason))

    def _fail(
        self,
        exc: RequestError,
        *,
        method: bytes | None = None,
        host: str = "",
        port: int = 0,
        url: str | None = None,
        started: float | None = None,
    ) -> None:
        """Answer a RequestError on this connection and close it."""
        if self._state == CLOSED:
            return
        reason = exc.reason
        m = method.decode("latin-1") if method is not None else "-"
        rec = self._record(m, host, port, url, reason, exc.status, started or time.time())
        # --upstream-proxy: what it said; a direct connect_failed: each address and its error
        if isinstance(exc, (ParentFailed, ParentTimeout, ConnectFailed, ConnectTimeout)):
            rec["note"] = str(exc)
        self._ctx.log_record(rec)
        where = f"{host}:{port}" if host else ""
        line = f"awf-proxy: {where + ' ' if where else ''}{reason}: {exc}"
        if host and exc.status == 403:
            line = deny_line(host, port, reason)
        self._answer(exc.status, reason, line)

    def _answer(self, status: int, reason: str, line: str) -> None:
        self._cancel_timer()
        self._state = CLOSED
        send_error(self.transport, status, reason, line)

    def timed_out(self) -> None:
        """The connection's one timer: --head-timeout while a request head is awaited,
        --response-timeout while a response head is."""
        self._timer = None
        state = self._state
        if state == CLOSED:
            return
        loop = self._ctx.loop
        if loop.time() < self._deadline:  # the deadline moved on meanwhile
            self._timer_at = self._deadline
            self._timer = loop.call_at(self._deadline, self.timed_out)
            return
        if state == HEAD:
            self._fail(HeadTimeout("no complete request head in time"))
            return
        ex = self._exchange
        if state == RESPONSE and ex is not None and not ex.answered():
            ex.fail(ResponseTimeout(
                f"no response head from {ex.decision.host}:{ex.port} within "
                f"{self._ctx.limits.response_timeout:g} s"))
        # otherwise a request is in progress without a clock: exchange_done starts it again

    def _bug(self) -> None:
        self._state = CLOSED
        report_bug(self.transport)

    def _close(self) -> None:
        self._state = CLOSED
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    def _record(
        self, method: str, host: str, port: int, url: str | None, reason: Reason | None,
        status: int, started: float,
    ) -> dict[str, object]:
        return decision_record(started, self.peer, self.mode, method, host, port, url, reason,
                               status)

    # -- small helpers -----------------------------------------------------------------------

    def _arm_timer(self, seconds: float) -> None:
        """Start a clock of `seconds`. The timer is moved only when it would fire too late: a
        kept-alive client that sends its next request in time never re-arms it."""
        loop = self._ctx.loop
        self._deadline = deadline = loop.time() + seconds
        if self._timer is None or self._timer_at > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = loop.call_at(deadline, self.timed_out)

    def _await_response(self) -> None:
        """The request went upstream completely: its response head is due in time."""
        if self._state == RESPONSE:
            self._arm_timer(self._ctx.limits.response_timeout)

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _pause(self) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.pause_reading()

    def _resume(self) -> None:
        t = self.transport
        if t is not None and not t.is_closing() and not self._up_paused:
            t.resume_reading()
