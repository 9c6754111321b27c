"""netfilter/hostnets.py against pyroute2's reading (netns.host_networks) of the live host: the
Docker backend chooses its subnets from the same networks either way."""

from __future__ import annotations

from netfilter import hostnets, netns


def test_ip_json_reads_what_pyroute2_reads() -> None:
    # other runs on the host may add or remove a network between two readings: try again
    for _ in range(5):
        mine, theirs = set(hostnets.host_networks()), set(netns.host_networks())
        if mine == theirs:
            break
    assert mine == theirs
    assert mine  # loopback at least
