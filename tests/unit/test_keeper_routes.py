"""The keeper's route plan (containers/keeper.py): only the routes awf makes (and the kernel's
link-local one, which the ruleset refuses and counts) stay (issue 20)."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

import pytest

from containers import keeper, topology
from netfilter.errors import SandboxError

SUBNETS = topology.Subnets(v4=IPv4Network("172.30.0.0/24"), v6=IPv6Network("fd61:7766::/64"),
                           ext_v4=IPv4Network("10.213.1.0/24"))
AGENT = topology.agent_ruleset(SUBNETS, topology.tcp_ports(()))

# `ip -j -6 route show table main` in a Docker container on an IPv6 network, after the plan's
# own lines ran: the kernel's link-local route is still there.
DOCKER_V6: list[dict[str, object]] = [
    {"dst": "fd61:7766::10", "dev": "eth0", "metric": 1024, "flags": []},
    {"dst": "fe80::/64", "dev": "eth0", "protocol": "kernel", "metric": 256, "flags": []},
    {"dst": "default", "gateway": "fd61:7766::10", "dev": "eth0", "metric": 1024, "flags": []},
]


def test_plan_routes_everything_via_the_proxy() -> None:
    plan = keeper.route_plan(AGENT, str(SUBNETS.v4), str(SUBNETS.v6))
    assert plan.v4 == ("route del 172.30.0.0/24 dev eth0\n"
                       "route replace 172.30.0.10/32 dev eth0 scope link\n"
                       "route replace default via 172.30.0.10 dev eth0\n")
    assert plan.v6 == ("route del fd61:7766::/64 dev eth0\n"
                       "route replace fd61:7766::10/128 dev eth0\n"
                       "route replace default via fd61:7766::10 dev eth0\n")
    assert plan.keep_v4 == {"default", "172.30.0.10"}
    assert plan.keep_v6 == {"default", "fd61:7766::10", "fe80::/64"}


def test_plan_without_ipv6_has_no_ipv6_routes() -> None:
    v4only = topology.agent_ruleset(topology.Subnets(SUBNETS.v4, None, SUBNETS.ext_v4),
                                    topology.tcp_ports(()))
    plan = keeper.route_plan(v4only, str(SUBNETS.v4), None)
    assert plan.v6 is None
    assert plan.keep_v6 == frozenset()


def test_the_kernels_link_local_route_stays_for_the_ruleset_to_refuse_and_count() -> None:
    plan = keeper.route_plan(AGENT, str(SUBNETS.v4), str(SUBNETS.v6))
    assert plan.keep_v6 == {"default", "fd61:7766::10", "fe80::/64"}
    assert keeper.stray_routes(DOCKER_V6, plan.keep_v6) == []
    # ... and the ruleset lets TCP 80/443 out only via the proxy's next hop
    routed = [r.render() for r in AGENT.model().chains[0].rules if "443" in r.render()]
    assert routed == [
        "meta nfproto ipv4 rt ip nexthop 172.30.0.10 meta l4proto tcp th dport { 80, 443 } "
        "accept",
        "meta nfproto ipv6 rt ip6 nexthop fd61:7766::10 meta l4proto tcp th dport { 80, 443 } "
        "accept"]


def test_any_route_awf_did_not_make_is_removed() -> None:
    plan = keeper.route_plan(AGENT, str(SUBNETS.v4), str(SUBNETS.v6))
    v4: list[dict[str, object]] = [
        {"dst": "172.30.0.10", "dev": "eth0"}, {"dst": "default", "dev": "eth0"},
        {"dst": "169.254.0.0/16", "dev": "eth0"}, {"dst": "172.30.0.0/24", "dev": "eth0"}]
    assert keeper.stray_routes(v4, plan.keep_v4) == ["route del 169.254.0.0/16 dev eth0\n",
                                                     "route del 172.30.0.0/24 dev eth0\n"]
    ra: list[dict[str, object]] = [
        *DOCKER_V6, {"dst": "2001:db8:1::/64", "dev": "eth0", "protocol": "ra"}]
    assert keeper.stray_routes(ra, plan.keep_v6)[-1] == "route del 2001:db8:1::/64 dev eth0\n"
    assert keeper.stray_routes(DOCKER_V6[::2], plan.keep_v6) == []


def test_accept_ra_must_be_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "eth0"
    conf.mkdir()
    real_open = open

    def fake_open(path: str, *a: object, **kw: object) -> object:
        if path == "/proc/sys/net/ipv6/conf/eth0/accept_ra":
            return real_open(conf / "accept_ra", *a, **kw)  # type: ignore[call-overload]
        return real_open(path, *a, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", fake_open)
    (conf / "accept_ra").write_text("1\n")
    with pytest.raises(SandboxError, match="accept_ra is 1"):
        keeper.check_no_router_advertisements()
    (conf / "accept_ra").write_text("0\n")
    keeper.check_no_router_advertisements()
