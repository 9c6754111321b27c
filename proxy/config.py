"""awf-proxy's configuration: flags, an optional YAML/JSON file, and the policy built from them.

Precedence is flags > file > defaults (docs/proxy.md §1.1); a repeatable flag replaces the file's
list.
Everything here is pure but `load_file`/`read_lists`, which read the named files. Errors are
`ConfigError`s with one line naming the flag or key and the fix.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

from proxy import __version__
from proxy.addr import IPAddress
from proxy.clients import (
    CLIENT_FLAGS,
    ClientSpec,
    ClientTable,
    parse_client_file,
    parse_client_flags,
)
from proxy.errors import ConfigError
from proxy.hostsfile import DEFAULT as DEFAULT_HOSTS
from proxy.hostsfile import load_hosts
from proxy.parent import Parent, parse_parent_url
from proxy.policy import Policy, Scheme, parse_domain_list, parse_ports
from proxy.resolve_flags import parse_dns_servers, parse_resolve
from proxy.urlrules import UrlRules, parse_url_list

LOG_LEVELS = ("debug", "info", "warn", "error")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-._~+/]{8,512}=*")

Endpoint = tuple[str, int]


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    listen: tuple[Endpoint, ...] = (("127.0.0.1", 3128),)
    transparent_listen: tuple[Endpoint, ...] = ()
    dns_listen: tuple[Endpoint, ...] = ()
    allow_domains: tuple[str, ...] = ()
    allow_domains_file: tuple[Path, ...] = ()
    block_domains: tuple[str, ...] = ()
    block_domains_file: tuple[Path, ...] = ()
    allow_ports: frozenset[int] = frozenset()
    allow_range: tuple[str, ...] = ()
    resolve: tuple[tuple[str, IPAddress], ...] = ()
    hosts_file: Path | None = DEFAULT_HOSTS
    dns_servers: tuple[Endpoint, ...] | None = None
    log_dir: Path | None = None
    config: Path | None = None
    max_connections: int = 10_000
    workers: int = 1  # --workers N: N processes share the listeners (proxy/workers.py)
    connect_timeout: float = 10.0
    idle_timeout: float = 300.0
    head_timeout: float = 30.0
    response_timeout: float = 300.0
    drain_timeout: float = 5.0
    log_level: str = "info"
    dns_max_name_length: int = 100  # proxy.dnsfwd.DEFAULT_MAX_NAME_LENGTH
    dns_subdomain_budget: int = 100  # proxy.dnsfwd.DEFAULT_SUBDOMAIN_BUDGET
    healthz_token: str | None = None
    learn: bool = False  # every name allowed, what the allowlist would deny logged would_deny
    # SSL bump and --allow-urls (docs/proxy.md §11)
    ssl_bump: bool = False
    ca_cert: Path | None = None
    ca_key: Path | None = None
    make_ca: Path | None = None
    allow_urls: tuple[str, ...] = ()
    allow_urls_file: tuple[Path, ...] = ()
    ssl_bump_exclude: tuple[str, ...] = ()
    extra_ca_certs: Path | None = None
    upstream_proxy: Parent | None = None  # --upstream-proxy: a parent proxy after our policy
    clients: tuple[ClientSpec, ...] = ()  # --client*: per-client policies (proxy/clients.py)
    # the flags as given, kept so that SIGHUP can merge them again over a re-read file (not in
    # the repr: --upstream-proxy's URL may hold a password)
    flags: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


# key -> (flag, repeatable list?, kind)
_KEYS: dict[str, tuple[str, str]] = {
    "listen": ("--listen", "endpoints"),
    "transparent_listen": ("--transparent-listen", "endpoints"),
    "dns_listen": ("--dns-listen", "endpoints"),
    "allow_domains": ("--allow-domains", "domains"),
    "allow_domains_file": ("--allow-domains-file", "paths"),
    "block_domains": ("--block-domains", "domains"),
    "block_domains_file": ("--block-domains-file", "paths"),
    "allow_ports": ("--allow-ports", "ports"),
    "allow_range": ("--allow-range", "ranges"),
    "resolve": ("--resolve", "resolve"),
    "hosts_file": ("--hosts-file", "hosts"),
    "dns_servers": ("--dns-servers", "dns"),
    "log_dir": ("--log-dir", "path"),
    "max_connections": ("--max-connections", "count"),
    "workers": ("--workers", "count"),
    "connect_timeout": ("--connect-timeout", "seconds"),
    "idle_timeout": ("--idle-timeout", "seconds"),
    "head_timeout": ("--head-timeout", "seconds"),
    "response_timeout": ("--response-timeout", "seconds"),
    "drain_timeout": ("--drain-timeout", "seconds"),
    "log_level": ("--log-level", "level"),
    "dns_max_name_length": ("--dns-max-name-length", "count"),
    "dns_subdomain_budget": ("--dns-subdomain-budget", "count"),
    "healthz_token": ("--healthz-token", "token"),
    "learn": ("--learn", "switch"),
    "ssl_bump": ("--ssl-bump", "switch"),
    "ca_cert": ("--ca-cert", "path"),
    "ca_key": ("--ca-key", "path"),
    "make_ca": ("--make-ca", "path"),
    "allow_urls": ("--allow-urls", "urls"),
    "allow_urls_file": ("--allow-urls-file", "paths"),
    "ssl_bump_exclude": ("--ssl-bump-exclude", "domains"),
    "extra_ca_certs": ("--extra-ca-certs", "path"),
    "upstream_proxy": ("--upstream-proxy", "parent"),
    # per-client policies: assembled together by _clients(), never by _convert()
    "client": ("--client", "client"),
    "client_allow_domains": ("--client-allow-domains", "client"),
    "client_block_domains": ("--client-block-domains", "client"),
    "clients": ("clients", "client"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a one-line ConfigError (exit 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see awf-proxy --help)")


def _parser() -> _Parser:
    p = _Parser(
        prog="awf-proxy",
        description="An allowlisting HTTP/CONNECT proxy: lets through exactly the domains it is "
        "given and logs every decision.",
        allow_abbrev=False,
    )
    add = p.add_argument
    add("--listen", action="append", metavar="ADDR:PORT",
        help="explicit-proxy listener (repeatable; default 127.0.0.1:3128; IPv6 as [::1]:3128)")
    add("--transparent-listen", action="append", metavar="ADDR:PORT",
        help="listener for redirected traffic (SO_ORIGINAL_DST; name from SNI or Host)")
    add("--dns-listen", action="append", metavar="ADDR:PORT",
        help="DNS forwarder (UDP and TCP) answering only allowed names")
    add("--dns-max-name-length", metavar="N",
        help="DNS forwarder: REFUSED for a name longer than N characters (default 100) or with "
        "a label over 63")
    add("--dns-subdomain-budget", metavar="N",
        help="DNS forwarder: at most N distinct names per allowed domain per minute (default "
        "100); past it new names get REFUSED")
    add("--allow-domains", action="append", metavar="LIST",
        help="comma-separated allowed entries: name (and its subdomains), *-pattern, IP or CIDR")
    add("--allow-domains-file", action="append", metavar="PATH")
    add("--block-domains", action="append", metavar="LIST", help="blocked entries; beat allows")
    add("--block-domains-file", action="append", metavar="PATH")
    add("--allow-ports", action="append", metavar="LIST",
        help='destination ports allowed besides 80 and 443, e.g. "8080,9000-9010"')
    add("--allow-range", action="append", metavar="CIDR",
        help="let allowed names resolve into this normally denied range")
    add("--resolve", action="append", metavar="NAME=IP", help="static answer used before DNS")
    add("--hosts-file", metavar="PATH",
        help="hosts file read after --resolve and before DNS (default /etc/hosts; '' for none)")
    add("--dns-servers", metavar="LIST", help='resolvers, e.g. "1.1.1.1,127.0.0.1:5353"')
    add("--log-dir", metavar="DIR", help="write DIR/access.jsonl")
    add("--config", metavar="FILE", help="YAML or JSON file with the long options as keys")
    add("--max-connections", metavar="N")
    add("--workers", metavar="N",
        help="serve from N processes sharing the listeners (SO_REUSEPORT; default 1)")
    add("--connect-timeout", metavar="SECONDS")
    add("--idle-timeout", metavar="SECONDS")
    add("--head-timeout", metavar="SECONDS",
        help="time a client has to send a complete request head (default 30) -> 408")
    add("--response-timeout", metavar="SECONDS",
        help="time an origin has to send a response head (default 300) -> 504")
    add("--drain-timeout", metavar="SECONDS")
    add("--log-level", metavar="LEVEL", help="debug|info|warn|error (default info)")
    add("--healthz-token", metavar="TOKEN",
        help="GET /healthz on an explicit listener answers loopback clients, and with this "
        "flag any client sending 'Authorization: Bearer TOKEN'; any other client gets 403 "
        "self_connection")
    add("--learn", action="store_true", default=None,
        help="learn mode: allow every name (IP literals, ports, denied addresses and "
        "--block-domains still hold) and log what the allowlist would deny as would_deny")
    add("--ssl-bump", action="store_const", const=True, default=None,
        help="terminate TLS to every allowed HTTPS host (but --ssl-bump-exclude) with a leaf "
        "signed by --ca-cert/--ca-key, and check each inner request against --allow-urls")
    add("--ca-cert", metavar="PATH", help="the bump CA's certificate (PEM; see --make-ca)")
    add("--ca-key", metavar="PATH", help="the bump CA's key (PEM; mode 0600 or stricter)")
    add("--make-ca", metavar="DIR",
        help="write DIR/ca.pem and DIR/ca-key.pem, a CA name-constrained to --allow-domains and "
        "the --allow-urls hosts, then exit 0")
    add("--allow-urls", action="append", metavar="LIST",
        help="comma-separated URL patterns, e.g. 'https://api.example.com/v1/*' or "
        "'GET|HEAD https://example.com/x'; a host named by a pattern is allowed only for "
        "matching URLs (https patterns need --ssl-bump)")
    add("--allow-urls-file", action="append", metavar="PATH",
        help="URL patterns, one per line or comma-separated; '#' starts a comment")
    add("--ssl-bump-exclude", action="append", metavar="LIST",
        help="hosts that keep an opaque tunnel under --ssl-bump (pinned or mTLS clients); a "
        "host restricted by --allow-urls cannot be excluded")
    add("--extra-ca-certs", metavar="PATH",
        help="PEM bundle trusted for upstream TLS under --ssl-bump, besides the system store")
    add("--upstream-proxy", metavar="URL",
        help="send every allowed connection through this parent proxy, "
        "http://[user:pass@]host:port, after this proxy's own policy (CONNECT for tunnels, "
        "absolute-URI requests for plain HTTP)")
    add("--client", action="append", metavar="NAME=CIDR[,CIDR]",
        help="a client: connections from these source networks are decided under its own "
        "--client-allow-domains/--client-block-domains instead of the proxy's lists, and "
        "logged with client_name NAME (repeatable)")
    add("--client-allow-domains", action="append", metavar="NAME=LIST",
        help="allowed entries of client NAME, as in --allow-domains (repeatable); a client "
        "without any allows nothing")
    add("--client-block-domains", action="append", metavar="NAME=LIST",
        help="blocked entries of client NAME, as in --block-domains (repeatable)")
    add("--version", action="version", version=f"awf-proxy {__version__}")
    return p


def parse_argv(argv: Sequence[str]) -> ProxyConfig:
    """Flags (and the --config file they name) to a validated config; ConfigError on any problem."""
    ns = _parser().parse_args(list(argv))
    flags = {k: v for k, v in vars(ns).items() if v is not None and k != "config"}
    config_path = Path(ns.config) if ns.config else None
    return merge(flags, config_path)


def merge(flags: Mapping[str, Any], config_path: Path | None) -> ProxyConfig:
    """Flags over the file over defaults; also used again by SIGHUP."""
    file_values = load_file(config_path) if config_path else {}
    values: dict[str, Any] = {**file_values, **flags}
    cfg = ProxyConfig(config=config_path, flags=dict(flags))
    updates: dict[str, Any] = {"clients": _clients(flags, file_values)}
    for key in (*CLIENT_FLAGS, "clients"):
        values.pop(key, None)
    for key, raw in values.items():
        flag, kind = _KEYS[key]
        updates[key] = _convert(flag, kind, raw)
    return replace(cfg, **updates)


def _clients(flags: Mapping[str, Any], file_values: Mapping[str, Any]) -> tuple[ClientSpec, ...]:
    """The clients: from the --client* flags if any is given (they replace the file's), else
    from the file (its `clients` list, or the flags' keys; not both)."""
    given = flags if any(k in flags for k in CLIENT_FLAGS) else file_values
    flag_form = any(k in given for k in CLIENT_FLAGS)
    if flag_form and "clients" in given:
        raise ConfigError("--config: give the clients either as a 'clients' list or as "
                          "'client'/'client_allow_domains'/'client_block_domains', not both")
    if "clients" in given:
        return parse_client_file(given["clients"])
    if not flag_form:
        return ()

    def texts(key: str) -> list[str]:
        flag = _KEYS[key][0]
        raw = given.get(key, [])
        out = []
        for v in raw if isinstance(raw, list) else [raw]:
            if not isinstance(v, str):
                raise ConfigError(f"{flag}: expected text, got {v!r}")
            out.append(v)
        return out

    if "client" not in given:
        raise ConfigError("--client-allow-domains/--client-block-domains need a client: "
                          "--client NAME=CIDR")
    return parse_client_flags(texts("client"), texts("client_allow_domains"),
                              texts("client_block_domains"))


def build_clients(cfg: ProxyConfig) -> ClientTable:
    """The clients' policies (empty table without --client); ConfigError if an entry is bad."""
    return ClientTable.build(cfg.clients, allow_ports=cfg.allow_ports,
                             allow_ranges=cfg.allow_range)


def load_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {str(path)!r}: {exc.strerror}") from exc
    data: Any
    try:
        data = json.loads(text)
    except ValueError:
        import yaml  # only here: awf-proxy must start fast without YAML

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--config: {str(path)!r} is neither JSON nor YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {str(path)!r} must hold a mapping of option names")
    out: dict[str, Any] = {}
    for key, value in data.items():
        norm = str(key).replace("-", "_")
        if norm not in _KEYS:
            raise ConfigError(
                f"--config: unknown key {key!r} in {str(path)!r}; known: {', '.join(_KEYS)}"
            )
        out[norm] = value if isinstance(value, list) else [value]
    return out


def _items(flag: str, raw: Any) -> list[str]:
    """A flag's values (a list of strings, each maybe comma-separated) as flat stripped items."""
    values = raw if isinstance(raw, list) else [raw]
    out: list[str] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise ConfigError(f"{flag}: expected text, got {v!r}")
        out.extend(str(v).split(","))
    return [s.strip() for s in out]


def _convert(flag: str, kind: str, raw: Any) -> Any:
    if kind == "endpoints":
        return tuple(parse_endpoint(s, flag=flag) for s in _items(flag, raw) if s)
    if kind == "domains":
        entries: list[str] = []
        for v in raw if isinstance(raw, list) else [raw]:
            if not isinstance(v, str):
                raise ConfigError(f"{flag}: expected text, got {v!r}")
            entries.extend(parse_domain_list(v))
        return tuple(entries)
    if kind == "urls":
        patterns: list[str] = []
        for v in raw if isinstance(raw, list) else [raw]:
            if not isinstance(v, str):
                raise ConfigError(f"{flag}: expected text, got {v!r}")
            patterns.extend(parse_url_list(v))
        return tuple(patterns)
    if kind == "paths":
        return tuple(Path(s) for s in _items(flag, raw) if s)
    if kind == "ports":
        ports: set[int] = set()
        for s in _items(flag, raw):
            if s:
                ports |= parse_ports(s, what=flag)
        return frozenset(ports)
    if kind == "ranges":
        ranges = tuple(s for s in _items(flag, raw) if s)
        for r in ranges:
            try:
                ipaddress.ip_network(r, strict=False)
            except ValueError as exc:
                raise ConfigError(f"{flag}: {r!r} is not a CIDR like 10.0.0.0/8") from exc
        return ranges
    if kind == "resolve":
        return tuple(parse_resolve(s) for s in _items(flag, raw) if s)
    if kind == "dns":
        return parse_dns_servers(",".join(_items(flag, raw)))
    one = raw[-1] if isinstance(raw, list) else raw
    if kind == "switch":
        if isinstance(one, bool):
            return one
        text = str(one).lower()
        if text not in ("true", "false", "yes", "no", "1", "0"):
            raise ConfigError(f"{flag}: {one!r} is not true or false")
        return text in ("true", "yes", "1")
    if kind == "hosts":
        return Path(str(one)) if str(one) else None
    if kind == "path":
        return Path(str(one))
    if kind == "count":
        try:
            n = int(str(one))
        except ValueError:
            n = 0
        if n < 1:
            raise ConfigError(f"{flag}: {one!r} is not a positive whole number")
        return n
    if kind == "seconds":
        try:
            seconds = float(str(one))
        except ValueError:
            seconds = -1.0
        if not seconds > 0 or seconds != seconds or seconds > 86_400 * 7:
            raise ConfigError(f"{flag}: {one!r} is not a number of seconds above 0")
        return seconds
    if kind == "level":
        level = str(one).lower()
        if level == "warning":
            level = "warn"
        if level not in LOG_LEVELS:
            raise ConfigError(f"{flag}: {one!r} is not one of {'|'.join(LOG_LEVELS)}")
        return level
    if kind == "parent":
        return parse_parent_url(str(one))
    if kind == "token":
        token = str(one)
        if _TOKEN_RE.fullmatch(token) is None:
            raise ConfigError(f"{flag}: want 8 or more characters of A-Z a-z 0-9 - . _ ~ + /"
                              " (an RFC 6750 bearer token), e.g. from `openssl rand -hex 16`")
        return token
    raise AssertionError(kind)  # pragma: no cover - the table above is closed


def parse_endpoint(text: str, *, flag: str) -> Endpoint:
    """"127.0.0.1:3128", "[::1]:3128", "0.0.0.0:0" to (host, port); the host must be an IP."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{flag}: {text!r} is not ADDR:PORT (IPv6 as [::1]:3128)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"{flag}: write the IPv6 address {host!r} in brackets: [{host}]:PORT")
    try:
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {host!r} is not an IP address") from exc
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"{flag}: {port_text!r} is not a port (0-65535)")
    return host, int(port_text)


def format_endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def read_lists(paths: Iterable[Path], flag: str) -> list[str]:
    entries: list[str] = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{flag}: cannot read {str(path)!r}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{flag}: {str(path)!r} is not UTF-8 text") from exc
        entries.extend(parse_domain_list(text))
    return entries


def build_policy(cfg: ProxyConfig) -> Policy:
    """The frozen Policy of a config, with the entries of its files; ConfigError if invalid.
    With --allow-urls, it is the URL rules' policy: each pattern allows its own host."""
    rules = build_rules(cfg)
    if rules is not None and cfg.learn:
        raise ConfigError("--learn: not with --ssl-bump or --allow-urls (learn mode learns "
                          "domains: learn them first, then add the URL rules)")
    if rules is not None:
        return rules.policy
    allow = [*cfg.allow_domains, *read_lists(cfg.allow_domains_file, "--allow-domains-file")]
    block = [*cfg.block_domains, *read_lists(cfg.block_domains_file, "--block-domains-file")]
    return Policy.build(
        allow_domains=allow,
        block_domains=block,
        allow_ports=cfg.allow_ports,
        allow_ranges=cfg.allow_range,
        learn=cfg.learn,
    )


def read_url_lists(paths: Iterable[Path]) -> list[str]:
    patterns: list[str] = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--allow-urls-file: cannot read {str(path)!r}: "
                              f"{exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"--allow-urls-file: {str(path)!r} is not UTF-8 text") from exc
        patterns.extend(parse_url_list(text))
    return patterns


def build_rules(cfg: ProxyConfig) -> UrlRules | None:
    """The --allow-urls rules (None without any pattern), checked against the bump flags:
    an https pattern needs --ssl-bump, and a restricted host cannot be excluded from bumping."""
    patterns = [*cfg.allow_urls, *read_url_lists(cfg.allow_urls_file)]
    if not patterns and not cfg.ssl_bump:
        return None
    allow = [*cfg.allow_domains, *read_lists(cfg.allow_domains_file, "--allow-domains-file")]
    block = [*cfg.block_domains, *read_lists(cfg.block_domains_file, "--block-domains-file")]
    rules = UrlRules.build(patterns, allow_domains=allow, block_domains=block,
                           allow_ports=cfg.allow_ports, allow_ranges=cfg.allow_range)
    https = [r.text for r in rules.rules if r.scheme == "https"]
    if https and not cfg.ssl_bump and cfg.make_ca is None:
        raise ConfigError(f"--allow-urls: {https[0]!r} is an https pattern, which needs "
                          "--ssl-bump (with --ca-cert and --ca-key) to see the URL")
    if cfg.ssl_bump_exclude:
        excluded = Policy.build(allow_domains=list(cfg.ssl_bump_exclude))
        for r in rules.rules:
            probe = r.host.replace("*", "x")
            if excluded.decide(probe, 443, Scheme.HTTPS).allowed or any(
                    rules.restricts(e.split("://")[-1].replace("*", "x"))
                    for e in cfg.ssl_bump_exclude):
                raise ConfigError(f"--ssl-bump-exclude: a host restricted by --allow-urls "
                                  f"({r.text!r}) cannot be excluded from bumping; remove it "
                                  "from --ssl-bump-exclude")
    return rules


def check_bump_flags(cfg: ProxyConfig) -> None:
    """--ssl-bump needs --ca-cert and --ca-key; they, --ssl-bump-exclude and --extra-ca-certs
    mean nothing without it."""
    if cfg.make_ca is not None:
        return
    if cfg.ssl_bump and (cfg.ca_cert is None or cfg.ca_key is None):
        raise ConfigError("--ssl-bump needs --ca-cert PATH and --ca-key PATH (make them with "
                          "awf-proxy --make-ca DIR)")
    if not cfg.ssl_bump:
        for key, flag in (("ca_cert", "--ca-cert"), ("ca_key", "--ca-key"),
                          ("ssl_bump_exclude", "--ssl-bump-exclude"),
                          ("extra_ca_certs", "--extra-ca-certs")):
            if getattr(cfg, key):
                raise ConfigError(f"{flag} needs --ssl-bump")


def static_answers(cfg: ProxyConfig) -> dict[str, tuple[IPAddress, ...]]:
    """The answers that never touch DNS: the hosts file's, with `--resolve` winning per name."""
    explicit = "hosts_file" in cfg.flags or cfg.hosts_file != DEFAULT_HOSTS
    answers = load_hosts(cfg.hosts_file, explicit=explicit)
    resolved: dict[str, list[IPAddress]] = {}
    for name, ip in cfg.resolve:
        resolved.setdefault(name, []).append(ip)
    answers.update({name: tuple(dict.fromkeys(ips)) for name, ips in resolved.items()})
    return answers
