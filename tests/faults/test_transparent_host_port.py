"""Transparent HTTP honours the port in Host: a Host whose explicit port differs from the
original destination's port is 400 bad_request (issue 18 item 8, issue 20). Without a redirect
the original destination of a direct connection is the listener itself."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.integration.test_explicit import wait_log
from tests.support.client import roundtrip
from tests.support.proxyproc import running_proxy

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_host_port_must_match_the_original_destination(tmp_path: Path) -> None:
    listen = free_port()
    async with running_proxy(
        "--allow-domains", "origin.test", "--resolve", "origin.test=127.0.0.1",
        "--allow-ports", str(listen), "--transparent-listen", f"127.0.0.1:{listen}",
        "--log-dir", str(tmp_path),
    ) as p:
        host, port = p.endpoint(1)
        other = 8080 if port != 8080 else 8081
        wrong = await roundtrip(
            port, f"GET / HTTP/1.1\r\nHost: origin.test:{other}\r\n\r\n".encode(), host=host)
        same = await roundtrip(
            port, f"GET / HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n".encode(), host=host)
        records = await wait_log(tmp_path / "access.jsonl", 2)
    assert (wrong.status, wrong.reason) == (400, "bad_request")
    assert b"must match" in wrong.body
    # the matching port goes on to the next check: here the destination is the proxy itself
    assert (same.status, same.reason) == (403, "self_connection")
    assert [r["status"] for r in records] == [400, 403]
