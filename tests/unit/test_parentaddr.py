"""containers.parentaddr: which of --upstream-proxy's addresses the Docker proxy may reach, and
the --resolve flags that pin awf-proxy to them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from containers.parentaddr import IPAddress, for_proxy, host_lookup
from proxy.errors import ConfigError
from proxy.parent import parse_parent_url


def answers(*ips: str) -> Callable[[str], Sequence[IPAddress]]:
    def lookup(name: str) -> Sequence[IPAddress]:
        assert name == "proxy.corp.example"
        return tuple(ip_address(i) for i in ips)
    return lookup


def never(name: str) -> Sequence[IPAddress]:
    raise AssertionError(f"looked {name} up")


def test_an_ip_literal_is_taken_as_is_with_no_flags() -> None:
    parent = parse_parent_url("http://u:s3cret@10.20.0.5:3128")
    assert for_proxy(parent, lookup=never) == ((IPv4Address("10.20.0.5"),), ())


def test_a_name_is_resolved_on_the_host_and_pinned_with_resolve() -> None:
    parent = parse_parent_url("http://u:s3cret@proxy.corp.example:8080")
    addrs, flags = for_proxy(parent, lookup=answers("10.1.2.3", "10.1.2.4", "fd00::8"))
    assert addrs == (IPv4Address("10.1.2.3"), IPv4Address("10.1.2.4"))  # no IPv6 egress
    assert flags == ("--resolve", "proxy.corp.example=10.1.2.3",
                     "--resolve", "proxy.corp.example=10.1.2.4")
    addrs, _ = for_proxy(parent, ipv6_egress=True,
                         lookup=answers("10.1.2.3", "fd00::8"))
    assert IPv6Address("fd00::8") in addrs


def test_the_runs_own_resolve_wins_and_adds_no_flag() -> None:
    parent = parse_parent_url("http://proxy.corp.example:3128")
    pinned = (("proxy.corp.example", IPv4Address("10.9.9.9")),
              ("other.example", IPv4Address("10.8.8.8")))
    assert for_proxy(parent, pinned, lookup=never) == ((IPv4Address("10.9.9.9"),), ())


@pytest.mark.parametrize(("url", "ips", "message"), [
    ("http://u:s3cret@127.0.0.1:3128", (), "loopback"),
    ("http://u:s3cret@proxy.corp.example:3128", ("127.0.0.1",), "loopback"),
    ("http://u:s3cret@[::1]:3128", (), "loopback"),
    ("http://u:s3cret@0.0.0.0:3128", (), "loopback"),
    ("http://u:s3cret@proxy.corp.example:3128", ("fd00::8",), "IPv6"),
    ("http://u:s3cret@proxy.corp.example:3128", (), "no address"),
])
def test_unreachable_parents_are_exit_2_without_the_password(url: str, ips: tuple[str, ...],
                                                             message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        for_proxy(parse_parent_url(url), lookup=answers(*ips))
    assert "s3cret" not in str(err.value)
    assert "--upstream-proxy" in str(err.value)


def test_host_lookup_reads_the_hosts_file() -> None:
    assert IPv4Address("127.0.0.1") in host_lookup("localhost")
