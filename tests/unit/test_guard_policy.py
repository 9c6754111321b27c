"""The Docker guard's policy core: what passes, what is refused and why, and how a create is
rewritten (docs/architecture.md §10)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from containers.guard.policy import (
    DEFAULT_CAPS,
    Allow,
    GuardConfig,
    Refuse,
    Rewrite,
    Watch,
    body_streams,
    container_entry,
    exec_entry,
    filter_list,
    name_entry,
    record,
    redact_info,
)
from proxy.errors import ConfigError

MiB = 1 << 20
SECCOMP = '{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}'
CFG = GuardConfig(
    run="1234abcd", network_container="awf-1234abcd-net",
    allowed_bind_roots=("/work/ws", "/tmp/awf-1234abcd/"),
    labels=(("io.awf.run", "1234abcd"), ("io.awf.role", "sibling")),
    seccomp_json=SECCOMP, memory=512 * MiB, pids=256, nano_cpus=2_000_000_000,
)
OPEN = GuardConfig(run="1234abcd", network_container="awf-1234abcd-net")  # no ceilings
CID = "a" * 12 + "0123456789abcdef" * 3 + "b" * 4
OTHER = "c" * 64
EID = "e" * 64
OWNED = frozenset({container_entry(CID), name_entry("web", CID), exec_entry(EID)})

# What `docker run --rm --entrypoint= IMAGE echo hi` sends through API 1.41 (docker CLI 28).
CLI_CREATE: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": True,
    "AttachStderr": True, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
    "Cmd": ["echo", "hi"], "Image": "awf-agent:latest", "Volumes": {}, "WorkingDir": "",
    "Entrypoint": [""], "OnBuild": None, "Labels": {"io.awf.test": "1"},
    "HostConfig": {
        "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}},
        "NetworkMode": "default", "PortBindings": {},
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": True,
        "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0], "CapAdd": None,
        "CapDrop": None, "CgroupnsMode": "", "Dns": [], "DnsOptions": [], "DnsSearch": [],
        "ExtraHosts": None, "GroupAdd": None, "IpcMode": "", "Cgroup": "", "Links": None,
        "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False,
        "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "",
        "ShmSize": 0, "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0,
        "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": [],
        "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [],
        "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
        "CpusetCpus": "", "CpusetMems": "", "Devices": [], "DeviceCgroupRules": None,
        "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": 0,
        "MemorySwappiness": -1, "OomKillDisable": False, "PidsLimit": 0, "Ulimits": [],
        "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        "MaskedPaths": None, "ReadonlyPaths": None,
    },
    "NetworkingConfig": {"EndpointsConfig": {"default": {
        "IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None,
        "GwPriority": 0, "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "",
        "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
        "DNSNames": None}}},
}


def _create(hc: dict[str, Any] | None = None, *, cfg: GuardConfig = CFG, query: str = "",
            **top: Any) -> Refuse | Rewrite | Allow:
    body: dict[str, Any] = {"Image": "busybox", "Cmd": ["true"], **top}
    if hc is not None:
        body["HostConfig"] = hc
    return cfg.decide("POST", "/v1.41/containers/create", query, json.dumps(body).encode(),
                      frozenset())


def _sent(decision: object) -> dict[str, Any]:
    assert isinstance(decision, Rewrite), decision
    out = json.loads(decision.body)
    assert isinstance(out, dict)
    return out


def _refused(decision: object, status: int = 403) -> str:
    assert isinstance(decision, Refuse), decision
    assert decision.status == status
    assert decision.message.startswith("awf docker guard: ")
    return decision.message


# -- refusals on create ------------------------------------------------------------------------


@pytest.mark.parametrize(("hc", "fragment"), [
    ({"Privileged": True}, "HostConfig.Privileged is refused"),
    ({"CapAdd": ["NET_ADMIN"]}, "HostConfig.CapAdd is refused"),
    ({"CapAdd": ["NET_RAW"]}, "HostConfig.CapAdd is refused"),
    ({"Devices": [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda",
                   "CgroupPermissions": "rwm"}]}, "HostConfig.Devices is refused"),
    ({"DeviceRequests": [{"Count": -1, "Capabilities": [["gpu"]]}]},
     "HostConfig.DeviceRequests is refused"),
    ({"DeviceCgroupRules": ["c 1:3 mr"]}, "HostConfig.DeviceCgroupRules is refused"),
    ({"NetworkMode": "host"}, "HostConfig.NetworkMode 'host' is refused"),
    ({"NetworkMode": "none"}, "HostConfig.NetworkMode 'none' is refused"),
    ({"NetworkMode": "container:awf-1234abcd-proxy"}, "NetworkMode 'container:awf-1234abcd-"),
    ({"NetworkMode": "awf-1234abcd-ext"}, "HostConfig.NetworkMode 'awf-1234abcd-ext'"),
    ({"PidMode": "host"}, "HostConfig.PidMode 'host' is refused"),
    ({"PidMode": "container:" + OTHER}, "HostConfig.PidMode"),
    ({"IpcMode": "host"}, "HostConfig.IpcMode 'host' is refused"),
    ({"IpcMode": "container:x"}, "HostConfig.IpcMode"),
    ({"UTSMode": "host"}, "HostConfig.UTSMode 'host' is refused"),
    ({"UsernsMode": "host"}, "HostConfig.UsernsMode 'host' is refused"),
    ({"CgroupnsMode": "host"}, "HostConfig.CgroupnsMode 'host' is refused"),
    ({"SecurityOpt": ["seccomp=unconfined"]}, "HostConfig.SecurityOpt is refused"),
    ({"SecurityOpt": ["apparmor=unconfined"]}, "HostConfig.SecurityOpt is refused"),
    ({"SecurityOpt": ["no-new-privileges"]}, "HostConfig.SecurityOpt is refused"),
    ({"Runtime": "nvidia"}, "HostConfig.Runtime 'nvidia' is refused"),
    ({"Isolation": "hyperv"}, "HostConfig.Isolation 'hyperv' is refused"),
    ({"Sysctls": {"net.ipv4.ip_forward": "1"}}, "HostConfig.Sysctls is refused"),
    ({"VolumesFrom": ["awf-1234abcd-proxy"]}, "HostConfig.VolumesFrom is refused"),
    ({"VolumeDriver": "sshfs"}, "HostConfig.VolumeDriver is refused"),
    ({"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}},
     "HostConfig.PortBindings is refused"),
    ({"PublishAllPorts": True}, "HostConfig.PublishAllPorts is refused"),
    ({"Dns": ["1.1.1.1"]}, "HostConfig.Dns is refused"),
    ({"DnsOptions": ["ndots:1"]}, "HostConfig.DnsOptions is refused"),
    ({"DnsSearch": ["evil.test"]}, "HostConfig.DnsSearch is refused"),
    ({"ExtraHosts": ["a.test:203.0.113.7"]}, "HostConfig.ExtraHosts is refused"),
    ({"Links": ["awf-1234abcd-proxy:p"]}, "HostConfig.Links is refused"),
    ({"Cgroup": "container:x"}, "HostConfig.Cgroup is refused"),
    ({"CgroupParent": "/"}, "HostConfig.CgroupParent is refused"),
    ({"OomKillDisable": True}, "HostConfig.OomKillDisable is refused"),
    ({"OomScoreAdj": -1000}, "HostConfig.OomScoreAdj -1000 is refused"),
    ({"MaskedPaths": []}, "HostConfig.MaskedPaths is refused"),
    ({"ReadonlyPaths": []}, "HostConfig.ReadonlyPaths is refused"),
    ({"LogConfig": {"Type": "gelf", "Config": {"gelf-address": "udp://203.0.113.7:12201"}}},
     "HostConfig.LogConfig.Type 'gelf' is refused"),
    ({"RestartPolicy": {"Name": "always"}}, "HostConfig.RestartPolicy 'always' is refused"),
    ({"CpuQuota": 50_000}, "HostConfig.CpuQuota/CpuPeriod are refused"),
    # binds: sockets, /run, outside the roots, and the lexical tricks
    ({"Binds": ["/:/h"]}, "'/' may not be bound: only the workspace itself may"),
    ({"Binds": ["/var/run/docker.sock:/var/run/docker.sock"]},
     "'/var/run/docker.sock' is a container engine socket"),
    ({"Binds": ["//var/run/docker.sock:/s"]}, "is a container engine socket"),
    ({"Binds": ["/run/containerd/containerd.sock:/c"]}, "is a container engine socket"),
    ({"Binds": ["/work/ws/sub/docker.sock:/s:ro"]}, "is a container engine socket"),
    ({"Binds": ["/run:/r"]}, "'/run' is under /run"),
    ({"Binds": ["/var/run/:/r"]}, "is under /run"),
    ({"Binds": ["/work/ws/../../etc:/e"]}, "'/work/ws/../../etc' may not be bound"),
    ({"Binds": ["/work/wsx:/x"]}, "'/work/wsx' may not be bound"),
    ({"Binds": ["/work/ws/sub/dir:/d:ro"]}, "could be swapped for a symlink"),
    ({"Binds": ["/work:/w"]}, "'/work' may not be bound"),
    ({"Binds": ["/home/user/.ssh:/k:ro"]}, "only the workspace itself may"),
    ({"Mounts": [{"Type": "bind", "Source": "/", "Target": "/h"}]},
     "HostConfig.Mounts[0] (bind) is refused: '/' may not be bound"),
    ({"Mounts": [{"Type": "bind", "Source": "/var/run/docker.sock", "Target": "/s"}]},
     "is a container engine socket"),
    ({"Mounts": [{"Type": "bind", "Source": "/var/run", "Target": "/r"}]}, "is under /run"),
    ({"Mounts": [{"Type": "tmpfs", "Target": "/t"},
                 {"Type": "bind", "Source": "/etc", "Target": "/e"}]},
     "HostConfig.Mounts[1] (bind) is refused"),
    ({"Mounts": [{"Type": "volume", "Target": "/v", "VolumeOptions": {
        "DriverConfig": {"Name": "local", "Options": {"type": "none", "o": "bind",
                                                      "device": "/"}}}}]},
     "VolumeOptions.DriverConfig is refused"),
    ({"Mounts": [{"Type": "volume", "Target": "/v", "VolumeOptions": {
        "DriverConfig": {"Name": "rclone"}}}]}, "VolumeOptions.DriverConfig is refused"),
    ({"Mounts": [{"Type": "volume", "Source": "pgdata", "Target": "/v"}]},
     "HostConfig.Mounts[0] (volume 'pgdata') is refused: named volumes outlive the run"),
    ({"Binds": ["cache:/cache"]}, "HostConfig.Binds 'cache:/cache' is refused: named volumes"),
    ({"Binds": ["other_project_db:/var/lib/db:ro"]}, "named volumes outlive the run"),
    ({"Mounts": [{"Type": "npipe", "Source": "x", "Target": "/x"}]},
     "HostConfig.Mounts[0].Type 'npipe' is refused"),
    ({"Mounts": [{"type": "bind", "source": "/", "target": "/h"}]},
     "HostConfig.Mounts[0] field 'type' must be spelled 'Type'"),
    # Go's JSON decoder ignores case; a variant of a known field is refused, whatever its value
    ({"privileged": True}, "HostConfig field 'privileged' must be spelled 'Privileged'"),
    ({"privileged": False}, "must be spelled 'Privileged'"),
    ({"NETWORKMODE": "host"}, "must be spelled 'NetworkMode'"),
    ({"\u017fecurityOpt": ["seccomp=unconfined"]}, "is not ASCII"),
    ({"Capadd": ["SYS_ADMIN"]}, "must be spelled 'CapAdd'"),
    # fields the guard does not know, with a value
    ({"KernelMemory": 1 << 30}, "unknown HostConfig field 'KernelMemory'"),
    ({"CpuRealtimeRuntime": 950_000}, "unknown HostConfig field 'CpuRealtimeRuntime'"),
    ({"StorageOpt": {"size": "1G"}}, "unknown HostConfig field 'StorageOpt'"),
    ({"Annotations": {"a": "b"}}, "unknown HostConfig field 'Annotations'"),
])
def test_create_refused(hc: dict[str, Any], fragment: str) -> None:
    assert fragment in _refused(_create(hc))


@pytest.mark.parametrize(("top", "fragment"), [
    # the create body embeds a HostConfig at the top level, which the engine honours
    ({"Privileged": True}, "unknown container config field 'Privileged'"),
    ({"NetworkMode": "host"}, "unknown container config field 'NetworkMode'"),
    ({"Binds": ["/:/h"]}, "unknown container config field 'Binds'"),
    ({"hostconfig": {"Privileged": True}}, "field 'hostconfig' must be spelled 'HostConfig'"),
    ({"MacAddress": "02:42:ac:11:00:02"}, "MacAddress is refused"),
    ({"NetworkingConfig": {"EndpointsConfig": {"awf-1234abcd-ext": {}}}},
     "NetworkingConfig.EndpointsConfig 'awf-1234abcd-ext' is refused"),
    ({"NetworkingConfig": {"EndpointsConfig": {"default": {"Aliases": ["db"]}}}},
     "NetworkingConfig.EndpointsConfig 'default' is refused"),
    ({"NetworkingConfig": {"EndpointsConfig": {"bridge": {"IPAMConfig": {
        "IPv4Address": "172.17.0.9"}}}}}, "EndpointsConfig 'bridge' is refused"),
    ({"NetworkingConfig": {"endpointsconfig": {"host": {}}}}, "must be spelled"),
])
def test_create_refused_at_top_level(top: dict[str, Any], fragment: str) -> None:
    assert fragment in _refused(_create(None, **top))


@pytest.mark.parametrize(("body", "query", "fragment"), [
    (b"", "", "the create body is not JSON"),
    (b"not json", "", "the create body is not JSON"),
    (b"[]", "", "is not a JSON object"),
    (b'{"Image": "a", "Image": "b"}', "", "field 'Image' appears twice"),
    (b'{"Image": "a", "HostConfig": {"Privileged": false, "Privileged": true}}', "",
     "field 'Privileged' appears twice"),
    (b'{"Image": "a", "HostConfig": {"Memory": NaN}}', "", "NaN is not JSON"),
    (b'{"Image": "a", "HostConfig": {"Memory": "1g"}}', "", "HostConfig.Memory must be an "
                                                            "integer"),
    (b'{"Image": "a", "HostConfig": {"Memory": true}}', "", "must be an integer"),
    (b'{"Image": "a", "HostConfig": {"NetworkMode": 1}}', "", "NetworkMode must be a string"),
    (b'{"Image": "a", "HostConfig": {"Binds": "/w:/w"}}', "", "Binds must be a list"),
    (b'{"Image": "a", "HostConfig": {"Binds": ["./x:/x"]}}', "", "neither an absolute path"),
    (b'{"Image": "a", "HostConfig": []}', "", "HostConfig must be a JSON object"),
    (b'{"Image": "a", "Labels": {"a": 1}}', "", "Labels must be an object of strings"),
    (b'\xff{}', "", "is not JSON"),
    (b'{"Image": "a"}', "name=a&name=b", "several name parameters"),
    (b'{"Image": "a"}', "name=../x", "container name '../x' is not valid"),
])
def test_create_bad_request(body: bytes, query: str, fragment: str) -> None:
    decision = CFG.decide("POST", "/containers/create", query, body, frozenset())
    assert fragment in _refused(decision, 400)


# -- the rewrite ---------------------------------------------------------------------------------


def test_cli_create_is_rewritten() -> None:
    decision = CFG.decide("POST", "/v1.41/containers/create", "name=web",
                          json.dumps(CLI_CREATE).encode(), frozenset())
    assert isinstance(decision, Rewrite)
    assert decision.tracks_create
    assert decision.watch is Watch.CREATE
    assert decision.name == "web"
    assert decision.path is None
    sent = _sent(decision)
    hc = sent["HostConfig"]
    assert hc["NetworkMode"] == "container:awf-1234abcd-net"
    assert hc["CapDrop"] == ["ALL"]
    assert hc["CapAdd"] == list(DEFAULT_CAPS)
    assert "NET_RAW" not in hc["CapAdd"]
    assert len(hc["CapAdd"]) == 13
    assert hc["SecurityOpt"] == ["no-new-privileges", "seccomp=" + SECCOMP]
    assert hc["CgroupnsMode"] == "private"
    assert (hc["Memory"], hc["MemorySwap"]) == (512 * MiB, 512 * MiB)
    assert (hc["PidsLimit"], hc["NanoCpus"]) == (256, 2_000_000_000)
    assert hc["AutoRemove"] is True
    assert hc["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert "NetworkingConfig" not in sent
    # what the engine refuses beside container: networking, and zero fields we do not know
    for gone in ("PortBindings", "Dns", "Privileged", "BlkioWeightDevice", "CpuCount",
                 "MaskedPaths", "KernelMemory"):
        assert gone not in hc
    assert "Hostname" not in sent
    assert "Domainname" not in sent
    assert sent["Labels"] == {"io.awf.test": "1", "io.awf.run": "1234abcd",
                              "io.awf.role": "sibling"}
    assert sent["Cmd"] == ["echo", "hi"]
    assert sent["Entrypoint"] == [""]


def test_forced_labels_win_and_ports_and_hostname_are_dropped() -> None:
    sent = _sent(_create({}, Labels={"io.awf.run": "ffffffff", "app": "db"},
                         ExposedPorts={"5432/tcp": {}}, Hostname="db", Domainname="test"))
    assert sent["Labels"] == {"io.awf.run": "1234abcd", "app": "db", "io.awf.role": "sibling"}
    assert not {"ExposedPorts", "Hostname", "Domainname"} & set(sent)


def test_allowed_binds_mounts_and_volumes_pass() -> None:
    hc = {
        "Binds": ["/work/ws:/w", "/work/ws/:/d:ro", "/tmp/awf-1234abcd:/x:rw,z",
                  "/anonymous"],
        "Mounts": [{"Type": "bind", "Source": "/work/ws/", "Target": "/m", "ReadOnly": True},
                   {"Type": "volume", "Target": "/data",
                    "VolumeOptions": {"NoCopy": True, "DriverConfig": {"Name": "local"}}},
                   {"Type": "volume", "Target": "/anon"},
                   {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20}}],
        "Tmpfs": {"/run": "rw,size=1m"},
        "ReadonlyRootfs": True, "Init": True, "ShmSize": 64 * MiB, "GroupAdd": ["audio"],
        "IpcMode": "shareable", "CgroupnsMode": "private", "NetworkMode": "bridge",
        "Runtime": "runc", "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m"}},
        "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}, "OomScoreAdj": 500,
        "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
        "CapDrop": ["MKNOD"],
    }
    out = _sent(_create(hc))["HostConfig"]
    assert out["Binds"] == hc["Binds"]
    assert out["Mounts"] == hc["Mounts"]
    for key in ("Tmpfs", "ReadonlyRootfs", "Init", "ShmSize", "GroupAdd", "IpcMode", "Runtime",
                "LogConfig", "RestartPolicy", "OomScoreAdj", "Ulimits"):
        assert out[key] == hc[key], key
    assert out["CapDrop"] == ["ALL"]
    assert out["NetworkMode"] == "container:awf-1234abcd-net"


@pytest.mark.parametrize(("asked", "sent"), [
    ({}, {"Memory": 512 * MiB, "MemorySwap": 512 * MiB, "PidsLimit": 256,
          "NanoCpus": 2_000_000_000}),
    ({"Memory": 0, "PidsLimit": 0, "NanoCpus": 0}, {"Memory": 512 * MiB, "PidsLimit": 256,
                                                    "NanoCpus": 2_000_000_000}),
    ({"Memory": 1 << 40, "PidsLimit": 100_000, "NanoCpus": 64_000_000_000},
     {"Memory": 512 * MiB, "PidsLimit": 256, "NanoCpus": 2_000_000_000}),
    ({"Memory": 64 * MiB, "PidsLimit": 10, "NanoCpus": 500_000_000},
     {"Memory": 64 * MiB, "MemorySwap": 64 * MiB, "PidsLimit": 10, "NanoCpus": 500_000_000}),
    ({"PidsLimit": -1}, {"PidsLimit": 256}),  # unlimited takes the ceiling
    ({"Memory": 64 * MiB, "MemorySwap": -1}, {"MemorySwap": 64 * MiB}),
    ({"Memory": 64 * MiB, "MemorySwap": 128 * MiB}, {"MemorySwap": 128 * MiB}),
    ({"Memory": 64 * MiB, "MemorySwap": 1 << 40}, {"MemorySwap": 512 * MiB}),
    ({"Memory": 64 * MiB, "MemorySwap": 32 * MiB}, {"MemorySwap": 64 * MiB}),
])
def test_limits_are_ceilings(asked: dict[str, int], sent: dict[str, int]) -> None:
    out = _sent(_create(asked))["HostConfig"]
    assert {k: out[k] for k in sent} == sent


def test_without_ceilings_or_seccomp_requests_pass() -> None:
    out = _sent(_create({"Memory": 64 * MiB, "PidsLimit": 50, "CpuQuota": 50_000}, cfg=OPEN))
    hc = out["HostConfig"]
    assert (hc["Memory"], hc["PidsLimit"], hc["CpuQuota"]) == (64 * MiB, 50, 50_000)
    assert "NanoCpus" not in hc
    assert "MemorySwap" not in hc
    assert hc["SecurityOpt"] == ["no-new-privileges"]
    assert "Labels" in out
    assert out["Labels"] == {}


# -- endpoints -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "watch"), [
    ("GET", "/_ping", Watch.NONE),
    ("HEAD", "/_ping", Watch.NONE),
    ("GET", "/v1.41/_ping", Watch.NONE),
    ("GET", "/version", Watch.NONE),
    ("GET", "/v1.24/version", Watch.NONE),
    ("GET", "/v1.41/info", Watch.INFO),
    ("GET", "/v1.41/images/json", Watch.NONE),
    ("GET", "/v1.41/images/busybox:latest/json", Watch.NONE),
    ("GET", "/v1.41/images/ghcr.io/org/app@sha256:" + "0" * 64 + "/json", Watch.NONE),
    ("GET", "/v1.41/containers/json", Watch.LIST),
])
def test_open_endpoints(method: str, path: str, watch: Watch) -> None:
    decision = CFG.decide(method, path, "all=1", None, frozenset())
    assert isinstance(decision, Allow)
    assert decision.watch is watch
    assert decision.path is None


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v1.41/images/create"),  # docker pull
    ("POST", "/v1.41/build"),
    ("POST", "/session"),
    ("GET", "/v1.41/events"),
    ("GET", "/v1.41/system/df"),
    ("POST", "/v1.41/images/load"),
    ("GET", "/v1.41/images/busybox/get"),
    ("DELETE", "/v1.41/images/busybox"),
    ("POST", "/v1.41/networks/create"),
    ("GET", "/v1.41/networks"),
    ("POST", "/v1.41/volumes/create"),
    ("GET", "/v1.41/volumes"),
    ("POST", "/v1.41/containers/prune"),
    ("POST", "/v1.41/swarm/init"),
    ("GET", "/v1.41/plugins"),
    ("POST", "/v1.41/containers/" + CID + "/update"),  # would raise the limits
    ("POST", "/v1.41/containers/" + CID + "/rename"),
    ("POST", "/v1.41/containers/" + CID + "/commit"),
    ("GET", "/v1.41/containers/" + CID + "/export"),
    ("GET", "/v1.41/containers/" + CID + "/attach/ws"),
    ("PUT", "/v1.41/containers/" + CID + "/start"),
    ("GET", "/v1.41/containers/" + CID + "/json/"),
    ("HEAD", "/version"),
    ("POST", "/_ping"),
    ("GET", "/v1/containers/json"),  # not a version prefix the guard strips: no route
    ("GET", "/v1.41"),
    ("GET", "*"),
    ("GET", "http://docker/_ping"),
])
def test_other_endpoints_refused(method: str, path: str) -> None:
    message = _refused(CFG.decide(method, path, "", None, OWNED))
    assert message.endswith("is not allowed in the sandbox")
    assert f"{method} " in message


@pytest.mark.parametrize("path", ["/_p%69ng", "/v1.41/containers/" + CID + "/../x/start",
                                  "/v1.41/containers/./json", "/images/%2e%2e/json"])
def test_unplain_paths_refused(path: str) -> None:
    assert "percent-encoding or dot segments" in _refused(
        CFG.decide("GET", path, "", None, OWNED), 400)


@pytest.mark.parametrize("version", ["1.23", "1.12", "0.9"])
def test_old_api_versions_refused(version: str) -> None:
    # below 1.24, a start body replaces the created container's host config
    decision = CFG.decide("POST", f"/v{version}/containers/{CID}/start", "",
                          b'{"Privileged":true}', OWNED)
    assert f"API version {version} is older than the guard's minimum 1.24" in _refused(decision)


# -- owned containers --------------------------------------------------------------------------

CONTAINER_CALLS = [("POST", "start"), ("POST", "wait"), ("POST", "stop"), ("POST", "kill"),
                   ("POST", "resize"), ("POST", "attach"), ("GET", "json"), ("GET", "logs"),
                   ("GET", "archive"), ("HEAD", "archive"), ("PUT", "archive")]


@pytest.mark.parametrize(("method", "action"), CONTAINER_CALLS)
@pytest.mark.parametrize("ref", [CID, CID[:12], CID[:40], "web"])
def test_owned_container_calls_are_pinned(method: str, action: str, ref: str) -> None:
    decision = CFG.decide(method, f"/v1.41/containers/{ref}/{action}", "", b"", OWNED)
    assert isinstance(decision, Allow)
    assert decision.path == f"/v1.41/containers/{CID}/{action}"
    assert decision.target == CID
    assert not decision.tracks_create


@pytest.mark.parametrize(("method", "action"), [*CONTAINER_CALLS, ("POST", "exec")])
@pytest.mark.parametrize("ref", [OTHER, OTHER[:12], CID[:11], CID.upper(), "db", "awf-1234abcd-net",
                                 "web2", "name:web=" + CID])
def test_unowned_container_calls_refused(method: str, action: str, ref: str) -> None:
    message = _refused(CFG.decide(method, f"/containers/{ref}/{action}", "", b"{}", OWNED))
    assert f"container {ref!r} was not created through the guard" in message


def test_ambiguous_prefix_refused() -> None:
    twin = CID[:20] + "f" * 44
    owned = OWNED | {twin}
    assert "was not created through the guard" in _refused(
        CFG.decide("POST", f"/containers/{CID[:12]}/stop", "", b"", owned))
    decision = CFG.decide("POST", f"/containers/{CID[:21]}/stop", "", b"", owned)
    assert isinstance(decision, Allow)
    assert decision.path == f"/containers/{CID}/stop"


def test_remove() -> None:
    decision = CFG.decide("DELETE", "/v1.41/containers/web", "force=1&v=1", None, OWNED)
    assert isinstance(decision, Allow)
    assert decision.watch is Watch.REMOVE
    assert decision.target == CID
    assert decision.path == f"/v1.41/containers/{CID}"
    assert "was not created" in _refused(CFG.decide("DELETE", f"/containers/{OTHER}", "", None,
                                                    OWNED))
    assert "links are not available" in _refused(
        CFG.decide("DELETE", "/containers/web", "link=1", None, OWNED))


@pytest.mark.parametrize("body", [b'{"Privileged":true}', b'{"HostConfig":{}}', b"x"])
def test_start_with_a_body_refused(body: bytes) -> None:
    assert "a body on start" in _refused(CFG.decide("POST", f"/containers/{CID}/start", "", body,
                                                    OWNED))


@pytest.mark.parametrize("body", [b"", b"{}", b" null ", None])
def test_start_without_a_body(body: bytes | None) -> None:
    assert isinstance(CFG.decide("POST", f"/containers/{CID}/start", "", body, OWNED), Allow)


# -- exec --------------------------------------------------------------------------------------


def test_exec_create_on_owned_container() -> None:
    body = b'{"AttachStdout":true,"Cmd":["sh"],"Tty":false,"User":"root","Env":null}'
    decision = CFG.decide("POST", "/v1.41/containers/web/exec", "", body, OWNED)
    assert isinstance(decision, Rewrite)
    assert decision.watch is Watch.EXEC_CREATE
    assert decision.path == f"/v1.41/containers/{CID}/exec"
    assert json.loads(decision.body) == {"AttachStdout": True, "Cmd": ["sh"], "Tty": False,
                                         "User": "root", "Env": None}


@pytest.mark.parametrize(("body", "status", "fragment"), [
    (b'{"Cmd":["sh"],"Privileged":true}', 403, "exec with Privileged is refused"),
    (b'{"Cmd":["sh"],"privileged":true}', 403, "must be spelled 'Privileged'"),
    (b'{"Cmd":["sh"],"CapAdd":["ALL"]}', 403, "unknown exec config field 'CapAdd'"),
    (b"[]", 400, "the exec body is not a JSON object"),
])
def test_exec_create_refused(body: bytes, status: int, fragment: str) -> None:
    assert fragment in _refused(CFG.decide("POST", f"/containers/{CID}/exec", "", body, OWNED),
                                status)


@pytest.mark.parametrize(("method", "action"), [("POST", "start"), ("POST", "resize"),
                                                ("GET", "json")])
def test_exec_calls(method: str, action: str) -> None:
    for ref in (EID, EID[:12]):
        decision = CFG.decide(method, f"/v1.41/exec/{ref}/{action}", "h=1&w=2", b"{}", OWNED)
        assert isinstance(decision, Allow)
        assert decision.path == f"/v1.41/exec/{EID}/{action}"
    for ref in ("f" * 64, CID, "web", EID[:11]):
        assert "was not created through the guard" in _refused(
            CFG.decide(method, f"/exec/{ref}/{action}", "", b"{}", OWNED))


# -- answers from the engine --------------------------------------------------------------------


def test_record_create_exec_and_remove() -> None:
    create = Rewrite(body=b"{}", watch=Watch.CREATE, name="db")
    answer = json.dumps({"Id": OTHER, "Warnings": []}).encode()
    owned = record(OWNED, create, 201, answer)
    assert owned == OWNED | {OTHER, name_entry("db", OTHER)}
    assert record(OWNED, Rewrite(body=b"{}", watch=Watch.CREATE), 201, answer) == OWNED | {OTHER}
    assert record(OWNED, create, 409, b'{"message":"conflict"}') == OWNED
    assert record(OWNED, create, 201, b'{"Id":"../x"}') == OWNED
    assert record(OWNED, create, 201, b"garbage") == OWNED
    assert record(OWNED, create, 201, b"[]") == OWNED
    ex = Rewrite(body=b"{}", path="/x", watch=Watch.EXEC_CREATE, target=CID)
    assert record(OWNED, ex, 201, answer) == OWNED | {exec_entry(OTHER)}
    gone = record(owned, Allow(watch=Watch.REMOVE, target=OTHER), 204, b"")
    assert gone == OWNED
    assert record(OWNED, Allow(watch=Watch.REMOVE, target=CID), 404, b"") == {exec_entry(EID)}
    assert record(OWNED, Allow(watch=Watch.REMOVE, target=CID), 409, b"") == OWNED
    assert record(OWNED, Allow(), 201, answer) == OWNED


def test_filter_list_keeps_owned_containers() -> None:
    listing = [{"Id": CID, "Names": ["/web"]}, {"Id": OTHER, "Names": ["/awf-1234abcd-proxy"]}]
    assert json.loads(filter_list(json.dumps(listing).encode(), OWNED)) == [listing[0]]
    assert filter_list(b"{}", OWNED) == b"[]"
    assert filter_list(b"\xff", OWNED) == b"[]"


def test_redact_info() -> None:
    info = {"ServerVersion": "20.10.24", "NCPU": 2, "MemTotal": 1 << 30, "OSType": "linux",
            "Containers": 7, "Name": "build-host", "DockerRootDir": "/var/lib/docker",
            "RegistryConfig": {"IndexConfigs": {}}, "HttpProxy": "http://user:pw@proxy:3128",
            "Labels": ["secret=1"], "Swarm": {"NodeID": "x"}}
    assert json.loads(redact_info(json.dumps(info).encode())) == {
        "ServerVersion": "20.10.24", "NCPU": 2, "MemTotal": 1 << 30, "OSType": "linux"}
    assert redact_info(b"[1]") == b"{}"


@pytest.mark.parametrize(("method", "path", "streams"), [
    ("PUT", f"/v1.41/containers/{CID}/archive", True),
    ("PUT", "/containers/web/archive", True),
    ("GET", f"/containers/{CID}/archive", False),
    ("POST", "/containers/create", False),
    ("PUT", "/v1.12/containers/x/archive", False),
    ("PUT", "/containers/a/b/archive", False),
])
def test_body_streams(method: str, path: str, streams: bool) -> None:
    assert body_streams(method, path) is streams


# -- configuration -------------------------------------------------------------------------------


def test_config_from_json_as_docker_run_writes_it() -> None:
    cfg = GuardConfig.from_json(json.dumps({
        "run": "1234abcd", "network_container": "awf-1234abcd-net",
        "allowed_bind_roots": ["/work/ws/", "//tmp/x"], "labels": [["io.awf.run", "1234abcd"]],
        "seccomp_json": SECCOMP, "memory": 1 << 30, "pids": 512, "nano_cpus": None}))
    assert cfg.allowed_bind_roots == ("/work/ws", "/tmp/x")
    assert cfg.labels == (("io.awf.run", "1234abcd"),)
    assert (cfg.memory, cfg.pids, cfg.nano_cpus) == (1 << 30, 512, None)


@pytest.mark.parametrize(("text", "fragment"), [
    ("nope", "--config is not JSON"),
    ("[]", "must be a JSON object"),
    ('{"run": "r"}', "network_container must be a string"),
    ('{"run": "r", "network_container": "n1", "extra": 1}', "unknown keys extra"),
    ('{"run": "r", "network_container": "-x"}', "is not a container name"),
    ('{"run": "r", "network_container": "n1", "allowed_bind_roots": ["rel"]}',
     "'rel' is not an absolute path"),
    ('{"run": "r", "network_container": "n1", "allowed_bind_roots": ["/"]}',
     "holds or is under a system directory"),
    ('{"run": "r", "network_container": "n1", "allowed_bind_roots": ["/var"]}',
     "holds or is under a system directory"),
    ('{"run": "r", "network_container": "n1", "allowed_bind_roots": ["/run/user/1"]}',
     "holds or is under a system directory"),
    ('{"run": "r", "network_container": "n1", "memory": 0}', "memory: 0 is not a positive"),
    ('{"run": "r", "network_container": "n1", "pids": true}', "pids: True is not a positive"),
    ('{"run": "r", "network_container": "n1", "seccomp_json": "{"}', "seccomp_json is not JSON"),
    ('{"run": "r", "network_container": "n1", "seccomp_json": 5}', "seccomp_json must be"),
    ('{"run": "r", "network_container": "n1", "labels": [["a"]]}', "labels must be"),
])
def test_config_errors(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        GuardConfig.from_json(text)
    assert fragment in str(caught.value)


# -- siblings resolve through the proxy's forwarder (issue 20) ---------------------------------

RESOLVING = GuardConfig(run="1234abcd", network_container="awf-1234abcd-net",
                        allowed_bind_roots=("/work/ws",),
                        resolv_conf="/tmp/awf-1234abcd/resolv.conf")


def test_siblings_get_the_runs_resolv_conf() -> None:
    sent = _sent(_create({"Mounts": [{"Type": "tmpfs", "Target": "/t"}]}, cfg=RESOLVING))
    assert sent["HostConfig"]["Mounts"][-1] == {
        "Type": "bind", "Source": "/tmp/awf-1234abcd/resolv.conf", "Target": "/etc/resolv.conf",
        "ReadOnly": True}
    assert sent["HostConfig"]["Mounts"][0]["Target"] == "/t"
    bare = _sent(_create(dict(CLI_CREATE["HostConfig"]), cfg=RESOLVING))
    assert [m["Target"] for m in bare["HostConfig"]["Mounts"]] == ["/etc/resolv.conf"]


@pytest.mark.parametrize("hc", [
    {"Binds": ["/work/ws:/etc/resolv.conf:ro"]},
    {"Binds": ["/etc/resolv.conf"]},
    {"Mounts": [{"Type": "bind", "Source": "/work/ws", "Target": "/etc//resolv.conf"}]},
    {"Mounts": [{"Type": "tmpfs", "Target": "/etc/resolv.conf"}]},
])
def test_a_sibling_may_not_mount_its_own_resolv_conf(hc: dict[str, Any]) -> None:
    assert "/etc/resolv.conf is refused" in _refused(_create(hc, cfg=RESOLVING))


def test_resolv_conf_from_json() -> None:
    cfg = GuardConfig.from_json(json.dumps({"run": "r", "network_container": "n1",
                                            "resolv_conf": "/tmp/r/resolv.conf"}))
    assert cfg.resolv_conf == "/tmp/r/resolv.conf"
    with pytest.raises(ConfigError, match="resolv_conf"):
        GuardConfig.from_json('{"run": "r", "network_container": "n1", "resolv_conf": "x"}')
