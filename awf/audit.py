"""`awf run --audit-dir DIR`: what this run will enforce, written before anything starts.

    DIR/policy.json   the proxy's rules in the order it applies them, ending in the default deny
    DIR/config.json   the effective configuration with each value's source, secrets redacted
    DIR/rulesets.nft  the Docker backend's two nftables rulesets, rendered by netfilter/ruleset.py
                      on the planned layout (the netns backend's depend on the run's veth
                      addresses: DIR/rulesets.txt says so and where to see them)

The command line itself is not written (it may hold secrets). Pure but `write_audit`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from awf.config import RunConfig
from awf.configfile import REDACTED
from proxy.addr import IPAddress, IPNetwork
from proxy.config import build_policy, build_rules
from proxy.errors import AwfError
from proxy.policy import DomainEntry, Policy

HOST_NAME = "host.docker.internal"


def policy_rules(cfg: RunConfig, policy: Policy | None = None) -> dict[str, Any]:
    """The proxy's decision order (docs/proxy.md §6) as data: first match wins."""
    policy = policy or build_policy(cfg.proxy)
    rules: list[dict[str, Any]] = [
        {"action": "deny", "match": "a malformed request or name", "reason": "bad_request"},
        {"action": "deny", "match": "an IP literal that no IP/CIDR allow entry covers",
         "reason": "ip_literal"},
    ]
    for e in policy.block_entries:
        rules.append({"action": "deny", "match": _entry(e), "reason": "domain_blocked"})
    for e in policy.allow_entries:
        rules.append({"action": "allow", "match": _entry(e, policy)})
    if cfg.enable_host_access:
        rules.append({"action": "allow", "match": {
            "domain": HOST_NAME, "subdomains": False, "schemes": ["http", "https"],
            "ports": sorted(policy.ports),
            "note": "this host (--enable-host-access or the localhost keyword), added by the "
                    "Docker backend with the egress gateway's address"}})
    rules.append({"action": "deny", "match": "everything else",
                  "reason": "domain_not_allowed, scheme_denied or port_denied"})
    return {
        "rules": [{"n": i, **r} for i, r in enumerate(rules, 1)],
        "address_check": "an allowed name is connected to only at addresses that are public "
                         "or inside allow_range; others are denied_address",
        "allow_range": [str(n) for n in policy.allow_ranges.networks],
        "dns": "the sandbox's DNS forwarder answers only names some allow rule covers",
        "dns_servers": [f"{h}:{p}" for h, p in cfg.proxy.dns_servers or ()] or "the host's",
        "url_rules": _url_rules(cfg),
    }


def _url_rules(cfg: RunConfig) -> dict[str, Any] | None:
    """--allow-urls (with --ssl-bump for https), or None without any pattern or bump."""
    rules = build_rules(cfg.proxy)
    if rules is None:
        return None
    return {"ssl_bump": cfg.ssl_bump, "patterns": [r.text for r in rules.rules],
            "note": "a host some pattern names is allowed only for requests matching one of "
                    "its patterns (else url_not_allowed); https requests are seen through SSL "
                    "bump, with a CA made for the run"}


def _entry(e: DomainEntry, policy: Policy | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if e.network is not None:
        out["network"] = str(e.network)
    else:
        out["domain"] = str(e.name)
        out["subdomains"] = not e.wildcard
    if policy is not None:
        out["schemes"] = sorted(e.schemes)
        out["ports"] = sorted(e.ports if e.ports is not None else policy.ports)
    return out


def config_record(cfg: RunConfig) -> dict[str, Any]:
    return {
        "config_file": cfg.config_file,
        "backend": cfg.backend,
        "settings": [{"key": k, "value": v, "source": s} for k, v, s in cfg.effective],
        "redaction": f"values of keys and NAME=VALUE items whose name matches KEY, TOKEN, "
                     f"SECRET, PASSWORD, CREDENTIAL or AUTH are {REDACTED}; the command line "
                     "is not recorded",
        "notes": list(cfg.notes),
    }


def docker_rulesets(cfg: RunConfig) -> str:
    """Both rulesets of the Docker backend, built as it builds them, on the planned subnets."""
    from containers import resolvers, topology

    v4 = (topology.parse_subnet("--subnet", cfg.subnet, topology.DEFAULT_V4, 24)
          if cfg.subnet else topology.DEFAULT_V4)
    v6 = None
    if cfg.ipv6 != "off":
        v6 = (topology.parse_subnet("--subnet6", cfg.subnet6, topology.DEFAULT_V6, 64)
              if cfg.subnet6 else topology.DEFAULT_V6)
    subnets = topology.Subnets(v4, v6, topology.POOL_V4)  # type: ignore[arg-type]
    ports = topology.tcp_ports(cfg.proxy.allow_ports | cfg.intercept_ports)  # as the backend
    ranges: list[IPNetwork] = [ip_network(item.strip(), strict=False)
                               for entry in cfg.proxy.allow_range
                               for item in entry.split(",") if item.strip()]
    try:  # the resolvers the run's proxy would be given (issue 19)
        dns: Sequence[IPAddress] = resolvers.for_proxy(cfg.proxy.dns_servers)[0]
    except AwfError:
        dns = ()
    parent = None
    if cfg.proxy.upstream_proxy is not None:  # the parent's addresses, as the backend finds them
        from containers import parentaddr

        with contextlib.suppress(AwfError):
            parent = (parentaddr.for_proxy(cfg.proxy.upstream_proxy, cfg.proxy.resolve)[0],
                      cfg.proxy.upstream_proxy.port)
    proxy = topology.proxy_ruleset(subnets, ports, allow_ranges=ranges, dns_servers=dns,
                                   parent=parent)
    agent = topology.agent_ruleset(subnets, ports)
    head = (f"# awf --audit-dir: the Docker backend's rulesets on the planned layout "
            f"(agent network {v4}{f', {v6}' if v6 else ''}). If that subnet is taken the run "
            "picks another (run.json names it);")
    if cfg.enable_host_access:
        head += ("\n# with host access, the proxy's ruleset also lets it reach the egress "
                 "network's gateway (its /32 is known once the network exists);")
    if cfg.topology_attach:  # issue 16 (hostview branch)
        head += ("\n# with --topology-attach, the proxy's ruleset also lets it reach the attached "
                 "networks' subnets less their gateways (their --allow-range; known once awf "
                 "inspects them);")
    return (f"{head}\n# the rules are otherwise the same.\n\n# --- the proxy container's "
            f"namespace ---\n{proxy.render()}\n# --- the agent's namespace ---\n"
            f"{agent.render()}")


def write_audit(cfg: RunConfig, directory: Path) -> list[Path]:
    """Write the audit files; returns their paths. OSErrors propagate to the caller."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    files: dict[str, str] = {
        "policy.json": json.dumps(policy_rules(cfg), indent=2) + "\n",
        "config.json": json.dumps(config_record(cfg), indent=2, default=str) + "\n",
    }
    if cfg.backend == "docker":
        files["rulesets.nft"] = docker_rulesets(cfg)
    else:
        files["rulesets.txt"] = (
            "The netns backend's rulesets depend on the run's veth addresses, chosen when the "
            "run starts; they are not rendered here. See them live with `awf-netfilter dump` "
            "during the run. policy.json and config.json are complete.\n")
    written = []
    for name, text in files.items():
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        written.append(path)
    return written
