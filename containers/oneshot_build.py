"""Compile the one-shot-token LD_PRELOAD library (docs/architecture.md §9.4) with the host's cc.

The image build and `--agent-image` runs both call this, so the flags live in one place; the
warnings are errors so that a library that compiles is one that was reviewed warning-free.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

SOURCE = Path(__file__).parent / "agent" / "one_shot_token.c"
CFLAGS = ("-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror")
LIBS = ("-ldl", "-pthread")
TIMEOUT = 120  # seconds; the library compiles in well under one


def compile_one_shot(source: Path, out: Path, *, cc: str = "gcc") -> None:
    """Build the shared object `out` from `source`; RuntimeError (compiler's stderr tail) if not."""
    argv = [cc, *CFLAGS, "-o", str(out), str(source), *LIBS]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:  # no compiler, or a hung one
        raise RuntimeError(f"cannot compile {source}: {exc}") from exc
    if done.returncode != 0:
        tail = done.stderr.strip()[-800:] or f"{cc} exited with status {done.returncode}"
        raise RuntimeError(f"cannot compile {source}: {tail}")
