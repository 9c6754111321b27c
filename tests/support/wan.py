"""A fake internet for privileged tests: a namespace `awt-<id>` joined to the host by a veth.

It holds TEST-NET addresses (198.51.100.10 and .53, 2001:db8:100::10 and ::53) and runs real
servers there: HTTP on 80 and 8080, TLS on 443 (a trustme CA), a TCP listener on 22 and a UDP
DNS responder on 53 that count what reaches them. They listen on the wildcard address with
SO_REUSEPORT, so that tests/support/forge.py's stand-ins can take the same ports on addresses
of their own in the same namespace. The `awt-` prefix keeps `awf cleanup` from
touching it; tests remove it at the end, and the conftest reaps crashed leftovers.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREFIX = "awt-"
V4, V4_DNS, V4_HOST = "198.51.100.10", "198.51.100.53", "198.51.100.1"
V6, V6_DNS, V6_HOST = "2001:db8:100::10", "2001:db8:100::53", "2001:db8:100::1"

SERVER = r'''
import json, socket, ssl, sys, threading, http.server, socketserver
counts = {"tcp22": 0, "dns": 0}
status_path, cert, key = sys.argv[1], sys.argv[2], sys.argv[3]
def save():
    with open(status_path + ".tmp", "w") as f: json.dump(counts, f)
    import os; os.replace(status_path + ".tmp", status_path)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("hello " + self.headers.get("Host", "") + "\n").encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    address_family = socket.AF_INET6; daemon_threads = True
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # forge.py's too
        super().server_bind()
for port in (80, 8080):
    srv = S(("::", port), H); threading.Thread(target=srv.serve_forever, daemon=True).start()
tls = S(("::", 443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
threading.Thread(target=tls.serve_forever, daemon=True).start()
def tcp22():
    s = socket.socket(socket.AF_INET6); s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1); s.bind(("::", 22)); s.listen()
    while True:
        c, _ = s.accept(); counts["tcp22"] += 1; save(); c.close()
def dns():
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1); s.bind(("::", 53))
    while True:
        data, addr = s.recvfrom(2048); counts["dns"] += 1; save()
threading.Thread(target=tcp22, daemon=True).start()
threading.Thread(target=dns, daemon=True).start()
save(); print("ready", flush=True)
threading.Event().wait()
'''


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


@dataclass
class Wan:
    netns: str
    host_if: str
    status: Path
    ca_pem: Path
    proc: subprocess.Popen[bytes]
    lock: int = -1  # the flock that makes this the one wan on the machine
    ca: Any = None  # the trustme.CA behind ca_pem: stand-ins (tests/support/forge.py) issue from it

    def counts(self) -> dict[str, int]:
        data: dict[str, int] = json.loads(self.status.read_text())
        return data

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        subprocess.run(["ip", "link", "delete", self.host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True, check=False)
        (OWNERS / self.netns).unlink(missing_ok=True)
        if self.lock >= 0:
            os.close(self.lock)  # releases the flock
            self.lock = -1


def _take_the_wan(wait: float) -> int:
    """One wan per machine (its addresses are fixed): wait, bounded, for another run's to go.
    The flock dies with its process, so a crashed run never blocks the next one."""
    import fcntl

    OWNERS.mkdir(parents=True, exist_ok=True)
    fd = os.open(OWNERS.parent / "test-wan.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise RuntimeError(f"another test run held the wan for over {wait:.0f} s; only "
                                   "one can run at a time") from None
            time.sleep(1)


def start(workdir: Path) -> Wan:
    lock = _take_the_wan(float(os.environ.get("AWF_TEST_WAN_WAIT", "1200")))
    try:
        wan = _start(workdir)
    except BaseException:
        os.close(lock)
        raise
    wan.lock = lock
    return wan


def _start(workdir: Path) -> Wan:
    import trustme

    reap()
    deadline = time.monotonic() + float(os.environ.get("AWF_TEST_WAN_WAIT", "1200"))
    while True:  # a run without the flock (an older checkout) may hold the addresses: wait
        taken = subprocess.run(["ip", "-o", "addr", "show", "to", f"{V4_HOST}/32"],
                               capture_output=True, text=True, check=False).stdout
        if not taken.strip() or time.monotonic() > deadline:
            break
        time.sleep(2)
        reap()
    if taken.strip():
        raise RuntimeError(f"{V4_HOST} is already on a host interface ({taken.split()[1]}): "
                           "another test run's wan is up; only one can run at a time")
    ident = secrets.token_hex(3)
    ns, host_if = f"{PREFIX}{ident}", f"{PREFIX}{ident}h"
    ca = trustme.CA()
    leaf = ca.issue_cert("allowed.test", "api.allowed.test", "other.test", V4, V6)
    cert, key, ca_pem = workdir / "cert.pem", workdir / "key.pem", workdir / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_pem))
    sh("ip", "netns", "add", ns)
    OWNERS.mkdir(parents=True, exist_ok=True)
    (OWNERS / ns).write_text(f"{os.getpid()}\n")
    try:
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "addr", "add", f"{V4_HOST}/24", "dev", host_if)
        sh("ip", "-6", "addr", "add", f"{V6_HOST}/64", "dev", host_if, "nodad")
        sh("ip", "link", "set", host_if, "up")
        inside = ("ip", "netns", "exec", ns)
        sh(*inside, "ip", "link", "set", "lo", "up")
        for a in (V4, V4_DNS):
            sh(*inside, "ip", "addr", "add", f"{a}/24", "dev", "eth0")
        for a in (V6, V6_DNS):
            sh(*inside, "ip", "-6", "addr", "add", f"{a}/64", "dev", "eth0", "nodad")
        sh(*inside, "ip", "link", "set", "eth0", "up")
        status = workdir / "wan-status.json"
        proc = subprocess.Popen([*inside, sys.executable, "-c", SERVER, str(status), str(cert),
                                 str(key)], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError("the wan servers did not start")
        wan = Wan(ns, host_if, status, ca_pem, proc, ca=ca)
        _wait_reachable(V4)
        return wan
    except BaseException:
        subprocess.run(["ip", "link", "delete", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)
        raise


def _wait_reachable(addr: str) -> None:
    import socket

    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection((addr, 80), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


OWNERS = Path("/run/awf/test-wan")


def reap() -> None:
    """Remove `awt-` namespaces a crashed test left: those whose owner process is gone."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(PREFIX):
            continue
        try:
            os.kill(int((OWNERS / name).read_text()), 0)
            continue  # its test is still running
        except (OSError, ValueError):
            pass
        subprocess.run(["ip", "link", "delete", f"{name}h"], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
        (OWNERS / name).unlink(missing_ok=True)
