"""containers/api_entry.py as a real process: its egress awf-proxy and awf-api-proxy start
together, `awf-api-proxy ready` comes once both are up, and a child that dies ends it with 125."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.api_proxy import write_keys

pytestmark = pytest.mark.timeout(60)


def start(tmp_path: Path) -> subprocess.Popen[str]:
    keys = write_keys(tmp_path / "keys", {"OPENAI_API_KEY": "sk-entry-REAL-1"})
    spec = {"egress_listen": "127.0.0.1:0",
            "egress": ["--allow-domains", "api.openai.com", "--log-dir", str(tmp_path / "l")],
            "sidecar": ["--listen-host", "127.0.0.1", "--port-base", "0", "--keys-file",
                        str(keys), "--log-dir", str(tmp_path / "l")],
            "lease": None}
    return subprocess.Popen([sys.executable, "-m", "containers.api_entry", json.dumps(spec)],
                            stderr=subprocess.PIPE, text=True)


def lines_until(proc: subprocess.Popen[str], want: str) -> list[str]:
    assert proc.stderr is not None
    out = []
    for line in proc.stderr:
        out.append(line.rstrip("\n"))
        if line.startswith(want):
            return out
    raise AssertionError(f"no {want!r} in {out}")


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_ready_once_both_listen_and_sigterm_exits_0(tmp_path: Path) -> None:
    proc = start(tmp_path)
    try:
        lines = lines_until(proc, "awf-api-proxy ready")
        assert any(ln.startswith("api-egress: awf-proxy listening on 127.0.0.1:")
                   for ln in lines)
        assert sum(ln.startswith("awf-api-proxy listening on") for ln in lines) == 4
        assert lines.count("awf-api-proxy ready") == 1
        assert len(children(proc.pid)) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert "sk-entry-REAL-1" not in "\n".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("which", [0, 1])
def test_a_child_that_dies_ends_it_with_125(tmp_path: Path, which: int) -> None:
    proc = start(tmp_path)
    try:
        lines_until(proc, "awf-api-proxy ready")
        kids = children(proc.pid)
        os.kill(kids[which], signal.SIGKILL)
        t0 = time.monotonic()
        assert proc.wait(15) == 125
        assert time.monotonic() - t0 < 5
        assert proc.stderr is not None
        assert "awf-api-proxy failed:" in proc.stderr.read()
        time.sleep(0.2)
        for kid in kids:  # the other one was stopped too
            assert not Path(f"/proc/{kid}").exists() or "Z" in Path(
                f"/proc/{kid}/stat").read_text().split()[2]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
