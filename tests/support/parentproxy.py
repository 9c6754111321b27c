"""A tiny parent proxy for `--upstream-proxy` tests: CONNECT and absolute-URI requests.

Every name leads to `target` (127.0.0.1: the tests' origins; the wan's address end to end).
It counts what reached it, keeps the request heads it got, may require `Proxy-Authorization`
(407 without it) or refuse everything with a fixed status. An absolute-URI request is rewritten
to origin form and the connection then just relays bytes (one request per connection is all
the tests need; keep-alive works as a relay). `running_parent` runs one in a thread of its own,
for tests that are not async (a Docker run reaches it on `host`, an address of this host).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field


@dataclass
class Parent:
    port: int = 0
    heads: list[bytes] = field(default_factory=list)
    credentials: tuple[str, str] | None = None  # required user, password
    refuse: int | None = None  # answer every request with this status
    silent: bool = False  # accept, then never answer
    target: str = "127.0.0.1"  # where every name leads
    host: str = "127.0.0.1"  # where it listens

    @property
    def count(self) -> int:
        return len(self.heads)

    def url(self, user: str | None = None, password: str | None = None) -> str:
        cred = f"{user}:{password}@" if user is not None else ""
        return f"http://{cred}{self.host}:{self.port}"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name:
            return v.strip()
    return None


async def _serve(p: Parent, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        writer.close()
        return
    p.heads.append(head)
    if p.silent:
        await reader.read()
        writer.close()
        return
    status = p.refuse
    if status is None and p.credentials is not None:
        want = b"Basic " + base64.b64encode(":".join(p.credentials).encode())
        if _header(head, b"proxy-authorization") != want:
            status = 407
    if status is not None:
        extra = b"Proxy-Authenticate: Basic realm=\"t\"\r\n" if status == 407 else b""
        writer.write(b"HTTP/1.1 %d Refused\r\n%sContent-Length: 0\r\nConnection: close\r\n\r\n"
                     % (status, extra))
        await writer.drain()
        writer.close()
        return
    method, target, version = head.split(b"\r\n", 1)[0].split(b" ")
    if method == b"CONNECT":
        port = int(target.rsplit(b":", 1)[1])
        rest = b""
    else:
        assert target.startswith(b"http://"), target
        hostport, _slash, path = target[7:].partition(b"/")
        port = int(hostport.rsplit(b":", 1)[1]) if b":" in hostport else 80
        lines = [ln for ln in head.split(b"\r\n")[1:]
                 if not ln.lower().startswith(b"proxy-authorization:")]
        rest = b"\r\n".join([b"%s /%s %s" % (method, path, version), *lines])
    try:
        up_r, up_w = await asyncio.open_connection(p.target, port)
    except OSError:
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        writer.close()
        return
    if method == b"CONNECT":
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    else:
        up_w.write(rest)
    await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
    writer.close()
    up_w.close()


@contextlib.asynccontextmanager
async def parent_proxy(**kw: object) -> AsyncIterator[Parent]:
    p = Parent(**kw)  # type: ignore[arg-type]
    server = await asyncio.start_server(lambda r, w: _serve(p, r, w), p.host, 0)
    p.port = server.sockets[0].getsockname()[1]
    try:
        yield p
    finally:
        server.close()


@contextlib.contextmanager
def running_parent(**kw: object) -> Iterator[Parent]:
    """`parent_proxy` on an event loop in a thread of its own, for the length of the block."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    started: list[Parent] = []
    stop = asyncio.Event()

    async def serve() -> None:
        async with parent_proxy(**kw) as p:
            started.append(p)
            ready.set()
            await stop.wait()

    def main() -> None:
        try:
            loop.run_until_complete(serve())
        finally:
            ready.set()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    ready.wait(20)
    if not started:
        raise RuntimeError("the parent proxy did not start")
    try:
        yield started[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(20)
        loop.close()
