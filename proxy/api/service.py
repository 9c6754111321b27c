"""The sidecar's listeners: one aiohttp application per provider, forwarding to its target.

A request is forwarded as it arrives and its answer as it is produced: the body goes up through
an async iterator over `request.content` (a small body with a Content-Length is read whole
first, so head and body leave in one write), the response comes back `readany()` by `readany()`
into `StreamResponse.write`, which waits for the agent's socket to drain. Nothing is buffered
beyond aiohttp's own flow-control windows, so an SSE event reaches the agent when the provider
sends it and a 1 GiB body passes in constant memory. `auto_decompress=False`: bytes pass as
sent, `Content-Encoding` with them.

Failures before the response head becomes an answer from us, JSON `{"error": {"type",
"message"}}` with `X-Awf-Reason: <type>`: `not_configured` 503, `rate_limited` 429,
`bad_request` 400, `egress_denied` 403 (awf-proxy refused the CONNECT), `egress_failed` and
`upstream_*` 502, `upstream_timeout` 504. After the head has gone out a failure can only cut the
connection, so the agent sees a truncated body, never a complete-looking one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from yarl import URL

from proxy.access_log import AccessLog, rfc3339
from proxy.api.config import ApiProxyConfig
from proxy.api.providers import (
    PROVIDERS,
    Credential,
    Provider,
    ProviderName,
    Target,
    clean_query,
    credential_for,
    downstream_headers,
    request_id,
    upstream_headers,
)
from proxy.api.ratelimit import RateLimiter
from proxy.api.usage import UsageMeter

MAX_LOGGED_PATH = 2048
SMALL_BODY = 64 * 1024  # a request body up to this size is read whole, then sent with the head
MAX_HEAD_LINE = 65536  # a provider's response header line; aiohttp's default is 8190
SHUTDOWN_GRACE = 2.0  # seconds in-flight requests get after SIGTERM (awf waits 3)
# Headers aiohttp's client would otherwise add on its own; the agent's pass through as sent.
SKIP_AUTO = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


@dataclass(slots=True)
class Counters:
    total: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def count(self, status: int, error: str | None) -> None:
        self.total += 1
        key = f"{status // 100}xx"
        self.by_class[key] = self.by_class.get(key, 0) + 1
        if error is not None:
            self.errors[error] = self.errors.get(error, 0) + 1

    def as_json(self) -> dict[str, object]:
        return {"total": self.total, **dict(sorted(self.by_class.items())),
                "errors": dict(sorted(self.errors.items()))}


@dataclass(slots=True)
class Route:
    """One listener's provider, with its credential (None: not configured) and its state."""

    provider: Provider
    target: Target
    cred: Credential | None
    limiter: RateLimiter | None
    counters: Counters = field(default_factory=Counters)
    port: int = 0


class Refusal(Exception):
    """An answer from the sidecar itself, before anything went out to the agent."""

    def __init__(self, status: int, kind: str, message: str,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.headers = headers or []

    def response(self, rid: str) -> web.Response:
        resp = web.Response(
            status=self.status, content_type="application/json",
            text=json.dumps({"error": {"type": self.kind, "message": self.message}}),
        )
        for name, value in self.headers:
            resp.headers[name] = value
        resp.headers["X-Awf-Reason"] = self.kind
        resp.headers["X-Request-ID"] = rid
        return resp


class QuietClientErrors(logging.Filter):
    """Drop aiohttp's tracebacks for malformed requests: each was already answered 400, and its
    bytes (the agent's) have no place on stderr. Anything else still logs, traceback and all."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, HttpProcessingError)


def client_ssl_context(extra_ca_certs: Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if extra_ca_certs is not None:
        ctx.load_verify_locations(cafile=str(extra_ca_certs))
    return ctx


ROUTE = web.AppKey("route", Route)


class ApiProxy:
    """All listeners, the shared upstream session, counters and the usage log."""

    def __init__(
        self,
        cfg: ApiProxyConfig,
        log: AccessLog,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.cfg = cfg
        self.log = log
        self.clock, self.wall, self.new_id = clock, wall, new_id
        self.routes: list[Route] = [
            Route(
                provider=prov,
                target=cfg.target(prov.name),
                cred=credential_for(prov, cfg.keys),
                limiter=RateLimiter(cfg.limits) if cfg.limits.enabled else None,
            )
            for prov in PROVIDERS
        ]
        self._runners: list[web.AppRunner] = []
        self.closing = False
        self.session: aiohttp.ClientSession | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> list[tuple[str, int, ProviderName]]:
        """Bind every listener; (host, port, provider) of each. OSError if one cannot bind."""
        connector = aiohttp.TCPConnector(
            ssl=client_ssl_context(self.cfg.extra_ca_certs), limit=512, use_dns_cache=True,
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, connect=self.cfg.connect_timeout,
                                          sock_read=self.cfg.read_timeout),
            auto_decompress=False,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=SKIP_AUTO,
            max_line_size=MAX_HEAD_LINE,
            max_field_size=MAX_HEAD_LINE,
        )
        bound: list[tuple[str, int, ProviderName]] = []
        try:
            for index, route in enumerate(self.routes):
                app = web.Application()
                app[ROUTE] = route
                app.router.add_route("*", "/{tail:.*}", self._handle)
                # handler_cancellation: an agent that hangs up mid-stream cancels its handler,
                # which closes the upstream connection, so the provider stops generating
                runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                       shutdown_timeout=SHUTDOWN_GRACE,
                                       handler_cancellation=True)
                await runner.setup()
                self._runners.append(runner)
                site = web.TCPSite(runner, self.cfg.listen_host, self.cfg.port_for(index),
                                   reuse_address=True)
                await site.start()
                route.port = int(runner.addresses[0][1])
                bound.append((self.cfg.listen_host, route.port, route.provider.name))
        except BaseException:
            await self.close()
            raise
        return bound

    async def close(self) -> None:
        """Stop listening; in-flight exchanges get SHUTDOWN_GRACE seconds, then are cut."""
        self.closing = True
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self.session is not None:
            await self.session.close()
            self.session = None

    # -- health --------------------------------------------------------------------------------

    def health(self, route: Route) -> web.Response:
        configured = route.cred is not None
        body: dict[str, object] = {
            "status": "healthy" if configured else "not_configured",
            "service": route.provider.service,
        }
        if route is self.routes[0]:  # the management port
            body["providers"] = {
                r.provider.name.value: {"configured": r.cred is not None, "port": r.port,
                                        "target": r.target.netloc}
                for r in self.routes
            }
            body["egress_proxy"] = self.cfg.egress_proxy
            body["requests"] = {"total": sum(r.counters.total for r in self.routes)} | {
                r.provider.name.value: r.counters.as_json() for r in self.routes
            }
        return web.json_response(body, status=200 if configured else 503)

    # -- forwarding ------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        route = request.app[ROUTE]
        if request.method == "GET" and request.rel_url.raw_path == "/health":
            return self.health(route)
        exchange = Exchange(self, route, request)
        return await exchange.run()

    def record(self, ex: Exchange) -> None:
        ex.route.counters.count(ex.status, ex.error)
        self.log.record({
            "ts": rfc3339(ex.started_wall),
            "provider": ex.route.provider.name.value,
            "method": ex.request.method,
            "path": ex.request.rel_url.raw_path[:MAX_LOGGED_PATH],
            "status": ex.status,
            "bytes_up": ex.bytes_up,
            "bytes_down": ex.bytes_down,
            "duration_ms": round((self.clock() - ex.started) * 1000, 1),
            "request_id": ex.rid,
            "streamed": ex.streamed,
            "input_tokens": ex.meter.input_tokens if ex.meter else None,
            "output_tokens": ex.meter.output_tokens if ex.meter else None,
            "error": ex.error,
        })


class Exchange:
    """One request and its answer; counts bytes, reads usage, records one log line."""

    __slots__ = ("bytes_down", "bytes_up", "error", "meter", "proxy", "request", "rid", "route",
                 "started", "started_wall", "status", "streamed")

    def __init__(self, proxy: ApiProxy, route: Route, request: web.Request) -> None:
        self.proxy, self.route, self.request = proxy, route, request
        self.started, self.started_wall = proxy.clock(), proxy.wall()
        self.rid = request_id(request.headers.get("X-Request-ID"), proxy.new_id)
        self.status = 0
        self.bytes_up = self.bytes_down = 0
        self.error: str | None = None
        self.meter: UsageMeter | None = None
        self.streamed = False

    async def run(self) -> web.StreamResponse:
        try:
            return await self._forward()
        except Refusal as refusal:
            self.status, self.error = refusal.status, refusal.kind
            return refusal.response(self.rid)
        except asyncio.CancelledError:  # the agent hung up (handler_cancellation) or shutdown
            self.error = self.error or ("shutdown" if self.proxy.closing else "client_gone")
            raise
        finally:
            self.proxy.record(self)

    def _count_bytes(self, n: int) -> None:
        if self.route.limiter is not None:
            self.route.limiter.count_bytes(self.proxy.clock(), n)

    async def _body(self) -> AsyncIterator[bytes]:
        async for chunk in self.request.content.iter_any():
            self.bytes_up += len(chunk)
            self._count_bytes(len(chunk))
            yield chunk

    def _url(self) -> URL:
        rel = self.request.rel_url
        query = clean_query(rel.raw_query_string,
                            drop_key=self.route.provider.name is ProviderName.GEMINI)
        try:
            return self.route.target.url(rel.raw_path, query)
        except ValueError as exc:
            raise Refusal(400, "bad_request",
                          "awf-api-proxy: the request target must be a path") from exc

    async def _forward(self) -> web.StreamResponse:
        route, request, proxy = self.route, self.request, self.proxy
        prov = route.provider
        if route.cred is None:
            raise Refusal(503, "not_configured",
                          f"awf-api-proxy: {prov.name} is not configured; give it "
                          f"{' or '.join(prov.key_names)} in the keys file")
        url = self._url()
        if route.limiter is not None:
            verdict = route.limiter.admit(proxy.clock())
            if not verdict.allowed:
                raise Refusal(429, "rate_limited",
                              f"awf-api-proxy: {prov.name} is over --rate-limit-"
                              f"{verdict.window.replace('_', '-')} {verdict.limit}; "
                              f"retry in {verdict.retry_after} s", verdict.headers())
        declared = request.content_length
        headers = upstream_headers(prov, route.cred, request.headers.items(), self.rid,
                                   declared)
        body: bytes | AsyncIterator[bytes] | None = None
        if declared is not None and declared <= SMALL_BODY:
            # most API calls: one JSON document, sent with the head in one write
            try:
                body = await request.content.readexactly(declared) if declared else None
            except (asyncio.IncompleteReadError, HttpProcessingError, ConnectionError) as exc:
                raise Refusal(400, "bad_request",
                              "awf-api-proxy: the request body ended before its "
                              "Content-Length") from exc
            self.bytes_up = len(body or b"")
            self._count_bytes(self.bytes_up)
        elif request.body_exists:
            body = self._body()  # streamed as it arrives
        session = proxy.session
        if session is None:  # closed: shutting down
            raise Refusal(503, "shutting_down", "awf-api-proxy is shutting down")
        try:
            upstream = await session.request(
                request.method, url, headers=headers, data=body, allow_redirects=False,
                proxy=proxy.cfg.egress_proxy, compress=None,
            )
        except aiohttp.ClientHttpProxyError as exc:
            raise self._egress_refusal(exc) from exc
        except aiohttp.ClientProxyConnectionError as exc:
            raise Refusal(502, "egress_failed",
                          f"awf-api-proxy: cannot reach the egress proxy "
                          f"{proxy.cfg.egress_proxy}: {_reason(exc)}") from exc
        except aiohttp.ClientSSLError as exc:
            raise Refusal(502, "upstream_tls_failed",
                          f"awf-api-proxy: TLS with {route.target.netloc} failed: "
                          f"{_reason(exc)}") from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise Refusal(504, "upstream_timeout",
                          f"awf-api-proxy: connecting to {route.target.netloc} timed out") from exc
        except aiohttp.ClientConnectorError as exc:
            raise Refusal(502, "upstream_connect_failed",
                          f"awf-api-proxy: cannot connect to {route.target.netloc}: "
                          f"{_reason(exc)}") from exc
        except TimeoutError as exc:  # sock_read before the head
            raise Refusal(504, "upstream_timeout",
                          f"awf-api-proxy: {route.target.netloc} did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise Refusal(502, "upstream_failed",
                          f"awf-api-proxy: {route.target.netloc} failed: {_reason(exc)}") from exc
        async with upstream:
            return await self._relay(upstream)

    def _egress_refusal(self, exc: aiohttp.ClientHttpProxyError) -> Refusal:
        why = ""
        if exc.headers is not None:
            why = exc.headers.get("X-Awf-Reason", "")
        status = 403 if exc.status == 403 else 502
        kind = "egress_denied" if status == 403 else "egress_failed"
        target = self.route.target.netloc
        return Refusal(status, kind,
                       f"awf-api-proxy: the egress proxy {self.proxy.cfg.egress_proxy} answered "
                       f"{exc.status}{' ' + why if why else ''} to CONNECT {target}; "
                       f"it must allow {self.route.target.host}")

    async def _relay(self, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        request, prov = self.request, self.route.provider
        self.status = upstream.status
        raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in upstream.raw_headers]
        resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in downstream_headers(raw, self.rid):
            resp.headers.add(name, value)
        content_type = upstream.headers.get("Content-Type", "")
        self.streamed = content_type.split(";", 1)[0].strip().lower() == "text/event-stream"
        if UsageMeter.applies(content_type):
            self.meter = UsageMeter(prov.input_fields, prov.output_fields,
                                    upstream.headers.get("Content-Encoding", ""))
        await resp.prepare(request)
        content = upstream.content
        while True:
            try:
                chunk = await content.readany()
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.error = ("upstream_timeout" if isinstance(exc, TimeoutError)
                              else "upstream_reset")
                _cut(request)
                return resp
            if not chunk:
                break
            self.bytes_down += len(chunk)
            self._count_bytes(len(chunk))
            if self.meter is not None:
                self.meter.feed(chunk)
            try:
                await resp.write(chunk)
            except ConnectionError:
                self.error = "client_gone"
                return resp
        if self.meter is not None:
            self.meter.finish()
        try:
            await resp.write_eof()
        except ConnectionError:
            self.error = "client_gone"
        return resp


def _cut(request: web.Request) -> None:
    """End the agent's connection without finishing the body: a truncation it can see."""
    transport = request.transport
    if transport is not None:
        transport.close()


def _reason(exc: BaseException) -> str:
    """An exception's own words, without a URL (whose query is not ours to log)."""
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.strerror:
        return os_error.strerror
    if isinstance(os_error, BaseException) and str(os_error):
        return str(os_error)[:200]
    return type(exc).__name__
