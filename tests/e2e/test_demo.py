"""`make demo`, as a user runs it: `python -m awf.demo` builds what it needs, runs `awf run`
against its own origin and shows what got through and what was blocked, and where the log is."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.needs import need_docker, need_root

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def test_the_demo_shows_the_allowed_the_blocked_and_the_log() -> None:
    need_docker()
    need_root()
    done = subprocess.run([sys.executable, "-m", "awf.demo"], capture_output=True, text=True,
                          timeout=840, check=False)
    out = done.stdout + done.stderr
    found = re.search(r"\[demo\] awf exited with 0; logs: (\S+)", out)
    assert done.returncode == 0, out
    assert found, out
    logs = Path(found.group(1))
    try:
        verdicts = re.findall(r"^[ ]+(ALLOWED|BLOCKED)[ ]+(.+?)(?:[ ]{2,}|$)", out, re.M)
        allowed = [what for verdict, what in verdicts if verdict == "ALLOWED"]
        blocked = [what for verdict, what in verdicts if verdict == "BLOCKED"]
        assert [re.sub(r":\d+/$", "", a) for a in allowed] == [
            "http://allowed.demo.test", "http://api.allowed.demo.test"], out
        assert len(blocked) == 6, out  # other name, IP literal, no proxy, ssh, DNS, nft
        assert any("other.demo.test" in b for b in blocked), out
        records = (logs / "access.jsonl").read_text()
        assert '"reason":"domain_not_allowed"' in records.replace(" ", "")
        assert (logs / "run.json").is_file()
    finally:
        shutil.rmtree(logs, ignore_errors=True)
