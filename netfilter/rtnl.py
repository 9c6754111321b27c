"""A minimal rtnetlink client: the few requests `awf run --backend netns` makes on its hot path.

pyroute2 does all of this and much more, but importing it costs 0.07-0.2 s at every start (it
loads every netlink family it knows), more than creating the namespace itself. This module is
the standard library only: a NETLINK_ROUTE socket, requests packed with `struct`, every request
acknowledged (an error is an `RtnlError`, an OSError with the kernel's errno and, when the
kernel gives one, its extended-ack message), and dumps read to their NLMSG_DONE.

What it speaks: link up, veth pair (the peer in another namespace), link delete, address add
(IPv4/IPv6, flags), routes (add, replace, delete, get, the main table's), and dumps of links,
addresses and routes. The containers' route changes (the keeper's and the proxy container's,
netfilter/netns.py) use it too, so no process of a run imports pyroute2. The packing and
parsing are pure functions (`pack_*`, `attrs`, `parse_*`), tested without a socket; `Rtnl` is the
socket. Like any socket, it keeps the network namespace of the thread that made it.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_network,
)
from types import TracebackType

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK, NETLINK_EXT_ACK = 10, 11

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200
NLMSGERR_ATTR_MSG = 1

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26

IFLA_IFNAME, IFLA_LINKINFO, IFLA_NET_NS_FD = 3, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

IFF_UP = 0x1
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4  # what pyroute2 and `ip route add` set
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_NOWHERE = 0, 253, 255  # NOWHERE: any, in a delete
RTN_UNICAST = 1

_HDR = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, protocol,
#                                       scope, type, flags
_ATTR = struct.Struct("=HH")  # rtattr: length, type
_ERR = struct.Struct("=i")

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network


class RtnlError(OSError):
    """A request the kernel refused: `errno` is its error, the text its extended ack if any."""


# --- packing (pure) ---------------------------------------------------------------------------


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, data: bytes) -> bytes:
    """One rtattr, padded to 4 bytes."""
    size = _ATTR.size + len(data)
    return _ATTR.pack(size, kind) + data + b"\0" * (_align(size) - size)


def nested(kind: int, *children: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(children))


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def name(text: str) -> bytes:
    return text.encode() + b"\0"


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return _HDR.pack(_HDR.size + len(body), kind, flags, seq, 0) + body


def ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return _IFINFO.pack(socket.AF_UNSPEC, 0, index, flags, change)


def pack_link_up(index: int) -> bytes:
    return ifinfo(index, IFF_UP, IFF_UP)


def pack_veth(ifname: str, peer: str, peer_netns_fd: int) -> bytes:
    """A veth pair `ifname` (here) and `peer` (in the namespace of `peer_netns_fd`)."""
    peer_info = ifinfo() + attr(IFLA_IFNAME, name(peer)) + attr(IFLA_NET_NS_FD,
                                                                 u32(peer_netns_fd))
    return (ifinfo() + attr(IFLA_IFNAME, name(ifname))
            + nested(IFLA_LINKINFO, attr(IFLA_INFO_KIND, name("veth")),
                     nested(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer_info))))


def _family(addr: Address | Network) -> int:
    return socket.AF_INET if addr.version == 4 else socket.AF_INET6


def pack_addr(index: int, iface: IPv4Interface | IPv6Interface, flags: int = 0) -> bytes:
    """`iface` (address/prefix) on link `index`; `flags` (IFA_F_*) in the header (the low 8
    bits) and in IFA_FLAGS."""
    packed = iface.ip.packed
    return (_IFADDR.pack(_family(iface.ip), iface.network.prefixlen, flags & 0xFF,
                         RT_SCOPE_UNIVERSE, index)
            + attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed) + attr(IFA_FLAGS, u32(flags)))


def pack_default_route(gateway: Address, oif: int) -> bytes:
    return pack_route(ip_network("0.0.0.0/0" if gateway.version == 4 else "::/0"),
                      gateway=gateway, oif=oif)


def pack_route(dst: Network, *, gateway: Address | None = None, oif: int | None = None,
               scope: int = RT_SCOPE_UNIVERSE, delete: bool = False) -> bytes:
    """A main-table route to `dst` (a /0: the default route). A delete leaves the protocol,
    the type and (RT_SCOPE_NOWHERE) the scope open: the kernel matches any, as `ip route del`
    asks."""
    protocol, kind = (0, 0) if delete else (RTPROT_STATIC, RTN_UNICAST)
    body = _RTMSG.pack(_family(dst), dst.prefixlen, 0, 0, RT_TABLE_MAIN, protocol,
                       RT_SCOPE_NOWHERE if delete else scope, kind, 0)
    if dst.prefixlen:
        body += attr(RTA_DST, dst.network_address.packed)
    if gateway is not None:
        body += attr(RTA_GATEWAY, gateway.packed)
    if oif is not None:
        body += attr(RTA_OIF, u32(oif))
    return body


# --- parsing (pure) ---------------------------------------------------------------------------


def attrs(data: bytes | memoryview, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """The (type, payload) of each rtattr in `data` from `offset`; a truncated one ends it."""
    view = memoryview(data)
    while offset + _ATTR.size <= len(view):
        size, kind = _ATTR.unpack_from(view, offset)
        if size < _ATTR.size or offset + size > len(view):
            return
        yield kind & NLA_TYPE_MASK, bytes(view[offset + _ATTR.size:offset + size])
        offset += _align(size)


def messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """The (type, flags, sequence, payload) of each netlink message in one datagram."""
    offset = 0
    while offset + _HDR.size <= len(data):
        size, kind, flags, seq, _port = _HDR.unpack_from(data, offset)
        if size < _HDR.size or offset + size > len(data):
            raise RtnlError(0, f"truncated netlink message ({size} bytes at {offset})")
        yield kind, flags, seq, data[offset + _HDR.size:offset + size]
        offset += _align(size)


def parse_error(flags: int, payload: bytes) -> tuple[int, str]:
    """An NLMSG_ERROR's (errno, extended-ack text); errno 0 is an acknowledgement."""
    (code,) = _ERR.unpack_from(payload)
    text = ""
    if code and flags & NLM_F_ACK_TLVS:
        # after the error: the request's header (NLM_F_CAPPED) or the whole request
        start = _ERR.size + _HDR.size
        if not flags & NLM_F_CAPPED and len(payload) >= start:
            (req_len,) = struct.unpack_from("=I", payload, _ERR.size)
            start = _ERR.size + _align(req_len)
        for kind, data in attrs(payload, start):
            if kind == NLMSGERR_ATTR_MSG:
                text = data.rstrip(b"\0").decode(errors="replace")
    return -code, text


def _ip(data: bytes) -> Address | None:
    if len(data) in (4, 16):
        return ip_address(data)
    return None


def parse_link_name(payload: bytes) -> str | None:
    for kind, data in attrs(payload, _IFINFO.size):
        if kind == IFLA_IFNAME:
            return data.rstrip(b"\0").decode(errors="replace")
    return None


def parse_addr(payload: bytes) -> Network | None:
    """An RTM_NEWADDR's network (its address, IFA_ADDRESS before IFA_LOCAL, with its prefix)."""
    plen = _IFADDR.unpack_from(payload)[1]
    found: dict[int, Address] = {}
    for kind, data in attrs(payload, _IFADDR.size):
        if kind in (IFA_ADDRESS, IFA_LOCAL) and (ip := _ip(data)) is not None:
            found[kind] = ip
    ip = found.get(IFA_ADDRESS) or found.get(IFA_LOCAL)
    return None if ip is None else ip_network(f"{ip}/{plen}", strict=False)


def parse_route(payload: bytes) -> Network | None:
    """An RTM_NEWROUTE's destination; None for a default route (no destination or /0)."""
    dst_len = _RTMSG.unpack_from(payload)[1]
    for kind, data in attrs(payload, _RTMSG.size):
        if kind == RTA_DST and dst_len and (ip := _ip(data)) is not None:
            return ip_network(f"{ip}/{dst_len}", strict=False)
    return None


def route_table(payload: bytes) -> int:
    """An RTM_NEWROUTE's table: RTA_TABLE when given (tables past 255), else the header's."""
    table = int(_RTMSG.unpack_from(payload)[4])
    for kind, data in attrs(payload, _RTMSG.size):
        if kind == RTA_TABLE and len(data) == 4:
            table = int(struct.unpack("=I", data)[0])
    return table


def route_gateway(payload: bytes) -> Address | None:
    for kind, data in attrs(payload, _RTMSG.size):
        if kind == RTA_GATEWAY:
            return _ip(data)
    return None


# --- the socket -------------------------------------------------------------------------------


class Rtnl:
    """One NETLINK_ROUTE socket in the namespace of the thread that opened it."""

    BUFSIZE = 1 << 18

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_ROUTE)
        try:
            for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
                try:
                    self.sock.setsockopt(SOL_NETLINK, opt, 1)
                except OSError:
                    pass  # an old kernel: plain errors, the request's echo skipped by length
            self.sock.bind((0, 0))
        except BaseException:
            self.sock.close()
            raise
        self.seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self.seq += 1
        self.sock.send(message(kind, flags, self.seq, body))
        return self.seq

    def request(self, kind: int, body: bytes, flags: int = 0) -> None:
        """Send one request and wait for its acknowledgement; RtnlError if refused."""
        seq = self._send(kind, NLM_F_REQUEST | NLM_F_ACK | flags, body)
        while True:
            for mtype, mflags, mseq, payload in messages(self.sock.recv(self.BUFSIZE)):
                if mseq != seq or mtype != NLMSG_ERROR:
                    continue  # a late answer to nothing of ours
                code, text = parse_error(mflags, payload)
                if code:
                    raise RtnlError(code, os.strerror(code) + (f": {text}" if text else ""))
                return

    def query(self, kind: int, body: bytes) -> bytes:
        """Send one request that the kernel answers with one message (a route `get`)."""
        seq = self._send(kind, NLM_F_REQUEST, body)
        while True:
            for mtype, mflags, mseq, payload in messages(self.sock.recv(self.BUFSIZE)):
                if mseq != seq:
                    continue
                if mtype == NLMSG_ERROR:
                    code, text = parse_error(mflags, payload)
                    if code:
                        raise RtnlError(code, os.strerror(code) + (f": {text}" if text else ""))
                    continue
                return payload

    def dump(self, kind: int, body: bytes) -> list[bytes]:
        """Every message a dump request answers, to NLMSG_DONE (their payloads)."""
        seq = self._send(kind, NLM_F_REQUEST | NLM_F_DUMP, body)
        out: list[bytes] = []
        while True:
            for mtype, mflags, mseq, payload in messages(self.sock.recv(self.BUFSIZE)):
                if mseq != seq:
                    continue
                if mtype == NLMSG_DONE:
                    return out
                if mtype == NLMSG_ERROR:
                    code, text = parse_error(mflags, payload)
                    if code:
                        raise RtnlError(code, os.strerror(code) + (f": {text}" if text else ""))
                    continue
                out.append(payload)

    # --- the requests ---

    def link_up(self, index: int) -> None:
        self.request(RTM_NEWLINK, pack_link_up(index))

    def add_veth(self, ifname: str, peer: str, peer_netns_fd: int) -> None:
        self.request(RTM_NEWLINK, pack_veth(ifname, peer, peer_netns_fd),
                     NLM_F_CREATE | NLM_F_EXCL)

    def delete_link(self, index: int) -> None:
        self.request(RTM_DELLINK, ifinfo(index))

    def add_addr(self, index: int, iface: IPv4Interface | IPv6Interface, flags: int = 0) -> None:
        self.request(RTM_NEWADDR, pack_addr(index, iface, flags), NLM_F_CREATE | NLM_F_EXCL)

    def add_default_route(self, gateway: Address, oif: int) -> None:
        self.request(RTM_NEWROUTE, pack_default_route(gateway, oif), NLM_F_CREATE | NLM_F_EXCL)

    def replace_route(self, dst: Network, *, gateway: Address | None = None,
                      oif: int | None = None, scope: int = RT_SCOPE_UNIVERSE) -> None:
        self.request(RTM_NEWROUTE, pack_route(dst, gateway=gateway, oif=oif, scope=scope),
                     NLM_F_CREATE | NLM_F_REPLACE)

    def delete_route(self, dst: Network, *, oif: int | None = None) -> None:
        self.request(RTM_DELROUTE, pack_route(dst, oif=oif, delete=True))

    def gateway_to(self, dst: Address) -> Address | None:
        """The gateway of the kernel's route to `dst` (`ip route get`); None if on-link."""
        full = ip_network(f"{dst}/{dst.max_prefixlen}")
        body = (_RTMSG.pack(_family(dst), full.prefixlen, 0, 0, 0, 0, 0, 0, 0)
                + attr(RTA_DST, dst.packed))
        return route_gateway(self.query(RTM_GETROUTE, body))

    def main_routes(self, family: int) -> list[tuple[Network | None, int]]:
        """The main table's routes of `family`: (destination or None for a default, prefix
        length)."""
        out: list[tuple[Network | None, int]] = []
        for payload in self.dump(RTM_GETROUTE, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)):
            if route_table(payload) == RT_TABLE_MAIN:
                out.append((parse_route(payload), int(_RTMSG.unpack_from(payload)[1])))
        return out

    def link_names(self) -> list[str]:
        found = (parse_link_name(p) for p in self.dump(RTM_GETLINK, ifinfo()))
        return [n for n in found if n]

    def networks(self) -> list[Network]:
        """Every address's network and every route's destination (all tables, both
        families), default routes left out."""
        out: list[Network] = []
        for payload in self.dump(RTM_GETADDR, _IFADDR.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            if (net := parse_addr(payload)) is not None:
                out.append(net)
        for family in (socket.AF_INET, socket.AF_INET6):
            for payload in self.dump(RTM_GETROUTE,
                                     _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)):
                if (net := parse_route(payload)) is not None:
                    out.append(net)
        return out
