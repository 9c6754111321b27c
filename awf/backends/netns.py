"""`awf run --backend netns`: the command in a network namespace whose only way out is awf-proxy.

    host namespace                                   agent namespace awf-<run>
    awf-proxy on awf-<run>h (.1/::1)   <--veth-->    eth0 (.2/::2), default routes via .1/::1
      :3128 explicit  :3129 transparent  :53 DNS     table inet awf: only the proxy, TCP 80/443/
    table inet awf_<run>: redirect the agent's         allowed ports (routed to the proxy side),
      TCP 80/443/ports -> :3129, DNS -> :53;           everything else rejected and counted
      input from the veth: only those ports;
      forward: drop

Order: namespace and veth, then the proxy (a child that dies with us: PR_SET_PDEATHSIG), the two
tables applied and verified, the self-test, and only then the command: as the invoking user
(SUDO_UID/SUDO_GID) or as root with every capability dropped and no_new_privs, in its own PID
namespace (so nothing it starts outlives the run), with /etc/resolv.conf naming the forwarder
(`ip netns exec` bind-mounts /etc/netns/awf-<run>/resolv.conf in a private mount namespace).
Cleanup runs on every path and is idempotent; `awf cleanup` finds what a killed run left by name.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import ClassVar

from awf import leftovers
from awf import run as shared
from awf.config import RunConfig
from awf.proxy_child import ProxyChild
from netfilter import apply as nft
from netfilter import netns
from netfilter.errors import SandboxError
from netfilter.ruleset import (
    DNS_PORT,
    EXPLICIT_PORT,
    TRANSPARENT_PORT,
    AgentRuleset,
    IPAddress,
    ProxySideRuleset,
)
from netfilter.selftest import Target, run_in_netns
from proxy.errors import AwfError

ETC_NETNS = Path("/etc/netns")
PROXY_START_TIMEOUT = 20.0
_PASS_ENV_DROP = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "FTP_PROXY")


@dataclass(kw_only=True)
class Run(shared.Record):
    BACKEND: ClassVar[str] = "netns"
    link: netns.AgentLink | None = None
    proxy: ProxyChild | None = None
    agent: subprocess.Popen[bytes] | None = None


def run_netns(cfg: RunConfig, proxy: ProxyChild, t0: float) -> int:
    """Run the command; `proxy` was forked by the caller before anything else (see proxy_child)."""
    run_id = secrets.token_hex(4)
    run = Run(cfg=cfg, run=run_id, logs=shared.logs_dir(cfg.logs_dir, run_id), t0=t0, proxy=proxy)
    leftovers.register(run_id)

    def teardown(interrupted: bool) -> None:
        _teardown(run)
        leftovers.unregister(run_id)

    return shared.conduct(run, lambda: _run(run), teardown)


def _run(run: Run) -> int:
    cfg = run.cfg
    net4, net6 = netns.choose_subnet(run.run, cfg.subnet_pool or netns.POOL_V4)
    link = netns.AgentLink.for_run(run.run, net4, None if cfg.ipv6 == "off" else net6)
    run.link = link
    netns.create(link)
    run.mark("netns")
    addrs: list[IPAddress] = [link.host_v4.ip, *([link.host_v6.ip] if link.host_v6 else [])]
    etc = ETC_NETNS / link.netns
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text(shared.resolv_conf(addrs))
    if run.proxy is None:
        raise SandboxError("awf-proxy was not forked")
    run.proxy.launch(shared.proxy_argv(addrs, cfg, str(run.logs)))
    side, agent = _rulesets(run, link)
    _apply_both(side, agent, link.netns)
    shared.write_log(run.logs, "proxy.nft", side.render())
    shared.write_log(run.logs, "agent.nft", agent.render())
    run.mark("rules")
    run.proxy.wait_ready(lambda lines: shared.listening(lines, len(addrs)), PROXY_START_TIMEOUT,
                         run.logs / "proxy.log")
    run.mark("proxy")
    run_in_netns(f"{netns.NETNS_DIR}/{link.netns}",
                 Target(proxy_v4=IPv4Address(link.host_v4.ip),
                        proxy_v6=IPv6Address(link.host_v6.ip) if link.host_v6 else None))
    run.mark("selftest")
    if cfg.log_level == "debug":
        shared.say(f"run {run.run}: {link.netns} {link.agent_v4} via {link.host_v4.ip}; "
                   "self-test passed")
    command = run.agent = subprocess.Popen(_command_argv(run, link), env=_command_env(run, link))
    run.mark("exec")
    proc = run.proxy
    return shared.wait_agent(cfg, agent=lambda t: _exited(command, t), proxy=proc.poll,
                             stop=lambda grace: _stop_agent(command, grace))


def _rulesets(run: Run, link: netns.AgentLink) -> tuple[ProxySideRuleset, AgentRuleset]:
    ports = frozenset({80, 443} | set(run.cfg.proxy.allow_ports))
    host6 = link.host_v6.ip if link.host_v6 else None
    side = ProxySideRuleset(
        table=f"awf_{run.run}",
        agent_ifname=link.host_if,
        agent_net_v4=link.host_v4.network,
        agent_net_v6=link.host_v6.network if link.host_v6 else None,
        redirect_tcp_ports=ports,
        transparent_port=TRANSPARENT_PORT,
        dns_port=DNS_PORT,
        listen_ports=frozenset({EXPLICIT_PORT, TRANSPARENT_PORT, DNS_PORT}),
    )
    agent = AgentRuleset(
        proxy_v4=IPv4Address(link.host_v4.ip),
        proxy_v6=IPv6Address(host6) if host6 is not None else None,
        proxy_ports=frozenset({EXPLICIT_PORT, DNS_PORT}),
        tcp_ports=ports,
    )
    return side, agent


def _apply_both(side: ProxySideRuleset, agent: AgentRuleset, agent_netns: str) -> None:
    """Apply and verify the two tables at once: one nft transaction per namespace each."""
    failures: list[AwfError] = []

    def one(ruleset: ProxySideRuleset | AgentRuleset, where: str | None) -> None:
        try:
            nft.apply(ruleset, netns=where)
            nft.verify(ruleset, netns=where)
        except AwfError as exc:
            failures.append(exc)

    helper = threading.Thread(target=one, args=(agent, agent_netns), name="awf-nft-agent")
    helper.start()
    one(side, None)
    helper.join(30)
    if helper.is_alive():
        raise SandboxError("applying the agent's ruleset did not finish within 30 s")
    if failures:
        raise failures[0]


def _command_env(run: Run, link: netns.AgentLink) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k.upper() not in _PASS_ENV_DROP and not k.startswith(("SUDO_", "AWF_"))}
    if run.cfg.proxy_env:
        url = shared.proxy_url(link.host_v4.ip)
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env[name] = url
        no_proxy = "localhost,127.0.0.1,::1"
        env["NO_PROXY"] = env["no_proxy"] = no_proxy
    env.update(dict(run.cfg.env))
    return env


def _command_argv(run: Run, link: netns.AgentLink) -> list[str]:
    who = shared.caller()
    drop = ["--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    if who is not None:
        drop = ["--reuid", str(who[0]), "--regid", str(who[1]), "--clear-groups", *drop]
    command = list(run.cfg.command)
    if len(command) == 1:  # one string: a shell command line, so $VARs expand inside
        command = ["bash", "-c", command[0]]
    return [
        *netns.exec_argv(link.netns),
        "setpriv", "--pdeathsig", "KILL", "--",
        "unshare", "--pid", "--fork", "--kill-child=KILL", "--mount-proc", "--",
        # tini is the namespace's init: the command keeps default signal dispositions
        # (an init ignores signals it has no handler for), zombies are reaped, and the exit
        # status is the command's (128+N after signal N)
        "tini", "-g", "-s", "--",
        "setpriv", *drop, "--", *command,
    ]


def _exited(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """The command's exit status (128+N after signal N), or None if it still runs."""
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None
    return 128 - code if code < 0 else code


def _stop_agent(proc: subprocess.Popen[bytes] | None, grace: float) -> None:
    """SIGTERM to the namespace's init (tini passes it to the command's process group), then
    SIGKILL to the whole namespace."""
    if proc is None or proc.poll() is not None:
        return
    for init in _children(proc.pid):
        try:
            os.kill(init, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()  # unshare: --kill-child takes the namespace's init, and with it the rest
        proc.wait(5)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _teardown(run: Run) -> None:
    _stop_agent(run.agent, 2)
    link = run.link
    if link is not None:
        try:
            drops = nft.counters("awf", netns=link.netns)
            shared.write_log(run.logs, "l3-drops.json", json.dumps(drops, indent=1) + "\n")
        except AwfError:
            pass
    if run.proxy is not None:
        run.proxy.stop(3)
        run.dropped = shared.dropped_records(run.proxy.last_lines)
    cleanup_run(run.run, link)
    shared.finish_logs(run.logs)


def cleanup_run(run: str, link: netns.AgentLink | None = None) -> list[str]:
    """Remove everything a run may have made; idempotent. Returns what it removed."""
    removed: list[str] = []
    if nft.remove(f"awf_{run}"):
        removed.append(f"nft table inet awf_{run}")
    name = f"{netns.PREFIX}{run}"
    if Path(netns.NETNS_DIR, name).exists() or link is not None:
        netns.destroy(link or run)
        removed.append(f"netns {name}")
    etc = ETC_NETNS / name
    if etc.exists():
        shutil.rmtree(etc, ignore_errors=True)
        removed.append(str(etc))
    return removed
