"""SIGINT and SIGTERM as an exception, from `awf`'s first line to its last.

`main()` calls `catch()` before it imports anything else, so a signal at any instant becomes
`Interrupted` and the exit code is 128+N (docs/architecture.md §7), never death by the signal. The
first signal raises; from then on both are ignored, so the cleanup that the exception runs
through (finally blocks, `supervise`'s teardown) is never cut short. `supervise` installs its own
handler for the run's body and puts this one back afterwards.
"""

from __future__ import annotations

import signal
from types import FrameType

CAUGHT = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A signal reached awf. A BaseException, like KeyboardInterrupt: `except Exception`
    never swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _first_one(signum: int, frame: FrameType | None) -> None:
    ignore()
    raise Interrupted(signum)


def catch() -> None:
    """The first SIGINT or SIGTERM raises Interrupted in the main thread."""
    for s in CAUGHT:
        signal.signal(s, _first_one)


def ignore() -> None:
    for s in CAUGHT:
        signal.signal(s, signal.SIG_IGN)
