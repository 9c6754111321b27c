"""One forwarded plain-HTTP request and its response, on one origin connection.

An `Exchange` writes the request head upstream, streams the request body the client connection
feeds it (`send_up`), reads the response head and streams the response body back, then hands
the origin connection back to the pool (or closes it) and logs the request. It talks to its
client connection only through `ExchangeClient`, and to the origin only through `Upstream`'s
methods.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, cast

from proxy.access_log import Entry
from proxy.context import ConnectionContext
from proxy.errors import ConnectFailed, RequestError
from proxy.http1 import (
    BadResponse,
    BodyFramer,
    Framing,
    RequestHead,
    ResponseHead,
    ResponseHeadParser,
    request_head_for_upstream,
    response_head_for_client,
    whole_response_head,
)
from proxy.parent import ParentFailed, for_parent
from proxy.policy import Decision
from proxy.reasons import Reason
from proxy.upstream import Pool, Upstream


class ExchangeClient(Protocol):
    """What an exchange may use of the client connection it serves (an `HttpConnection`)."""

    @property
    def transport(self) -> asyncio.Transport | None: ...

    @property
    def peer(self) -> str: ...  # the `client` field of the record

    @property
    def mode(self) -> str: ...  # "explicit" | "transparent"

    @property
    def tls(self) -> str | None: ...  # the record's `tls` field ("bumped"), or None

    @property
    def pool(self) -> Pool: ...  # where a reusable origin connection goes back

    def exchange_started(self, ex: Exchange, framer: BodyFramer | None, rest: bytes) -> None:
        """The request head went upstream; `framer` reads the request body (None: no body)."""
        ...

    def exchange_done(self, keep_alive: bool) -> None:
        """The response was written completely."""
        ...

    def exchange_failed(self, ex: Exchange, exc: RequestError) -> None:
        """The exchange failed before any response byte was written: answer `exc`."""
        ...

    def upstream_paused(self, paused: bool) -> None: ...

    def redial(self, ex: Exchange) -> None:
        """Dial a fresh origin connection for `ex` (its pooled one went stale)."""
        ...


class Exchange:
    """One forwarded request and its response, on one pooled origin connection (plain HTTP, or
    TLS to the origin for a request read inside a bumped connection)."""

    __slots__ = (
        "bytes_down",
        "bytes_up",
        "client",
        "ctx",
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
        ctx: ConnectionContext,
        client: ExchangeClient,
        head: RequestHead,
        path: bytes,
        decision: Decision,
        port: int,
        url: str | None,
        started: float,
    ) -> None:
        self.ctx = ctx
        self.client = client
        self.head = head
        self.path = path
        self.decision = decision
        self.port = port
        self.url = url
        self.started = started
        self.upstream: Upstream = cast(Upstream, None)
        # made only when a response head does not arrive whole in the first read
        self.reparser: ResponseHeadParser | None = None
        self.resp: ResponseHead | None = None
        self.resp_body: BodyFramer | None = None
        self.request_done = False
        self.keep_alive = head.keep_alive
        self.bytes_up = 0
        self.bytes_down = 0
        self.retried = False

    def begin(self, upstream: Upstream, rest: bytes) -> None:
        self.upstream = upstream
        upstream.attach(self)
        wire = request_head_for_upstream(self.head, self.path)
        if self.head.version == b"HTTP/1.0":
            # an HTTP/1.0 client cannot read chunked answers: ask the origin for 1.0 too
            line_end = wire.index(b"\r\n")
            wire = wire[: line_end - 8] + b"HTTP/1.0" + wire[line_end:]
        if upstream.parent is not None:  # --upstream-proxy: absolute-URI, its credentials
            wire = for_parent(wire, upstream.parent, self.decision.host, self.port)
        upstream.write(wire)
        self.bytes_up = len(wire)  # the head counts: a GET sends no body (a redial: no body yet)
        framing = self.head.framing
        framer = BodyFramer(framing, self.head.content_length) if framing != Framing.NONE else None
        self.client.exchange_started(self, framer, rest)

    def send_up(self, data: bytes) -> None:
        self.bytes_up += len(data)
        self.upstream.write(data)

    def request_sent(self) -> None:
        self.request_done = True

    def answered(self) -> bool:
        """Has the final response head arrived?"""
        return self.resp is not None

    # -- from the client connection ----------------------------------------------------------

    def pause_reading(self) -> None:
        """The client's send buffer is full: stop reading the response."""
        self.upstream.pause_reading()

    def resume_reading(self) -> None:
        self.upstream.resume_reading()

    # -- from the Upstream protocol -------------------------------------------------------

    def upstream_data(self, data: bytes) -> None:
        client_t = self.client.transport
        if client_t is None:
            return
        head = b""
        while self.resp is None:
            reparser = self.reparser
            resp: ResponseHead | None = None
            try:
                if reparser is None:
                    whole = whole_response_head(data, self.head.method)
                    if whole is not None and not whole[0].interim:  # the usual case
                        resp, end = whole
                        data = data[end:]
                    else:
                        reparser = self.reparser = ResponseHeadParser(
                            request_method=self.head.method)
                if reparser is not None:
                    resp = reparser.feed(data)
            except BadResponse as exc:
                self.fail(BadResponse(f"{self.decision.host}:{self.port} sent a bad response "
                                      f"head: {exc}"))
                return
            if resp is None:
                return
            if reparser is not None:
                if resp.interim:  # 100 Continue and friends: pass on, keep reading the buffer
                    client_t.write(response_head_for_client(resp, keep_alive=True))
                    data = b""
                    continue
                data = reparser.take_rest()
            parent = self.upstream.parent
            if resp.status == 407 and parent is not None:  # the parent's, never the origin's
                self.fail(ParentFailed(f"the parent proxy {parent.shown} refused "
                                       f"{self.decision.host}:{self.port}: 407 "
                                       f"{resp.reason.decode('latin-1')[:80]}".rstrip()))
                return
            if resp.status == 101:  # no upgrades through the plain-HTTP path
                self.fail(BadResponse(f"{self.decision.host}:{self.port} tried to switch "
                                      "protocols"))
                return
            self.resp = resp
            self.keep_alive = self.keep_alive and resp.keep_alive
            self.keep_alive = self.keep_alive and resp.framing != Framing.UNTIL_CLOSE
            if self.ctx.draining:  # SIGTERM: this is the connection's last answer
                self.keep_alive = False
            head = response_head_for_client(resp, keep_alive=self.keep_alive)
            self.resp_body = BodyFramer(resp.framing, resp.content_length)
        body = self.resp_body
        if body is None:
            return
        extra = False
        if data:
            try:
                n = body.feed(data)
            except RequestError as exc:
                self._bad_body(exc, head_written=not head)
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

    def upstream_paused(self, paused: bool) -> None:
        self.client.upstream_paused(paused)

    def upstream_lost(self) -> None:
        """The origin closed: an until-close body ended, a pooled socket was stale, or a failure."""
        if self.resp is None:
            if self.upstream.reused and not self.retried and self.head.framing == Framing.NONE:
                # a pooled connection went stale before answering: one fresh dial, no body lost
                self.retried = True
                self.client.redial(self)
                return
            self.fail(ConnectFailed("the origin closed the connection before answering"))
            return
        if self.resp_body is not None and self.resp.framing == Framing.UNTIL_CLOSE:
            self._finish(reusable=False, keep_client=False)
            return
        if self.resp_body is not None and self.resp_body.done:
            return
        self._finish(reusable=False, keep_client=False, reason=Reason.CONNECT_FAILED)

    # -- endings ---------------------------------------------------------------------------

    def _bad_body(self, exc: RequestError, *, head_written: bool) -> None:
        """The response body's framing is broken. If no byte of the response reached the client
        it gets 502 bad_response; otherwise its connection is closed mid-body, which its framing
        (Content-Length or chunked) shows as a truncation. Logged 502 bad_response either way."""
        bad = BadResponse(f"{self.decision.host}:{self.port} sent a bad response body: {exc}")
        if not head_written:
            self.resp = None  # nothing of it was forwarded: answer instead
            self.fail(bad)
        else:
            self._finish(reusable=False, keep_client=False, reason=bad.reason, status=bad.status)

    def fail(self, exc: RequestError) -> None:
        up = self.upstream
        if up is not None:
            up.close()
        if self.resp is None:
            self.client.exchange_failed(self, exc)
        else:
            self._finish(reusable=False, keep_client=False, reason=exc.reason)

    def abandon(self) -> None:
        """The client went away: the origin connection cannot be reused."""
        up = self.upstream
        if up is not None:
            up.close()
        self._log(Reason.CONNECT_FAILED if self.resp is None else None)

    def _finish(self, *, reusable: bool, keep_client: bool, reason: Reason | None = None,
                status: int | None = None) -> None:
        up = self.upstream
        if reusable:
            up.detach()
            self.client.pool.put(up)
        else:
            up.close()
        self._log(reason, status)
        self.client.exchange_done(keep_client)

    def _log(self, reason: Reason | None, status: int | None = None) -> None:
        client = self.client
        if status is None:
            status = self.resp.status if self.resp is not None else 502
        self.ctx.log_record(Entry(
            self.started, time.time(), client.peer, client.mode,
            self.head.method.decode("latin-1"), self.decision.host, self.port, self.url, "allow",
            reason.value if reason is not None else None, status, self.bytes_up, self.bytes_down,
            client.tls,
        ))
