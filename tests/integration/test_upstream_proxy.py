"""`awf-proxy --upstream-proxy URL`: allowed connections go through a parent proxy, after the
proxy's own policy; the parent's refusals are 502/504 with a note, credentials never shown."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.test_explicit import wait_log
from tests.support.client import connect, get, read_response, roundtrip
from tests.support.origins import Origin, http_origin
from tests.support.parentproxy import parent_proxy
from tests.support.proxyproc import ProxyProc, running_proxy

pytestmark = pytest.mark.integration

ORIGIN = "origin.test"
USER, PASSWORD = "ci-runner", "s3cr3t-Pa55"


def args(origin: Origin, parent_url: str, log_dir: Path, *extra: str) -> tuple[str, ...]:
    return (
        "--allow-domains", f"{ORIGIN},private.test,nodns.test",
        "--block-domains", f"blocked.{ORIGIN}",
        "--resolve", f"{ORIGIN}=127.0.0.1",
        "--resolve", "private.test=10.1.2.3",
        "--allow-range", "127.0.0.1/32",
        "--allow-ports", str(origin.port),
        "--dns-servers", "127.0.0.1:9",  # nothing answers: nodns.test only resolves upstream
        "--hosts-file", "",
        "--connect-timeout", "2",
        "--upstream-proxy", parent_url,
        "--log-dir", str(log_dir),
        *extra,
    )


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    async with http_origin() as o:
        yield o


def no_secret(proxy: ProxyProc, log_dir: Path) -> None:
    text = proxy.stderr + (log_dir / "access.jsonl").read_text()
    for secret in (PASSWORD, USER):
        assert secret not in text


async def tunnel_get(proxy: ProxyProc, authority: str) -> tuple[int, bytes]:
    """CONNECT, then one plain GET inside the tunnel: (CONNECT status, inner body)."""
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            writer.write(connect(authority))
            resp = await read_response(reader, head_only=True)
            if resp.status != 200:
                return resp.status, b""
            writer.write(get(f"http://{authority}/small").replace(
                f"http://{authority}".encode(), b"", 1))
            inner = await read_response(reader)
            return inner.status, inner.body
        finally:
            writer.close()


async def test_connect_and_plain_http_through_parent_with_credentials(
        origin: Origin, tmp_path: Path) -> None:
    async with parent_proxy(credentials=(USER, PASSWORD)) as parent, \
            running_proxy(*args(origin, parent.url(USER, PASSWORD), tmp_path)) as proxy:
        status, body = await tunnel_get(proxy, f"{ORIGIN}:{origin.port}")
        assert (status, body) == (200, b"s" * 100)
        assert parent.heads[0].startswith(f"CONNECT {ORIGIN}:{origin.port} HTTP/1.1".encode())
        resp = await roundtrip(proxy.port, get(f"http://{ORIGIN}:{origin.port}/small"))
        assert resp.status == 200
        assert resp.body == b"s" * 100
        assert parent.heads[1].startswith(
            f"GET http://{ORIGIN}:{origin.port}/small HTTP/1.1".encode())
        assert b"Proxy-Authorization: Basic " in parent.heads[1]
        assert parent.count == 2
        # a name our DNS cannot resolve goes to the parent, which resolves it
        resp = await roundtrip(proxy.port, get(f"http://nodns.test:{origin.port}/small"))
        assert resp.status == 200
        assert parent.count == 3
        await wait_log(tmp_path / "access.jsonl", 3)
        health = await roundtrip(proxy.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert health.status == 200
        assert PASSWORD.encode() not in health.body
        assert USER.encode() not in health.body
        await proxy.stop()
        no_secret(proxy, tmp_path)


async def test_denied_requests_never_reach_the_parent(origin: Origin, tmp_path: Path) -> None:
    async with parent_proxy() as parent, \
            running_proxy(*args(origin, parent.url(), tmp_path)) as proxy:
        cases = [
            (get(f"http://example.com:{origin.port}/"), 403, "domain_not_allowed"),
            (get(f"http://blocked.{ORIGIN}:{origin.port}/"), 403, "domain_blocked"),
            (get(f"http://{ORIGIN}:9999/"), 403, "port_denied"),
            (get(f"http://10.0.0.1:{origin.port}/"), 403, "ip_literal"),
            (connect("example.com:443"), 403, "domain_not_allowed"),
            # resolves here to a private address: refused, although the parent could reach it
            (connect(f"private.test:{origin.port}"), 403, "denied_address"),
            (get(f"http://private.test:{origin.port}/"), 403, "denied_address"),
        ]
        for raw, status, reason in cases:
            resp = await roundtrip(proxy.port, raw)
            assert (resp.status, resp.reason) == (status, reason), raw
        assert parent.count == 0


@pytest.mark.parametrize("kind", ["407", "403", "503", "closed", "silent"])
async def test_parent_refusals_are_502_with_a_note(
        origin: Origin, tmp_path: Path, kind: str) -> None:
    if kind == "closed":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            url = f"http://{USER}:{PASSWORD}@127.0.0.1:{s.getsockname()[1]}"
        ctx = parent_proxy()
    else:
        ctx = parent_proxy(credentials=(USER, "other") if kind == "407" else None,
                           refuse=int(kind) if kind in ("403", "503") else None,
                           silent=kind == "silent")
    async with ctx as parent:
        if kind != "closed":
            url = parent.url(USER, PASSWORD)
        async with running_proxy(*args(origin, url, tmp_path)) as proxy:
            resp = await roundtrip(proxy.port, connect(f"{ORIGIN}:{origin.port}"))
            want = (504, "connect_timeout") if kind == "silent" else (502, "connect_failed")
            assert (resp.status, resp.reason) == want
            assert PASSWORD not in resp.body.decode()
            [rec] = await wait_log(tmp_path / "access.jsonl", 1)
            assert rec["decision"] == "allow"
            assert rec["reason"] == want[1]
            note = str(rec["note"])
            assert "parent proxy" in note
            if kind in ("407", "403", "503"):
                assert f"refused CONNECT {ORIGIN}:{origin.port}: {kind}" in note
            if kind == "407":  # plain HTTP: the parent's 407 is never passed on as the origin's
                resp = await roundtrip(proxy.port, get(f"http://{ORIGIN}:{origin.port}/small"))
                assert (resp.status, resp.reason) == (502, "connect_failed")
                recs = await wait_log(tmp_path / "access.jsonl", 2)
                assert "407" in str(recs[1]["note"])
            await proxy.stop()
            no_secret(proxy, tmp_path)


async def test_bad_upstream_proxy_url_is_exit_2(tmp_path: Path) -> None:
    for url in ("https://p:3128", "http://p", "socks5://p:1080", "http://p:3128/x", "p:3128",
                f"ftp://{USER}:{PASSWORD}@p:21"):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy.main", "--upstream-proxy", url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        assert proc.returncode == 2, url
        lines = err.decode().strip().splitlines()
        assert len(lines) == 1, (url, lines)
        assert "--upstream-proxy" in lines[0], (url, lines)
        assert PASSWORD not in lines[0]
