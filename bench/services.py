"""Long-running processes of a bench run (origin, proxies): start, wait until ready, stop by PID.

Each service runs in its own session (process group = its PID) so that a stop can also reap
helpers it forked (nginx workers) without ever signalling a process the bench did not start.
Readiness is a line on the service's stderr (awf-proxy, squid -d1) or, for services that print
nothing, a TCP connect that succeeds; both are waited for under a deadline.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path


class ServiceError(RuntimeError):
    """A bench service that would not start or stop."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_tcp(
    port: int,
    deadline: float,
    proc: subprocess.Popen[bytes] | None = None,
    host: str = "127.0.0.1",
) -> None:
    """Poll host:port until a connect succeeds (or the process dies, or time runs out)."""
    delay = 0.005
    while True:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(
                f"process {proc.pid} exited with {proc.returncode} before port {port} opened"
            )
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise ServiceError(f"nothing listens on {host}:{port} after waiting") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def set_group_nice(pid: int, nice: int) -> None:
    """Give pid's session (its scheduler autogroup) this niceness.

    With kernel.sched_autogroup_enabled, CPU time is first shared between sessions, so a
    per-process nice only ranks processes inside one session; every bench process runs in its
    own session, and this sets that session's weight. Without autogroup the inherited
    per-process nice (set on the harness) is what counts.
    """
    if nice == 0:
        return
    try:
        Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n")
    except OSError:
        pass


def run_load(argv: Sequence[str], *, nice: int, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a load generator to completion in its own session; kill its group on timeout."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    set_group_nice(proc.pid, nice)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:  # timeout, or the harness is being stopped: take the load down too
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)  # not reaped yet: the group ID is still ours
        proc.communicate(timeout=10)
        raise
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


class Service:
    """One child process with its stderr+stdout copied to a log file by a reader thread."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        ready_pattern: str | None = None,
        ready_port: int | None = None,
        ready_host: str = "127.0.0.1",
        cwd: Path | None = None,
        nice: int = 0,
    ) -> None:
        self.name = name
        self.nice = nice
        self.argv = list(argv)
        self.log_path = log_path
        self._ready_re = re.compile(ready_pattern) if ready_pattern else None
        self._ready_port = ready_port
        self._ready_host = ready_host
        self._cwd = cwd
        self._ready = threading.Event()
        self._tail: deque[str] = deque(maxlen=40)
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.ready_line = ""

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise ServiceError(f"{self.name} was never started")
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def tail(self) -> str:
        return "".join(self._tail)

    def _read(self, stream: object) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        with self.log_path.open("ab") as log:
            for raw in self._proc.stdout:
                log.write(raw)
                log.flush()
                line = raw.decode("utf-8", "replace")
                self._tail.append(line)
                ready_re = self._ready_re
                if ready_re is not None and not self._ready.is_set() and ready_re.search(line):
                    self.ready_line = line.strip()
                    self._ready.set()

    def start(self, timeout: float = 30.0) -> None:
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self._cwd,
            start_new_session=True,
        )
        set_group_nice(self._proc.pid, self.nice)
        self._reader = threading.Thread(
            target=self._read, args=(self._proc.stdout,), name=f"{self.name}-log", daemon=True
        )
        self._reader.start()
        deadline = time.monotonic() + timeout
        try:
            if self._ready_re is not None:
                while not self._ready.wait(0.05):
                    if self._proc.poll() is not None:
                        self._reader.join(2.0)
                        raise ServiceError(
                            f"{self.name} exited with {self._proc.returncode} before it was ready; "
                            f"its output ends with:\n{self.tail()}"
                        )
                    if time.monotonic() > deadline:
                        raise ServiceError(
                            f"{self.name} printed no line matching {self._ready_re.pattern!r} "
                            f"within {timeout:g}s; its output ends with:\n{self.tail()}"
                        )
            if self._ready_port is not None:
                wait_tcp(self._ready_port, deadline, self._proc, self._ready_host)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the service's PID, wait, then SIGKILL its process group if anything is left."""
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            # Wait for exit without reaping (WNOWAIT): while the leader is a zombie its PID, and
            # so its process group ID, cannot be reused, which makes the killpg below safe.
            os.kill(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            delay = 0.005
            while time.monotonic() < deadline:
                info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                if info is not None:
                    break
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group we created
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait(10.0)
        if self._reader is not None:
            self._reader.join(5.0)
        return proc.returncode
