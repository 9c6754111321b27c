"""`awf run`'s configuration: one frozen RunConfig from argv, validated before anything starts.

The policy flags are awf-proxy's own (docs/proxy.md §1) and are validated by building the very
`Policy` the proxy will build; they are passed to the proxy unchanged. Any error is a
ConfigError: one line, exit 2, nothing created.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, NoReturn, TextIO

from awf import configfile
from proxy import __version__
from proxy.config import ProxyConfig, build_policy, merge, read_lists, read_url_lists
from proxy.errors import ConfigError
from proxy.urlrules import parse_url_list

# awf run flag -> awf-proxy flag (same meaning; the upstream name --allow-host-ports is an alias)
POLICY_FLAGS: dict[str, str] = {
    "allow_domains": "--allow-domains",
    "allow_domains_file": "--allow-domains-file",
    "block_domains": "--block-domains",
    "block_domains_file": "--block-domains-file",
    "allow_ports": "--allow-ports",
    "allow_range": "--allow-range",
    "resolve": "--resolve",
    "dns_servers": "--dns-servers",
    "upstream_proxy": "--upstream-proxy",
    "hosts_file": "--hosts-file",
}
# --- SSL bump (awf/bump.py): what the proxy is told besides --ssl-bump and the CA's paths,
# which each backend adds (they differ: the proxy container sees them elsewhere)
BUMP_FLAGS: dict[str, str] = {
    "allow_urls": "--allow-urls",  # --allow-urls-file's patterns too: read here, once
    "ssl_bump_exclude": "--ssl-bump-exclude",
}

# list files read once, by parse_run, into the entries beside them: the proxy and everything
# that shows the policy see the entries, and the Docker backend's proxy, in a container, could
# not see the caller's files anyway
LIST_FILES: dict[str, str] = {
    "allow_domains_file": "allow_domains",
    "block_domains_file": "block_domains",
}

# the host's proxy variables: awf never uses them on its own (one note says so)
HOST_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
API_PROVIDERS = ("copilot", "openai", "anthropic", "gemini")


@dataclass(frozen=True, slots=True)
class RunConfig:
    command: tuple[str, ...]
    backend: str
    proxy_args: tuple[str, ...]  # the policy flags, as awf-proxy takes them
    proxy: ProxyConfig  # what those flags mean, validated
    env: tuple[tuple[str, str], ...]  # -e KEY=VALUE (or KEY: the caller's value)
    proxy_env: bool
    agent_timeout: float | None  # seconds
    logs_dir: Path | None
    log_level: str
    ipv6: str  # auto | on | off
    subnet_pool: str | None = None  # netns: --subnet-pool, the IPv4 range of its /30s
    # the Docker backend's own (with --backend netns each is exit 2: DOCKER_ONLY)
    subnet: str | None = None  # --subnet: the internal network's IPv4 /24
    subnet6: str | None = None  # --subnet6: its IPv6 /64
    volumes: tuple[str, ...] = ()  # -v HOST:CONTAINER[:ro|rw], parsed by containers.agentenv
    container_workdir: str | None = None
    keep_containers: bool = False
    agent_image: str | None = None  # any local image instead of awf-agent
    env_all: bool = False
    exclude_env: tuple[str, ...] = ()
    env_file: Path | None = None
    tty: bool = False
    enable_host_access: bool = False  # host.docker.internal, through the proxy
    work_dir: Path | None = None  # where the run's own work directory is made
    memory_limit: int | None = None  # bytes; None: 6 GiB, at most 3/4 of the host's memory
    pids_limit: int = 1000
    cpus: float | None = None  # None: the host's CPUs less half of one, at least 1
    enable_docker: bool = False  # a filtered Docker API for sibling containers
    # --- issue 16 (hostview branch): host state and networks ---
    share_home: tuple[str, ...] = ()  # --share-home DIR: a directory under $HOME, read-write
    topology_attach: tuple[str, ...] = ()  # --topology-attach NET: the proxy joins it
    # --- --config and upstream awf's flags (awf/configfile.py, docs/config.md) ---
    audit_dir: Path | None = None  # --audit-dir: the policy, redacted config and rulesets
    diagnostics: bool = False  # --diagnostics/--diagnostic-logs: recorded, not yet acted on
    docker_host: str | None = None  # --docker-host: DOCKER_HOST for awf's Docker client
    api_proxy: bool = True  # --no-api-proxy (upstream: --no-enable-api-proxy) makes it False
    api_targets: tuple[tuple[str, str], ...] = ()  # (provider, host) for the API proxy sidecar
    extra_ca_certs: Path | None = None  # --extra-ca-certs: PEM the API proxy sidecar also trusts
    # --rate-limit-rpm/-rph/-bytes-pm: the API proxy sidecar's opt-in limits, (flag, N) pairs
    api_rate_limits: tuple[tuple[str, int], ...] = ()
    intercept_ports: frozenset[int] = frozenset()  # 80, 443, --allow-ports and HOST:PORT ports
    config_file: str | None = None  # what --config named ('-': standard input)
    print_config: bool = False  # --print-config: print `effective` and exit 0
    effective: tuple[tuple[str, Any, str], ...] = ()  # (key, value, flag|file|default), redacted
    notes: tuple[str, ...] = ()  # informational lines for stderr (upstream flags with no effect)
    learn: bool = False  # --learn: every name allowed at the proxy, what would be denied logged
    ssl_bump: bool = False  # --ssl-bump: a CA made for the run, which the command trusts


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one-line ConfigErrors (exit 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see {self.prog} --help)")


def run_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="awf run",
        description="Run COMMAND with no way to the network but awf-proxy, which lets through "
        "only the allowed domains and logs every decision. --backend netns (root, no Docker) "
        "runs it on this host in the Docker agent's view of the host, never as root, without "
        "resource limits. Upstream awf's flags and config keys are accepted too; docs/config.md "
        "says what each one does here.",
        allow_abbrev=False,
    )
    add = p.add_argument
    add("--backend", choices=("netns", "docker"), default="docker",
        help="docker (default): the command in a container whose only way out is the proxy "
        "container; netns: a network namespace on this host (root, no Docker)")
    add("-d", "--allow-domains", action="append", metavar="LIST")
    add("--allow-domains-file", action="append", metavar="PATH")
    add("--block-domains", action="append", metavar="LIST")
    add("--block-domains-file", action="append", metavar="PATH")
    add("--allow-ports", "--allow-host-ports", dest="allow_ports", action="append",
        metavar="LIST", help="extra destination ports besides 80 and 443")
    add("--allow-range", action="append", metavar="CIDR")
    add("--resolve", action="append", metavar="NAME=IP")
    add("--dns-servers", metavar="LIST")
    add("--upstream-proxy", metavar="URL",
        help="send every allowed connection through this parent proxy, "
        "http://[user:pass@]host:port, after awf's own policy (HTTPS_PROXY/HTTP_PROXY are "
        "never used on their own)")
    add("--hosts-file", metavar="PATH",
        help="hosts file the proxy reads before DNS (default: this host's /etc/hosts; '' none)")
    add("-e", "--env", action="append", metavar="KEY[=VALUE]", default=[],
        help="set a variable for the command (KEY alone takes the caller's value)")
    add("--no-proxy-env", action="store_true",
        help="do not set HTTP(S)_PROXY; rely on the transparent redirect alone")
    add("--agent-timeout", metavar="MINUTES", help="stop the command after this long (exit 124)")
    add("--proxy-logs-dir", metavar="DIR", help="where access.jsonl and run.json go")
    add("--log-level", choices=("debug", "info", "warn", "error"), default="info")
    add("--ipv6", choices=("auto", "on", "off"), default="auto")
    add("--subnet-pool", metavar="CIDR", help="netns: the IPv4 range each run's /30 is taken "
        "from (default 10.213.0.0/16)")
    add("--subnet", "--network-subnet", metavar="CIDR",
        help="docker: the internal network's IPv4 /24 (default 172.30.0.0/24; a taken one "
        "falls back to 10.213.N.0/24)")
    add("--subnet6", metavar="CIDR", help="docker: its IPv6 /64 (default fd61:7766::/64)")
    add("-v", "--mount", dest="volumes", action="append", default=[],
        metavar="HOST:CONTAINER[:ro|rw]", help="docker: bind-mount a host path (rw by default)")
    add("--container-workdir", metavar="DIR", help="docker: the command's working directory")
    add("--keep-containers", "-k", action="store_true",
        help="docker: leave the containers and networks for inspection (awf cleanup --run ID)")
    add("--agent-image", metavar="IMAGE", help="docker: run the command in this local image "
        "instead of awf-agent")
    add("--enable-host-access", action="store_true",
        help="docker: let the command reach this host as host.docker.internal, through the "
        "proxy, on 80, 443 and --allow-host-ports (dangerous ports stay refused)")
    add("--work-dir", metavar="DIR", help="docker: make the run's private work directory "
        "(rendered configs, resolv.conf, lease) inside DIR instead of $TMPDIR; it is removed "
        "at the end, DIR itself is kept")
    add("--env-all", action="store_true",
        help="pass every variable of yours (never tokens, keys or proxy variables)")
    add("--exclude-env", action="append", default=[], metavar="NAME",
        help="never pass NAME (repeatable)")
    add("--env-file", metavar="PATH", help="KEY=VALUE lines for the command")
    add("-t", "--tty", action="store_true",
        help="docker: give the command a terminal and forward your keyboard (interactive)")
    add("--memory-limit", metavar="SIZE", help="docker: the command's memory, no swap "
        "(default 6g, at most 3/4 of this host's; k, m, g suffixes)")
    add("--pids-limit", metavar="N", help="docker: most processes and threads at once "
        "(default 1000)")
    add("--cpus", "--cpu-limit", dest="cpus", metavar="N",
        help="docker: CPUs for the command (default: this host's less half of one)")
    add("--enable-docker", "--enable-dind", action="store_true",
        help="docker: give the command a filtered Docker API; its containers share the "
        "sandbox's network and rules, and cannot be privileged or mount the host")
    # --- issue 16 (hostview branch) ---
    add("--share-home", action="append", default=[], metavar="DIR",
        help="docker: share DIR, a directory under your home, read-write with the command "
        "(repeatable; its credential files stay masked). ~/.copilot, ~/.claude, ~/.codex and "
        "~/.gemini always are")
    add("--topology-attach", action="append", default=[], metavar="NETWORK",
        help="docker: the proxy joins this existing Docker network (repeatable), so allowed "
        "names of its containers are reachable through the proxy, never directly")
    # --- --config and upstream awf's flags (awf/configfile.py, docs/config.md) ---
    add("--config", metavar="FILE|-", help="YAML or JSON settings ('-': standard input): awf's "
        "keys (the long flag names, _ for -) or upstream awf's schema; flags win")
    add("--print-config", action="store_true",
        help="print the effective configuration, each value's source, and exit")
    add("--audit-dir", metavar="DIR", help="write the effective policy, the redacted config "
        "and the rulesets awf will apply into DIR before the run")
    add("--diagnostics", "--diagnostic-logs", dest="diagnostics", action="store_true",
        help="keep diagnostics of a failed run (see docs/config.md)")
    add("--docker-host", metavar="URI", help="docker: the Docker daemon awf uses "
        "(default: $DOCKER_HOST)")
    add("--no-api-proxy", "--no-enable-api-proxy", dest="no_api_proxy", action="store_true",
        help="do not start the API proxy sidecar")
    for provider in API_PROVIDERS:
        add(f"--{provider}-api-target", metavar="HOST[:PORT]",
            help=f"the {provider} API host the API proxy sidecar sends to (HTTPS)")
    for suffix, what in (("rpm", "requests per minute"), ("rph", "requests per hour"),
                         ("bytes-pm", "bytes (up and down) per minute")):
        add(f"--rate-limit-{suffix}", metavar="N", help=f"the API proxy sidecar's limit of "
            f"{what} per provider: past it, 429 with Retry-After (default: none)")
    add("--no-rate-limit", action="store_true",
        help="no API proxy rate limit, whatever --rate-limit-* or the config file say")
    add("--learn", action="store_true",
        help="learn mode: let every domain through (IP literals, dangerous and unlisted ports, "
        "denied address ranges and --block-domains still hold), log what the allowlist would "
        "have denied as would_deny; then `awf logs suggest` prints the allowlist")
    add("--extra-ca-certs", metavar="PATH", help="a PEM bundle trusted for origins besides "
        "the system store: by the API proxy sidecar, and by awf-proxy under --ssl-bump")
    # --- SSL bump (awf/bump.py, docs/proxy.md §11) ---
    add("--ssl-bump", action="store_true",
        help="terminate TLS to allowed hosts (but --ssl-bump-exclude) with a CA made for this "
        "run, which the command trusts (its key never enters the sandbox), so --allow-urls can "
        "check each request's method and URL")
    add("--allow-urls", action="append", metavar="LIST",
        help="comma-separated URL patterns, e.g. 'GET|HEAD https://api.github.com/repos/*'; a "
        "host named by a pattern is allowed only for matching requests (https patterns need "
        "--ssl-bump)")
    add("--allow-urls-file", action="append", metavar="PATH",
        help="URL patterns, one per line or comma-separated; '#' starts a comment")
    add("--ssl-bump-exclude", action="append", metavar="LIST",
        help="hosts that keep an opaque tunnel under --ssl-bump (pinned or mTLS clients)")
    configfile.add_upstream_flags(p)
    add("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    return p


# flags that mean something to one backend only (their help starts with "netns:" or "docker:");
# given on the command line with the other backend they are exit 2, never silently ignored (a
# --config file's value for the other backend is a note: upstream's files set Docker keys)
NETNS_ONLY = ("subnet_pool",)
DOCKER_ONLY = ("subnet", "subnet6", "volumes", "container_workdir", "keep_containers",
               "agent_image", "enable_host_access", "work_dir", "tty", "memory_limit",
               "pids_limit", "cpus", "enable_docker", "share_home", "topology_attach",
               "docker_host")


def _check_backend(parser: argparse.ArgumentParser, layered: configfile.Layered) -> None:
    ns = layered.ns
    other = {"netns": ("docker", DOCKER_ONLY), "docker": ("netns", NETNS_ONLY)}
    backend, dests = other[ns.backend]
    for action in parser._actions:
        if action.dest in dests and getattr(ns, action.dest) != action.default:
            flag = "/".join(action.option_strings)
            if layered.sources.get(action.dest) != "flag":
                layered.notes.append(f"{flag} from {layered.sources.get(action.dest)}: applies "
                                     f"to --backend {backend} only; ignored with "
                                     f"--backend {ns.backend}")
                setattr(ns, action.dest, action.default)
                continue
            raise ConfigError(f"{flag}: applies to --backend {backend} only, and this run uses "
                              f"--backend {ns.backend}; drop it")


def _subnet_pool(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        pool = IPv4Network(text)
    except ValueError as exc:
        raise ConfigError(f"--subnet-pool {text!r}: not an IPv4 network ({exc})") from exc
    if pool.prefixlen > 30:
        raise ConfigError(f"--subnet-pool {text!r}: smaller than a /30; give a /30 or larger")
    return str(pool)


def parse_run(argv: Sequence[str], stdin: TextIO | None = None) -> RunConfig:
    parser = run_parser()
    layered = configfile.parse_layered(parser, argv, stdin)  # flags > --config > defaults
    ns = layered.ns
    _check_backend(parser, layered)  # before the localhost keyword turns on host access
    if ns.allow_domains:  # upstream's `localhost` keyword: the host, as --enable-host-access
        ns.allow_domains, localhost = configfile.take_localhost(ns.allow_domains)
        if localhost and not ns.enable_host_access:
            ns.enable_host_access = True
            layered.sources["enable_host_access"] = (
                f"{layered.sources['allow_domains']} (the localhost keyword)")
        ns.allow_domains = ns.allow_domains or None
    if ns.agent_image in ("default", "act"):  # upstream's presets: ours is awf-agent
        if ns.agent_image == "act":
            layered.notes.append("--agent-image act: no GitHub Actions parity preset here; "
                                 "using awf-agent (name a local image to use another)")
        ns.agent_image = None
    command = list(ns.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command and not ns.print_config:
        raise ConfigError("no command given: awf run [options] -- COMMAND [ARG...]")
    flags = {k: getattr(ns, k) for k in POLICY_FLAGS if getattr(ns, k) is not None}
    if ns.learn:
        flags["learn"] = True
    flags.update(_bump_flags(ns))  # --- SSL bump ---
    if ns.upstream_proxy is None and any(os.environ.get(v) for v in HOST_PROXY_VARS):
        layered.notes.append("HTTPS_PROXY/HTTP_PROXY are set here, but awf does not use them: "
                             "the proxy connects directly; to go through that proxy, pass "
                             "--upstream-proxy http://[user:pass@]host:port")
    for key, into in LIST_FILES.items():
        paths = flags.pop(key, None) or []
        paths = paths if isinstance(paths, list) else [paths]
        entries = read_lists([Path(p) for p in paths], POLICY_FLAGS[key])
        if entries:
            given = flags.get(into) or []
            flags[into] = [*(given if isinstance(given, list) else [given]), ",".join(entries)]
    proxy_cfg = merge(flags, None)
    policy = build_policy(proxy_cfg)  # exactly the proxy's validation
    proxy_args: list[str] = []
    for key, value in flags.items():
        if key == "learn":
            proxy_args.append("--learn")
            continue
        if key == "ssl_bump":  # with the CA's paths, by each backend (awf/bump.py)
            continue
        for item in value if isinstance(value, list) else [value]:
            proxy_args += [{**POLICY_FLAGS, **BUMP_FLAGS}[key], str(item)]
    timeout: float | None = None
    if ns.agent_timeout is not None:
        try:
            timeout = float(ns.agent_timeout) * 60
        except ValueError:
            timeout = -1
        if not timeout > 0:
            raise ConfigError(f"--agent-timeout: {ns.agent_timeout!r} is not a number of minutes")
    return RunConfig(
        command=tuple(command),
        backend=ns.backend,
        proxy_args=tuple(proxy_args),
        proxy=proxy_cfg,
        env=tuple(_parse_env(e) for e in ns.env),
        proxy_env=not ns.no_proxy_env,
        agent_timeout=timeout,
        logs_dir=Path(ns.proxy_logs_dir) if ns.proxy_logs_dir else None,
        log_level=ns.log_level,
        ipv6=ns.ipv6,
        subnet_pool=_subnet_pool(ns.subnet_pool),
        subnet=ns.subnet,
        subnet6=ns.subnet6,
        volumes=tuple(ns.volumes),
        container_workdir=ns.container_workdir,
        keep_containers=ns.keep_containers,
        agent_image=ns.agent_image,
        env_all=ns.env_all,
        exclude_env=tuple(_check_names("--exclude-env", ns.exclude_env)),
        env_file=Path(ns.env_file) if ns.env_file else None,
        tty=ns.tty,
        enable_host_access=ns.enable_host_access,
        work_dir=_work_dir(ns.work_dir),
        memory_limit=None if ns.memory_limit is None else parse_size("--memory-limit",
                                                                      ns.memory_limit),
        pids_limit=_positive_int("--pids-limit", ns.pids_limit, 1000),
        cpus=None if ns.cpus is None else _positive_float("--cpus", ns.cpus),
        enable_docker=ns.enable_docker,
        share_home=tuple(ns.share_home),
        topology_attach=tuple(_check_networks(ns.topology_attach)),
        audit_dir=Path(ns.audit_dir) if ns.audit_dir else None,
        diagnostics=ns.diagnostics,
        docker_host=ns.docker_host,
        api_proxy=not ns.no_api_proxy,
        api_targets=tuple((p, getattr(ns, f"{p}_api_target")) for p in API_PROVIDERS
                          if getattr(ns, f"{p}_api_target")),
        extra_ca_certs=Path(ns.extra_ca_certs) if ns.extra_ca_certs else None,
        api_rate_limits=_rate_limits(ns, layered.notes),
        intercept_ports=frozenset({80, 443} | proxy_cfg.allow_ports | policy.scoped_ports()),
        config_file=ns.config,
        print_config=ns.print_config,
        effective=tuple(configfile.effective_items(layered)),
        notes=tuple(layered.notes),
        learn=bool(ns.learn),
        ssl_bump=bool(ns.ssl_bump),
    )


RATE_LIMIT_FLAGS = ("--rate-limit-rpm", "--rate-limit-rph", "--rate-limit-bytes-pm")


def _rate_limits(ns: argparse.Namespace, notes: list[str]) -> tuple[tuple[str, int], ...]:
    """The sidecar's limits as (flag, N): each a whole number of at least 1; none with
    --no-rate-limit (rateLimiting.enabled: false), which wins over the values (a note says so)."""
    out = []
    for flag in RATE_LIMIT_FLAGS:
        value = getattr(ns, flag[2:].replace("-", "_"))
        if value is not None:
            out.append((flag, _positive_int(flag, str(value), 1)))
    if ns.no_rate_limit:
        if out:
            notes.append(f"--no-rate-limit: {', '.join(f for f, _ in out)} ignored; the API "
                         "proxy has no rate limit")
        return ()
    return tuple(out)


def _bump_flags(ns: argparse.Namespace) -> dict[str, Any]:
    """--ssl-bump, --allow-urls, --allow-urls-file and --ssl-bump-exclude as awf-proxy's flag
    values. The files are read here (the proxy may run where they are not). An https pattern, or
    --ssl-bump-exclude, without --ssl-bump is exit 2; plain http:// patterns need no bump."""
    patterns = [p for value in ns.allow_urls or () for p in parse_url_list(value)]
    patterns += read_url_lists(Path(p) for p in ns.allow_urls_file or ())
    out: dict[str, Any] = {"allow_urls": patterns} if patterns else {}
    if ns.ssl_bump:
        out["ssl_bump"] = True
        if ns.ssl_bump_exclude:
            out["ssl_bump_exclude"] = list(ns.ssl_bump_exclude)
        return out
    if ns.ssl_bump_exclude:
        raise ConfigError("--ssl-bump-exclude: means nothing without --ssl-bump; add --ssl-bump "
                          "or drop it")
    https = [p for p in patterns if p.split()[-1].lower().startswith("https://")]
    if https:
        raise ConfigError(f"--allow-urls: {https[0]!r} is an https pattern, which needs "
                          "--ssl-bump (awf then makes a CA for the run, which the command "
                          "trusts) so the proxy can see the URL")
    return out


_SIZE = re.compile(r"(\d+(?:\.\d+)?)([kmgt]?)b?", re.IGNORECASE)


def parse_size(flag: str, text: str) -> int:
    """'6g', '512m', '1048576' -> bytes; at least 6 MiB (Docker's floor)."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise ConfigError(f"{flag} {text!r}: not a size (examples: 6g, 512m)")
    scale = 1024 ** "_kmgt".index(m.group(2).lower() or "_")
    size = int(float(m.group(1)) * scale)
    if size < 6 * 1024 * 1024:
        raise ConfigError(f"{flag} {text!r}: at least 6m")
    return size


def _positive_int(flag: str, text: str | None, default: int) -> int:
    if text is None:
        return default
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{flag} {text!r}: not a positive whole number")
    return int(text)


def _positive_float(flag: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not 0 < value < 4096:
        raise ConfigError(f"{flag} {text!r}: not a positive number of CPUs")
    return value


def _work_dir(value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if not path.is_dir():
        raise ConfigError(f"--work-dir: {value!r} is not a directory; create it first")
    return path.resolve()


_NETWORK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _check_networks(names: Sequence[str]) -> list[str]:
    for name in names:
        if not _NETWORK.fullmatch(name):
            raise ConfigError(f"--topology-attach {name!r}: not a Docker network name or id")
    return list(dict.fromkeys(names))


def _check_names(flag: str, names: Sequence[str]) -> list[str]:
    for name in names:
        if not _ENV_NAME.fullmatch(name):
            raise ConfigError(f"{flag} {name!r}: not a variable name")
    return list(names)


def _parse_env(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not _ENV_NAME.fullmatch(name):
        raise ConfigError(f"-e {item!r}: {name!r} is not a variable name")
    if name.startswith("AWF_") or name.startswith("LD_"):
        raise ConfigError(f"-e {name}: awf sets {name} itself; it cannot be overridden")
    if not sep:
        if name not in os.environ:
            raise ConfigError(f"-e {name}: not set in your environment; use -e {name}=VALUE")
        value = os.environ[name]
    return name, value


def version_text() -> str:
    return f"awf {__version__}"
