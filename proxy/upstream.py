"""Origin connections for plain-HTTP forwarding, and their keep-alive pool.

A pooled connection was dialled to an address checked for its (host, port); it is reused only
for that same pair, and the pool is emptied whenever the policy changes. While it carries a
request, an `Upstream` reports to that request's reader (an `exchange.Exchange`).
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

from proxy.flowcontrol import tune
from proxy.parent import Parent

MAX_IDLE_PER_KEY = 64
MAX_IDLE = 2048


class UpstreamReader(Protocol):
    """The request an `Upstream` is carrying (an `exchange.Exchange`)."""

    def upstream_data(self, data: bytes) -> None: ...
    def upstream_lost(self) -> None: ...
    def upstream_paused(self, paused: bool) -> None:
        """The origin is slow (or again quick) to take what we write to it."""
        ...


class Upstream(asyncio.Protocol):
    """One origin connection, dialled for `key` = (host, port)."""

    __slots__ = ("exchange", "key", "lost", "parent", "paused", "pool", "reused", "stamp",
                 "transport")

    def __init__(self, key: tuple[str, int] = ("", 0)) -> None:
        self.transport: asyncio.Transport | None = None
        self.exchange: UpstreamReader | None = None
        self.key = key
        self.pool: Pool | None = None
        self.reused = False
        self.lost = False
        self.paused = False  # reading paused by pause_reading (a slow client), not resumed yet
        self.stamp = 0
        self.parent: Parent | None = None  # dialled to this --upstream-proxy, not the origin

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        tune(transport)

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:  # bytes on an idle connection: nothing can be trusted after that
            self.close()
            return
        ex.upstream_data(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.pool is not None:
            self.pool.discard(self)
        ex, self.exchange = self.exchange, None
        if ex is not None:
            ex.upstream_lost()

    def pause_writing(self) -> None:  # the origin is slow to take the request body
        ex = self.exchange
        if ex is not None:
            ex.upstream_paused(True)

    def resume_writing(self) -> None:
        ex = self.exchange
        if ex is not None:
            ex.upstream_paused(False)

    def attach(self, reader: UpstreamReader) -> None:
        """This connection now carries `reader`'s request."""
        self.exchange = reader

    def detach(self) -> None:
        """The request is over: what arrives now is not for it."""
        self.exchange = None

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def pause_reading(self) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            self.paused = True
            t.pause_reading()

    def resume_reading(self) -> None:
        """Read again after pause_reading; nothing to do (no call) when reading is not paused."""
        if not self.paused:
            return
        self.paused = False
        t = self.transport
        if t is not None and not t.is_closing():
            t.resume_reading()

    def close(self) -> None:
        self.exchange = None
        if self.pool is not None:
            self.pool.discard(self)
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Idle keep-alive origin connections by (host, port), newest first."""

    __slots__ = ("_idle", "_size", "generation")

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[Upstream]] = {}
        self._size = 0
        self.generation = 0

    def take(self, host: str, port: int) -> Upstream | None:
        conns = self._idle.get((host, port))
        while conns:
            up = conns.pop()
            self._size -= 1
            up.pool = None
            if not up.lost and up.transport is not None and not up.transport.is_closing():
                up.reused = True
                up.resume_reading()
                return up
        return None

    def put(self, up: Upstream) -> None:
        if up.lost or up.transport is None or up.transport.is_closing():
            return
        conns = self._idle.setdefault(up.key, [])
        if len(conns) >= MAX_IDLE_PER_KEY or self._size >= MAX_IDLE:
            up.close()
            return
        up.pool = self
        up.stamp = self.generation
        up.resume_reading()  # idle, we still want to see the origin close it
        conns.append(up)
        self._size += 1

    def discard(self, up: Upstream) -> None:
        conns = self._idle.get(up.key)
        if conns and up in conns:
            conns.remove(up)
            self._size -= 1
        up.pool = None

    def sweep(self) -> None:
        """Close connections idle since the previous sweep (called every idle period)."""
        self.generation += 1
        for conns in list(self._idle.values()):
            for up in [u for u in conns if u.stamp < self.generation - 1]:
                up.close()

    def clear(self) -> None:
        for conns in list(self._idle.values()):
            for up in list(conns):
                up.close()
        self._idle.clear()
        self._size = 0

    def __len__(self) -> int:
        return self._size
