"""awf-api-proxy as a real process, and a TLS origin on loopback that plays the providers."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import signal as _signal
import ssl
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import trustme
from aiohttp import web
from aiohttp.typedefs import Handler

LISTENING = "awf-api-proxy listening on "
READY = "awf-api-proxy ready"
KEYS = {
    "OPENAI_API_KEY": "sk-test-openai-REALKEY-0123456789",
    "ANTHROPIC_API_KEY": "sk-ant-test-REALKEY-0123456789",
    "COPILOT_GITHUB_TOKEN": "ghu_test_REALKEY_0123456789",
    "GEMINI_API_KEY": "AIzaTest-REALKEY-0123456789",
}
CHUNK = b"z" * 65536


def write_keys(path: Path, keys: Mapping[str, str], mode: int = 0o600) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in keys.items()))
    path.chmod(mode)
    return path


@dataclass
class FakeProviders:
    """One HTTPS origin answering like all four providers; it remembers what it was sent."""

    port: int = 0
    ca_file: Path = Path()
    seen: list[dict[str, str]] = field(default_factory=list)
    release: asyncio.Queue[None] = field(default_factory=asyncio.Queue)
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)  # a gated stream's client left


def _sse(event: str | None, data: object) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


async def _stream(request: web.Request, events: list[bytes]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-cache"})
    await resp.prepare(request)
    for ev in events:
        await resp.write(ev)
    await resp.write_eof()
    return resp


OPENAI_SSE = [
    _sse(None, {"choices": [{"delta": {"content": "Hel"}}], "usage": None}),
    _sse(None, {"choices": [{"delta": {"content": 'lo "prompt_tokens": 999'}}], "usage": None}),
    _sse(None, {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7,
                                         "total_tokens": 18}}),
    b"data: [DONE]\n\n",
]
ANTHROPIC_SSE = [
    _sse("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "usage": {"input_tokens": 25, "output_tokens": 1}}}),
    _sse("content_block_delta", {"type": "content_block_delta",
                                 "delta": {"type": "text_delta", "text": "Hi"}}),
    _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                           "usage": {"output_tokens": 15}}),
    _sse("message_stop", {"type": "message_stop"}),
]


@contextlib.asynccontextmanager
async def fake_providers(tmp: Path, names: tuple[str, ...] = ("127.0.0.1", "api.openai.com")
                         ) -> AsyncIterator[FakeProviders]:
    ca = trustme.CA()
    cert = ca.issue_cert(*names)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ca_file = tmp / "fake-providers-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    fake = FakeProviders(ca_file=ca_file)

    @web.middleware
    async def remember(request: web.Request, handler: Handler) -> web.StreamResponse:
        fake.seen.append({k.lower(): v for k, v in request.headers.items()}
                         | {":path": request.raw_path, ":method": request.method})
        return await handler(request)

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body.get("stream"):
            return await _stream(request, OPENAI_SSE)
        return web.json_response({"id": "c1", "choices": [{"message": {"content": "hi"}}],
                                  "usage": {"prompt_tokens": 5, "completion_tokens": 3}})

    async def messages(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body.get("stream"):
            return await _stream(request, ANTHROPIC_SSE)
        return web.json_response({"id": "m1", "content": [{"type": "text", "text": "hi"}],
                                  "usage": {"input_tokens": 9, "output_tokens": 4}})

    async def gemini(request: web.Request) -> web.Response:
        return web.json_response({"candidates": [], "usageMetadata": {
            "promptTokenCount": 12, "candidatesTokenCount": 6, "totalTokenCount": 18}})

    async def gated_sse(request: web.Request) -> web.StreamResponse:
        """Event i+1 is sent only after the test took event i from the sidecar."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for i in range(int(request.match_info["n"])):
                await resp.write(_sse(None, {"i": i}))
                await fake.release.get()
        except asyncio.CancelledError:  # handler_cancellation: the client hung up
            fake.hung_up.set()
            raise
        await resp.write_eof()
        return resp

    async def burst(request: web.Request) -> web.StreamResponse:
        """n completion chunks as fast as they can go, then the usage chunk (bench)."""
        n = int(request.match_info["n"])
        event = _sse(None, {"id": "c", "object": "chat.completion.chunk",
                            "choices": [{"index": 0, "delta": {"content": "token "}}]})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for _ in range(n):
            await resp.write(event)
        await resp.write(_sse(None, {"choices": [], "usage": {"prompt_tokens": 10,
                                                               "completion_tokens": n}}))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        headers = {"Retry-After": "7"} if code == 429 else {}
        return web.json_response({"error": {"type": "origin", "code": code}}, status=code,
                                 headers=headers)

    async def download(request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.content_length = n
        await resp.prepare(request)
        left = n
        while left > 0:
            part = CHUNK if left >= len(CHUNK) else CHUNK[:left]
            await resp.write(part)
            left -= len(part)
        return resp

    async def upload(request: web.Request) -> web.Response:
        size, tail = 0, b""
        async for chunk in request.content.iter_any():
            size += len(chunk)
            tail = (tail + chunk)[-16:]
        return web.json_response({"size": size, "tail": tail.decode("latin-1")})

    async def truncated(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(_sse(None, {"i": 0}))
        assert request.transport is not None
        request.transport.abort()
        return resp

    async def gzipped(request: web.Request) -> web.Response:
        body = gzip.compress(json.dumps({"usage": {"prompt_tokens": 21,
                                                   "completion_tokens": 2}}).encode())
        return web.Response(body=body, headers={"Content-Type": "application/json",
                                                "Content-Encoding": "gzip"})

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"path": request.raw_path})

    app = web.Application(middlewares=[remember])
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/chat/completions", chat)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1beta/models/{model}", gemini)
    app.router.add_get("/sse/{n}", gated_sse)
    app.router.add_post("/stream/{n}", burst)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/bytes/{n}", download)
    app.router.add_post("/upload", upload)
    app.router.add_get("/truncated", truncated)
    app.router.add_post("/gzipped", gzipped)
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                           shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    fake.port = int(runner.addresses[0][1])
    try:
        yield fake
    finally:
        await runner.cleanup()


class ApiProxyProc:
    def __init__(self, proc: asyncio.subprocess.Process, ports: dict[str, int],
                 lines: list[str]) -> None:
        self.proc = proc
        self.ports = ports
        self.stderr_lines = lines
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, provider: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[provider]}{path}"

    @classmethod
    async def start(cls, *args: str, timeout: float = 20.0) -> ApiProxyProc:
        argv = list(args)
        if not any(a.startswith("--port-base") for a in argv):
            argv += ["--port-base", "0"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy.api.main", *argv,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stderr is not None
        ports: dict[str, int] = {}
        lines: list[str] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    raw = await proc.stderr.readline()
                    if not raw:
                        await proc.wait()
                        raise RuntimeError(f"awf-api-proxy exited {proc.returncode} before "
                                           f"ready: {''.join(lines)}")
                    line = raw.decode()
                    lines.append(line)
                    if line.startswith(LISTENING):
                        endpoint, name = line[len(LISTENING):].split()
                        ports[name.strip("()")] = int(endpoint.rsplit(":", 1)[1])
                    if line.strip() == READY:
                        break
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        self = cls(proc, ports, lines)
        self._reader = asyncio.get_running_loop().create_task(self._read_stderr())
        return self

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while raw := await self.proc.stderr.readline():
            self.stderr_lines.append(raw.decode())

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    async def stop(self, timeout: float = 15.0) -> int:
        if self.proc.returncode is None:
            os.kill(self.proc.pid, _signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout):
                code = await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._reader
        return code

    def rss_peak_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def running_api_proxy(*args: str) -> AsyncIterator[ApiProxyProc]:
    p = await ApiProxyProc.start(*args)
    try:
        yield p
    finally:
        await p.stop()


def target_args(port: int, host: str = "127.0.0.1") -> list[str]:
    return [a for prov in ("openai", "anthropic", "copilot", "gemini")
            for a in (f"--{prov}-api-target", f"{host}:{port}")]
