"""`make demo`: local origins, awf-proxy with an allowlist, and what got through.

Everything stays on loopback: two origins (`allowed.demo.test`, `other.demo.test`) are served on
127.0.0.1 and named with `--resolve`; the proxy allows only the first. The demo prints each
request's outcome, the proxy's log lines for them, and where the log is.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path


class _Origin(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from {self.headers.get('Host', '?')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _start_origin() -> tuple[http.server.ThreadingHTTPServer, int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, srv.server_address[1]


def _fetch(proxy_port: int, url: str) -> tuple[int, str, str]:
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{proxy_port}"})
    )
    try:
        with opener.open(url, timeout=10) as resp:
            return resp.status, "", resp.read().decode().strip()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("X-Awf-Reason", ""), err.read().decode().strip()


def main() -> int:
    origin, port = _start_origin()
    logs = Path(tempfile.mkdtemp(prefix="awf-demo-logs-"))
    os.chmod(logs, 0o755)
    argv = [
        sys.executable, "-m", "proxy.main", "--listen", "127.0.0.1:0",
        "--allow-domains", "allowed.demo.test",
        "--resolve", "allowed.demo.test=127.0.0.1", "--resolve", "api.allowed.demo.test=127.0.0.1",
        "--resolve", "other.demo.test=127.0.0.1",
        "--allow-range", "127.0.0.1/32", "--allow-ports", str(port), "--log-dir", str(logs),
    ]
    print("[demo] awf-proxy --allow-domains allowed.demo.test (origins on 127.0.0.1, "
          f"port {port})", flush=True)
    proxy = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        line = proxy.stderr.readline() if proxy.stderr is not None else ""
        if not line.startswith("awf-proxy listening on "):
            print(f"[demo] awf-proxy did not start: {line}", file=sys.stderr)
            return 1
        proxy_port = int(line.rsplit(":", 1)[1])
        print(f"[demo] {line.strip()}")
        urls = [
            f"http://allowed.demo.test:{port}/",
            f"http://api.allowed.demo.test:{port}/",
            f"http://other.demo.test:{port}/",
            f"http://127.0.0.1:{port}/",
        ]
        print("\n[demo] requests through the proxy:")
        for url in urls:
            status, reason, body = _fetch(proxy_port, url)
            verdict = "ALLOWED" if status == 200 else "BLOCKED"
            detail = body if status == 200 else f"{status} {reason}"
            print(f"  {verdict:8} {url:45} {detail}")
    finally:
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(timeout=15)
        origin.shutdown()
    log = logs / "access.jsonl"
    print(f"\n[demo] the proxy's decisions ({log}):")
    for raw in log.read_text().splitlines():
        rec = json.loads(raw)
        print(f"  {rec['decision'].upper():5} {rec['method']} {rec['host']}:{rec['port']} "
              f"{rec['status']} {rec['reason'] or ''}")
    print(f"\n[demo] full log: {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
