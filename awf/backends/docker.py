"""`awf run --backend docker`: the command in a container whose only way out is awf-proxy.

    awf-<run>-int 172.30.0.0/24, fd61:7766::/64 (dockerstart.py)  awf-<run>-ext (bridge, NAT)
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
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from ipaddress import ip_network
from pathlib import Path
from typing import ClassVar

from awf import apisidecar, bump, leftovers
from awf import run as shared
from awf.config import RunConfig
from containers import (
    agentenv,
    attach,
    dockerstart,
    hostview,
    labels,
    parentaddr,
    resolvers,
    runs,
    runspecs,
    topology,
)
from containers.dockerstart import Watch
from containers.driver import DockerDriver
from containers.errors import DockerError
from containers.keeper import FAILED as KEEPER_FAILED
from containers.keeper import READY as KEEPER_READY
from containers.proxy_entry import FAILED as PROXY_FAILED
from containers.runspecs import NOBODY
from containers.spec import ContainerSpec, Limits, Mount
from netfilter.ruleset import IPAddress, IPNetwork
from proxy import __version__
from proxy.errors import AwfError, ConfigError

STARTUP_TIMEOUT = 30.0


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
    # --upstream-proxy: the parent's addresses and port (the proxy's egress admits exactly
    # these) and awf-proxy's --resolve pinning its name to them (containers/parentaddr.py)
    parent: tuple[tuple[IPAddress, ...], int] | None = None
    parent_flags: tuple[str, ...] = ()


def prepare(cfg: RunConfig, environ: dict[str, str]) -> Prepared:
    terminal = os.isatty(0)
    if cfg.tty and not terminal:
        raise ConfigError("-t: stdin is not a terminal; drop -t to pipe input to the command")
    volumes = runspecs.checked_volumes(cfg.volumes, environ)
    env_file = tuple(agentenv.read_env_file(cfg.env_file))
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
    if cfg.topology_attach and dns_flags:
        # the attached networks' container names are known to Docker's embedded resolver
        # alone (on the proxy's loopback; it forwards other names to the host's, which the
        # egress rules admit): ask it first (docs/decisions.md, --topology-attach)
        dns_flags = ("--dns-servers", f"{resolvers.DOCKER_DNS},{dns_flags[1]}")
    runspecs.probe_rulesets(topology.tcp_ports(cfg.proxy.allow_ports | cfg.intercept_ports),
                            ranges, dns)
    parent: tuple[tuple[IPAddress, ...], int] | None = None
    parent_flags: tuple[str, ...] = ()
    if cfg.proxy.upstream_proxy is not None:  # resolved here, on the host, once
        addrs, parent_flags = parentaddr.for_proxy(cfg.proxy.upstream_proxy, cfg.proxy.resolve)
        parent = (addrs, cfg.proxy.upstream_proxy.port)
    return Prepared(volumes, env_file, want_v4, want_v6, ranges, tuple(dns),
                    workspace(environ), _share_home(cfg, environ),
                    stdin=cfg.tty or not terminal, dns_flags=dns_flags, parent=parent,
                    parent_flags=parent_flags)


def _share_home(cfg: RunConfig, environ: dict[str, str]) -> tuple[str, ...]:
    return runspecs.share_home(cfg.share_home, caller_home(environ))


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
    nat: str | None = None  # the host's `inet awf_<run>` (-ext's IPv6 masquerade), once made
    api: apisidecar.Sidecar | None = None  # --- API proxy sidecar (awf/apisidecar.py) ---
    ca_files: bump.Files | None = None  # --- --ssl-bump: the run's CA (awf/bump.py) ---

    @property
    def api_ports(self) -> frozenset[int]:
        return apisidecar.PORTS if self.api is not None else frozenset()

    def run_json(self, code: int) -> dict[str, object]:
        return {**super().run_json(code), "masked": list(self.masked),
                "subnets": None if self.subnets is None else {
                    "v4": str(self.subnets.v4),
                    "v6": str(self.subnets.v6) if self.subnets.v6 else None,
                    "ext": str(self.subnets.ext_v4),
                    "ext_v6": str(self.subnets.ext_v6) if self.subnets.ext_v6 else None}}

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
    if prepared.parent_flags:  # both awf-proxies (the run's, the API sidecar's) dial the same
        cfg = dataclasses.replace(cfg, proxy_args=(*cfg.proxy_args, *prepared.parent_flags))
    api = apisidecar.plan(cfg, environ)  # a bad --*-api-target: exit 2, nothing made
    early: dict[str, float] = {}
    driver = DockerDriver.from_env()
    early["docker"] = round(time.monotonic() - t0, 4)
    # a killed run's leftovers are reaped while the images are checked; both before any
    # subnet is chosen (the leftovers' subnets come free)
    reaped: list[BaseException] = []

    def reap() -> None:
        try:
            reap_dead_runs(driver)
        except BaseException as exc:  # handed to the main thread
            reaped.append(exc)

    reaper = threading.Thread(target=reap, name="awf-reap", daemon=True)
    reaper.start()
    from containers.images import run_images

    try:
        runtime, agent_image = run_images(driver, cfg.agent_image, progress=shared.progress)
    finally:
        reaper.join()
    if reaped:
        raise reaped[0]
    early["images"] = round(time.monotonic() - t0, 4)
    if cfg.topology_attach:
        nets, ranges = runspecs.topology_attach(driver, cfg.topology_attach)
        prepared = dataclasses.replace(prepared, attach=nets, attach_ranges=ranges)
    run_id = secrets.token_hex(4)
    work = Path(tempfile.mkdtemp(prefix=f"awf-{run_id}-", dir=cfg.work_dir))
    try:
        run = Run(cfg=cfg, run=run_id, logs=shared.logs_dir(cfg.logs_dir, run_id), work=work,
                  t0=t0, driver=driver, names=topology.Names(run_id))
        run.timings.update(early)
        run.api = api
        lease = dockerstart.take_lease(work)
    except BaseException:  # an AwfError, or a signal (awf.signals) before the run began
        shutil.rmtree(work, ignore_errors=True)
        raise

    def finish(interrupted: bool) -> None:
        run.interrupted = interrupted
        try:
            teardown(run)
        finally:
            os.close(lease)

    return shared.conduct(run, lambda: _run(run, prepared, runtime, agent_image, environ),
                          finish)


def _proxy_user() -> tuple[int, int]:
    who = shared.caller()
    return who if who is not None else (NOBODY, NOBODY)


# --- the steps --------------------------------------------------------------------------------


def _run(run: Run, prepared: Prepared, runtime: str, agent_image: str,
         environ: dict[str, str]) -> int:
    cfg, d, n = run.cfg, run.driver, run.names
    subnets = run.subnets = dockerstart.create_networks(
        d, n, ipv6_mode=cfg.ipv6, want_v4=prepared.want_v4, want_v6=prepared.want_v6,
        int_labels=dict(run.labels(labels.Role.NETWORK_INT)),
        ext_labels=dict(run.labels(labels.Role.NETWORK_EXT)), created=run.networks,
        warn=shared.say, host_ipv6=None if os.geteuid() == 0 else False)  # nft needs root
    subnets = run.subnets = _ipv6_egress(run, subnets)
    run.mark("networks")
    ports = topology.tcp_ports(cfg.proxy.allow_ports | cfg.intercept_ports)
    uid, gid = _proxy_user()
    proxy_argv = shared.proxy_argv(subnets.proxy_addrs, cfg, "/logs")
    ca_mounts: tuple[Mount, ...] = ()
    if cfg.ssl_bump:  # the key is mounted into the proxy container alone
        run.ca_files = bump.write(
            bump.authority(cfg, extra_names=[runspecs.HOST_NAME] if cfg.enable_host_access
                           else []), run.run, uid=uid, gid=gid, extra_ca_certs=cfg.extra_ca_certs)
        flags, ca_mounts = bump.in_proxy_container(run.ca_files)
        proxy_argv += flags
    proxy_spec, proxy_sha = runspecs.proxy_spec(
        n, subnets, runtime, labels_=run.labels(labels.Role.PROXY), ports=ports,
        proxy_argv=[*proxy_argv,
                    *(apisidecar.proxy_client_args(run.api, apisidecar.EGRESS_LISTEN_DOCKER)
                      if run.api is not None else [])],
        extra_mounts=ca_mounts,
        allow_ranges=prepared.allow_ranges, attach=prepared.attach, parent=prepared.parent,
        attach_ranges=prepared.attach_ranges, dns_servers=prepared.dns_servers,
        dns_flags=prepared.dns_flags, sidecar_ports=run.api_ports, uid=uid, gid=gid,
        host_access=cfg.enable_host_access, hosts_file=cfg.proxy.hosts_file,
        hosts_named="hosts_file" in cfg.proxy.flags, logs=run.logs, lease=run.work / "lease")
    os.chown(run.logs, uid, gid)  # the proxy writes here as uid:gid; given back at the end
    keeper_spec, keeper_sha = runspecs.keeper_spec(
        n, subnets, runtime, labels_=run.labels(labels.Role.NET), ports=ports,
        sidecar_ports=run.api_ports, startup_timeout=STARTUP_TIMEOUT)
    families = 2 if subnets.v6 is not None else 1
    proxy_watch = Watch(d, proxy_spec.name, lambda ls: shared.listening(ls, families),
                        PROXY_FAILED, run.t0)
    keeper_watch = Watch(d, keeper_spec.name, lambda ls: _starts(ls, KEEPER_READY),
                         KEEPER_FAILED, run.t0)
    starting = [(proxy_spec, proxy_watch), (keeper_spec, keeper_watch)]
    if cfg.enable_docker:
        guard_spec = runspecs.guard_spec(
            n, runtime, run=run.run, work=run.work, ws=prepared.workspace,
            labels_=run.labels(labels.Role.GUARD), sibling_labels=run.labels(labels.Role.SIBLING),
            limits=_agent_limits(cfg),
            docker_host=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
        starting.append((guard_spec, Watch(d, guard_spec.name,
                                           lambda ls: _starts(ls, runspecs.GUARD_READY),
                                           runspecs.GUARD_FAILED, run.t0)))
    api = _api_start(run, subnets, runtime) if run.api is not None else None
    try:
        dockerstart.start(d, starting, run.containers)
        run.mark("started")
        dockerstart.wait_ready([w for _, w in starting], STARTUP_TIMEOUT)
    except BaseException:
        if api is not None:
            api.abandon()
        raise
    runspecs.check_hashes(keeper_watch.lines, keeper_sha, proxy_watch.lines, proxy_sha)
    run.mark("ready")
    run.timings["proxy_ready"] = proxy_watch.at
    run.timings["keeper_ready"] = keeper_watch.at
    shared.write_log(run.logs, "agent.nft",
                     topology.agent_ruleset(subnets, ports, run.api_ports).render())
    api_name = None
    if api is not None:
        api_name = api.wait()
        run.mark("api_proxy")
    if cfg.log_level == "debug":
        shared.say(f"run {run.run}: {subnets.v4} {subnets.v6 or ''} proxy {subnets.proxy_v4}; "
                   "self-test passed")
    agent_spec = _agent_spec(run, subnets, prepared, agent_image, environ)
    d.create_container(agent_spec)
    run.containers.append(agent_spec.name)
    run.agent = agent_spec.name
    sock = d.attach(agent_spec.name, stdin=prepared.stdin)
    run.output = attach.output_thread(d, sock, cfg.tty)
    if prepared.stdin and not cfg.tty:
        attach.forward_input(d, sock)
    with (attach.terminal(d, n.agent, sock) if cfg.tty
          else contextlib.nullcontext(lambda: None)) as started:
        d.start(agent_spec.name)
        runspecs.unlink_secrets(run.work)  # the bind holds the inode until PID 1 unmounts it
        run.mark("exec")
        started()
        return _wait_agent(run, agent_spec.name, proxy_spec.name, api_name)


def _ipv6_egress(run: Run, subnets: topology.Subnets) -> topology.Subnets:
    """-ext's IPv6 masqueraded by the host (awf's own table: Docker may not do it), the run
    registered as alive meanwhile so `awf cleanup` tells its table from a killed run's. If the
    host's nft cannot, one line, and the proxy goes on without IPv6 egress."""
    if subnets.ext_v6 is None:
        return subnets
    try:
        leftovers.register(run.run)
        run.nat = dockerstart.masquerade_ext_v6(run.run, subnets)
    except (AwfError, OSError) as exc:
        with contextlib.suppress(OSError):
            leftovers.unregister(run.run)
        shared.say(f"no IPv6 egress for the proxy: {exc}")
        return dataclasses.replace(subnets, ext_v6=None)
    return subnets


def _starts(lines: list[str], prefix: str) -> bool:
    return any(ln.startswith(prefix) for ln in lines)


def _api_start(run: Run, subnets: topology.Subnets, runtime: str) -> dockerstart.StartAfter:
    """The API proxy sidecar joins the proxy's network namespace, so it is created as soon as
    the proxy container runs, while the proxy and keeper get ready; the agent starts only
    after `awf-api-proxy ready`."""
    assert run.api is not None
    uid, gid = _proxy_user()
    spec = apisidecar.docker_spec(
        run.api, name=run.names.api, image=runtime,
        proxy_container=run.names.proxy, listen_host=str(subnets.proxy_v4), run=run.run,
        logs=run.logs, lease=run.work / "lease", uid=uid, gid=gid,
        labels=run.labels(labels.Role.API))
    watch = Watch(run.driver, spec.name, lambda ls: apisidecar.READY in ls, apisidecar.FAILED,
                  run.t0)
    return dockerstart.StartAfter(run.driver, spec, watch, after=run.names.proxy,
                                  created=run.containers, timeout=STARTUP_TIMEOUT)


def workspace(environ: dict[str, str]) -> str | None:
    return runspecs.workspace(environ, warn=shared.say)


def caller_home(environ: dict[str, str]) -> str:
    return runspecs.caller_home(environ, shared.caller())


def _agent_spec(run: Run, subnets: topology.Subnets, prepared: Prepared, image: str,
                environ: dict[str, str]) -> ContainerSpec:
    cfg = run.cfg
    who = shared.caller()
    uid, gid = who if who is not None else (0, 0)
    chroot = cfg.agent_image is None
    root = "/host" if chroot else ""
    resolv, hosts = runspecs.agent_files(run.work, shared.resolv_conf(subnets.proxy_addrs))
    home = caller_home(environ)
    ws = prepared.workspace
    view = runspecs.agent_view(run.work, run.logs, root=root, home=home, uid=uid, gid=gid, ws=ws,
                               volumes=prepared.volumes, share_home=prepared.share_home,
                               resolv=resolv, hosts=hosts, environ=environ)
    if run.ca_files is not None:  # --- --ssl-bump: the command trusts the run's CA ---
        view = dataclasses.replace(view, mounts=(*view.mounts, *hostview.trust_mounts(
            view, cert=str(run.ca_files.cert), bundle=str(run.ca_files.bundle),
            facts=hostview.HostFacts.live())))
    tmpfs = list(view.tmpfs)
    if ws is not None and (str(run.work) + "/").startswith(ws.rstrip("/") + "/"):
        tmpfs.append((root + str(run.work), "ro,size=4k,mode=0555"))  # awf's own files
    plain, secrets = runspecs.agent_environment(
        environ, view, proxy_url=shared.proxy_url(subnets.proxy_v4) if cfg.proxy_env else None,
        proxy_v4=str(subnets.proxy_v4), home=home, env_all=cfg.env_all,
        exclude=cfg.exclude_env, env_file=prepared.env_file, explicit=cfg.env, tty=cfg.tty,
        api_env=_replacing_env(run, subnets), warn=shared.say)
    spec = runspecs.agent_spec(
        run.names, image, work=run.work, view=view, tmpfs=tmpfs, chroot=chroot, home=home,
        uid=uid, gid=gid, workdir=cfg.container_workdir or ws or home, env=plain,
        secrets=secrets, argv=agentenv.command_argv(cfg.command), tty=cfg.tty,
        stdin=prepared.stdin, enable_docker=cfg.enable_docker,
        labels_=run.labels(labels.Role.AGENT), limits=_agent_limits(cfg))
    run.masked = view.masked
    return spec


def _replacing_env(run: Run, subnets: topology.Subnets) -> list[tuple[str, str]] | None:
    """Variables that replace the caller's: the API sidecar's URLs and placeholders, and with
    --ssl-bump the trust variables (containers/agentenv.py bump_env)."""
    out = apisidecar.agent_env(run.api, str(subnets.proxy_v4)) if run.api is not None else None
    if run.ca_files is not None:
        out = [*(out or []), *agentenv.bump_env(hostview.RUN_CA, hostview.RUN_BUNDLE)]
    return out


def _agent_limits(cfg: RunConfig) -> Limits:
    return runspecs.agent_limits(cfg.memory_limit, cfg.pids_limit, cfg.cpus)


def _wait_agent(run: Run, agent: str, proxy: str, api: str | None = None) -> int:
    what = {agent: "agent", proxy: "proxy"}
    exited = attach.exits(run.driver, [agent, proxy] + ([api] if api is not None else []),
                          lambda name, exc: DockerError(
                              f"lost the {what.get(name, 'API proxy sidecar')} container: {exc}"))
    code = shared.wait_agent(run.cfg, agent=lambda t: exited(agent, t),
                             proxy=lambda: exited(proxy, 0),
                             stop=lambda grace: attach.stop(run.driver, agent, grace),
                             sidecar=(lambda: exited(api, 0)) if api is not None else None)
    run.mark("exited")
    _drain_output(run)
    return code


def _drain_output(run: Run) -> None:
    if run.output is not None:
        run.output.join(5)


# --- teardown ---------------------------------------------------------------------------------


def teardown(run: Run) -> None:
    """Once the command has exited (or the run failed): the agent stopped if it still runs,
    then every container and network on its own path in parallel (dockerstart.stop_run); each
    phase's end is in run.json's timings."""
    d, n = run.driver, run.names
    run.mark("teardown")
    if run.agent is not None:
        attach.stop(d, run.agent, 2 if run.interrupted else 3)
        _drain_output(run)
    keep = run.cfg.keep_containers
    stopped = dockerstart.stop_run(d, n, run.containers, run=run.run, networks=run.networks,
                                   remove=not keep, mark=run.mark)
    if stopped.drops is not None:
        shared.write_log(run.logs, "l3-drops.json", stopped.drops)
    if stopped.tail is not None:
        run.dropped = shared.dropped_records(stopped.tail.splitlines())
    if stopped.errors:
        shared.say("cleanup: " + "; ".join(stopped.errors))
    apisidecar.wipe_keys(run.run)
    bump.wipe(run.run)
    if run.nat is not None:  # before the networks: the table never outlives the labels
        try:
            dockerstart.remove_masquerade(run.run)
            leftovers.unregister(run.run)
        except AwfError as exc:
            shared.say(f"cleanup: {exc}")
    if keep:
        shared.say(f"containers kept; remove them with: awf cleanup --run {run.run}")
    runspecs.wipe_secrets(run.work)
    shutil.rmtree(run.work, ignore_errors=True)
    shared.finish_logs(run.logs)


def reap_dead_runs(driver: DockerDriver) -> None:
    """Remove runs on this host whose owner process is gone (a killed awf)."""
    for dead in runs.dead_runs(driver):
        _remove_run(driver, dead)
        apisidecar.wipe_keys(dead)
        bump.wipe(dead)
        if leftovers.RUNS.joinpath(f"{dead}.pid").exists():  # it had -ext's IPv6 masquerade
            with contextlib.suppress(AwfError):
                dockerstart.remove_masquerade(dead)
                leftovers.unregister(dead)


def _remove_run(driver: DockerDriver, run: str, *, containers: list[str] | None = None,
                networks: list[str] | None = None) -> None:
    _removed, errors = runs.remove_run(driver, run, containers=containers, networks=networks)
    if errors:
        shared.say("cleanup: " + "; ".join(errors))
