"""The explicit listener's connection: absolute-URI HTTP forwarding and CONNECT tunnels.

One `ClientConnection` per accepted socket, an asyncio Protocol driven by `data_received`:

    HEAD --head--> (deny: answer, close)
         --CONNECT allowed--> WORK (resolve, dial) --> tunnel: the transport gets a TunnelSide
         --GET http://... allowed--> [WORK] --> BODY (request body streams up)
                                      --> RESPONSE (response streams down) --> HEAD (keep-alive)

A request whose origin connection is pooled never leaves the callback: no task, no DNS.
Anything unexpected closes this connection (fail closed) and leaves the others alone.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback
from ipaddress import ip_address
from typing import TYPE_CHECKING, cast

from proxy.access_log import Entry
from proxy.addr import IPAddress
from proxy.errors import ConnectFailed, HeadTimeout, HostMismatch, RequestError, SelfConnection
from proxy.http1 import (
    BadResponse,
    BodyFramer,
    Framing,
    HeadParser,
    RequestHead,
    ResponseHead,
    ResponseHeadParser,
    error_response,
    parse_absolute_target,
    parse_authority,
    request_head_for_upstream,
    response_head_for_client,
)
from proxy.policy import Decision, Scheme
from proxy.reasons import Reason
from proxy.relay import open_relay
from proxy.tunnel import tune
from proxy.upstream import Upstream

if TYPE_CHECKING:
    from proxy.server import ProxyServer

HEAD, WORK, BODY, RESPONSE, CLOSED = range(5)

_ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


def peer_text(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if not peer:
        return "unknown"
    host, port = peer[0], peer[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def deny_line(host: str, port: int, reason: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"awf-proxy: {shown}:{port} denied: {reason}"


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "_body",
        "_client",
        "_exchange",
        "_head_deadline",
        "_head_timer",
        "_mode",
        "_orig",
        "_orig_ip",
        "_parser",
        "_pending",
        "_server",
        "_state",
        "_task",
        "_up_paused",
        "transport",
    )

    def __init__(
        self, server: ProxyServer, *, mode: str = "explicit", orig: tuple[str, int] = ("", 0)
    ) -> None:
        self._server = server
        self._mode = mode  # "transparent": redirected traffic, origin-form requests named by Host
        self._orig = orig  # transparent: the original destination (address, port)
        self._orig_ip: IPAddress | None = None  # the same address, parsed on first use
        self._parser = HeadParser()
        self._state = HEAD
        self._pending = b""
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_deadline = 0.0  # loop time by which the awaited head must be complete
        self._task: asyncio.Task[None] | None = None
        self._exchange: Exchange | None = None
        self._body: BodyFramer | None = None
        self._up_paused = False
        self._client = "unknown"
        self.transport: asyncio.Transport | None = None

    # -- asyncio callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = t = cast(asyncio.Transport, transport)
        self._client = peer_text(t)
        server = self._server
        if not server.admit(self):
            server.log_record(self._record("-", "", 0, None, Reason.OVERLOADED, 503, time.time()))
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
        self._arm_head_timer()

    def adopt(
        self, transport: asyncio.Transport, client: str, head: RequestHead, rest: bytes
    ) -> None:
        """Take over an admitted transport whose first head the sniffer already parsed
        (intercepted HTTP): it is handled as if it had just been read here."""
        self.transport = transport
        self._client = client
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
            else:  # reading is paused in the other states; keep what raced in
                self._pending += data
        except RequestError as exc:
            self._fail(exc)
        except Exception:  # a bug: fail closed on this connection only
            self._bug()

    def eof_received(self) -> bool:
        # the request is complete: the answer may still be written
        return self._state == RESPONSE and self._body is None

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = CLOSED
        self._cancel_head_timer()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        ex, self._exchange = self._exchange, None
        if ex is not None:
            ex.abandon()
        self._server.release(self)

    def pause_writing(self) -> None:  # the client's send buffer is full
        ex = self._exchange
        if ex is not None:
            ex.upstream.pause_reading()

    def resume_writing(self) -> None:
        ex = self._exchange
        if ex is not None:
            ex.upstream.resume_reading()

    # -- for the server ----------------------------------------------------------------

    def idle(self) -> bool:
        return self._state == HEAD and self._parser.pending == 0 and not self._pending

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
        if head.method == b"CONNECT":
            if self._mode == "transparent":
                raise RequestError("CONNECT goes to the explicit proxy port, not intercepted")
            self._connect(head, rest)
        elif head.target.startswith(b"/"):
            if self._mode == "transparent":
                self._forward(head, rest, None)
            else:
                self._origin_form(head)
        else:
            scheme, authority, path = parse_absolute_target(head.target)
            if scheme != b"http":
                raise RequestError(
                    "absolute https:// URIs are not proxied; use CONNECT host:443 (HTTPS_PROXY)"
                )
            self._forward(head, rest, (authority.host, authority.port, path))

    def _origin_form(self, head: RequestHead) -> None:
        t = self.transport
        if t is None:
            return
        if head.method == b"GET" and head.target.split(b"?", 1)[0] == b"/healthz":
            body = json.dumps(self._server.health()).encode() + b"\n"
            t.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
            t.close()
            self._state = CLOSED
            return
        raise RequestError(
            "this is a proxy: send an absolute URI (GET http://host/path) or CONNECT host:port"
        )

    def _connect(self, head: RequestHead, rest: bytes) -> None:
        authority = parse_authority(head.target, default_port=None)
        started = time.time()
        decision = self._server.policy.decide(authority.host, authority.port, Scheme.HTTPS)
        if not decision.allowed:
            self._deny(b"CONNECT", decision, authority.port, None, started)
            return
        self._pause()
        self._state = WORK
        self._task = self._server.loop.create_task(
            self._open_tunnel(decision, authority.port, rest, started)
        )

    def _forward(
        self, head: RequestHead, rest: bytes, target: tuple[str, int, bytes] | None
    ) -> None:
        """Check and forward one plain-HTTP request (absolute-form, or origin-form + Host)."""
        if target is None:  # transparent: the name is the Host header's, the port the original
            if head.host is None:
                raise RequestError("an intercepted HTTP request needs a Host header")
            port = self._orig[1]
            given = parse_authority(head.host, default_port=port)
            host, path = given.host, head.target
            shown = f"[{host}]" if ":" in host else host
            url = f"http://{shown}{'' if port == 80 else f':{port}'}{path.decode('latin-1')}"
        else:
            host, port, path = target
            url = head.target.decode("latin-1")
        started = time.time()
        decision = self._server.policy.decide(host, port, Scheme.HTTP)
        if (
            target is not None
            and decision.reason != Reason.BAD_REQUEST  # a bad name is reported first
            and head.host is not None
            and not _same_authority(head.host, host, port, head.target)
        ):
            raise HostMismatch(
                f"Host {head.host.decode('latin-1')!r} does not match the URI's authority"
            )
        if not decision.allowed:
            self._deny(head.method, decision, port, url, started)
            return
        if self._mode == "transparent":
            orig_ip = self._orig_ip
            if orig_ip is None:  # once per connection (a ValueError here is a bug: fail closed)
                orig_ip = self._orig_ip = ip_address(self._orig[0].split("%")[0])
            if self._server.is_self(orig_ip, port):
                raise SelfConnection(f"{self._orig[0]}:{port} is this proxy")
        ex = Exchange(self, head, path, decision, port, url, started)
        upstream = self._server.pool.take(decision.host, port)
        if upstream is not None:
            ex.begin(upstream, rest)
            return
        self._pause()
        self._state = WORK
        self._task = self._server.loop.create_task(self._open_exchange(ex, rest))

    # -- async steps (DNS, connect) ------------------------------------------------------

    async def _open_tunnel(
        self, decision: Decision, port: int, rest: bytes, started: float
    ) -> None:
        t = self.transport
        record = self._record("CONNECT", decision.host, port, None, None, 200, started)
        try:
            if t is None:
                return
            mine = await open_relay(self._server, self, t, decision, port, reply=_ESTABLISHED,
                                    first_up=rest, record=record, started=started)
        except RequestError as exc:
            self._task = None
            self._fail(exc, method=b"CONNECT", host=decision.host, port=port, started=started)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            self._task = None
            self._bug()
            return
        self._task = None
        if mine is None:
            return
        self._cancel_head_timer()
        self._state = CLOSED  # this object is done; the transport now belongs to the tunnel
        if self._pending:
            mine.data_received(self._pending)
            self._pending = b""
        t.resume_reading()

    async def _open_exchange(self, ex: Exchange, rest: bytes) -> None:
        server = self._server
        try:
            addresses = await server.destinations(ex.decision, ex.port)
            _, upstream = await server.dial(addresses, ex.port, Upstream, ex.decision.host)
        except RequestError as exc:
            self._task = None
            ex.fail(exc)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            self._task = None
            self._bug()
            return
        self._task = None
        if self._state == CLOSED:
            upstream.close()
            return
        upstream.key = (ex.decision.host, ex.port)
        pending, self._pending = self._pending, b""
        ex.begin(upstream, rest + pending)

    # -- exchanges ------------------------------------------------------------------------

    def _request_body(self, data: bytes) -> None:
        ex, body = self._exchange, self._body
        if ex is None or body is None:
            self._pending += data
            return
        n = body.feed(data)
        if n:
            ex.send_up(data[:n] if n < len(data) else data)
        if body.done:
            self._body = None
            self._state = RESPONSE
            self._pause()
            if n < len(data):
                self._pending += data[n:]
            ex.request_sent()

    def exchange_started(self, ex: Exchange, framer: BodyFramer | None, rest: bytes) -> None:
        self._exchange = ex
        self._body = framer
        self._state = BODY if framer is not None else RESPONSE
        if framer is None:
            self._pause()
            self._pending = rest + self._pending
            ex.request_sent()
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
        if not keep_alive:
            self._close()
            return
        self._state = HEAD
        self._arm_head_timer()
        pending, self._pending = self._pending, b""
        self._resume()
        if pending:
            self.data_received(pending)

    def upstream_paused(self, paused: bool) -> None:
        self._up_paused = paused
        if paused:
            self._pause()
        elif self._state == BODY:
            self._resume()

    # -- answers and endings -----------------------------------------------------------------

    def _deny(
        self, method: bytes, decision: Decision, port: int, url: str | None, started: float
    ) -> None:
        reason = decision.reason or Reason.DOMAIN_NOT_ALLOWED
        status = reason.status
        rec = self._record(method.decode("latin-1"), decision.host, port, url, reason, status,
                           started)
        self._server.log_record(rec)
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
        if reason in (Reason.DNS_FAILURE, Reason.CONNECT_FAILED, Reason.CONNECT_TIMEOUT):
            rec["decision"] = "allow"
        self._server.log_record(rec)
        where = f"{host}:{port}" if host else ""
        line = f"awf-proxy: {where + ' ' if where else ''}{reason}: {exc}"
        if host and exc.status == 403:
            line = deny_line(host, port, reason)
        self._answer(exc.status, reason, line)

    def _answer(self, status: int, reason: str, line: str) -> None:
        t = self.transport
        self._cancel_head_timer()
        self._state = CLOSED
        if t is not None and not t.is_closing():
            t.write(error_response(status, reason, line))
            t.close()

    def head_timed_out(self) -> None:
        self._head_timer = None
        if self._state != HEAD:
            return  # a request is in progress; exchange_done starts the clock again
        loop = self._server.loop
        if loop.time() < self._head_deadline:  # a later head is being waited for
            self._head_timer = loop.call_at(self._head_deadline, self.head_timed_out)
            return
        self._fail(HeadTimeout("no complete request head in time"))

    def _bug(self) -> None:
        print("awf-proxy: internal error; closing one connection:", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        self._state = CLOSED
        if self.transport is not None:
            self.transport.abort()

    def _close(self) -> None:
        self._state = CLOSED
        self._cancel_head_timer()
        if self.transport is not None:
            self.transport.close()

    def _record(
        self,
        method: str,
        host: str,
        port: int,
        url: str | None,
        reason: Reason | None,
        status: int,
        started: float,
    ) -> dict[str, object]:
        return Entry(
            started, time.time(), self._client, self._mode, method, host, port, url,
            "deny" if reason is not None else "allow",
            reason.value if reason is not None else None, status, 0, 0,
        ).as_mapping()

    # -- small helpers -----------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        """Start the --head-timeout clock for the next head. One timer per connection, moved
        lazily: a kept-alive client that sends its next request in time never re-arms it."""
        loop = self._server.loop
        self._head_deadline = loop.time() + self._server.cfg.head_timeout
        if self._head_timer is None:
            self._head_timer = loop.call_at(self._head_deadline, self.head_timed_out)

    def _cancel_head_timer(self) -> None:
        timer, self._head_timer = self._head_timer, None
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


def _same_authority(host_header: bytes, host: str, port: int, target: bytes = b"") -> bool:
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


class Exchange:
    """One forwarded plain-HTTP request and its response, on one pooled origin connection."""

    __slots__ = (
        "bytes_down",
        "bytes_up",
        "client",
        "decision",
        "head",
        "keep_alive",
        "path",
        "port",
        "reparser",
        "request_done",
        "resp",
        "resp_body",
        "retried",
        "started",
        "upstream",
        "url",
    )

    def __init__(
        self,
        client: ClientConnection,
        head: RequestHead,
        path: bytes,
        decision: Decision,
        port: int,
        url: str,
        started: float,
    ) -> None:
        self.client = client
        self.head = head
        self.path = path
        self.decision = decision
        self.port = port
        self.url = url
        self.started = started
        self.upstream: Upstream = cast(Upstream, None)
        self.reparser = ResponseHeadParser(request_method=head.method)
        self.resp: ResponseHead | None = None
        self.resp_body: BodyFramer | None = None
        self.request_done = False
        self.keep_alive = head.keep_alive
        self.bytes_up = 0
        self.bytes_down = 0
        self.retried = False

    def begin(self, upstream: Upstream, rest: bytes) -> None:
        self.upstream = upstream
        upstream.exchange = self
        wire = request_head_for_upstream(self.head, self.path)
        if self.head.version == b"HTTP/1.0":
            # an HTTP/1.0 client cannot read chunked answers: ask the origin for 1.0 too
            line_end = wire.index(b"\r\n")
            wire = wire[: line_end - 8] + b"HTTP/1.0" + wire[line_end:]
        upstream.write(wire)
        framing = self.head.framing
        framer = BodyFramer(framing, self.head.content_length) if framing != Framing.NONE else None
        self.client.exchange_started(self, framer, rest)

    def send_up(self, data: bytes) -> None:
        self.bytes_up += len(data)
        self.upstream.write(data)

    def request_sent(self) -> None:
        self.request_done = True

    # -- from the Upstream protocol -------------------------------------------------------

    def upstream_data(self, data: bytes) -> None:
        client_t = self.client.transport
        if client_t is None:
            return
        head = b""
        while self.resp is None:
            try:
                resp = self.reparser.feed(data)
            except BadResponse as exc:
                self.fail(ConnectFailed(f"the origin sent a bad response: {exc}"))
                return
            if resp is None:
                return
            if resp.interim:  # 100 Continue and friends: pass on, keep reading the buffer
                client_t.write(response_head_for_client(resp, keep_alive=True))
                data = b""
                continue
            data = self.reparser.take_rest()
            if resp.status == 101:  # no upgrades through the plain-HTTP path
                self.fail(ConnectFailed("the origin tried to switch protocols"))
                return
            self.resp = resp
            self.keep_alive = self.keep_alive and resp.keep_alive
            self.keep_alive = self.keep_alive and resp.framing != Framing.UNTIL_CLOSE
            head = response_head_for_client(resp, keep_alive=self.keep_alive)
            self.resp_body = BodyFramer(resp.framing, resp.content_length)
        body = self.resp_body
        if body is None:
            return
        extra = False
        if data:
            try:
                n = body.feed(data)
            except RequestError:
                self._finish(reusable=False, keep_client=False)
                return
            self.bytes_down += n
            extra = n < len(data)
            # one write, so a small answer costs one syscall: head and body together
            head += data if not extra else data[:n]
        if head:
            client_t.write(head)
        if body.done:
            self._finish(reusable=not extra and self.request_done and self.resp_keep_alive(),
                         keep_client=self.keep_alive and self.request_done)

    def resp_keep_alive(self) -> bool:
        return self.resp is not None and self.resp.keep_alive and (
            self.resp.framing != Framing.UNTIL_CLOSE
        )

    def upstream_lost(self) -> None:
        """The origin closed: an until-close body ended, a pooled socket was stale, or a failure."""
        if self.resp is None:
            if self.upstream.reused and not self.retried and self.head.framing == Framing.NONE:
                self._retry()
                return
            self.fail(ConnectFailed("the origin closed the connection before answering"))
            return
        if self.resp_body is not None and self.resp.framing == Framing.UNTIL_CLOSE:
            self._finish(reusable=False, keep_client=False)
            return
        if self.resp_body is not None and self.resp_body.done:
            return
        self._finish(reusable=False, keep_client=False, reason=Reason.CONNECT_FAILED)

    def _retry(self) -> None:
        """A pooled connection went stale before answering: one fresh dial, no body lost."""
        self.retried = True
        client = self.client
        client._state = WORK
        client._task = client._server.loop.create_task(client._open_exchange(self, b""))

    def fail(self, exc: RequestError) -> None:
        up = self.upstream
        if up is not None:
            up.exchange = None
            up.close()
        self.client._exchange = None
        if self.resp is None:
            self.client._fail(exc, method=self.head.method, host=self.decision.host,
                              port=self.port, url=self.url, started=self.started)
        else:
            self._finish(reusable=False, keep_client=False, reason=exc.reason)

    def abandon(self) -> None:
        """The client went away: the origin connection cannot be reused."""
        up = self.upstream
        if up is not None:
            up.exchange = None
            up.close()
        self._log(Reason.CONNECT_FAILED if self.resp is None else None)

    def _finish(self, *, reusable: bool, keep_client: bool, reason: Reason | None = None) -> None:
        up = self.upstream
        up.exchange = None
        if reusable:
            self.client._server.pool.put(up)
        else:
            up.close()
        self._log(reason)
        self.client.exchange_done(keep_client)

    def _log(self, reason: Reason | None) -> None:
        client = self.client
        client._server.log_record(Entry(
            self.started, time.time(), client._client, client._mode,
            self.head.method.decode("latin-1"), self.decision.host, self.port, self.url, "allow",
            reason.value if reason is not None else None,
            self.resp.status if self.resp is not None else 502, self.bytes_up, self.bytes_down,
        ))
