"""CPU time and RSS of a process tree from /proc, so the bench charges a proxy for all its work.

/proc/<pid>/stat: field 2 (comm) is in parentheses and may itself contain spaces and ')', so the
fields after it are split from the *last* ')'. Numbering below follows proc(5), 1-based:
4 ppid, 14 utime, 15 stime, 16 cutime, 17 cstime (clock ticks), 24 rss (pages).
utime/stime of a thread-group leader already include every thread of the process; cutime/cstime
add children that exited and were reaped during the window (helpers that come and go).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class ProcStatError(ValueError):
    """A /proc/<pid>/stat line that does not have the documented shape."""


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    comm: str
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int
    rss_pages: int

    @property
    def cpu_ticks(self) -> int:
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(text: str) -> ProcStat:
    """Parse the one line of /proc/<pid>/stat."""
    open_paren = text.find("(")
    close_paren = text.rfind(")")
    if open_paren < 1 or close_paren < open_paren:
        raise ProcStatError(f"no '(comm)' in /proc stat line {text[:80]!r}")
    try:
        pid = int(text[:open_paren].strip())
        rest = text[close_paren + 1 :].split()
        # rest[0] is field 3 (state): field n is rest[n - 3]
        return ProcStat(
            pid=pid,
            comm=text[open_paren + 1 : close_paren],
            ppid=int(rest[4 - 3]),
            utime=int(rest[14 - 3]),
            stime=int(rest[15 - 3]),
            cutime=int(rest[16 - 3]),
            cstime=int(rest[17 - 3]),
            rss_pages=int(rest[24 - 3]),
        )
    except (ValueError, IndexError) as exc:
        raise ProcStatError(f"malformed /proc stat line {text[:80]!r}: {exc}") from None


def descendants(root: int, parents: dict[int, int]) -> list[int]:
    """root and every pid below it, given a pid -> ppid map (pure; cycles cannot loop)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    seen = {root}
    order = [root]
    i = 0
    while i < len(order):
        for child in children.get(order[i], ()):
            if child not in seen:
                seen.add(child)
                order.append(child)
        i += 1
    return order


@dataclass(frozen=True, slots=True)
class TreeSample:
    """One reading of a process tree: CPU seconds (user+system, reaped children included)."""

    pids: tuple[int, ...]
    cpu_s: float
    rss_bytes: int
    fds: int


def _read_stat(pid: int) -> ProcStat | None:
    try:
        return parse_stat(Path(f"/proc/{pid}/stat").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return None


def sample_tree(root: int) -> TreeSample:
    """Read CPU, RSS and open fds of root and its descendants now."""
    stats: dict[int, ProcStat] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _read_stat(int(entry.name))
            if st is not None:
                stats[st.pid] = st
    if root not in stats:
        raise ProcessLookupError(f"process {root} is gone; did the proxy exit?")
    pids = descendants(root, {pid: st.ppid for pid, st in stats.items()})
    ticks = sum(stats[p].cpu_ticks for p in pids if p in stats)
    rss = sum(stats[p].rss_pages for p in pids if p in stats) * PAGE_SIZE
    fds = 0
    for p in pids:
        try:
            fds += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return TreeSample(pids=tuple(pids), cpu_s=ticks / CLK_TCK, rss_bytes=rss, fds=fds)


def parse_cpu_times(text: str) -> dict[int, tuple[int, int]]:
    """Per-CPU (busy, total) clock ticks from the text of /proc/stat (pure).

    Columns after `cpuN`: user nice system idle iowait irq softirq steal [guest guest_nice];
    guest time is already inside user/nice, so total = the first 8. busy = user + nice +
    system + steal: time that processes (or the hypervisor) took. irq/softirq are left out
    because loopback traffic of the bench itself is processed there, not charged to any task.
    """
    out: dict[int, tuple[int, int]] = {}
    for line in text.splitlines():
        if not line.startswith("cpu") or len(line) < 4 or not line[3].isdigit():
            continue
        name, *cols = line.split()
        try:
            values = [int(c) for c in cols[:8]]
            cpu = int(name[3:])
        except ValueError:
            raise ProcStatError(f"malformed /proc/stat line {line[:80]!r}") from None
        if len(values) < 8:
            raise ProcStatError(f"short /proc/stat line {line[:80]!r}")
        user, nice, system, _idle, _iowait, _irq, _softirq, steal = values
        out[cpu] = (user + nice + system + steal, sum(values))
    return out


def busy_percent(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]
) -> dict[int, float]:
    """How busy each CPU was (all processes) between two parse_cpu_times readings."""
    out: dict[int, float] = {}
    for cpu, (busy1, total1) in after.items():
        if cpu in before:
            busy0, total0 = before[cpu]
            dt = total1 - total0
            out[cpu] = 100.0 * (busy1 - busy0) / dt if dt > 0 else 0.0
    return out


def read_cpu_times() -> dict[int, tuple[int, int]]:
    return parse_cpu_times(Path("/proc/stat").read_text())
