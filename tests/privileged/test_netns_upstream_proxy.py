"""`awf run --backend netns --upstream-proxy URL` end to end: the sandbox's allowed traffic
reaches the fake internet only through a parent proxy on the host, with its credentials; a denied
request never reaches the parent; the password is in no output and no log."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import wan as wanmod
from tests.support.parentproxy import Parent, parent_proxy

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(300)]

USER, PASSWORD = "runner", "pa55-w0rd-e2e"


@pytest.fixture
def parent() -> Iterator[Parent]:
    """The tiny parent proxy in a thread of its own, on the host's loopback."""
    started = threading.Event()
    stop: list[asyncio.Event] = []
    box: list[Parent] = []

    async def main() -> None:
        async with parent_proxy(credentials=(USER, PASSWORD), target=wanmod.V4) as p:
            box.append(p)
            stop.append(asyncio.Event())
            started.set()
            await stop[0].wait()

    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    t.start()
    assert started.wait(10)
    try:
        yield box[0]
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        t.join(10)


def test_sandbox_traffic_goes_through_the_parent(wan: wanmod.Wan, parent: Parent,
                                                 tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "ca.pem").write_bytes(wan.ca_pem.read_bytes())
    logs = tmp_path / "logs"
    script = ("curl -sS -m 8 --noproxy '*' http://allowed.test/t; echo rc=$?; "
              "curl -sS -m 8 --cacert ca.pem https://allowed.test/; echo rc=$?; "
              "curl -sS -m 8 --noproxy '*' --cacert ca.pem https://allowed.test/; echo rc=$?; "
              "curl -sS -m 8 http://allowed.test/; echo rc=$?; "
              "curl -sS -m 8 -o /dev/null -w '%{http_code}' http://other.test/; echo; ")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["GITHUB_WORKSPACE"] = str(ws)
    done = subprocess.run(
        [sys.executable, "-m", "awf.cli", "run", "--backend", "netns",
         "--allow-domains", "allowed.test", "--resolve", f"allowed.test={wanmod.V4}",
         "--resolve", f"other.test={wanmod.V4}", "--proxy-logs-dir", str(logs),
         "--upstream-proxy", parent.url(USER, PASSWORD), "--", "sh", "-c", script],
        capture_output=True, text=True, timeout=240, check=False, cwd=ws, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout.splitlines()
    assert out[:8] == ["hello allowed.test", "rc=0"] * 4, done.stdout + done.stderr[-2000:]
    assert out[8] == "403"  # denied: never reached the parent
    heads = [h.split(b"\r\n", 1)[0] for h in parent.heads]
    # the tiny parent sees the first request of each connection; the explicit plain GET reused
    # the pooled connection to the parent that the intercepted one opened
    assert heads == [b"GET http://allowed.test/t HTTP/1.1",  # intercepted plain HTTP
                     b"CONNECT allowed.test:443 HTTP/1.1",  # explicit CONNECT
                     b"CONNECT allowed.test:443 HTTP/1.1"]  # intercepted TLS
    assert all(b"Proxy-Authorization: Basic " in h for h in parent.heads)
    for text in (done.stdout, done.stderr, *(p.read_text() for p in logs.iterdir()
                                              if p.is_file())):
        assert PASSWORD not in text
