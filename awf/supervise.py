"""One run's life under SIGINT/SIGTERM, the same for both backends.

The body runs with SIGINT and SIGTERM raising `Interrupted` (the first one only); whatever
happens, the teardown runs with both signals ignored, so cleanup is never cut short, and the
caller's handlers are restored. The outcome's exit code follows ARCHITECTURE §4.1: the
command's own, 128+N after signal N reached awf, or the AwfError's code.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from awf.runlog import say
from proxy.errors import AwfError


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass(frozen=True, slots=True)
class Outcome:
    exit_code: int
    error: str | None  # the AwfError that ended the run, if one did
    interrupted: bool


def supervise(body: Callable[[], int], teardown: Callable[[bool], None]) -> Outcome:
    """Run `body`, then `teardown(interrupted)` on every path."""
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1:
            raise Interrupted(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    code: int | None = None
    error: str | None = None
    try:
        code = body()
    except Interrupted as exc:
        say(f"{signal.Signals(exc.signum).name}: stopping the command and cleaning up")
        code = 128 + exc.signum
    except AwfError as exc:
        error = str(exc)
        code = exc.exit_code
        say(f"error: {exc}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            teardown(bool(received))
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    if received and code is not None and code <= 128:
        code = 128 + received[0]  # a signal that arrived while the command was ending
    return Outcome(125 if code is None else code, error, bool(received))
