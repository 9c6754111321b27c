"""The Docker backend's layout as pure data: subnets, fixed addresses, names and the rulesets.

    awf-<run>-int: .10/::10 proxy, .20/::20 keeper (the agent shares it)
    awf-<run>-ext (bridge, NAT): the proxy's egress, IPv6 too when the host has it

Subnet choice (docs/architecture.md §5.1): the requested (or default 172.30.0.0/24) subnet unless it
overlaps a host address or route, a nameserver or a Docker network; then the /24s of
10.213.0.0/16 in order, /24 N with fd61:7766:0:N::/64. The -ext network takes the next free /24
of the same pool, so Docker's own address pools (which include 172.30.0.0/16) are never asked to
pick one while our -int is being created in parallel; its IPv6 twin (only when the host has IPv6
egress, `host_has_ipv6`) is fd61:7766:2:N::/64 for the pool's /24 N, fd61:7766:2:100::/64 for
any other. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from netfilter.errors import SandboxError
from netfilter.ruleset import (
    DNS_PORT,
    EXPLICIT_PORT,
    TRANSPARENT_PORT,
    AgentRuleset,
    IPAddress,
    IPNetwork,
    ProxySideRuleset,
)
from proxy.errors import ConfigError

DEFAULT_V4 = IPv4Network("172.30.0.0/24")
DEFAULT_V6 = IPv6Network("fd61:7766::/64")
POOL_V4 = IPv4Network("10.213.0.0/16")
POOL_V6_BASE = int(IPv6Network("fd61:7766::/48").network_address)
# fd61:7766:1::/48 is the netns backend's pool (netfilter/netns.py POOL_V6), whose /126s all lie in
# its first /64: -ext must stay out of it, or a Docker run blocks every netns run.
EXT_V6_BASE = int(IPv6Network("fd61:7766:2::/48").network_address)
EXT_V6_OTHER = 0x100  # -ext's IPv6 /64 number when its /24 is not the pool's (never a pool N)
GLOBAL_UNICAST = IPv6Network("2000::/3")
PROXY_OFFSET, KEEPER_OFFSET = 0x10, 0x20  # .10/::10 (decimal 10 for IPv4), ::20


@dataclass(frozen=True, slots=True)
class Subnets:
    v4: IPv4Network
    v6: IPv6Network | None
    ext_v4: IPv4Network
    ext_v6: IPv6Network | None = None  # the proxy's IPv6 egress (host_has_ipv6)

    @property
    def proxy_v4(self) -> IPv4Address:
        return self.v4.network_address + 10

    @property
    def proxy_addrs(self) -> tuple[IPAddress, ...]:
        """The proxy's -int addresses: the only ones it listens on (never -ext's)."""
        return (self.proxy_v4,) if self.proxy_v6 is None else (self.proxy_v4, self.proxy_v6)

    @property
    def ext_gateway_v6(self) -> IPv6Address | None:
        """The host's IPv6 address on -ext (Docker's gateway: the first address)."""
        return None if self.ext_v6 is None else self.ext_v6.network_address + 1

    @property
    def keeper_v4(self) -> IPv4Address:
        return self.v4.network_address + 20

    @property
    def proxy_v6(self) -> IPv6Address | None:
        return None if self.v6 is None else self.v6.network_address + PROXY_OFFSET

    @property
    def keeper_v6(self) -> IPv6Address | None:
        return None if self.v6 is None else self.v6.network_address + KEEPER_OFFSET


@dataclass(frozen=True, slots=True)
class Names:
    run: str

    @property
    def int_net(self) -> str:
        return f"awf-{self.run}-int"

    @property
    def ext_net(self) -> str:
        return f"awf-{self.run}-ext"

    @property
    def proxy(self) -> str:
        return f"awf-{self.run}-proxy"

    @property
    def keeper(self) -> str:
        return f"awf-{self.run}-net"

    @property
    def agent(self) -> str:
        return f"awf-{self.run}-agent"

    @property
    def api(self) -> str:
        return f"awf-{self.run}-api"

    @property
    def guard(self) -> str:
        return f"awf-{self.run}-guard"


def parse_subnet(flag: str, text: str | None, default: IPNetwork, prefix: int) -> IPNetwork:
    """--subnet (a /24 at most) or --subnet6 (a /64 at most); ConfigError names the fix."""
    if text is None:
        return default
    try:
        net = IPv4Network(text) if default.version == 4 else IPv6Network(text)
    except ValueError as exc:
        raise ConfigError(f"{flag} {text!r} is not a network like {default}: {exc}") from exc
    if net.prefixlen > prefix:
        raise ConfigError(f"{flag} {text!r} is smaller than a /{prefix}; awf needs room for "
                          f"its fixed addresses, e.g. {default}")
    return net


def pool_candidates() -> Iterator[tuple[IPv4Network, IPv6Network]]:
    """The fallbacks, in order: 10.213.N.0/24 with fd61:7766:0:N::/64."""
    base = int(POOL_V4.network_address)
    for n in range(2 ** (24 - POOL_V4.prefixlen)):
        yield (IPv4Network((base + (n << 8), 24)),
               IPv6Network((POOL_V6_BASE + (n << 64), 64)))


def ext_v6_for(ext_v4: IPv4Network) -> IPv6Network:
    """-ext's IPv6 twin: fd61:7766:2:N::/64 for the pool's /24 N, fd61:7766:2:100::/64 for any
    other /24 (the default or --subnet's, which -ext takes on a retry)."""
    base = int(POOL_V4.network_address)
    n = ((int(ext_v4.network_address) - base) >> 8 if ext_v4.subnet_of(POOL_V4)
         else EXT_V6_OTHER)
    return IPv6Network((EXT_V6_BASE + (n << 64), 64))


def host_has_ipv6(routes: Iterable[IPv6Network]) -> bool:
    """Whether the proxy can get IPv6 egress through the host (docs/architecture.md §5.1):
    `routes` are the destinations of the host's unicast IPv6 routes (main table). A default
    route (global or ULA gateway alike) or a route into global unicast space (2000::/3) will
    do; link-local, ULA and loopback routes alone lead nowhere the proxy may go (fc00::/7 and
    fe80::/10 are denied ranges, docs/proxy.md §4)."""
    return any(r.prefixlen == 0 or r.overlaps(GLOBAL_UNICAST) for r in routes)


def _free(net: IPNetwork, taken: Iterable[IPNetwork]) -> bool:
    return not any(net.version == t.version and net.overlaps(t) for t in taken)


def choose_subnets(taken: Iterable[IPNetwork], *, want_v4: IPv4Network | None = None,
                   want_v6: IPv6Network | None = None, ipv6: bool = True,
                   ext_ipv6: bool = False, skip: int = 0) -> Subnets:
    """The first free candidate (after `skip` free ones, fewer if fewer are free: a retry
    after Docker refused one).

    The requested subnet comes first; if it is taken, the pool follows (an explicit --subnet
    that is taken is still a fallback, as a collision must not stop the run). With `ext_ipv6`
    (the host has IPv6 egress), -ext's /24 is one whose IPv6 twin (`ext_v6_for`) is free too;
    if there is none, -ext is IPv4 only."""
    taken = list(taken)
    first_v4 = want_v4 or DEFAULT_V4
    first_v6 = want_v6 or DEFAULT_V6
    candidates: list[tuple[IPv4Network, IPv6Network]] = [(first_v4, first_v6)]
    candidates += [c for c in pool_candidates() if c[0] != first_v4]
    free = [c for c in candidates
            if _free(c[0], taken) and (not ipv6 or _free(c[1], taken))]
    skip = min(skip, max(0, len(free) - 2))
    if len(free) < 2:
        raise SandboxError(f"no free subnet for the run: {first_v4} and every /24 of {POOL_V4} "
                          "overlap a host route or a Docker network; pass --subnet")
    v4, v6 = free[skip]
    later = [c[0] for c in free[skip + 1:] if not c[0].overlaps(v4)]
    if not later:
        raise SandboxError(f"no free subnet for the run's egress network besides {v4}; "
                           "pass --subnet")

    def v6_free(ext: IPv4Network) -> bool:
        six = ext_v6_for(ext)
        return _free(six, taken) and not (ipv6 and six.overlaps(v6))

    # with no /24 whose twin is free too, -ext stays IPv4 only (the caller says so)
    dual = next((e for e in later if v6_free(e)), None) if ext_ipv6 else None
    return Subnets(v4=v4, v6=v6 if ipv6 else None, ext_v4=dual or later[0],
                   ext_v6=None if dual is None else ext_v6_for(dual))


def tcp_ports(allow_ports: Iterable[int]) -> frozenset[int]:
    return frozenset({80, 443} | set(allow_ports))


def proxy_ruleset(subnets: Subnets, ports: frozenset[int], *,
                  allow_ranges: Iterable[IPNetwork] = (),
                  dns_servers: Iterable[IPAddress] = (),
                  sidecar_ports: frozenset[int] = frozenset(),
                  parent: tuple[Iterable[IPAddress], int] | None = None) -> ProxySideRuleset:
    """`sidecar_ports`: the API proxy sidecar's, which shares the proxy's namespace;
    `parent`: --upstream-proxy's addresses and port, the only ones of it the proxy may reach."""
    return ProxySideRuleset(
        table="awf_proxy",
        agent_ifname=None,
        agent_net_v4=subnets.v4,
        agent_net_v6=subnets.v6,
        redirect_tcp_ports=ports,
        transparent_port=TRANSPARENT_PORT,
        dns_port=DNS_PORT,
        listen_ports=frozenset({EXPLICIT_PORT, TRANSPARENT_PORT, DNS_PORT}) | sidecar_ports,
        restrict_output=True,
        allow_ranges=frozenset(allow_ranges),
        dns_servers=frozenset(dns_servers),
        parent_addrs=frozenset(parent[0]) if parent else frozenset(),
        parent_port=parent[1] if parent else None,
    )


def agent_ruleset(subnets: Subnets, ports: frozenset[int],
                  sidecar_ports: frozenset[int] = frozenset()) -> AgentRuleset:
    """`sidecar_ports`: the API proxy sidecar's, on the proxy's addresses."""
    return AgentRuleset(
        proxy_v4=subnets.proxy_v4,
        proxy_v6=subnets.proxy_v6,
        proxy_ports=frozenset({EXPLICIT_PORT, DNS_PORT}),
        tcp_ports=ports,
        docker_dns=True,
        sidecar_ports=sidecar_ports,
        sidecar_v4=subnets.proxy_v4 if sidecar_ports else None,
        sidecar_v6=subnets.proxy_v6 if sidecar_ports else None,
    )
