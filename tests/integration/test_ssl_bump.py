"""awf-proxy --ssl-bump with --allow-urls against real TLS origins on loopback (trustme
certificates): curl, Python's ssl and Node as clients (docs/proxy.md §11)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from tests.support.origins import Origin, http_origin
from tests.support.proxyproc import ProxyProc, running_proxy

pytestmark = pytest.mark.integration

NAMES = ("origin.test", "other.test", "excluded.test")


@pytest.fixture(scope="module")
def origin_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def origin(origin_ca: trustme.CA) -> AsyncIterator[Origin]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    origin_ca.issue_cert(*NAMES).configure_cert(ctx)
    async with http_origin(ctx) as o:
        yield o


@pytest.fixture
async def bad_origin(origin_ca: trustme.CA) -> AsyncIterator[Origin]:
    """An origin whose certificate names another host than the one asked for."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    origin_ca.issue_cert("wrong.test").configure_cert(ctx)
    async with http_origin(ctx) as o:
        yield o


def policy(origin: Origin, bad: Origin) -> list[str]:
    return [
        "--allow-domains", "other.test,excluded.test,bad.test",
        "--allow-urls", "https://origin.test/small,GET https://origin.test/headers",
        "--allow-urls", "POST https://origin.test/echo",
        "--resolve", "origin.test=127.0.0.1", "--resolve", "other.test=127.0.0.1",
        "--resolve", "excluded.test=127.0.0.1", "--resolve", "bad.test=127.0.0.1",
        "--allow-range", "127.0.0.1/32",
        "--allow-ports", f"{origin.port},{bad.port}",
    ]


def make_ca(tmp_path: Path, args: list[str]) -> Path:
    ca_dir = tmp_path / "ca"
    done = subprocess.run([sys.executable, "-m", "proxy.main", "--make-ca", str(ca_dir), *args],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert (ca_dir / "ca.pem").exists()
    assert (ca_dir / "ca-key.pem").stat().st_mode & 0o077 == 0
    return ca_dir


@pytest.fixture
async def bumped(origin: Origin, bad_origin: Origin, origin_ca: trustme.CA,
                 tmp_path: Path) -> AsyncIterator[tuple[ProxyProc, Path, Path]]:
    args = policy(origin, bad_origin)
    ca_dir = make_ca(tmp_path, args)
    trust = tmp_path / "origin-ca.pem"
    origin_ca.cert_pem.write_to_path(str(trust))
    logs = tmp_path / "logs"
    async with running_proxy(
        *args, "--ssl-bump", "--ca-cert", str(ca_dir / "ca.pem"),
        "--ca-key", str(ca_dir / "ca-key.pem"), "--extra-ca-certs", str(trust),
        "--ssl-bump-exclude", "excluded.test", "--log-dir", str(logs),
    ) as p:
        yield p, ca_dir / "ca.pem", logs / "access.jsonl"


class Bumped:
    """A raw client: CONNECT, then TLS (SNI = the CONNECT name) over the tunnel."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, proxy: ProxyProc, host: str, port: int, cafile: Path | None,
                   sni: str | None = None) -> Bumped:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        line = await reader.readuntil(b"\r\n\r\n")
        assert line.startswith(b"HTTP/1.1 200"), line
        ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        await writer.start_tls(ctx, server_hostname=sni or host)
        return cls(reader, writer)

    async def request(self, method: str, target: str, host: str,
                      body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"
        if body or method == "POST":
            head += f"Content-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:]
                                                        if ln)}
        n = int(headers.get("content-length", "0"))
        data = await self.reader.readexactly(n) if n else b""
        return status, headers, data

    def close(self) -> None:
        self.writer.close()


def records(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def wait_for(path: Path, pred: object, timeout: float = 5.0) -> list[dict[str, object]]:
    async with asyncio.timeout(timeout):
        while True:
            recs = records(path)
            if any(pred(r) for r in recs):  # type: ignore[operator]
                return recs
            await asyncio.sleep(0.1)


async def test_allowed_url_and_each_denial(bumped: tuple[ProxyProc, Path, Path],
                                          origin: Origin) -> None:
    proxy, ca, log = bumped
    host = f"origin.test:{origin.port}"
    cases = [
        ("GET", "/small", 200, None),
        ("GET", "/small?q=1", 200, None),
        ("GET", "/bytes/10", 403, "url_not_allowed"),
        ("POST", "/headers", 403, "url_not_allowed"),
        ("GET", "/small/../bytes/10", 403, "url_not_allowed"),
        ("GET", "/x/%2e%2e/bytes/10", 403, "url_not_allowed"),
        ("GET", "/small%2F..%2Fbytes", 400, "bad_request"),
    ]
    for method, target, status, reason in cases:
        c = await Bumped.open(proxy, "origin.test", origin.port, ca)
        try:
            got, headers, body = await c.request(method, target, host)
        finally:
            c.close()
        assert got == status, (method, target, body)
        assert headers.get("x-awf-reason") == reason, (method, target)
    # the origin saw only the allowed requests, with the normalised target
    assert [s[":path"] for s in origin.seen] == ["/small", "/small?q=1"]
    recs = await wait_for(log, lambda r: r.get("url", "").endswith("/bytes") is False
                          and r.get("reason") == "bad_request")
    inner = [r for r in recs if r.get("tls") == "bumped" and r["method"] != "CONNECT"]
    assert {(r["method"], r["url"], r["decision"], r["reason"]) for r in inner} >= {
        ("GET", f"https://origin.test:{origin.port}/small", "allow", None),
        ("GET", f"https://origin.test:{origin.port}/bytes/10", "deny", "url_not_allowed"),
        ("POST", f"https://origin.test:{origin.port}/headers", "deny", "url_not_allowed"),
    }
    assert all("?" not in str(r["url"]) for r in inner)


async def test_post_body_streams_to_an_allowed_url(bumped: tuple[ProxyProc, Path, Path],
                                                   origin: Origin) -> None:
    proxy, ca, _ = bumped
    c = await Bumped.open(proxy, "origin.test", origin.port, ca)
    body = os.urandom(300_000)
    status, _, data = await c.request("POST", "/echo", f"origin.test:{origin.port}", body)
    c.close()
    assert status == 200
    assert json.loads(data)["size"] == len(body)


async def test_keep_alive_checks_every_request(bumped: tuple[ProxyProc, Path, Path],
                                               origin: Origin) -> None:
    proxy, ca, _ = bumped
    c = await Bumped.open(proxy, "origin.test", origin.port, ca)
    host = f"origin.test:{origin.port}"
    assert (await c.request("GET", "/small", host))[0] == 200
    assert (await c.request("GET", "/headers", host))[0] == 200
    status, headers, _ = await c.request("GET", "/bytes/10", host)
    assert (status, headers["x-awf-reason"]) == (403, "url_not_allowed")
    assert await c.reader.read() == b""  # every error answer closes the connection
    c.close()


async def test_upstream_connection_outlives_clients_that_close(
        bumped: tuple[ProxyProc, Path, Path], origin: Origin) -> None:
    """A client's `Connection: close` ends its own connection only: the verified TLS connection
    to the origin goes back to the pool, so new client connections reuse it."""
    proxy, ca, _ = bumped
    host = f"origin.test:{origin.port}"
    for _ in range(3):
        c = await Bumped.open(proxy, "origin.test", origin.port, ca)
        c.writer.write(f"GET /small HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                       .encode())
        answer = await c.reader.read()  # the proxy closes after the answer
        c.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
        assert b"connection: close" in answer.lower()
    assert len(origin.seen) == 3
    assert len(origin.peers) == 1  # one upstream connection served all three


async def test_host_other_than_the_tunnel_is_misdirected(
        bumped: tuple[ProxyProc, Path, Path], origin: Origin) -> None:
    proxy, ca, _ = bumped
    for host in (f"other.test:{origin.port}", "origin.test", f"origin.test:{origin.port + 1}"):
        c = await Bumped.open(proxy, "origin.test", origin.port, ca)
        status, headers, _ = await c.request("GET", "/small", host)
        c.close()
        assert (status, headers["x-awf-reason"]) == (421, "misdirected"), host


async def test_unrestricted_host_is_bumped_and_forwarded(
        bumped: tuple[ProxyProc, Path, Path], origin: Origin) -> None:
    proxy, ca, log = bumped
    c = await Bumped.open(proxy, "other.test", origin.port, ca)  # verifies the proxy's leaf
    status, _, body = await c.request("GET", "/bytes/70000", f"other.test:{origin.port}")
    c.close()
    assert status == 200
    assert len(body) == 70000
    await wait_for(log, lambda r: r.get("method") == "CONNECT" and r.get("host") == "other.test")


async def test_excluded_host_keeps_an_opaque_tunnel(
        bumped: tuple[ProxyProc, Path, Path], origin: Origin, origin_ca: trustme.CA,
        tmp_path: Path) -> None:
    proxy, ca, _ = bumped
    with pytest.raises(ssl.SSLCertVerificationError):  # not the proxy's leaf...
        await Bumped.open(proxy, "excluded.test", origin.port, ca)
    trust = tmp_path / "origin-only.pem"
    origin_ca.cert_pem.write_to_path(str(trust))
    c = await Bumped.open(proxy, "excluded.test", origin.port, trust)  # ...the origin's own
    status, _, _ = await c.request("GET", "/bytes/10", f"excluded.test:{origin.port}")
    c.close()
    assert status == 200


async def test_bad_origin_certificate_is_502(bumped: tuple[ProxyProc, Path, Path],
                                             bad_origin: Origin) -> None:
    proxy, ca, log = bumped
    c = await Bumped.open(proxy, "bad.test", bad_origin.port, ca)
    status, headers, _ = await c.request("GET", "/small", f"bad.test:{bad_origin.port}")
    c.close()
    assert (status, headers["x-awf-reason"]) == (502, "upstream_tls_failed")
    assert bad_origin.seen == []
    recs = await wait_for(log, lambda r: r.get("reason") == "upstream_tls_failed")
    rec = next(r for r in recs if r.get("reason") == "upstream_tls_failed")
    assert (rec["tls"], rec["decision"], rec["status"]) == ("bumped", "allow", 502)


async def test_non_tls_after_connect_is_closed(bumped: tuple[ProxyProc, Path, Path],
                                               origin: Origin) -> None:
    proxy, _, log = bumped
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(f"CONNECT origin.test:{origin.port} HTTP/1.1\r\n\r\n".encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    writer.write(b"GET /bytes/10 HTTP/1.1\r\nHost: origin.test\r\n\r\n")
    assert await reader.read() == b""
    writer.close()
    await wait_for(log, lambda r: r.get("reason") == "not_tls")
    assert origin.seen == []


async def test_curl(bumped: tuple[ProxyProc, Path, Path], origin: Origin) -> None:
    if shutil.which("curl") is None:
        pytest.skip("no curl")
    proxy, ca, _ = bumped
    base = f"https://origin.test:{origin.port}"

    async def curl(url: str, *extra: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--proxy",
            f"http://127.0.0.1:{proxy.port}", "--cacert", str(ca), *extra, url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return out.decode() or err.decode()

    assert await curl(f"{base}/small") == "200"
    assert await curl(f"{base}/bytes/10") == "403"
    assert await curl(f"{base}/small/../bytes/10") == "403"  # curl resolves dots itself
    assert await curl(f"{base}/small/../bytes/10", "--path-as-is") == "403"
    assert await curl(f"{base}/small/%2e%2e/bytes/10", "--path-as-is") == "403"
    assert await curl(f"{base}/x/../small", "--path-as-is") == "200"  # normalised, forwarded
    assert await curl(f"{base}/headers", "-X", "DELETE") == "403"  # GET only
    assert await curl(f"https://other.test:{origin.port}/small") == "200"


async def test_python_urllib(bumped: tuple[ProxyProc, Path, Path], origin: Origin) -> None:
    proxy, ca, _ = bumped
    code = f"""
import ssl, urllib.request, urllib.error
ctx = ssl.create_default_context(cafile={str(ca)!r})
op = urllib.request.build_opener(
    urllib.request.ProxyHandler({{"https": "http://127.0.0.1:{proxy.port}"}}),
    urllib.request.HTTPSHandler(context=ctx))
print(op.open("https://origin.test:{origin.port}/small").status)
try:
    op.open("https://origin.test:{origin.port}/bytes/10")
except urllib.error.HTTPError as e:
    print(e.code, e.headers["X-Awf-Reason"])
"""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={k: v for k, v in os.environ.items()
                                             if "proxy" not in k.lower()})
    out, err = await proc.communicate()
    assert out.decode().split("\n")[:2] == ["200", "403 url_not_allowed"], err.decode()


async def test_python_requests(bumped: tuple[ProxyProc, Path, Path], origin: Origin) -> None:
    """`requests` (urllib3) as agents' Python code uses it: REQUESTS_CA_BUNDLE names the CA, as
    `awf run --ssl-bump` sets it; a kept-alive session checks every request."""
    proxy, ca, _ = bumped
    code = f"""
import requests
s = requests.Session()
s.proxies = {{"https": "http://127.0.0.1:{proxy.port}"}}
base = "https://origin.test:{origin.port}"
print(s.get(base + "/small").status_code)
r = s.get(base + "/bytes/10")
print(r.status_code, r.headers["X-Awf-Reason"])
print(s.post(base + "/echo", data=b"x" * 1000).json()["size"])
print(s.delete(base + "/headers").status_code)
"""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["REQUESTS_CA_BUNDLE"] = str(ca)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await proc.communicate()
    assert out.decode().split("\n")[:4] == ["200", "403 url_not_allowed", "1000", "403"], \
        err.decode()


async def test_node(bumped: tuple[ProxyProc, Path, Path], origin: Origin) -> None:
    if shutil.which("node") is None:
        pytest.skip("no node")
    proxy, ca, _ = bumped
    code = f"""
const http = require('http'), tls = require('tls'), fs = require('fs');
function get(path) {{
  return new Promise((resolve, reject) => {{
    const req = http.request({{host: '127.0.0.1', port: {proxy.port}, method: 'CONNECT',
                               path: 'origin.test:{origin.port}'}});
    req.on('connect', (res, socket) => {{
      const s = tls.connect({{socket, servername: 'origin.test',
                             ca: fs.readFileSync({json.dumps(str(ca))})}}, () => {{
        s.write('GET ' + path + ' HTTP/1.1\\r\\nHost: origin.test:{origin.port}\\r\\n' +
                'Connection: close\\r\\n\\r\\n');
      }});
      let data = '';
      s.on('data', d => data += d);
      s.on('end', () => resolve(data.split(' ')[1]));
      s.on('error', reject);
    }});
    req.on('error', reject);
    req.end();
  }});
}}
(async () => {{ console.log(await get('/small'), await get('/bytes/10')); }})();
"""
    proc = await asyncio.create_subprocess_exec(
        "node", "-e", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert out.decode().strip() == "200 403", err.decode()


# -- flags ------------------------------------------------------------------------------------


def run_proxy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy.main", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_https_patterns_need_ssl_bump() -> None:
    done = run_proxy("--allow-urls", "https://example.com/x")
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1
    assert "--ssl-bump" in done.stderr


def test_restricted_host_cannot_be_excluded(tmp_path: Path) -> None:
    ca_dir = make_ca(tmp_path, ["--allow-domains", "example.com"])
    done = run_proxy("--allow-urls", "https://api.example.com/x", "--ssl-bump",
                     "--ca-cert", str(ca_dir / "ca.pem"), "--ca-key", str(ca_dir / "ca-key.pem"),
                     "--ssl-bump-exclude", "example.com")
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1
    assert "--ssl-bump-exclude" in done.stderr


def test_ca_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    ca_dir = make_ca(tmp_path, ["--allow-domains", "example.com"])
    (ca_dir / "ca-key.pem").chmod(0o644)
    done = run_proxy("--allow-domains", "example.com", "--ssl-bump", "--ca-cert",
                     str(ca_dir / "ca.pem"), "--ca-key", str(ca_dir / "ca-key.pem"))
    assert done.returncode == 2
    assert "readable by others" in done.stderr


def test_ssl_bump_needs_the_ca() -> None:
    done = run_proxy("--allow-domains", "example.com", "--ssl-bump")
    assert done.returncode == 2
    assert "--ca-cert" in done.stderr


def test_help_lists_the_bump_flags() -> None:
    out = run_proxy("--help").stdout
    for flag in ("--ssl-bump", "--ca-cert", "--ca-key", "--make-ca", "--allow-urls",
                 "--allow-urls-file", "--ssl-bump-exclude", "--extra-ca-certs"):
        assert flag in out


# -- without --ssl-bump: http:// patterns, and restricted hosts never tunnelled -----------------


async def test_plain_http_patterns_and_no_tunnel_to_a_restricted_host(tmp_path: Path) -> None:
    async with http_origin() as o, running_proxy(
        "--allow-domains", "origin.test", "--allow-urls", "GET http://api.origin.test/small",
        "--resolve", "origin.test=127.0.0.1", "--resolve", "api.origin.test=127.0.0.1",
        "--allow-range", "127.0.0.1/32", "--allow-ports", str(o.port),
    ) as proxy:
        async def ask(head: str) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(head.encode())
            line = await reader.readuntil(b"\r\n\r\n")
            writer.close()
            return line

        url = f"http://api.origin.test:{o.port}"
        assert (await ask(f"GET {url}/small HTTP/1.1\r\nHost: api.origin.test:{o.port}\r\n\r\n")
                ).startswith(b"HTTP/1.1 200")
        got = await ask(f"GET {url}/x/../bytes/1 HTTP/1.1\r\nHost: api.origin.test:{o.port}"
                        "\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 403")
        assert b"url_not_allowed" in got
        got = await ask(f"POST {url}/small HTTP/1.1\r\nHost: api.origin.test:{o.port}\r\n"
                        "Content-Length: 0\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 403")
        # origin.test allows the subdomain over https too, but only bumping shows the URL
        got = await ask(f"CONNECT api.origin.test:{o.port} HTTP/1.1\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 403")
        assert b"url_not_allowed" in got
        # an unrestricted host is unaffected
        got = await ask(f"CONNECT origin.test:{o.port} HTTP/1.1\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 200")
    assert [s[":path"] for s in o.seen] == ["/small"]


async def test_a_silent_client_is_closed_after_the_handshake_timeout(
        bumped: tuple[ProxyProc, Path, Path], origin: Origin) -> None:
    proxy, _, log = bumped
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(f"CONNECT origin.test:{origin.port} HTTP/1.1\r\n\r\n".encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    async with asyncio.timeout(15):
        assert await reader.read() == b""  # closed by the proxy after 10 s
    writer.close()
    recs = await wait_for(log, lambda r: r.get("reason") == "head_timeout")
    rec = next(r for r in recs if r.get("reason") == "head_timeout")
    assert (rec["method"], rec["tls"], rec["status"]) == ("CONNECT", "bumped", 0)


async def test_a_client_that_does_not_trust_the_ca_is_noted(
        bumped: tuple[ProxyProc, Path, Path], origin: Origin, tmp_path: Path) -> None:
    proxy, _, log = bumped
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with pytest.raises(ssl.SSLCertVerificationError):
        await Bumped.open(proxy, "origin.test", origin.port, other)
    recs = await wait_for(log, lambda r: r.get("method") == "CONNECT"
                          and "handshake failed" in str(r.get("note")))
    rec = next(r for r in recs if r.get("method") == "CONNECT")
    assert (rec["tls"], rec["status"]) == ("bumped", 200)
    assert origin.seen == []


async def test_a_client_hello_sent_with_the_connect_is_kept(
        bumped: tuple[ProxyProc, Path, Path], origin: Origin) -> None:
    """A client that does not wait for `200` (CONNECT and its ClientHello in one write): the
    bytes read with the CONNECT head reach the TLS layer first, in order."""
    proxy, ca, _ = bumped
    ctx = ssl.create_default_context(cafile=str(ca))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="origin.test")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(f"CONNECT origin.test:{origin.port} HTTP/1.1\r\n\r\n".encode()
                 + outgoing.read())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    async with asyncio.timeout(10):
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                writer.write(outgoing.read())
                incoming.write(await reader.read(65536))
        writer.write(outgoing.read())
        tls.write(f"GET /small HTTP/1.1\r\nHost: origin.test:{origin.port}\r\n"
                  "Connection: close\r\n\r\n".encode())
        writer.write(outgoing.read())
        answer = b""
        while not answer.endswith(b"small"):
            data = await reader.read(65536)
            if not data:
                break
            incoming.write(data)
            try:
                answer += tls.read(65536)
            except ssl.SSLWantReadError:
                pass
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
    assert [s[":path"] for s in origin.seen] == ["/small"]


async def test_connect_inside_a_bumped_connection_is_refused(
        bumped: tuple[ProxyProc, Path, Path], origin: Origin) -> None:
    proxy, ca, _ = bumped
    c = await Bumped.open(proxy, "other.test", origin.port, ca)
    status, headers, _ = await c.request("CONNECT", f"other.test:{origin.port}",
                                         f"other.test:{origin.port}")
    c.close()
    assert (status, headers["x-awf-reason"]) == (400, "bad_request")
    assert origin.seen == []


async def test_the_tunnel_record_sums_its_requests(bumped: tuple[ProxyProc, Path, Path],
                                                   origin: Origin) -> None:
    proxy, ca, log = bumped
    c = await Bumped.open(proxy, "other.test", origin.port, ca)
    host = f"other.test:{origin.port}"
    for n in (10, 20000):
        status, _, body = await c.request("GET", f"/bytes/{n}", host)
        assert (status, len(body)) == (200, n)
    c.close()
    recs = await wait_for(log, lambda r: r.get("method") == "CONNECT"
                          and r.get("host") == "other.test")
    tunnel = next(r for r in recs if r.get("method") == "CONNECT")
    inner = [r for r in recs if r.get("method") == "GET" and r.get("host") == "other.test"]
    assert len(inner) == 2
    assert tunnel["bytes_down"] == sum(int(str(r["bytes_down"])) for r in inner) >= 20010
    assert tunnel["bytes_up"] == sum(int(str(r["bytes_up"])) for r in inner) > 0
