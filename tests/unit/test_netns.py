"""netfilter.netns: the pure parts (names, subnet choice); the rest runs in
tests/privileged/test_netfilter_live.py."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network, IPv6Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netfilter.errors import SandboxError
from netfilter.netns import AgentLink, pick_subnet

POOL4, POOL6 = IPv4Network("10.213.0.0/16"), IPv6Network("fd61:7766:1::/48")


def test_for_run_names_and_addresses() -> None:
    link = AgentLink.for_run("1a2b3c4d", IPv4Network("10.213.4.8/30"),
                             IPv6Network("fd61:7766:1::408/126"))
    assert (link.netns, link.host_if, link.agent_if) == ("awf-1a2b3c4d", "awf-1a2b3c4dh", "eth0")
    assert len(link.host_if) <= 15
    assert (str(link.host_v4), str(link.agent_v4)) == ("10.213.4.9/30", "10.213.4.10/30")
    assert link.host_v6 is not None
    assert link.agent_v6 is not None
    assert (str(link.host_v6), str(link.agent_v6)) == ("fd61:7766:1::409/126",
                                                       "fd61:7766:1::40a/126")
    assert AgentLink.for_run("1a2b3c4d", IPv4Network("10.213.4.8/30"), None).host_v6 is None


@pytest.mark.parametrize("run", ["", "ABC", "a" * 11, "a/b", "a b", "-a"])
def test_bad_run_ids(run: str) -> None:
    with pytest.raises(SandboxError, match="run id"):
        AgentLink.for_run(run, IPv4Network("10.213.4.8/30"), None)


def test_link_addresses_must_share_a_subnet() -> None:
    link = AgentLink.for_run("r1", IPv4Network("10.213.4.8/30"), None)
    with pytest.raises(SandboxError, match="one subnet"):
        AgentLink(run="r1", netns=link.netns, host_if=link.host_if, agent_if="eth0",
                  host_v4=link.host_v4, agent_v4=IPv4Interface("10.9.9.9/30"),
                  host_v6=None, agent_v6=None)
    with pytest.raises(SandboxError, match="fewer than two"):
        AgentLink.for_run("r1", IPv4Network("10.213.4.8/32"), None)


def test_pick_subnet_is_deterministic_per_run_and_aligned() -> None:
    v4, v6 = pick_subnet("1a2b3c4d", [], POOL4, POOL6)
    assert pick_subnet("1a2b3c4d", [], POOL4, POOL6) == (v4, v6)
    assert v4.prefixlen == 30
    assert v6.prefixlen == 126
    assert v4.subnet_of(POOL4)
    assert v6.subnet_of(POOL6)
    index4 = (int(v4.network_address) - int(POOL4.network_address)) // 4
    index6 = (int(v6.network_address) - int(POOL6.network_address)) // 4
    assert index4 == index6
    assert pick_subnet("other", [], POOL4, POOL6) != (v4, v6)


@settings(max_examples=100)
@given(st.lists(st.integers(0, 2**14 - 1), max_size=30), st.text("abcdef0123456789", min_size=1,
                                                                 max_size=10))
def test_pick_subnet_skips_taken_networks(taken_idx: list[int], run: str) -> None:
    taken = [IPv4Network((int(POOL4.network_address) + 4 * i + 1, 32)) for i in taken_idx]
    v4, _v6 = pick_subnet(run, taken, POOL4, POOL6)
    assert not any(v4.overlaps(t) for t in taken)


def test_pick_subnet_skips_ipv6_overlaps_and_wraps() -> None:
    pool4, pool6 = IPv4Network("10.213.0.0/29"), IPv6Network("fd61:7766:1::/125")  # 2 slots
    first, _ = pick_subnet("x", [], pool4, pool6)
    other4 = next(n for n in pool4.subnets(new_prefix=30) if n != first)
    index = (int(first.network_address) - int(pool4.network_address)) // 4
    taken6 = IPv6Network((int(pool6.network_address) + 4 * index, 126))
    assert pick_subnet("x", [taken6], pool4, pool6)[0] == other4


def test_pick_subnet_fails_when_the_pool_is_covered() -> None:
    with pytest.raises(SandboxError, match="--subnet-pool"):
        pick_subnet("x", [IPv4Network("10.0.0.0/8")], POOL4, POOL6)
    with pytest.raises(SandboxError, match="smaller"):
        pick_subnet("x", [], IPv4Network("10.0.0.0/31"), POOL6)
