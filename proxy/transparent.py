"""The transparent listener: redirected connections, named by their TLS SNI or HTTP Host.

The original destination comes from SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST. Its port is checked
like any other port and its address is logged, but never dialled: the proxy resolves the SNI or
Host name itself and dials only an address it checked, which defeats `--connect-to` and
IP+SNI tricks (docs/architecture.md §3.1). The first bytes are peeked (at most 16 KiB; a TLS hello
within 10 s, an HTTP head within --head-timeout, else 408 head_timeout), then
forwarded upstream byte for byte (`tunnel.open_tunnel`). Plain HTTP is handed to a
transparent-mode `HttpConnection` so that every request on the connection is checked, not just
the first.
"""

from __future__ import annotations

import asyncio
import time
from ipaddress import ip_address
from typing import cast

from proxy.access_log import decision_record, peer_text
from proxy.context import ConnectionContext
from proxy.errors import HeadTimeout, RequestError
from proxy.http1 import RequestHead
from proxy.http_connection import HttpConnection, report_bug, send_error
from proxy.origdst import original_destination
from proxy.policy import Decision, Scheme
from proxy.reasons import NO_ANSWER, Reason
from proxy.sni import BadClientHello, NotTls
from proxy.sniff import Sniffer
from proxy.tunnel import open_tunnel

PEEK_LIMIT = 16 * 1024
PEEK_TIMEOUT = 10.0
_TLS_FIRST = b"\x16"  # a TLS handshake record's first byte; no HTTP method starts with it


class TransparentConnection(asyncio.Protocol):
    __slots__ = (
        "_buf", "_client", "_ctx", "_done", "_dst", "_head_deadline", "_sniffer", "_task",
        "_timer", "transport",
    )

    def __init__(self, ctx: ConnectionContext) -> None:
        self._ctx = ctx
        self._buf = b""
        self._sniffer = Sniffer(max_bytes=PEEK_LIMIT)  # incremental: O(n) over slow senders
        self._client = "unknown"
        self._dst: tuple[str, int] = ("", 0)
        self._timer: asyncio.TimerHandle | None = None
        self._head_deadline = 0.0  # loop time by which an HTTP head must be complete
        self._task: asyncio.Task[None] | None = None
        self._done = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = t = cast(asyncio.Transport, transport)
        self._client = peer_text(t)
        if not self._ctx.admit(self):
            self._log("-", "", 0, Reason.OVERLOADED, 503)
            self._end()
            return
        try:
            self._dst = original_destination(t.get_extra_info("socket"))
        except OSError:
            local = t.get_extra_info("sockname")
            self._dst = (str(local[0]), int(local[1])) if local else ("", 0)
        # a TLS hello (or nothing) must come within PEEK_TIMEOUT, an HTTP head within
        # --head-timeout: one timer at the earlier, moved on for a slow HTTP head
        loop = self._ctx.loop
        self._head_deadline = loop.time() + self._ctx.limits.head_timeout
        self._timer = loop.call_at(min(self._head_deadline, loop.time() + PEEK_TIMEOUT),
                                   self._timed_out)

    def data_received(self, data: bytes) -> None:
        if self._done:
            return
        try:
            self._sniff(data)
        except Exception:  # a bug: fail closed on this connection only
            self._done = True
            report_bug(self.transport)

    def _sniff(self, data: bytes) -> None:
        self._buf += data
        try:
            sniffed = self._sniffer.feed(data)
        except (NotTls, BadClientHello) as exc:
            self._log("TLS", "", self._dst[1], Reason.BAD_REQUEST, 0, note=str(exc))
            self._end()
            return
        except RequestError as exc:
            self._answer(exc.status, exc.reason, f"awf-proxy: {exc.reason}: {exc}")
            return
        if sniffed is None:
            return
        self._cancel_timer()
        if sniffed.kind == "http":
            assert sniffed.head is not None
            self._hand_to_http(sniffed.head, sniffed.rest + self._buf[self._sniffer.fed:])
        else:
            self._tls(sniffed.host)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        self._ctx.release(self)

    def drain(self) -> None:
        pass  # a drain lets the first bytes arrive; their HttpConnection answers with close

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- the two kinds ---------------------------------------------------------------------

    def _hand_to_http(self, head: RequestHead, rest: bytes) -> None:
        """The sniffer parsed the first head: an HttpConnection takes it from there."""
        t = self.transport
        if t is None:
            return
        http = HttpConnection(self._ctx, mode="transparent", orig=self._dst)
        self._ctx.swap(self, http)
        self._done = True
        self._buf = b""
        t.set_protocol(http)
        http.adopt(t, self._client, head, rest)

    def _tls(self, sni: str | None) -> None:
        port = self._dst[1]
        if sni is None:
            self._log("TLS", "", port, Reason.NO_SNI, NO_ANSWER)
            self._end()
            return
        started = time.time()
        decision = self._ctx.policy.decide(sni, port, Scheme.HTTPS)
        if not decision.allowed:
            self._log("TLS", decision.host or sni, port, decision.reason, NO_ANSWER,
                      started=started)
            self._end()
            return
        if self._ctx.is_self(ip_address(self._dst[0].split("%")[0]), port):
            self._log("TLS", decision.host, port, Reason.SELF_CONNECTION, NO_ANSWER,
                      started=started)
            self._end()
            return
        t = self.transport
        if t is None:
            return
        t.pause_reading()
        self._done = True
        if self._ctx.urlrules is not None and self._bump(t, decision.host, port, started):
            return  # bumped, or refused (a host restricted by --allow-urls: docs/proxy.md §11)
        record = self._record("TLS", decision.host, port, None, 200, started)
        self._task = self._ctx.loop.create_task(
            self._relay(t, decision, port, record, started)
        )

    def _bump(self, t: asyncio.Transport, host: str, port: int, started: float) -> bool:
        from proxy.bump import Plan, plan_for, start_bump

        if plan_for(self._ctx, host) == Plan.TUNNEL:
            return False
        first, self._buf = self._buf, b""
        dst = self._record("TLS", host, port, None, 0, started)["original_dst"]
        start_bump(self._ctx, self, t, host, port, peer=self._client, mode="transparent",
                   method="TLS", reply=b"", first=first, started=started,
                   extra={"original_dst": dst})
        return True

    async def _relay(
        self, t: asyncio.Transport, decision: Decision, port: int, record: dict[str, object],
        started: float,
    ) -> None:
        first, self._buf = self._buf, b""
        try:
            mine = await open_tunnel(self._ctx, self, t, decision, port, reply=b"",
                                     first_up=first, record=record, started=started)
        except RequestError as exc:
            self._task = None
            self._log("TLS", decision.host, port, exc.reason, NO_ANSWER, started=started,
                      note=str(exc))
            self._end()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            self._task = None
            report_bug(t)
            return
        self._task = None
        if mine is not None:
            t.resume_reading()

    # -- endings and records ------------------------------------------------------------------

    def _timed_out(self) -> None:
        self._timer = None
        if self._done:
            return
        if self._buf[:1] in (b"", _TLS_FIRST):  # TLS or nothing: there is no HTTP to answer in
            self._log("-", "", self._dst[1], Reason.HEAD_TIMEOUT, 0)
            self._end()
            return
        loop = self._ctx.loop
        if loop.time() < self._head_deadline:  # HTTP: --head-timeout, not the TLS peek's
            self._timer = loop.call_at(self._head_deadline, self._timed_out)
            return
        exc = HeadTimeout("no complete request head in time")
        self._answer(exc.status, exc.reason, f"awf-proxy: {exc.reason}: {exc}")

    def _answer(self, status: int, reason: Reason, line: str) -> None:
        self._log("-", "", self._dst[1], reason, status)
        self._done = True
        send_error(self.transport, status, reason, line)

    def _end(self) -> None:
        self._done = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _record(
        self, method: str, host: str, port: int, reason: Reason | None, status: int,
        started: float,
    ) -> dict[str, object]:
        rec = decision_record(started, self._client, "transparent", method, host, port, None,
                              reason, status)
        rec["original_dst"] = (f"[{self._dst[0]}]:{port}" if ":" in self._dst[0]
                               else f"{self._dst[0]}:{port}")
        return rec

    def _log(
        self, method: str, host: str, port: int, reason: Reason | None, status: int,
        *, started: float | None = None, note: str | None = None,
    ) -> None:
        rec = self._record(method, host, port, reason, status, started or time.time())
        if note:
            rec["note"] = note
        self._ctx.log_record(rec)
