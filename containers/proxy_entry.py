"""`awf-<run>-proxy`'s PID 1: apply `inet awf_proxy`, drop to the caller, run awf-proxy.

    python -m containers.proxy_entry SPEC_JSON

SPEC_JSON: {"ruleset": <proxy ruleset spec>, "uid": N, "gid": N, "ext_gateway": IP,
"ext_gateway6": IPv6 or null, "argv": [awf-proxy flags],
"dns_probe": ["IP:PORT" or "[IPv6]:PORT", ...] (optional)}.
The ruleset is applied and verified with NET_ADMIN; then the process drops to uid:gid (a
non-root uid: setuid clears every capability, and no-new-privileges keeps them gone) and runs
`proxy.main` in-process. Before it does, each resolver of "dns_probe" (those awf-proxy will
ask) gets one query through the applied rules: one that does not answer stops the run here,
naming it, instead of costing every request a DNS timeout. A thread waits on awf's lease
(`/run/awf-lease`): when awf dies, even by SIGKILL, the proxy exits at once, so the agent has
no egress left. Port 53 is bindable through the container's sysctl
net.ipv4.ip_unprivileged_port_start=0. A failure prints `awf-proxy failed: ...` and exits 125.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address

from containers import resolvers
from netfilter import apply as nft
from netfilter.errors import SandboxError
from netfilter.ruleset import ProxySideRuleset, ruleset_from_spec
from proxy.errors import AwfError

FAILED = "awf-proxy failed:"
RULES = "awf-proxy rules"


LEASE = "/run/awf-lease"
IPAddress = IPv4Address | IPv6Address


def watch_lease(path: str = LEASE) -> None:
    """awf holds an exclusive flock on the lease file for as long as it lives; when the lock
    can be shared, awf is gone (even SIGKILLed), and the proxy exits so egress stops at once.
    The file is opened before the privilege drop."""
    if not os.path.exists(path):
        return
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def wait() -> None:
        fcntl.flock(fd, fcntl.LOCK_SH)
        print("awf-proxy: awf is gone (its lease was released); stopping", file=sys.stderr,
              flush=True)
        os._exit(0)

    threading.Thread(target=wait, name="awf-lease", daemon=True).start()


def setup(spec: dict[str, object]) -> list[str]:
    ruleset = ruleset_from_spec(spec["ruleset"])
    if not isinstance(ruleset, ProxySideRuleset):
        raise SandboxError("the proxy's spec must hold a proxy-side ruleset")
    nft.apply(ruleset, fresh=True)  # a new container: its namespace has no table yet
    nft.verify(ruleset)
    gateway6 = spec.get("ext_gateway6")
    _egress_routes(str(spec["ext_gateway"]), None if gateway6 is None else str(gateway6))
    _probe_resolvers(spec.get("dns_probe") or [])
    print(f"{RULES} {ruleset.sha256()}", file=sys.stderr, flush=True)
    uid, gid = int(str(spec["uid"])), int(str(spec["gid"]))
    if uid == 0 or gid == 0:
        raise SandboxError("awf-proxy must not run as root; pass a non-zero uid and gid")
    watch_lease()
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if _cap_eff() != 0:
        raise SandboxError("capabilities are still held after dropping to the caller")
    argv = spec["argv"]
    if not isinstance(argv, list):
        raise SandboxError("the proxy's spec 'argv' must be a list")
    return [str(a) for a in argv]


def _probe_resolvers(entries: object) -> None:
    if not isinstance(entries, list):
        raise SandboxError("the proxy's spec 'dns_probe' must be a list")
    servers: list[tuple[IPAddress, int]] = []
    for entry in entries:
        host, _, port = str(entry).rpartition(":")
        servers.append((ip_address(host.strip("[]")), int(port)))
    dead = resolvers.probe(servers)
    if dead:
        raise SandboxError(resolvers.dead_resolvers_message(dead))


def _egress_routes(gateway: str, gateway6: str | None) -> None:
    """The proxy's only way out is -ext: its default routes go to -ext's gateways (Docker may
    have picked -int's, which leads nowhere). Without IPv6 on -ext (the host has no IPv6
    egress) it has no IPv6 default route, so an IPv6 upstream fails at once (`connect_failed`,
    "no IPv6 route") instead of hanging."""
    from netfilter import netns  # ctypes: not for awf's Docker backend (it imports RULES)

    netns.set_default_route(IPv4Address(gateway))
    if gateway6 is not None:
        netns.set_default_route(IPv6Address(gateway6))
    else:
        netns.delete_default_route(6)


def _cap_eff() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return -1


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(args) != 1:
            raise SandboxError("usage: python -m containers.proxy_entry SPEC_JSON")
        proxy_argv = setup(json.loads(args[0]))
    except (AwfError, ValueError, KeyError, OSError) as exc:
        print(f"{FAILED} {exc}", file=sys.stderr, flush=True)
        return 125
    from proxy.main import main as proxy_main
    from proxy.main import quick_exit

    code = proxy_main(proxy_argv)
    if argv is None:  # PID 1 of the proxy container: no interpreter teardown on awf's path
        quick_exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
