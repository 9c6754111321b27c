"""netfilter/hostnets.py (`ip -j`) against the netlink reading (netns.host_networks, through
netfilter/rtnl.py) of the live host: both backends choose their subnets from the same networks."""

from __future__ import annotations

from netfilter import hostnets, netns


def test_ip_json_reads_what_netlink_reads() -> None:
    # other runs on the host may add or remove a network between two readings: try again
    for _ in range(5):
        mine, theirs = set(hostnets.host_networks()), set(netns.host_networks())
        if mine == theirs:
            break
    assert mine == theirs
    assert mine  # loopback at least
