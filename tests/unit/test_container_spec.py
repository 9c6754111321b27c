"""A ContainerSpec that contradicts itself is refused before Docker sees it."""

from __future__ import annotations

import dataclasses

import pytest

from containers import labels
from containers.driver import DockerDriver
from containers.errors import DockerError
from containers.spec import ContainerSpec, Limits, Mount, MountKind, NetworkAttachment


def _spec(**changes: object) -> ContainerSpec:
    return dataclasses.replace(ContainerSpec(name="awf-1234abcd-proxy", image="awf-runtime:x"),
                               **changes)  # type: ignore[arg-type]


def test_a_full_spec_is_accepted_and_hashable():
    spec = _spec(
        command=("awf-proxy", "--config", "/run/awf/proxy.json"),
        env=(("A", "1"), ("B", "x=y")),
        labels=labels.run_labels("1234abcd", labels.Role.PROXY, owner_pid=1, host="h",
                                 started=0, version="0.1.0"),
        network="awf-1234abcd-int",
        ipv4_address="172.30.0.10",
        ipv6_address="fd61:7766::10",
        extra_networks=(NetworkAttachment("awf-1234abcd-ext"),),
        mounts=(Mount("/dev/null", "/home/u/.npmrc"), Mount("vol", "/data", kind=MountKind.VOLUME)),
        tmpfs=(("/tmp", "rw,size=64m"),),
        cap_drop=("ALL",),
        security_opt=("no-new-privileges",),
        read_only=True,
        limits=Limits(memory=1 << 30, memory_swap=1 << 30, pids=512, nano_cpus=2_000_000_000),
        sysctls=(("net.ipv4.ip_unprivileged_port_start", "0"),),
    )
    assert hash(spec) == hash(dataclasses.replace(spec))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "-bad"},
        {"name": "a b"},
        {"image": ""},
        {"network": "n", "network_mode": "none"},
        {"ipv4_address": "172.30.0.10"},
        {"aliases": ("proxy",)},
        {"extra_networks": (NetworkAttachment("awf-x-ext"),)},
        {"env": (("A=B", "1"),)},
        {"env": (("", "1"),)},
        {"env": (("A", "1"), ("A", "2"))},
        {"labels": (("io.awf.run", "1"), ("io.awf.run", "2"))},
        {"mounts": (Mount("/a", "/x"), Mount("/b", "/x"))},
        {"mounts": (Mount("/a", "/tmp"),), "tmpfs": (("/tmp", ""),)},
    ],
)
def test_contradictions_are_refused(changes):
    with pytest.raises(ValueError, match="container"):
        _spec(**changes)


@pytest.mark.parametrize(
    ("kind", "kwargs", "pattern"),
    [
        (Mount, {"source": "relative", "target": "/x"}, "absolute"),
        (Mount, {"source": "/a", "target": "relative"}, "absolute"),
        (Mount, {"source": "v", "target": "/x", "kind": MountKind.VOLUME, "propagation": "rshared"},
         "propagation"),
        (Limits, {"memory": 0}, "positive"),
        (Limits, {"pids": -1}, "positive"),
        (Limits, {"memory_swap": 1}, "memory_swap"),
        (Limits, {"memory": 2, "memory_swap": 1}, "memory_swap"),
    ],
    ids=["relative-source", "relative-target", "volume-propagation", "zero-memory",
         "negative-pids", "swap-without-memory", "swap-below-memory"],
)
def test_bad_mounts_and_limits_are_refused(kind, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        kind(**kwargs)


def test_an_unreachable_engine_names_the_address_and_the_fix(tmp_path):
    where = f"unix://{tmp_path}/no-docker.sock"
    with pytest.raises(DockerError, match=r"no Docker engine at unix://.*no-docker"
                       r"\.sock \(no such socket\); is dockerd running\?"):
        DockerDriver.from_env(where, timeout=5)
