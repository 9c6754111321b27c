"""netfilter.egress_nat: the host's IPv6 masquerade for the Docker backend's -ext network."""

from __future__ import annotations

import errno
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import pytest

from netfilter.egress_nat import EgressNat, table_name
from netfilter.ruleset import Family
from proxy.dialer import _failure
from proxy.errors import ConfigError

GOLDEN = Path(__file__).parent / "netfilter_golden"
EXT6 = IPv6Network("fd61:7766:1:5::/64")


def test_golden() -> None:
    nat = EgressNat(table=table_name("1a2b3c4d"), subnet_v6=EXT6)
    assert nat.render() == (GOLDEN / "egress_nat.nft").read_text()


def test_one_ipv6_rule_from_ext_to_anywhere_outside_it() -> None:
    nat = EgressNat(table="awf_1a2b3c4d", subnet_v6=EXT6)
    [chain] = nat.model().chains
    assert (chain.hook, chain.type, chain.priority.value) == ("postrouting", "nat", 100)
    [rule] = chain.rules
    assert rule.family is Family.V6
    assert rule.note  # unpaired on purpose: Docker masquerades -ext's IPv4
    shape = rule.shape()
    assert shape.kinds == ("masquerade",)
    assert shape.nets == frozenset({str(EXT6)})
    assert shape.negated == 1
    assert nat.sha256() != EgressNat(table="awf_1a2b3c4d",
                                     subnet_v6=IPv6Network("fd61:7766:1:6::/64")).sha256()


def test_the_table_is_named_like_the_runs_host_tables() -> None:
    assert table_name("1a2b3c4d") == "awf_1a2b3c4d"  # awf cleanup lists awf_* tables


@pytest.mark.parametrize(("table", "net"), [
    ("bad name", EXT6), ("awf_x", IPv4Network("10.0.0.0/24"))])
def test_bad_values_are_config_errors(table: str, net: object) -> None:
    with pytest.raises(ConfigError):
        EgressNat(table=table, subnet_v6=net)  # type: ignore[arg-type]


def test_an_ipv6_address_without_a_route_says_so() -> None:
    """proxy/dialer.py: `connect_failed`'s note on a host (or Docker -ext) with no IPv6."""
    unreachable = OSError(errno.ENETUNREACH, "Network is unreachable")
    text = _failure(IPv6Address("2001:db8::1"), unreachable)
    assert text.startswith("2001:db8::1: no IPv6 route from the proxy")
    assert "Network is unreachable" in text
    assert _failure(IPv4Address("192.0.2.1"), unreachable) == (
        "192.0.2.1: Network is unreachable")
    refused = OSError(errno.ECONNREFUSED, "Connection refused")
    assert _failure(IPv6Address("2001:db8::1"), refused) == "2001:db8::1: Connection refused"
