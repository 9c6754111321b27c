"""Tunnels: after `200 Connection established` (CONNECT) or an allowed ClientHello (intercepted
TLS), bytes go transport to transport between the client and a checked origin address.

`open_tunnel` resolves once, checks every address, dials a checked one and joins the two
sockets as a pair of `TunnelSide`s; the access-log record is written when both are closed.
`start_tunnel` does the same without a task when the checked addresses are known at once (the
common case: an IP literal, a static or cached answer), calling its `TunnelOwner` back.
No parsing, copying or per-chunk work beyond a length sum; backpressure pauses the reading
side when the other side's send buffer is full (`flowcontrol`); a FIN is passed on as a
half-close and the tunnel ends when both directions are done or either side is lost.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, cast

from proxy.access_log import Entry
from proxy.addr import IPAddress
from proxy.context import ConnectionContext, Registered
from proxy.dialer import Dialing
from proxy.flowcontrol import HIGH_WATER, tune
from proxy.policy import Decision


class TunnelSide(asyncio.Protocol):
    """One socket of a tunnel; what it reads is written to its peer unchanged."""

    __slots__ = (
        "active", "ctx", "eof", "held", "idle_sweeps", "lost", "nbytes", "peer", "record",
        "started", "transport",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: TunnelSide | None = None
        self.nbytes = 0
        self.eof = False
        self.lost = False
        self.active = True
        self.idle_sweeps = 0
        self.held = b""  # what arrived before join() (an origin that speaks first)
        # the client's side only, set by join(): what logs the tunnel once both sockets closed
        self.ctx: ConnectionContext | None = None
        self.record: dict[str, object] | Entry | None = None
        self.started = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        tune(transport)

    def data_received(self, data: bytes) -> None:
        self.nbytes += len(data)
        self.active = True
        peer = self.peer
        if peer is not None:
            if peer.transport is not None and not peer.lost:
                peer.transport.write(data)
        else:  # not joined yet: kept, in order, for release_held()
            self.held += data
            if len(self.held) >= HIGH_WATER and self.transport is not None:
                self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None:
            return True  # not joined yet: release_held() passes the FIN on
        if peer.transport is None or peer.lost:
            return False
        if peer.eof:  # both directions finished
            peer.transport.close()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
        return True  # keep our side open for writing the other direction

    def pause_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            peer.transport.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.lost:
            peer.transport.close()  # flushes what is buffered, then closes
        if peer is not None and peer.lost:  # both sockets closed: the tunnel ended
            client = self if self.record is not None else peer
            client.finish(peer if client is self else self)

    def finish(self, up: TunnelSide) -> None:
        """Log the tunnel and leave the registry (this is the client's side; once)."""
        rec, ctx = self.record, self.ctx
        self.record = self.ctx = None
        if rec is None or ctx is None:
            return
        ctx.log_record(ended(rec, self.started, self.nbytes, up.nbytes))
        ctx.release(self)

    def release_held(self) -> None:
        """Joined, and whatever the peer's socket must carry first (the `200`) written: pass on
        what arrived before the join, then the FIN or close that came after it."""
        peer = self.peer
        t = peer.transport if peer is not None else None
        if t is None:
            return
        held, self.held = self.held, b""
        if held:
            t.write(held)
            if len(held) >= HIGH_WATER and self.transport is not None and not self.lost:
                self.transport.resume_reading()
        if self.lost:
            t.close()
        elif self.eof and t.can_write_eof():
            t.write_eof()
        elif self.eof:
            t.close()

    def drain(self) -> None:
        pass  # a drain lets open tunnels finish (until --drain-timeout)

    def abort(self) -> None:
        for side in (self, self.peer):
            if side is not None and side.transport is not None:
                side.transport.abort()

    def close_both(self) -> None:
        for side in (self, self.peer):
            if side is not None and side.transport is not None:
                side.transport.close()


def ended(
    rec: dict[str, object] | Entry, started: float, up: int, down: int
) -> dict[str, object] | Entry:
    """A tunnel's record once it ended: byte counts and duration filled in. An `Entry` (the
    explicit proxy's tunnels) is formatted by the log's writer thread, not here."""
    now = time.time()
    if isinstance(rec, Entry):
        return Entry(rec.started, now, rec.client, rec.mode, rec.method, rec.host, rec.port,
                     rec.url, rec.decision, rec.reason, rec.status, up, down)
    rec["bytes_up"] = up
    rec["bytes_down"] = down
    rec["duration_ms"] = round((now - started) * 1000, 1)
    return rec


def join(client: TunnelSide, up: TunnelSide, ctx: ConnectionContext,
         record: dict[str, object] | Entry, started: float) -> None:
    """Link the two sides; `record` is logged (and the client's side released from `ctx`'s
    registry) once, when both sockets are closed (the origin's may already be). The client's
    side holds what that takes: no closure per tunnel."""
    client.peer, up.peer = up, client
    client.ctx, client.record, client.started = ctx, record, started


async def open_tunnel(
    ctx: ConnectionContext,
    owner: Registered,
    client: asyncio.Transport,
    decision: Decision,
    port: int,
    *,
    reply: bytes,
    first_up: bytes,
    record: dict[str, object] | Entry,
    started: float,
) -> TunnelSide | None:
    """Dial, then join. Raises RequestError before anything was sent to the client.

    Returns the client's TunnelSide, now the transport's protocol (reading still paused: the
    caller feeds anything it buffered, then resumes), or None if the client left meanwhile.
    """
    addresses = await ctx.destinations(decision, port)
    up_t, up = await ctx.dial(addresses, port, TunnelSide, decision.host)
    return connect_sides(ctx, owner, client, up_t, up, reply=reply, first_up=first_up,
                         record=record, started=started)


def connect_sides(
    ctx: ConnectionContext, owner: Registered, client: asyncio.Transport,
    up_t: asyncio.Transport, up: TunnelSide, *, reply: bytes, first_up: bytes,
    record: dict[str, object] | Entry, started: float,
) -> TunnelSide | None:
    """The origin answered: join it to the client, as `open_tunnel` returns."""
    if client.is_closing():
        up_t.close()
        return None
    mine = TunnelSide()
    mine.transport = client
    mine.nbytes = len(first_up)
    join(mine, up, ctx, record, started)
    ctx.swap(owner, mine)
    if reply:
        client.write(reply)
    client.set_protocol(mine)
    up.release_held()
    if first_up and not up.lost:
        up_t.write(first_up)
    return mine


class TunnelOwner(Registered, Protocol):
    """The connection a tunnel is opened for, told how `start_tunnel` ended."""

    def tunnel_opened(self, mine: TunnelSide | None) -> None:
        """As `open_tunnel` returns."""
        ...

    def tunnel_failed(self, exc: Exception, host: str, port: int, started: float) -> None:
        """A RequestError (nothing was sent to the client), or a bug's exception (called
        inside its except block); the tunnel was for host:port, asked at `started`."""
        ...


class Opening(Dialing[TunnelSide]):
    """`open_tunnel` without a task, for destinations known at once (`start_tunnel`)."""

    __slots__ = ("_client", "_ctx", "_first_up", "_owner", "_record", "_reply", "_started")

    def __init__(
        self, ctx: ConnectionContext, owner: TunnelOwner, client: asyncio.Transport,
        addresses: tuple[IPAddress, ...], port: int, host: str, *, reply: bytes,
        first_up: bytes, record: dict[str, object] | Entry, started: float,
    ) -> None:
        super().__init__(ctx.loop, addresses, port, TunnelSide,
                         timeout=ctx.limits.connect_timeout, name=host)
        self._ctx = ctx
        self._owner = owner
        self._client = client
        self._reply = reply
        self._first_up = first_up
        self._record = record
        self._started = started

    def connected(self, transport: asyncio.Transport, protocol: TunnelSide) -> None:
        mine = connect_sides(self._ctx, self._owner, self._client, transport, protocol,
                             reply=self._reply, first_up=self._first_up, record=self._record,
                             started=self._started)
        self._owner.tunnel_opened(mine)

    def failed(self, exc: Exception) -> None:
        self._owner.tunnel_failed(exc, self._name, self._port, self._started)


def start_tunnel(
    ctx: ConnectionContext, owner: TunnelOwner, client: asyncio.Transport, decision: Decision,
    port: int, *, reply: bytes, first_up: bytes, record: dict[str, object] | Entry,
    started: float,
) -> Opening | None:
    """`open_tunnel` driven by callbacks when the checked addresses are known at once (an IP
    literal, a static or cached answer, no parent proxy): the dial starts now and `owner`
    hears the outcome; `cancel()` the result if the client leaves first. None: use
    `open_tunnel`. Raises RequestError (nothing sent) as `open_tunnel` does."""
    addresses = ctx.known_destinations(decision, port)
    if addresses is None:
        return None
    opening = Opening(ctx, owner, client, addresses, port, decision.host, reply=reply,
                      first_up=first_up, record=record, started=started)
    opening.start()
    return opening
