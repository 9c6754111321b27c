"""awf-proxy's explicit listener against real origins on loopback: every row of docs/proxy.md §6."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from tests.support.client import connect, get, read_response, roundtrip
from tests.support.origins import Origin, echo_origin, http_origin, raw_origin
from tests.support.proxyproc import ProxyProc, running_proxy

pytestmark = pytest.mark.integration

ORIGIN = "origin.test"


def policy_args(*ports: int, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    return (
        "--allow-domains", f"{ORIGIN},open.test,http://plain.test,https://tls.test,10.9.8.7",
        "--block-domains", "blocked.origin.test",
        "--resolve", f"{ORIGIN}=127.0.0.1",
        "--resolve", f"api.{ORIGIN}=127.0.0.1",
        "--resolve", "plain.test=127.0.0.1",
        "--resolve", "tls.test=127.0.0.1",
        "--resolve", "open.test=127.0.0.1",
        "--allow-range", "127.0.0.1/32",
        "--allow-ports", ",".join(str(p) for p in ports) or "8080",
        *extra,
    )


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    async with http_origin() as o:
        yield o


@pytest.fixture
async def proxy(origin: Origin, tmp_path: Path) -> AsyncIterator[ProxyProc]:
    async with running_proxy(*policy_args(origin.port), "--log-dir", str(tmp_path)) as p:
        yield p


def log_lines(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def wait_log(path: Path, n: int, timeout: float = 5.0) -> list[dict[str, object]]:
    """Poll the access log (flushed within a second) until it has n records."""
    async with asyncio.timeout(timeout):
        while len(lines := log_lines(path)) < n:
            await asyncio.sleep(0.05)
    return lines


# -- allowed traffic -------------------------------------------------------------------------


async def test_absolute_get_allowed_and_logged(proxy: ProxyProc, origin: Origin,
                                               tmp_path: Path) -> None:
    url = f"http://{ORIGIN}:{origin.port}/small"
    resp = await roundtrip(proxy.port, get(url))
    assert resp.status == 200
    assert resp.body == b"s" * 100
    [rec] = await wait_log(tmp_path / "access.jsonl", 1)
    assert rec["decision"] == "allow"
    assert rec["reason"] is None
    assert rec["mode"] == "explicit"
    assert rec["method"] == "GET"
    assert rec["host"] == ORIGIN
    assert rec["port"] == origin.port
    assert rec["url"] == url
    assert rec["status"] == 200
    assert rec["bytes_down"] == 100
    # the request head as forwarded counts upstream: a GET has no body, yet bytes went up
    assert isinstance(rec["bytes_up"], int)
    assert rec["bytes_up"] > len(b"GET /small HTTP/1.1\r\n")
    assert str(rec["ts"]).endswith("Z")
    assert str(rec["client"]).startswith("127.0.0.1:")
    for key in ("bytes_up", "duration_ms"):
        assert key in rec


async def test_subdomain_of_allowed_entry(proxy: ProxyProc, origin: Origin) -> None:
    resp = await roundtrip(proxy.port, get(f"http://api.{ORIGIN}:{origin.port}/small"))
    assert resp.status == 200


async def test_case_and_trailing_dot_are_normalised(proxy: ProxyProc, origin: Origin) -> None:
    url = f"http://ORIGIN.Test.:{origin.port}/small"
    resp = await roundtrip(proxy.port, get(url, host_header=f"ORIGIN.Test.:{origin.port}"))
    assert resp.status == 200


async def test_keep_alive_checks_every_request(proxy: ProxyProc, origin: Origin) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        for _ in range(3):
            writer.write(get(f"http://{ORIGIN}:{origin.port}/small"))
            resp = await read_response(reader)
            assert resp.status == 200
            assert len(resp.body) == 100
        writer.write(get("http://example.com/"))
        resp = await read_response(reader)
        assert resp.status == 403
        assert resp.reason == "domain_not_allowed"
    finally:
        writer.close()


async def test_pipelined_requests_answered_in_order(proxy: ProxyProc, origin: Origin) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        one = get(f"http://{ORIGIN}:{origin.port}/small")
        two = get(f"http://{ORIGIN}:{origin.port}/bytes/7")
        writer.write(one + two)
        first = await read_response(reader)
        second = await read_response(reader)
        assert (first.status, len(first.body)) == (200, 100)
        assert (second.status, second.body) == (200, b"x" * 7)
    finally:
        writer.close()


async def test_hop_by_hop_headers_are_not_forwarded(proxy: ProxyProc, origin: Origin) -> None:
    extra = ("Proxy-Authorization: Basic c2VjcmV0\r\nConnection: keep-alive, X-Private\r\n"
             "X-Private: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\n")
    resp = await roundtrip(proxy.port,
                           get(f"http://{ORIGIN}:{origin.port}/headers", extra=extra))
    seen = {k.lower() for k in json.loads(resp.body)}
    assert "x-kept" in seen
    assert not seen & {"proxy-authorization", "x-private", "keep-alive"}


async def test_request_body_streams_chunked_and_sized(proxy: ProxyProc, origin: Origin) -> None:
    size = 8 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)
    import hashlib

    want = hashlib.sha256(payload).hexdigest()
    head = (f"POST http://{ORIGIN}:{origin.port}/echo HTTP/1.1\r\nHost: {ORIGIN}:{origin.port}\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    resp = await roundtrip(proxy.port, head + payload, timeout=30)
    assert json.loads(resp.body) == {"size": size, "sha256": want}
    chunks = b"".join(b"%x\r\n%s\r\n" % (65536, payload[i:i + 65536])
                      for i in range(0, size, 65536)) + b"0\r\n\r\n"
    head = (f"POST http://{ORIGIN}:{origin.port}/echo HTTP/1.1\r\nHost: {ORIGIN}:{origin.port}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    resp = await roundtrip(proxy.port, head + chunks, timeout=30)
    assert json.loads(resp.body) == {"size": size, "sha256": want}


async def test_chunked_response_passes_through(proxy: ProxyProc, origin: Origin) -> None:
    resp = await roundtrip(proxy.port, get(f"http://{ORIGIN}:{origin.port}/chunked/300000"))
    assert resp.status == 200
    assert resp.body == b"x" * 300000


async def test_until_close_response_then_connection_closes(proxy: ProxyProc) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-close"
    async with raw_origin(answer) as o, running_proxy(*policy_args(o.port)) as p:
        resp = await roundtrip(p.port, get(f"http://{ORIGIN}:{o.port}/"))
    assert resp.status == 200
    assert resp.body == b"until-close"
    assert resp.headers.get("connection") == "close"


async def test_connect_tunnel_relays_and_half_closes(proxy: ProxyProc, tmp_path: Path) -> None:
    log_dir = str(tmp_path / "t")
    async with echo_origin() as echo, running_proxy(*policy_args(echo.port), "--log-dir",
                                                   log_dir) as p:
        reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
        writer.write(connect(f"{ORIGIN}:{echo.port}") + b"early bytes|")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        writer.write(b"more")
        writer.write_eof()  # half-close: the origin still answers
        data = await asyncio.wait_for(reader.read(), 5)
        assert data == b"early bytes|more<bye>"
        writer.close()
        [rec] = await wait_log(tmp_path / "t" / "access.jsonl", 1)
    assert rec["method"] == "CONNECT"
    assert rec["decision"] == "allow"
    assert rec["status"] == 200
    assert rec["bytes_up"] == len(b"early bytes|more")
    assert rec["bytes_down"] == len(data)
    assert "url" not in rec


async def test_connect_tls_end_to_end(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("tls.test").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with http_origin(server_ctx) as o, running_proxy(*policy_args(o.port)) as p:
        reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
        writer.write(connect(f"tls.test:{o.port}"))
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        await writer.start_tls(client_ctx, server_hostname="tls.test")
        writer.write(f"GET /small HTTP/1.1\r\nHost: tls.test:{o.port}\r\n\r\n".encode())
        resp = await read_response(reader)
        writer.close()
    assert resp.status == 200
    assert resp.body == b"s" * 100


async def test_healthz(proxy: ProxyProc) -> None:
    resp = await roundtrip(proxy.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert resp.status == 200
    body = json.loads(resp.body)
    assert body["status"] == "ok"
    assert body["policy"]["allow"] >= 1
    assert "connections" in body
    assert "uptime_s" in body


# -- denials, in the order of docs/proxy.md §6 ------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        (b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", 403,
         "domain_not_allowed"),
        (b"GET http://notorigin.test/ HTTP/1.1\r\nHost: notorigin.test\r\n\r\n", 403,
         "domain_not_allowed"),
        (b"GET http://origin.test.evil.test/ HTTP/1.1\r\nHost: origin.test.evil.test\r\n\r\n",
         403, "domain_not_allowed"),
        (b"GET http://blocked.origin.test/ HTTP/1.1\r\nHost: blocked.origin.test\r\n\r\n", 403,
         "domain_blocked"),
        (b"CONNECT plain.test:443 HTTP/1.1\r\nHost: plain.test:443\r\n\r\n", 403,
         "scheme_denied"),
        (b"GET http://tls.test/ HTTP/1.1\r\nHost: tls.test\r\n\r\n", 403, "scheme_denied"),
        (b"CONNECT origin.test:22 HTTP/1.1\r\nHost: origin.test:22\r\n\r\n", 403, "port_denied"),
        (b"GET http://origin.test:8443/ HTTP/1.1\r\nHost: origin.test:8443\r\n\r\n", 403,
         "port_denied"),
        (b"CONNECT origin.test:0 HTTP/1.1\r\nHost: origin.test:0\r\n\r\n", 400, "bad_request"),
        (b"CONNECT origin.test:65536 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
        (b"CONNECT origin.test:https HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
        (b"GET http://origin.test/ HTTP/1.1\r\nHost: other.test\r\n\r\n", 400, "host_mismatch"),
        (b"GET http://bad_host!.test/ HTTP/1.1\r\nHost: bad_host!.test\r\n\r\n", 400,
         "bad_request"),
        (b"GET http://" + b"a" * 64 + b".test/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
        (b"CONNECT ex..test:443 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
        # a blocked name loses to a bad port? no: bad_request comes first
        (b"CONNECT blocked.origin.test:99999 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
        # blocked before not-allowed before port
        (b"CONNECT blocked.origin.test:22 HTTP/1.1\r\nHost: x\r\n\r\n", 403, "domain_blocked"),
        (b"CONNECT example.com:22 HTTP/1.1\r\nHost: x\r\n\r\n", 403, "domain_not_allowed"),
    ],
)
async def test_denials(proxy: ProxyProc, raw: bytes, status: int, reason: str) -> None:
    resp = await roundtrip(proxy.port, raw)
    assert (resp.status, resp.reason) == (status, reason)
    assert resp.headers.get("connection") == "close"


async def test_denial_body_names_host_port_and_reason(proxy: ProxyProc) -> None:
    resp = await roundtrip(proxy.port, connect("example.com:443"))
    line = resp.body.decode()
    assert line.count("\n") == 1
    assert "example.com" in line
    assert "443" in line
    assert "domain_not_allowed" in line


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.1", "0x7f.0.0.1", "0177.0.0.1", "2130706433", "[::1]",
     "[::ffff:127.0.0.1]", "[0:0::1]", "[fe80::1%25lo]", "169.254.169.254", "0x7f000001"],
)
async def test_ip_literals_denied_in_every_spelling(proxy: ProxyProc, host: str) -> None:
    resp = await roundtrip(proxy.port, connect(f"{host}:443"))
    assert (resp.status, resp.reason) == (403, "ip_literal")
    resp = await roundtrip(proxy.port, get(f"http://{host}/"))
    assert (resp.status, resp.reason) == (403, "ip_literal")


async def test_ip_entry_allows_that_literal(origin: Origin) -> None:
    args = ("--allow-domains", "127.0.0.1", "--allow-ports", str(origin.port))
    async with running_proxy(*args) as p:
        resp = await roundtrip(p.port, get(f"http://127.0.0.1:{origin.port}/small"))
        assert resp.status == 200
        resp = await roundtrip(p.port, get(f"http://127.0.0.2:{origin.port}/small"))
        assert (resp.status, resp.reason) == (403, "ip_literal")


async def test_denied_address_without_allow_range(origin: Origin, tmp_path: Path) -> None:
    args = ("--allow-domains", ORIGIN, "--resolve", f"{ORIGIN}=127.0.0.1",
            "--allow-ports", str(origin.port), "--log-dir", str(tmp_path))
    async with running_proxy(*args) as p:
        resp = await roundtrip(p.port, get(f"http://{ORIGIN}:{origin.port}/small"))
        assert (resp.status, resp.reason) == (403, "denied_address")
        [rec] = await wait_log(tmp_path / "access.jsonl", 1)
    assert rec["decision"] == "deny"
    assert rec["reason"] == "denied_address"
    assert origin.seen == []  # no connection was made


async def test_mixed_answer_dials_only_the_allowed_address(origin: Origin) -> None:
    # 10.255.255.1 is denied (private); 127.0.0.1 is allowed by --allow-range
    args = ("--allow-domains", ORIGIN, "--resolve", f"{ORIGIN}=10.255.255.1",
            "--resolve", f"{ORIGIN}=127.0.0.1", "--allow-range", "127.0.0.0/8",
            "--allow-ports", str(origin.port), "--connect-timeout", "2")
    async with running_proxy(*args) as p:
        resp = await roundtrip(p.port, get(f"http://{ORIGIN}:{origin.port}/small"))
    assert resp.status == 200


async def test_allow_range_covers_mapped_form(origin: Origin) -> None:
    args = ("--allow-domains", ORIGIN, "--resolve", f"{ORIGIN}=::ffff:127.0.0.1",
            "--allow-range", "127.0.0.0/8", "--allow-ports", str(origin.port))
    async with running_proxy(*args) as p:
        reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
        writer.write(connect(f"{ORIGIN}:{origin.port}"))
        resp = await asyncio.wait_for(read_response(reader, head_only=True), 10)
        writer.close()
    # the mapped address is judged by the v4 address it embeds, which --allow-range covers
    assert resp.status == 200


async def test_dns_failure_is_502(tmp_path: Path) -> None:
    # a resolver that answers nothing: an unused loopback UDP port
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    try:
        args = ("--allow-domains", "nowhere.test", "--dns-servers", f"127.0.0.1:{port}",
                "--log-dir", str(tmp_path))
        async with running_proxy(*args) as p:
            resp = await roundtrip(p.port, connect("nowhere.test:443"), timeout=30)
            [rec] = await wait_log(tmp_path / "access.jsonl", 1)
    finally:
        sock.close()
    assert (resp.status, resp.reason) == (502, "dns_failure")
    assert rec["decision"] == "allow"
    assert rec["reason"] == "dns_failure"


async def test_connect_failed_is_502() -> None:
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with running_proxy(*policy_args(port)) as p:
        resp = await roundtrip(p.port, connect(f"{ORIGIN}:{port}"))
        assert (resp.status, resp.reason) == (502, "connect_failed")
        resp = await roundtrip(p.port, get(f"http://{ORIGIN}:{port}/"))
        assert (resp.status, resp.reason) == (502, "connect_failed")


async def test_connect_timeout_is_504() -> None:
    # a listener whose accept queue is full: further SYNs are dropped, the connect stalls
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            try:
                f.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(f)
        async with running_proxy(*policy_args(port, extra=("--connect-timeout", "1"))) as p:
            resp = await roundtrip(p.port, connect(f"{ORIGIN}:{port}"), timeout=15)
    finally:
        for f in fillers:
            f.close()
        listener.close()
    assert (resp.status, resp.reason) == (504, "connect_timeout")


async def test_self_connection_denied() -> None:
    async with running_proxy("--allow-domains", "127.0.0.1,me.test", "--resolve",
                             "me.test=127.0.0.1", "--allow-range", "127.0.0.1/32",
                             "--allow-ports", "1-21") as probe:
        port = probe.port
    # start a proxy that allows its own port; connecting back to it must be refused
    async with running_proxy("--listen", f"127.0.0.1:{port}", "--allow-domains",
                             "127.0.0.1,me.test", "--resolve", "me.test=127.0.0.1",
                             "--allow-range", "127.0.0.1/32", "--allow-ports",
                             str(port)) as p:
        for target in (f"127.0.0.1:{port}", f"me.test:{port}"):
            resp = await roundtrip(p.port, connect(target))
            assert (resp.status, resp.reason) == (403, "self_connection"), target


async def test_connection_cap_answers_503(origin: Origin) -> None:
    async with running_proxy(*policy_args(origin.port, extra=("--max-connections", "2"))) as p:
        held = [await asyncio.open_connection("127.0.0.1", p.port) for _ in range(2)]
        await asyncio.sleep(0.2)  # let the proxy accept both
        try:
            resp = await roundtrip(p.port, get(f"http://{ORIGIN}:{origin.port}/small"))
            assert (resp.status, resp.reason) == (503, "overloaded")
            assert "retry-after" in resp.headers
        finally:
            for _, w in held:
                w.close()
        # once they are gone the proxy serves again
        async with asyncio.timeout(5):
            while True:
                resp = await roundtrip(p.port, get(f"http://{ORIGIN}:{origin.port}/small"))
                if resp.status == 200:
                    break
                await asyncio.sleep(0.05)


async def test_head_timeout_is_408() -> None:
    async with running_proxy("--allow-domains", ORIGIN, "--head-timeout", "0.5") as p:
        reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
        writer.write(b"GET http://origin.test/ HTTP/1.1\r\nHost: ori")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        resp = await asyncio.wait_for(read_response(reader), 5)
        writer.close()
        assert (resp.status, resp.reason) == (408, "head_timeout")
        assert loop.time() - t0 < 3


async def test_head_timeout_counts_from_the_previous_answer(origin: Origin) -> None:
    """On a kept-alive connection the clock starts when the previous answer is written, not
    when the connection opened (one timer per connection is moved, not re-armed)."""
    async with running_proxy(*policy_args(origin.port), "--head-timeout", "1") as p:
        reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.6)  # most of the first deadline is gone
        writer.write(get(f"http://{ORIGIN}:{origin.port}/small"))
        assert (await asyncio.wait_for(read_response(reader), 5)).status == 200
        answered = loop.time()
        writer.write(b"GET http://origin.test/ HTTP/1.1\r\nHost: ori")
        resp = await asyncio.wait_for(read_response(reader), 5)
        waited = loop.time() - answered
        writer.close()
        assert (resp.status, resp.reason) == (408, "head_timeout")
        assert 0.9 <= waited < 3


async def test_slow_answer_is_not_a_head_timeout(origin: Origin) -> None:
    """--head-timeout bounds the wait for a request head, never an origin's answer."""
    async with running_proxy(*policy_args(origin.port), "--head-timeout", "0.3") as p:
        reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
        try:
            writer.write(get(f"http://{ORIGIN}:{origin.port}/slow/1000"))
            assert (await asyncio.wait_for(read_response(reader), 5)).status == 200
            writer.write(get(f"http://{ORIGIN}:{origin.port}/small"))  # still kept alive
            assert (await asyncio.wait_for(read_response(reader), 5)).status == 200
        finally:
            writer.close()


# -- malformed requests: 400, closed, and the proxy keeps serving -----------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"GET\r\n\r\n",
        b"GET http://origin.test/ HTTP/1.1 extra\r\nHost: origin.test\r\n\r\n",
        b"GET http://origin.test/ HTTP/9.9\r\nHost: origin.test\r\n\r\n",
        b"GET http://origin.test/ HTTP/1.1\r\nBad Header: x\r\n\r\n",
        b"GET http://origin.test/ HTTP/1.1\r\nHost: origin.test\r\n folded\r\n\r\n",
        b"POST http://origin.test/ HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        b"POST http://origin.test/ HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 3\r\n"
        b"Content-Length: 4\r\n\r\n",
        b"POST http://origin.test/ HTTP/1.1\r\nHost: origin.test\r\n"
        b"Transfer-Encoding: xchunked\r\n\r\n",
        b"GET http://origin.test/ HTTP/1.1\nHost: origin.test\n\n",
        b"GET http://origin.test/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET http://origin.test/ HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
    ],
)
async def test_malformed_is_400_and_proxy_keeps_serving(proxy: ProxyProc, origin: Origin,
                                                        raw: bytes) -> None:
    resp = await roundtrip(proxy.port, raw)
    assert (resp.status, resp.reason) == (400, "bad_request")
    ok = await roundtrip(proxy.port, get(f"http://{ORIGIN}:{origin.port}/small"))
    assert ok.status == 200


async def test_origin_form_request_is_400(proxy: ProxyProc) -> None:
    resp = await roundtrip(proxy.port, b"GET /index.html HTTP/1.1\r\nHost: origin.test\r\n\r\n")
    assert (resp.status, resp.reason) == (400, "bad_request")


async def test_ipv6_listener(origin: Origin) -> None:
    if not socket.has_ipv6:
        pytest.fail("this machine has no IPv6 loopback")
    async with running_proxy(*policy_args(origin.port), "--listen", "[::1]:0") as p:
        assert p.endpoints[0].startswith("[::1]:")
        resp = await roundtrip(p.port, get(f"http://{ORIGIN}:{origin.port}/small"), host="::1")
    assert resp.status == 200


async def test_interim_100_continue_is_forwarded_then_the_answer() -> None:
    answer = (b"HTTP/1.1 100 Continue\r\n\r\n"
              b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    async with raw_origin(answer) as o, running_proxy(*policy_args(o.port)) as p:
        reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
        writer.write(get(f"http://{ORIGIN}:{o.port}/"))
        interim = await asyncio.wait_for(read_response(reader), 5)
        final = await asyncio.wait_for(read_response(reader), 5)
        writer.close()
    assert interim.status == 100
    assert final.status == 200
    assert final.body == b"ok"


async def test_stale_pooled_origin_is_retried_once() -> None:
    """The origin closes each kept-alive connection after answering: whether the proxy sees the
    close before the next request or only when it reuses the stale connection (then it retries
    once on a fresh dial), the client never notices."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"  # keep-alive, then closes
    async with raw_origin(answer) as o, running_proxy(*policy_args(o.port)) as p:
        reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
        for _ in range(3):
            writer.write(get(f"http://{ORIGIN}:{o.port}/"))
            resp = await asyncio.wait_for(read_response(reader), 5)
            assert (resp.status, resp.body) == (200, b"ok")
            await asyncio.sleep(0.05)
        writer.close()
    assert o.connections == 3
