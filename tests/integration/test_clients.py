"""Per-client policies through a real awf-proxy (docs/proxy.md §12): a client connecting from
127.0.0.2 gets its own allowlist, a client from 127.0.0.1 the proxy's; the same target is allowed
to one and denied to the other, over plain HTTP and CONNECT, and the log names the client."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from tests.support.client import Response, connect, get, read_response
from tests.support.origins import Origin, http_origin
from tests.support.proxyproc import ProxyProc, running_proxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SIDECAR, AGENT = "127.0.0.2", "127.0.0.1"


def flags(o: Origin, log_dir: Path) -> list[str]:
    """The agent may reach allowed.test; the client api-proxy (127.0.0.2) only api.test on the
    origin's port."""
    return ["--allow-domains", "allowed.test", "--allow-ports", str(o.port),
            "--resolve", "allowed.test=127.0.0.1", "--resolve", "api.test=127.0.0.1",
            "--allow-range", "127.0.0.1/32", "--log-dir", str(log_dir),
            "--client", f"api-proxy={SIDECAR}/32",
            "--client-allow-domains", f"api-proxy=api.test:{o.port}"]


async def send(p: ProxyProc, source: str, raw: bytes, *, head_only: bool = False) -> Response:
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", p.port,
                                                       local_addr=(source, 0))
        try:
            writer.write(raw)
            await writer.drain()
            return await read_response(reader, head_only=head_only)
        finally:
            writer.close()


def records(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


async def wait_records(path: Path, n: int) -> list[dict[str, object]]:
    async with asyncio.timeout(10):
        while len(recs := records(path)) < n:
            await asyncio.sleep(0.05)
    return recs


async def test_the_target_is_allowed_to_the_client_and_denied_to_the_others(
        tmp_path: Path) -> None:
    async with http_origin() as o, running_proxy(*flags(o, tmp_path)) as p:
        target = get(f"http://api.test:{o.port}/small")
        assert (await send(p, SIDECAR, target)).status == 200
        denied = await send(p, AGENT, target)
        assert (denied.status, denied.reason) == (403, "domain_not_allowed")
        # and the other way round: the proxy's own list is not the client's
        assert (await send(p, AGENT, get(f"http://allowed.test:{o.port}/small"))).status == 200
        other = await send(p, SIDECAR, get(f"http://allowed.test:{o.port}/small"))
        assert (other.status, other.reason) == (403, "domain_not_allowed")
        # a port-scoped entry: the client's target on another port is refused
        port = await send(p, SIDECAR, get(f"http://api.test:{o.port + 1}/small"))
        assert (port.status, port.reason) == (403, "port_denied")
        assert len(o.seen) == 2
        recs = await wait_records(tmp_path / "access.jsonl", 5)
    by = {(str(r["client"]).rpartition(":")[0], r["host"], r["port"]): r
          for r in recs}
    mine = by[(SIDECAR, "api.test", o.port)]
    assert (mine["decision"], mine["client_name"]) == ("allow", "api-proxy")
    theirs = by[(AGENT, "api.test", o.port)]
    assert theirs["decision"] == "deny"
    assert "client_name" not in theirs  # the proxy's own clients' records are unchanged
    assert [r.get("client_name") for r in recs if str(r["client"]).startswith(SIDECAR)] == [
        "api-proxy"] * 3


async def test_a_tunnel_is_allowed_to_the_client_and_denied_to_the_others(
        tmp_path: Path) -> None:
    async with http_origin() as o, running_proxy(*flags(o, tmp_path)) as p:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", p.port,
                                                           local_addr=(SIDECAR, 0))
            writer.write(connect(f"api.test:{o.port}"))
            assert (await read_response(reader, head_only=True)).status == 200
            writer.write(f"GET /small HTTP/1.1\r\nHost: api.test:{o.port}\r\n\r\n".encode())
            inner = await read_response(reader)
            assert (inner.status, inner.body) == (200, b"s" * 100)
            writer.close()
        denied = await send(p, AGENT, connect(f"api.test:{o.port}"), head_only=True)
        assert (denied.status, denied.reason) == (403, "domain_not_allowed")
        recs = await wait_records(tmp_path / "access.jsonl", 2)
    tunnel = next(r for r in recs if r["decision"] == "allow")
    assert (tunnel["method"], tunnel["client_name"]) == ("CONNECT", "api-proxy")


async def test_healthz_counts_each_client_and_awf_logs_filters_by_client(
        tmp_path: Path) -> None:
    async with http_origin() as o, running_proxy(*flags(o, tmp_path)) as p:
        health = await send(p, AGENT, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert json.loads(health.body)["clients"] == {
            "api-proxy": {"allow": 1, "block": 0, "allow_ranges": 1, "ports": 3}}
        await send(p, SIDECAR, get(f"http://api.test:{o.port}/small"))
        await send(p, AGENT, get(f"http://api.test:{o.port}/small"))
        await wait_records(tmp_path / "access.jsonl", 2)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "awf.cli", "logs", "--client", "api-proxy", "--format", "json",
        "--source", str(tmp_path), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    shown = [json.loads(ln) for ln in out.decode().splitlines() if ln.strip()]
    assert [(r["host"], r["decision"]) for r in shown] == [("api.test", "allow")]


async def test_sighup_swaps_the_clients_policy(tmp_path: Path) -> None:
    async with http_origin() as o:
        config = tmp_path / "proxy.yaml"
        config.write_text(f"clients:\n  - name: api-proxy\n    from: {SIDECAR}/32\n"
                          f"    allow_domains: [api.test]\n")
        async with running_proxy("--config", str(config), "--allow-ports", str(o.port),
                                 "--resolve", "api.test=127.0.0.1",
                                 "--allow-range", "127.0.0.1/32") as p:
            target = get(f"http://api.test:{o.port}/small")
            assert (await send(p, SIDECAR, target)).status == 200
            config.write_text(f"clients:\n  - name: api-proxy\n    from: {SIDECAR}/32\n"
                              f"    allow_domains: [other.test]\n")
            p.signal(signal.SIGHUP)
            await p.wait_stderr("policy reloaded")
            denied = await send(p, SIDECAR, target)
            assert (denied.status, denied.reason) == (403, "domain_not_allowed")


async def test_a_bad_client_flag_is_one_line_and_exit_2() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy.main", "--client", "api-proxy=127.0.0.2/32",
        "--client-allow-domains", "api-proxy=*.com", stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 2
    lines = err.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("awf-proxy: --client-allow-domains api-proxy:")
