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
Cleanup runs on every path and is idempotent; `awf cleanup` finds what a killed run left by name.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from awf import leftovers
from awf.backends import netnsbox
from awf.config import RunConfig
from awf.proxy_child import ProxyChild
from awf.runlog import finish_logs, logs_dir, print_summary, say, write_run_json
from awf.supervise import supervise
from netfilter import apply as nft
from netfilter import netns
from netfilter.errors import SandboxError
from netfilter.ruleset import AgentRuleset, ProxySideRuleset
from netfilter.selftest import Target, run_in_netns
from proxy import __version__
from proxy.errors import AwfError

EXPLICIT_PORT, TRANSPARENT_PORT, DNS_PORT = 3128, 3129, 53
ETC_NETNS = Path("/etc/netns")
PROXY_START_TIMEOUT = 20.0


@dataclass
class Run:
    cfg: RunConfig
    run: str
    logs: Path
    t0: float
    timings: dict[str, float] = field(default_factory=dict)
    link: netns.AgentLink | None = None
    proxy: ProxyChild | None = None
    agent: subprocess.Popen[bytes] | None = None
    error: str | None = None

    def mark(self, what: str) -> None:
        self.timings[what] = round(time.monotonic() - self.t0, 4)


def _proxy_argv(run: Run, link: netns.AgentLink) -> list[str]:
    listen: list[str] = []
    addrs = [str(link.host_v4.ip)] + ([f"[{link.host_v6.ip}]"] if link.host_v6 else [])
    for a in addrs:
        listen += ["--listen", f"{a}:{EXPLICIT_PORT}"]
    for a in addrs:
        listen += ["--transparent-listen", f"{a}:{TRANSPARENT_PORT}"]
    for a in addrs:
        listen += ["--dns-listen", f"{a}:{DNS_PORT}"]
    return [
        *listen, "--log-dir", str(run.logs), "--drain-timeout", "1",
        "--log-level", run.cfg.log_level, *run.cfg.proxy_args,
    ]


def _wait_listening(proc: ProxyChild, want: int) -> None:
    """Readiness from the proxy's own lines; never a fixed sleep."""
    fd = proc.stderr_fd
    seen: list[str] = []
    buf = b""
    ready = 0
    deadline = time.monotonic() + PROXY_START_TIMEOUT
    while ready < want:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SandboxError(f"awf-proxy did not start within {PROXY_START_TIMEOUT:g} s; "
                               f"its last lines: {' | '.join(seen[-5:])}")
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            proc.wait(5)
            raise SandboxError(f"awf-proxy exited with status {proc.returncode} before it was "
                               f"ready: {' | '.join(seen[-5:]) or 'no output'}")
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace")
            seen.append(line)
            if line.startswith("awf-proxy listening on "):
                ready += 1


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


def _command(run: Run, link: netns.AgentLink) -> subprocess.Popen[bytes]:
    """The command in its sandbox (awf/backends/netnsbox.py, containers/sandbox.py)."""
    url = f"http://{link.host_v4.ip}:{EXPLICIT_PORT}" if run.cfg.proxy_env else None
    return netnsbox.start(run.cfg, netns=link.netns, proxy_url=url,
                          no_proxy="localhost,127.0.0.1,::1", logs=run.logs)


def _exit_status(code: int) -> int:
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


def run_netns(cfg: RunConfig, proxy: ProxyChild, t0: float) -> int:
    """Run the command; `proxy` was forked by the caller before anything else (see proxy_child)."""
    run_id = secrets.token_hex(4)
    run = Run(cfg=cfg, run=run_id, logs=logs_dir(cfg.logs_dir, run_id), t0=t0, proxy=proxy)
    leftovers.register(run_id)

    def teardown(interrupted: bool) -> None:
        _teardown(run)
        leftovers.unregister(run_id)

    outcome = supervise(lambda: _run(run), teardown)
    run.error = outcome.error
    code = outcome.exit_code
    _write_run_json(run, code)
    print_summary(run.logs)
    return code


def _run(run: Run) -> int:
    cfg = run.cfg
    net4, net6 = netns.choose_subnet(run.run)
    link = netns.AgentLink.for_run(run.run, net4, None if cfg.ipv6 == "off" else net6)
    run.link = link
    netns.create(link)
    run.mark("netns")
    etc = ETC_NETNS / link.netns
    etc.mkdir(parents=True, exist_ok=True)
    servers = [str(link.host_v4.ip)] + ([str(link.host_v6.ip)] if link.host_v6 else [])
    (etc / "resolv.conf").write_text("".join(f"nameserver {s}\n" for s in servers)
                                     + "options timeout:2 attempts:2\n")
    if run.proxy is None:
        raise SandboxError("awf-proxy was not forked")
    run.proxy.launch(_proxy_argv(run, link))
    side, agent = _rulesets(run, link)
    _apply_both(side, agent, link.netns)
    (run.logs / "proxy.nft").write_text(side.render())
    (run.logs / "agent.nft").write_text(agent.render())
    run.mark("rules")
    _wait_listening(run.proxy, 3 * len(servers))
    run.mark("proxy")
    run_in_netns(f"{netns.NETNS_DIR}/{link.netns}",
                 Target(proxy_v4=IPv4Address(link.host_v4.ip),
                        proxy_v6=IPv6Address(link.host_v6.ip) if link.host_v6 else None))
    run.mark("selftest")
    if cfg.log_level == "debug":
        say(f"run {run.run}: {link.netns} {link.agent_v4} via {link.host_v4.ip}; self-test passed")
    run.agent = _command(run, link)
    run.mark("exec")
    return _wait_agent(run, run.agent, run.proxy)


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


def _wait_agent(run: Run, agent: subprocess.Popen[bytes], proxy: ProxyChild) -> int:
    deadline = (time.monotonic() + run.cfg.agent_timeout) if run.cfg.agent_timeout else None
    while True:
        try:
            code = agent.wait(0.2)
            return _exit_status(code)
        except subprocess.TimeoutExpired:
            pass
        if proxy.poll() is not None:  # egress is gone: stop the command, fail closed
            _stop_agent(agent, 2)
            raise SandboxError(f"awf-proxy died (status {proxy.returncode}); the command was "
                               "stopped")
        if deadline is not None and time.monotonic() > deadline:
            say(f"--agent-timeout expired after {run.cfg.agent_timeout:g} s; stopping the command")
            _stop_agent(agent, 10)
            return 124


def _teardown(run: Run) -> None:
    _stop_agent(run.agent, 2)
    link = run.link
    if link is not None:
        try:
            drops = nft.counters("awf", netns=link.netns)
            (run.logs / "l3-drops.json").write_text(json.dumps(drops, indent=1) + "\n")
        except AwfError:
            pass
    if run.proxy is not None:
        run.proxy.stop(3)
    cleanup_run(run.run, link)
    finish_logs(run.logs)


def _write_run_json(run: Run, code: int) -> None:
    write_run_json(run.logs, {
        "id": run.run, "version": __version__, "backend": "netns", "exit_code": code,
        "awf_error": run.error, "command": list(run.cfg.command),
        "timings": run.timings, "logs": str(run.logs),
    })


