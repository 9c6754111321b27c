"""Runs on the Docker engine, found by their io.awf.run label: which are dead, and removing one.

A run is dead when none of its objects names a live owner: an io.awf.owner-pid alive on this
host (io.awf.host). Objects a test made (io.awf.test) are never counted. Removal is forced and
idempotent: containers first, then networks, each kind in parallel.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from containers import labels
from containers.driver import ContainerInfo, DockerDriver, NetworkInfo
from proxy.errors import AwfError


def dead_runs(driver: DockerDriver) -> list[str]:
    """The ids of the runs on the engine whose owner process is gone (a killed awf)."""
    found = driver.list_by_label(labels.RUN)
    host = socket.gethostname()
    runs: dict[str, bool] = {}
    objects: list[ContainerInfo | NetworkInfo] = [*found.containers, *found.networks]
    for obj in objects:
        run = obj.label(labels.RUN)
        if run is None or obj.label(labels.TEST) is not None:
            continue
        pid = obj.label(labels.OWNER_PID)
        alive = obj.label(labels.HOST) == host and pid is not None and _alive(pid)
        runs[run] = runs.get(run, False) or alive
    return sorted(r for r, alive in runs.items() if not alive)


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def remove_run(driver: DockerDriver, run: str, *, containers: list[str] | None = None,
               networks: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Force-remove a run's containers, then its networks (those named and those the label
    finds). Returns (what it removed, the errors it met), so the caller decides what to say."""
    found = driver.list_by_label(labels.RUN, run)
    names = list(dict.fromkeys([*(containers or []), *(c.name for c in found.containers)]))
    nets = list(dict.fromkeys([*(networks or []), *(x.name for x in found.networks)]))
    errors: list[str] = []

    def attempt(func: Callable[[str], None], name: str) -> None:
        try:
            func(name)
        except AwfError as exc:
            errors.append(str(exc))

    with ThreadPoolExecutor(max(1, len(names))) as pool:
        list(pool.map(lambda c: attempt(driver.remove, c), names))
    with ThreadPoolExecutor(max(1, len(nets))) as pool:
        list(pool.map(lambda x: attempt(driver.remove_network, x), nets))
    return [f"container {c}" for c in names] + [f"network {x}" for x in nets], errors
