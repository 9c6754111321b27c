"""The API sidecar's supervisor: its own egress awf-proxy, then awf-api-proxy (both backends).

    python -m containers.api_entry SPEC_JSON

SPEC_JSON: {"egress_listen": "127.0.0.1:3130" (or port 0: a free one), "egress": [awf-proxy
flags besides --listen: the targets alone as --allow-domains], "sidecar": [awf-api-proxy flags
besides --egress-proxy], "lease": path or null}.

1. `awf-proxy --listen <egress_listen> ...` and `awf-api-proxy ... --egress-proxy
   http://<egress_listen>` start together (port 0: a free loopback port is picked first). The
   egress address is a loopback one: nothing outside this network namespace reaches it.
2. Once the egress proxy printed `awf-proxy listening on` and the sidecar `awf-api-proxy ready`
   (held back until then), we print `awf-api-proxy ready`: what awf waits for.
3. Both children's stderr lines go to ours (the egress proxy's prefixed `api-egress: `).
   When either child exits, the other gets SIGTERM, `awf-api-proxy failed: ...` is printed and
   we exit 125 (awf then stops the command: fail closed). SIGTERM/SIGINT: both get SIGTERM,
   then SIGKILL after 5 s; exit 0.

No key passes through here: the sidecar reads its keys file itself, and the children get a
minimal environment (PATH, LANG), never ours.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

FAILED = "awf-api-proxy failed:"
READY = "awf-api-proxy ready"
EGRESS_LISTENING = "awf-proxy listening on "
EGRESS_PREFIX = "api-egress: "
START_TIMEOUT = 30.0
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}


def _spawn(module: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", module, *argv], env=_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=_die_with_parent,
                            close_fds=True)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Child:
    """A child whose stderr lines are relayed; `wait_for(prefix)` returns the first such line."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], prefix: str = "",
                 hold: str | None = None) -> None:
        self.name, self.proc, self.prefix, self.hold = name, proc, prefix, hold
        self.lines: list[str] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._relay, name=f"relay-{name}", daemon=True).start()

    def _relay(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            if line != self.hold:
                _say(self.prefix + line)
            with self.cond:
                self.lines.append(line)
                del self.lines[:-50]
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, prefix: str, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return None
                self.cond.wait(min(left, 0.2))

    def stop(self, grace: float) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _watch_lease(path: object) -> None:
    if isinstance(path, str) and path:
        from containers.proxy_entry import watch_lease

        watch_lease(path)


def run(spec: dict[str, object]) -> int:
    egress_flags, sidecar_flags = spec.get("egress"), spec.get("sidecar")
    if not isinstance(egress_flags, list) or not isinstance(sidecar_flags, list):
        raise ValueError("the spec needs 'egress' and 'sidecar' lists")
    _watch_lease(spec.get("lease"))
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host, _, port = str(spec.get("egress_listen") or "127.0.0.1:0").rpartition(":")
    if int(port) == 0:
        port = str(_free_port(host))
    egress = Child("awf-proxy", _spawn("proxy.main", ["--listen", f"{host}:{port}",
                                                      *map(str, egress_flags)]), EGRESS_PREFIX)
    sidecar = Child("awf-api-proxy", _spawn("proxy.api.main", [
        *map(str, sidecar_flags), "--egress-proxy", f"http://{host}:{port}"]), hold=READY)
    children = [egress, sidecar]
    try:
        deadline = time.monotonic() + START_TIMEOUT
        for child, line in ((egress, EGRESS_LISTENING), (sidecar, READY)):
            if child.wait_for(line, max(deadline - time.monotonic(), 0)) is None:
                time.sleep(0.1)  # let its last lines through
                _say(f"{FAILED} {child.name} did not start (status {child.proc.poll()})")
                return 125
        _say(READY)
        while not stopping.is_set():
            for child in children:
                status = child.proc.poll()
                if status is not None:
                    time.sleep(0.1)  # let its last lines through
                    _say(f"{FAILED} {child.name} exited with status {status}")
                    return 125
            stopping.wait(0.2)
        return 0
    finally:
        for child in reversed(children):
            child.stop(5)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(args) != 1:
            raise ValueError("usage: python -m containers.api_entry SPEC_JSON")
        spec = json.loads(args[0])
        if not isinstance(spec, dict):
            raise ValueError("SPEC_JSON must be an object")
        return run(spec)
    except (ValueError, OSError) as exc:
        _say(f"{FAILED} {exc}")
        return 125


if __name__ == "__main__":
    sys.exit(main())
