"""supervise(): exit codes for a normal end, an AwfError and a signal; teardown on every path."""

from __future__ import annotations

import os
import signal

import pytest

from awf.run import supervise
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
