"""Where a redirected TCP connection was going before nftables sent it to us (Linux only).

The transparent listener only learns the real destination from conntrack: `redirect`/`dnat`
rewrote the destination, and the original tuple is read back with

    getsockopt(SOL_IP   = 0,  SO_ORIGINAL_DST      = 80) -> struct sockaddr_in   (16 bytes)
    getsockopt(SOL_IPV6 = 41, IP6T_SO_ORIGINAL_DST = 80) -> struct sockaddr_in6  (28 bytes)

(linux/netfilter_ipv4.h, linux/netfilter_ipv6/ip6_tables.h). Ports and addresses are in
network order; the family field is in host order. An AF_INET6 listener that also accepts
IPv4 (IPV6_V6ONLY off) gets IPv4 connections as `::ffff:a.b.c.d` peers, whose conntrack entry
is IPv4: those are asked with SOL_IP and answered as plain IPv4. The kernel answers ENOENT when
conntrack has no entry for the socket; a connection that was tracked but not redirected gets
its own local address back.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any, Protocol

__all__ = ["SocketLike", "original_destination"]

SOL_IP = 0
SOL_IPV6 = 41
SO_ORIGINAL_DST = 80
IP6T_SO_ORIGINAL_DST = 80
_SOCKADDR_IN = 16
_SOCKADDR_IN6 = 28


class SocketLike(Protocol):
    """A `socket.socket`, or the socket view an asyncio/uvloop transport hands out."""

    @property
    def family(self) -> int: ...

    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...

    def getpeername(self) -> Any: ...


def original_destination(sock: SocketLike) -> tuple[str, int]:
    """The (address, port) the peer dialled before being redirected to `sock`.

    Raises OSError if conntrack has no original destination for it (ENOENT), or if `sock`
    is not an IPv4/IPv6 TCP socket; the caller then uses the local address or denies.
    """
    family = sock.family
    if family == socket.AF_INET:
        return _v4(sock.getsockopt(SOL_IP, SO_ORIGINAL_DST, _SOCKADDR_IN))
    if family == socket.AF_INET6:
        if ipaddress.IPv6Address(sock.getpeername()[0].split("%", 1)[0]).ipv4_mapped:
            return _v4(sock.getsockopt(SOL_IP, SO_ORIGINAL_DST, _SOCKADDR_IN))
        return _v6(sock.getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST, _SOCKADDR_IN6))
    raise OSError(errno.EAFNOSUPPORT, f"original destination: socket family {family!r} is not IP")


def _v4(raw: bytes) -> tuple[str, int]:
    if len(raw) < 8:
        raise OSError(errno.EINVAL, f"SO_ORIGINAL_DST returned {len(raw)} bytes, not a sockaddr_in")
    return socket.inet_ntop(socket.AF_INET, raw[4:8]), int.from_bytes(raw[2:4], "big")


def _v6(raw: bytes) -> tuple[str, int]:
    if len(raw) < 24:
        raise OSError(
            errno.EINVAL, f"IP6T_SO_ORIGINAL_DST returned {len(raw)} bytes, not a sockaddr_in6"
        )
    return socket.inet_ntop(socket.AF_INET6, raw[8:24]), int.from_bytes(raw[2:4], "big")
