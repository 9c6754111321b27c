"""What the API-proxy e2e tests of both backends share: the keys, awf's flags, the probe that runs
in the sandbox, and the checks on what it, the origin and the logs saw."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.support import api_origin
from tests.support import wan as wanmod

OPENAI_KEY = "sk-real-openai-e2e-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-real-e2e-0123456789abcdef"
REAL_KEYS = (OPENAI_KEY, ANTHROPIC_KEY)
PLACEHOLDER = "placeholder-token-for-credential-isolation"


def awf_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (
        "OPENAI_API_KEY", "CODEX_API_KEY", "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN",
        "COPILOT_GITHUB_TOKEN", "GEMINI_API_KEY")}
    env.update(OPENAI_API_KEY=OPENAI_KEY, ANTHROPIC_API_KEY=ANTHROPIC_KEY)
    return env


def flags(ca_pem: Path) -> list[str]:
    """Targets on the origin (by name, resolved by --resolve), its CA for the sidecar; the
    agent's own allowlist is allowed.test alone."""
    a = api_origin.ADDR
    return ["--allow-domains", "allowed.test", "--resolve", f"allowed.test={wanmod.V4}",
            "--resolve", f"api.openai.test={a}", "--resolve", f"api.anthropic.test={a}",
            "--allow-ports", str(api_origin.PORT),  # the origin's port (443 is the wan's)
            "--openai-api-target", f"api.openai.test:{api_origin.PORT}",
            "--anthropic-api-target", f"api.anthropic.test:{api_origin.PORT}",
            "--extra-ca-certs", str(ca_pem), "--enable-api-proxy"]


PROBE = r'''
import json, os, subprocess, sys
ca, addr, port = sys.argv[1], sys.argv[2], sys.argv[3]
def curl(*a):
    p = subprocess.run(["curl", "-sS", "-m", "20", *a], capture_output=True, text=True)
    return {"rc": p.returncode, "out": p.stdout[-3000:], "err": p.stderr[-400:]}
e = os.environ
o, an = e.get("OPENAI_BASE_URL", "unset"), e.get("ANTHROPIC_BASE_URL", "unset")
J = ["-H", "content-type: application/json"]
OA = ["-H", "Authorization: Bearer " + e.get("OPENAI_API_KEY", "")]
AA = ["-H", "x-api-key: " + e.get("ANTHROPIC_API_KEY", "")]
CODE = ["-o", "/dev/null", "-w", "%{http_code}"]
environ = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            environ.append(open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace"))
        except OSError:
            pass
r = {
 "openai": curl(*J, *OA, "-d", '{"model":"m","messages":[]}', o + "/chat/completions"),
 "openai_stream": curl("-N", *J, *OA, "-d", '{"stream":true}', o + "/chat/completions"),
 "anthropic": curl(*J, *AA, "-d", '{"model":"m"}', an + "/v1/messages"),
 "anthropic_stream": curl("-N", *J, *AA, "-d", '{"stream":true}', an + "/v1/messages"),
 "direct_openai": curl("--cacert", ca, *CODE, *J, "-d", "{}",
                       f"https://api.openai.test:{port}/v1/chat/completions"),
 "direct_anthropic": curl("--cacert", ca, *J, "-d", "{}",
                          f"https://api.anthropic.test:{port}/v1/messages"),
 "direct_transparent": curl("--noproxy", "*", "--cacert", ca, "--resolve",
                            f"api.openai.test:{port}:{addr}", *J, "-d", "{}",
                            f"https://api.openai.test:{port}/v1/chat/completions"),
 "direct_ip_literal": curl("--noproxy", "*", "-k", *J, "-d", "{}",
                           f"https://{addr}:{port}/v1/chat/completions"),
 "env": dict(e),
 "environ": environ,
}
print("PROBES " + json.dumps(r))
'''


def results(stdout: str) -> dict[str, object]:
    line = next((ln for ln in stdout.splitlines() if ln.startswith("PROBES ")), None)
    assert line, "no probe output"
    out: dict[str, object] = json.loads(line[len("PROBES "):])
    return out


def check_calls(r: dict[str, object]) -> None:
    """The four calls through the sidecar got the origin's answers."""
    def ok(name: str) -> str:
        p = r[name]
        assert isinstance(p, dict)
        assert p["rc"] == 0, (name, p)
        return str(p["out"])

    assert '"content": "hi"' in ok("openai")
    stream = ok("openai_stream")
    assert "Hel" in stream
    assert "data: [DONE]" in stream
    assert '"text": "hi"' in ok("anthropic")
    stream = ok("anthropic_stream")
    assert "event: message_start" in stream
    assert "event: message_stop" in stream


def check_env(r: dict[str, object], sidecar_host: str) -> None:
    env = r["env"]
    assert isinstance(env, dict)
    assert env["OPENAI_BASE_URL"] == f"http://{sidecar_host}:10000/v1"
    assert env["ANTHROPIC_BASE_URL"] == f"http://{sidecar_host}:10001"
    assert env["OPENAI_API_KEY"] == PLACEHOLDER
    assert env["ANTHROPIC_API_KEY"] == PLACEHOLDER
    assert sidecar_host in env.get("NO_PROXY", "").split(",")
    blob = json.dumps(r)
    for key in REAL_KEYS:
        assert key not in blob  # env, every readable /proc/*/environ, every answer


def check_direct_denied(r: dict[str, object]) -> None:
    """The same call straight to the target: refused by name (explicit and transparent) and by
    IP literal; nothing answered by the origin."""
    for name in ("direct_openai", "direct_anthropic", "direct_transparent",
                 "direct_ip_literal"):
        p = r[name]
        assert isinstance(p, dict)
        assert "api-origin" not in str(p["out"]), (name, p)
        assert '"choices"' not in str(p["out"]), (name, p)
        if name == "direct_openai":
            assert p["out"] in ("403", "000"), p
        else:
            assert p["rc"] != 0, (name, p)


def check_origin(origin: api_origin.Origin) -> None:
    """The origin saw the real keys, never the placeholder, and only the sidecar's calls."""
    seen = origin.seen()
    openai = [s for s in seen if s["path"] == "/v1/chat/completions"]
    anthropic = [s for s in seen if s["path"] == "/v1/messages"]
    assert len(openai) == 2, seen
    assert len(anthropic) == 2, seen
    for s in openai:
        headers = s["headers"]
        assert isinstance(headers, dict)
        assert headers["authorization"] == f"Bearer {OPENAI_KEY}"
        assert headers["host"] == f"api.openai.test:{api_origin.PORT}"
    for s in anthropic:
        headers = s["headers"]
        assert isinstance(headers, dict)
        assert headers["x-api-key"] == ANTHROPIC_KEY
        assert "authorization" not in headers
    assert PLACEHOLDER not in json.dumps(seen)


def check_logs(logs: Path, stderr: str) -> None:
    """No real key in any file under the logs dir or on awf's stderr; the summary counts
    requests and tokens per provider from api-proxy.jsonl."""
    files = [p for p in logs.rglob("*") if p.is_file()]
    assert any(p.name == "api-proxy.jsonl" for p in files), files
    for p in files:
        data = p.read_bytes()
        for key in REAL_KEYS:
            assert key.encode() not in data, p
    for key in REAL_KEYS:
        assert key not in stderr
    assert "api-proxy: openai 2 requests, 16 in / 10 out tokens" in stderr, stderr
    assert "api-proxy: anthropic 2 requests, 34 in / 19 out tokens" in stderr, stderr


def check_one_proxy(logs: Path) -> None:
    """The sidecar's calls left through the run's one awf-proxy as its client `api-proxy`
    (docs/proxy.md §12), allowed; the agent's direct calls to the same targets were denied there
    under its own policy; there is no second proxy's log."""
    records = [json.loads(ln) for ln in (logs / "access.jsonl").read_text().splitlines()
               if ln.strip()]
    mine = [r for r in records if r.get("client_name") == "api-proxy"]
    # one tunnel per target at least (the sidecar keeps its upstream connections alive)
    assert {(r["host"], r["decision"]) for r in mine} == {
        ("api.openai.test", "allow"), ("api.anthropic.test", "allow")}, mine
    agent = [r for r in records if "client_name" not in r and r.get("host") in (
        "api.openai.test", "api.anthropic.test")]
    assert agent, records
    assert {r["decision"] for r in agent} == {"deny"}, agent
    assert not (logs / "api-proxy" / "access.jsonl").exists()
