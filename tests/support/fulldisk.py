"""A logs disk that fills up during a run: room for awf's start-up check, none for the records.

awf refuses a logs directory with less than 1 MiB free before it makes anything (a full disk is
one line, never a traceback at the end). To see what happens when the disk fills DURING a run,
the tmpfs starts with room, and a filler takes all of it as soon as the run's access.jsonl
exists: the proxy opened its log, the command has not started yet.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def disk_that_fills(where: Path, *, size: str = "2m", wait: float = 180.0) -> Iterator[Path]:
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "awf-test-tmpfs", str(where)],
                   check=True, timeout=10)
    stop = threading.Event()

    def fill() -> None:
        deadline = time.monotonic() + wait
        while not stop.is_set() and time.monotonic() < deadline:
            if any(where.rglob("access.jsonl")):
                with contextlib.suppress(OSError), open(where / "filler", "wb") as f:
                    while True:  # until ENOSPC
                        f.write(b"\0" * 4096)
                        f.flush()
                return
            time.sleep(0.01)

    filler = threading.Thread(target=fill, name="disk-filler", daemon=True)
    filler.start()
    try:
        yield where
    finally:
        stop.set()
        filler.join(10)
        subprocess.run(["umount", str(where)], check=True, timeout=10)
