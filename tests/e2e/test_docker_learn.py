"""`awf run --learn` end to end on the Docker backend: the scenario of
tests/privileged/test_netns_learn.py (learn, suggest, the suggestion as --config; the hard rules
hold in learn mode) in containers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.privileged.test_netns_learn import hard_rules_hold, learn_then_suggest
from tests.support import wan as wanmod

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


@pytest.fixture
def ws(wan: wanmod.Wan, tmp_path: Path) -> Path:
    work = tmp_path / "ws"
    work.mkdir()
    (work / "ca.pem").write_bytes(wan.ca_pem.read_bytes())
    for p in (tmp_path, work, work / "ca.pem"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return work


def test_learn_then_suggest_then_the_suggestion_lets_the_command_through(
        ws: Path, tmp_path: Path) -> None:
    learn_then_suggest(ws, tmp_path, "docker")


def test_learn_mode_keeps_the_hard_rules(ws: Path, tmp_path: Path, wan: wanmod.Wan) -> None:
    hard_rules_hold(ws, tmp_path, wan, "docker")
