"""awf as a drop-in for upstream's awf on the Docker backend (issue 16), end to end.

* `--upstream-proxy`: a parent proxy started here, on a private address of this host (the
  Docker bridge's gateway, as a corporate proxy is private), relays to the fake internet
  (tests/support/wan.py); allowed requests go through it, denied ones never reach it, and its
  credentials are in no log.
* `-d localhost` reaches a service of this host on an allowed port and not on another.
* `-d svc.test:8080` opens 8080 for that host only (`port_denied` for the others).
* An upstream-style invocation as gh-aw writes it (`sudo -E awf --config F --env-all ...
  -- /bin/bash -c '...'`, a nested camelCase JSON config) runs with the config's policy.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import cast

import pytest

from tests.support import wan as wanmod
from tests.support.parentproxy import running_parent

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

RESOLVE = ("--resolve", f"allowed.test={wanmod.V4}", "--resolve", f"other.test={wanmod.V4}",
           "--resolve", f"svc.test={wanmod.V4}")
CURL = "curl -sS -m 10"
CODE = "curl -s -m 10 -o /dev/null -w '%{http_code}'"
USER, PASSWORD = "runner", "s3cret-Pa55"


def awf(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "awf.cli", "run", "--backend", "docker", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def access(logs: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (logs / "access.jsonl").read_text().splitlines()
            if line.strip()]


def lines_of(stdout: str) -> dict[str, str]:
    """`name value` lines the command printed."""
    return {k: v for k, _, v in (ln.partition(" ") for ln in stdout.splitlines())}


# --- --upstream-proxy ------------------------------------------------------------------------


def bridge_gateway() -> str:
    """This host's address on Docker's default bridge (its gateway, else the first address of
    its subnet): private, and reachable from containers as an address of this host."""
    out = subprocess.run(["docker", "network", "inspect", "bridge", "--format",
                          "{{range .IPAM.Config}}{{.Gateway}},{{.Subnet}} {{end}}"],
                         capture_output=True, text=True, check=False, timeout=30).stdout.split()
    for item in out:
        gateway, _, subnet = item.partition(",")
        if ":" in subnet:
            continue
        addr = gateway or str(ip_network(subnet).network_address + 1)
        local = subprocess.run(["ip", "-o", "addr", "show", "to", f"{addr}/32"],
                               capture_output=True, text=True, check=False).stdout
        if local.strip():
            return addr
    pytest.skip("Docker's default bridge has no IPv4 address on this host")


def test_upstream_proxy_carries_allowed_requests_only(wan: wanmod.Wan, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    script = "; ".join([
        f"echo plain $({CURL} http://allowed.test/ | tr -d '\\n')",
        f"echo tls $({CURL} --cacert /ca.pem https://allowed.test/ | tr -d '\\n')",
        f"echo transparent $({CURL} --noproxy '*' http://allowed.test/ | tr -d '\\n')",
        f"echo denied $({CODE} http://other.test/)",
        f"echo denied_tls $({CURL} --cacert /ca.pem https://other.test/ >/dev/null 2>&1; echo $?)",
        f"echo denied_transparent $({CODE} --noproxy '*' --resolve other.test:80:{wanmod.V4} "
        "http://other.test/)",
    ])
    with running_parent(credentials=(USER, PASSWORD), target=wanmod.V4,
                        host=bridge_gateway()) as parent:
        done = awf("-d", "allowed.test", *RESOLVE, "--upstream-proxy", parent.url(USER, PASSWORD),
                   "--proxy-logs-dir", str(logs), "-v", f"{wan.ca_pem}:/ca.pem:ro", "--",
                   "bash", "-c", script)
        heads = list(parent.heads)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    got = lines_of(done.stdout)
    assert got["plain"] == "hello allowed.test"
    assert got["tls"] == "hello allowed.test"
    assert got["transparent"] == "hello allowed.test"
    assert got["denied"] == "403"
    assert got["denied_tls"] != "0"
    assert got["denied_transparent"] == "403"
    # every allowed request went through the parent, with its credentials; no denied one did
    # (the parent sees each connection's first head; plain HTTP ones may be pooled)
    firsts = {h.split(b"\r\n", 1)[0].decode() for h in heads}
    assert firsts == {"CONNECT allowed.test:443 HTTP/1.1", "GET http://allowed.test/ HTTP/1.1"}
    assert not [h for h in heads if b"other.test" in h]
    # the credentials are in no log and no output
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for f in [p for p in logs.rglob("*") if p.is_file()]:
        text = f.read_text(errors="replace")
        assert PASSWORD not in text, f
        assert token not in text, f
    assert PASSWORD not in done.stdout + done.stderr
    records = access(logs)
    assert {r.get("host") for r in records if r.get("decision") == "allow"} == {"allowed.test"}


def test_upstream_proxy_that_refuses_fails_the_allowed_request(wan: wanmod.Wan,
                                                               tmp_path: Path) -> None:
    """A tunnel the parent refuses is the client's 502; for plain HTTP the parent's answer is
    passed on as the origin's (docs/proxy.md §4.3)."""
    script = (f"echo tunnel $(curl -s -m 10 -o /dev/null -w '%{{http_connect}}' "
              f"https://allowed.test/); echo plain $({CODE} http://allowed.test/)")
    with running_parent(refuse=403, target=wanmod.V4, host=bridge_gateway()) as parent:
        done = awf("-d", "allowed.test", *RESOLVE, "--upstream-proxy", parent.url(), "--",
                   "bash", "-c", script)
        count = parent.count
    assert done.returncode == 0, done.stderr[-3000:]
    got = lines_of(done.stdout)
    assert got["tunnel"] == "502", done.stdout + done.stderr[-3000:]
    assert got["plain"] == "403"
    assert count == 2


def test_upstream_proxy_on_the_hosts_loopback_is_exit_2_with_nothing_made() -> None:
    done = awf("--upstream-proxy", f"http://{USER}:{PASSWORD}@127.0.0.1:3128", "--", "true",
               timeout=60)
    assert done.returncode == 2, done.stderr
    assert "loopback" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert PASSWORD not in done.stderr


# --- -d localhost and HOST:PORT ---------------------------------------------------------------


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        port = cast(tuple[str, int], self.server.server_address)[1]
        body = f"hello from host port {port}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def host_services() -> Iterator[tuple[int, int]]:
    """Two HTTP services on this host (all addresses, free ports), as dev servers would be."""
    servers = [http.server.ThreadingHTTPServer(("0.0.0.0", 0), Hello) for _ in range(2)]
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield servers[0].server_address[1], servers[1].server_address[1]
    finally:
        for srv in servers:
            srv.shutdown()
            srv.server_close()


def test_localhost_keyword_reaches_the_host_on_its_allowed_port_only(
        wan: wanmod.Wan, host_services: tuple[int, int], tmp_path: Path) -> None:
    allowed, other = host_services
    url = "http://host.docker.internal"
    script = "; ".join([
        f"echo allowed $({CURL} {url}:{allowed}/ | tr -d '\\n')",
        f"echo allowed_transparent $({CURL} --noproxy '*' {url}:{allowed}/ | tr -d '\\n')",
        f"echo other $({CODE} {url}:{other}/)",
        f"echo other_transparent $({CODE} --noproxy '*' {url}:{other}/)",
    ])
    logs = tmp_path / "logs"
    done = awf("-d", "localhost,allowed.test", *RESOLVE, "--allow-host-ports", str(allowed),
               "--proxy-logs-dir", str(logs), "--", "bash", "-c", script)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    got = lines_of(done.stdout)
    assert got["allowed"] == f"hello from host port {allowed}"
    assert got["allowed_transparent"] == f"hello from host port {allowed}"
    assert got["other"] == "403"  # the proxy's answer: the port is not allowed
    assert got["other_transparent"] == "000"  # never redirected to the proxy: refused


def test_port_scoped_entry_opens_its_port_for_its_host_only(wan: wanmod.Wan,
                                                           tmp_path: Path) -> None:
    script = "; ".join([
        f"echo svc_8080 $({CURL} http://svc.test:8080/ | tr -d '\\n')",
        f"echo svc_8080_transparent $({CURL} --noproxy '*' http://svc.test:8080/ | tr -d '\\n')",
        f"echo allowed_80 $({CODE} http://allowed.test/)",
        f"echo allowed_8080 $({CODE} http://allowed.test:8080/)",
        f"echo allowed_8080_transparent $({CODE} --noproxy '*' http://allowed.test:8080/)",
        f"echo svc_80 $({CODE} http://svc.test/)",
    ])
    logs = tmp_path / "logs"
    done = awf("-d", "allowed.test", "-d", "svc.test:8080", *RESOLVE,
               "--proxy-logs-dir", str(logs), "--", "bash", "-c", script)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    got = lines_of(done.stdout)
    assert got["svc_8080"] == "hello svc.test:8080", done.stdout + done.stderr[-3000:]
    assert got["svc_8080_transparent"] == "hello svc.test:8080", done.stdout + done.stderr[-3000:]
    assert got["allowed_80"] == "200"
    assert got["allowed_8080"] == "403"
    assert got["allowed_8080_transparent"] == "403"
    assert got["svc_80"] == "403"
    denied = {(r.get("host"), r.get("port")): r.get("reason") for r in access(logs)
              if r.get("decision") == "deny"}
    assert denied[("allowed.test", 8080)] == "port_denied", denied
    assert denied[("svc.test", 80)] == "port_denied", denied


# --- an upstream-style invocation, as gh-aw writes it ---------------------------------------


def test_gh_aw_invocation_runs_with_the_configs_policy(wan: wanmod.Wan, tmp_path: Path) -> None:
    """gh-aw's step: `set -o pipefail`, `sudo -E awf <its flags> -- /bin/bash -c '<engine>'
    2>&1 | tee -a LOG`, here with a nested JSON config as upstream's schema has it. The awf
    binary is named by its path (gh-aw's `sandbox.agent.command`): sudo's secure_path would
    not find the test's virtualenv. `--resolve` comes last, as gh-aw appends a workflow's
    custom firewall args; the fake internet has no DNS."""
    if subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False).returncode:
        pytest.skip("sudo is not installed or asks for a password (make deps installs it)")
    awf_bin = Path(sys.executable).parent / "awf"
    workspace, audit, logs = tmp_path / "workspace", tmp_path / "audit", tmp_path / "logs"
    workspace.mkdir()
    (workspace / "README.md").write_text("checked out\n")
    config = tmp_path / "awf-config.json"
    config.write_text(json.dumps({
        "$schema": "https://raw.githubusercontent.com/github/gh-aw-firewall/main/docs/"
                   "awf-config.schema.json",
        "network": {"allowDomains": ["allowed.test"], "blockDomains": ["blocked.allowed.test"],
                    "isolation": True},
        "apiProxy": {"enabled": True, "targets": {"copilot": {"host": "api.githubcopilot.com"}}},
        "security": {"legacySecurity": False},
        "container": {"agentTimeout": 10, "imageTag": "0.25.18", "skipPull": True,
                      "memoryLimit": "2g"},
        "environment": {"excludeEnv": ["COPILOT_GITHUB_TOKEN"]},
        "logging": {"logLevel": "info"},
    }, indent=2))
    engine = ("cat README.md; "
              "echo allowed $(curl -sS -m 10 http://allowed.test/ | tr -d '\\n'); "
              "echo blocked $(curl -s -m 10 -o /dev/null -w '%{http_code}' "
              "http://blocked.allowed.test/); "
              "echo denied $(curl -s -m 10 -o /dev/null -w '%{http_code}' http://other.test/)")
    wrapped = "/bin/bash -c " + shlex.quote(engine)  # gh-aw's WrapCommandInShell
    step = (
        "set -o pipefail\n"
        f"sudo -E {awf_bin} --config {config} --env-all --container-workdir "
        '"${GITHUB_WORKSPACE}" --log-level info '
        f"--proxy-logs-dir {logs} --enable-host-access --image-tag 0.25.18 --skip-pull "
        f"--enable-api-proxy --audit-dir {audit} "
        f"--resolve allowed.test={wanmod.V4} --resolve other.test={wanmod.V4} "
        f"--resolve blocked.allowed.test={wanmod.V4} \\\n"
        f"  -- {wrapped} 2>&1 | tee -a {tmp_path / 'agent-stdio.log'}\n")
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_KEY", "_TOKEN")) and not k.startswith("AWF_")}
    env["GITHUB_WORKSPACE"] = str(workspace)
    done = subprocess.run(["bash", "-c", step], capture_output=True, text=True, env=env,
                          cwd=workspace, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    got = lines_of(done.stdout)
    assert "checked out" in done.stdout  # ran in --container-workdir, the workspace
    assert got["allowed"] == "hello allowed.test"
    assert got["blocked"] == "403"
    assert got["denied"] == "403"
    assert "--image-tag" in done.stdout  # noted in one line, no effect
    rules = json.loads((audit / "policy.json").read_text())["rules"]
    assert {"action": "deny", "reason": "domain_blocked", "domain": "blocked.allowed.test"} in [
        {"action": r["action"], "reason": r.get("reason"), "domain": r["match"].get("domain")}
        for r in rules if isinstance(r["match"], dict)]
    assert [r["match"]["domain"] for r in rules if r["action"] == "allow"
            and isinstance(r["match"], dict)] == ["allowed.test", "host.docker.internal"]
    assert rules[-1]["action"] == "deny"
    assert rules[-1]["match"] == "everything else"
    assert (audit / "config.json").is_file()
    assert (audit / "rulesets.nft").is_file()
    assert (logs / "access.jsonl").is_file()
