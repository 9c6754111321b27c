"""The guard's I/O edge: a unix socket in front of the engine's, one request per connection.

Each client connection carries exactly one request. Its head (64 KiB at most) and body (1 MiB;
an archive upload streams instead) are read and checked by `GuardConfig.decide()`. A refusal is
Docker's error body `{"message": ...}` with `Connection: close`, so the docker CLI prints it. An
allowed request goes to the engine on a new connection with `Connection: close`; the answer is
relayed until the engine closes, and the client connection is closed after it. Bytes from the
client after its request are forwarded only once the engine has hijacked the connection (101, or
a raw stream: attach and exec start), so a second request can never ride on an approved one.

Creates, exec creates, removals, the container list and /info are read whole (16 MiB at most),
so the owned set can be updated (`policy.record`) or the answer filtered before it is sent on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import sys
from collections.abc import Callable
from typing import Final

from containers.guard import policy
from containers.guard.policy import Allow, GuardConfig, Refuse, Rewrite, Watch
from proxy.errors import BadRequest, HeadTooLarge
from proxy.http1 import (
    HOP_BY_HOP,
    BadResponse,
    BodyFramer,
    Framing,
    HeadParser,
    RequestHead,
    ResponseHead,
    ResponseHeadParser,
)

MAX_HEAD: Final = 65_536
MAX_ANSWER: Final = 16 << 20  # a watched answer from the engine, read whole
HEAD_TIMEOUT: Final = 30.0
BODY_TIMEOUT: Final = 60.0
CONNECT_TIMEOUT: Final = 10.0
ANSWER_TIMEOUT: Final = 300.0  # a create can wait on the engine's image store
CHUNK: Final = 65_536
_HIJACKS: Final = ("/attach", "/start")  # container attach and exec start may hijack
_RAW_STREAMS: Final = (b"application/vnd.docker.raw-stream",
                       b"application/vnd.docker.multiplexed-stream")

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class _Answered(Exception):
    """Unwinds an exchange that has already been answered with an error."""


class Guard:
    """The listening guard: `await start()`, then `await stop()`; `owned` for tests."""

    def __init__(self, listen_path: str, upstream_path: str, cfg: GuardConfig, *,
                 log: Log = _stderr) -> None:
        self.listen_path, self.upstream_path, self.cfg = listen_path, upstream_path, cfg
        self._log = log
        self._owned: frozenset[str] = frozenset()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def owned(self) -> frozenset[str]:
        return self._owned

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.listen_path).st_mode):
                os.unlink(self.listen_path)  # a stale socket of an earlier guard
        self._server = await asyncio.start_unix_server(self._connection, self.listen_path,
                                                       limit=CHUNK)
        os.chmod(self.listen_path, 0o666)  # the agent runs as the invoking user

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.listen_path)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._exchange(reader, writer)
        except (_Answered, ConnectionError):
            pass
        except Exception as exc:  # a bug: fail closed on this connection, keep serving
            self._log(f"awf-guard error: {type(exc).__name__}: {exc}")
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    # -- one exchange ------------------------------------------------------------------------

    async def _exchange(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        head, rest = await self._read_head(reader, writer)
        target = head.target.decode("ascii")
        method = head.method.decode("ascii")
        path, _, query = target.partition("?")
        streams = policy.body_streams(method, path)
        body: bytes | None = None
        if not streams:
            body, rest = await self._read_body(head, rest, reader, writer)
        decision = self.cfg.decide(method, path, query, body, self._owned)
        if isinstance(decision, Refuse):
            self._log(f"awf-guard refuse {method} {path} "
                      f"{decision.message.removeprefix(policy.PREFIX)}")
            await _answer(writer, decision.status, decision.message)
            return
        self._log(f"awf-guard allow {method} {path}")
        if isinstance(decision, Rewrite):
            body = decision.body
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                up_r, up_w = await asyncio.open_unix_connection(self.upstream_path, limit=CHUNK)
        except (OSError, TimeoutError) as exc:
            await _answer(writer, 502, f"{policy.PREFIX}cannot reach the Docker engine at "
                                       f"{self.upstream_path}: {exc}")
            return
        try:
            hijack = (head.header(b"upgrade") is not None and path.endswith(_HIJACKS))
            up_w.write(_upstream_head(head, decision.path or path, query, body, hijack))
            if body:
                up_w.write(body)
            await up_w.drain()
            if decision.watch is not Watch.NONE:
                await self._watched(decision, method, up_r, writer)
            else:
                framer = BodyFramer(head.framing, head.content_length) if streams else None
                await _relay(reader, writer, up_r, up_w, rest, method, framer,
                             hijackable=path.endswith(_HIJACKS))
        finally:
            up_w.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(up_w.wait_closed(), 1)

    async def _read_head(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> tuple[RequestHead, bytes]:
        parser = HeadParser(max_head=MAX_HEAD)
        try:
            async with asyncio.timeout(HEAD_TIMEOUT):
                while True:
                    data = await reader.read(CHUNK)
                    if not data:
                        raise _Answered  # closed before a whole head: nothing to answer
                    head = parser.feed(data)
                    if head is not None:
                        break
        except TimeoutError:
            await _answer(writer, 408, f"{policy.PREFIX}no complete request head in "
                                       f"{HEAD_TIMEOUT:.0f} s")
            raise _Answered from None
        except (BadRequest, HeadTooLarge) as exc:
            self._log(f"awf-guard refuse - - bad request: {exc}")
            await _answer(writer, 400, f"{policy.PREFIX}bad request: {exc}")
            raise _Answered from None
        if not head.target.startswith(b"/"):
            await _answer(writer, 400, f"{policy.PREFIX}send the path in origin form (/...)")
            raise _Answered
        if (head.header(b"expect") or b"").lower() == b"100-continue" and (
                head.framing is not Framing.NONE):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return head, parser.take_rest()

    async def _read_body(self, head: RequestHead, rest: bytes, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> tuple[bytes, bytes]:
        """The whole request body (chunked decoded) and the bytes after it."""
        if head.framing is Framing.LENGTH and head.content_length > policy.MAX_BODY:
            await _answer(writer, 413, f"{policy.PREFIX}request body over "
                                       f"{policy.MAX_BODY} bytes")
            raise _Answered
        framer = BodyFramer(head.framing, head.content_length)
        raw = bytearray()
        data = rest
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                while not framer.done:
                    if not data:
                        data = await reader.read(CHUNK)
                        if not data:
                            raise _Answered  # the client left mid-body
                    take = framer.feed(data)
                    raw += data[:take]
                    data = data[take:]
                    if len(raw) > policy.MAX_BODY + 65_536:
                        await _answer(writer, 413, f"{policy.PREFIX}request body over "
                                                   f"{policy.MAX_BODY} bytes")
                        raise _Answered
        except TimeoutError:
            await _answer(writer, 408, f"{policy.PREFIX}request body not received in "
                                       f"{BODY_TIMEOUT:.0f} s")
            raise _Answered from None
        except BadRequest as exc:
            await _answer(writer, 400, f"{policy.PREFIX}bad request body: {exc}")
            raise _Answered from None
        body = _dechunk(bytes(raw)) if head.framing is Framing.CHUNKED else bytes(raw)
        if len(body) > policy.MAX_BODY:
            await _answer(writer, 413, f"{policy.PREFIX}request body over "
                                       f"{policy.MAX_BODY} bytes")
            raise _Answered
        return body, data

    async def _watched(self, decision: Allow | Rewrite, method: str,
                       up_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read the engine's whole answer, note or filter it, send it on."""
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT):
                head, body = await _read_answer(up_r, method)
        except (BadResponse, TimeoutError, asyncio.IncompleteReadError) as exc:
            await _answer(writer, 502, f"{policy.PREFIX}bad answer from the engine: {exc!r}")
            return
        self._owned = policy.record(self._owned, decision, head.status, body)
        if head.status == 200 and decision.watch is Watch.LIST:
            body = policy.filter_list(body, self._owned)
        elif head.status == 200 and decision.watch is Watch.INFO:
            body = policy.redact_info(body)
        writer.write(_answer_head(head, len(body)) + body)
        await writer.drain()


# -- framing helpers -------------------------------------------------------------------------


def _upstream_head(head: RequestHead, path: str, query: str, body: bytes | None,
                   hijack: bool) -> bytes:
    """The request head for the engine: hop-by-hop fields, Expect and the framing replaced."""
    named = {t.strip().lower() for n, v in head.headers if n.lower() == b"connection"
             for t in v.split(b",")}
    drop = HOP_BY_HOP | named | {b"content-length", b"transfer-encoding", b"expect"}
    target = path + ("?" + query if query else "")
    lines = [head.method + b" " + target.encode("ascii") + b" HTTP/1.1"]
    lines += [n + b": " + v for n, v in head.headers if n.lower() not in drop]
    if body is None:  # streamed: the client's framing, verbatim
        if head.framing is Framing.CHUNKED:
            lines.append(b"Transfer-Encoding: chunked")
        elif head.framing is Framing.LENGTH:
            lines.append(b"Content-Length: %d" % head.content_length)
    elif body or head.method in (b"POST", b"PUT"):
        lines.append(b"Content-Length: %d" % len(body))
    if hijack:
        lines.append(b"Upgrade: tcp")
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _answer_head(head: ResponseHead, length: int) -> bytes:
    drop = HOP_BY_HOP | {b"content-length", b"transfer-encoding"}
    lines = [b"HTTP/1.1 %d " % head.status + head.reason]
    lines += [n + b": " + v for n, v in head.headers if n.lower() not in drop]
    if head.status not in (204, 304):
        lines.append(b"Content-Length: %d" % length)
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _answer(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    """Docker's error format, which the docker CLI prints as the daemon's message."""
    body = json.dumps({"message": message}).encode("utf-8") + b"\n"
    phrase = {400: "Bad Request", 403: "Forbidden", 408: "Request Timeout",
              413: "Content Too Large", 502: "Bad Gateway"}.get(status, "Error")
    writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                 % (status, phrase.encode(), len(body)) + body)
    with contextlib.suppress(ConnectionError, TimeoutError):
        async with asyncio.timeout(5):
            await writer.drain()


def _dechunk(raw: bytes) -> bytes:
    """The data of a chunked body BodyFramer has already validated."""
    out, pos = bytearray(), 0
    while True:
        eol = raw.index(b"\r\n", pos)
        size = int(raw[pos:eol].split(b";", 1)[0], 16)
        if not size:
            return bytes(out)
        out += raw[eol + 2: eol + 2 + size]
        pos = eol + 2 + size + 2


async def _read_answer(reader: asyncio.StreamReader,
                       method: str) -> tuple[ResponseHead, bytes]:
    parser = ResponseHeadParser(request_method=method.encode("ascii"))
    head: ResponseHead | None = None
    data = await reader.read(CHUNK)
    while True:
        if not data:
            raise BadResponse("the engine closed before answering")
        head = parser.feed(data)
        while head is not None and head.interim:
            head = parser.feed(b"")
        if head is not None:
            break
        data = await reader.read(CHUNK)
    rest = parser.take_rest()
    if head.framing is Framing.NONE:
        return head, b""
    framer = BodyFramer(head.framing, head.content_length, error=BadResponse)
    raw = bytearray()
    while True:
        take = framer.feed(rest)
        raw += rest[:take]
        if framer.done:
            break
        if len(raw) > MAX_ANSWER:
            raise BadResponse(f"answer over {MAX_ANSWER} bytes")
        rest = await reader.read(CHUNK)
        if not rest:
            if head.framing is Framing.UNTIL_CLOSE:
                break
            raise BadResponse("the engine closed mid-answer")
    body = _dechunk(bytes(raw)) if head.framing is Framing.CHUNKED else bytes(raw)
    return head, body


async def _relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                 up_r: asyncio.StreamReader, up_w: asyncio.StreamWriter, rest: bytes,
                 method: str, framer: BodyFramer | None, *, hijackable: bool) -> None:
    """Engine to client until the engine closes; client to engine only the streamed body, and
    everything once the engine has hijacked the connection."""
    hijacked = asyncio.Event()
    known = asyncio.Event()  # the engine's final answer head has arrived

    def abort() -> None:
        for w in (client_w, up_w):
            w.transport.abort()

    async def down() -> None:
        parser = ResponseHeadParser(request_method=method.encode("ascii"))
        try:
            while True:
                data = await up_r.read(CHUNK)
                if not data:
                    break
                if not known.is_set():
                    _note_head(parser, data, hijackable, hijacked, known)
                client_w.write(data)
                await client_w.drain()
            if hijacked.is_set() and client_w.can_write_eof():
                client_w.write_eof()
        except OSError:
            abort()
        finally:
            known.set()

    async def up() -> None:
        pending = rest
        try:
            if framer is not None:  # an archive upload: exactly its body
                while not framer.done:
                    if not pending:
                        pending = await client_r.read(CHUNK)
                        if not pending:
                            abort()
                            return
                    take = framer.feed(pending)
                    up_w.write(pending[:take])
                    pending = pending[take:]
                    await up_w.drain()
            await known.wait()
            if not hijacked.is_set():
                return
            if pending:
                up_w.write(pending)
            while data := await client_r.read(CHUNK):
                up_w.write(data)
                await up_w.drain()
            if up_w.can_write_eof():
                up_w.write_eof()
        except (OSError, BadRequest):
            abort()

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(down())
        tasks.create_task(up())


def _note_head(parser: ResponseHeadParser, data: bytes, hijackable: bool,
               hijacked: asyncio.Event, known: asyncio.Event) -> None:
    try:
        head = parser.feed(data)
        while head is not None and head.interim:
            head = parser.feed(b"")
    except BadResponse:
        known.set()  # relayed verbatim, never hijacked
        return
    if head is None:
        return
    raw_stream = (head.header(b"content-type") or b"").split(b";")[0].strip() in _RAW_STREAMS
    if hijackable and (head.status == 101 or (head.status == 200 and raw_stream)):
        hijacked.set()
    known.set()


async def serve(listen_path: str, upstream_path: str, cfg: GuardConfig) -> None:
    """Run the guard until cancelled."""
    guard = Guard(listen_path, upstream_path, cfg)
    await guard.start()
    try:
        await asyncio.Event().wait()
    finally:
        await guard.stop()
