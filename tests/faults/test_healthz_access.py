"""/healthz answers loopback clients, or a client presenting `Authorization: Bearer <token>`
with --healthz-token; any other client gets 403 (issue 18 item 9, issue 20). The non-loopback
client is this machine itself, connecting from and to one of its global addresses."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import subprocess
from pathlib import Path

import pytest

from awf.logs.stats import count
from netfilter.selftest import NAME as SELFTEST_NAME
from tests.support.client import Response, read_response, roundtrip
from tests.support.proxyproc import running_proxy

pytestmark = pytest.mark.integration

TOKEN = "0123456789abcdef-health"


def global_ipv4() -> str:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True, timeout=10, check=False).stdout
    for line in out.splitlines():
        ip = line.split()[3].split("/")[0]
        if not ipaddress.ip_address(ip).is_loopback:
            return ip
    pytest.fail("test_healthz_access needs a non-loopback IPv4 address on this machine",
                pytrace=False)


async def health_from(ip: str, port: int, authorization: str | None = None) -> Response:
    extra = f"Authorization: {authorization}\r\n" if authorization else ""
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection(ip, port, local_addr=(ip, 0))
        try:
            writer.write(f"GET /healthz HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
            return await read_response(reader)
        finally:
            writer.close()


async def test_healthz_is_for_loopback_or_the_token(tmp_path: Path) -> None:
    ip = global_ipv4()
    async with running_proxy("--allow-domains", "origin.test", "--listen", f"{ip}:0",
                             "--listen", "127.0.0.1:0", "--healthz-token", TOKEN,
                             "--log-dir", str(tmp_path)) as p:
        outside = p.endpoint(0)[1]
        stranger = await health_from(ip, outside)
        wrong = await health_from(ip, outside, f"Bearer {TOKEN}x")
        holder = await health_from(ip, outside, f"Bearer {TOKEN}")
        local = await roundtrip(p.endpoint(1)[1], b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (stranger.status, stranger.reason) == (403, "self_connection")
    assert (wrong.status, wrong.reason) == (403, "self_connection")
    assert holder.status == 200
    assert json.loads(holder.body)["status"] == "ok"
    assert local.status == 200


async def test_a_refused_healthz_is_logged_under_its_host_name(tmp_path: Path) -> None:
    """The sandbox self-test's probe names netfilter.selftest.NAME in Host: the refusal is
    logged under it, so the run's summary leaves it out."""
    ip = global_ipv4()
    async with running_proxy("--allow-domains", "origin.test", "--listen", f"{ip}:0",
                             "--log-dir", str(tmp_path)) as p:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection(ip, p.port, local_addr=(ip, 0))
            writer.write(f"GET /healthz HTTP/1.1\r\nHost: {SELFTEST_NAME}:3128\r\n\r\n"
                         .encode())
            resp = await read_response(reader)
            writer.close()
    assert (resp.status, resp.reason) == (403, "self_connection")
    [rec] = [json.loads(line) for line in (tmp_path / "access.jsonl").read_text().splitlines()]
    assert (rec["method"], rec["host"], rec["decision"], rec["reason"]) == (
        "GET", SELFTEST_NAME, "deny", "self_connection")
    assert count([rec]).requests == 0  # awf.logs leaves the self-test's records out


async def test_without_a_token_only_loopback_reads_healthz() -> None:
    ip = global_ipv4()
    async with running_proxy("--allow-domains", "origin.test", "--listen", f"{ip}:0") as p:
        resp = await health_from(ip, p.port, f"Bearer {TOKEN}")
    assert (resp.status, resp.reason) == (403, "self_connection")


async def test_a_bad_token_is_a_startup_error() -> None:
    with pytest.raises(RuntimeError, match="healthz-token"):
        async with running_proxy("--allow-domains", "origin.test", "--healthz-token", "a b"):
            pass
