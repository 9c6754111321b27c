"""TLS on an open connection, in the event loop's own TLS protocol, started from a callback.

`loop.start_tls` is a coroutine and cannot take bytes already read from the socket; SSL bump
needs both: a transparent connection's ClientHello was read to find its name, and a bumped
connection is set up inside a protocol callback. `wrap` installs the loop's TLS protocol
(uvloop's, compiled, when the loop is uvloop's; asyncio's otherwise: the two take the same
arguments) on `transport`, feeds it `first`, and returns the future of the handshake. When
the handshake completes, `app` gets `connection_made` with the TLS transport; if it fails,
the future holds the error (an `OSError`: `ssl.SSLError`, a reset, or `ConnectionAbortedError`
for a handshake slower than `handshake_timeout`) and the connection is closed.
"""

from __future__ import annotations

import asyncio
import ssl
from asyncio import sslproto
from typing import Any

import uvloop
import uvloop.loop

# uvloop's compiled TLS protocol (what its own start_tls uses; not in its type stubs)
_UvSSLProtocol: Any = getattr(uvloop.loop, "SSLProtocol", None)

SHUTDOWN_TIMEOUT = 5.0  # a peer that does not answer our close_notify is cut after this


def wrap(loop: asyncio.AbstractEventLoop, transport: asyncio.Transport,
         app: asyncio.Protocol, context: ssl.SSLContext, *, server_side: bool,
         server_hostname: str | None = None, first: bytes = b"",
         handshake_timeout: float) -> asyncio.Future[None]:
    """Run TLS over `transport` (whose reading the caller paused) for `app`; see the module
    docstring. Reading is resumed here."""
    waiter: asyncio.Future[None] = loop.create_future()
    waiter.add_done_callback(_retrieve)
    cls: Any = sslproto.SSLProtocol
    if _UvSSLProtocol is not None and isinstance(loop, uvloop.Loop):
        cls = _UvSSLProtocol
    proto = cls(loop, app, context, waiter, server_side, server_hostname,
                call_connection_made=True, ssl_handshake_timeout=handshake_timeout,
                ssl_shutdown_timeout=SHUTDOWN_TIMEOUT)
    transport.set_protocol(proto)
    proto.connection_made(transport)
    view = memoryview(first)
    while view and not transport.is_closing():
        buf = proto.get_buffer(len(view))
        n = min(len(buf), len(view))
        buf[:n] = view[:n]
        view = view[n:]
        proto.buffer_updated(n)
    if not transport.is_closing():
        transport.resume_reading()
    return waiter


def _retrieve(fut: asyncio.Future[None]) -> None:
    """The outcome is read by whoever awaits or inspects it; never 'never retrieved'."""
    if not fut.cancelled():
        fut.exception()
