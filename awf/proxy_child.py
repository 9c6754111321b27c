"""awf-proxy as a forked child of awf, for fast starts.

A fresh interpreter spends a few hundred milliseconds starting and importing uvloop, dnspython
and the proxy before it can listen. awf forks a child right after parsing its flags, before it
makes any thread; the child imports the proxy on the other core while awf builds the namespace,
then waits on a pipe for its argv (the listen addresses exist only once the namespace is made).
The child dies with awf (PR_SET_PDEATHSIG) and writes its stderr, where the readiness lines are,
to a pipe awf reads for the child's whole life: first for readiness, then by a thread that copies
it into the run's proxy.log, so a chatty proxy (--log-level debug) never blocks on a full pipe.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import json
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from awf import pidwait
from netfilter.errors import SandboxError

PR_SET_PDEATHSIG = 1


class ProxyChild:
    def __init__(self, pid: int, go_fd: int, err_fd: int) -> None:
        self.pid = pid
        self._go = go_fd
        self.stderr_fd = err_fd
        self.returncode: int | None = None
        self._log: BinaryIO | None = None
        self._drainer: threading.Thread | None = None
        self.last_lines: collections.deque[str] = collections.deque(maxlen=20)  # its last words

    @classmethod
    def fork(cls) -> ProxyChild:
        go_r, go_w = os.pipe()
        err_r, err_w = os.pipe()
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 70
            try:
                os.close(go_w)
                os.close(err_r)
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
                if os.getppid() != parent:
                    os._exit(0)
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                devnull = os.open(os.devnull, os.O_RDWR)
                os.dup2(devnull, 0)
                os.dup2(devnull, 1)
                os.dup2(err_w, 2)
                os.close(err_w)
                import proxy.dnsfwd
                import proxy.main
                import proxy.transparent

                chunks = []
                while chunk := os.read(go_r, 65536):
                    chunks.append(chunk)
                os.close(go_r)
                # no argv: awf gave up before launching us
                code = proxy.main.main(json.loads(b"".join(chunks))) if chunks else 0
            except BaseException:
                traceback.print_exc()
            finally:
                try:
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        os.close(go_r)
        os.close(err_w)
        return cls(pid, go_w, err_r)

    def launch(self, argv: list[str]) -> None:
        data = json.dumps(argv).encode()
        view = memoryview(data)
        while view:
            n = os.write(self._go, view)
            view = view[n:]
        self._close_go()

    def wait_ready(self, ready: Callable[[list[str]], bool], timeout: float, log: Path) -> None:
        """Read the child's stderr until `ready(lines so far)`: readiness from the proxy's own
        lines, never a fixed sleep. SandboxError if it exits first or `timeout` passes. All it
        writes, then and until it exits, is copied to `log`."""
        fd = self.stderr_fd
        self._log = out = open(log, "ab")  # noqa: SIM115 (stop() closes it)
        seen: list[str] = []
        buf = b""
        writing = True
        deadline = time.monotonic() + timeout
        while not ready(seen):
            left = deadline - time.monotonic()
            if left <= 0:
                raise SandboxError(f"awf-proxy did not start within {timeout:g} s; "
                                   f"its last lines: {' | '.join(seen[-5:])}")
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self.wait(5)
                raise SandboxError(f"awf-proxy exited with status {self.returncode} before it "
                                   f"was ready: {' | '.join(seen[-5:]) or 'no output'}")
            if writing:
                try:
                    out.write(chunk)
                    out.flush()
                except OSError:
                    writing = False  # the logs disk is full: readiness must not depend on it
            buf += chunk
            *lines, buf = buf.split(b"\n")
            seen += [raw.decode(errors="replace") for raw in lines]
        self._drainer = threading.Thread(target=self._drain, args=(out,), name="awf-proxy-stderr",
                                         daemon=True)
        self._drainer.start()

    def _drain(self, out: BinaryIO) -> None:
        """Until the child exits: its stderr to `out` (while the disk takes it; reading never
        stops, so the child never blocks) and its last lines to `last_lines`."""
        buf = b""
        writing = True
        try:
            while chunk := os.read(self.stderr_fd, 65536):
                if writing:
                    try:
                        out.write(chunk)
                        out.flush()
                    except (OSError, ValueError):
                        writing = False  # e.g. the logs disk is full: keep reading anyway
                buf += chunk
                *lines, buf = buf.split(b"\n")
                self.last_lines.extend(raw.decode(errors="replace") for raw in lines)
                buf = buf[-65536:]
        except OSError:
            pass  # the pipe closed under us: stop() is ending the run

    def _close_go(self) -> None:
        if self._go >= 0:
            os.close(self._go)
            self._go = -1

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> int | None:
        if self.poll() is None and pidwait.exited(self.pid, timeout):
            self.poll()
        return self.returncode

    def signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, grace: float) -> None:
        """SIGTERM (the proxy drains and flushes its log), then SIGKILL after `grace`."""
        self._close_go()  # a child still waiting for its argv exits at once
        if self.poll() is not None:
            return
        self.signal(signal.SIGTERM)
        if self.wait(grace) is None:
            self.signal(signal.SIGKILL)
            self.wait(5)
        if self._drainer is not None:
            self._drainer.join(5)  # the child is gone: its pipe ends
        try:
            os.close(self.stderr_fd)
        except OSError:
            pass
        if self._log is not None:
            with contextlib.suppress(OSError):  # a full disk fails the last flush
                self._log.close()
