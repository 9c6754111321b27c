"""netfilter/hostnets.py: the host's networks from `ip -j` text (pure parsing)."""

from __future__ import annotations

import json
from ipaddress import ip_network

from netfilter.hostnets import addresses, routes, unicast_routes


def test_addresses_are_networks_of_every_address() -> None:
    text = json.dumps([
        {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8},
                                       {"family": "inet6", "local": "::1", "prefixlen": 128}]},
        {"ifname": "eth0", "addr_info": [
            {"family": "inet", "local": "192.0.2.2", "prefixlen": 24},
            {"family": "inet6", "local": "fe80::1%eth0", "prefixlen": 64}]},
        {"ifname": "down0", "addr_info": []},
    ])
    assert addresses(text) == [ip_network("127.0.0.0/8"), ip_network("::1/128"),
                               ip_network("192.0.2.0/24"), ip_network("fe80::/64")]


def test_routes_leave_out_the_default_ones() -> None:
    text = json.dumps([
        {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
        {"dst": "10.213.0.0/24", "dev": "br-1"},
        {"type": "local", "dst": "127.0.0.1", "table": "local"},
        {"dst": "ff00::/8", "table": "local"},
        {"dst": "0.0.0.0/0", "dev": "tun0"},
    ])
    assert routes(text) == [ip_network("10.213.0.0/24"), ip_network("127.0.0.1/32"),
                            ip_network("ff00::/8")]
    assert routes("") == []


def test_unicast_routes_keep_the_default_one_as_slash_0() -> None:
    text = json.dumps([
        {"dst": "default", "gateway": "fd00::1", "dev": "eth0"},
        {"dst": "2001:db8:100::/64", "dev": "wan0"},
        {"dst": "fe80::/64", "dev": "eth0"},
    ])
    assert unicast_routes(text) == [ip_network("::/0"), ip_network("2001:db8:100::/64"),
                                    ip_network("fe80::/64")]
    assert unicast_routes("") == []
