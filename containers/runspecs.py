"""The Docker backend's containers as specs: proxy, keeper, guard and agent, from plain values.

Each function takes what its container needs (names, subnets, image, labels, ports, paths) and
returns a checked `ContainerSpec` (with the hash of the ruleset the container will apply, where
it applies one). Files the containers read (the agent's JSON, its resolv.conf, hosts file and
secrets) are written into the run's work directory here; nothing is printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
from collections.abc import Callable, Sequence
from ipaddress import ip_address, ip_network
from pathlib import Path

import containers
from containers import agentenv, hostview, labels, resolvers, seccomp, topology
from containers.driver import DockerDriver
from containers.keeper import READY as KEEPER_READY
from containers.proxy_entry import RULES as PROXY_RULES
from containers.spec import ContainerSpec, Limits, Mount, NetworkAttachment
from netfilter.errors import SandboxError
from netfilter.ruleset import IPAddress, IPNetwork, ruleset_to_spec
from proxy.errors import ConfigError

MiB = 1024 * 1024
NOBODY = 65534
PROXY_LIMITS = Limits(memory=512 * MiB, memory_swap=512 * MiB, pids=256)
KEEPER_LIMITS = Limits(memory=64 * MiB, memory_swap=64 * MiB, pids=32)
HOST_NAME = "host.docker.internal"
Labels = tuple[tuple[str, str], ...]


# --- what `prepare` checks --------------------------------------------------------------------


def workspace(environ: dict[str, str], *, warn: Callable[[str], None]) -> str | None:
    """$GITHUB_WORKSPACE, else the current directory; None (with a warning) if it is the
    host's root or a system directory, which must never be handed to the sandbox rw."""
    path = os.path.realpath(environ.get("GITHUB_WORKSPACE") or os.getcwd())
    if hostview.usable_workspace(path):
        return path
    warn(f"the workspace {path} is a system or shared directory; it is not shared with "
         "the command (run awf from your project's directory, or set GITHUB_WORKSPACE)")
    return None


def caller_home(environ: dict[str, str], who: tuple[int, int] | None) -> str:
    """The home of `who` (the sudo caller), else $HOME, else /root; never "/" (then /tmp)."""
    home = None
    if who is not None and "SUDO_UID" in environ:
        try:
            home = pwd.getpwuid(who[0]).pw_dir
        except KeyError:
            pass
    home = os.path.normpath(home or environ.get("HOME") or "/root")
    return home if home != "/" else "/tmp"


def checked_volumes(specs: Sequence[str], environ: dict[str, str]
                    ) -> tuple[agentenv.Volume, ...]:
    """-v SPEC, parsed; a credential store is never mounted (exit 2)."""
    volumes = tuple(agentenv.parse_volume(v, environ=environ) for v in specs)
    for spec, v in zip(specs, volumes, strict=True):
        store = hostview.secret_store(v.source) or hostview.secret_store(v.target)
        if store is not None:
            raise ConfigError(f"-v {spec!r}: {store} holds credentials and is never mounted "
                              "into the sandbox")
    return volumes


def share_home(specs: Sequence[str], home: str) -> tuple[str, ...]:
    """--share-home DIR: a directory under the caller's home, resolved (exit 2 otherwise)."""
    out: list[str] = []
    for spec in specs:
        path = os.path.realpath(os.path.join(home, os.path.expanduser(spec)))
        why = hostview.share_home_error(path, home, hostview.HostFacts.live())
        if why is not None:
            raise ConfigError(f"--share-home {spec!r}: {why}")
        out.append(path)
    return tuple(out)


def probe_rulesets(ports: frozenset[int], ranges: Sequence[IPNetwork],
                   dns: Sequence[IPAddress]) -> None:
    """Build both rulesets once on the default layout: a port clash or a bad range is exit 2
    here, before anything exists."""
    probe = topology.Subnets(topology.DEFAULT_V4, topology.DEFAULT_V6, topology.POOL_V4)
    topology.proxy_ruleset(probe, ports, allow_ranges=ranges, dns_servers=dns)
    topology.agent_ruleset(probe, ports)


# --- proxy and keeper -------------------------------------------------------------------------


def proxy_spec(names: topology.Names, subnets: topology.Subnets, runtime: str, *,
               labels_: Labels, ports: frozenset[int], proxy_argv: Sequence[str],
               allow_ranges: Sequence[IPNetwork], attach: Sequence[str],
               attach_ranges: Sequence[IPNetwork], dns_servers: Sequence[IPAddress],
               dns_flags: Sequence[str], sidecar_ports: frozenset[int], uid: int, gid: int,
               host_access: bool, hosts_file: Path | None, hosts_named: bool, logs: Path,
               lease: Path, extra_mounts: Sequence[Mount] = (),
               parent: tuple[Sequence[IPAddress], int] | None = None
               ) -> tuple[ContainerSpec, str]:
    """`extra_mounts`: files for the proxy alone (--ssl-bump's CA, awf/bump.py). `parent`:
    --upstream-proxy's addresses and port, which the proxy's egress admits."""
    ranges: tuple[IPNetwork, ...] = (*allow_ranges, *attach_ranges)  # --topology-attach's
    # issue 19: the host's hosts file (or --hosts-file's), read-only, not the container's own
    hosts, hosts_flags = resolvers.hosts_file_for_proxy(hosts_file, named=hosts_named)
    argv = [*proxy_argv, *dns_flags, *hosts_flags]
    for net in attach_ranges:
        argv += ["--allow-range", str(net)]
    gateway = subnets.ext_v4.network_address + 1
    if host_access:
        # host.docker.internal is this host's address on the egress bridge: a name like any
        # other, allowed, resolved statically and let into that one private address
        argv += ["--allow-domains", HOST_NAME, "--resolve", f"{HOST_NAME}={gateway}",
                 "--allow-range", f"{gateway}/32"]
        ranges = (*ranges, ip_network(f"{gateway}/32"))
    ruleset = topology.proxy_ruleset(subnets, ports, allow_ranges=ranges,
                                     dns_servers=dns_servers, sidecar_ports=sidecar_ports,
                                     parent=parent)
    spec = {"ruleset": ruleset_to_spec(ruleset), "uid": uid, "gid": gid, "argv": argv,
            "ext_gateway": str(gateway),
            "ext_gateway6": str(subnets.ext_gateway_v6) if subnets.ext_gateway_v6 else None,
            "dns_probe": resolvers.probe_entries(dns_servers)}
    sysctls = [("net.ipv4.ip_unprivileged_port_start", "0"), ("net.ipv4.ip_forward", "0")]
    if subnets.v6 is not None:
        sysctls.append(("net.ipv6.conf.all.forwarding", "0"))
    n = names
    return ContainerSpec(
        name=n.proxy, image=runtime,
        entrypoint=("python", "-m", "containers.proxy_entry"), command=(json.dumps(spec),),
        labels=labels_,
        network=n.int_net, ipv4_address=str(subnets.proxy_v4),
        ipv6_address=str(subnets.proxy_v6) if subnets.proxy_v6 else None,
        extra_networks=(NetworkAttachment(n.ext_net),
                        *(NetworkAttachment(net) for net in attach)),
        mounts=(Mount(str(logs), "/logs", read_only=False),
                Mount(str(lease), "/run/awf-lease", read_only=True),
                *([Mount(hosts, resolvers.PROXY_HOSTS, read_only=True)] if hosts else []),
                *extra_mounts),
        tmpfs=(("/tmp", "rw,size=16m,mode=1777"),),
        cap_drop=("ALL",), cap_add=("NET_ADMIN", "SETUID", "SETGID"),
        security_opt=("no-new-privileges",), read_only=True, limits=PROXY_LIMITS,
        sysctls=tuple(sysctls),
    ), ruleset.sha256()


def keeper_spec(names: topology.Names, subnets: topology.Subnets, runtime: str, *,
                labels_: Labels, ports: frozenset[int], sidecar_ports: frozenset[int],
                startup_timeout: float) -> tuple[ContainerSpec, str]:
    ruleset = topology.agent_ruleset(subnets, ports, sidecar_ports)
    spec = {"ruleset": ruleset_to_spec(ruleset), "subnet_v4": str(subnets.v4),
            "subnet_v6": str(subnets.v6) if subnets.v6 else None,
            "startup_timeout": startup_timeout}
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
    n = names
    return ContainerSpec(
        name=n.keeper, image=runtime,
        entrypoint=("python", "-m", "containers.keeper"), command=(json.dumps(spec),),
        labels=labels_,
        network=n.int_net, ipv4_address=str(subnets.keeper_v4),
        ipv6_address=str(subnets.keeper_v6) if subnets.keeper_v6 else None,
        cap_drop=("ALL",), cap_add=("NET_ADMIN", "SETUID", "SETGID", "SETPCAP"),
        security_opt=("no-new-privileges",), read_only=True, limits=KEEPER_LIMITS,
        tmpfs=(("/tmp", "rw,size=1m"),), sysctls=tuple(sysctls),
    ), ruleset.sha256()


# --- --topology-attach (docs/decisions.md) ----------------------------------------------------


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


def topology_attach(driver: DockerDriver, names: Sequence[str]
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


def check_hashes(keeper_lines: Sequence[str], keeper_sha: str, proxy_lines: Sequence[str],
                 proxy_sha: str) -> None:
    """The hashes the keeper and the proxy report of their live rulesets are our model's."""
    got_keeper = next(ln for ln in keeper_lines if ln.startswith(KEEPER_READY)).split()[-1]
    got_proxy = next((ln.split()[-1] for ln in proxy_lines if ln.startswith(PROXY_RULES)),
                     "")
    if got_keeper != keeper_sha or got_proxy != proxy_sha:
        raise SandboxError(f"the live rulesets' hashes differ from awf's model (keeper "
                           f"{got_keeper[:12]} vs {keeper_sha[:12]}, proxy {got_proxy[:12]} vs "
                           f"{proxy_sha[:12]}); is the runtime image from this awf?")


# --- the guard (--enable-docker) --------------------------------------------------------------


GUARD_READY, GUARD_FAILED = "awf-guard listening on", "awf-guard: "
GUARD_LIMITS = Limits(memory=128 * MiB, memory_swap=128 * MiB, pids=64)
GUARD_DIR = "/run/awf-docker"  # the filtered socket, in the guard and the agent alike


def guard_spec(names: topology.Names, runtime: str, *, run: str, work: Path, ws: str | None,
               labels_: Labels, sibling_labels: Labels, limits: Limits,
               docker_host: str) -> ContainerSpec:
    """--enable-docker: the only container that touches the host's Docker socket. It has no
    network; the agent reaches it through a socket in a directory both mount."""
    sock_dir = work / "docker"
    sock_dir.mkdir(mode=0o755)
    config = {
        "run": run, "network_container": names.keeper,
        "allowed_bind_roots": [ws] if ws else [],
        "labels": [list(kv) for kv in sibling_labels],
        "seccomp_json": seccomp.stage1_json(), "memory": limits.memory, "pids": limits.pids,
        "nano_cpus": limits.nano_cpus, "resolv_conf": str(work / "resolv.conf"),
    }
    if not docker_host.startswith("unix://"):
        raise ConfigError(f"--enable-docker needs a local Docker socket; DOCKER_HOST is "
                          f"{docker_host!r}")
    return ContainerSpec(
        name=names.guard, image=runtime,
        entrypoint=("python", "-m", "containers.guard"),
        command=("--listen", f"{GUARD_DIR}/docker.sock", "--upstream", "/var/run/docker.sock",
                 "--config", json.dumps(config)),
        labels=labels_, network_mode="none",
        mounts=(Mount(docker_host[len("unix://"):], "/var/run/docker.sock", read_only=False),
                Mount(str(sock_dir), GUARD_DIR, read_only=False)),
        cap_drop=("ALL",), security_opt=("no-new-privileges",), read_only=True,
        limits=GUARD_LIMITS, user="0:0",
    )


# --- the agent --------------------------------------------------------------------------------


AGENT_CAPS = ("SYS_ADMIN", "SYS_CHROOT", "SETUID", "SETGID", "SETPCAP", "KILL",
              "DAC_READ_SEARCH")  # PID 1's, for setup; the command gets none (entry.py)
ENTRY_IN_IMAGE = "/usr/local/lib/awf/entry.py"
ENTRY_MOUNTED = "/run/awf/agent/entry.py"  # --agent-image: containers/agent/ bound in
AGENT_SOURCE = Path(containers.__file__).resolve().parent / "agent"
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def agent_files(work: Path, resolv_conf: str) -> tuple[Path, Path]:
    """The agent's resolv.conf and hosts file, written world-readable into `work`."""
    resolv, hosts = work / "resolv.conf", work / "hosts"
    resolv.write_text(resolv_conf)
    hosts.write_text(HOSTS)
    for path in (resolv, hosts):
        os.chmod(path, 0o644)
    os.chmod(work, 0o755)
    return resolv, hosts


def github_path(environ: dict[str, str]) -> str:
    """The file $GITHUB_PATH names (Actions: one directory a line), or ""."""
    name = environ.get("GITHUB_PATH")
    try:
        if name and os.path.isfile(name) and os.path.getsize(name) <= MiB:
            return Path(name).read_text(errors="replace")
    except OSError:
        pass
    return ""


def engine_homes(home: str, uid: int, gid: int) -> tuple[str, ...]:
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


def agent_view(work: Path, logs: Path, *, root: str, home: str, uid: int, gid: int,
               ws: str | None, volumes: Sequence[agentenv.Volume], share_home: Sequence[str],
               resolv: Path, hosts: Path, environ: dict[str, str]) -> hostview.HostView:
    """What the agent sees of the host (containers/hostview.py), the run's own files hidden."""
    engines = engine_homes(home, uid, gid)
    return hostview.host_view(
        root=root, home=home, uid=uid, gid=gid, workspace=ws, volumes=volumes,
        resolv_conf=str(resolv), hosts=str(hosts), facts=hostview.HostFacts.live(),
        tool_cache=environ.get("RUNNER_TOOL_CACHE"),
        path_dirs=agentenv.command_path(environ.get("PATH", ""), github_path(environ)),
        share_rw=(*engines, *share_home), gh_aw=True,
        private=(str(work), str(logs)))


def agent_environment(environ: dict[str, str], view: hostview.HostView, *, proxy_url: str | None,
                      proxy_v4: str, home: str, env_all: bool, exclude: Sequence[str],
                      env_file: Sequence[tuple[str, str]],
                      explicit: Sequence[tuple[str, str]], tty: bool,
                      api_env: Sequence[tuple[str, str]] | None, warn: Callable[[str], None]
                      ) -> tuple[tuple[tuple[str, str], ...], dict[str, str]]:
    """The command's environment: (plain variables, secrets served once). `api_env`, the API
    sidecar's placeholders and URLs, replaces the keys it names; `warn` is told what is
    dropped or forwarded against the default."""
    def visible(path: str) -> bool:
        return os.path.exists(path) and view.sees(path)

    replaced = {k for k, _ in api_env or ()}  # e.g. --ssl-bump's trust variables
    for name in agentenv.CA_VARS:
        value = environ.get(name)
        if value and name not in exclude and name not in replaced and not visible(value):
            warn(f"{name}={value} is not visible in the sandbox; not passed (put the "
                 "file under /etc/ssl, /usr/local/share/ca-certificates, the workspace, "
                 "or -v it)")
    no_proxy = ["localhost", "127.0.0.1", "::1", proxy_v4]
    env = agentenv.agent_env(environ, proxy_url=proxy_url, no_proxy=",".join(no_proxy),
                             home=home, env_all=env_all, exclude=exclude,
                             env_file=env_file, explicit=explicit, tty=tty,
                             path=agentenv.with_home_tools(
                                 ":".join(view.path) or agentenv.AGENT_PATH, home),
                             visible=visible)
    plain, secrets = agentenv.split_secrets(env)
    if api_env is not None:  # placeholders and the sidecar's URLs; never a real key
        names = {k for k, _ in api_env}
        plain = (*(kv for kv in plain if kv[0] not in names), *api_env)
        secrets = {k: v for k, v in secrets.items() if k not in names}
    for name in sorted(secrets):
        if name in agentenv.NEVER:
            warn(f"forwarding {name} to the command, as asked; it reaches no environment but "
                 "the command's, served once per process (one-shot)")
    return tuple(plain), secrets


def agent_spec(names: topology.Names, image: str, *, work: Path, view: hostview.HostView,
               tmpfs: Sequence[tuple[str, str]], chroot: bool, home: str, uid: int, gid: int,
               workdir: str, env: Sequence[tuple[str, str]], secrets: dict[str, str],
               argv: Sequence[str], tty: bool, stdin: bool, enable_docker: bool,
               labels_: Labels, limits: Limits) -> ContainerSpec:
    """The agent container; its PID 1 (containers/agent/entry.py) reads `work`/agent.json,
    written here with the secrets file it mounts once."""
    root = "/host" if chroot else ""
    plain = tuple(env)
    mounts = [*view.mounts, Mount(str(work / "agent.json"), "/run/awf/agent.json"),
              Mount(str(work / "lease"), "/run/awf-lease", read_only=True)]
    if secrets:
        secret_dir = work / "secrets"
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
        "workdir": workdir, "env": list(plain),
        "argv": list(argv), "symlinks": list(view.symlinks),
        "one_shot_library": library, "one_shot": list(agentenv.ONE_SHOT_DEFAULTS),
        "seccomp_stage2": list(seccomp.STAGE2_DENY), "secrets_mounted": bool(secrets),
        "tty": tty, "docker_socket": None,
    }
    if enable_docker:
        spec["docker_socket"] = f"{GUARD_DIR}/docker.sock"
        mounts.append(Mount(str(work / "docker"), root + GUARD_DIR, read_only=True))
        spec["env"] = [*plain, ("DOCKER_HOST", f"unix://{GUARD_DIR}/docker.sock")]
    (work / "agent.json").write_text(json.dumps(spec))
    os.chmod(work / "agent.json", 0o644)
    return ContainerSpec(
        name=names.agent, image=image, entrypoint=("python3", entry), command=(),
        labels=labels_,
        network_mode=f"container:{names.keeper}",
        mounts=tuple(mounts), tmpfs=tuple(tmpfs), cap_drop=("ALL",), cap_add=AGENT_CAPS,
        security_opt=("no-new-privileges", "apparmor=unconfined",
                      "seccomp=" + seccomp.stage1_json()),
        read_only=True, user="0:0", limits=limits, shm_size=64 * MiB,
        tty=tty, stdin_open=stdin,
    )


def agent_limits(memory_limit: int | None, pids_limit: int | None,
                 cpus: float | None) -> Limits:
    """--memory-limit (6 GiB, at most 3/4 of the host's, no swap), --pids-limit, --cpus."""
    mem = _host_memory()
    memory = memory_limit or (min(6 * 1024 * MiB, mem * 3 // 4) if mem else None)
    cpus = cpus or max(1.0, (os.cpu_count() or 1) - 0.5)
    return Limits(memory=memory, memory_swap=memory, pids=pids_limit,
                  nano_cpus=int(cpus * 1e9))


def _host_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


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
