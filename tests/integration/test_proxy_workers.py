"""`awf-proxy --workers 2`: both processes serve one port (SO_REUSEPORT), the shared access log
has every request exactly once and no torn line, SIGHUP reaches every worker, SIGTERM ends all,
and no worker outlives its supervisor."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from proxy.access_log import AccessLog
from tests.support.client import get, read_response, roundtrip
from tests.support.origins import http_origin
from tests.support.proxyproc import ProxyProc

pytestmark = pytest.mark.integration


def _workers(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(x) for x in text.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose: it serves nothing
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"


def _holders(port: int) -> dict[int, int]:
    """pid -> how many established connections to `port` it holds (from ss)."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    counts: dict[int, int] = {}
    for line in out.splitlines():
        for part in line.split("pid=")[1:]:
            pid = int(part.split(",", 1)[0])
            counts[pid] = counts.get(pid, 0) + 1
    return counts


async def test_two_workers_serve_log_every_request_once_and_end_together(tmp_path: Path) -> None:
    async with http_origin() as o:
        args = ("--workers", "2", "--allow-domains", "origin.test",
                "--resolve", "origin.test=127.0.0.1", "--allow-range", "127.0.0.1/32",
                "--allow-ports", str(o.port), "--log-dir", str(tmp_path))
        p = await ProxyProc.start(*args)
        try:
            assert len(p.endpoints) == 1  # the supervisor announces each listener once
            workers = _workers(p.pid)
            assert len(workers) == 2
            # connections land on both workers: hold 32 open, see who accepted them
            held = [await asyncio.open_connection("127.0.0.1", p.port) for _ in range(32)]
            await asyncio.sleep(0.3)
            holders = _holders(p.port)
            assert set(holders) == set(workers), holders
            for _, w in held:
                w.close()

            # 400 requests on 40 concurrent connections: both workers log at once
            async def client(c: int) -> None:
                reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
                for i in range(10):
                    writer.write(get(f"http://origin.test:{o.port}/small?c={c}&i={i}"))
                    await writer.drain()
                    assert (await read_response(reader)).status == 200
                writer.close()

            await asyncio.gather(*(client(c) for c in range(40)))
        finally:
            code = await p.stop(signal.SIGTERM)
        assert code == 0, p.stderr
        assert not any(_alive(w) for w in workers)
    lines = (tmp_path / "access.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b""
    urls = [json.loads(line)["url"] for line in lines[:-1]]  # every line whole JSON
    want = {f"http://origin.test:{o.port}/small?c={c}&i={i}" for c in range(40)
            for i in range(10)}
    assert sorted(urls) == sorted(want)  # each once: none lost, none twice


async def test_sighup_reaches_every_worker(tmp_path: Path) -> None:
    allow = tmp_path / "allow.txt"
    allow.write_text("first.test\n")
    async with http_origin() as o:
        args = ("--workers", "2", "--allow-domains-file", str(allow),
                "--resolve", "first.test=127.0.0.1", "--resolve", "second.test=127.0.0.1",
                "--allow-range", "127.0.0.1/32", "--allow-ports", str(o.port))
        p = await ProxyProc.start(*args)
        try:
            allow.write_text("second.test\n")
            p.signal(signal.SIGHUP)
            async with asyncio.timeout(10):
                while p.stderr.count("policy reloaded") < 2:
                    p.line_added.clear()
                    await p.line_added.wait()
            for _ in range(20):  # new connections: whichever worker takes one has reloaded
                resp = await roundtrip(p.port, get(f"http://second.test:{o.port}/small"))
                assert resp.status == 200
        finally:
            assert await p.stop() == 0


def test_a_busy_port_is_one_line_and_exit_2_before_any_worker() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "proxy.main", "--workers", "2",
                               "--listen", f"127.0.0.1:{port}", "--allow-domains", "a.test"],
                              capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert str(port) in done.stderr
    assert "listening" not in done.stderr


async def test_no_worker_outlives_a_killed_supervisor() -> None:
    p = await ProxyProc.start("--workers", "2", "--allow-domains", "a.test")
    workers = _workers(p.pid)
    assert len(workers) == 2
    await p.stop(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not any(_alive(w) for w in workers)


def _write_many(path: Path, tag: str, n: int) -> None:
    log = AccessLog(path, stderr_summary=False)
    log.start()
    pad = "x" * 300  # lines of ~400 bytes: batches span many pages
    for i in range(n):
        log.record({"ts": "t", "client": tag, "method": "GET", "host": "h.test", "port": 80,
                    "url": f"http://h.test/{tag}/{i}/{pad}", "decision": "allow"})
        if i % 2000 == 0:
            time.sleep(0.001)  # let the writer thread run: many batches, not one
    log.close()


def test_two_processes_appending_to_one_log_never_tear_a_line(tmp_path: Path) -> None:
    """The shared-log guarantee itself: two writers, one O_APPEND file, whole lines only."""
    path = tmp_path / "access.jsonl"
    n = 30_000
    pids = []
    for tag in ("a", "b"):
        pid = os.fork()
        if pid == 0:
            try:
                _write_many(path, tag, n)
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    seen = {"a": 0, "b": 0}
    for line in lines[:-1]:
        rec = json.loads(line)
        _, tag, i, _ = rec["url"].rsplit("/", 3)
        assert int(i) == seen[tag]  # each writer's lines whole and in its own order
        seen[tag] += 1
    assert seen == {"a": n, "b": n}


async def test_two_workers_answer_dns_on_one_port(tmp_path: Path) -> None:
    import dns.message
    import dns.query
    import dns.rcode

    p = await ProxyProc.start("--workers", "2", "--listen", "127.0.0.1:0", "--dns-listen",
                              "127.0.0.1:0", "--allow-domains", "origin.test",
                              "--resolve", "origin.test=192.0.2.7", "--log-dir", str(tmp_path))
    try:
        assert len(p.endpoints) == 2
        host, port = p.endpoint(1)

        def ask(i: int) -> tuple[int, int]:
            q = dns.message.make_query("origin.test" if i % 2 else f"n{i}.other.test", "A")
            r = dns.query.udp(q, host, port=port, timeout=5) if i % 3 else \
                dns.query.tcp(q, host, port=port, timeout=5)
            return i, r.rcode()

        answers = await asyncio.gather(*(asyncio.to_thread(ask, i) for i in range(40)))
        for i, rcode in answers:
            assert rcode == (dns.rcode.NOERROR if i % 2 else dns.rcode.NXDOMAIN)
    finally:
        assert await p.stop() == 0
    names = [json.loads(x)["qname"] for x in (tmp_path / "dns.jsonl").read_text().splitlines()]
    assert len(names) == 40
