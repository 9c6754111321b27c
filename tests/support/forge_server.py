"""The forge's servers, run inside the wan namespace by tests/support/forge.py (not imported).

    python forge_server.py CONFIG.json

One threaded HTTP server per (address, port) in the config, TLS on 443; the Host header picks
the service: a PEP 503 index (pypi.test), git smart HTTP through `git http-backend` (git.test),
a static npm registry (npm.test), a sparse crates index (crates.test); `/whoami` on any name
answers which local address took the connection. A DNS responder (UDP and TCP) answers A
queries for the forge's names. Every request is counted per local address in the status file.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

CONF: dict[str, Any] = json.loads(Path(sys.argv[1]).read_text())
ROOT = Path(CONF["root"])
LOCK = threading.Lock()
STATUS: dict[str, Any] = {"by_addr": {}, "requests": [], "dns": []}


def save() -> None:
    path = Path(CONF["status"])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(STATUS))
    os.replace(tmp, path)


def note(key: str, value: Any, addr: str | None = None) -> None:
    with LOCK:
        if addr is not None:
            STATUS["by_addr"][addr] = STATUS["by_addr"].get(addr, 0) + 1
        STATUS[key].append(value)
        save()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def host(self) -> str:
        return self.headers.get("Host", "").split(":")[0].lower()

    def local(self) -> str:
        addr: str = self.connection.getsockname()[0]
        return addr.removeprefix("::ffff:")

    def reply(self, code: int, body: bytes, ctype: str = "text/plain",
              extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def file(self, path: Path, ctype: str) -> None:
        if path.is_file():
            self.reply(200, path.read_bytes(), ctype)
        else:
            self.reply(404, b"not found\n")

    def do_GET(self) -> None:
        self.route()

    def do_HEAD(self) -> None:
        self.route()

    def do_POST(self) -> None:
        self.route()

    def route(self) -> None:
        host, path = self.host(), self.path.split("?")[0]
        note("requests", {"addr": self.local(), "host": host, "method": self.command,
                          "path": self.path}, self.local())
        if path == "/whoami":
            self.reply(200, f"addr={self.local()} host={host}\n".encode())
        elif host == "pypi.test":
            self.pypi(path)
        elif host == "git.test":
            self.git()
        elif host == "npm.test":
            self.npm(path)
        elif host == "crates.test":
            self.crates(path)
        else:
            self.reply(404, f"no service for {host}\n".encode())

    def pypi(self, path: str) -> None:
        if path.startswith("/files/"):
            self.file(ROOT / "pypi" / path.removeprefix("/files/"), "application/octet-stream")
            return
        parts = [p for p in path.split("/") if p]
        if parts == ["simple"]:
            body = "".join(f'<a href="/simple/{n}/">{n}</a>\n' for n in CONF["pypi_projects"])
        elif len(parts) == 2 and parts[0] == "simple" and parts[1] in CONF["pypi_projects"]:
            body = "".join(f'<a href="/files/{w["file"]}#sha256={w["sha256"]}">{w["file"]}</a>\n'
                           for w in CONF["pypi_projects"][parts[1]])
        else:
            self.reply(404, b"not found\n")
            return
        self.reply(200, f"<!DOCTYPE html><html><body>\n{body}</body></html>\n".encode(),
                   "text/html")

    def npm(self, path: str) -> None:
        name = path.strip("/")
        if "/-/" in name:
            self.file(ROOT / "npm" / name.rsplit("/", 1)[1], "application/octet-stream")
        else:
            self.file(ROOT / "npm" / f"{name}.json", "application/json")

    def crates(self, path: str) -> None:
        if path.startswith("/index/"):
            self.file(ROOT / "crates" / "index" / path.removeprefix("/index/"),
                      "application/json")
        elif path.startswith("/api/v1/crates/") and path.endswith("/download"):
            name, version, _ = path.removeprefix("/api/v1/crates/").split("/")
            self.file(ROOT / "crates" / f"{name}-{version}.crate", "application/octet-stream")
        else:
            self.reply(404, b"not found\n")

    def git(self) -> None:
        """CGI: git http-backend with the request's body; its headers become ours."""
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self.read_chunked()
            length = len(body)
        else:
            body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(ROOT / "git"), "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command, "PATH_INFO": path, "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length), "REMOTE_ADDR": self.client_address[0],
            "REMOTE_USER": "tester", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(ROOT),
        }
        for name in ("Content-Encoding", "Git-Protocol"):
            if self.headers.get(name):
                env["HTTP_" + name.upper().replace("-", "_")] = self.headers[name]
        done = subprocess.run([CONF["http_backend"]], input=body, env=env,
                              capture_output=True, timeout=60, check=False)
        head, _, out = done.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, out = done.stdout.partition(b"\n\n")
        code, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            k, _, v = line.partition(":")
            if k.lower() == "status":
                code = int(v.split()[0])
            elif k:
                headers[k.strip()] = v.strip()
        ctype = headers.pop("Content-Type", "text/plain")
        self.reply(code, out, ctype, headers)

    def read_chunked(self) -> bytes:
        data = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                return data
            data += self.rfile.read(size)
            self.rfile.readline()


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    allow_reuse_port = True  # the wan's servers hold these ports on the wildcard address


def serve_http(addr: str, port: int) -> None:
    srv = Server((addr, port), Handler)
    if port == 443:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(CONF["cert"], CONF["key"])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()


def dns_answer(query: bytes) -> bytes:
    """A minimal authoritative answer: A records for the configured names, else NXDOMAIN."""
    (qid, _flags, qd) = struct.unpack("!HHH", query[:6])
    pos, labels = 12, []
    while query[pos]:
        n = query[pos]
        labels.append(query[pos + 1:pos + 1 + n].decode("ascii", "replace").lower())
        pos += 1 + n
    qtype, _qclass = struct.unpack("!HH", query[pos + 1:pos + 5])
    question = query[12:pos + 5]
    name = ".".join(labels)
    note("dns", {"name": name, "type": qtype})
    addrs = CONF["dns"].get(name)
    if addrs is None:
        return struct.pack("!HHHHHH", qid, 0x8583, qd, 0, 0, 0) + question  # NXDOMAIN, AA
    answers = b""
    if qtype == 1:
        for a in addrs:
            answers += struct.pack("!HHHIH", 0xC00C, 1, 1, 30, 4) + socket.inet_aton(a)
    count = len(addrs) if qtype == 1 else 0
    return struct.pack("!HHHHHH", qid, 0x8580, qd, count, 0, 0) + question + answers


def serve_dns(addr: str) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    udp.bind((addr, 53))

    def loop_udp() -> None:
        while True:
            data, peer = udp.recvfrom(4096)
            try:
                udp.sendto(dns_answer(data), peer)
            except (IndexError, struct.error):
                pass

    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    tcp.bind((addr, 53))
    tcp.listen()

    def one_tcp(conn: socket.socket) -> None:
        with conn:
            try:
                size = struct.unpack("!H", conn.recv(2))[0]
                data = b""
                while len(data) < size:
                    data += conn.recv(size - len(data)) or b"!"
                out = dns_answer(data)
                conn.sendall(struct.pack("!H", len(out)) + out)
            except (OSError, IndexError, struct.error):
                pass

    def loop_tcp() -> None:
        while True:
            conn, _ = tcp.accept()
            threading.Thread(target=one_tcp, args=(conn,), daemon=True).start()

    threading.Thread(target=loop_udp, daemon=True).start()
    threading.Thread(target=loop_tcp, daemon=True).start()


def main() -> None:
    for addr in CONF["http_addrs"]:
        for port in (80, 443):
            serve_http(addr, port)
    serve_dns(CONF["dns_addr"])
    save()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
