"""Tunnels: after `200 Connection established` (CONNECT) or an allowed ClientHello (intercepted
TLS), bytes go transport to transport between the client and a checked origin address.

`open_tunnel` resolves once, checks every address, dials a checked one and joins the two
sockets as a pair of `TunnelSide`s; the access-log record is written when both are closed.
No parsing, copying or per-chunk work beyond a length sum; backpressure pauses the reading
side when the other side's send buffer is full (`flowcontrol`); a FIN is passed on as a
half-close and the tunnel ends when both directions are done or either side is lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast

from proxy.context import ConnectionContext, Registered
from proxy.flowcontrol import HIGH_WATER, tune
from proxy.policy import Decision


class TunnelSide(asyncio.Protocol):
    """One socket of a tunnel; what it reads is written to its peer unchanged."""

    __slots__ = (
        "active", "eof", "held", "idle_sweeps", "lost", "nbytes", "on_closed", "peer", "transport",
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
        self.on_closed: Callable[[], None] | None = None  # set by join()

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
        done, self.on_closed = self.on_closed, None
        if done is not None:
            done()

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


def join(a: TunnelSide, b: TunnelSide, on_done: Callable[[], None]) -> None:
    """Link two sides; `on_done` runs once, when both sockets are closed (one of them may
    already be, before the join)."""
    a.peer, b.peer = b, a
    remaining = 2 - a.lost - b.lost

    def side_lost() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            on_done()

    a.on_closed = b.on_closed = side_lost


async def open_tunnel(
    ctx: ConnectionContext,
    owner: Registered,
    client: asyncio.Transport,
    decision: Decision,
    port: int,
    *,
    reply: bytes,
    first_up: bytes,
    record: dict[str, object],
    started: float,
) -> TunnelSide | None:
    """Dial, then join. Raises RequestError before anything was sent to the client.

    Returns the client's TunnelSide, now the transport's protocol (reading still paused: the
    caller feeds anything it buffered, then resumes), or None if the client left meanwhile.
    """
    addresses = await ctx.destinations(decision, port)
    up_t, up = await ctx.dial(addresses, port, TunnelSide, decision.host)
    if client.is_closing():
        up_t.close()
        return None
    mine = TunnelSide()
    mine.transport = client
    mine.nbytes = len(first_up)

    def finished() -> None:
        record["bytes_up"] = mine.nbytes
        record["bytes_down"] = up.nbytes
        record["duration_ms"] = round((time.time() - started) * 1000, 1)
        ctx.log_record(record)
        ctx.release(mine)

    join(mine, up, finished)
    ctx.swap(owner, mine)
    if reply:
        client.write(reply)
    client.set_protocol(mine)
    up.release_held()
    if first_up and not up.lost:
        up_t.write(first_up)
    return mine
