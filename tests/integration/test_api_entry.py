"""containers/api_entry.py as a real process, with the run's one awf-proxy as awf run starts it
(awf/apisidecar.py): the sidecar's calls leave through the proxy as its client `api-proxy`, which
may reach the targets; a client from another address (the agent) may not. One process, no egress
proxy of its own; `awf-api-proxy ready` once it listens; SIGTERM exits 0, a bad flag 125."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from awf import apisidecar
from awf import run as shared
from awf.config import parse_run
from tests.support.api_proxy import KEYS, fake_providers, write_keys
from tests.support.client import connect, read_response
from tests.support.proxyproc import running_proxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

LISTENING = "awf-api-proxy listening on "
AGENT = "127.0.0.3"  # the sidecar connects from 127.0.0.1, as in awf run


async def start_entry(spec: dict[str, object]) -> tuple[asyncio.subprocess.Process,
                                                          list[str], dict[str, int]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "containers.api_entry", json.dumps(spec),
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    lines: list[str] = []
    ports: dict[str, int] = {}
    async with asyncio.timeout(30):
        while (raw := await proc.stderr.readline()):
            line = raw.decode().rstrip("\n")
            lines.append(line)
            if line.startswith(LISTENING):
                endpoint, name = line[len(LISTENING):].split()
                ports[name.strip("()")] = int(endpoint.rsplit(":", 1)[1])
            if line == apisidecar.READY:
                break
    return proc, lines, ports


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def test_the_sidecar_leaves_through_the_run_proxy_as_its_client(tmp_path: Path) -> None:
    async with fake_providers(tmp_path) as fake:
        cfg = parse_run(["--allow-domains", "allowed.test", "--resolve",
                         "api.openai.com=127.0.0.1", "--allow-range", "127.0.0.1/32",
                         "--openai-api-target", f"api.openai.com:{fake.port}", "--", "true"])
        sc = apisidecar.plan(cfg, {"OPENAI_API_KEY": KEYS["OPENAI_API_KEY"]})
        assert sc is not None
        logs = tmp_path / "logs"
        argv = shared.proxy_argv([], cfg, str(logs)) + apisidecar.proxy_client_args(
            sc, "127.0.0.1:0")
        async with running_proxy(*argv) as p:
            keys = write_keys(tmp_path / "keys", {"OPENAI_API_KEY": KEYS["OPENAI_API_KEY"]})
            side = apisidecar.sidecar_argv(sc, listen_host="127.0.0.1", keys_file=str(keys),
                                           log_dir=str(logs / "api-proxy"),
                                           extra_ca_certs=str(fake.ca_file))
            side[side.index("--port-base") + 1] = "0"
            spec = json.loads(apisidecar.entry_spec(side, egress_listen=p.endpoints[0],
                                                    lease=None))
            proc, lines, ports = await start_entry(spec)
            try:
                assert proc.returncode is None, lines
                assert children(proc.pid) == []  # no egress proxy of its own
                async with aiohttp.ClientSession() as s, s.post(
                        f"http://127.0.0.1:{ports['openai']}/v1/chat/completions",
                        json={"stream": True}) as resp:
                    assert resp.status == 200
                    assert b"[DONE]" in await resp.read()
                # the agent, from another address, asks the same proxy for the same target
                async with asyncio.timeout(10):
                    reader, writer = await asyncio.open_connection(
                        "127.0.0.1", p.port, local_addr=(AGENT, 0))
                    writer.write(connect(f"api.openai.com:{fake.port}"))
                    denied = await read_response(reader, head_only=True)
                    writer.close()
                assert (denied.status, denied.reason) == (403, "domain_not_allowed")
                proc.send_signal(signal.SIGTERM)
                async with asyncio.timeout(15):
                    assert await proc.wait() == 0
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        assert len(fake.seen) == 1
        assert fake.seen[0]["authorization"] == f"Bearer {KEYS['OPENAI_API_KEY']}"
        records = [json.loads(ln) for ln in (logs / "access.jsonl").read_text().splitlines()]
        mine = [r for r in records if r.get("client_name") == "api-proxy"]
        assert [(r["host"], r["decision"]) for r in mine] == [("api.openai.com", "allow")]
        theirs = [r for r in records if str(r["client"]).startswith(AGENT)]
        assert [(r["decision"], r.get("client_name")) for r in theirs] == [("deny", None)]


async def test_a_sidecar_that_cannot_start_is_failed_and_125(tmp_path: Path) -> None:
    spec = {"sidecar": ["--keys-file", str(tmp_path / "missing")],
            "egress_proxy": "http://127.0.0.1:9", "lease": None}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "containers.api_entry", json.dumps(spec),
        stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 125
    text = err.decode()
    assert text.startswith("awf-api-proxy: --keys-file")
    assert "awf-api-proxy failed: awf-api-proxy exited with status 2" in text
    assert "Traceback" not in text


async def test_a_spec_without_an_egress_proxy_is_refused() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "containers.api_entry", json.dumps({"sidecar": []}),
        stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 125
    assert err.decode().startswith("awf-api-proxy failed: the spec needs")
