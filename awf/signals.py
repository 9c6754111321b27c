"""SIGINT and SIGTERM as an exception, from `awf`'s first line to its last.

`main()` calls `catch()` before it imports anything else, so a signal at any instant becomes
`Interrupted` and the exit code is 128+N (docs/architecture.md §7), never death by the signal. The
first signal raises; from then on both are ignored, so the cleanup that the exception runs
through (finally blocks, `supervise`'s teardown) is never cut short. `supervise` installs its own
handler for the run's body and puts this one back afterwards.

A handler's exception can be lost: when the signal lands while Python runs a finalizer
(`__del__`, a weakref callback) or an at-fork hook, the exception is only printed ("Exception
ignored in ...") and the code around goes on, with the signals already ignored. So every signal
taken is also recorded, and `check()`, called where the run goes on (the start of `supervise`,
each turn of the wait for the command), raises it again until an `except` has acted on it
(`delivered()`).
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


_RECEIVED: list[int] = []  # every SIGINT/SIGTERM taken, in order
_DELIVERED: list[bool] = []  # non-empty once an Interrupted reached an `except` that acts on it


def note(signum: int) -> None:
    """Record a signal taken by a handler (this module's or `supervise`'s)."""
    _RECEIVED.append(signum)


def delivered() -> None:
    """An `except Interrupted` has acted on the signal: `check()` is quiet from now on."""
    _DELIVERED.append(True)


def check() -> None:
    """Raise Interrupted for a signal whose exception never reached awf's code (see above)."""
    if _RECEIVED and not _DELIVERED:
        raise Interrupted(_RECEIVED[0])


def _first_one(signum: int, frame: FrameType | None) -> None:
    ignore()
    note(signum)
    raise Interrupted(signum)


def catch() -> None:
    """The first SIGINT or SIGTERM raises Interrupted in the main thread."""
    for s in CAUGHT:
        signal.signal(s, _first_one)


def ignore() -> None:
    for s in CAUGHT:
        signal.signal(s, signal.SIG_IGN)
