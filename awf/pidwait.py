"""Waiting for a child process to exit without polling: a pidfd becomes readable the moment the
process exits (the kernel's notice, not a sleep loop). `subprocess.Popen.wait(timeout)` sleeps in
growing steps up to 50 ms, so a command that ran for 60 ms was seen to exit up to 50 ms late,
on the path of every `awf run`; the proxy child's stop slept in 10 ms steps."""

from __future__ import annotations

import os
import select
import time


def exited(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for child `pid` to exit (it is then a zombie, not yet
    reaped: the caller reaps it); True if it has. Never sleeps past its exit. Where pidfds are
    missing (a kernel before 5.3), a short sleep loop does the same."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True  # already reaped
    except OSError:
        return _exited_slowly(pid, timeout)
    try:
        ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
        return bool(ready)
    finally:
        os.close(fd)


def _exited_slowly(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            waited = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        if waited is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
