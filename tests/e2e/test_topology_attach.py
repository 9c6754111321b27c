"""Issue 16 item 6: --topology-attach NETWORK joins the proxy to an existing Docker network.

A test network holds a small HTTP server under the alias mcp.test (awf-agent's Python). With
`-d mcp.test --topology-attach NET` the command reaches it by name through the proxy; without
the flag it does not; and never directly: by address the proxy refuses it (an IP literal), and
a port the proxy does not intercept goes nowhere (the agent has no route of its own).
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.test_docker_run import awf_argv
from tests.e2e.test_host_view_live import assert_run_removed
from tests.support import wan as wanmod
from tests.support.needs import need_docker, need_root

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

SERVER = r'''
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello-from-mcp\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
for port in (80, 8000):
    import threading
    s = http.server.ThreadingHTTPServer(("", port), H)
    threading.Thread(target=s.serve_forever).start()
'''

PROBE = r'''
import json, socket, subprocess, sys
ip = sys.argv[1]
def curl(*args):
    p = subprocess.run(["curl", "-sS", "-m", "8", *args], capture_output=True, text=True)
    return p.stdout + p.stderr
def raw(port, host):
    try:
        s = socket.create_connection((ip, port), timeout=5)
        s.sendall(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        return data.decode(errors="replace")
    except OSError as e:
        return type(e).__name__
print("PROBES " + json.dumps({
    "by_name": curl("http://mcp.test/"),
    "internet": curl("http://allowed.test/") if len(sys.argv) > 2 else "",
    "by_name_transparent": curl("--noproxy", "*", "http://mcp.test/"),
    "by_ip": raw(80, ip),
    "by_ip_other_port": raw(8000, ip),
}))
'''


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


@pytest.fixture(scope="module")
def mcp() -> Iterator[tuple[str, str]]:
    """(network, the server's address on it)."""
    need_docker()
    need_root()
    tag = secrets.token_hex(4)
    # "0..." sorts before awf's own networks: the one Docker would pick as the default gateway
    net, name = f"0awftest-mcp-{tag}", f"awftest-mcp-srv-{tag}"
    docker("network", "create", net)
    try:
        docker("run", "-d", "--rm", "--name", name, "--network", net, "--network-alias",
               "mcp.test", "--entrypoint", "python3", "awf-agent:latest", "-c", SERVER)
        try:
            ip = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}"
                        "{{end}}", name)
            yield net, ip
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60,
                           check=False)
    finally:
        subprocess.run(["docker", "network", "rm", net], capture_output=True, timeout=60,
                       check=False)


def probe(ip: str, *flags: str, internet: bool = False) -> tuple[dict[str, str], str]:
    extra = ("internet",) if internet else ()
    done = subprocess.run(awf_argv("-d", "mcp.test", *flags, "--", "python3", "-c", PROBE, ip,
                                   *extra),
                          capture_output=True, text=True, timeout=300, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("PROBES ")), None)
    assert line, f"exit {done.returncode}: {done.stdout[-2000:]} {done.stderr[-3000:]}"
    return json.loads(line[len("PROBES "):]), done.stderr


@pytest.fixture(scope="module")
def attached(mcp: tuple[str, str]) -> tuple[dict[str, str], str]:
    net, ip = mcp
    return probe(ip, "--topology-attach", net)


def test_reachable_by_name_through_the_proxy(attached: tuple[dict[str, str], str]) -> None:
    seen, _ = attached
    assert "hello-from-mcp" in seen["by_name"], seen
    assert "hello-from-mcp" in seen["by_name_transparent"], seen


def test_never_directly_from_the_agent(attached: tuple[dict[str, str], str]) -> None:
    seen, stderr = attached
    assert "hello-from-mcp" not in seen["by_ip"], seen  # the proxy: ip_literal
    assert "ip_literal" in stderr
    assert "hello-from-mcp" not in seen["by_ip_other_port"], seen  # no route but the proxy
    assert_run_removed(stderr)


def test_not_reachable_without_the_flag(mcp: tuple[str, str]) -> None:
    _net, ip = mcp
    seen, stderr = probe(ip)
    assert "hello-from-mcp" not in seen["by_name"], seen
    assert "hello-from-mcp" not in seen["by_name_transparent"], seen
    assert_run_removed(stderr)


def test_the_proxy_still_leaves_through_its_egress_network(
        mcp: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> None:
    """The attached network, first by name, does not become the proxy's way out."""
    net, ip = mcp
    wanmod.reap()
    w = wanmod.start(tmp_path_factory.mktemp("wan"))  # the shared fake internet (waits its turn)
    try:
        seen, stderr = probe(ip, "--topology-attach", net, "-d", "allowed.test", "--resolve",
                             f"allowed.test={wanmod.V4}", internet=True)
    finally:
        w.close()
    assert "hello-from-mcp" in seen["by_name"], seen
    assert "hello allowed.test" in seen["internet"], seen
    assert_run_removed(stderr)


def test_a_missing_network_is_exit_2_and_nothing_is_made() -> None:
    done = subprocess.run(awf_argv("-d", "mcp.test", "--topology-attach",
                                   f"awftest-none-{secrets.token_hex(4)}", "--", "true"),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "no such Docker network" in done.stderr
