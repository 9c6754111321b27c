"""Real origin servers on loopback for the proxy's tests: HTTP(S) with aiohttp, raw TCP echo."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler

CHUNK = b"x" * 65536


@dataclass
class Origin:
    port: int
    seen: list[dict[str, str]] = field(default_factory=list)
    connections: int = 0
    peers: set[object] = field(default_factory=set)  # http_origin: client addresses served


async def _small(request: web.Request) -> web.Response:
    return web.Response(body=b"s" * 100, content_type="text/plain")


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(int(request.match_info["ms"]) / 1000)
    return web.Response(body=b"s" * 100, content_type="text/plain")


async def _bytes(request: web.Request) -> web.StreamResponse:
    n = int(request.match_info["n"])
    resp = web.StreamResponse()
    resp.content_length = n
    resp.content_type = "application/octet-stream"
    await resp.prepare(request)
    left = n
    while left > 0:
        part = CHUNK if left >= len(CHUNK) else CHUNK[:left]
        await resp.write(part)
        left -= len(part)
    return resp


async def _chunked(request: web.Request) -> web.StreamResponse:
    n = int(request.match_info["n"])
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    left = n
    while left > 0:
        part = CHUNK if left >= len(CHUNK) else CHUNK[:left]
        await resp.write(part)
        left -= len(part)
    await resp.write_eof()
    return resp


async def _echo(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        size += len(chunk)
    return web.json_response({"size": size, "sha256": digest.hexdigest()})


@contextlib.asynccontextmanager
async def http_origin(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Origin]:
    origin = Origin(port=0)

    @web.middleware
    async def remember(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin.seen.append({k.lower(): v for k, v in request.headers.items()}
                           | {":path": request.path_qs, ":method": request.method})
        if request.transport is not None:
            origin.peers.add(request.transport.get_extra_info("peername"))
        return await handler(request)

    async def headers(request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(dict(request.headers)))

    app = web.Application(middlewares=[remember])
    app.router.add_get("/small", _small)
    app.router.add_get("/slow/{ms}", _slow)
    app.router.add_get("/bytes/{n}", _bytes)
    app.router.add_get("/chunked/{n}", _chunked)
    app.router.add_post("/echo", _echo)
    app.router.add_get("/headers", headers)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    origin.port = runner.addresses[0][1]
    try:
        yield origin
    finally:
        await runner.cleanup()


def echo_origin(host: str = "127.0.0.1") -> contextlib.AbstractAsyncContextManager[Origin]:
    """Echoes bytes; on the client's FIN it writes b'<bye>' and closes (tests half-close)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.write(b"<bye>")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    return tcp_origin(handle, host)


def raw_origin(response: bytes, host: str = "127.0.0.1"
               ) -> contextlib.AbstractAsyncContextManager[Origin]:
    """Reads one request head, answers `response` verbatim, then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(response)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return tcp_origin(handle, host)

Handler_ = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def tcp_origin(handle: Handler_, host: str = "127.0.0.1") -> AsyncIterator[Origin]:
    """A raw TCP origin on loopback running `handle` per connection (its Origin counts them)."""
    origin = Origin(port=0)

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        origin.connections += 1
        await handle(reader, writer)

    server = await asyncio.start_server(counted, host, 0)
    origin.port = server.sockets[0].getsockname()[1]
    try:
        yield origin
    finally:
        server.close()
        await server.wait_closed()
