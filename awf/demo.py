"""`make demo`: a real `awf run` against local origins, and what got through.

The images are built the first time (with progress). Two names, `allowed.demo.test` and
`other.demo.test`, point with `--resolve` at a small HTTP origin this demo serves on the host;
only the first is allowed. Inside the sandbox a script tries the allowed name, a subdomain, a
name not allowed, an IP literal and a few ways around the proxy, and prints one line each.
Nothing leaves the machine.
"""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path


class _Origin(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from {self.headers.get('Host', '?').split(':')[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _host_address() -> str:
    """This host's own address on its default route: the proxy container reaches it through
    its egress bridge like any origin."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent; this only picks the source address
        return str(s.getsockname()[0])


SCRIPT = r"""
try() {  # label, expectation, command...
  label=$1; shift
  out=$("$@" 2>&1); rc=$?
  if [ $rc -eq 0 ] && ! grep -q "^403$" <<<"$out"; then verdict=ALLOWED; else verdict=BLOCKED; fi
  printf '  %-8s %-46s %s\n' "$verdict" "$label" "$(head -c 60 <<<"$out" | head -1)"
}
C="curl -sS -m 5"
try "http://allowed.demo.test:$PORT/" $C "http://allowed.demo.test:$PORT/"
try "http://api.allowed.demo.test:$PORT/" $C "http://api.allowed.demo.test:$PORT/"
try "http://other.demo.test:$PORT/" $C -f "http://other.demo.test:$PORT/"
try "http://$HOSTIP:$PORT/ (IP literal)" $C -f "http://$HOSTIP:$PORT/"
try "other.demo.test, ignoring HTTP_PROXY" $C -f --noproxy '*' "http://other.demo.test:$PORT/"
try "TCP to $HOSTIP:22 (ssh)" nc -z -w 3 "$HOSTIP" 22
try "DNS to 192.0.2.53 instead of the proxy" dig +short +time=2 +tries=1 @192.0.2.53 example.com
try "nft flush ruleset (as the command)" nft flush ruleset
"""


def main() -> int:
    host = _host_address()
    origin = http.server.ThreadingHTTPServer(("0.0.0.0", 0), _Origin)
    port = origin.server_address[1]
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    logs = Path(tempfile.mkdtemp(prefix="awf-demo-logs-"))
    argv = [
        sys.executable, "-m", "awf.cli", "run",
        "--allow-domains", "allowed.demo.test",
        "--resolve", f"allowed.demo.test={host}", "--resolve", f"api.allowed.demo.test={host}",
        "--resolve", f"other.demo.test={host}",
        "--allow-range", f"{host}/32", "--allow-ports", str(port),
        "--proxy-logs-dir", str(logs),
        "-e", f"PORT={port}", "-e", f"HOSTIP={host}",
        "--", "bash", "-c", SCRIPT,
    ]
    print(f"[demo] origin on {host}:{port}; awf run --allow-domains allowed.demo.test "
          "(first run builds the images)\n", flush=True)
    try:
        done = subprocess.run(argv, timeout=1800, check=False)
    finally:
        origin.shutdown()
    log = logs / "access.jsonl"
    print(f"\n[demo] the proxy's decisions ({log}):")
    if log.exists():
        for raw in log.read_text().splitlines():
            rec = json.loads(raw)
            if rec.get("host") == "awf-selftest.invalid":
                continue
            print(f"  {str(rec.get('decision')).upper():5} {rec.get('method')} "
                  f"{rec.get('host')}:{rec.get('port')} {rec.get('status')} "
                  f"{rec.get('reason') or ''}")
    drops = logs / "l3-drops.json"
    if drops.exists():
        print(f"[demo] refused at the firewall, not the proxy: {drops}")
    print(f"[demo] awf exited with {done.returncode}; logs: {logs}")
    return 0 if done.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
