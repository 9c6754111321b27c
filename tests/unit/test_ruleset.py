"""netfilter.ruleset: golden scripts, determinism, v4/v6 parity, every port rendered, the
docs/proxy.md §4 egress ranges, specs, and the pure readers of netfilter.apply."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netfilter.apply import LiveChain, LiveTable, _elements, differences, read_live, rule_shape
from netfilter.ruleset import (
    AgentRuleset,
    Family,
    ProxySideRuleset,
    Rule,
    Ruleset,
    RuleShape,
    Table,
    denied_egress,
    ruleset_from_spec,
    ruleset_to_spec,
)
from proxy.addr import is_denied_address
from proxy.errors import ConfigError

GOLDEN = Path(__file__).parent / "netfilter_golden"


def agent(**over: object) -> AgentRuleset:
    args: dict[str, object] = dict(
        proxy_v4=IPv4Address("10.213.0.1"), proxy_v6=IPv6Address("fd61:7766:1::1"),
        proxy_ports=frozenset({3128, 53}), tcp_ports=frozenset({80, 443}))
    args.update(over)
    return AgentRuleset(**args)  # type: ignore[arg-type]


def proxy(**over: object) -> ProxySideRuleset:
    args: dict[str, object] = dict(
        table="awf_1a2b3c4d", agent_ifname="awf-1a2b3c4dh",
        agent_net_v4=IPv4Network("10.213.0.0/30"), agent_net_v6=IPv6Network("fd61:7766:1::/126"),
        redirect_tcp_ports=frozenset({80, 443}), transparent_port=3129, dns_port=53,
        listen_ports=frozenset({3128, 3129, 53}))
    args.update(over)
    return ProxySideRuleset(**args)  # type: ignore[arg-type]


def full_agent() -> AgentRuleset:
    return agent(tcp_ports=frozenset({80, 443, 8443}), sidecar_ports=frozenset({10000, 10003}),
                 sidecar_v4=IPv4Address("172.30.0.30"), sidecar_v6=IPv6Address("fd61:7766::30"),
                 docker_dns=True)


def full_proxy() -> ProxySideRuleset:
    return proxy(restrict_output=True, redirect_tcp_ports=frozenset({80, 443, 8443}),
                 dns_servers=frozenset({IPv4Address("10.0.0.2"), IPv6Address("fd00::53")}),
                 allow_ranges=frozenset({IPv4Network("10.1.0.0/16")}))


def parent_proxy() -> ProxySideRuleset:
    """The Docker proxy container's, with --upstream-proxy's parent at a private address."""
    return replace(full_proxy(), parent_port=3128, parent_addrs=frozenset({
        IPv4Address("10.20.0.5"), IPv4Address("10.20.0.6"), IPv6Address("fd00::3128")}))


# --- golden, determinism, hash ---------------------------------------------------------------


def test_agent_golden() -> None:
    assert agent().render() == (GOLDEN / "agent.nft").read_text()


def test_proxy_side_golden() -> None:
    assert proxy().render() == (GOLDEN / "proxy.nft").read_text()


def test_proxy_side_with_a_parent_proxy_golden() -> None:
    assert parent_proxy().render() == (GOLDEN / "proxy_parent.nft").read_text()


def test_script_replaces_the_table_atomically() -> None:
    head = full_proxy().render().splitlines()[:3]
    assert head == ["add table inet awf_1a2b3c4d", "delete table inet awf_1a2b3c4d",
                    "table inet awf_1a2b3c4d {"]


def test_sha_is_of_the_rendered_text_and_pinned() -> None:
    a = agent()
    assert a.sha256() == hashlib.sha256(a.render().encode()).hexdigest()
    assert a.sha256() == "27175d86f67b909447b08a59d56f46f5b8602655f00e45c69f04dbc82a3b85a6"
    assert proxy().sha256() == (
        "ba72d46f40e2a6644a32343611de73694c28bb9378e127b9d167ff3efa2314fb")
    assert agent(tcp_ports=frozenset({80, 443, 8080})).sha256() != a.sha256()


@settings(max_examples=100)
@given(st.lists(st.integers(1, 65535), min_size=1, max_size=12, unique=True))
def test_rendering_ignores_set_order(ports: list[int]) -> None:
    one = agent(tcp_ports=frozenset(ports))
    other = agent(tcp_ports=frozenset(reversed(ports)))
    assert one.render() == other.render()
    assert one.sha256() == other.sha256()


# --- v4/v6 parity ----------------------------------------------------------------------------

FAMILY_TOKENS = re.compile(r"\b(ip|ip6|icmp|icmpv6|ipv4|ipv6)\b|nfproto|@rejected[46]")
EXEMPT = {
    "neighbour discovery is ICMPv6; IPv4 uses ARP, which inet never sees",
    "Docker's embedded resolver exists only as 127.0.0.11",
}


def _neutral(text: str) -> str:
    text = re.sub(r"@rejected[46]", "@rejectedX", text)
    text = re.sub(r"\bipv[46]\b", "ipvX", text)
    return re.sub(r"\bip6?\b", "ipX", text)


def _twins_match(r4: Rule, r6: Rule) -> None:
    assert len(r4.matches) == len(r6.matches), (r4.render(), r6.render())
    for m4, m6 in zip(r4.matches, r6.matches, strict=True):
        if m4.nets or m6.nets:  # the same address match, each in its family
            assert all(isinstance(n, IPv4Network) for n in m4.nets)
            assert m4.nets
            assert all(isinstance(n, IPv6Network) for n in m6.nets)
            assert m6.nets
            t4, t6 = m4.text.split(), m6.text.split()  # "[rt] ip daddr|nexthop ADDR"
            i = t4.index("ip")
            assert t6[i] == "ip6"
            assert t4[:i] == t6[:i]
            assert t4[i + 1] == t6[i + 1]
        else:
            assert _neutral(m4.text) == _neutral(m6.text)
        assert (m4.ints, m4.names, m4.negated) == (m6.ints, m6.names, m6.negated)
    assert _neutral(r4.action) == _neutral(r6.action)
    assert [_neutral(k) for k in r4.kinds] == [_neutral(k) for k in r6.kinds]
    assert r4.action_ints == r6.action_ints


@pytest.mark.parametrize("ruleset", [agent(), full_agent(), proxy(), full_proxy(),
                                     proxy(agent_ifname=None), parent_proxy()],
                         ids=["agent", "full_agent", "proxy", "full_proxy", "docker_proxy",
                              "parent_proxy"])
def test_v4_v6_parity(ruleset: Ruleset) -> None:
    exempt_seen = set()
    for chain in ruleset.model().chains:
        by_pair: dict[str, dict[Family, Rule]] = {}
        for rule in chain.rules:
            if rule.family is Family.ANY:  # nothing family-specific may hide in it
                assert not FAMILY_TOKENS.search(rule.render()), rule.render()
            elif rule.pair:
                assert rule.family not in by_pair.setdefault(rule.pair, {}), rule.pair
                by_pair[rule.pair][rule.family] = rule
            else:
                assert rule.note in EXEMPT, rule.render()
                exempt_seen.add(rule.note)
        for key, twins in by_pair.items():
            assert set(twins) == {Family.V4, Family.V6}, (chain.name, key)
            _twins_match(twins[Family.V4], twins[Family.V6])
    assert exempt_seen  # the ND rule is always there


def test_ipv4_only_agent_has_no_ipv6_accept() -> None:
    out = agent(proxy_v6=None).model().chains[0]
    for rule in out.rules:
        if rule.family is Family.V6:
            assert rule.note in EXEMPT  # only neighbour discovery


# --- every port set is rendered where it belongs ---------------------------------------------

PORTSET = re.compile(r"th dport (\{ [0-9, ]+ \}|[0-9]+)")


def _port_sets(text: str) -> list[frozenset[int]]:
    return [frozenset(int(p) for p in re.findall(r"[0-9]+", m)) for m in PORTSET.findall(text)]


ports_st = st.frozensets(st.integers(1, 65535), min_size=1, max_size=8)


@settings(max_examples=150)
@given(tcp=ports_st, proxy_ports=ports_st, sidecar=ports_st)
def test_agent_renders_every_port(tcp: frozenset[int], proxy_ports: frozenset[int],
                                  sidecar: frozenset[int]) -> None:
    r = agent(tcp_ports=tcp, proxy_ports=proxy_ports, sidecar_ports=sidecar,
              sidecar_v4=IPv4Address("172.30.0.30"), sidecar_v6=IPv6Address("fd61:7766::30"))
    output = next(c for c in r.model().chains if c.name == "output")
    rendered = "\n".join(rule.render() for rule in output.rules)
    expected = [tcp, tcp, proxy_ports, proxy_ports] + ([frozenset({53})] * 2
                                                  if 53 in proxy_ports else []) + [sidecar] * 2
    assert _port_sets(rendered) == expected


@settings(max_examples=150)
@given(redirect=ports_st, explicit=st.integers(1, 65535), transparent=st.integers(1, 65535),
       dns=st.integers(1, 65535))
def test_proxy_side_renders_every_port(redirect: frozenset[int], explicit: int,
                                       transparent: int, dns: int) -> None:
    listen = frozenset({explicit, transparent, dns})
    redirect = redirect - listen
    if not redirect or transparent == dns:
        return
    r = proxy(redirect_tcp_ports=redirect, transparent_port=transparent, dns_port=dns,
              listen_ports=listen, restrict_output=True)
    text = r.render()
    chains = {c.name: "\n".join(x.render() for x in c.rules) for c in r.model().chains}
    assert _port_sets(chains["prerouting"]) == [redirect, redirect, {53}, {53}]
    assert re.findall(r"redirect to :([0-9]+)$", text, re.M) == [str(transparent)] * 2 + [
        str(dns)] * 2
    assert _port_sets(chains["from_agent"]) == [listen, {dns}]
    assert _port_sets(chains["output"])[-1:] == [redirect | {80, 443}]


# --- validation: names cannot inject nft syntax ----------------------------------------------


@pytest.mark.parametrize("bad", [
    {"table": "awf; flush ruleset"}, {"table": "1awf"}, {"table": ""},
    {"tcp_ports": frozenset({0})}, {"tcp_ports": frozenset({65536})},
    {"proxy_ports": frozenset({True})}, {"proxy_ports": frozenset()},
    {"proxy_v4": "10.0.0.1"}, {"sidecar_ports": frozenset({10000})},
])
def test_agent_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        agent(**bad)


@pytest.mark.parametrize("bad", [
    {"agent_ifname": 'eth0" accept; flush ruleset; #'}, {"agent_ifname": "a" * 16},
    {"redirect_tcp_ports": frozenset({3128})}, {"listen_ports": frozenset({3128, 53})},
    {"dns_port": 5353}, {"agent_net_v4": IPv6Network("fd00::/64")},
    {"dns_port": 3129, "listen_ports": frozenset({3128, 3129})},
    {"parent_port": 3128}, {"parent_addrs": frozenset({IPv4Address("10.0.0.1")})},
    {"parent_addrs": frozenset({IPv4Address("10.0.0.1")}), "parent_port": 0},
    {"parent_addrs": frozenset({"10.0.0.1"}), "parent_port": 3128},
])
def test_proxy_side_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        proxy(**bad)


def test_docker_dns_is_refused_before_loopback_is_accepted() -> None:
    lines = [r.render() for r in full_agent().model().chains[0].rules]
    refuse = lines.index("meta nfproto ipv4 ip daddr 127.0.0.11 goto refuse")
    assert refuse < lines.index('oifname "lo" accept')
    assert "127.0.0.11" not in agent().render()


def test_routed_tcp_leaves_only_via_the_proxys_next_hop() -> None:
    """Issue 20: no TCP 80/443 accept without the proxy as next hop (an fe80:: address on the
    link is its own next hop, so it falls through to refuse and is counted)."""
    for ruleset in (agent(), full_agent()):
        out = ruleset.model().chains[0].rules
        tcp = [r.render() for r in out if r.action == "accept" and "443" in r.render()]
        assert tcp == [
            "meta nfproto ipv4 rt ip nexthop 10.213.0.1 meta l4proto tcp th dport "
            f"{{ {', '.join(map(str, sorted(ruleset.tcp_ports)))} }} accept",
            "meta nfproto ipv6 rt ip6 nexthop fd61:7766:1::1 meta l4proto tcp th dport "
            f"{{ {', '.join(map(str, sorted(ruleset.tcp_ports)))} }} accept"]
        assert out[-1].render() == "goto refuse"
    v4only = [r.render() for r in agent(proxy_v6=None).model().chains[0].rules]
    assert [r for r in v4only if "443" in r] == [
        "meta nfproto ipv4 rt ip nexthop 10.213.0.1 meta l4proto tcp th dport { 80, 443 } accept"]


# --- docs/proxy.md §4 for the proxy's own egress ----------------------------------------------


def _covered(ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
             nets: list[IPv4Network] | list[IPv6Network]) -> bool:
    return any(ip in n for n in nets)


addresses = st.one_of(
    st.integers(0, 2**32 - 1).map(IPv4Address),
    st.integers(0, 2**128 - 1).map(IPv6Address),
    st.sampled_from(["::ffff:10.1.2.3", "64:ff9b::7f00:1", "2002:a9fe:a9fe::1", "::a00:1",
                     "::ffff:0:c0a8:101", "::1", "::", "fe80::1", "8.8.8.8", "2001:db8::1"]
                    ).map(ipaddress.ip_address),
)


@settings(max_examples=200)
@given(addresses)
def test_denied_egress_equals_the_contract(ip: IPv4Address | IPv6Address) -> None:
    denied4, denied6 = denied_egress(())
    nets = denied4 if isinstance(ip, IPv4Address) else denied6
    assert _covered(ip, nets) == is_denied_address(ip)


def test_allow_range_also_lifts_the_embedded_forms() -> None:
    denied4, denied6 = denied_egress([IPv4Network("10.1.0.0/16")])
    assert not _covered(IPv4Address("10.1.2.3"), denied4)
    assert _covered(IPv4Address("10.2.0.1"), denied4)
    for form in ("::ffff:10.1.2.3", "64:ff9b::a01:203", "2002:a01:203::1"):
        assert not _covered(IPv6Address(form), denied6), form
    assert _covered(IPv6Address("::ffff:10.2.0.1"), denied6)


def test_restricted_output_never_reaches_the_agent_net_even_if_allowed() -> None:
    r = full_proxy()
    r = replace(r, allow_ranges=frozenset({IPv4Network("10.0.0.0/8")}))
    out = [x.render() for x in next(c for c in r.model().chains if c.name == "output").rules]
    agent_rule = out.index("meta nfproto ipv4 ip daddr 10.213.0.0/30 goto refuse")
    first_accept_to_anywhere = out.index("meta l4proto tcp th dport { 80, 443, 8443 } accept")
    assert agent_rule < first_accept_to_anywhere
    assert out[-1] == "goto refuse"


# --- spec round trip -------------------------------------------------------------------------


@pytest.mark.parametrize("ruleset", [agent(), full_agent(), proxy(), full_proxy(),
                                     parent_proxy()],
                         ids=["agent", "full_agent", "proxy", "full_proxy", "parent_proxy"])
def test_spec_round_trip(ruleset: Ruleset) -> None:
    spec = ruleset_to_spec(ruleset)
    assert ruleset_from_spec(spec) == ruleset
    assert ruleset_from_spec(spec).render() == ruleset.render()


@pytest.mark.parametrize(("spec", "message"), [
    ([], "JSON object"), ({"kind": "bridge"}, "kind"),
    ({"kind": "agent", "proxy_v4": "10.0.0.1", "bogus": 1}, "unknown keys"),
    ({"kind": "agent", "proxy_v4": "nope"}, "proxy_v4"),
    ({"kind": "agent", "proxy_v4": "10.0.0.1"}, "missing"),
    ({"kind": "agent", "proxy_v4": "10.0.0.1", "proxy_v6": None, "proxy_ports": "3128",
      "tcp_ports": [80]}, "list"),
])
def test_bad_specs(spec: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ruleset_from_spec(spec)


# --- the pure readers of netfilter.apply -----------------------------------------------------


def _live_of(table: Table) -> LiveTable:
    chains = {c.name: LiveChain(c.name, c.type if c.hook else None, c.hook,
                                c.priority.value if c.hook else None,
                                c.policy if c.hook else None,
                                tuple(r.shape() for r in c.rules)) for c in table.chains}
    return LiveTable(table.name, {s.name: s.key for s in table.sets}, chains)


def test_differences_is_empty_for_the_model_itself() -> None:
    for r in (agent(), full_proxy()):
        assert differences(r.model(), _live_of(r.model())) == []


def test_differences_finds_tampering() -> None:
    model = agent().model()
    live = _live_of(model)
    out = live.chains["output"]
    more = replace(out, rules=(*out.rules, RuleShape(("accept",))))
    policy = replace(out, policy="accept")
    changed = replace(out, rules=(replace(out.rules[0], ints=frozenset({22})), *out.rules[1:]))
    for chain, needle in ((more, "rules, expected"), (policy, "policy"),
                          (changed, "rule 1 is")):
        problems = differences(model, replace(live, chains={**live.chains, "output": chain}))
        assert len(problems) == 1, problems
        assert needle in problems[0], problems
    gone = {k: v for k, v in live.chains.items() if k != "input"}
    assert differences(model, replace(live, chains=gone)) == ["chain 'input' is missing"]
    assert differences(model, replace(live, sets={})) == [
        "set 'rejected4' is missing", "set 'rejected6' is missing"]


def test_rule_shape_reads_nft_json() -> None:
    # copied from `nft -j list table` (nftables 1.0.6)
    redirect = [
        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "awf-xh"}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                   "right": {"prefix": {"addr": "10.213.0.0", "len": 30}}}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                   "right": {"set": [80, 443]}}},
        {"redirect": {"port": 3129}}]
    assert rule_shape(redirect) == RuleShape(("redirect",), frozenset({80, 443, 3129}),
                                             frozenset({"10.213.0.0/30"}),
                                             frozenset({"awf-xh"}))
    update = [
        {"match": {"op": "!=", "left": {"meta": {"key": "l4proto"}},
                   "right": {"set": ["tcp", "udp", "dccp", "sctp", "udplite"]}}},
        {"set": {"op": "update", "set": "@rejected4", "elem": {"concat": [
            {"payload": {"protocol": "ip", "field": "daddr"}}, {"meta": {"key": "l4proto"}},
            0]}}}]
    assert rule_shape(update) == RuleShape(("set update @rejected4",), negated=1)
    ranges = [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                   "right": {"set": ["10.0.0.0", {"range": ["10.0.0.1", "10.255.255.255"]}]}}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}},
                   "right": {"range": [10000, 10003]}}},
        {"goto": {"target": "refuse"}}]
    assert rule_shape(ranges) == RuleShape(("goto refuse",), frozenset(range(10000, 10004)),
                                           frozenset({"10.0.0.0/8"}))


def test_rule_shapes_match_the_model_for_ranges_nft_merges() -> None:
    model = full_proxy().model()
    rule = next(r for c in model.chains if c.name == "output" for r in c.rules
                if r.family is Family.V4 and r.action == "goto refuse" and len(r.render()) > 80)
    # nft prints the merged 10.2.0.0/15 .. 10.128.0.0/9 as one range
    live = [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                       "right": {"set": [
                           {"prefix": {"addr": "0.0.0.0", "len": 8}},
                           {"prefix": {"addr": "10.0.0.0", "len": 16}},
                           {"range": ["10.2.0.0", "10.255.255.255"]},
                           {"prefix": {"addr": "100.64.0.0", "len": 10}},
                           {"prefix": {"addr": "127.0.0.0", "len": 8}},
                           {"prefix": {"addr": "169.254.0.0", "len": 16}},
                           {"prefix": {"addr": "172.16.0.0", "len": 12}},
                           {"prefix": {"addr": "192.168.0.0", "len": 16}},
                           {"prefix": {"addr": "224.0.0.0", "len": 3}}]}}},
            {"goto": {"target": "refuse"}}]
    assert rule_shape(live) == rule.shape()


def test_read_live_and_counters_from_nft_json() -> None:
    objects: list[dict[str, Any]] = [
        {"metainfo": {"version": "1.0.6"}},
        {"table": {"family": "inet", "name": "awf"}},
        {"set": {"family": "inet", "name": "rejected4", "table": "awf",
                 "type": ["ipv4_addr", "inet_proto", "inet_service"], "size": 65535}},
        {"chain": {"family": "inet", "table": "awf", "name": "output", "type": "filter",
                   "hook": "output", "prio": 0, "policy": "drop"}},
        {"chain": {"family": "inet", "table": "awf", "name": "refuse"}},
        {"rule": {"family": "inet", "table": "awf", "chain": "output",
                  "expr": [{"accept": None}]}},
    ]
    live = read_live(objects, "awf")
    assert live.sets == {"rejected4": ("ipv4_addr", "inet_proto", "inet_service")}
    assert live.chains["output"] == LiveChain("output", "filter", "output", 0, "drop",
                                              (RuleShape(("accept",)),))
    assert live.chains["refuse"] == LiveChain("refuse", None, None, None, None, ())
    elems = [{"elem": {"val": {"concat": ["1.2.3.5", "icmp", 0]},
                       "counter": {"packets": 1, "bytes": 1}}},
             {"elem": {"val": {"concat": ["1.2.3.4", "tcp", 22]},
                       "counter": {"packets": 3, "bytes": 4}}}]
    assert _elements(elems) == [
        {"dst": "1.2.3.5", "proto": "icmp", "port": None, "count": 1},
        {"dst": "1.2.3.4", "proto": "tcp", "port": 22, "count": 3}]


def test_restricted_output_dns_goes_to_the_configured_resolvers_only() -> None:
    """Issue 19: a VPC resolver (private, link-local) is accepted before the range refusal; no
    other address is reachable on port 53."""
    r = replace(full_proxy(), allow_ranges=frozenset(), dns_servers=frozenset({
        IPv4Address("10.0.0.2"), IPv4Address("169.254.169.253"), IPv6Address("fd00::53")}))
    out = [x.render() for x in next(c for c in r.model().chains if c.name == "output").rules]
    dns = [i for i, line in enumerate(out) if "dport 53" in line]
    assert [out[i] for i in dns] == [
        "meta nfproto ipv4 ip daddr { 10.0.0.2, 169.254.169.253 } meta l4proto { tcp, udp } "
        "th dport 53 accept",
        "meta nfproto ipv6 ip6 daddr fd00::53 meta l4proto { tcp, udp } th dport 53 accept"]
    denied = next(i for i, line in enumerate(out) if "10.0.0.0/8" in line and "refuse" in line)
    assert max(dns) < denied
    no_servers = replace(full_proxy(), dns_servers=frozenset())
    assert not [x for c in no_servers.model().chains if c.name == "output"
                for x in c.rules if "dport 53" in x.render()]


def test_restricted_output_reaches_the_parent_proxy_on_its_port_only() -> None:
    """--upstream-proxy: the parent (private, as corporate proxies are) is accepted on its port
    before the range refusal; nothing else of its addresses is, and without a parent no rule
    names it."""
    out = [x.render() for x in next(c for c in parent_proxy().model().chains
                                    if c.name == "output").rules]
    parent = [i for i, line in enumerate(out) if "10.20.0.5" in line or "fd00::3128" in line]
    assert [out[i] for i in parent] == [
        "meta nfproto ipv4 ip daddr { 10.20.0.5, 10.20.0.6 } meta l4proto tcp th dport 3128 "
        "accept",
        "meta nfproto ipv6 ip6 daddr fd00::3128 meta l4proto tcp th dport 3128 accept"]
    agent_rule = out.index("meta nfproto ipv4 ip daddr 10.213.0.0/30 goto refuse")
    denied = next(i for i, line in enumerate(out) if "192.168.0.0/16" in line and "refuse" in line)
    assert agent_rule < min(parent)
    assert max(parent) < denied
    assert out[-1] == "goto refuse"
    plain = full_proxy().render()
    assert "3128 accept" not in plain
    assert "10.20.0.5" not in plain


def test_fresh_script_creates_the_table_instead_of_replacing_it() -> None:
    from netfilter.apply import fresh_script
    from netfilter.errors import NetfilterError

    script = "add table inet awf_x\ndelete table inet awf_x\ntable inet awf_x {\n}\n"
    assert fresh_script(script, "awf_x") == "create table inet awf_x\ntable inet awf_x {\n}\n"
    with pytest.raises(NetfilterError, match="cannot create it fresh"):
        fresh_script(script, "awf_y")
