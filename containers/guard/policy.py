"""Which Docker API calls the sandbox may make, and how a container create is rewritten.

Pure: `GuardConfig.decide()` reads only its arguments and returns a Decision; `record()` folds an
answer from the engine into the set of owned objects. The server (`server.py`) does the I/O.

Owned objects are strings in one frozenset, made by `container_entry`, `name_entry` and
`exec_entry`: a full container ID, `name:<name>=<id>` for a name given at create, and
`exec:<id>` for an exec instance made on an owned container. A call that names a container by
ID prefix or by name is *pinned*: the path sent to the engine carries the full ID, so a name
reused later by someone else, or an ambiguous prefix, never reaches another container.

What the engine does that a naive filter misses, and how each is closed here:

* Go's encoding/json matches field names without case (and folds U+017F to s, U+212A to k), so
  `{"privileged": true}` sets Privileged. Every object whose fields are read is checked against
  an exact list: a case variant or a non-ASCII name of a known field is refused, an unknown field
  with a non-zero value is refused, an unknown zero field is dropped, duplicate names anywhere
  are a 400. The body sent on is re-serialised from what was checked.
* The create body embeds a whole HostConfig at the top level (runconfig's
  ContainerConfigWrapper, kept for old clients); with no "HostConfig" key the engine uses it.
  Top-level fields are held to container.Config's list, and HostConfig is always sent.
* API versions below 1.24 let `start` carry a HostConfig that replaces the created one; they are
  refused, and so is any start body.
* Before 1.41 on a cgroup v1 host an empty CgroupnsMode means "host"; it is always set to private.
* Paths are matched as sent: percent-encoding and dot segments are refused rather than decoded.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final
from urllib.parse import parse_qsl

from proxy.errors import ConfigError

__all__ = [
    "DEFAULT_CAPS",
    "Allow",
    "Decision",
    "GuardConfig",
    "Refuse",
    "Rewrite",
    "Watch",
    "body_streams",
    "container_entry",
    "exec_entry",
    "filter_list",
    "name_entry",
    "record",
    "redact_info",
]

PREFIX: Final = "awf docker guard: "
# Docker's default capability set without NET_RAW (raw sockets would bypass the proxy's view).
DEFAULT_CAPS: Final = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "SETGID", "SETUID",
                       "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL",
                       "AUDIT_WRITE")
MIN_API: Final = (1, 24)  # older versions let `start` replace the host config
MAX_BODY: Final = 1 << 20  # request bodies the guard reads (archive PUT streams instead)

RESOLV_CONF: Final = "/etc/resolv.conf"
NAME_ENTRY: Final = "name:"
EXEC_ENTRY: Final = "exec:"

_ID_RE: Final = re.compile(r"[0-9a-f]{64}")
_PREFIX_RE: Final = re.compile(r"[0-9a-f]{12,64}")
_NAME_RE: Final = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")  # Docker's container/volume names
_VERSION_RE: Final = re.compile(r"/v([0-9]+)\.([0-9]+)(?=/)")


class Watch(StrEnum):
    """What the server does with the engine's answer to an allowed call."""

    NONE = "none"  # relay it
    CREATE = "create"  # record the new container's Id (and the name asked for)
    EXEC_CREATE = "exec_create"  # record the new exec instance's Id
    REMOVE = "remove"  # forget the container once the engine removed it
    LIST = "list"  # keep only owned containers in the list
    INFO = "info"  # answer with a redacted subset (redact_info)


@dataclass(frozen=True, slots=True)
class _Forward:
    """How a forwarded request is routed and what the guard learns from its answer."""

    path: str | None = None  # replaces the request path (pinned to a full ID) if set
    watch: Watch = Watch.NONE
    target: str | None = None  # the full container ID the path names
    name: str | None = None  # CREATE: the name asked for

    @property
    def tracks_create(self) -> bool:
        return self.watch is Watch.CREATE


@dataclass(frozen=True, slots=True)
class Allow(_Forward):
    """Forward the request as the client sent it (but for `path`)."""


@dataclass(frozen=True, slots=True)
class Rewrite(_Forward):
    """Forward the request with `body` (JSON) instead of the client's."""

    body: bytes = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class Refuse:
    """Answer `status` with Docker's error body {"message": message}; nothing is forwarded."""

    status: int
    message: str

    @property
    def tracks_create(self) -> bool:
        return False


Decision = Allow | Rewrite | Refuse


class _Refused(Exception):
    """Internal: unwinds a create check; decide() turns it into a Refuse."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def container_entry(cid: str) -> str:
    return cid


def name_entry(name: str, cid: str) -> str:
    return f"{NAME_ENTRY}{name}={cid}"


def exec_entry(eid: str) -> str:
    return f"{EXEC_ENTRY}{eid}"


# -- configuration -------------------------------------------------------------------------

# Bind roots may not contain these (a root of /var would let /var/run be bound).
_PROTECTED: Final = ("/run", "/var/run", "/var/lib/docker", "/var/lib/containerd", "/proc",
                     "/sys", "/dev", "/etc", "/boot", "/usr")


def _under(path: str, root: str) -> bool:
    return root == "/" or path == root or path.startswith(root + "/")


def _clean(path: str) -> str:
    """normpath, with POSIX's leading '//' folded too (no filesystem access)."""
    return "/" + posixpath.normpath(path).lstrip("/")


@dataclass(frozen=True, slots=True)
class GuardConfig:
    """The guard's policy, built once; `decide()` reads only its arguments."""

    run: str
    network_container: str  # siblings get NetworkMode=container:<this>
    allowed_bind_roots: tuple[str, ...] = ()  # normalised in __post_init__
    labels: tuple[tuple[str, str], ...] = ()  # forced onto every created container
    seccomp_json: str | None = None  # forced as seccomp=<json>
    memory: int | None = None  # ceilings
    pids: int | None = None
    nano_cpus: int | None = None
    # The run's resolv.conf (the proxy's DNS forwarder), bound read-only at /etc/resolv.conf in
    # every sibling: with NetworkMode=container: the engine would give it the keeper's, which
    # names Docker's 127.0.0.11, and the agent's rules refuse that.
    resolv_conf: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.network_container, str) or not _NAME_RE.fullmatch(
                self.network_container):
            raise ConfigError(f"network_container {self.network_container!r} is not a "
                              "container name or ID")
        roots = []
        for root in self.allowed_bind_roots:
            if not isinstance(root, str) or not root.startswith("/"):
                raise ConfigError(f"allowed_bind_roots: {root!r} is not an absolute path")
            clean = _clean(root)
            if any(_under(p, clean) for p in _PROTECTED) or any(
                    _under(clean, p) for p in ("/proc", "/sys", "/dev", "/run", "/var/run")):
                raise ConfigError(f"allowed_bind_roots: {root!r} holds or is under a system "
                                  "directory; give the workspace and the run's tmp dir")
            roots.append(clean)
        object.__setattr__(self, "allowed_bind_roots", tuple(roots))
        for pair in self.labels:
            if (len(pair) != 2 or not all(isinstance(s, str) for s in pair)):
                raise ConfigError(f"labels: {pair!r} is not a [key, value] pair of strings")
        object.__setattr__(self, "labels", tuple((k, v) for k, v in self.labels))
        if self.seccomp_json is not None:
            try:
                profile = json.loads(self.seccomp_json)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"seccomp_json is not JSON: {exc}") from exc
            if not isinstance(profile, dict):
                raise ConfigError("seccomp_json is not a JSON object (a seccomp profile)")
        if self.resolv_conf is not None and (
                not isinstance(self.resolv_conf, str) or not self.resolv_conf.startswith("/")):
            raise ConfigError(f"resolv_conf: {self.resolv_conf!r} is not an absolute path")
        for what in ("memory", "pids", "nano_cpus"):
            value = getattr(self, what)
            if value is not None and (type(value) is not int or value <= 0):
                raise ConfigError(f"{what}: {value!r} is not a positive integer or null")

    @classmethod
    def from_json(cls, text: str) -> GuardConfig:
        """The config `python -m containers.guard --config` takes; ConfigError if bad."""
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"--config is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError("--config must be a JSON object")
        known = {"run", "network_container", "allowed_bind_roots", "labels", "seccomp_json",
                 "memory", "pids", "nano_cpus", "resolv_conf"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"--config: unknown keys {', '.join(unknown)}")
        for key in ("run", "network_container"):
            if not isinstance(raw.get(key), str):
                raise ConfigError(f"--config: {key} must be a string")
        roots = raw.get("allowed_bind_roots") or []
        labels = raw.get("labels") or []
        if isinstance(labels, dict):
            labels = list(labels.items())
        if not isinstance(roots, list) or not isinstance(labels, list):
            raise ConfigError("--config: allowed_bind_roots and labels must be lists")
        if not all(isinstance(p, list | tuple) and len(p) == 2 for p in labels):
            raise ConfigError("--config: labels must be [key, value] pairs")
        if not isinstance(raw.get("seccomp_json"), str | None):
            raise ConfigError("--config: seccomp_json must be a string (the profile) or null")
        return cls(run=raw["run"], network_container=raw["network_container"],
                   allowed_bind_roots=tuple(roots),
                   labels=tuple((p[0], p[1]) for p in labels),
                   seccomp_json=raw.get("seccomp_json"), memory=raw.get("memory"),
                   pids=raw.get("pids"), nano_cpus=raw.get("nano_cpus"),
                   resolv_conf=raw.get("resolv_conf"))

    # -- decisions ---------------------------------------------------------------------------

    def decide(self, method: str, path: str, query: str, body: bytes | None,
               owned: frozenset[str]) -> Decision:
        """The decision on one request. `body` is None when it streams (body_streams)."""
        try:
            return self._decide(method, path, query, body, owned)
        except _Refused as exc:
            return Refuse(exc.status, PREFIX + exc.message)

    def _decide(self, method: str, path: str, query: str, body: bytes | None,
                owned: frozenset[str]) -> Decision:
        prefix, rest, segs = _split(path)
        n, head = len(segs), segs[0]
        if n == 1:
            if head == "_ping" and method in ("GET", "HEAD"):
                return Allow()
            if head == "version" and method == "GET":
                return Allow()
            if head == "info" and method == "GET":
                return Allow(watch=Watch.INFO)
        if head == "images" and method == "GET" and n >= 2 and segs[-1] == "json":
            return Allow()  # the list (n == 2) or one image's inspect
        if head == "containers" and n == 2:
            if segs[1] == "json" and method == "GET":
                return Allow(watch=Watch.LIST)
            if segs[1] == "create" and method == "POST":
                return self._create(query, body)
            if method == "DELETE":
                cid = _owned_container(segs[1], owned)
                if any(k == "link" and v not in ("", "0", "false") for k, v in _query(query)):
                    raise _Refused("DELETE with link=1 removes a link, not the container; "
                                   "links are not available in the sandbox")
                return Allow(path=_pin(prefix, segs, cid), watch=Watch.REMOVE, target=cid)
        if head == "containers" and n == 3 and (method, segs[2]) in _CONTAINER_CALLS:
            cid = _owned_container(segs[1], owned)
            pinned = _pin(prefix, segs, cid)
            if segs[2] == "exec":
                return Rewrite(body=_exec_body(body), path=pinned, watch=Watch.EXEC_CREATE,
                               target=cid)
            if segs[2] == "start" and body is not None and body.strip() not in (
                    b"", b"{}", b"null"):
                raise _Refused("a body on start would change the container's host config; "
                               "send none")
            return Allow(path=pinned, target=cid)
        if head == "exec" and n == 3 and (method, segs[2]) in _EXEC_CALLS:
            eid = _owned_exec(segs[1], owned)
            return Allow(path=_pin(prefix, segs, eid))
        raise _Refused(f"{method} {rest} is not allowed in the sandbox")

    # -- container create ------------------------------------------------------------------

    def _create(self, query: str, body: bytes | None) -> Rewrite:
        names = [v for k, v in _query(query) if k == "name"]
        if len(names) > 1:
            raise _Refused("create has several name parameters; give one", 400)
        name = names[0].lstrip("/") if names and names[0] else None
        if name is not None and not _NAME_RE.fullmatch(name):
            raise _Refused(f"container name {name!r} is not valid; use [a-zA-Z0-9][a-zA-Z0-9_.-]+",
                           400)
        spec = _fields(_json_object(body, "the create body"), _CONFIG_KEYS, "container config")
        for key, why in _CONFIG_MUST_BE_UNSET.items():
            if not _zero(spec.get(key)):
                raise _Refused(f"{key} is refused: {why}")
        hc = _fields(spec.pop("HostConfig", None), _HOST_CONFIG_KEYS, "HostConfig")
        _check_networking(spec.pop("NetworkingConfig", None))
        self._check_host_config(hc)
        for key in ("ExposedPorts", "Hostname", "Domainname", *_CONFIG_MUST_BE_UNSET):
            spec.pop(key, None)  # the engine rejects them beside a container: network mode
        labels = spec.get("Labels") or {}
        if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise _Refused("Labels must be an object of strings", 400)
        spec["Labels"] = {**labels, **dict(self.labels)}
        spec["HostConfig"] = self._host_config(hc)
        return Rewrite(body=_dump(spec), watch=Watch.CREATE, name=name)

    def _check_host_config(self, hc: dict[str, Any]) -> None:
        for key, why in _HC_MUST_BE_UNSET.items():
            if not _zero(hc.get(key)):
                raise _Refused(f"HostConfig.{key} is refused: {why}")
        for key in ("MaskedPaths", "ReadonlyPaths"):
            if hc.get(key) is not None:  # even []: that replaces Docker's masks with none
                raise _Refused(f"HostConfig.{key} is refused: it would unmask /proc and /sys "
                               "(--security-opt systempaths=unconfined)")
        mode = _str(hc, "NetworkMode")
        if mode not in ("", "default", "bridge"):
            raise _Refused(f"HostConfig.NetworkMode {mode!r} is refused: siblings always share "
                           "the agent's network (and its firewall); drop --network")
        for key, allowed in _NAMESPACE_MODES.items():
            value = _str(hc, key)
            if value not in allowed:
                raise _Refused(f"HostConfig.{key} {value!r} is refused: only a private "
                               "namespace keeps the sibling inside the sandbox")
        for key, allowed, why in _CHOICES:
            value = _str(hc, key)
            if value not in allowed:
                raise _Refused(f"HostConfig.{key} {value!r} is refused: {why}")
        log = _fields(hc.get("LogConfig"), frozenset({"Type", "Config"}), "HostConfig.LogConfig")
        driver = _str(log, "Type")
        if driver not in ("", "json-file", "local", "none"):
            raise _Refused(f"HostConfig.LogConfig.Type {driver!r} is refused: that log driver "
                           "sends the output outside the sandbox; use json-file or local")
        if log:
            hc["LogConfig"] = log
        restart = _fields(hc.get("RestartPolicy"), frozenset({"Name", "MaximumRetryCount"}),
                          "HostConfig.RestartPolicy")
        policy = _str(restart, "Name")
        if policy not in ("", "no", "on-failure"):
            raise _Refused(f"HostConfig.RestartPolicy {policy!r} is refused: the sibling would "
                           "outlive the run; use no or on-failure")
        if restart:
            hc["RestartPolicy"] = restart
        oom = _int(hc, "OomScoreAdj") or 0
        if not 0 <= oom <= 1000:
            raise _Refused(f"HostConfig.OomScoreAdj {oom} is refused: a negative value shields "
                           "the sibling from the OOM killer at the host's expense")
        if self.nano_cpus is not None and (_int(hc, "CpuQuota") or _int(hc, "CpuPeriod")):
            raise _Refused("HostConfig.CpuQuota/CpuPeriod are refused: awf caps the CPUs with "
                           "NanoCpus, and the engine refuses both; use --cpus")
        for key in ("Memory", "MemorySwap", "NanoCpus", "PidsLimit"):
            _int(hc, key)
        hc["Binds"] = self._binds(hc.get("Binds"))
        hc["Mounts"] = self._mounts(hc.get("Mounts"))
        if self.resolv_conf is not None:
            targets = [b.split(":")[1 if ":" in b else 0] for b in hc["Binds"] or []]
            targets += [_str(m, "Target") for m in hc["Mounts"] or []]
            if any(posixpath.normpath(t or ".") == RESOLV_CONF for t in targets):
                raise _Refused(f"a mount at {RESOLV_CONF} is refused: siblings resolve names "
                               "through awf's proxy, like the command")

    def _binds(self, binds: object) -> list[str] | None:
        if binds is None:
            return None
        if not isinstance(binds, list) or not all(isinstance(b, str) for b in binds):
            raise _Refused("HostConfig.Binds must be a list of strings", 400)
        for spec in binds:
            parts = spec.split(":")
            if len(parts) > 3:
                raise _Refused(f"HostConfig.Binds {spec!r} is not SRC:DST[:OPTIONS]", 400)
            if len(parts) == 1:
                continue  # an anonymous volume at that path
            src = parts[0]
            if src.startswith("/"):
                problem = self._bind_problem(src)
                if problem:
                    raise _Refused(f"HostConfig.Binds {spec!r} is refused: {problem}")
            elif _NAME_RE.fullmatch(src):
                raise _Refused(f"HostConfig.Binds {spec!r} is refused: {_NAMED_VOLUME}")
            else:
                raise _Refused(f"HostConfig.Binds {spec!r}: {src!r} is neither an absolute "
                               "path nor a volume name", 400)
        return binds

    def _mounts(self, mounts: object) -> list[dict[str, Any]] | None:
        if mounts is None:
            return None
        if not isinstance(mounts, list):
            raise _Refused("HostConfig.Mounts must be a list", 400)
        out = []
        for i, item in enumerate(mounts):
            where = f"HostConfig.Mounts[{i}]"
            m = _fields(item, _MOUNT_KEYS, where)
            kind, src = _str(m, "Type"), _str(m, "Source")
            if kind == "bind":
                problem = self._bind_problem(src)
                if problem:
                    raise _Refused(f"{where} (bind) is refused: {problem}")
            elif kind == "volume":
                if src:
                    raise _Refused(f"{where} (volume {src!r}) is refused: {_NAMED_VOLUME}")
                options = _fields(m.get("VolumeOptions"), _VOLUME_OPTION_KEYS,
                                  f"{where}.VolumeOptions")
                driver = _fields(options.get("DriverConfig"), frozenset({"Name", "Options"}),
                                 f"{where}.VolumeOptions.DriverConfig")
                if _str(driver, "Name") not in ("", "local") or not _zero(driver.get("Options")):
                    raise _Refused(f"{where}.VolumeOptions.DriverConfig is refused: volume "
                                   "driver options can mount host paths or remote shares")
                if options:
                    m["VolumeOptions"] = options
            elif kind == "tmpfs":
                if src:
                    raise _Refused(f"{where}: a tmpfs mount takes no Source", 400)
            else:
                raise _Refused(f"{where}.Type {kind!r} is refused; use bind, volume or tmpfs")
            out.append(m)
        return out

    def _bind_problem(self, src: str) -> str | None:
        if not src.startswith("/"):
            return f"{src!r} is not an absolute path"
        path = _clean(src)
        if path.endswith(("docker.sock", "containerd.sock")):
            return f"{src!r} is a container engine socket: it would hand over the host"
        if _under(path, "/run") or _under(path, "/var/run"):
            return f"{src!r} is under /run, where the engine's sockets live"
        if path not in self.allowed_bind_roots:
            # Exactly a root, never a path below one: the engine resolves a bind's source when
            # the container starts, so a directory inside the workspace that the sandbox swaps
            # for a symlink (to /, say) after this check would be followed. The roots' own
            # parents are out of the sandbox's reach.
            roots = ", ".join(self.allowed_bind_roots) or "none"
            return (f"{src!r} may not be bound: only the workspace itself may ({roots}); "
                    "a path inside it could be swapped for a symlink before the start")
        return None

    def _host_config(self, hc: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in hc.items()
               if k not in _HC_MUST_BE_UNSET and k not in ("MaskedPaths", "ReadonlyPaths")}
        out["NetworkMode"] = f"container:{self.network_container}"
        out["CapDrop"] = ["ALL"]
        out["CapAdd"] = list(DEFAULT_CAPS)
        out["SecurityOpt"] = ["no-new-privileges"] + (
            [f"seccomp={self.seccomp_json}"] if self.seccomp_json is not None else [])
        out["CgroupnsMode"] = "private"
        if self.resolv_conf is not None:
            out["Mounts"] = [*(out.get("Mounts") or []),
                             {"Type": "bind", "Source": self.resolv_conf, "Target": RESOLV_CONF,
                              "ReadOnly": True}]
        memory = _ceiling(hc.get("Memory"), self.memory)
        if memory is not None:
            out["Memory"] = memory
        if self.memory is not None and memory is not None:
            swap = hc.get("MemorySwap")
            out["MemorySwap"] = (memory if swap is None or swap <= 0
                                 else min(max(swap, memory), self.memory))
        for key, ceiling in (("PidsLimit", self.pids), ("NanoCpus", self.nano_cpus)):
            value = _ceiling(hc.get(key), ceiling)
            if value is not None:
                out[key] = value
        return out


def _ceiling(requested: int | None, ceiling: int | None) -> int | None:
    """min(requested, ceiling); a missing, 0 or negative (unlimited) request takes the ceiling."""
    if ceiling is None:
        return requested
    if requested is None or requested <= 0:
        return ceiling
    return min(requested, ceiling)


# -- field lists -------------------------------------------------------------------------------

# container.Config (API 1.41), plus the two nested sections of the create body.
_CONFIG_KEYS: Final = frozenset({
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
    "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped",
    "Image", "Volumes", "WorkingDir", "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild",
    "Labels", "StopSignal", "StopTimeout", "Shell", "HostConfig", "NetworkingConfig",
})
_CONFIG_MUST_BE_UNSET: Final = {
    "MacAddress": "the sibling shares the agent's network interface",
}
_HC_MUST_BE_UNSET: Final = {
    "Privileged": "a privileged container has every capability and device: it owns the host",
    "CapAdd": "awf grants Docker's default capabilities minus NET_RAW, and no others",
    "Devices": "host devices are not available in the sandbox",
    "DeviceRequests": "host devices (GPUs) are not available in the sandbox",
    "DeviceCgroupRules": "device access rules would open host devices",
    "SecurityOpt": "awf sets seccomp and no-new-privileges itself",
    "Sysctls": "kernel parameters are not the sandbox's to change",
    "VolumesFrom": "it would reach other containers' volumes",
    "VolumeDriver": "volume plugins run outside the sandbox",
    "PortBindings": "publishing ports would open an inbound path into the sandbox",
    "PublishAllPorts": "publishing ports would open an inbound path into the sandbox",
    "Links": "the sibling shares the agent's network; links do not apply",
    "Dns": "the sibling uses the agent's network and resolver",
    "DnsOptions": "the sibling uses the agent's network and resolver",
    "DnsSearch": "the sibling uses the agent's network and resolver",
    "ExtraHosts": "the sibling uses the agent's network and resolver",
    "Cgroup": "sharing another container's cgroup is not allowed",
    "CgroupParent": "another cgroup parent would escape awf's limits",
    "OomKillDisable": "an unkillable container could stall the host",
}
_NAMESPACE_MODES: Final = {
    "PidMode": ("",),
    "IpcMode": ("", "private", "none", "shareable"),
    "UTSMode": ("",),
    "UsernsMode": ("",),
    "CgroupnsMode": ("", "private"),
}
_CHOICES: Final = (
    ("Runtime", ("", "runc"), "another runtime may not apply the guard's confinement; use runc"),
    ("Isolation", ("", "default"), "only the default isolation exists on Linux"),
)
# Passed on as sent: they only restrict the container, or act inside it.
_HC_PASS: Final = frozenset({
    "AutoRemove", "ConsoleSize", "ContainerIDFile", "ReadonlyRootfs", "GroupAdd", "Init",
    "ShmSize", "Tmpfs", "Ulimits", "CpuShares", "CpuPeriod", "CpuQuota", "CpusetCpus",
    "CpusetMems", "BlkioWeight", "MemoryReservation", "MemorySwappiness", "CapDrop",
})
_HOST_CONFIG_KEYS: Final = _HC_PASS | frozenset(_HC_MUST_BE_UNSET) | frozenset(
    _NAMESPACE_MODES) | frozenset({
        "Binds", "Mounts", "NetworkMode", "LogConfig", "RestartPolicy", "Runtime", "Isolation",
        "OomScoreAdj", "Memory", "MemorySwap", "NanoCpus", "PidsLimit", "MaskedPaths",
        "ReadonlyPaths",
    })
_MOUNT_KEYS: Final = frozenset({"Type", "Source", "Target", "ReadOnly", "Consistency",
                                "BindOptions", "VolumeOptions", "TmpfsOptions"})
# Anonymous volumes die with their container (awf removes siblings with their volumes); a
# named one outlives the run, is shared with anything else on the host that names it, and
# would be created on the fly by a bind.
_NAMED_VOLUME: Final = ("named volumes outlive the run and can hold other projects' data; use "
                        "an anonymous volume (give only the container path), a tmpfs or the "
                        "workspace")
_VOLUME_OPTION_KEYS: Final = frozenset({"NoCopy", "Labels", "DriverConfig"})
_EXEC_KEYS: Final = frozenset({"User", "Privileged", "Tty", "ConsoleSize", "AttachStdin",
                               "AttachStderr", "AttachStdout", "Detach", "DetachKeys", "Env",
                               "WorkingDir", "Cmd"})
_CONTAINER_CALLS: Final = frozenset({
    ("POST", "start"), ("POST", "wait"), ("POST", "stop"), ("POST", "kill"),
    ("POST", "resize"), ("POST", "attach"), ("POST", "exec"), ("GET", "json"),
    ("GET", "logs"), ("GET", "archive"), ("HEAD", "archive"), ("PUT", "archive"),
})
_EXEC_CALLS: Final = frozenset({("POST", "start"), ("POST", "resize"), ("GET", "json")})


# -- helpers -------------------------------------------------------------------------------


def _split(path: str) -> tuple[str, str, list[str]]:
    """(version prefix, rest, segments of rest); refuses old versions and unplain paths."""
    m = _VERSION_RE.match(path)
    prefix, rest = (m.group(0), path[m.end():]) if m else ("", path)
    if m is not None and (int(m.group(1)), int(m.group(2))) < MIN_API:
        raise _Refused(f"API version {m.group(0)[2:]} is older than the guard's minimum "
                       f"{MIN_API[0]}.{MIN_API[1]} (it let start change the host config)")
    segs = rest[1:].split("/") if rest.startswith("/") else [""]
    if "%" in rest or any(s in (".", "..") for s in segs):
        raise _Refused(f"path {path!r} has percent-encoding or dot segments; send it plainly",
                       400)
    return prefix, rest, segs


def _pin(prefix: str, segs: list[str], ident: str) -> str:
    return prefix + "/" + "/".join((segs[0], ident, *segs[2:]))


def _query(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


def _owned_container(ref: str, owned: frozenset[str]) -> str:
    """The full ID an owned reference (ID, ID prefix of 12+, recorded name) stands for."""
    if _ID_RE.fullmatch(ref) and ref in owned:
        return ref
    if _PREFIX_RE.fullmatch(ref):
        found = [e for e in owned if _ID_RE.fullmatch(e) and e.startswith(ref)]
        if len(found) == 1:
            return found[0]
    named = NAME_ENTRY + ref + "="
    for entry in owned:
        if entry.startswith(named):
            return entry[len(named):]
    raise _Refused(f"container {ref!r} was not created through the guard; the sandbox may "
                   "only touch its own containers")


def _owned_exec(ref: str, owned: frozenset[str]) -> str:
    if _PREFIX_RE.fullmatch(ref):
        found = [e[len(EXEC_ENTRY):] for e in owned
                 if e.startswith(EXEC_ENTRY) and e[len(EXEC_ENTRY):].startswith(ref)]
        if len(found) == 1:
            return found[0]
    raise _Refused(f"exec instance {ref!r} was not created through the guard on a sandbox "
                   "container")


def _exec_body(body: bytes | None) -> bytes:
    spec = _fields(_json_object(body, "the exec body"), _EXEC_KEYS, "exec config")
    if not _zero(spec.get("Privileged")):
        raise _Refused("exec with Privileged is refused: it would give the process every "
                       "capability")
    return _dump(spec)


def _check_networking(raw: object) -> None:
    nc = _fields(raw, frozenset({"EndpointsConfig"}), "NetworkingConfig")
    endpoints = nc.get("EndpointsConfig") or {}
    if not isinstance(endpoints, dict):
        raise _Refused("NetworkingConfig.EndpointsConfig must be an object", 400)
    for network, settings in endpoints.items():
        # The docker CLI always sends an empty endpoint for the "default" network.
        if network not in ("default", "bridge") or not _zero(settings, deep=True):
            raise _Refused(f"NetworkingConfig.EndpointsConfig {network!r} is refused: siblings "
                           "always share the agent's network; drop --network, --ip and "
                           "--network-alias")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"field {key!r} appears twice in one JSON object", 400)
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise _Refused(f"{name} is not JSON", 400)


def _json_object(body: bytes | None, what: str) -> dict[str, Any]:
    try:
        value = json.loads((body or b"").decode("utf-8"), object_pairs_hook=_reject_duplicates,
                           parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Refused(f"{what} is not JSON: {exc}", 400) from exc
    if not isinstance(value, dict):
        raise _Refused(f"{what} is not a JSON object", 400)
    return value


def _dump(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("ascii")


def _zero(value: object, *, deep: bool = False) -> bool:
    """None, false, 0, "", [] or {}; with deep, also containers holding only zeros."""
    if value is None or value is False or value == "" or (
            type(value) in (int, float) and value == 0):
        return True
    if isinstance(value, list | dict):
        if not value:
            return True
        if deep:
            items = value.values() if isinstance(value, dict) else value
            return all(_zero(v, deep=True) for v in items)
    return False


def _fields(obj: object, known: frozenset[str], where: str) -> dict[str, Any]:
    """The object's known fields, spelled exactly; see the module notes on case folding."""
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise _Refused(f"{where} must be a JSON object", 400)
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key in known:
            out[key] = value
            continue
        if not key.isascii():
            raise _Refused(f"{where} field name {key!r} is not ASCII; the engine could fold "
                           "it into a known field")
        spelled = next((k for k in known if k.lower() == key.lower()), None)
        if spelled is not None:
            raise _Refused(f"{where} field {key!r} must be spelled {spelled!r}; the engine "
                           "ignores case, the guard does not")
        if not _zero(value):
            raise _Refused(f"unknown {where} field {key!r}; the guard refuses what it does "
                           "not know")
    return out


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Refused(f"{key} must be a string", 400)
    return value


def _int(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is not None and type(value) is not int:
        raise _Refused(f"HostConfig.{key} must be an integer", 400)
    return value


def body_streams(method: str, path: str) -> bool:
    """The request body is streamed to the engine, not read first: archive uploads."""
    if method != "PUT":
        return False
    try:
        _, _, segs = _split(path)
    except _Refused:
        return False
    return len(segs) == 3 and segs[0] == "containers" and segs[2] == "archive"


# -- answers from the engine -----------------------------------------------------------------


def record(owned: frozenset[str], decision: Allow | Rewrite, status: int,
           body: bytes) -> frozenset[str]:
    """The owned set after the engine answered `status`/`body` to an allowed call."""
    watch = decision.watch
    if watch in (Watch.CREATE, Watch.EXEC_CREATE) and status == 201:
        try:
            new_id = json.loads(body.decode("utf-8")).get("Id")
        except (UnicodeDecodeError, ValueError, AttributeError):
            return owned
        if not isinstance(new_id, str) or not _ID_RE.fullmatch(new_id):
            return owned
        if watch is Watch.EXEC_CREATE:
            return owned | {exec_entry(new_id)}
        added = {container_entry(new_id)}
        if decision.name:
            added.add(name_entry(decision.name, new_id))
        return owned | added
    if watch is Watch.REMOVE and decision.target and (200 <= status < 300 or status == 404):
        cid = decision.target
        return frozenset(e for e in owned if e != cid and not (
            e.startswith(NAME_ENTRY) and e.endswith("=" + cid)))
    return owned


def filter_list(body: bytes, owned: frozenset[str]) -> bytes:
    """GET /containers/json: only the owned containers."""
    try:
        items = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return b"[]"
    if not isinstance(items, list):
        return b"[]"
    return _dump([c for c in items if isinstance(c, dict) and c.get("Id") in owned])


# GET /info keeps what clients use to adapt (versions, OS, CPUs, memory) and nothing about
# other containers, images, networks, registries, plugins, paths or the swarm.
_INFO_KEYS: Final = ("ServerVersion", "OperatingSystem", "OSType", "OSVersion", "Architecture",
                     "KernelVersion", "NCPU", "MemTotal", "Driver", "CgroupDriver",
                     "CgroupVersion", "DefaultRuntime", "MemoryLimit", "SwapLimit",
                     "PidsLimit", "CpuCfsPeriod", "CpuCfsQuota", "IPv4Forwarding")


def redact_info(body: bytes) -> bytes:
    """GET /info: the harmless subset of the engine's answer."""
    try:
        info = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        info = {}
    if not isinstance(info, dict):
        info = {}
    return _dump({k: info[k] for k in _INFO_KEYS if k in info})
