"""`awf-<run>-net`, the netns keeper: PID 1 of the namespace the agent container will share.

    python -m containers.keeper SPEC_JSON

It holds NET_ADMIN only while it sets up: applies the agent ruleset (`inet awf`) and verifies
it; routes everything via the proxy (the subnet's on-link route is replaced by a host route to
the proxy alone, so even the Docker bridge's gateway address is reached only through the
proxy); removes every other route of the main table, so the namespace keeps exactly the routes
of `route_plan`; checks that router advertisements are off on eth0 (`accept_ra` 0, set by the
container's sysctls); checks the routes; waits for the proxy to answer; runs the self-test of
`netfilter.selftest` as uid 65534 in a child; prints `awf-netns ready <sha256>`; then execs
`setpriv` to drop every capability and sleep. Any failure prints `awf-netns failed: ...` and
exits 125, so awf never creates the agent.

SPEC_JSON: {"ruleset": <agent ruleset spec>, "subnet_v4", "subnet_v6" (or null),
"startup_timeout"}.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_network

from netfilter import apply as nft
from netfilter import selftest
from netfilter.errors import SandboxError
from netfilter.ruleset import AgentRuleset, ruleset_from_spec
from netfilter.selftest import Target
from proxy.errors import AwfError

READY = "awf-netns ready"
FAILED = "awf-netns failed:"
NOBODY = 65534
PROBE_GATEWAY_V4 = "192.0.2.1"


DEV = "eth0"
LINK_LOCAL_V6 = "fe80::/64"


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """The destinations the agent namespace's main table may hold once awf routed it (pure
    data): the default route and the proxy's host route, per family.

    The kernel's `fe80::/64 dev eth0` is the one route kept that awf did not write: through it
    the host's and the bridge's link-local addresses were reached outside the proxy, and it is
    the ruleset that refuses that now (TCP 80/443 only via the proxy's next hop), recording
    each attempt in @rejected6 (l3-drops.json). Without the route the kernel would refuse at
    connect() with ENETUNREACH, fail closed too, but before nftables sees a packet, so the
    attempt would go unrecorded."""

    keep_v4: frozenset[str]
    keep_v6: frozenset[str]  # empty: no IPv6 in this namespace


def route_plan(agent: AgentRuleset, subnet_v6: str | None) -> RoutePlan:
    keep_v6: frozenset[str] = frozenset()
    if subnet_v6 is not None and agent.proxy_v6 is not None:
        keep_v6 = frozenset({"default", str(agent.proxy_v6), LINK_LOCAL_V6})
    return RoutePlan(frozenset({"default", str(agent.proxy_v4)}), keep_v6)


def stray_routes(routes: Iterable[str], keep: frozenset[str]) -> list[str]:
    """The destinations of `routes` (the main table's, see `netns.main_routes`) not in the plan:
    an RA's, the subnet's, anything else."""
    return [dst for dst in routes if dst not in keep]


def _only_planned(version: int, keep: frozenset[str]) -> None:
    from netfilter import netns  # ctypes: not for awf's Docker backend (it imports READY)
    for dst in stray_routes(netns.main_routes(version), keep):
        netns.delete_route(dst, version)
    left = stray_routes(netns.main_routes(version), keep)
    if left:
        raise SandboxError(f"routes awf did not make are still there: {', '.join(left)}")


def check_no_router_advertisements(dev: str = DEV) -> None:
    """eth0 must ignore router advertisements (a route must come only from awf). Docker applies
    `net.ipv6.conf.eth0.accept_ra=0` from the container's sysctls; this checks it took."""
    path = f"/proc/sys/net/ipv6/conf/{dev}/accept_ra"
    try:
        with open(path) as f:
            value = f.read().strip()
    except FileNotFoundError:
        return  # IPv6 is off in this namespace
    if value != "0":
        raise SandboxError(f"{path} is {value}, not 0: router advertisements could add routes")


def set_routes(agent: AgentRuleset, subnet_v4: str, subnet_v6: str | None) -> None:
    from netfilter import netns  # ctypes: not for awf's Docker backend (it imports READY)
    plan = route_plan(agent, subnet_v6)
    netns.route_only_via(DEV, ip_network(subnet_v4), agent.proxy_v4)
    _only_planned(4, plan.keep_v4)
    if plan.keep_v6 and subnet_v6 is not None and agent.proxy_v6 is not None:
        netns.route_only_via(DEV, ip_network(subnet_v6), agent.proxy_v6)
        _only_planned(6, plan.keep_v6)
        check_no_router_advertisements()
    net4 = ip_network(subnet_v4)
    for dst in (PROBE_GATEWAY_V4, str(net4.network_address + 1)):
        via = netns.route_gateway(dst)
        if via != str(agent.proxy_v4):
            raise SandboxError(f"the route to {dst} goes via {via}, not the proxy "
                               f"{agent.proxy_v4}")
    if subnet_v6 is not None and agent.proxy_v6 is not None:
        net6 = ip_network(subnet_v6)
        for dst in ("2001:db8::1", str(net6.network_address + 1)):
            via = netns.route_gateway(dst)
            if via != str(agent.proxy_v6):
                raise SandboxError(f"the route to {dst} goes via {via}, not the proxy "
                                   f"{agent.proxy_v6}")


def wait_for_proxy(target: Target, deadline: float) -> None:
    """Until the proxy answers /healthz and its DNS forwarder answers: the proxy container
    starts at the same time as this one. Each attempt is refused at once while it is not
    listening, so this is a bounded retry, not a sleep."""
    families: list[tuple[int, str]] = [(socket.AF_INET, str(target.proxy_v4))]
    if target.proxy_v6 is not None:
        families.append((socket.AF_INET6, str(target.proxy_v6)))
    last = ""
    for family, addr in families:
        while True:
            try:
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    s.settimeout(1)
                    s.connect((addr, target.explicit_port))
                    # Host names the self-test's name: the refusal the proxy logs for this
                    # probe (403 from the sandbox) is then left out of the run's summary
                    s.sendall(f"GET /healthz HTTP/1.1\r\nHost: {selftest.NAME}\r\n\r\n"
                              .encode())
                    head = s.recv(64)
                    # 403: it answers, but not to the sandbox (loopback and token holders only)
                    if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.1 403")):
                        raise OSError(f"/healthz answered {head[:24]!r}")
                with socket.socket(family, socket.SOCK_DGRAM) as u:
                    u.settimeout(1)
                    u.connect((addr, target.dns_port))
                    u.send(b"\x41\x57\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                           b"\x04awf-\x04wait\x07invalid\x00\x00\x01\x00\x01")
                    u.recv(512)
                break
            except OSError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise SandboxError(f"awf-proxy at {addr} did not answer in time ({last})")
            time.sleep(0.01)  # each refused attempt costs next to nothing


def selftest_as_nobody(target: Target) -> None:
    """docs/architecture.md §6's checks, in a child that is uid/gid 65534 with no capabilities."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                selftest.run(target)
            except AwfError as exc:
                os.write(w, str(exc).encode())
                code = 1
        except BaseException as exc:  # report anything, never fall back into the parent
            os.write(w, repr(exc).encode())
            code = 2
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        message = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        if not message.startswith("self-test failed: "):
            message = f"self-test failed: {message or 'the check process died'}"
        raise SandboxError(message)


def setup(spec: dict[str, object]) -> str:
    ruleset = ruleset_from_spec(spec["ruleset"])
    if not isinstance(ruleset, AgentRuleset):
        raise SandboxError("the keeper's spec must hold an agent ruleset")
    deadline = time.monotonic() + float(str(spec.get("startup_timeout", 30)))
    nft.apply(ruleset, fresh=True)  # a new container: its namespace has no table yet
    nft.verify(ruleset)
    subnet_v6 = spec.get("subnet_v6")
    set_routes(ruleset, str(spec["subnet_v4"]), None if subnet_v6 is None else str(subnet_v6))
    target = Target(proxy_v4=IPv4Address(ruleset.proxy_v4),
                    proxy_v6=IPv6Address(ruleset.proxy_v6) if ruleset.proxy_v6 else None)
    wait_for_proxy(target, deadline)
    selftest_as_nobody(target)
    nft.verify(ruleset)  # nothing changed it meanwhile
    return ruleset.sha256()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(args) != 1:
            raise SandboxError("usage: python -m containers.keeper SPEC_JSON")
        spec = json.loads(args[0])
        sha = setup(spec)
    except (AwfError, ValueError, KeyError, OSError) as exc:
        print(f"{FAILED} {exc}", flush=True)
        return 125
    print(f"{READY} {sha}", flush=True)
    # Drop every capability for the rest of the container's life; sleep until removed.
    os.execvp("setpriv", ["setpriv", "--inh-caps=-all", "--ambient-caps=-all",
                          "--bounding-set=-all", "--no-new-privs", "--", "sleep", "infinity"])


if __name__ == "__main__":
    sys.exit(main())
