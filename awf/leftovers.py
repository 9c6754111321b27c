"""What awf runs have on this host, found by name (`awf-<run>` namespaces and veths,
`awf_<run>` nft tables, `/etc/netns/awf-<run>`) and, when the engine is reachable, the Docker
backend's containers and networks by their io.awf.run label; each marked live or not.

A netns run records its owner in /run/awf/runs/<run>.pid while it lives; a Docker run's objects
carry io.awf.owner-pid and io.awf.host. A run whose owner process is gone is a leftover; a live
one is `awf cleanup`'s to remove only with --force.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from netfilter import apply as nft
from netfilter import netns
from proxy.errors import AwfError

RUNS = Path("/run/awf/runs")
ETC_NETNS = Path("/etc/netns")


@dataclass(frozen=True, slots=True)
class Leftover:
    kind: str  # netns | link | table | dir | keys | ca | container | network
    name: str
    run: str
    live: bool = False  # its run's owner process is alive

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


def docker_find() -> list[Leftover]:
    """The Docker backend's objects: containers first, then networks. Nothing (and no error)
    when no engine is reachable; test objects (io.awf.test) are never included."""
    if not os.path.exists("/var/run/docker.sock") and not os.environ.get("DOCKER_HOST"):
        return []
    try:
        from containers import labels
        from containers.driver import DockerDriver
        from containers.runs import dead_runs

        driver = DockerDriver.from_env(timeout=10)
    except (AwfError, ImportError):
        return []
    try:
        found = driver.list_by_label(labels.RUN)
        dead = set(dead_runs(driver))
    finally:
        driver.close()
    out: list[Leftover] = []
    for kind, objects in (("container", found.containers), ("network", found.networks)):
        for obj in objects:
            run = obj.label(labels.RUN) or ""
            if obj.label(labels.TEST) is not None:
                continue
            out.append(Leftover(kind, obj.name, run, live=run not in dead))
    return out


def find() -> list[Leftover]:
    """Every awf object on this host, live runs' too (see `Leftover.live`)."""
    found: list[Leftover] = docker_find()
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
    found = [f if f.kind in ("container", "network") else
             Leftover(f.kind, f.name, f.run, live=alive(f.run)) for f in found]
    from awf import apisidecar  # the API proxy sidecar's keys: live while their owner pid is

    dead = set(apisidecar.dead_keys())
    found += [Leftover("keys", str(apisidecar.keys_dir(run)), run, live=run not in dead)
              for run in apisidecar.dead_keys(everything=True)]
    from awf import bump  # --ssl-bump's CA: live while its owner pid is

    dead = set(bump.dead())
    return found + [Leftover("ca", str(bump.directory(run)), run, live=run not in dead)
                    for run in bump.dead(everything=True)]


def remove(items: list[Leftover]) -> None:
    errors: list[str] = []
    docker_items = [i for i in items if i.kind in ("container", "network")]
    if docker_items:
        try:
            from containers.driver import DockerDriver

            driver = DockerDriver.from_env(timeout=30)
            try:
                for item in docker_items:  # containers come first in find()'s order
                    try:
                        if item.kind == "container":
                            driver.remove(item.name)
                        else:
                            driver.remove_network(item.name)
                    except AwfError as exc:
                        errors.append(f"{item}: {exc}")
            finally:
                driver.close()
        except AwfError as exc:
            errors.append(f"Docker: {exc}")
    for item in items:
        if item.kind in ("container", "network"):
            continue
        try:
            if item.kind in ("netns", "link"):
                netns.remove_leftover(item.name)
            elif item.kind == "table":
                nft.remove(item.name)
            elif item.kind == "dir":
                shutil.rmtree(item.name, ignore_errors=True)
            elif item.kind == "keys":
                from awf import apisidecar

                apisidecar.wipe_keys(item.run)
            elif item.kind == "ca":
                from awf import bump

                bump.wipe(item.run)
            unregister(item.run)
        except (AwfError, OSError) as exc:
            errors.append(f"{item}: {exc}")
    if errors:
        raise AwfError("could not remove: " + "; ".join(errors))
