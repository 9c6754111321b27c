"""Byte relays: after `200 Connection established`, bytes go transport to transport.

No parsing, copying or per-chunk work beyond a length sum; backpressure pauses the reading
side when the other side's send buffer is full (256 KiB high, 64 KiB low); a FIN is passed on
as a half-close and the tunnel ends when both directions are done or either side is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


def tune(transport: asyncio.BaseTransport) -> None:
    """Our flow-control marks on a fresh stream transport. (uvloop sets TCP_NODELAY on every
    TCP transport itself; asking for the socket object here would cost a wrapper per call.)"""
    if isinstance(transport, asyncio.WriteTransport):
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)


class TunnelSide(asyncio.Protocol):
    """One socket of a tunnel; what it reads is written to its peer unchanged."""

    __slots__ = ("_done", "active", "eof", "idle_sweeps", "lost", "nbytes", "peer", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: TunnelSide | None = None
        self.nbytes = 0
        self.eof = False
        self.lost = False
        self.active = True
        self.idle_sweeps = 0
        self._done: Callable[[], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        tune(transport)

    def data_received(self, data: bytes) -> None:
        self.nbytes += len(data)
        self.active = True
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.lost:
            peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None or peer.transport is None or peer.lost:
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
        done, self._done = self._done, None
        if done is not None:
            done()

    def abort(self) -> None:
        for side in (self, self.peer):
            if side is not None and side.transport is not None:
                side.transport.abort()

    def close_both(self) -> None:
        for side in (self, self.peer):
            if side is not None and side.transport is not None:
                side.transport.close()


def join(a: TunnelSide, b: TunnelSide, on_done: Callable[[], None]) -> None:
    """Link two sides; `on_done` runs once, when both sockets are closed."""
    a.peer, b.peer = b, a
    remaining = 2

    def side_lost() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            on_done()

    a._done = b._done = side_lost
