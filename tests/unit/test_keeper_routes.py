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

# The main table of a Docker container's namespace on an IPv6 network, as `netns.main_routes(6)`
# names it, after the keeper's own routes were made: the kernel's link-local route is still there.
DOCKER_V6 = ["fd61:7766::10", "fe80::/64", "default"]


def test_plan_keeps_only_the_default_route_and_the_proxys_host_route() -> None:
    plan = keeper.route_plan(AGENT, str(SUBNETS.v6))
    assert plan.keep_v4 == {"default", "172.30.0.10"}
    assert plan.keep_v6 == {"default", "fd61:7766::10", "fe80::/64"}


def test_plan_without_ipv6_has_no_ipv6_routes() -> None:
    v4only = topology.agent_ruleset(topology.Subnets(SUBNETS.v4, None, SUBNETS.ext_v4),
                                    topology.tcp_ports(()))
    assert keeper.route_plan(v4only, None).keep_v6 == frozenset()


def test_the_kernels_link_local_route_stays_for_the_ruleset_to_refuse_and_count() -> None:
    plan = keeper.route_plan(AGENT, str(SUBNETS.v6))
    assert keeper.stray_routes(DOCKER_V6, plan.keep_v6) == []
    # ... and the ruleset lets TCP 80/443 out only via the proxy's next hop
    routed = [r.render() for r in AGENT.model().chains[0].rules if "443" in r.render()]
    assert routed == [
        "meta nfproto ipv4 rt ip nexthop 172.30.0.10 meta l4proto tcp th dport { 80, 443 } "
        "accept",
        "meta nfproto ipv6 rt ip6 nexthop fd61:7766::10 meta l4proto tcp th dport { 80, 443 } "
        "accept"]


def test_any_route_awf_did_not_make_is_removed() -> None:
    plan = keeper.route_plan(AGENT, str(SUBNETS.v6))
    v4 = ["172.30.0.10", "default", "169.254.0.0/16", "172.30.0.0/24"]
    assert keeper.stray_routes(v4, plan.keep_v4) == ["169.254.0.0/16", "172.30.0.0/24"]
    ra = [*DOCKER_V6, "2001:db8:1::/64"]
    assert keeper.stray_routes(ra, plan.keep_v6) == ["2001:db8:1::/64"]
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
