"""awf-api-proxy as a real process between an aiohttp client and TLS origins playing the
providers (docs/api-proxy.md §3): auth swapped, streams incremental, errors passed, nothing logged
that should not be, and egress through a real awf-proxy."""

from __future__ import annotations

import asyncio
import gzip
import json
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from proxy.api.providers import PLACEHOLDER
from tests.support.api_proxy import (
    KEYS,
    ApiProxyProc,
    FakeProviders,
    fake_providers,
    running_api_proxy,
    target_args,
    write_keys,
)
from tests.support.proxyproc import running_proxy

pytestmark = pytest.mark.integration

FAKE_AUTH = {
    "Authorization": f"Bearer {PLACEHOLDER}",
    "x-api-key": PLACEHOLDER,
    "x-goog-api-key": PLACEHOLDER,
    "api-key": PLACEHOLDER,
    "Proxy-Authorization": "Basic c3B5OnNweQ==",
    "X-Forwarded-For": "10.0.0.1",
    "Forwarded": "for=10.0.0.1",
    "Via": "1.1 agent",
}
INJECTED = {
    "openai": ("authorization", f"Bearer {KEYS['OPENAI_API_KEY']}"),
    "anthropic": ("x-api-key", KEYS["ANTHROPIC_API_KEY"]),
    "copilot": ("authorization", f"Bearer {KEYS['COPILOT_GITHUB_TOKEN']}"),
    "gemini": ("x-goog-api-key", KEYS["GEMINI_API_KEY"]),
}


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakeProviders]:
    async with fake_providers(tmp_path) as f:
        yield f


@pytest.fixture
async def sidecar(fake: FakeProviders, tmp_path: Path) -> AsyncIterator[ApiProxyProc]:
    keys = write_keys(tmp_path / "keys", KEYS)
    async with running_api_proxy("--keys-file", str(keys), "--extra-ca-certs", str(fake.ca_file),
                                 "--log-dir", str(tmp_path / "logs"),
                                 *target_args(fake.port)) as p:
        yield p


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        yield s


def log_lines(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def wait_log(path: Path, n: int, timeout: float = 5.0) -> list[dict[str, object]]:
    async with asyncio.timeout(timeout):
        while len(lines := log_lines(path)) < n:
            await asyncio.sleep(0.05)
    return lines


# -- auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic", "copilot", "gemini"])
async def test_real_key_injected_client_auth_stripped(
    provider: str, sidecar: ApiProxyProc, fake: FakeProviders, client: aiohttp.ClientSession,
) -> None:
    url = sidecar.url(provider, f"/some/path%2Fx?key={PLACEHOLDER}&alt=sse&q=1")
    async with client.get(url, headers=FAKE_AUTH | {"X-Request-ID": "abc-123"}) as resp:
        assert resp.status == 200
        assert resp.headers["X-Request-ID"] == "abc-123"
    [seen] = fake.seen
    name, value = INJECTED[provider]
    assert seen[name] == value
    assert seen["host"] == f"127.0.0.1:{fake.port}"
    assert seen["x-request-id"] == "abc-123"
    for header in ("proxy-authorization", "x-forwarded-for", "forwarded", "via", "api-key"):
        assert header not in seen
    assert PLACEHOLDER not in json.dumps(seen)
    assert seen[":path"] == "/some/path%2Fx?alt=sse&q=1"
    if provider == "anthropic":
        assert seen["anthropic-version"] == "2023-06-01"
    if provider == "copilot":
        assert seen["copilot-integration-id"] == "copilot-developer-cli"


async def test_path_passes_through_and_host_never_comes_from_the_request(
    sidecar: ApiProxyProc, fake: FakeProviders, client: aiohttp.ClientSession,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.ports["openai"])
    writer.write(b"GET http://evil.test/v1/models?x=1 HTTP/1.1\r\nHost: evil.test\r\n"
                 b"Connection: close\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200")
    [seen] = fake.seen
    assert seen[":path"] == "/v1/models?x=1"
    assert seen["host"] == f"127.0.0.1:{fake.port}"


async def test_a_bad_request_id_gets_a_uuid(sidecar: ApiProxyProc,
                                            client: aiohttp.ClientSession) -> None:
    async with client.get(sidecar.url("openai", "/v1/models"),
                          headers={"X-Request-ID": "x" * 129}) as resp:
        rid = resp.headers["X-Request-ID"]
    assert len(rid) == 36
    assert rid.count("-") == 4


# -- streaming ----------------------------------------------------------------------------------


async def test_sse_events_arrive_one_by_one(sidecar: ApiProxyProc, fake: FakeProviders,
                                            client: aiohttp.ClientSession) -> None:
    """The origin sends event i+1 only after the client got event i through the sidecar:
    any buffering would hang here."""
    async with client.get(sidecar.url("openai", "/sse/5")) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        for i in range(5):
            async with asyncio.timeout(5):
                event = await resp.content.readuntil(b"\n\n")
            assert json.loads(event.removeprefix(b"data: ")) == {"i": i}
            fake.release.put_nowait(None)
        assert await resp.content.read() == b""


async def test_an_agent_hanging_up_mid_stream_is_noticed_at_once(
    sidecar: ApiProxyProc, fake: FakeProviders, tmp_path: Path,
) -> None:
    """The origin sends nothing more until released; the sidecar must still notice the agent
    left (and drop the upstream) without waiting for the next event."""
    async with aiohttp.ClientSession() as own:
        resp = await own.get(sidecar.url("openai", "/sse/3"))
        async with asyncio.timeout(5):
            await resp.content.readuntil(b"\n\n")
        resp.close()  # drop the connection mid-stream
    async with asyncio.timeout(5):
        await fake.hung_up.wait()  # the sidecar dropped its upstream connection too
    [rec] = await wait_log(tmp_path / "logs" / "api-proxy.jsonl", 1)
    assert rec["error"] == "client_gone"
    assert rec["streamed"] is True


async def test_a_cut_upstream_is_a_visible_truncation(sidecar: ApiProxyProc,
                                                       client: aiohttp.ClientSession,
                                                       tmp_path: Path) -> None:
    async with client.get(sidecar.url("openai", "/truncated")) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    [rec] = await wait_log(tmp_path / "logs" / "api-proxy.jsonl", 1)
    assert rec["error"] == "upstream_reset"


# -- errors pass through --------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 502, 503, 529])
async def test_error_statuses_pass_through(status: int, sidecar: ApiProxyProc,
                                           client: aiohttp.ClientSession) -> None:
    async with client.post(sidecar.url("anthropic", f"/status/{status}"), json={}) as resp:
        assert resp.status == status
        assert await resp.json() == {"error": {"type": "origin", "code": status}}
        assert "X-Awf-Reason" not in resp.headers
        if status == 429:
            assert resp.headers["Retry-After"] == "7"


# -- health -------------------------------------------------------------------------------------


async def test_health_when_only_openai_is_configured(fake: FakeProviders, tmp_path: Path,
                                                     client: aiohttp.ClientSession) -> None:
    keys = write_keys(tmp_path / "keys", {"CODEX_API_KEY": KEYS["OPENAI_API_KEY"]}, 0o400)
    async with running_api_proxy("--keys-file", str(keys), "--extra-ca-certs", str(fake.ca_file),
                                 *target_args(fake.port)) as sp:
        async with client.get(sp.url("anthropic", "/health")) as resp:
            assert resp.status == 503
            assert await resp.json() == {"status": "not_configured",
                                         "service": "awf-api-proxy-anthropic"}
        async with client.post(sp.url("gemini", "/v1beta/models/m:generateContent"),
                               json={}) as resp:
            assert resp.status == 503
            assert resp.headers["X-Awf-Reason"] == "not_configured"
            assert "GEMINI_API_KEY" in (await resp.json())["error"]["message"]
        async with client.post(sp.url("openai", "/v1/chat/completions"), json={}) as resp:
            assert resp.status == 200
        async with client.get(sp.url("openai", "/health")) as resp:
            assert resp.status == 200
            body = await resp.json()
    assert fake.seen[0]["authorization"] == f"Bearer {KEYS['OPENAI_API_KEY']}"
    assert body["status"] == "healthy"
    assert body["service"] == "awf-api-proxy-openai"
    assert body["egress_proxy"] is None
    assert body["providers"]["openai"] == {"configured": True, "port": sp.ports["openai"],
                                           "target": f"127.0.0.1:{fake.port}"}
    assert body["providers"]["gemini"]["configured"] is False
    assert body["requests"]["total"] == 2
    assert body["requests"]["openai"] == {"total": 1, "2xx": 1, "errors": {}}
    assert body["requests"]["gemini"] == {"total": 1, "5xx": 1,
                                          "errors": {"not_configured": 1}}


async def test_ready_lines_and_sigterm(sidecar: ApiProxyProc) -> None:
    lines = [ln.strip() for ln in sidecar.stderr_lines]
    assert lines == [
        f"awf-api-proxy listening on 127.0.0.1:{sidecar.ports[p]} ({p})"
        for p in ("openai", "anthropic", "copilot", "gemini")
    ] + ["awf-api-proxy ready"]
    assert await sidecar.stop() == 0


async def test_sigterm_cuts_a_stream_in_flight_after_the_grace(
    sidecar: ApiProxyProc, client: aiohttp.ClientSession, tmp_path: Path,
) -> None:
    async with client.get(sidecar.url("openai", "/sse/3")) as resp:
        async with asyncio.timeout(5):
            await resp.content.readuntil(b"\n\n")
        sidecar.proc.send_signal(signal.SIGTERM)
        with pytest.raises(aiohttp.ClientPayloadError):
            async with asyncio.timeout(10):
                await resp.read()
    assert await sidecar.stop() == 0
    [rec] = log_lines(tmp_path / "logs" / "api-proxy.jsonl")
    assert rec["error"] == "shutdown"


async def test_connect_is_refused(sidecar: ApiProxyProc, fake: FakeProviders) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.ports["openai"])
    writer.write(b"CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(10):
        answer = await reader.read(4096)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 4")  # 404 from the router: no path, nothing forwarded
    assert fake.seen == []


@pytest.mark.parametrize("request_bytes", [
    b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n",
    b"GET /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET /v1 HTTP/1.1\r\nBad Header Line\r\n\r\n",
])
async def test_a_malformed_request_is_a_quiet_400(request_bytes: bytes, sidecar: ApiProxyProc,
                                                  fake: FakeProviders) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.ports["openai"])
    writer.write(request_bytes)
    await writer.drain()
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.0 400")
    assert fake.seen == []
    assert await sidecar.stop() == 0
    assert "Traceback" not in sidecar.stderr


# -- usage log ----------------------------------------------------------------------------------


async def test_usage_log_has_tokens_and_no_secrets(sidecar: ApiProxyProc,
                                                   client: aiohttp.ClientSession,
                                                   tmp_path: Path) -> None:
    calls = [
        ("openai", "/v1/chat/completions?key=SHOULD-NOT-BE-LOGGED", {"stream": True}),
        ("openai", "/v1/chat/completions", {"stream": False}),
        ("anthropic", "/v1/messages", {"stream": True}),
        ("anthropic", "/v1/messages", {}),
        ("gemini", f"/v1beta/models/m:generateContent?key={PLACEHOLDER}", {}),
        ("copilot", "/chat/completions", {}),
    ]
    for provider, path, body in calls:
        async with client.post(sidecar.url(provider, path), json=body,
                               headers=FAKE_AUTH) as resp:
            assert resp.status == 200
            await resp.read()
    records = await wait_log(tmp_path / "logs" / "api-proxy.jsonl", len(calls))
    assert [(r["provider"], r["path"], r["streamed"], r["input_tokens"], r["output_tokens"])
            for r in records] == [
        ("openai", "/v1/chat/completions", True, 11, 7),
        ("openai", "/v1/chat/completions", False, 5, 3),
        ("anthropic", "/v1/messages", True, 25, 15),
        ("anthropic", "/v1/messages", False, 9, 4),
        ("gemini", "/v1beta/models/m:generateContent", False, 12, 6),
        ("copilot", "/chat/completions", False, 5, 3),
    ]
    first = records[0]
    assert set(first) == {"ts", "provider", "method", "path", "status", "bytes_up",
                          "bytes_down", "duration_ms", "request_id", "streamed",
                          "input_tokens", "output_tokens", "error"}
    assert first["method"] == "POST"
    assert first["status"] == 200
    assert first["bytes_up"] == len(b'{"stream": true}')
    assert isinstance(first["bytes_down"], int)
    assert first["bytes_down"] > 100
    await sidecar.stop()
    text = (tmp_path / "logs" / "api-proxy.jsonl").read_text() + sidecar.stderr
    for secret in [*KEYS.values(), PLACEHOLDER, "SHOULD-NOT-BE-LOGGED", "Bearer"]:
        assert secret not in text


async def test_a_compressed_body_passes_as_sent_and_is_metered(
    sidecar: ApiProxyProc, tmp_path: Path,
) -> None:
    async with (aiohttp.ClientSession(auto_decompress=False) as raw,
                raw.post(sidecar.url("openai", "/gzipped"),
                         headers={"Accept-Encoding": "gzip"}) as resp):
        assert resp.headers["Content-Encoding"] == "gzip"
        body = await resp.read()
    assert json.loads(gzip.decompress(body)) == {"usage": {"prompt_tokens": 21,
                                                           "completion_tokens": 2}}
    [rec] = await wait_log(tmp_path / "logs" / "api-proxy.jsonl", 1)
    assert (rec["input_tokens"], rec["output_tokens"]) == (21, 2)
    assert rec["bytes_down"] == len(body)


# -- rate limits --------------------------------------------------------------------------------


async def test_rate_limit_429(fake: FakeProviders, tmp_path: Path,
                              client: aiohttp.ClientSession) -> None:
    keys = write_keys(tmp_path / "keys", KEYS)
    async with running_api_proxy("--keys-file", str(keys), "--extra-ca-certs", str(fake.ca_file),
                                 "--rate-limit-rpm", "2", *target_args(fake.port)) as sp:
        statuses = []
        for _ in range(3):
            async with client.get(sp.url("openai", "/v1/models")) as resp:
                statuses.append(resp.status)
                headers = resp.headers
                body = await resp.json()
        async with client.get(sp.url("anthropic", "/v1/models")) as other:
            assert other.status == 200  # limits are per provider
    assert statuses == [200, 200, 429]
    assert 55 <= int(headers["Retry-After"]) <= 60
    assert headers["X-RateLimit-Limit"] == "2"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Reset"] == headers["Retry-After"]
    assert body["error"]["type"] == "rate_limited"
    assert len(fake.seen) == 3


# -- TLS and egress -----------------------------------------------------------------------------


async def test_an_untrusted_origin_is_a_502(fake: FakeProviders, tmp_path: Path,
                                            client: aiohttp.ClientSession) -> None:
    keys = write_keys(tmp_path / "keys", KEYS)
    async with (running_api_proxy("--keys-file", str(keys), *target_args(fake.port)) as sp,
                client.get(sp.url("openai", "/v1/models")) as resp):
            assert resp.status == 502
            assert resp.headers["X-Awf-Reason"] == "upstream_tls_failed"
    assert fake.seen == []


async def test_egress_through_awf_proxy(fake: FakeProviders, tmp_path: Path,
                                        client: aiohttp.ClientSession) -> None:
    keys = write_keys(tmp_path / "keys", KEYS)
    proxy_logs = tmp_path / "proxy-logs"
    async with running_proxy(
        "--allow-domains", "api.openai.com", "--resolve", "api.openai.com=127.0.0.1",
        "--resolve", "api.anthropic.com=127.0.0.1", "--allow-range", "127.0.0.1/32",
        "--allow-ports", str(fake.port), "--log-dir", str(proxy_logs),
    ) as egress:
        egress_url = f"http://127.0.0.1:{egress.port}"
        async with running_api_proxy(
            "--keys-file", str(keys), "--extra-ca-certs", str(fake.ca_file),
            "--egress-proxy", egress_url,
            "--openai-api-target", f"api.openai.com:{fake.port}",
            "--anthropic-api-target", f"api.anthropic.com:{fake.port}",
        ) as sp:
            async with client.post(sp.url("openai", "/v1/chat/completions"),
                                   json={"stream": True}, headers=FAKE_AUTH) as resp:
                assert resp.status == 200
                assert b"[DONE]" in await resp.read()
            async with client.post(sp.url("anthropic", "/v1/messages"), json={}) as denied:
                assert denied.status == 403
                assert denied.headers["X-Awf-Reason"] == "egress_denied"
                message = (await denied.json())["error"]["message"]
            async with client.get(sp.url("openai", "/health")) as health:
                assert (await health.json())["egress_proxy"] == egress_url
        access = await wait_log(proxy_logs / "access.jsonl", 2)
    assert "domain_not_allowed" in message
    assert f"api.anthropic.com:{fake.port}" in message
    assert len(fake.seen) == 1
    assert fake.seen[0]["host"] == f"api.openai.com:{fake.port}"
    assert fake.seen[0]["authorization"] == f"Bearer {KEYS['OPENAI_API_KEY']}"
    by_host = {(r["host"], r["decision"]) for r in access}
    assert by_host == {("api.openai.com", "allow"), ("api.anthropic.com", "deny")}


async def test_egress_proxy_down_is_a_502(fake: FakeProviders, tmp_path: Path,
                                          client: aiohttp.ClientSession) -> None:
    keys = write_keys(tmp_path / "keys", KEYS)
    async with (running_api_proxy("--keys-file", str(keys), "--egress-proxy",
                                  "http://127.0.0.1:9", *target_args(fake.port)) as sp,
                client.get(sp.url("openai", "/v1/models")) as resp):
            assert resp.status == 502
            assert resp.headers["X-Awf-Reason"] == "egress_failed"
            assert "http://127.0.0.1:9" in (await resp.json())["error"]["message"]


async def test_a_taken_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy.api.main", "--port-base", str(port),
            stderr=asyncio.subprocess.PIPE)
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
    assert proc.returncode == 2
    text = err.decode()
    assert text.count("\n") == 1
    assert text.startswith("awf-api-proxy: --listen-host/--port-base: cannot listen")
