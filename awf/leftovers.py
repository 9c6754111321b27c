"""What killed runs left behind, found by name (`awf-<run>` namespaces and veths, `awf_<run>`
nft tables, `/etc/netns/awf-<run>`), minus the runs whose owner is still alive.

A run records its owner in /run/awf/runs/<run>.pid while it lives; a run whose owner process is
gone is a leftover.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from awf.errors import AwfError
from netfilter import apply as nft
from netfilter import netns

RUNS = Path("/run/awf/runs")
ETC_NETNS = Path("/etc/netns")


@dataclass(frozen=True, slots=True)
class Leftover:
    kind: str  # netns | link | table | dir
    name: str
    run: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


def register(run: str) -> None:
    RUNS.mkdir(parents=True, exist_ok=True)
    (RUNS / f"{run}.pid").write_text(f"{os.getpid()}\n")


def unregister(run: str) -> None:
    (RUNS / f"{run}.pid").unlink(missing_ok=True)


def alive(run: str) -> bool:
    try:
        pid = int((RUNS / f"{run}.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def find() -> list[Leftover]:
    found: list[Leftover] = []
    names = netns.leftovers(netns.PREFIX)
    try:
        spaces = {n for n in os.listdir(netns.NETNS_DIR) if n.startswith(netns.PREFIX)}
    except FileNotFoundError:
        spaces = set()
    for name in names:
        if name in spaces:
            found.append(Leftover("netns", name, name[len(netns.PREFIX):]))
        else:
            run = name[len(netns.PREFIX):]
            found.append(Leftover("link", name, run[:-1] if run.endswith("h") else run))
    for table in nft.list_tables("awf_"):
        found.append(Leftover("table", table, table[len("awf_"):]))
    if ETC_NETNS.is_dir():
        for d in sorted(ETC_NETNS.glob(f"{netns.PREFIX}*")):
            found.append(Leftover("dir", str(d), d.name[len(netns.PREFIX):]))
    return [f for f in found if not alive(f.run)]


def remove(items: list[Leftover]) -> None:
    errors: list[str] = []
    for item in items:
        try:
            if item.kind == "netns":
                subprocess.run(["ip", "netns", "delete", item.name], capture_output=True,
                               timeout=10, check=False)
            elif item.kind == "link":
                subprocess.run(["ip", "link", "delete", item.name], capture_output=True,
                               timeout=10, check=False)
            elif item.kind == "table":
                nft.remove(item.name)
            elif item.kind == "dir":
                shutil.rmtree(item.name, ignore_errors=True)
            unregister(item.run)
        except (AwfError, OSError, subprocess.SubprocessError) as exc:
            errors.append(f"{item}: {exc}")
    if errors:
        raise AwfError("could not remove: " + "; ".join(errors))
