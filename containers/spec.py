"""Frozen descriptions of the containers awf creates, checked before Docker sees them.

The orchestrator builds a ContainerSpec (pure data, easy to compare in tests) and hands it to
DockerDriver.create_container, which is the only place that turns it into Docker API calls.
A spec that contradicts itself raises ValueError: that is a bug in awf, not a user error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

# Docker's own rule for container names.
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


class MountKind(StrEnum):
    BIND = "bind"
    VOLUME = "volume"


@dataclass(frozen=True, slots=True)
class Mount:
    """A bind mount (source is a host path) or a named volume (source is its name)."""

    source: str
    target: str
    read_only: bool = True
    kind: MountKind = MountKind.BIND
    propagation: str | None = None  # e.g. "rprivate"; bind mounts only

    def __post_init__(self) -> None:
        if not self.target.startswith("/"):
            raise ValueError(f"mount target {self.target!r} must be an absolute path")
        if self.kind is MountKind.BIND and not self.source.startswith("/"):
            raise ValueError(f"bind mount source {self.source!r} must be an absolute path")
        if self.propagation is not None and self.kind is not MountKind.BIND:
            raise ValueError(f"propagation {self.propagation!r} applies to bind mounts only")


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits; None leaves Docker's default (unlimited)."""

    memory: int | None = None  # bytes
    memory_swap: int | None = None  # bytes, memory plus swap; equal to memory means no swap
    pids: int | None = None
    nano_cpus: int | None = None  # 1e9 = one CPU

    def __post_init__(self) -> None:
        for name in ("memory", "memory_swap", "pids", "nano_cpus"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"limit {name}={value!r} must be positive")
        if self.memory_swap is not None and (
            self.memory is None or self.memory_swap < self.memory
        ):
            raise ValueError("memory_swap needs memory, and must be at least memory")


@dataclass(frozen=True, slots=True)
class NetworkAttachment:
    """One more network for a multi-homed container (the proxy is on -int and -ext)."""

    network: str
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """Everything Docker needs to create one container.

    `network` (with its fixed addresses) and `network_mode` exclude each other:
    `network_mode="container:awf-<run>-net"` shares the keeper's netns, `"none"` has no network.
    `security_opt` entries go to the API as they are: "seccomp=" takes the profile's JSON text,
    not a path (the docker CLI reads the file; the API does not).
    """

    name: str
    image: str
    command: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None  # None: the image's
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    network: str | None = None
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    aliases: tuple[str, ...] = ()
    extra_networks: tuple[NetworkAttachment, ...] = ()
    network_mode: str | None = None
    mounts: tuple[Mount, ...] = ()
    tmpfs: tuple[tuple[str, str], ...] = ()  # (target, options such as "rw,size=64m,mode=1777")
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    read_only: bool = False
    limits: Limits = field(default_factory=Limits)
    user: str | None = None  # "uid:gid" or a name known to the image
    working_dir: str | None = None
    hostname: str | None = None
    sysctls: tuple[tuple[str, str], ...] = ()
    extra_hosts: tuple[tuple[str, str], ...] = ()  # (name, address)
    shm_size: int | None = None  # bytes
    init: bool = False  # Docker's tini as PID 1
    tty: bool = False
    stdin_open: bool = False

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"container name {self.name!r} is not a valid Docker name")
        if not self.image:
            raise ValueError(f"container {self.name!r} has no image")
        if self.network is not None and self.network_mode is not None:
            raise ValueError(
                f"container {self.name!r}: network {self.network!r} and "
                f"network_mode {self.network_mode!r} exclude each other"
            )
        if self.network is None and (
            self.ipv4_address or self.ipv6_address or self.aliases or self.extra_networks
        ):
            raise ValueError(
                f"container {self.name!r}: addresses, aliases and extra networks need a network"
            )
        for key, _ in self.env:
            if not key or "=" in key or "\0" in key:
                raise ValueError(f"container {self.name!r}: bad environment name {key!r}")
        for pairs, what in (
            (self.env, "environment name"),
            (self.labels, "label"),
            (self.sysctls, "sysctl"),
        ):
            keys = [key for key, _ in pairs]
            if len(set(keys)) != len(keys) or not all(keys):
                raise ValueError(f"container {self.name!r}: empty or repeated {what} in {keys!r}")
        targets = [m.target for m in self.mounts] + [target for target, _ in self.tmpfs]
        if len(set(targets)) != len(targets):
            raise ValueError(f"container {self.name!r}: a mount target repeats in {targets!r}")
