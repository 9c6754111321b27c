"""What a run leaves its user: `[awf]` messages, run.json, readable logs and the summary.

Shared by both backends. Logs are kept after the run, mode 0644 in a 0755 directory, owned by the
sudo caller, so reading them never needs sudo (finding L4).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from netfilter.selftest import NAME as SELFTEST_NAME


def say(msg: str) -> None:
    print(f"[awf] {msg}", file=sys.stderr, flush=True)


def caller() -> tuple[int, int] | None:
    """The sudo caller (uid, gid), or None when awf runs as a plain user or root."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if uid and gid and uid.isdigit() and gid.isdigit() and int(uid) != 0:
        return int(uid), int(gid)
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    return None


def logs_dir(chosen: Path | None, run: str) -> Path:
    """--proxy-logs-dir, or $TMPDIR/awf-logs-<run>; kept after the run."""
    logs = chosen or Path(tempfile.gettempdir()) / f"awf-logs-{run}"
    logs.mkdir(parents=True, exist_ok=True)
    os.chmod(logs, 0o755)
    return logs


def finish_logs(logs: Path) -> None:
    """Files 0644, the directory 0755, owned by the invoking user."""
    who = caller()
    owner = who if who is not None else (0, 0)
    for p in [logs, *logs.iterdir()] if logs.is_dir() else []:
        try:
            if os.geteuid() == 0:
                os.chown(p, *owner)
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        except OSError:
            pass


def write_run_json(logs: Path, doc: Mapping[str, object]) -> None:
    (logs / "run.json").write_text(json.dumps(doc, indent=1) + "\n")
    finish_logs(logs)


def summary_lines(access_log: Path) -> list[str]:
    """`N requests: A allowed, D denied`, then one line per denied host:port (the self-test's
    own probes are left out)."""
    allowed = denied = 0
    denials: dict[str, str] = {}
    if access_log.exists():
        for raw in access_log.read_text().splitlines():
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if rec.get("host") == SELFTEST_NAME:
                continue
            if rec.get("decision") == "allow":
                allowed += 1
            else:
                denied += 1
                denials[f"{rec.get('host') or '?'}:{rec.get('port')}"] = str(rec.get("reason"))
    total = allowed + denied
    lines = [f"{total} request{'s' if total != 1 else ''}: {allowed} allowed, {denied} denied"]
    lines += [f"  denied {target} ({reason})" for target, reason in sorted(denials.items())]
    return lines


def print_summary(logs: Path) -> None:
    first, *rest = summary_lines(logs / "access.jsonl")
    say(f"{first} · logs: {logs}")
    for line in rest:
        say(line)
