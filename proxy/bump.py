"""SSL bump (docs/proxy.md §11): a bumped client connection, TLS over memory
BIOs, whose inner HTTP/1.1 requests are each checked and forwarded on a verified upstream TLS
connection.

    CONNECT host:443 (allowed, bumped)   -> 200, then the client's TLS is terminated here with
    transparent TLS (allowed, bumped)       a leaf for `host` (LeafCache); within 10 s, else
                                            closed; a first byte that is not a TLS handshake
                                            record is closed as `not_tls`
    each inner request, in order         -> Host must name the tunnel's host and port (421
                                            misdirected), the blocklist, the URL rules
                                            (`urlrules.decide_bumped`), then forwarded with the
                                            NORMALISED target on a pooled upstream TLS
                                            connection: system store plus --extra-ca-certs,
                                            TLS 1.2 or later, hostname checked, to an address
                                            the proxy resolved and checked itself (else 502
                                            upstream_tls_failed; never relaxed)

Responses stream with backpressure; bodies are never held whole. One access-log record for the
tunnel (written when it closes) and one per inner request, each with `"tls": "bumped"`. Every
error answer closes the connection, as on the explicit listener.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
import traceback

from proxy.access_log import decision_record
from proxy.bump_setup import Bumper
from proxy.context import ConnectionContext, Registered
from proxy.errors import (
    BadResponse,
    ConnectFailed,
    HeadTimeout,
    RequestError,
    ResponseTimeout,
    UpstreamTlsFailed,
)
from proxy.flowcontrol import tune
from proxy.http1 import (
    BodyFramer,
    Framing,
    HeadParser,
    RequestHead,
    ResponseHeadParser,
    error_response,
    parse_absolute_target,
    request_head_for_upstream,
    response_head_for_client,
)
from proxy.policy import Scheme
from proxy.reasons import NO_ANSWER, Reason
from proxy.urlrules import UrlRules, decide_bumped

HANDSHAKE_TIMEOUT = 10.0  # a client handshake slower than this is closed (docs/proxy.md §11)
READ_AHEAD = 256 * 1024  # ciphertext buffered from the client before its reading pauses
CHUNK = 64 * 1024
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


class _Closed(Exception):
    """The client connection is gone, or this bumped connection is over."""


class BumpedConnection(asyncio.Protocol):
    """A client connection whose TLS this proxy terminates (after CONNECT, or intercepted)."""

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
        self.transport: asyncio.Transport | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = bumper.leaves.context_for(host).wrap_bio(
            self._incoming, self._outgoing, server_side=True)
        self._waiter: asyncio.Future[None] | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._first = True
        self._lost = False
        self._paused = False
        self._task: asyncio.Task[None] | None = None
        self._draining = False
        self._idle = False
        self._finished = False
        self.bytes_up = 0
        self.bytes_down = 0

    # -- asyncio callbacks -------------------------------------------------------------------

    def start(self, transport: asyncio.Transport, *, reply: bytes, first: bytes) -> None:
        """Take over `transport` (reading paused by the caller) and bump it."""
        self.transport = transport
        tune(transport)
        if reply:
            transport.write(reply)
        self._task = self._ctx.loop.create_task(self._run())
        if first:
            self.data_received(first)
        if not self._lost and not transport.is_closing():
            transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._first:
            self._first = False
            if data[0] != _TLS_HANDSHAKE:
                self._note(Reason.NOT_TLS, "the client did not start TLS", NO_ANSWER)
                self._abort()
                return
        self.bytes_up += len(data)
        self._incoming.write(data)
        if self._incoming.pending > READ_AHEAD and self.transport is not None:
            self.transport.pause_reading()
            self._paused = True
        self._wake()

    def eof_received(self) -> bool:
        self._incoming.write_eof()
        self._wake()
        return True  # the answer in progress may still be written

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._can_write.set()
        self._wake()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        if self._task is None or self._task.done():
            self._finish()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def drain(self) -> None:
        self._draining = True
        if self._idle:
            self._abort()

    def abort(self) -> None:
        self._abort()

    # -- TLS over the memory BIOs -----------------------------------------------------------

    def _wake(self) -> None:
        w, self._waiter = self._waiter, None
        if w is not None and not w.done():
            w.set_result(None)

    async def _more(self) -> None:
        if self._lost:
            raise _Closed
        if self._paused and self.transport is not None and not self.transport.is_closing():
            self._paused = False
            self.transport.resume_reading()
        self._waiter = self._ctx.loop.create_future()
        await self._waiter
        if self._lost:
            raise _Closed

    def _flush(self) -> None:
        out = self._outgoing.read()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    async def _handshake(self) -> None:
        while True:
            try:
                self._tls.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                if self._incoming.eof:
                    raise _Closed from None
                await self._more()

    async def _recv(self) -> bytes:
        """Decrypted bytes from the client; b"" at its end."""
        while True:
            try:
                data = self._tls.read(CHUNK)
                self._flush()
                return data
            except ssl.SSLWantReadError:
                self._flush()
                if self._incoming.eof:
                    return b""
                await self._more()
            except ssl.SSLZeroReturnError:
                return b""

    async def _send(self, data: bytes) -> None:
        if self._lost:
            raise _Closed
        self._tls.write(data)
        self._flush()
        self.bytes_down += len(data)
        if not self._can_write.is_set():
            await self._can_write.wait()
            if self._lost:
                raise _Closed

    def _close_tls(self) -> None:
        try:
            self._tls.unwrap()
        except ssl.SSLError:
            pass
        self._flush()
        if self.transport is not None:
            self.transport.close()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- the requests ----------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            try:
                async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                    await self._handshake()
            except TimeoutError:
                self._note(Reason.HEAD_TIMEOUT, "no TLS handshake within "
                           f"{HANDSHAKE_TIMEOUT:g} s", NO_ANSWER)
                self._abort()
                return
            except ssl.SSLError as exc:
                if "reason" not in self._record:
                    self._record["note"] = f"client TLS handshake failed: {exc.reason or exc}"
                self._abort()
                return
            await self._serve()
        except (_Closed, ConnectionError):
            self._abort()
        except asyncio.CancelledError:
            self._abort()
        except Exception:
            print("awf-proxy: internal error; closing one bumped connection:", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            self._abort()
        finally:
            self._task = None
            if self._lost:
                self._finish()

    async def _serve(self) -> None:
        parser = HeadParser()
        pending = b""
        limits = self._ctx.limits
        while True:
            head: RequestHead | None = None
            self._idle = True
            if self._draining:
                self._close_tls()
                return
            try:
                async with asyncio.timeout(limits.head_timeout):
                    if pending:
                        head = parser.feed(pending)
                        pending = b""
                    while head is None:
                        data = await self._recv()
                        if not data:
                            self._close_tls()
                            return
                        head = parser.feed(data)
            except TimeoutError:
                self._idle = False
                await self._refuse(HeadTimeout("no complete request head in time"), b"-",
                                   None, time.time())
                return
            except RequestError as exc:
                self._idle = False
                await self._refuse(exc, b"-", None, time.time())
                return
            self._idle = False
            rest = parser.take_rest()
            keep = await self._one(head, rest)
            if keep is None:
                return
            pending = keep

    def _url(self, target: str) -> str:
        path = target.split("?", 1)[0]
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port == 443 else f":{self.port}"
        return f"https://{host}{port}{path}"

    async def _one(self, head: RequestHead, rest: bytes) -> bytes | None:
        """One inner request; returns what was read past it (the next request), or None when
        the connection is over."""
        started = time.time()
        method = head.method.decode("latin-1")
        rules = self._ctx.urlrules or self._rules
        verdict = decide_bumped(rules, self.host, self.port, method, head.host, head.target)
        target = verdict.target
        if target is None:
            raw = head.target
            if not raw.startswith(b"/"):
                try:
                    raw = parse_absolute_target(raw)[2]
                except RequestError:
                    raw = b"/"
            target = raw.decode("latin-1")
        url = self._url(target)
        if not verdict.allowed:
            reason = verdict.reason or Reason.URL_NOT_ALLOWED
            shown = f"[{self.host}]" if ":" in self.host else self.host
            line = f"awf-proxy: https://{shown}:{self.port} {url} denied: {reason}"
            self._log(method, url, reason, reason.status, started)
            await self._send(error_response(reason.status, reason, line))
            self._close_tls()
            return None
        return await self._forward(head, rest, target.encode("ascii"), method, url, started)

    async def _upstream(self, fresh: bool) -> tuple[tuple[asyncio.StreamReader,
                                                          asyncio.StreamWriter], bool]:
        key = (self.host, self.port)
        if not fresh:
            conn = self._bumper.take(key)
            if conn is not None:
                return conn, True
        ctx = self._ctx
        decision = ctx.policy.decide(self.host, self.port, Scheme.HTTPS)
        if not decision.allowed:  # a reload since the tunnel opened
            raise ConnectFailed(f"{self.host}:{self.port} is no longer allowed")
        addresses = await ctx.destinations(decision, self.port)
        loop = ctx.loop
        reader = asyncio.StreamReader(limit=CHUNK, loop=loop)
        t, proto = await ctx.dial(addresses, self.port,
                                  lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
                                  self.host)
        writer = asyncio.StreamWriter(t, proto, reader, loop)
        try:
            await writer.start_tls(self._bumper.upstream_ssl, server_hostname=self.host,
                                   ssl_handshake_timeout=ctx.limits.connect_timeout)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            writer.close()
            raise UpstreamTlsFailed(f"TLS with {self.host}:{self.port} failed: "
                                    f"{getattr(exc, 'verify_message', None) or exc}") from exc
        except (ConnectionError, OSError, TimeoutError) as exc:
            writer.close()
            raise UpstreamTlsFailed(f"TLS with {self.host}:{self.port} failed: "
                                    f"{exc!r}") from exc
        return (reader, writer), False

    async def _forward(self, head: RequestHead, rest: bytes, target: bytes, method: str,
                       url: str, started: float) -> bytes | None:
        up_bytes = down_bytes = 0
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        wire = request_head_for_upstream(head, target)
        framer = (BodyFramer(head.framing, head.content_length)
                  if head.framing != Framing.NONE else None)
        try:
            conn, reused = await self._upstream(fresh=False)
            reader, writer = conn
            writer.write(wire)
            pending = b""
            # the request body streams up
            if framer is not None:
                data = rest
                rest = b""
                while not framer.done:
                    if not data:
                        data = await self._recv()
                        if not data:
                            raise _Closed
                    n = framer.feed(data)
                    if n:
                        writer.write(data[:n])
                        up_bytes += n
                        await writer.drain()
                    if n < len(data):
                        pending = data[n:]
                    data = b""
            else:
                pending = rest
            # the response head
            parser = ResponseHeadParser(request_method=head.method)
            try:
                async with asyncio.timeout(self._ctx.limits.response_timeout):
                    resp = None
                    while resp is None:
                        chunk = await reader.read(CHUNK)
                        if not chunk:
                            if reused and framer is None and parser is not None:
                                writer.close()  # a stale pooled connection: one fresh dial
                                conn, reused = await self._upstream(fresh=True)
                                reader, writer = conn
                                writer.write(wire)
                                parser = ResponseHeadParser(request_method=head.method)
                                reused = False
                                continue
                            raise ConnectFailed("the origin closed the connection before "
                                                "answering")
                        resp = parser.feed(chunk)
                        while resp is not None and resp.interim:
                            await self._send(response_head_for_client(resp, keep_alive=True))
                            resp = parser.feed(b"")
            except TimeoutError:
                raise ResponseTimeout(f"no response head from {self.host}:{self.port}") from None
            if resp.status == 101:
                raise BadResponse(f"{self.host}:{self.port} tried to switch protocols")
            body_bytes = parser.take_rest()
            keep = (head.keep_alive and resp.keep_alive and resp.framing != Framing.UNTIL_CLOSE
                    and not self._ctx.draining and not self._draining)
            body = BodyFramer(resp.framing, resp.content_length, error=BadResponse)
            out = response_head_for_client(resp, keep_alive=keep)
            extra = False
            while True:
                if body_bytes:
                    n = body.feed(body_bytes)
                    down_bytes += n
                    extra = n < len(body_bytes)
                    out += body_bytes[:n]
                if out:
                    await self._send(out)
                    out = b""
                if body.done:
                    break
                body_bytes = await reader.read(CHUNK)
                if not body_bytes:
                    if resp.framing == Framing.UNTIL_CLOSE:
                        break
                    raise ConnectFailed("the origin closed the connection mid-response")
            # the origin's connection outlives a client that closes (h2 in bench/RESULTS.md):
            # its reuse depends on the origin's answer only
            reusable = (resp.keep_alive and resp.framing != Framing.UNTIL_CLOSE and not extra
                        and not self._ctx.draining and not self._draining)
            if reusable:
                self._bumper.put((self.host, self.port), conn)
            else:
                writer.close()
            conn = None
            self._log(method, url, None, resp.status, started, up_bytes, down_bytes)
            if not keep:
                self._close_tls()
                return None
            return pending
        except RequestError as exc:
            if conn is not None:
                conn[1].close()
            status = exc.status
            self._log(method, url, exc.reason, status, started, up_bytes, down_bytes)
            if down_bytes == 0:
                await self._send(error_response(status, exc.reason,
                                                f"awf-proxy: {self.host}:{self.port} "
                                                f"{exc.reason}: {exc}"))
                self._close_tls()
            else:
                self._abort()
            return None
        except BaseException:  # the client left (cancelled), or a bug: logged, then re-raised
            if conn is not None:
                conn[1].close()
            self._log(method, url, Reason.CONNECT_FAILED, 502, started, up_bytes, down_bytes)
            raise

    async def _refuse(self, exc: RequestError, method: bytes, url: str | None,
                      started: float) -> None:
        self._log(method.decode("latin-1"), url, exc.reason, exc.status, started)
        await self._send(error_response(exc.status, exc.reason, f"awf-proxy: {exc.reason}: "
                                        f"{exc}"))
        self._close_tls()

    # -- records ---------------------------------------------------------------------------

    def _log(self, method: str, url: str | None, reason: Reason | None, status: int,
             started: float, up: int = 0, down: int = 0) -> None:
        rec = decision_record(started, self.peer, self.mode, method, self.host, self.port, url,
                              reason, status)
        rec["bytes_up"] = up
        rec["bytes_down"] = down
        rec["duration_ms"] = round((time.time() - started) * 1000, 1)
        rec["tls"] = "bumped"
        self._ctx.log_record(rec)

    def _note(self, reason: Reason, note: str, status: int) -> None:
        """The tunnel's record ends as a refusal (not_tls, a slow handshake)."""
        rec = decision_record(self._started, self.peer, self.mode,
                              str(self._record.get("method", "-")), self.host, self.port, None,
                              reason, status)
        rec.update({k: v for k, v in self._record.items() if k not in rec})
        rec["note"] = note
        self._record = rec

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        out = dict(self._record)
        out["bytes_up"] = self.bytes_up
        out["bytes_down"] = self.bytes_down
        out["duration_ms"] = round((time.time() - self._started) * 1000, 1)
        out["tls"] = "bumped"
        self._ctx.log_record(out)
        self._ctx.release(self)
