"""`awf run --backend docker`: the command in a container whose only way out is awf-proxy.

    awf-<run>-int 172.30.0.0/24, fd61:7766::/64 (see INT_INTERNAL)  awf-<run>-ext (bridge, NAT)
     ├─ .10/::10 awf-<run>-proxy  :3128 :3129 :53, inet awf_proxy ─┘ the only way out
     └─ .20/::20 awf-<run>-net    keeper: inet awf, routes via .10, self-test, then no caps
                 └─ awf-<run>-agent  network_mode=container:awf-<run>-net, cap_drop ALL

Order (docs/architecture.md §6): images, subnet, both networks in parallel, proxy and keeper created
and started in parallel, readiness from their log lines (`awf-proxy listening on`,
`awf-netns ready <sha>`, both hashes compared with our own model), and only then is the agent
created, attached and started. A start that fails names the container and quotes its last log
lines; exit 125 and the agent never exists. Cleanup runs on every path and is idempotent; `awf
cleanup` finds what a killed run left by the io.awf.run label.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pwd
import queue
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from pathlib import Path
from types import FrameType
from typing import ClassVar

import containers
from awf import apisidecar
from awf import run as shared
from awf.config import RunConfig
from containers import agentenv, hostview, labels, resolvers, runs, seccomp, topology
from containers.driver import STDERR, DockerDriver
from containers.errors import DockerError
from containers.keeper import FAILED as KEEPER_FAILED
from containers.keeper import READY as KEEPER_READY
from containers.proxy_entry import FAILED as PROXY_FAILED
from containers.proxy_entry import RULES as PROXY_RULES
from containers.spec import ContainerSpec, Limits, Mount, NetworkAttachment
from netfilter import netns
from netfilter.errors import SandboxError
from netfilter.ruleset import IPAddress, IPNetwork, ruleset_to_spec
from proxy import __version__
from proxy.errors import AwfError, ConfigError

STARTUP_TIMEOUT = 30.0
NOBODY = 65534
CREATE_RETRIES = 6
MiB = 1024 * 1024
# -int is a plain bridge, not a Docker "internal" one: with br_netfilter on (Docker turns it
# on), an internal network's isolation rules (`-i br ! -d SUBNET -j DROP`, `-o br ! -s SUBNET
# -j DROP`) drop the agent's routed packets to the proxy (destination: the real address, so
# the proxy's redirect sees it) and the proxy's replies. The agent still has one way out:
# its routes (set by the keeper; it has no NET_ADMIN or NET_RAW to change them or to forge
# frames) send everything, the bridge's own gateway address included, to the proxy, which
# does not forward; and `inet awf` filters in its namespace.
INT_INTERNAL = False
PROXY_LIMITS = Limits(memory=512 * MiB, memory_swap=512 * MiB, pids=256)
KEEPER_LIMITS = Limits(memory=64 * MiB, memory_swap=64 * MiB, pids=32)


HOST_NAME = "host.docker.internal"


@dataclass(frozen=True, slots=True)
class Prepared:
    """Everything checked before anything is created: a bad flag is exit 2 with nothing made."""

    volumes: tuple[agentenv.Volume, ...]
    env_file: tuple[tuple[str, str], ...]
    want_v4: IPNetwork | None
    want_v6: IPNetwork | None
    allow_ranges: tuple[IPNetwork, ...]
    dns_servers: tuple[IPAddress, ...]
    workspace: str | None  # what the sandbox gets read-write (and the guard may bind)
    share_home: tuple[str, ...] = ()  # --share-home, resolved and checked
    attach: tuple[str, ...] = ()  # --topology-attach networks, checked (the proxy joins them)
    attach_ranges: tuple[IPNetwork, ...] = ()  # their subnets less their gateways
    stdin: bool = False  # our stdin goes to the command: -t, or piped (as on the netns backend)
    dns_flags: tuple[str, ...] = ()  # awf-proxy's --dns-servers when awf chose them (issue 19)


def prepare(cfg: RunConfig, environ: dict[str, str]) -> Prepared:
    terminal = os.isatty(0)
    if cfg.tty and not terminal:
        raise ConfigError("-t: stdin is not a terminal; drop -t to pipe input to the command")
    volumes = tuple(agentenv.parse_volume(v, environ=environ) for v in cfg.volumes)
    for spec, v in zip(cfg.volumes, volumes, strict=True):
        store = hostview.secret_store(v.source) or hostview.secret_store(v.target)
        if store is not None:
            raise ConfigError(f"-v {spec!r}: {store} holds credentials and is never mounted "
                              "into the sandbox")
    env_file: list[tuple[str, str]] = []
    if cfg.env_file is not None:
        try:
            text = cfg.env_file.read_text()
        except OSError as exc:
            raise ConfigError(f"--env-file {str(cfg.env_file)!r}: {exc.strerror}") from exc
        env_file = agentenv.parse_env_file(text, str(cfg.env_file))
    want_v4 = want_v6 = None
    if cfg.subnet is not None:
        want_v4 = topology.parse_subnet("--subnet", cfg.subnet, topology.DEFAULT_V4, 24)
    if cfg.subnet6 is not None:
        want_v6 = topology.parse_subnet("--subnet6", cfg.subnet6, topology.DEFAULT_V6, 64)
    ranges = tuple(ip_network(item.strip(), strict=False) for entry in cfg.proxy.allow_range
                   for item in entry.split(",") if item.strip())
    # issue 19: the proxy asks exactly these resolvers (--dns-servers, else the host's) and
    # its egress lets port 53 reach exactly them, private or link-local as they may be
    dns, dns_flags = resolvers.for_proxy(cfg.proxy.dns_servers)
    # Build both rulesets once on the default layout: a port clash or a bad range is exit 2
    # here, before anything exists.
    probe = topology.Subnets(topology.DEFAULT_V4, topology.DEFAULT_V6, topology.POOL_V4)
    ports = topology.tcp_ports(cfg.proxy.allow_ports | cfg.intercept_ports)
    topology.proxy_ruleset(probe, ports, allow_ranges=ranges, dns_servers=dns)
    topology.agent_ruleset(probe, ports)
    return Prepared(volumes, tuple(env_file), want_v4, want_v6, ranges, tuple(dns),
                    workspace(environ), _share_home(cfg, environ),
                    stdin=cfg.tty or not terminal, dns_flags=dns_flags)


def _share_home(cfg: RunConfig, environ: dict[str, str]) -> tuple[str, ...]:
    """--share-home DIR: a directory under the caller's home, resolved (exit 2 otherwise)."""
    home = caller_home(environ)
    out: list[str] = []
    for spec in cfg.share_home:
        path = os.path.realpath(os.path.join(home, os.path.expanduser(spec)))
        why = hostview.share_home_error(path, home, hostview.HostFacts.live())
        if why is not None:
            raise ConfigError(f"--share-home {spec!r}: {why}")
        out.append(path)
    return tuple(out)


# --- --topology-attach (docs/decisions.md) ----------------------------------------------------


def _topology_attach(driver: DockerDriver, names: tuple[str, ...]
                     ) -> tuple[tuple[str, ...], tuple[IPNetwork, ...]]:
    """Each network checked (exit 2 otherwise): Prepared's `attach` and `attach_ranges`."""
    attach: list[str] = []
    ranges: list[IPNetwork] = []
    for name in names:
        info = driver.inspect_network(name)
        if info is None:
            raise ConfigError(f"--topology-attach {name!r}: no such Docker network (create it "
                              "and start the containers the command should reach on it)")
        got = attach_ranges(name, info)
        attach.append(str(info.get("Name") or name))
        ranges.extend(r for r in got if r not in ranges)
    return tuple(attach), tuple(ranges)


def attach_ranges(name: str, info: dict[str, object]) -> tuple[IPNetwork, ...]:
    """The destinations an attached network adds for allowed names: its subnets less their
    gateways (the host's address on that bridge: reaching the host stays
    --enable-host-access's). Refused: host, none, awf's own networks, a network with no
    subnet, and one whose subnets hold non-private addresses."""
    driver = str(info.get("Driver") or "")
    labels_ = info.get("Labels") or {}
    if driver in ("host", "null", "none") or name in ("host", "none"):
        raise ConfigError(f"--topology-attach {name!r}: a {driver or name} network has no "
                          "subnet to join; name a bridge or overlay network")
    if isinstance(labels_, dict) and labels.RUN in labels_:
        raise ConfigError(f"--topology-attach {name!r}: that is an awf run's own network")
    out: list[IPNetwork] = []
    ipam = info.get("IPAM") or {}
    configs = ipam.get("Config") if isinstance(ipam, dict) else None
    for pool in configs or []:
        try:
            subnet = ip_network(str(pool.get("Subnet")), strict=False)
        except ValueError:
            continue
        if not subnet.is_private or subnet.prefixlen == 0:
            raise ConfigError(f"--topology-attach {name!r}: its subnet {subnet} is not a "
                              "private range; awf does not widen the proxy's egress to it")
        gateway = pool.get("Gateway")
        try:
            gw = ip_address(str(gateway).split("/")[0]) if gateway else None
        except ValueError:
            gw = None
        if gw is not None and gw in subnet:
            out.extend(subnet.address_exclude(ip_network(gw)))  # type: ignore[arg-type]
        else:
            out.append(subnet)
    if not out:
        raise ConfigError(f"--topology-attach {name!r}: the network has no IP subnet")
    return tuple(sorted(out, key=lambda n: (n.version, str(n))))


@dataclass(kw_only=True)
class Run(shared.Record):
    BACKEND: ClassVar[str] = "docker"
    work: Path
    driver: DockerDriver
    names: topology.Names
    networks: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    agent: str | None = None
    output: threading.Thread | None = None
    interrupted: bool = False
    subnets: topology.Subnets | None = None
    masked: tuple[str, ...] = ()
    api: apisidecar.Sidecar | None = None  # --- API proxy sidecar (awf/apisidecar.py) ---

    @property
    def api_ports(self) -> frozenset[int]:
        return apisidecar.PORTS if self.api is not None else frozenset()

    def run_json(self, code: int) -> dict[str, object]:
        return {**super().run_json(code), "masked": list(self.masked),
                "subnets": None if self.subnets is None else {
                    "v4": str(self.subnets.v4),
                    "v6": str(self.subnets.v6) if self.subnets.v6 else None,
                    "ext": str(self.subnets.ext_v4)}}

    def labels(self, role: labels.Role) -> tuple[tuple[str, str], ...]:
        return (*labels.run_labels(self.run, role, owner_pid=os.getpid(),
                                   host=socket.gethostname(), started=int(time.time()),
                                   version=__version__, work_dir=str(self.work),
                                   logs_dir=str(self.logs)),)


# --- entry ------------------------------------------------------------------------------------


def run_docker(cfg: RunConfig) -> int:
    t0 = time.monotonic()
    environ = dict(os.environ)
    prepared = prepare(cfg, environ)
    api = apisidecar.plan(cfg, environ)  # a bad --*-api-target: exit 2, nothing made
    early: dict[str, float] = {}
    driver = DockerDriver.from_env()
    early["docker"] = round(time.monotonic() - t0, 4)
    reap_dead_runs(driver)
    from containers.images import ensure_images

    try:
        images = ensure_images(driver, progress=shared.progress)
    except OSError as exc:
        raise DockerError(f"cannot prepare awf's images: {exc}") from exc
    early["images"] = round(time.monotonic() - t0, 4)
    agent_image = cfg.agent_image or images.agent
    if cfg.agent_image and not driver.image_exists(cfg.agent_image):
        raise DockerError(f"--agent-image {cfg.agent_image!r} is not a local image; build or "
                          "load it first (nothing can be pulled)")
    if cfg.topology_attach:
        nets, ranges = _topology_attach(driver, cfg.topology_attach)
        prepared = dataclasses.replace(prepared, attach=nets, attach_ranges=ranges)
    run_id = secrets.token_hex(4)
    work = Path(tempfile.mkdtemp(prefix=f"awf-{run_id}-", dir=cfg.work_dir))
    try:
        run = Run(cfg=cfg, run=run_id, logs=shared.logs_dir(cfg.logs_dir, run_id), work=work,
                  t0=t0, driver=driver, names=topology.Names(run_id))
        run.timings.update(early)
        run.api = api
        lease = _take_lease(work)
    except BaseException:  # an AwfError, or a signal (awf.signals) before the run began
        shutil.rmtree(work, ignore_errors=True)
        raise

    def finish(interrupted: bool) -> None:
        run.interrupted = interrupted
        try:
            teardown(run)
        finally:
            os.close(lease)

    return shared.conduct(run, lambda: _run(run, prepared, images.runtime, agent_image, environ),
                          finish)


def _take_lease(work: Path) -> int:
    """An exclusive flock held for awf's whole life; the proxy container watches it."""
    path = work / "lease"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _proxy_user() -> tuple[int, int]:
    who = shared.caller()
    return who if who is not None else (NOBODY, NOBODY)


# --- start ------------------------------------------------------------------------------------


def _taken(driver: DockerDriver) -> list[IPNetwork]:
    nets: list[IPNetwork] = [*netns.host_networks(), *driver.network_subnets()]
    try:
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "nameserver":
                try:
                    nets.append(ip_network(words[1].split("%")[0]))
                except ValueError:
                    pass
    except OSError:
        pass
    # Default routes are not "taken"; a /0 would swallow every candidate.
    return [n for n in nets if n.prefixlen > 0]


def _create_networks(run: Run, prepared: Prepared) -> topology.Subnets:
    ipv6 = run.cfg.ipv6 != "off"
    pool = ThreadPoolExecutor(2)
    try:
        for attempt in range(CREATE_RETRIES):
            subnets = topology.choose_subnets(
                _taken(run.driver), want_v4=prepared.want_v4,  # type: ignore[arg-type]
                want_v6=prepared.want_v6, ipv6=ipv6, skip=0)  # type: ignore[arg-type]
            n = run.names
            jobs = {
                n.int_net: pool.submit(
                    run.driver.create_network, n.int_net, internal=INT_INTERNAL,
                    subnet_v4=str(subnets.v4),
                    subnet_v6=str(subnets.v6) if subnets.v6 else None,
                    labels=dict(run.labels(labels.Role.NETWORK_INT))),
                n.ext_net: pool.submit(
                    run.driver.create_network, n.ext_net, internal=False,
                    subnet_v4=str(subnets.ext_v4), subnet_v6=None,
                    labels=dict(run.labels(labels.Role.NETWORK_EXT))),
            }
            errors: list[DockerError] = []
            for name, job in jobs.items():
                try:
                    job.result()
                    run.networks.append(name)
                except DockerError as exc:
                    errors.append(exc)
            if not errors:
                return subnets
            for name in list(run.networks):  # try again from scratch
                run.driver.remove_network(name)
                run.networks.remove(name)
            text = " ".join(str(e) for e in errors)
            if "overlap" in text.lower() and attempt + 1 < CREATE_RETRIES:
                continue  # raced with another run or network: the next choice sees it
            if subnets.v6 is not None and run.cfg.ipv6 == "auto" and "overlap" not in text:
                shared.say("Docker refused the IPv6 subnet; going on with IPv4 only (IPv6 "
                           "disabled in the sandbox)")
                ipv6 = False
                continue
            raise errors[0]
        raise DockerError("could not create the run's networks: every subnet tried overlapped")
    finally:
        pool.shutdown(wait=True)


def _proxy_spec(run: Run, subnets: topology.Subnets, prepared: Prepared,
                runtime: str) -> tuple[ContainerSpec, str]:
    ports = topology.tcp_ports(run.cfg.proxy.allow_ports | run.cfg.intercept_ports)
    ranges = (*prepared.allow_ranges, *prepared.attach_ranges)  # --topology-attach's subnets
    ruleset = topology.proxy_ruleset(subnets, ports, allow_ranges=ranges,
                                     dns_servers=prepared.dns_servers,
                                     sidecar_ports=run.api_ports)
    uid, gid = _proxy_user()
    # issue 19: the host's hosts file (or --hosts-file's), read-only, not the container's own
    hosts, hosts_flags = resolvers.hosts_file_for_proxy(
        run.cfg.proxy.hosts_file, named="hosts_file" in run.cfg.proxy.flags)
    argv = [*shared.proxy_argv(subnets.proxy_addrs, run.cfg, "/logs"), *prepared.dns_flags,
            *hosts_flags]
    for net in prepared.attach_ranges:
        argv += ["--allow-range", str(net)]
    gateway = subnets.ext_v4.network_address + 1
    if run.cfg.enable_host_access:
        # host.docker.internal is this host's address on the egress bridge: a name like any
        # other, allowed, resolved statically and let into that one private address
        argv += ["--allow-domains", HOST_NAME, "--resolve", f"{HOST_NAME}={gateway}",
                 "--allow-range", f"{gateway}/32"]
        ruleset = topology.proxy_ruleset(
            subnets, ports, allow_ranges=(*ranges, ip_network(f"{gateway}/32")),
            dns_servers=prepared.dns_servers, sidecar_ports=run.api_ports)
    spec = {"ruleset": ruleset_to_spec(ruleset), "uid": uid, "gid": gid, "argv": argv,
            "ext_gateway": str(gateway),
            "dns_probe": resolvers.probe_entries(prepared.dns_servers)}
    os.chown(run.logs, uid, gid)  # the proxy writes here as uid:gid; given back at the end
    sysctls = [("net.ipv4.ip_unprivileged_port_start", "0"), ("net.ipv4.ip_forward", "0")]
    if subnets.v6 is not None:
        sysctls.append(("net.ipv6.conf.all.forwarding", "0"))
    n = run.names
    return ContainerSpec(
        name=n.proxy, image=runtime,
        entrypoint=("python", "-m", "containers.proxy_entry"), command=(json.dumps(spec),),
        labels=run.labels(labels.Role.PROXY),
        network=n.int_net, ipv4_address=str(subnets.proxy_v4),
        ipv6_address=str(subnets.proxy_v6) if subnets.proxy_v6 else None,
        extra_networks=(NetworkAttachment(n.ext_net),
                        *(NetworkAttachment(net) for net in prepared.attach)),
        mounts=(Mount(str(run.logs), "/logs", read_only=False),
                Mount(str(run.work / "lease"), "/run/awf-lease", read_only=True),
                *([Mount(hosts, resolvers.PROXY_HOSTS, read_only=True)] if hosts else [])),
        tmpfs=(("/tmp", "rw,size=16m,mode=1777"),),
        cap_drop=("ALL",), cap_add=("NET_ADMIN", "SETUID", "SETGID"),
        security_opt=("no-new-privileges",), read_only=True, limits=PROXY_LIMITS,
        sysctls=tuple(sysctls),
    ), ruleset.sha256()


def _keeper_spec(run: Run, subnets: topology.Subnets, runtime: str) -> tuple[ContainerSpec, str]:
    ports = topology.tcp_ports(run.cfg.proxy.allow_ports | run.cfg.intercept_ports)
    ruleset = topology.agent_ruleset(subnets, ports, run.api_ports)
    spec = {"ruleset": ruleset_to_spec(ruleset), "subnet_v4": str(subnets.v4),
            "subnet_v6": str(subnets.v6) if subnets.v6 else None,
            "startup_timeout": STARTUP_TIMEOUT}
    sysctls = [("net.ipv4.conf.all.accept_redirects", "0"),
               ("net.ipv4.conf.default.accept_redirects", "0")]
    if subnets.v6 is not None:
        sysctls += [("net.ipv6.conf.all.accept_ra", "0"), ("net.ipv6.conf.default.accept_ra", "0"),
                    ("net.ipv6.conf.eth0.accept_ra", "0"),  # all/default miss an existing eth0
                    ("net.ipv6.conf.all.accept_redirects", "0"),
                    ("net.ipv6.conf.default.accept_redirects", "0")]
    else:
        sysctls += [("net.ipv6.conf.all.disable_ipv6", "1"),
                    ("net.ipv6.conf.default.disable_ipv6", "1")]
    n = run.names
    return ContainerSpec(
        name=n.keeper, image=runtime,
        entrypoint=("python", "-m", "containers.keeper"), command=(json.dumps(spec),),
        labels=run.labels(labels.Role.NET),
        network=n.int_net, ipv4_address=str(subnets.keeper_v4),
        ipv6_address=str(subnets.keeper_v6) if subnets.keeper_v6 else None,
        cap_drop=("ALL",), cap_add=("NET_ADMIN", "SETUID", "SETGID", "SETPCAP"),
        security_opt=("no-new-privileges",), read_only=True, limits=KEEPER_LIMITS,
        tmpfs=(("/tmp", "rw,size=1m"),), sysctls=tuple(sysctls),
    ), ruleset.sha256()


class _Watch:
    """Follows one container's log lines until it is ready or fails."""

    def __init__(self, driver: DockerDriver, name: str, ready: Callable[[list[str]], bool],
                 failed: str, t0: float) -> None:
        self.name, self.lines, self.done = name, [], threading.Event()
        self.ok = False
        self.at = 0.0  # seconds after t0 when it was ready
        self.t0 = t0
        self._driver, self._ready, self._failed = driver, ready, failed
        self.thread = threading.Thread(target=self._follow, name=f"watch-{name}", daemon=True)

    lines: list[str]

    def _follow(self) -> None:
        stream: Iterator[str] | None = None
        try:
            stream = self._driver.stream_logs(self.name)
            for line in stream:
                self.lines.append(line)
                if line.startswith(self._failed):
                    return
                if self._ready(self.lines):
                    self.ok = True
                    self.at = round(time.monotonic() - self.t0, 4)
                    return
        except AwfError as exc:
            self.lines.append(f"({exc})")
        finally:
            if stream is not None:
                try:
                    stream.close()  # type: ignore[attr-defined]
                except Exception:  # closing a dead stream
                    pass
            self.done.set()

    def failure(self) -> str:
        tail = " | ".join(ln for ln in self.lines[-8:] if ln.strip()) or "no output"
        state = None
        try:
            state = self._driver.state(self.name)
        except AwfError:
            pass
        how = ""
        if state is not None and not state.get("Running"):
            how = f" (exited with status {state.get('ExitCode')})"
        return f"container {self.name!r} failed to start{how}; its last lines: {tail}"


def _start_both(run: Run, specs: list[tuple[ContainerSpec, _Watch]]) -> None:
    def one(spec: ContainerSpec, watch: _Watch) -> None:
        run.driver.create_container(spec)
        run.containers.append(spec.name)
        run.driver.start(spec.name)
        watch.thread.start()

    with ThreadPoolExecutor(len(specs)) as pool:
        jobs = [pool.submit(one, s, w) for s, w in specs]
        errors = [j.exception() for j in jobs if j.exception() is not None]
    if errors:
        err = errors[0]
        raise err if isinstance(err, AwfError) else DockerError(str(err))
    run.mark("started")
    deadline = time.monotonic() + STARTUP_TIMEOUT
    for _, watch in specs:
        left = deadline - time.monotonic()
        if not watch.done.wait(max(left, 0)):
            raise SandboxError(f"container {watch.name!r} was not ready within "
                               f"{STARTUP_TIMEOUT:g} s; its last lines: "
                               f"{' | '.join(watch.lines[-8:]) or 'no output'}")
        if not watch.ok:
            raise SandboxError(watch.failure())


def _run(run: Run, prepared: Prepared, runtime: str, agent_image: str,
         environ: dict[str, str]) -> int:
    cfg = run.cfg
    subnets = _create_networks(run, prepared)
    run.subnets = subnets
    run.mark("networks")
    proxy_spec, proxy_sha = _proxy_spec(run, subnets, prepared, runtime)
    keeper_spec, keeper_sha = _keeper_spec(run, subnets, runtime)
    families = 2 if subnets.v6 is not None else 1
    proxy_watch = _Watch(run.driver, proxy_spec.name, lambda ls: shared.listening(ls, families),
                         PROXY_FAILED, run.t0)
    keeper_watch = _Watch(run.driver, keeper_spec.name,
                          lambda ls: any(ln.startswith(KEEPER_READY) for ln in ls),
                          KEEPER_FAILED, run.t0)
    starting = [(proxy_spec, proxy_watch), (keeper_spec, keeper_watch)]
    if cfg.enable_docker:
        guard_spec = _guard_spec(run, runtime, prepared.workspace)
        starting.append((guard_spec, _Watch(
            run.driver, guard_spec.name,
            lambda ls: any(ln.startswith(GUARD_READY) for ln in ls), GUARD_FAILED, run.t0)))
    api = _ApiStart(run, subnets, runtime) if run.api is not None else None
    try:
        _start_both(run, starting)
    except BaseException:
        if api is not None:  # never creating the sidecar behind teardown's back
            api.cancel.set()
            api.thread.join(STARTUP_TIMEOUT)
        raise
    got_keeper = next(ln for ln in keeper_watch.lines if ln.startswith(KEEPER_READY)).split()[-1]
    got_proxy = next((ln.split()[-1] for ln in proxy_watch.lines if ln.startswith(PROXY_RULES)),
                     "")
    if got_keeper != keeper_sha or got_proxy != proxy_sha:
        raise SandboxError(f"the live rulesets' hashes differ from awf's model (keeper "
                           f"{got_keeper[:12]} vs {keeper_sha[:12]}, proxy {got_proxy[:12]} vs "
                           f"{proxy_sha[:12]}); is the runtime image from this awf?")
    run.mark("ready")
    run.timings["proxy_ready"] = proxy_watch.at
    run.timings["keeper_ready"] = keeper_watch.at
    shared.write_log(run.logs, "agent.nft", topology.agent_ruleset(
        subnets, topology.tcp_ports(cfg.proxy.allow_ports | cfg.intercept_ports),
        run.api_ports).render())
    api_name = api.wait() if api is not None else None
    if cfg.log_level == "debug":
        shared.say(f"run {run.run}: {subnets.v4} {subnets.v6 or ''} proxy {subnets.proxy_v4}; "
                   "self-test passed")
    agent_spec = _agent_spec(run, subnets, prepared, agent_image, environ)
    run.driver.create_container(agent_spec)
    run.containers.append(agent_spec.name)
    run.agent = agent_spec.name
    sock = run.driver.attach(agent_spec.name, stdin=prepared.stdin)
    run.output = threading.Thread(target=_pump, args=(run.driver, sock, cfg.tty),
                                  name="agent-output", daemon=True)
    run.output.start()
    if prepared.stdin and not cfg.tty:
        _forward_input(run, sock)
    with _terminal(run, sock) if cfg.tty else contextlib.nullcontext(lambda: None) as started:
        run.driver.start(agent_spec.name)
        unlink_secrets(run.work)  # the bind holds the inode until PID 1 unmounts it
        run.mark("exec")
        started()
        return _wait_agent(run, agent_spec.name, proxy_spec.name, api_name)


class _ApiStart:
    """The API proxy sidecar joins the proxy's network namespace, so it is created as soon as
    the proxy container runs, while the proxy and keeper get ready; the agent starts only
    after `awf-api-proxy ready` (`wait`)."""

    def __init__(self, run: Run, subnets: topology.Subnets, runtime: str) -> None:
        assert run.api is not None
        uid, gid = _proxy_user()
        self.run = run
        self.spec = apisidecar.docker_spec(
            run.api, run.cfg, name=run.names.api, image=runtime,
            proxy_container=run.names.proxy, listen_host=str(subnets.proxy_v4), run=run.run,
            logs=run.logs, lease=run.work / "lease", uid=uid, gid=gid,
            labels=run.labels(labels.Role.API))
        self.watch = _Watch(run.driver, self.spec.name, lambda ls: apisidecar.READY in ls,
                            apisidecar.FAILED, run.t0)
        self.error: BaseException | None = None
        self.cancel = threading.Event()
        self.deadline = time.monotonic() + STARTUP_TIMEOUT
        self.thread = threading.Thread(target=self._start, name="api-start", daemon=True)
        self.thread.start()

    def _start(self) -> None:
        d, proxy = self.run.driver, self.run.names.proxy
        try:
            while True:  # the proxy container must run before another can join its netns
                if self.cancel.is_set():
                    return
                if proxy in self.run.containers:
                    state = d.state(proxy)
                    if state is not None and state.get("Running"):
                        break
                if time.monotonic() > self.deadline:
                    raise SandboxError(f"container {proxy!r} was not running within "
                                       f"{STARTUP_TIMEOUT:g} s")
                time.sleep(0.05)
            d.create_container(self.spec)
            self.run.containers.append(self.spec.name)
            d.start(self.spec.name)
            self.watch.thread.start()
        except BaseException as exc:  # handed to wait()
            self.error = exc

    def wait(self) -> str:
        self.thread.join(max(self.deadline - time.monotonic(), 0))
        if self.error is not None:
            err = self.error
            raise err if isinstance(err, AwfError) else DockerError(str(err))
        if self.thread.is_alive() or not self.watch.done.wait(
                max(self.deadline - time.monotonic(), 0)):
            raise SandboxError(f"container {self.spec.name!r} was not ready within "
                               f"{STARTUP_TIMEOUT:g} s; its last lines: "
                               f"{' | '.join(self.watch.lines[-8:]) or 'no output'}")
        if not self.watch.ok:
            raise SandboxError(self.watch.failure())
        self.run.mark("api_proxy")
        return self.spec.name


@contextlib.contextmanager
def _terminal(run: Run, sock: object) -> Iterator[Callable[[], None]]:
    """--tty: our terminal in raw mode, keystrokes to the command, SIGWINCH to its TTY."""
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    agent = run.names.agent

    def resize(signum: int = 0, frame: FrameType | None = None) -> None:
        try:
            cols, rows = os.get_terminal_size(fd)
            run.driver.resize(agent, rows, cols)
        except (OSError, AwfError):
            pass

    if saved is not None:
        tty.setraw(fd)
    old = signal.signal(signal.SIGWINCH, resize)
    _forward_input(run, sock)
    try:
        yield resize  # called once the container runs
    finally:
        signal.signal(signal.SIGWINCH, old)
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _forward_input(run: Run, sock: object) -> None:
    """Our stdin to the command's, then EOF (the container is created with StdinOnce, so the
    half-close closes the command's stdin)."""
    fd = 0

    def forward() -> None:
        try:
            while data := os.read(fd, 65536):
                run.driver.send(sock, data)
        except OSError:
            pass
        try:
            run.driver.send(sock, b"")
        except OSError:
            pass

    threading.Thread(target=forward, name="agent-input", daemon=True).start()


AGENT_CAPS = ("SYS_ADMIN", "SYS_CHROOT", "SETUID", "SETGID", "SETPCAP", "KILL",
              "DAC_READ_SEARCH")  # PID 1's, for setup; the command gets none (entry.py)
ENTRY_IN_IMAGE = "/usr/local/lib/awf/entry.py"
ENTRY_MOUNTED = "/run/awf/agent/entry.py"  # --agent-image: containers/agent/ bound in
AGENT_SOURCE = Path(containers.__file__).resolve().parent / "agent"
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def workspace(environ: dict[str, str]) -> str | None:
    """$GITHUB_WORKSPACE, else the current directory; None (with a warning) if it is the
    host's root or a system directory, which must never be handed to the sandbox rw."""
    path = os.path.realpath(environ.get("GITHUB_WORKSPACE") or os.getcwd())
    if hostview.usable_workspace(path):
        return path
    shared.say(f"the workspace {path} is a system or shared directory; it is not shared with "
               "the command (run awf from your project's directory, or set GITHUB_WORKSPACE)")
    return None


def _github_path(environ: dict[str, str]) -> str:
    """The file $GITHUB_PATH names (Actions: one directory a line), or ""."""
    name = environ.get("GITHUB_PATH")
    try:
        if name and os.path.isfile(name) and os.path.getsize(name) <= MiB:
            return Path(name).read_text(errors="replace")
    except OSError:
        pass
    return ""


def _engine_homes(home: str, uid: int, gid: int) -> tuple[str, ...]:
    """The engines' state directories, made (the caller's, 0700) when missing so that what
    the command writes there stays on the host. A symlink is left alone (hostview skips it)."""
    out = hostview.engine_homes(home)
    if home in ("/", "/tmp") or not os.path.isdir(home):
        return ()
    for path in out:
        if not os.path.lexists(path):
            try:
                os.mkdir(path, 0o700)
                os.chown(path, uid, gid)
            except OSError:
                pass
    return out


def caller_home(environ: dict[str, str]) -> str:
    who = shared.caller()
    home = None
    if who is not None and "SUDO_UID" in environ:
        try:
            home = pwd.getpwuid(who[0]).pw_dir
        except KeyError:
            pass
    home = os.path.normpath(home or environ.get("HOME") or "/root")
    return home if home != "/" else "/tmp"


GUARD_READY, GUARD_FAILED = "awf-guard listening on", "awf-guard: "
GUARD_LIMITS = Limits(memory=128 * MiB, memory_swap=128 * MiB, pids=64)
GUARD_DIR = "/run/awf-docker"  # the filtered socket, in the guard and the agent alike


def _guard_spec(run: Run, runtime: str, ws: str | None) -> ContainerSpec:
    """--enable-docker: the only container that touches the host's Docker socket. It has no
    network; the agent reaches it through a socket in a directory both mount."""
    sock_dir = run.work / "docker"
    sock_dir.mkdir(mode=0o755)
    limits = agent_limits(run.cfg)
    config = {
        "run": run.run, "network_container": run.names.keeper,
        "allowed_bind_roots": [ws] if ws else [],
        "labels": [list(kv) for kv in run.labels(labels.Role.SIBLING)],
        "seccomp_json": seccomp.stage1_json(), "memory": limits.memory, "pids": limits.pids,
        "nano_cpus": limits.nano_cpus, "resolv_conf": str(run.work / "resolv.conf"),
    }
    host_socket = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host_socket.startswith("unix://"):
        raise ConfigError(f"--enable-docker needs a local Docker socket; DOCKER_HOST is "
                          f"{host_socket!r}")
    return ContainerSpec(
        name=run.names.guard, image=runtime,
        entrypoint=("python", "-m", "containers.guard"),
        command=("--listen", f"{GUARD_DIR}/docker.sock", "--upstream", "/var/run/docker.sock",
                 "--config", json.dumps(config)),
        labels=run.labels(labels.Role.GUARD), network_mode="none",
        mounts=(Mount(host_socket[len("unix://"):], "/var/run/docker.sock", read_only=False),
                Mount(str(sock_dir), GUARD_DIR, read_only=False)),
        cap_drop=("ALL",), security_opt=("no-new-privileges",), read_only=True,
        limits=GUARD_LIMITS, user="0:0",
    )


def _agent_spec(run: Run, subnets: topology.Subnets, prepared: Prepared, image: str,
                environ: dict[str, str]) -> ContainerSpec:
    cfg = run.cfg
    who = shared.caller()
    uid, gid = who if who is not None else (0, 0)
    chroot = cfg.agent_image is None
    root = "/host" if chroot else ""
    resolv, hosts = run.work / "resolv.conf", run.work / "hosts"
    resolv.write_text(shared.resolv_conf(subnets.proxy_addrs))
    hosts.write_text(HOSTS)
    for path in (resolv, hosts):
        os.chmod(path, 0o644)
    os.chmod(run.work, 0o755)
    home = caller_home(environ)
    ws = prepared.workspace
    engines = _engine_homes(home, uid, gid)
    view = hostview.host_view(
        root=root, home=home, uid=uid, gid=gid, workspace=ws, volumes=prepared.volumes,
        resolv_conf=str(resolv), hosts=str(hosts), facts=hostview.HostFacts.live(),
        tool_cache=environ.get("RUNNER_TOOL_CACHE"),
        path_dirs=agentenv.command_path(environ.get("PATH", ""), _github_path(environ)),
        share_rw=(*engines, *prepared.share_home), gh_aw=True,
        private=(str(run.work), str(run.logs)))

    def visible(path: str) -> bool:
        return os.path.exists(path) and view.sees(path)

    for name in agentenv.CA_VARS:
        value = environ.get(name)
        if value and name not in cfg.exclude_env and not visible(value):
            shared.say(f"{name}={value} is not visible in the sandbox; not passed (put the "
                       "file under /etc/ssl, /usr/local/share/ca-certificates, the workspace, "
                       "or -v it)")
    tmpfs = list(view.tmpfs)
    if ws is not None and (str(run.work) + "/").startswith(ws.rstrip("/") + "/"):
        tmpfs.append((root + str(run.work), "ro,size=4k,mode=0555"))  # awf's own files
    no_proxy = ["localhost", "127.0.0.1", "::1", str(subnets.proxy_v4)]
    url = shared.proxy_url(subnets.proxy_v4) if cfg.proxy_env else None
    env = agentenv.agent_env(environ, proxy_url=url, no_proxy=",".join(no_proxy),
                             home=home, env_all=cfg.env_all, exclude=cfg.exclude_env,
                             env_file=prepared.env_file, explicit=cfg.env, tty=cfg.tty,
                             path=agentenv.with_home_tools(
                                 ":".join(view.path) or agentenv.AGENT_PATH, home),
                             visible=visible)
    plain, secrets = agentenv.split_secrets(env)
    if run.api is not None:  # placeholders and the sidecar's URLs; never a real key
        api_env = apisidecar.agent_env(run.api, str(subnets.proxy_v4))
        names = {k for k, _ in api_env}
        plain = (*(kv for kv in plain if kv[0] not in names), *api_env)
        secrets = {k: v for k, v in secrets.items() if k not in names}
    for name in sorted(secrets):
        if name in agentenv.NEVER:
            shared.say(f"forwarding {name} to the command, as asked; it reaches no environment but "
                       "the command's, served once per process (one-shot)")
    mounts = [*view.mounts, Mount(str(run.work / "agent.json"), "/run/awf/agent.json"),
              Mount(str(run.work / "lease"), "/run/awf-lease", read_only=True)]
    if secrets:
        secret_dir = run.work / "secrets"
        secret_dir.mkdir(mode=0o700)
        fd = os.open(secret_dir / "secrets.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(secrets, f)
        mounts.append(Mount(str(secret_dir / "secrets.json"), "/run/awf/secrets.json"))
    library = "/usr/local/lib/awf/one_shot_token.so"
    entry = ENTRY_IN_IMAGE
    if not chroot:
        from containers.images import one_shot_library

        library, entry = "/run/awf/one_shot_token.so", ENTRY_MOUNTED
        mounts += [Mount(str(AGENT_SOURCE), "/run/awf/agent"),
                   Mount(str(one_shot_library()), library)]
    spec = {
        "root": root or "/", "home": home, "uid": uid, "gid": gid, "groups": [gid],
        "workdir": cfg.container_workdir or ws or home, "env": list(plain),
        "argv": list(agentenv.command_argv(cfg.command)), "symlinks": list(view.symlinks),
        "one_shot_library": library, "one_shot": list(agentenv.ONE_SHOT_DEFAULTS),
        "seccomp_stage2": list(seccomp.STAGE2_DENY), "secrets_mounted": bool(secrets),
        "tty": cfg.tty, "docker_socket": None,
    }
    if cfg.enable_docker:
        spec["docker_socket"] = f"{GUARD_DIR}/docker.sock"
        mounts.append(Mount(str(run.work / "docker"), root + GUARD_DIR, read_only=True))
        spec["env"] = [*plain, ("DOCKER_HOST", f"unix://{GUARD_DIR}/docker.sock")]
    (run.work / "agent.json").write_text(json.dumps(spec))
    os.chmod(run.work / "agent.json", 0o644)
    run.masked = view.masked
    return ContainerSpec(
        name=run.names.agent, image=image, entrypoint=("python3", entry), command=(),
        labels=run.labels(labels.Role.AGENT),
        network_mode=f"container:{run.names.keeper}",
        mounts=tuple(mounts), tmpfs=tuple(tmpfs), cap_drop=("ALL",), cap_add=AGENT_CAPS,
        security_opt=("no-new-privileges", "apparmor=unconfined",
                      "seccomp=" + seccomp.stage1_json()),
        read_only=True, user="0:0", limits=agent_limits(cfg), shm_size=64 * MiB,
        tty=cfg.tty, stdin_open=prepared.stdin,
    )


def agent_limits(cfg: RunConfig) -> Limits:
    """--memory-limit (6 GiB, at most 3/4 of the host's, no swap), --pids-limit, --cpus."""
    mem = _host_memory()
    memory = cfg.memory_limit or (min(6 * 1024 * MiB, mem * 3 // 4) if mem else None)
    cpus = cfg.cpus or max(1.0, (os.cpu_count() or 1) - 0.5)
    return Limits(memory=memory, memory_swap=memory, pids=cfg.pids_limit,
                  nano_cpus=int(cpus * 1e9))


def unlink_secrets(work: Path) -> None:
    with contextlib.suppress(OSError):
        (work / "secrets" / "secrets.json").unlink()


def wipe_secrets(work: Path) -> None:
    path = work / "secrets" / "secrets.json"
    try:
        size = path.stat().st_size
        with open(path, "r+b") as f:
            f.write(b"\0" * size)
        path.unlink()
    except OSError:
        pass


def _host_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def _pump(driver: DockerDriver, sock: object, tty: bool = False) -> None:
    """The agent's stdout and stderr, byte for byte, to ours."""
    try:
        for kind, data in driver.frames(sock, tty=tty):
            out = sys.stderr.buffer if kind == STDERR else sys.stdout.buffer
            out.write(data)
            out.flush()
    except (OSError, ValueError, AwfError):
        pass


def _wait_agent(run: Run, agent: str, proxy: str, api: str | None = None) -> int:
    exits: dict[str, queue.Queue[int | Exception]] = {agent: queue.Queue(), proxy: queue.Queue()}
    if api is not None:
        exits[api] = queue.Queue()

    def waiter(name: str) -> None:
        try:
            exits[name].put(run.driver.wait(name))
        except Exception as exc:  # handed to the main thread
            exits[name].put(exc)

    for name in exits:
        threading.Thread(target=waiter, args=(name,), daemon=True).start()

    def exited(name: str, timeout: float) -> int | None:
        try:
            result = exits[name].get(timeout=timeout)
        except queue.Empty:
            return None
        exits[name].put(result)  # it stays known
        if isinstance(result, Exception):
            what = {agent: "agent", proxy: "proxy"}.get(name, "API proxy sidecar")
            raise DockerError(f"lost the {what} container: {result}")
        return result

    code = shared.wait_agent(run.cfg, agent=lambda t: exited(agent, t),
                             proxy=lambda: exited(proxy, 0),
                             stop=lambda grace: _stop(run.driver, agent, grace),
                             sidecar=(lambda: exited(api, 0)) if api is not None else None)
    _drain_output(run)
    return code


def _drain_output(run: Run) -> None:
    if run.output is not None:
        run.output.join(5)


def _stop(driver: DockerDriver, name: str, grace: float) -> None:
    """SIGTERM (the init passes it on), then SIGKILL after `grace` seconds."""
    try:
        if not driver.kill(name, "SIGTERM"):
            return
        try:
            driver.wait(name, timeout=grace)
        except TimeoutError:
            driver.kill(name, "SIGKILL")
            driver.wait(name, timeout=10)
    except (AwfError, TimeoutError):
        pass


# --- teardown ---------------------------------------------------------------------------------


def teardown(run: Run) -> None:
    d, n = run.driver, run.names
    if run.agent is not None:
        _stop(d, run.agent, 2 if run.interrupted else 3)
        _drain_output(run)

    def l3_drops() -> None:
        if n.keeper not in run.containers:
            return
        try:
            code, out = d.exec_run(n.keeper, ["python", "-m", "netfilter.cli", "dump",
                                              "--table", "awf"])
            if code == 0:
                shared.write_log(run.logs, "l3-drops.json", out)
        except AwfError:
            pass

    def stop_proxy() -> None:
        if n.api in run.containers:
            _stop(d, n.api, 3)  # the API sidecar first: it flushes api-proxy.jsonl
        if n.proxy in run.containers:
            _stop(d, n.proxy, 3)  # SIGTERM: the proxy drains and flushes its log
            with contextlib.suppress(AwfError):
                run.dropped = shared.dropped_records(d.logs(n.proxy, tail=20).splitlines())

    with ThreadPoolExecutor(2) as pool:
        for job in [pool.submit(l3_drops), pool.submit(stop_proxy)]:
            job.result()
    apisidecar.wipe_keys(run.run)
    if run.cfg.keep_containers:
        shared.say(f"containers kept; remove them with: awf cleanup --run {run.run}")
    else:
        _remove_run(d, run.run, containers=run.containers, networks=run.networks)
    wipe_secrets(run.work)
    shutil.rmtree(run.work, ignore_errors=True)
    shared.finish_logs(run.logs)


def reap_dead_runs(driver: DockerDriver) -> None:
    """Remove runs on this host whose owner process is gone (a killed awf)."""
    for dead in runs.dead_runs(driver):
        _remove_run(driver, dead)
        apisidecar.wipe_keys(dead)


def _remove_run(driver: DockerDriver, run: str, *, containers: list[str] | None = None,
                networks: list[str] | None = None) -> None:
    _removed, errors = runs.remove_run(driver, run, containers=containers, networks=networks)
    if errors:
        shared.say("cleanup: " + "; ".join(errors))
