"""`awf run --backend netns`: the command in a network namespace whose only way out is awf-proxy.

    host namespace                                   agent namespace awf-<run>
    awf-proxy on awf-<run>h (.1/::1)   <--veth-->    eth0 (.2/::2), default routes via .1/::1
      :3128 explicit  :3129 transparent  :53 DNS     table inet awf: only the proxy, TCP 80/443/
    table inet awf_<run>: redirect the agent's         allowed ports (routed to the proxy side),
      TCP 80/443/ports -> :3129, DNS -> :53;           everything else rejected and counted
      input from the veth: only those ports;
      forward: drop

Order: namespace and veth, then the proxy (a child that dies with us: PR_SET_PDEATHSIG), the two
tables applied and verified, the self-test, and only then the command, in its sandbox
(awf/backends/netnsbox.py): its own PID and mount namespaces, the Docker agent's view of the
host, never uid 0, no capabilities, seccomp, with /etc/resolv.conf naming the forwarder
(`ip netns exec` bind-mounts /etc/netns/awf-<run>/resolv.conf in a private mount namespace).
The sandbox process itself (awf's own setup, as root) starts as soon as the proxy is told its
argv and lays out its mounts while the tables are applied, the proxy starts and the self-test
runs; it execs the command only at the go that follows the self-test (`netnsbox.Sandbox.go`);
run.json's `sandbox` mark is its start, `exec` the go (docs/decisions.md).
Cleanup runs on every path and is idempotent; `awf cleanup` finds what a killed run left by name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import ClassVar

from awf import apisidecar, bump, leftovers, pidwait
from awf import run as shared
from awf.backends import netnsbox
from awf.config import RunConfig
from awf.proxy_child import ProxyChild
from containers import agentenv, hostview
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


@dataclass(kw_only=True)
class Run(shared.Record):
    BACKEND: ClassVar[str] = "netns"
    link: netns.AgentLink | None = None
    proxy: ProxyChild | None = None
    agent: subprocess.Popen[bytes] | None = None
    sandbox: netnsbox.Sandbox | None = None  # the agent's gate: closed on every path
    api: apisidecar.Sidecar | None = None  # --- API proxy sidecar (awf/apisidecar.py) ---
    api_proc: apisidecar.HostSidecar | None = None
    ca_files: bump.Files | None = None  # --- --ssl-bump: the run's CA (awf/bump.py) ---


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
    run.api = apisidecar.plan(cfg, os.environ)
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
    argv = shared.proxy_argv(addrs, cfg, str(run.logs))
    egress = apisidecar.free_loopback() if run.api is not None else ""
    if run.api is not None:  # the sidecar's egress: a loopback listener, its client policy
        argv += apisidecar.proxy_client_args(run.api, egress)
    if cfg.ssl_bump:  # the proxy runs as root here; the command never does
        files = run.ca_files = bump.write(bump.authority(cfg), run.run, uid=os.geteuid(),
                                      gid=os.getegid(), extra_ca_certs=cfg.extra_ca_certs)
        argv += bump.proxy_flags(str(files.cert), str(files.key),
                                 str(files.extra) if files.extra else None)
    run.proxy.launch(argv)
    # the sandbox lays out its mounts while the tables are applied and the proxy starts; the
    # command itself is exec'd only at the go, after the self-test (netnsbox.Sandbox)
    box = run.sandbox = _command(run, link)
    command = run.agent = box.proc
    run.mark("sandbox")
    if run.api is not None:  # starts while the rules are applied; ready before the self-test
        run.api_proc = apisidecar.HostSidecar(run.api, run=run.run,
                                              listen_host=str(link.host_v4.ip),
                                              egress_listen=egress, logs=run.logs)
    side, agent = _rulesets(run, link)
    _apply_both(side, agent, link.netns)
    shared.write_log(run.logs, "proxy.nft", side.render())
    shared.write_log(run.logs, "agent.nft", agent.render())
    run.mark("rules")
    run.proxy.wait_ready(lambda lines: shared.listening(lines, len(addrs)), PROXY_START_TIMEOUT,
                         run.logs / "proxy.log")
    run.mark("proxy")
    if run.api_proc is not None:
        run.api_proc.wait_ready(PROXY_START_TIMEOUT)
        run.mark("api_proxy")
    run_in_netns(f"{netns.NETNS_DIR}/{link.netns}",
                 Target(proxy_v4=IPv4Address(link.host_v4.ip),
                        proxy_v6=IPv6Address(link.host_v6.ip) if link.host_v6 else None))
    run.mark("selftest")
    if cfg.log_level == "debug":
        shared.say(f"run {run.run}: {link.netns} {link.agent_v4} via {link.host_v4.ip}; "
                   "self-test passed")
    box.go()  # the command runs from here on, never before the self-test passed
    run.mark("exec")
    proc = run.proxy
    code = shared.wait_agent(cfg, agent=lambda t: _exited(command, t), proxy=proc.poll,
                             stop=lambda grace: _stop_agent(command, grace),
                             sidecar=run.api_proc.poll if run.api_proc else None)
    run.mark("exited")
    return code


def _rulesets(run: Run, link: netns.AgentLink) -> tuple[ProxySideRuleset, AgentRuleset]:
    ports = frozenset({80, 443} | run.cfg.proxy.allow_ports | run.cfg.intercept_ports)
    host6 = link.host_v6.ip if link.host_v6 else None
    api_ports = apisidecar.PORTS if run.api is not None else frozenset()
    side = ProxySideRuleset(
        table=f"awf_{run.run}",
        agent_ifname=link.host_if,
        agent_net_v4=link.host_v4.network,
        agent_net_v6=link.host_v6.network if link.host_v6 else None,
        redirect_tcp_ports=ports,
        transparent_port=TRANSPARENT_PORT,
        dns_port=DNS_PORT,
        listen_ports=frozenset({EXPLICIT_PORT, TRANSPARENT_PORT, DNS_PORT} | api_ports),
    )
    agent = AgentRuleset(
        proxy_v4=IPv4Address(link.host_v4.ip),
        proxy_v6=IPv6Address(host6) if host6 is not None else None,
        proxy_ports=frozenset({EXPLICIT_PORT, DNS_PORT}),
        tcp_ports=ports,
        sidecar_ports=api_ports,
        sidecar_v4=IPv4Address(link.host_v4.ip) if api_ports else None,
    )
    return side, agent


def _apply_both(side: ProxySideRuleset, agent: AgentRuleset, agent_netns: str) -> None:
    """Apply and verify the two tables at once: one nft transaction per namespace each."""
    failures: list[AwfError] = []

    def one(ruleset: ProxySideRuleset | AgentRuleset, where: str | None) -> None:
        try:
            nft.apply(ruleset, netns=where, fresh=True)  # both new: the run's own
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


def _command(run: Run, link: netns.AgentLink) -> netnsbox.Sandbox:
    """The command in its sandbox (awf/backends/netnsbox.py, containers/sandbox.py)."""
    url = shared.proxy_url(link.host_v4.ip) if run.cfg.proxy_env else None
    cfg, no_proxy = run.cfg, "localhost,127.0.0.1,::1"
    if run.api is not None:  # --- API proxy sidecar: its URLs and placeholders, never a key
        host = str(link.host_v4.ip)
        cfg = dataclasses.replace(cfg, env=(*cfg.env, *apisidecar.agent_env(run.api, host)))
        no_proxy = apisidecar.with_no_proxy(no_proxy, host)
    trust = None
    if run.ca_files is not None:  # --- --ssl-bump: the command trusts the run's CA ---
        cfg = dataclasses.replace(cfg, env=(*cfg.env, *agentenv.bump_env(hostview.RUN_CA,
                                                                         hostview.RUN_BUNDLE)))
        trust = (str(run.ca_files.cert), str(run.ca_files.bundle))
    return netnsbox.start(cfg, netns=link.netns, proxy_url=url, no_proxy=no_proxy,
                          logs=run.logs, trust=trust)


def _exited(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """The command's exit status (128+N after signal N), or None if it still runs; seen the
    moment it exits (a pidfd: Popen.wait's own sleeps saw it up to 50 ms late)."""
    code = proc.poll()
    if code is None and pidwait.exited(proc.pid, timeout):
        code = proc.poll()
    if code is None:
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


REMOVE_TIMEOUT = 30.0  # nft has 10 s per call; netlink does not block


def _teardown(run: Run) -> None:
    """Once the command is stopped (`teardown`), three paths at once: the namespace's side
    (its counters read, `counters`, while the veth is removed; then the namespace), the host's table
    removed, and the proxy stopped (`proxy_stopped`: its log flushed), after which the summary
    is worked out from the complete logs; `removed` when all three are done. Each waits on the
    kernel (the veth's removal and the table's delete wait for RCU grace periods) or on the
    proxy's drain, not on the CPU: run one after the other they cost every run about 0.1 s."""
    run.mark("teardown")
    if run.sandbox is not None:
        run.sandbox.close()  # no go after this: a sandbox still waiting exits, never runs it
    _stop_agent(run.agent, 2)  # first: nothing is removed while the command may still run
    link = run.link
    failures: list[BaseException] = []
    counted = threading.Event()  # l3-drops.json is written: the logs are complete for it

    def veth() -> None:
        # the pair's removal waits for an RCU grace period (about 30 ms): while the counters
        # are read, which the namespace's table keeps without it
        host_if = link.host_if if link is not None else None
        try:
            if host_if is not None:
                netns.delete_link(host_if)
        except OSError as exc:
            failures.append(SandboxError(f"cannot remove veth {host_if!r} of run {run.run}: "
                                         f"{exc}; `awf cleanup` removes it"))
        except BaseException as exc:  # handed to the main thread
            failures.append(exc)

    veth_helper = threading.Thread(target=veth, name="awf-rm-veth", daemon=True)

    def namespace_side() -> None:
        try:
            try:
                if link is not None:
                    drops = nft.counters("awf", netns=link.netns)
                    shared.write_log(run.logs, "l3-drops.json",
                                     json.dumps(drops, indent=1) + "\n")
            except AwfError:
                pass
            finally:
                run.mark("counters")
                counted.set()
            veth_helper.join(REMOVE_TIMEOUT)
            _remove_netns(run.run, link)
        except BaseException as exc:  # handed to the main thread
            failures.append(exc)

    def host_table() -> None:
        try:
            nft.remove(f"awf_{run.run}")
        except BaseException as exc:
            failures.append(exc)

    helpers = [veth_helper,
               threading.Thread(target=namespace_side, name="awf-rm-netns", daemon=True),
               threading.Thread(target=host_table, name="awf-rm-table", daemon=True)]
    for helper in helpers:
        helper.start()
    try:
        if run.api_proc is not None:
            run.api_proc.stop(3)  # flushes api-proxy.jsonl; wipes the keys file
        if run.proxy is not None:
            run.proxy.stop(3)
            run.dropped = shared.dropped_records(run.proxy.last_lines)
        run.mark("proxy_stopped")
        if counted.wait(REMOVE_TIMEOUT):  # the summary, while the kernel removes the veth
            # (before run.json: of it the count reads only the Docker backend's `subnets`)
            run.summary = shared.summary_messages(run.logs, run.cfg, run.dropped)
    finally:
        deadline = time.monotonic() + REMOVE_TIMEOUT
        for helper in helpers:
            helper.join(max(0.0, deadline - time.monotonic()))
    try:
        if any(helper.is_alive() for helper in helpers):
            raise SandboxError(f"removing run {run.run}'s namespace and table did not finish "
                               f"within {REMOVE_TIMEOUT:g} s; `awf cleanup` removes what is "
                               "left")
        if failures:
            raise failures[0]
    finally:
        _remove_files(run.run)  # the keys and the CA wiped whatever else failed
    run.mark("removed")
    shared.finish_logs(run.logs)


def _remove_netns(run: str, link: netns.AgentLink | None) -> None:
    name = f"{netns.PREFIX}{run}"
    if Path(netns.NETNS_DIR, name).exists() or link is not None:
        netns.destroy(link or run)


def cleanup_run(run: str, link: netns.AgentLink | None = None) -> list[str]:
    """Remove everything a run may have made; idempotent. Returns what it removed."""
    removed: list[str] = []
    if nft.remove(f"awf_{run}"):
        removed.append(f"nft table inet awf_{run}")
    name = f"{netns.PREFIX}{run}"
    if Path(netns.NETNS_DIR, name).exists() or link is not None:
        netns.destroy(link or run)
        removed.append(f"netns {name}")
    return removed + _remove_files(run)


def _remove_files(run: str) -> list[str]:
    """A run's files outside its logs: the API keys, the CA, /etc/netns/awf-<run>."""
    removed: list[str] = []
    name = f"{netns.PREFIX}{run}"
    if apisidecar.keys_dir(run).exists():
        apisidecar.wipe_keys(run)
        removed.append(str(apisidecar.keys_dir(run)))
    if bump.directory(run).exists():
        bump.wipe(run)
        removed.append(str(bump.directory(run)))
    etc = ETC_NETNS / name
    if etc.exists():
        shutil.rmtree(etc, ignore_errors=True)
        removed.append(str(etc))
    return removed
