"""supervise(): exit codes for a normal end, an AwfError and a signal; teardown on every path."""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace
from typing import cast

import pytest

from awf import signals
from awf.config import RunConfig
from awf.run import supervise, wait_agent
from netfilter.errors import SandboxError


def test_the_commands_code_and_teardown() -> None:
    seen: list[bool] = []
    outcome = supervise(lambda: 42, seen.append)
    assert (outcome.exit_code, outcome.error, outcome.interrupted) == (42, None, False)
    assert seen == [False]


def test_an_awf_error_gives_its_code() -> None:
    def body() -> int:
        raise SandboxError("self-test failed")

    seen: list[bool] = []
    outcome = supervise(body, seen.append)
    assert (outcome.exit_code, outcome.error) == (125, "self-test failed")
    assert seen == [False]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_gives_128_plus_n_and_handlers_come_back(sig: int, code: int) -> None:
    before = signal.getsignal(sig)

    def body() -> int:
        os.kill(os.getpid(), sig)
        return 0  # not reached: the handler raises

    seen: list[bool] = []
    outcome = supervise(body, seen.append)
    assert (outcome.exit_code, outcome.interrupted) == (code, True)
    assert seen == [True]
    assert signal.getsignal(sig) is before


class _LosesTheSignal:
    """A finalizer during which the signal lands: Python prints the handler's exception
    ("Exception ignored in ...") and goes on, as it does for any exception in `__del__`."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10_000):  # the handler runs at one of these instructions
            pass


@pytest.fixture
def fresh_signal_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signals, "_RECEIVED", [])
    monkeypatch.setattr(signals, "_DELIVERED", [])


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the loss
@pytest.mark.usefixtures("fresh_signal_record")
def test_a_signal_lost_in_a_finalizer_before_the_run_still_stops_it() -> None:
    """awf's own handler (`catch`) raised inside a finalizer: the exception was printed and
    lost, the signals already ignored; the run must not go on as if nothing came."""
    before = {s: signal.getsignal(s) for s in signals.CAUGHT}
    try:
        signals.catch()
        _LosesTheSignal()  # made and freed at once: its __del__ runs here
        ran: list[bool] = []
        seen: list[bool] = []

        def body() -> int:
            ran.append(True)
            return 0

        outcome = supervise(body, seen.append)
    finally:
        for s, h in before.items():
            signal.signal(s, h)
    assert (outcome.exit_code, outcome.interrupted) == (130, True)
    assert ran == []  # the command never started
    assert seen == [True]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the loss
@pytest.mark.usefixtures("fresh_signal_record")
def test_a_signal_lost_in_a_finalizer_during_the_wait_stops_the_command() -> None:
    stopped: list[float] = []
    lost: list[bool] = []

    def agent(timeout: float) -> int | None:
        if not lost:
            lost.append(True)
            _LosesTheSignal()
        return None  # the command runs on: only the check can end the wait

    def body() -> int:
        return wait_agent(cast(RunConfig, SimpleNamespace(agent_timeout=None)), agent=agent,
                          proxy=lambda: None, stop=stopped.append)

    seen: list[bool] = []
    outcome = supervise(body, seen.append)
    assert (outcome.exit_code, outcome.interrupted) == (130, True)
    assert seen == [True]
