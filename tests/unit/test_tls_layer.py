"""proxy/tls_layer.py: the loop's TLS protocol put on an open socket from a callback, with bytes
already read fed to it first, on uvloop's loop and on asyncio's, over real sockets and TLS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import cast

import pytest
import trustme
import uvloop

from proxy import tls_layer

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


def run(loop_name: str, coro: Callable[[], object]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(coro())  # type: ignore[arg-type]


class Upper(asyncio.Protocol):
    """The application protocol over TLS: answers each chunk in capitals."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data.upper())


def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("layer.test").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def test_uvloop_still_has_the_compiled_tls_protocol() -> None:
    # tls_layer relies on a class uvloop does not document; an upgrade that drops it fails here
    assert tls_layer._UvSSLProtocol is not None
    assert {"get_buffer", "buffer_updated", "connection_made"} <= set(
        dir(tls_layer._UvSSLProtocol))


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_server_side_takes_the_client_hello_already_read(loop_name: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server_ctx, client_ctx = contexts()
        outcomes: list[asyncio.Future[None]] = []
        firsts: list[bytes] = []

        class Raw(asyncio.Protocol):
            """Reads the first bytes itself (as the transparent listener does), then wraps."""

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.t = cast(asyncio.Transport, transport)

            def data_received(self, data: bytes) -> None:
                firsts.append(data)
                self.t.pause_reading()
                outcomes.append(tls_layer.wrap(loop, self.t, Upper(), server_ctx,
                                               server_side=True, first=data,
                                               handshake_timeout=5))

        server = await loop.create_server(Raw, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="layer.test")
            writer.write(b"hello")
            assert await asyncio.wait_for(reader.readexactly(5), 5) == b"HELLO"
            writer.write(b"again")
            assert await asyncio.wait_for(reader.readexactly(5), 5) == b"AGAIN"
            writer.close()
            assert firsts[0][0] == 0x16  # the ClientHello was read before TLS was put on
            await asyncio.wait_for(outcomes[0], 5)
        finally:
            server.close()

    run(loop_name, main)


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_client_side_refuses_an_untrusted_server(loop_name: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server_ctx, _ = contexts()
        _, other_client_ctx = contexts()  # trusts another CA

        async def tls_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.read()
            finally:
                writer.close()

        server = await asyncio.start_server(tls_server, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            raw, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            app = Upper()
            handshake = tls_layer.wrap(loop, raw, app, other_client_ctx, server_side=False,
                                       server_hostname="layer.test", handshake_timeout=5)
            with pytest.raises(ssl.SSLCertVerificationError):
                await asyncio.wait_for(handshake, 5)
            assert app.transport is None  # never told of a connection
            await asyncio.sleep(0.05)
            assert raw.is_closing()
        finally:
            server.close()

    run(loop_name, main)


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_a_silent_peer_is_cut_at_the_handshake_timeout(loop_name: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server_ctx, _ = contexts()
        outcomes: list[asyncio.Future[None]] = []

        class Raw(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                t = cast(asyncio.Transport, transport)
                t.pause_reading()
                outcomes.append(tls_layer.wrap(loop, t, Upper(), server_ctx,
                                               server_side=True, handshake_timeout=0.3))

        server = await loop.create_server(Raw, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            with pytest.raises(ConnectionAbortedError):
                await asyncio.wait_for(asyncio.shield(_first(outcomes)), 5)
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed
            writer.close()
        finally:
            server.close()

    run(loop_name, main)


async def _first(outcomes: list[asyncio.Future[None]]) -> None:
    while not outcomes:
        await asyncio.sleep(0.01)
    await outcomes[0]
