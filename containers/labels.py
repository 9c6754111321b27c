"""Docker labels awf puts on everything it creates, so a crash can be cleaned up by label.

Every container, network and image carries `io.awf.*` labels; `awf cleanup` and the reaping of
dead owners' runs find leftovers with them, never by name alone.
"""

from __future__ import annotations

from enum import StrEnum

PREFIX = "io.awf."

RUN = PREFIX + "run"  # the run id, 8 hex digits
ROLE = PREFIX + "role"  # a Role
OWNER_PID = PREFIX + "owner-pid"  # pid of the awf process that owns the run
HOST = PREFIX + "host"  # hostname of the owner, so a pid is only trusted on its own host
STARTED = PREFIX + "started"  # unix time the run started
WORK_DIR = PREFIX + "work-dir"
LOGS_DIR = PREFIX + "logs-dir"
VERSION = PREFIX + "version"  # awf version that created the object
IMAGE = PREFIX + "image"  # "1" on every image awf builds (and their build intermediates)
TEST = PREFIX + "test"  # objects a test created; the test removes them


class Role(StrEnum):
    PROXY = "proxy"
    NET = "net"  # the netns keeper
    AGENT = "agent"
    API = "api"  # the API proxy sidecar
    GUARD = "guard"
    SIBLING = "sibling"  # a container the command made through the guard
    NETWORK_INT = "network-int"
    NETWORK_EXT = "network-ext"


def run_labels(
    run: str,
    role: Role,
    *,
    owner_pid: int,
    host: str,
    started: int,
    version: str,
    work_dir: str | None = None,
    logs_dir: str | None = None,
) -> tuple[tuple[str, str], ...]:
    """The labels of one object of run `run`, as the pairs a ContainerSpec takes."""
    pairs = [
        (RUN, run),
        (ROLE, role.value),
        (OWNER_PID, str(owner_pid)),
        (HOST, host),
        (STARTED, str(started)),
        (VERSION, version),
    ]
    if work_dir is not None:
        pairs.append((WORK_DIR, work_dir))
    if logs_dir is not None:
        pairs.append((LOGS_DIR, logs_dir))
    return tuple(pairs)
