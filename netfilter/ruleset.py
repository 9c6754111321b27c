"""nftables rulesets as frozen data, rendered to one deterministic ``nft -f`` script.

Pure: no I/O. ``netfilter.apply`` is the only nft caller; it also reads the live table back and
compares it with ``Table.shapes()`` (see ``RuleShape``).

The script replaces the table atomically: ``add table inet T`` (so the delete cannot fail),
``delete table inet T``, then the whole ``table inet T { ... }``. ``nft -f`` sends the file as one
kernel transaction, so if any line fails the old table stays in force.

Every rule is written for the ``inet`` family so it sees IPv4 and IPv6 alike (``meta l4proto``,
``th dport``, ``fib``, ``ct``, interface names). A rule that must name an address family is one of
a v4/v6 pair with the same ``pair`` key (``tests/unit/test_ruleset.py`` checks the twins match);
the only unpaired rules carry a ``note`` saying why (neighbour discovery and link-scope MLD reports
are ICMPv6 and have no IPv4 rule, since ARP is not seen by the inet family; Docker's resolver
127.0.0.11 has no IPv6 address). The docs/proxy.md §4 ranges come from ``proxy.addr.DENIED``, so the
proxy's own checks and its egress chain cannot drift apart.

Refused traffic goes to one regular chain, ``refuse``: it records the destination in the dynamic
sets ``@rejected4``/``@rejected6`` (key ``daddr . l4proto . dport``; port 0 for protocols without
ports; a counter per element), then rejects TCP with a reset and the rest with ICMP
admin-prohibited so tools fail at once. Recording is a rule of its own: when a set is full the
update fails and only that rule is skipped, the reject still happens.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
)

from proxy.addr import DENIED
from proxy.errors import ConfigError

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# awf-proxy's ports in a sandbox (both backends): what the rulesets let in and redirect to, and
# what `awf.run.proxy_argv` tells the proxy to listen on
EXPLICIT_PORT, TRANSPARENT_PORT, DNS_PORT = 3128, 3129, 53

_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
_IFNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
PORT_PROTOCOLS = ("tcp", "udp", "dccp", "sctp", "udplite")  # th dport is a real port for these
REJECTED_SET_SIZE = 65535
DOCKER_DNS = IPv4Address("127.0.0.11")
ND_TYPES = "{ nd-neighbor-solicit, nd-neighbor-advert }"
MLD_TYPES = "{ mld-listener-report, mld2-listener-report }"
LINK_MULTICAST = IPv6Network("ff02::/16")


class Family(StrEnum):
    ANY = "any"  # matches both: no family-specific expression
    V4 = "ipv4"
    V6 = "ipv6"


# Standard priority names as nft spells them, with their values in the inet family.
PRIORITIES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50,
              "srcnat": 100}


@dataclass(frozen=True, slots=True)
class Priority:
    base: str
    offset: int = 0

    @property
    def value(self) -> int:
        return PRIORITIES[self.base] + self.offset

    def render(self) -> str:
        if self.offset == 0:
            return self.base
        sign = "-" if self.offset < 0 else "+"
        return f"{self.base} {sign} {abs(self.offset)}"


@dataclass(frozen=True, slots=True)
class RuleShape:
    """What ``verify`` compares for one rule: the statements in order (the nft JSON key, plus
    the target of ``goto``/``jump`` and the operation and set of a set update), every integer
    matched (ports, the redirect port), the addresses matched as collapsed networks, the
    interface names matched, and how many matches are negated. Dependencies nft adds or hides
    (``meta nfproto``, ``meta l4proto tcp`` before ``tcp dport``) are left out on purpose: they
    are not stable in nft's output."""

    kinds: tuple[str, ...]
    ints: frozenset[int] = frozenset()
    nets: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()
    negated: int = 0


@dataclass(frozen=True, slots=True)
class Match:
    """One rendered match, with the values ``RuleShape`` will find in the live rule."""

    text: str
    ints: frozenset[int] = frozenset()
    nets: frozenset[IPNetwork] = frozenset()
    names: frozenset[str] = frozenset()
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Rule:
    matches: tuple[Match, ...]
    action: str  # the rendered statements, e.g. "accept", "counter drop", "redirect to :3129"
    kinds: tuple[str, ...]  # their nft JSON keys, in order
    family: Family = Family.ANY
    pair: str = ""  # v4/v6 twins share it
    note: str = ""  # why a family-specific rule has no twin
    action_ints: frozenset[int] = frozenset()

    def render(self) -> str:
        return " ".join([*(m.text for m in self.matches), self.action])

    def shape(self) -> RuleShape:
        ints: set[int] = set(self.action_ints)
        nets: set[IPNetwork] = set()
        names: set[str] = set()
        for m in self.matches:
            ints |= m.ints
            nets |= m.nets
            names |= m.names
        return RuleShape(self.kinds, frozenset(ints), canonical_nets(nets), frozenset(names),
                         sum(m.negated for m in self.matches))


@dataclass(frozen=True, slots=True)
class SetDecl:
    """A dynamic set with a counter per element (``@rejected4``/``@rejected6``)."""

    name: str
    key: tuple[str, ...]
    size: int = REJECTED_SET_SIZE

    def render(self) -> str:
        return (f"set {self.name} {{ type {' . '.join(self.key)}; size {self.size}; "
                "flags dynamic; counter; }")


@dataclass(frozen=True, slots=True)
class Chain:
    name: str
    rules: tuple[Rule, ...]
    hook: str | None = None  # None: a regular chain, reached only by jump/goto
    type: str = "filter"
    priority: Priority = field(default_factory=lambda: Priority("filter"))
    policy: str = "accept"

    def render(self) -> str:
        lines = [f"\tchain {self.name} {{"]
        if self.hook is not None:
            lines.append(f"\t\ttype {self.type} hook {self.hook} priority "
                         f"{self.priority.render()}; policy {self.policy};")
        lines.extend(f"\t\t{rule.render()}" for rule in self.rules)
        lines.append("\t}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Table:
    """One ``inet`` table: what gets rendered and what ``verify`` expects to find."""

    name: str
    sets: tuple[SetDecl, ...]
    chains: tuple[Chain, ...]

    def render(self) -> str:
        t = f"inet {self.name}"
        body = [f"\t{s.render()}" for s in self.sets] + [c.render() for c in self.chains]
        return (f"add table {t}\ndelete table {t}\ntable {t} {{\n" + "\n".join(body)
                + "\n}\n")

    def shapes(self) -> dict[str, tuple[RuleShape, ...]]:
        return {c.name: tuple(r.shape() for r in c.rules) for c in self.chains}


# --- building blocks -------------------------------------------------------------------------


def canonical_nets(nets: Iterable[IPNetwork]) -> frozenset[str]:
    """Collapse per family and spell each network; a full-length prefix is a bare address (nft
    prints ``10.0.0.1``, not ``10.0.0.1/32``, and may merge adjacent prefixes into ranges, which
    the reader turns back into networks before calling this)."""
    nets = list(nets)
    v4: list[IPNetwork] = list(ipaddress.collapse_addresses(
        n for n in nets if isinstance(n, IPv4Network)))
    v6: list[IPNetwork] = list(ipaddress.collapse_addresses(
        n for n in nets if isinstance(n, IPv6Network)))
    return frozenset(str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n)
                     for n in v4 + v6)


def _values(items: Iterable[object]) -> str:
    ordered = [str(i) for i in items]
    return ordered[0] if len(ordered) == 1 else "{ " + ", ".join(ordered) + " }"


def _ports(ports: Iterable[int]) -> str:
    return _values(sorted(ports))


def _nets_text(nets: Iterable[IPNetwork]) -> str:
    ordered = sorted(nets, key=lambda n: (n.version, int(n.network_address), n.prefixlen))
    return _values(str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n)
                   for n in ordered)


def m_iif(name: str) -> Match:
    return Match(f'iifname "{name}"', names=frozenset({name}))


def m_oif(name: str) -> Match:
    return Match(f'oifname "{name}"', names=frozenset({name}))


def m_family(family: Family) -> Match:
    return Match(f"meta nfproto {family.value}")


def m_addr(family: Family, side: str, nets: Iterable[IPNetwork]) -> Match:
    nets = tuple(nets)
    proto = "ip" if family is Family.V4 else "ip6"
    return Match(f"{proto} {side} {_nets_text(nets)}", nets=frozenset(nets))


def m_tcp_ports(ports: Iterable[int]) -> Match:
    ports = frozenset(ports)
    return Match(f"meta l4proto tcp th dport {_ports(ports)}", ints=ports)


def m_udp_ports(ports: Iterable[int]) -> Match:
    ports = frozenset(ports)
    return Match(f"meta l4proto udp th dport {_ports(ports)}", ints=ports)


def m_nexthop(family: Family, hop: IPAddress) -> Match:
    """The route the packet took goes via ``hop`` (its gateway, or ``hop`` itself on-link): a
    link-local or other on-link address, or a route awf did not make, has another next hop."""
    proto = "ip" if family is Family.V4 else "ip6"
    net = IPv4Network(hop) if isinstance(hop, IPv4Address) else IPv6Network(hop)
    return Match(f"rt {proto} nexthop {hop}", nets=frozenset({net}))


def m_dns(port: int = 53) -> Match:
    return Match(f"meta l4proto {{ tcp, udp }} th dport {port}", ints=frozenset({port}))


M_ESTABLISHED = Match("ct state established,related")
M_ND = Match(f"icmpv6 type {ND_TYPES}")
M_MLD = (Match(f"ip6 daddr {LINK_MULTICAST}", nets=frozenset({LINK_MULTICAST})),
         Match(f"icmpv6 type {MLD_TYPES}"))
M_LOCAL_ON_IIF = Match("fib daddr . iif type local")  # the address is one of the input link's


_ACTIONS = {  # name -> (rendered statements, their nft JSON keys)
    "accept": ("accept", ("accept",)),
    "refuse": ("goto refuse", ("goto refuse",)),
    "from_agent": ("goto from_agent", ("goto from_agent",)),
    "drop": ("counter drop", ("counter", "drop")),
}


def rule(action: str, *matches: Match, family: Family = Family.ANY, pair: str = "",
         note: str = "") -> Rule:
    text, kinds = _ACTIONS[action]
    return Rule(matches, text, kinds, family, pair, note)


ND_NOTE = "neighbour discovery is ICMPv6; IPv4 uses ARP, which inet never sees"


def nd_accept() -> list[Rule]:
    """Link housekeeping: neighbour discovery, and the kernel's own MLD reports to link-scope
    groups (sent when a link comes up; refusing them would only fill ``@rejected6``)."""
    return [rule("accept", M_ND, family=Family.V6, note=ND_NOTE),
            rule("accept", *M_MLD, family=Family.V6, note=ND_NOTE)]


def family_pair(action: str, key: str, v4: tuple[Match, ...] | None,
                v6: tuple[Match, ...] | None) -> list[Rule]:
    """The same rule once per family (``meta nfproto`` first); ``None`` leaves a family out."""
    return [rule(action, m_family(family), *matches, family=family, pair=key)
            for family, matches in ((Family.V4, v4), (Family.V6, v6)) if matches is not None]


def redirect_pair(key: str, v4: tuple[Match, ...] | None, v6: tuple[Match, ...] | None,
                  port: int) -> list[Rule]:
    return [Rule((m_family(family), *matches), f"redirect to :{port}", ("redirect",), family,
                 key, action_ints=frozenset({port}))
            for family, matches in ((Family.V4, v4), (Family.V6, v6)) if matches is not None]


def rejected_sets() -> tuple[SetDecl, ...]:
    return (SetDecl("rejected4", ("ipv4_addr", "inet_proto", "inet_service")),
            SetDecl("rejected6", ("ipv6_addr", "inet_proto", "inet_service")))


def refuse_chain() -> Chain:
    """Record, then reject: TCP with a reset, everything else with ICMP admin-prohibited."""
    with_ports = Match(f"meta l4proto {_values(PORT_PROTOCOLS)}")
    without_ports = Match(f"meta l4proto != {_values(PORT_PROTOCOLS)}", negated=True)
    rules: list[Rule] = []
    for family, proto, n in ((Family.V4, "ip", "4"), (Family.V6, "ip6", "6")):
        rules.append(Rule((m_family(family), with_ports),
                          f"update @rejected{n} {{ {proto} daddr . meta l4proto . th dport }}",
                          (f"set update @rejected{n}",), family, "record-port"))
        rules.append(Rule((m_family(family), without_ports),
                          f"update @rejected{n} {{ {proto} daddr . meta l4proto . 0 }}",
                          (f"set update @rejected{n}",), family, "record-proto"))
    rules.append(Rule((Match("meta l4proto tcp"),), "reject with tcp reset", ("reject",)))
    rules.append(Rule((), "reject with icmpx admin-prohibited", ("reject",)))
    return Chain("refuse", tuple(rules))


# --- validation ------------------------------------------------------------------------------


def _check_table(name: str) -> None:
    if not isinstance(name, str) or not _TABLE_NAME.fullmatch(name):
        raise ConfigError(f"nft table name {name!r} is not valid; use letters, digits and '_' "
                          "(at most 32, starting with a letter), like 'awf_1a2b3c4d'")


def _check_ifname(name: str) -> None:
    if not isinstance(name, str) or not _IFNAME.fullmatch(name):
        raise ConfigError(f"interface name {name!r} is not valid; use at most 15 letters, "
                          "digits, '_', '.' or '-'")


def _check_ports(what: str, ports: Iterable[int]) -> None:
    for port in ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ConfigError(f"{what}: port {port!r} is not between 1 and 65535")


def _check_type(what: str, value: object, kind: type | tuple[type, ...]) -> None:
    if not isinstance(value, kind):
        raise ConfigError(f"{what}: {value!r} is not a {getattr(kind, '__name__', kind)}")


# --- docs/proxy.md §4 ranges for the proxy's own egress ---------------------------------------

_EMBED_V4 = (  # (prefix the IPv4 address follows, bit offset of the IPv4 address)
    (IPv6Network("::ffff:0:0/96"), 0),  # mapped
    (IPv6Network("::ffff:0:0:0/96"), 0),  # translated (RFC 2765)
    (IPv6Network("::/96"), 0),  # compatible
    (IPv6Network("64:ff9b::/96"), 0),  # NAT64 (RFC 6052)
    (IPv6Network("2002::/16"), 80),  # 6to4 (RFC 3056): bits 16-47
)


def _subtract(nets: Iterable[IPNetwork], minus: Iterable[IPNetwork]) -> list[IPNetwork]:
    out: list[IPNetwork] = list(nets)
    for hole in minus:
        nxt: list[IPNetwork] = []
        for net in out:
            if net.version != hole.version or not net.overlaps(hole):
                nxt.append(net)
            elif net.subnet_of(hole):  # type: ignore[arg-type]  # same version checked
                continue
            else:
                nxt.extend(net.address_exclude(hole))  # type: ignore[arg-type]
        out = nxt
    return out


def _embedded(v4: IPv4Network) -> list[IPv6Network]:
    nets = []
    for prefix, shift in _EMBED_V4:
        base = int(prefix.network_address) | (int(v4.network_address) << shift)
        nets.append(IPv6Network((base, prefix.prefixlen + v4.prefixlen)))
    return nets


def denied_egress(allow: Iterable[IPNetwork]) -> tuple[list[IPv4Network], list[IPv6Network]]:
    """docs/proxy.md §4 ranges minus ``--allow-range``, collapsed; IPv6 includes every form that
    embeds a denied IPv4 address (judged by that IPv4, as the contract says)."""
    allow = tuple(allow)
    base4 = [n for n in DENIED.networks if isinstance(n, IPv4Network)]
    base6 = [n for n in DENIED.networks if isinstance(n, IPv6Network)]
    v4 = [n for n in _subtract(base4, allow) if isinstance(n, IPv4Network)]
    embedded = [e for n in v4 for e in _embedded(n)]
    v6 = [n for n in _subtract([*base6, *embedded], allow) if isinstance(n, IPv6Network)]
    return (list(ipaddress.collapse_addresses(v4)), list(ipaddress.collapse_addresses(v6)))


# --- the two rulesets ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRuleset:
    """The agent's namespace: only the proxy, the sidecar and routed TCP may leave.

    ``tcp_ports`` (80, 443 and ``--allow-ports``) are accepted to any address whose route's next
    hop is the proxy (``rt ip nexthop``/``rt ip6 nexthop``): the proxy side redirects them to
    its transparent listener. Anything routed elsewhere (an ``fe80::`` link-local address of the
    bridge or the host, another on-link address, a route added behind awf's back) is refused and
    recorded; with no ``proxy_v6`` no TCP leaves over IPv6 at all. DNS goes to the proxy only
    (docs/architecture.md §6 checks that UDP 53 elsewhere fails).
    """

    table: str = "awf"
    proxy_v4: IPv4Address
    proxy_v6: IPv6Address | None
    proxy_ports: frozenset[int]  # TCP: the explicit port (3128) and DNS (53); UDP too for 53
    tcp_ports: frozenset[int]  # 80, 443 and --allow-ports, to any address
    sidecar_ports: frozenset[int] = frozenset()
    docker_dns: bool = False  # reject Docker's embedded resolver 127.0.0.11
    sidecar_v4: IPv4Address | None = None
    sidecar_v6: IPv6Address | None = None

    def __post_init__(self) -> None:
        _check_table(self.table)
        _check_type("proxy_v4", self.proxy_v4, IPv4Address)
        for what, v6 in (("proxy_v6", self.proxy_v6), ("sidecar_v6", self.sidecar_v6)):
            if v6 is not None:
                _check_type(what, v6, IPv6Address)
        if self.sidecar_v4 is not None:
            _check_type("sidecar_v4", self.sidecar_v4, IPv4Address)
        _check_ports("proxy_ports", self.proxy_ports)
        _check_ports("tcp_ports", self.tcp_ports)
        _check_ports("sidecar_ports", self.sidecar_ports)
        if not self.proxy_ports:
            raise ConfigError("proxy_ports is empty; the agent needs at least the proxy's 3128")
        if self.sidecar_ports and self.sidecar_v4 is None:
            raise ConfigError("sidecar_ports given without sidecar_v4; pass the sidecar's "
                              "address (e.g. 172.30.0.30)")

    def model(self) -> Table:
        out: list[Rule] = [rule("accept", M_ESTABLISHED)]
        if self.docker_dns:
            out.append(rule("refuse", m_family(Family.V4),
                            m_addr(Family.V4, "daddr", [IPv4Network(DOCKER_DNS)]),
                            family=Family.V4,
                            note="Docker's embedded resolver exists only as 127.0.0.11"))
        out.append(rule("accept", m_oif("lo")))
        p4 = m_addr(Family.V4, "daddr", [IPv4Network(self.proxy_v4)])
        p6 = (m_addr(Family.V6, "daddr", [IPv6Network(self.proxy_v6)])
              if self.proxy_v6 is not None else None)
        if self.tcp_ports:
            routed = m_tcp_ports(self.tcp_ports)
            out += family_pair(
                "accept", "routed-tcp", (m_nexthop(Family.V4, self.proxy_v4), routed),
                (m_nexthop(Family.V6, self.proxy_v6), routed)
                if self.proxy_v6 is not None else None)
        tcp = m_tcp_ports(self.proxy_ports)
        out += family_pair("accept", "proxy-tcp", (p4, tcp), (p6, tcp) if p6 else None)
        if 53 in self.proxy_ports:
            udp = m_udp_ports({53})
            out += family_pair("accept", "proxy-udp", (p4, udp), (p6, udp) if p6 else None)
        if self.sidecar_ports and self.sidecar_v4 is not None:
            side = m_tcp_ports(self.sidecar_ports)
            s4 = m_addr(Family.V4, "daddr", [IPv4Network(self.sidecar_v4)])
            s6 = (m_addr(Family.V6, "daddr", [IPv6Network(self.sidecar_v6)])
                  if self.sidecar_v6 is not None else None)
            out += family_pair("accept", "sidecar", (s4, side), (s6, side) if s6 else None)
        out += [*nd_accept(), rule("refuse")]
        inp = [rule("accept", M_ESTABLISHED), rule("accept", m_iif("lo")), *nd_accept()]
        return Table(self.table, rejected_sets(), (
            Chain("output", tuple(out), hook="output", policy="drop"),
            Chain("input", tuple(inp), hook="input", policy="drop"),
            refuse_chain(),
        ))

    def render(self) -> str:
        return self.model().render()

    def sha256(self) -> str:
        return hashlib.sha256(self.render().encode()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxySideRuleset:
    """The namespace where awf-proxy listens (the host for the netns backend, table
    ``awf_<run>``; the proxy container for Docker, ``awf_proxy``).

    - ``prerouting`` (nat, ``dstnat - 10``: before Docker's own DNAT at ``dstnat``, so a port
      Docker publishes cannot take the agent's traffic first) redirects the agent's TCP to
      ``redirect_tcp_ports`` to the transparent listener and its DNS to the forwarder. The NAT
      happens where the listener lives, so ``SO_ORIGINAL_DST`` works.
    - ``input`` (``filter - 10``, policy accept for everyone else) sends anything from the agent
      side (``agent_ifname``, or a source in the agent's networks) to ``from_agent``: it accepts
      replies, neighbour discovery, and ``listen_ports`` on an address of the link it came in
      on (``fib daddr . iif type local``: a host service on another interface stays out of
      reach); the rest is refused.
    - ``forward`` drops and counts anything from or to the agent side, whatever ``ip_forward``
      says.
    - ``output`` (only with ``restrict_output``, for the Docker proxy container): new
      connections only to TCP 80, 443 and ``redirect_tcp_ports``, never to the docs/proxy.md
      §4 ranges (except ``allow_ranges``) and never to the agent's networks; DNS (port 53) only
      to ``dns_servers``, accepted before the range refusal (a VPC resolver such as 10.0.0.2,
      168.63.129.16 or 169.254.169.253 is private or link-local), and to no other address.
      ``parent_addrs`` on TCP ``parent_port`` (``--upstream-proxy``'s parent, a corporate proxy
      that is usually private) is accepted the same way, before the range refusal: exactly
      those addresses on that port, nothing else of theirs.
    """

    table: str
    agent_ifname: str | None
    agent_net_v4: IPv4Network
    agent_net_v6: IPv6Network | None
    redirect_tcp_ports: frozenset[int]
    transparent_port: int
    dns_port: int
    listen_ports: frozenset[int]  # explicit, transparent, dns
    restrict_output: bool = False
    allow_ranges: frozenset[IPNetwork] = frozenset()
    dns_servers: frozenset[IPAddress] = frozenset()
    parent_addrs: frozenset[IPAddress] = frozenset()  # --upstream-proxy's parent (output only)
    parent_port: int | None = None

    def __post_init__(self) -> None:
        _check_table(self.table)
        if self.agent_ifname is not None:
            _check_ifname(self.agent_ifname)
        _check_type("agent_net_v4", self.agent_net_v4, IPv4Network)
        if self.agent_net_v6 is not None:
            _check_type("agent_net_v6", self.agent_net_v6, IPv6Network)
        _check_ports("redirect_tcp_ports", self.redirect_tcp_ports)
        _check_ports("transparent_port", [self.transparent_port])
        _check_ports("dns_port", [self.dns_port])
        _check_ports("listen_ports", self.listen_ports)
        for what, port in (("transparent_port", self.transparent_port),
                           ("dns_port", self.dns_port)):
            if port not in self.listen_ports:
                raise ConfigError(f"{what} {port} is not in listen_ports "
                                  f"{sorted(self.listen_ports)}; add it")
        if self.transparent_port == self.dns_port:
            raise ConfigError(f"transparent_port and dns_port are both {self.dns_port}; "
                              "the transparent listener and the DNS forwarder need their own")
        clash = self.redirect_tcp_ports & self.listen_ports
        if clash:
            raise ConfigError(f"redirect ports {sorted(clash)} are the proxy's own ports; "
                              "remove them from --allow-ports")
        for net in self.allow_ranges:
            _check_type("allow_ranges", net, (IPv4Network, IPv6Network))
        for ip in self.dns_servers:
            _check_type("dns_servers", ip, (IPv4Address, IPv6Address))
        for ip in self.parent_addrs:
            _check_type("parent_addrs", ip, (IPv4Address, IPv6Address))
        if self.parent_port is not None:
            _check_ports("parent_port", [self.parent_port])
        if bool(self.parent_addrs) != (self.parent_port is not None):
            raise ConfigError("parent_addrs and parent_port go together: give the parent "
                              "proxy's addresses and its port, or neither")

    def model(self) -> Table:
        src4 = m_addr(Family.V4, "saddr", [self.agent_net_v4])
        dst4 = m_addr(Family.V4, "daddr", [self.agent_net_v4])
        net6 = self.agent_net_v6
        src6 = m_addr(Family.V6, "saddr", [net6]) if net6 is not None else None
        dst6 = m_addr(Family.V6, "daddr", [net6]) if net6 is not None else None
        iif = (m_iif(self.agent_ifname),) if self.agent_ifname else ()

        def agent(*more: Match) -> tuple[tuple[Match, ...], tuple[Match, ...] | None]:
            """Traffic from the agent: its link (when known) AND its source networks."""
            return (*iif, src4, *more), ((*iif, src6, *more) if src6 is not None else None)

        pre: list[Rule] = []
        if self.redirect_tcp_ports:
            pre += redirect_pair("redirect-tcp", *agent(m_tcp_ports(self.redirect_tcp_ports)),
                                 port=self.transparent_port)
        pre += redirect_pair("redirect-dns", *agent(m_dns()), port=self.dns_port)

        # Refusing is wider than redirecting: its link OR its source networks.
        inp: list[Rule] = [rule("from_agent", *iif)] if iif else []
        inp += family_pair("from_agent", "from-agent", (src4,), (src6,) if src6 else None)
        from_agent = [
            rule("accept", M_ESTABLISHED),
            *nd_accept(),
            rule("accept", M_LOCAL_ON_IIF, m_tcp_ports(self.listen_ports)),
            rule("accept", M_LOCAL_ON_IIF, m_udp_ports({self.dns_port})),
            rule("refuse"),
        ]

        fwd: list[Rule] = []
        if self.agent_ifname:
            fwd += [rule("drop", m_iif(self.agent_ifname)), rule("drop", m_oif(self.agent_ifname))]
        fwd += family_pair("drop", "forward-from", (src4,), (src6,) if src6 else None)
        fwd += family_pair("drop", "forward-to", (dst4,), (dst6,) if dst6 else None)

        chains = [
            Chain("prerouting", tuple(pre), hook="prerouting", type="nat",
                  priority=Priority("dstnat", -10)),
            Chain("input", tuple(inp), hook="input", priority=Priority("filter", -10)),
            Chain("from_agent", tuple(from_agent)),
            Chain("forward", tuple(fwd), hook="forward", priority=Priority("filter", -10)),
        ]
        if self.restrict_output:
            chains.append(Chain("output", self._output_rules(dst4, dst6), hook="output",
                                priority=Priority("filter", -10), policy="drop"))
        chains.append(refuse_chain())
        return Table(self.table, rejected_sets(), tuple(chains))

    def _output_rules(self, dst4: Match, dst6: Match | None) -> tuple[Rule, ...]:
        out = [rule("accept", M_ESTABLISHED), rule("accept", m_oif("lo")), *nd_accept()]
        out += family_pair("refuse", "out-agent", (dst4,), (dst6,) if dst6 else None)
        dns4 = sorted(IPv4Network(a) for a in self.dns_servers if isinstance(a, IPv4Address))
        dns6 = sorted(IPv6Network(a) for a in self.dns_servers if isinstance(a, IPv6Address))
        out += family_pair("accept", "out-dns-servers",
                           (m_addr(Family.V4, "daddr", dns4), m_dns()) if dns4 else None,
                           (m_addr(Family.V6, "daddr", dns6), m_dns()) if dns6 else None)
        if self.parent_port is not None:  # --upstream-proxy: that address and port alone
            par4 = sorted(IPv4Network(a) for a in self.parent_addrs if isinstance(a, IPv4Address))
            par6 = sorted(IPv6Network(a) for a in self.parent_addrs if isinstance(a, IPv6Address))
            port = m_tcp_ports({self.parent_port})
            out += family_pair("accept", "out-parent-proxy",
                               (m_addr(Family.V4, "daddr", par4), port) if par4 else None,
                               (m_addr(Family.V6, "daddr", par6), port) if par6 else None)
        denied4, denied6 = denied_egress(self.allow_ranges)
        out += family_pair("refuse", "out-denied",
                           (m_addr(Family.V4, "daddr", denied4),) if denied4 else None,
                           (m_addr(Family.V6, "daddr", denied6),) if denied6 else None)
        # DNS only to the configured resolvers (accepted above, before any range refusal,
        # wherever they are): no other address is asked, so none is reachable on port 53
        out += [rule("accept", m_tcp_ports({80, 443} | self.redirect_tcp_ports)),
                rule("refuse")]
        return tuple(out)

    def render(self) -> str:
        return self.model().render()

    def sha256(self) -> str:
        return hashlib.sha256(self.render().encode()).hexdigest()


Ruleset = AgentRuleset | ProxySideRuleset


# --- JSON spec (what awf hands to awf-netfilter) ---------------------------------------------

_KINDS: dict[str, type[AgentRuleset] | type[ProxySideRuleset]] = {
    "agent": AgentRuleset, "proxy": ProxySideRuleset}


def _address(text: object) -> IPAddress:
    return ipaddress.ip_address(str(text))


def _network(text: object) -> IPNetwork:
    return ipaddress.ip_network(str(text))


_FIELD_READERS: dict[str, Callable[[object], object]] = {
    "proxy_v4": lambda v: IPv4Address(str(v)),
    "proxy_v6": lambda v: None if v is None else IPv6Address(str(v)),
    "sidecar_v4": lambda v: None if v is None else IPv4Address(str(v)),
    "sidecar_v6": lambda v: None if v is None else IPv6Address(str(v)),
    "agent_net_v4": lambda v: IPv4Network(str(v)),
    "agent_net_v6": lambda v: None if v is None else IPv6Network(str(v)),
    "allow_ranges": lambda v: frozenset(_network(x) for x in _list(v)),
    "dns_servers": lambda v: frozenset(_address(x) for x in _list(v)),
    "parent_addrs": lambda v: frozenset(_address(x) for x in _list(v)),
    "proxy_ports": lambda v: frozenset(_list(v)),
    "tcp_ports": lambda v: frozenset(_list(v)),
    "sidecar_ports": lambda v: frozenset(_list(v)),
    "redirect_tcp_ports": lambda v: frozenset(_list(v)),
    "listen_ports": lambda v: frozenset(_list(v)),
}


def _list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise ConfigError(f"expected a JSON list, got {value!r}")
    return value


def ruleset_from_spec(spec: object) -> Ruleset:
    """A ruleset from its JSON spec: ``{"kind": "agent" | "proxy", <field>: <value>, ...}``
    (addresses and networks as strings, port sets as lists)."""
    if not isinstance(spec, dict):
        raise ConfigError(f"a ruleset spec is a JSON object, not {type(spec).__name__}")
    fields = dict(spec)
    kind = fields.pop("kind", None)
    cls = _KINDS.get(str(kind))
    if cls is None:
        raise ConfigError(f"ruleset spec 'kind' is {kind!r}; use 'agent' or 'proxy'")
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ConfigError(f"ruleset spec for {kind!r} has unknown keys {unknown}; known: "
                          f"{sorted(known)}")
    args: dict[str, object] = {}
    for key, value in fields.items():
        reader = _FIELD_READERS.get(key)
        try:
            args[key] = reader(value) if reader is not None else value
        except ValueError as exc:
            raise ConfigError(f"ruleset spec {key!r}: {exc}") from exc
    try:
        return cls(**args)  # type: ignore[arg-type]  # values checked in __post_init__
    except TypeError as exc:
        raise ConfigError(f"ruleset spec for {kind!r}: {exc}") from exc


def ruleset_to_spec(ruleset: Ruleset) -> dict[str, object]:
    """The JSON spec ``ruleset_from_spec`` reads back to an equal ruleset."""
    out: dict[str, object] = {"kind": "agent" if isinstance(ruleset, AgentRuleset) else "proxy"}
    for name in ruleset.__dataclass_fields__:
        value = getattr(ruleset, name)
        if isinstance(value, frozenset):
            items = list(value)
            if all(isinstance(i, int) for i in items):
                out[name] = sorted(items)
            else:
                out[name] = [str(i) for i in sorted(
                    items, key=lambda i: (i.version, str(i)))]
        elif value is None or isinstance(value, (bool, int, str)):
            out[name] = value
        else:
            out[name] = str(value)
    return out
