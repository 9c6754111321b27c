"""The access log on a really full filesystem (a 64 KiB tmpfs): lines stay whole, losses counted."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.access_log import AccessLog

pytestmark = pytest.mark.privileged


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("needs root to mount a 64 KiB tmpfs")
    mnt = tmp_path / "awf-tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "awf-test-tmpfs", str(mnt)],
                   check=True, timeout=10)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True, timeout=10)


def test_full_disk_keeps_whole_lines(tiny_fs: Path, capsys: pytest.CaptureFixture[str]):
    path = tiny_fs / "access.jsonl"
    log = AccessLog(path, stderr_summary=False)
    log.start()
    total = 5_000  # about 1 MB of lines for 64 KiB of space
    for i in range(total):
        log.record({"ts": "2026-11-23T18:20:01.123Z", "host": f"h{i}.example.test", "seq": i,
                    "pad": "x" * 150})
    log.close(timeout=10)
    data = path.read_bytes()
    assert data.endswith(b"\n")
    lines = [json.loads(line) for line in data.splitlines()]
    assert len(lines) > 100
    assert log.dropped > 0
    assert len(lines) + log.dropped == total
    assert [line["seq"] for line in lines] == sorted(line["seq"] for line in lines)
    assert capsys.readouterr().err.count("No space left on device") == 1
