"""`--upstream-proxy`'s CONNECT handshake with the parent, on a connection that
`server.ProxyServer.dial` has opened (proxy/parent.py holds the pure parts)."""

from __future__ import annotations

import asyncio
from typing import cast

from proxy.errors import ConnectFailed
from proxy.parent import Parent, ParentFailed, authority, connect_request, parse_answer


class _Handshake(asyncio.Protocol):
    """The parent's connection until it answers our CONNECT."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.answer: asyncio.Future[tuple[int, str, int]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        fut = self.answer
        if fut is None or fut.done():
            return
        try:
            got = parse_answer(self.buf)
        except ConnectFailed as exc:
            fut.set_exception(exc)
            return
        if got is not None:
            if self.transport is not None:
                self.transport.pause_reading()  # what follows is the tunnel's
            fut.set_result(got)

    def eof_received(self) -> bool:
        self._lost()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()

    def _lost(self) -> None:
        fut = self.answer
        if fut is not None and not fut.done():
            fut.set_exception(ParentFailed("the parent proxy closed the connection"))


def handshake_factory() -> _Handshake:
    return _Handshake()


async def handshake(
    transport: asyncio.Transport, hs: asyncio.BaseProtocol, parent: Parent, host: str,
    port: int, proto: asyncio.BaseProtocol,
) -> None:
    """CONNECT host:port over a fresh connection to the parent; on `2xx` the transport is
    handed to `proto` (anything the parent sent after its answer is fed to it).
    ConnectFailed naming the parent's status otherwise; the caller closes the transport and
    bounds the time."""
    assert isinstance(hs, _Handshake)
    hs.answer = asyncio.get_running_loop().create_future()
    if hs.buf:  # an answer before the question: not a proxy we understand
        raise ParentFailed(f"the parent proxy {parent.shown} spoke first")
    transport.write(connect_request(parent, host, port))
    status, phrase, used = await hs.answer
    if not 200 <= status < 300:
        raise ParentFailed(
            f"the parent proxy {parent.shown} refused CONNECT {authority(host, port).decode()}: "
            f"{status} {phrase}".rstrip())
    transport.set_protocol(proto)
    proto.connection_made(transport)
    rest = hs.buf[used:]
    if rest and isinstance(proto, asyncio.Protocol):
        proto.data_received(rest)
    transport.resume_reading()
