"""awf-proxy as a process: exit 2 on every configuration error, SIGHUP, SIGTERM drain, logs."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.client import connect, get, read_response, roundtrip
from tests.support.origins import echo_origin, http_origin
from tests.support.proxyproc import ProxyProc, running_proxy

pytestmark = pytest.mark.integration


def run_proxy(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy.main", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def busy_port() -> object:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


CONFIG_ERRORS = [
    (["--allow-domains", "*"], "*"),
    (["--allow-domains", "*.com"], "*.com"),
    (["--allow-domains", "com"], "com"),
    (["--allow-domains", "a..b.test"], "a..b.test"),
    (["--allow-domains", "github.com/path"], "github.com/path"),
    (["--allow-domains", "github.com:22"], "github.com:22"),  # a dangerous port, even scoped
    (["--allow-domains", "git hub.com"], "git hub.com"),
    (["--allow-domains", "evil.com;rm"], "evil.com;rm"),
    (["--allow-ports", "5432"], "5432"),
    (["--allow-ports", "20-25"], "22"),
    (["--allow-ports", "0"], "0"),
    (["--allow-ports", "70000"], "70000"),
    (["--allow-ports", "http"], "http"),
    (["--allow-ports", "9000-8000"], "9000-8000"),
    (["--allow-domains-file", "/nonexistent/allow.txt"], "/nonexistent/allow.txt"),
    (["--block-domains", "*.*"], "*.*"),
    (["--allow-range", "not-a-cidr"], "not-a-cidr"),
    (["--resolve", "bad"], "bad"),
    (["--dns-servers", "not:an:ipv6:::x"], "not:an:ipv6:::x"),
    (["--listen", "localhost:3128"], "localhost"),
    (["--listen", "127.0.0.1:99999"], "99999"),
    (["--max-connections", "0"], "0"),
    (["--connect-timeout", "-1"], "-1"),
    (["--log-level", "loud"], "loud"),
    (["--no-such-flag"], "--no-such-flag"),
]


@pytest.mark.parametrize(("args", "named"), CONFIG_ERRORS)
def test_config_error_exits_2_with_one_line(args: list[str], named: str) -> None:
    done = run_proxy("--listen", "127.0.0.1:0", *args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert named in lines[0]
    assert "listening" not in done.stderr


def test_address_in_use_exits_2(busy_port: int) -> None:
    done = run_proxy("--listen", f"127.0.0.1:{busy_port}", "--allow-domains", "a.test")
    assert done.returncode == 2
    assert str(busy_port) in done.stderr
    assert "listening" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_unknown_config_key_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("allow_domains: [a.test]\nallow_everything: true\n")
    done = run_proxy("--listen", "127.0.0.1:0", "--config", str(cfg))
    assert done.returncode == 2
    assert "allow_everything" in done.stderr


def test_version_and_help() -> None:
    assert run_proxy("--version").stdout.startswith("awf-proxy ")
    out = run_proxy("--help").stdout
    for flag in ("--listen", "--transparent-listen", "--dns-listen", "--allow-domains",
                 "--allow-domains-file", "--block-domains", "--allow-ports", "--allow-range",
                 "--resolve", "--dns-servers", "--log-dir", "--config", "--max-connections",
                 "--connect-timeout", "--idle-timeout", "--head-timeout", "--drain-timeout",
                 "--log-level"):
        assert flag in out


async def test_config_file_yaml_and_json_flags_win(tmp_path: Path) -> None:
    async with http_origin() as o:
        yaml_cfg = tmp_path / "c.yaml"
        yaml_cfg.write_text(
            f"allow_domains: [origin.test]\nresolve: ['origin.test=127.0.0.1']\n"
            f"allow_range: 127.0.0.1/32\nallow_ports: '{o.port}'\n"
        )
        async with running_proxy("--config", str(yaml_cfg)) as p:
            resp = await roundtrip(p.port, get(f"http://origin.test:{o.port}/small"))
            assert resp.status == 200
        json_cfg = tmp_path / "c.json"
        json_cfg.write_text(json.dumps({
            "allow_domains": ["origin.test"], "resolve": ["origin.test=127.0.0.1"],
            "allow_range": ["127.0.0.1/32"], "allow_ports": str(o.port)}))
        # the flag replaces the file's allow list
        async with running_proxy("--config", str(json_cfg), "--allow-domains", "other.test") as p:
            resp = await roundtrip(p.port, get(f"http://origin.test:{o.port}/small"))
            assert resp.reason == "domain_not_allowed"


async def test_sighup_reloads_and_rejects_bad_policy(tmp_path: Path) -> None:
    allow = tmp_path / "allow.txt"
    allow.write_text("# comment\nfirst.test\n")
    async with http_origin() as o:
        args = ("--allow-domains-file", str(allow), "--resolve", "first.test=127.0.0.1",
                "--resolve", "second.test=127.0.0.1", "--allow-range", "127.0.0.1/32",
                "--allow-ports", str(o.port))
        async with running_proxy(*args) as p:
            assert (await roundtrip(p.port, get(f"http://first.test:{o.port}/small"))).status == 200
            assert (await roundtrip(p.port,
                                    get(f"http://second.test:{o.port}/small"))).status == 403
            allow.write_text("second.test, third.test\n")
            p.signal(signal.SIGHUP)
            await p.wait_stderr("policy reloaded")
            assert (await roundtrip(p.port,
                                    get(f"http://second.test:{o.port}/small"))).status == 200
            assert (await roundtrip(p.port,
                                    get(f"http://first.test:{o.port}/small"))).status == 403
            allow.write_text("*.com\n")  # invalid: the old policy must stay
            p.signal(signal.SIGHUP)
            await p.wait_stderr("reload rejected")
            assert (await roundtrip(p.port,
                                    get(f"http://second.test:{o.port}/small"))).status == 200
            rejected = [ln for ln in p.stderr_lines if "reload rejected" in ln]
            assert len(rejected) == 1
            assert "*.com" in rejected[0]
            assert p.proc.returncode is None


async def test_sigterm_drains_open_tunnels_then_exits_0(tmp_path: Path) -> None:
    async with echo_origin() as echo:
        args = ("--allow-domains", "origin.test", "--resolve", "origin.test=127.0.0.1",
                "--allow-range", "127.0.0.1/32", "--allow-ports", str(echo.port),
                "--drain-timeout", "5", "--log-dir", str(tmp_path))
        p = await ProxyProc.start(*args)
        reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
        writer.write(connect(f"origin.test:{echo.port}"))
        await reader.readuntil(b"\r\n\r\n")
        p.signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        # the listener is closed, but the open tunnel still works during the drain
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", p.port)
        writer.write(b"still here")
        assert await asyncio.wait_for(reader.readexactly(10), 5) == b"still here"
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"<bye>"
        writer.close()
        code = await asyncio.wait_for(p.proc.wait(), 10)
        assert code == 0
    records = [json.loads(x) for x in (tmp_path / "access.jsonl").read_text().splitlines()]
    assert [r["method"] for r in records] == ["CONNECT"]
    assert records[0]["bytes_up"] == 10


async def test_sigterm_aborts_tunnels_after_drain_timeout(tmp_path: Path) -> None:
    async with echo_origin() as echo:
        args = ("--allow-domains", "origin.test", "--resolve", "origin.test=127.0.0.1",
                "--allow-range", "127.0.0.1/32", "--allow-ports", str(echo.port),
                "--drain-timeout", "0.5", "--log-dir", str(tmp_path))
        p = await ProxyProc.start(*args)
        reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
        writer.write(connect(f"origin.test:{echo.port}"))
        await reader.readuntil(b"\r\n\r\n")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        code = await p.stop(signal.SIGINT)
        assert code == 0
        assert loop.time() - t0 < 5
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the tunnel was closed
        writer.close()
    assert len((tmp_path / "access.jsonl").read_text().splitlines()) == 1


async def test_log_is_flushed_within_a_second_while_running(tmp_path: Path) -> None:
    async with running_proxy("--allow-domains", "a.test", "--log-dir", str(tmp_path)) as p:
        resp = await roundtrip(p.port, get("http://denied.test/"))
        assert resp.status == 403
        log = tmp_path / "access.jsonl"
        async with asyncio.timeout(3):
            while not log.exists() or not log.read_text().endswith("\n"):
                await asyncio.sleep(0.05)
        [rec] = [json.loads(x) for x in log.read_text().splitlines()]
        assert rec["host"] == "denied.test"
        assert rec["reason"] == "domain_not_allowed"
        assert oct(log.stat().st_mode & 0o777) == "0o644"


async def test_stderr_summary_without_log_dir() -> None:
    p = await ProxyProc.start("--allow-domains", "a.test")
    await roundtrip(p.port, get("http://denied.test/"))
    assert await p.stop() == 0
    assert "denied.test" in p.stderr


async def test_idle_tunnel_is_closed_after_idle_timeout() -> None:
    async with echo_origin() as echo:
        args = ("--allow-domains", "origin.test", "--resolve", "origin.test=127.0.0.1",
                "--allow-range", "127.0.0.1/32", "--allow-ports", str(echo.port),
                "--idle-timeout", "0.4")
        async with running_proxy(*args) as p:
            reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
            writer.write(connect(f"origin.test:{echo.port}"))
            await reader.readuntil(b"\r\n\r\n")
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()


async def test_many_clients_one_fails_others_fine() -> None:
    """A client that resets mid-request does not disturb the others."""
    async with http_origin() as o:
        args = ("--allow-domains", "origin.test", "--resolve", "origin.test=127.0.0.1",
                "--allow-range", "127.0.0.1/32", "--allow-ports", str(o.port))
        async with running_proxy(*args) as p:
            _bad_reader, bad = await asyncio.open_connection("127.0.0.1", p.port)
            bad.write(b"POST http://origin.test:%d/echo HTTP/1.1\r\nHost: origin.test:%d\r\n"
                      b"Content-Length: 100000\r\n\r\npartial" % (o.port, o.port))
            await bad.drain()
            bad.transport.abort()

            async def one() -> int:
                resp = await roundtrip(p.port, get(f"http://origin.test:{o.port}/small"))
                return resp.status

            assert await asyncio.gather(*(one() for _ in range(50))) == [200] * 50
            reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await read_response(reader)).status == 200
            writer.close()
