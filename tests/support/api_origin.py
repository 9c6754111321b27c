"""A TLS origin playing OpenAI and Anthropic for `awf run` e2e tests, on an address of our own in
the wan namespace (tests/support/wan.py), so both backends reach it as a provider on the
internet: the netns backend from the host, the Docker backend through the proxy's -ext bridge.

    ip netns exec awt-XXXX python -m tests.support.api_origin ADDR CERT KEY RECORD  (port 8443)

It answers POST /v1/chat/completions and /v1/messages (streamed when the JSON body says
"stream": true) as tests/support/api_proxy.py's fake providers do, and appends one JSON line per
request to RECORD: the path and the headers that carry credentials. Prints `ready` once
listening. `start` runs it and adds (and later removes) the address.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ADDR = "198.51.100.30"  # ours: wan.py uses .1, .10 and .53
PORT = 8443  # wan.py's servers hold 443 (and 80, 8080, 22, 53) on every address
NAMES = ("api.openai.test", "api.anthropic.test")


async def serve(addr: str, cert: str, key: str, record: str) -> None:
    from aiohttp import web

    from tests.support.api_proxy import ANTHROPIC_SSE, OPENAI_SSE, _stream

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    def remember(request: web.Request) -> None:
        seen = {k.lower(): v for k, v in request.headers.items()
                if k.lower() in ("authorization", "x-api-key", "host", "anthropic-version")}
        with open(record, "a") as f:
            f.write(json.dumps({"path": request.raw_path, "headers": seen}) + "\n")

    async def chat(request: web.Request) -> web.StreamResponse:
        remember(request)
        body = await request.json()
        if body.get("stream"):
            return await _stream(request, OPENAI_SSE)
        return web.json_response({"id": "c1", "choices": [{"message": {"content": "hi"}}],
                                  "usage": {"prompt_tokens": 5, "completion_tokens": 3}})

    async def messages(request: web.Request) -> web.StreamResponse:
        remember(request)
        body = await request.json()
        if body.get("stream"):
            return await _stream(request, ANTHROPIC_SSE)
        return web.json_response({"id": "m1", "content": [{"type": "text", "text": "hi"}],
                                  "usage": {"input_tokens": 9, "output_tokens": 4}})

    async def other(request: web.Request) -> web.Response:
        remember(request)
        return web.json_response({"origin": "api-origin"})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/messages", messages)
    app.router.add_route("*", "/{tail:.*}", other)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, addr, PORT, ssl_context=ctx).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


@dataclass
class Origin:
    netns: str
    ca_pem: Path
    record: Path
    proc: subprocess.Popen[bytes]

    def seen(self) -> list[dict[str, object]]:
        if not self.record.exists():
            return []
        return [json.loads(ln) for ln in self.record.read_text().splitlines() if ln]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        subprocess.run(["ip", "netns", "exec", self.netns, "ip", "addr", "del", f"{ADDR}/24",
                        "dev", "eth0"], capture_output=True, check=False)


def start(netns: str, workdir: Path) -> Origin:
    """The origin in the wan namespace `netns`, at ADDR:PORT, with its own trustme CA."""
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert(*NAMES, ADDR)
    cert, key, ca_pem = workdir / "origin-cert.pem", workdir / "origin-key.pem", workdir / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_pem))
    ca_pem.chmod(0o644)
    workdir.chmod(0o755)
    record = workdir / "origin-seen.jsonl"
    inside = ["ip", "netns", "exec", netns]
    subprocess.run([*inside, "ip", "addr", "add", f"{ADDR}/24", "dev", "eth0"], check=True,
                   capture_output=True, timeout=20)
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen([*inside, sys.executable, "-m", "tests.support.api_origin", ADDR,
                             str(cert), str(key), str(record)], stdout=subprocess.PIPE, cwd=root)
    origin = Origin(netns, ca_pem, record, proc)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != b"ready":
        origin.close()
        raise RuntimeError("the API origin did not start")
    time.sleep(0.1)
    return origin


if __name__ == "__main__":
    asyncio.run(serve(*sys.argv[1:5]))
