"""netfilter/rtnl.py's packing and parsing, without a socket (the live requests are exercised by
tests/privileged: every netns run creates and destroys its namespace through them)."""

from __future__ import annotations

import errno
import socket
import struct
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_network

import pytest

from netfilter import rtnl


def test_attrs_are_padded_and_read_back() -> None:
    data = rtnl.attr(3, b"abcde") + rtnl.attr(7, b"") + rtnl.nested(18, rtnl.attr(1, b"x"))
    assert len(data) % 4 == 0
    found = list(rtnl.attrs(data))
    assert found[0] == (3, b"abcde")
    assert found[1] == (7, b"")
    assert found[2][0] == 18  # NLA_F_NESTED is masked off
    assert list(rtnl.attrs(found[2][1])) == [(1, b"x")]


def test_a_truncated_attribute_ends_the_list() -> None:
    data = rtnl.attr(3, b"abcd") + struct.pack("=HH", 40, 5) + b"short"
    assert list(rtnl.attrs(data)) == [(3, b"abcd")]


def test_veth_request_names_both_ends_and_the_peer_namespace() -> None:
    body = rtnl.pack_veth("eth0", "awf-abcdh", 9)
    assert rtnl.parse_link_name(body) == "eth0"
    linkinfo = dict(rtnl.attrs(body, 16))[rtnl.IFLA_LINKINFO]
    info = dict(rtnl.attrs(linkinfo))
    assert info[rtnl.IFLA_INFO_KIND] == b"veth\0"
    peer = dict(rtnl.attrs(info[rtnl.IFLA_INFO_DATA]))[rtnl.VETH_INFO_PEER]
    assert rtnl.parse_link_name(peer) == "awf-abcdh"
    assert dict(rtnl.attrs(peer, 16))[rtnl.IFLA_NET_NS_FD] == struct.pack("=I", 9)


def test_address_request_reads_back_as_its_network() -> None:
    v4 = rtnl.pack_addr(5, IPv4Interface("10.213.0.1/30"))
    assert rtnl.parse_addr(v4) == ip_network("10.213.0.0/30")
    v6 = rtnl.pack_addr(5, IPv6Interface("fd61:7766:1::1/126"), 0x02)
    family, plen, flags, _scope, index = struct.unpack_from("=BBBBI", v6)
    assert (family, plen, flags, index) == (socket.AF_INET6, 126, 0x02, 5)
    assert dict(rtnl.attrs(v6, 8))[rtnl.IFA_FLAGS] == struct.pack("=I", 0x02)
    assert rtnl.parse_addr(v6) == ip_network("fd61:7766:1::/126")


def test_default_route_request_has_no_destination() -> None:
    body = rtnl.pack_default_route(IPv4Address("10.213.0.1"), 7)
    assert rtnl.parse_route(body) is None  # a default route is no network of the host's
    got = dict(rtnl.attrs(body, 12))
    assert got[rtnl.RTA_GATEWAY] == IPv4Address("10.213.0.1").packed
    assert got[rtnl.RTA_OIF] == struct.pack("=I", 7)
    routed = (struct.pack("=BBBBBBBBI", socket.AF_INET6, 64, 0, 0, 254, 4, 0, 1, 0)
              + rtnl.attr(rtnl.RTA_DST, IPv6Address("fd00:1::").packed))
    assert rtnl.parse_route(routed) == ip_network("fd00:1::/64")


def test_messages_split_a_datagram_and_refuse_a_torn_one() -> None:
    data = rtnl.message(16, 1, 1, b"abcd") + rtnl.message(3, 2, 1, b"")
    assert [(t, s, p) for t, _f, s, p in rtnl.messages(data)] == [(16, 1, b"abcd"), (3, 1, b"")]
    with pytest.raises(rtnl.RtnlError):
        list(rtnl.messages(rtnl.message(16, 1, 1, b"abcd")[:-2]))


def test_error_with_the_kernels_extended_ack() -> None:
    request_header = struct.pack("=IHHII", 40, 16, 5, 1, 0)
    payload = (struct.pack("=i", -errno.EEXIST) + request_header
               + rtnl.attr(rtnl.NLMSGERR_ATTR_MSG, b"File exists here\0"))
    assert rtnl.parse_error(rtnl.NLM_F_CAPPED | rtnl.NLM_F_ACK_TLVS, payload) == (
        errno.EEXIST, "File exists here")
    assert rtnl.parse_error(0, struct.pack("=i", 0) + request_header) == (0, "")


def test_awf_run_does_not_import_pyroute2() -> None:
    code = ("import sys, awf.cli, awf.backends.netns, awf.leftovers; "
            "print('pyroute2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_route_requests_and_replies() -> None:
    host = rtnl.pack_route(ip_network("172.30.0.10/32"), oif=3, scope=rtnl.RT_SCOPE_LINK)
    family, dst_len, _src, _tos, table, proto, scope, kind, _flags = struct.unpack_from(
        "=BBBBBBBBI", host)
    assert (family, dst_len, table, proto, scope, kind) == (
        socket.AF_INET, 32, rtnl.RT_TABLE_MAIN, rtnl.RTPROT_STATIC, rtnl.RT_SCOPE_LINK,
        rtnl.RTN_UNICAST)
    assert rtnl.parse_route(host) == ip_network("172.30.0.10/32")
    # a delete leaves protocol, type and scope open, as `ip route del` does
    gone = rtnl.pack_route(ip_network("fd61:7766::/64"), oif=3, delete=True)
    _f, _d, _s, _t, _table, proto, scope, kind, _fl = struct.unpack_from("=BBBBBBBBI", gone)
    assert (proto, scope, kind) == (0, rtnl.RT_SCOPE_NOWHERE, 0)
    via = rtnl.pack_route(ip_network("::/0"), gateway=IPv6Address("fd61:7766::10"))
    assert rtnl.parse_route(via) is None
    assert rtnl.route_gateway(via) == IPv6Address("fd61:7766::10")
    assert rtnl.route_table(via) == rtnl.RT_TABLE_MAIN
    big = via + rtnl.attr(rtnl.RTA_TABLE, struct.pack("=I", 1000))
    assert rtnl.route_table(big) == 1000
