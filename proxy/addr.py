"""IP literals and address ranges (docs/proxy.md §3 and §4): what counts as an address, and where an
allowed name may not lead.

IP literals are recognised the way client libraries parse them, so no spelling slips past the
``ip_literal`` rule as a "name":

* IPv6: ``[...]`` or bare text containing ``:``, parsed by ``ipaddress``; a zone id (``%lo``, or
  ``%25lo`` as RFC 6874 writes it in URLs) is dropped. Anything bracketed or holding ``:`` that is
  not IPv6 raises ``ValueError`` (it is not a hostname either).
* IPv4: after the folding of ``hostnames.fold_name`` (case, one trailing dot, UTS 46), a name
  whose last label "ends in a number" (all digits, or ``0x`` plus hex digits: the WHATWG URL
  rule) is decoded as ``inet_aton(3)`` does: 1 to 4 parts, each decimal, ``0``-octal or
  ``0x``-hex (``0x`` alone is 0, as WHATWG reads it); every part but the last is one byte and the
  last fills the remaining bytes (``127.1``, ``2130706433``, ``0x7f.0.0.1``). A name that ends in a
  number but is not such an address (``1.2.3.4.5``, ``0x1g.1``, ``08.1``) raises ``ValueError``: it
  must be answered 400, never resolved.

Embedded IPv4 (judged by the IPv4 they carry): IPv4-mapped ``::ffff:0:0/96``, IPv4-compatible
``::/96`` (except ``::`` and ``::1``), IPv4-translated ``::ffff:0:0:0/96`` (RFC 2765), NAT64
``64:ff9b::/96`` (RFC 6052) and 6to4 ``2002::/16`` (RFC 3056, bits 16-47).

``AddressSet`` keeps merged, sorted ``[start, end]`` integer ranges per family and answers
membership with one ``bisect``; an IPv6 network's IPv4-mapped part also counts for IPv4, so both
spellings of one socket address always agree.
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

from proxy.errors import ConfigError
from proxy.hostnames import fold_name

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_ENDS_IN_NUMBER = re.compile(r"[0-9]+|0x[0-9a-f]*")
_HEX = re.compile(r"0x([0-9a-f]*)")
_OCT = re.compile(r"0[0-7]*")
_DEC = re.compile(r"[1-9][0-9]*")


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address ``host`` spells, ``None`` if it is a name, ``ValueError`` if it is neither."""
    text = host.strip()
    if text.startswith("["):
        if not text.endswith("]"):
            raise ValueError(f"unbalanced brackets in {host!r}")
        return _parse_ipv6(text[1:-1], host)
    if ":" in text:
        return _parse_ipv6(text, host)
    try:
        name = fold_name(text)
    except ValueError:
        return None  # not an address; normalise_name will say what is wrong with the name
    if not _ENDS_IN_NUMBER.fullmatch(name.rpartition(".")[2]):
        return None
    return _inet_aton(name, host)


def _parse_ipv6(text: str, host: str) -> ipaddress.IPv6Address:
    address = text.partition("%")[0]  # the zone id only picks an interface
    try:
        return ipaddress.IPv6Address(address)
    except ValueError as exc:
        raise ValueError(f"{host!r} is not a valid IPv6 address") from exc


def _inet_aton(name: str, host: str) -> ipaddress.IPv4Address:
    parts = name.split(".")
    if len(parts) > 4:
        raise ValueError(f"{host!r} ends in a number but has more than 4 parts")
    values = [_aton_part(part, host) for part in parts]
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (5 - len(values))):
        raise ValueError(f"{host!r} ends in a number but a part is out of range")
    number = last
    for i, v in enumerate(head):
        number |= v << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def _aton_part(part: str, host: str) -> int:
    if hexa := _HEX.fullmatch(part):
        digits = hexa.group(1).lstrip("0")
        if len(digits) > 8:
            raise ValueError(f"{host!r} ends in a number but a part is out of range")
        return int(digits or "0", 16)
    if _OCT.fullmatch(part):
        digits = part.lstrip("0")
        if len(digits) > 11:
            raise ValueError(f"{host!r} ends in a number but a part is out of range")
        return int(digits or "0", 8)
    if _DEC.fullmatch(part):
        if len(part) > 10:
            raise ValueError(f"{host!r} ends in a number but a part is out of range")
        return int(part)
    raise ValueError(f"{host!r} ends in a number but {part!r} is not a decimal, octal or hex part")


_MAPPED = 0xFFFF
_TRANSLATED = 0xFFFF_0000
_NAT64 = 0x0064_FF9B_0000_0000_0000_0000
_SIX_TO_FOUR = 0x2002


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, translated, NAT64, 6to4)."""
    n = int(ip)
    high = n >> 32
    if high in (_MAPPED, _TRANSLATED, _NAT64) or (high == 0 and n > 1):
        return ipaddress.IPv4Address(n & 0xFFFF_FFFF)
    if n >> 112 == _SIX_TO_FOUR:
        return ipaddress.IPv4Address((n >> 80) & 0xFFFF_FFFF)
    return None


@dataclass(frozen=True, slots=True)
class AddressSet:
    """A set of IPv4 and IPv6 networks; an IPv6 address with an embedded IPv4 is also a member
    when that IPv4 is (so ``127.0.0.0/8`` covers ``::ffff:127.0.0.1``)."""

    networks: tuple[IPNetwork, ...] = ()
    v4_starts: tuple[int, ...] = ()
    v4_ends: tuple[int, ...] = ()
    v6_starts: tuple[int, ...] = ()
    v6_ends: tuple[int, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str], *, what: str) -> AddressSet:
        """``"10.0.0.0/8"``, ``"127.0.0.1"``, ``"::1/128"``, ``"[::1]"``; commas split entries."""
        networks: list[IPNetwork] = []
        for entry in entries:
            for item in entry.split(","):
                networks.append(parse_network(item, what=what))
        return cls.of(networks)

    @classmethod
    def of(cls, networks: Iterable[IPNetwork]) -> AddressSet:
        unique = sorted(set(networks), key=lambda net: (net.version, net))
        v4 = _merge([*((int(n.network_address), int(n.broadcast_address)) for n in unique
                       if n.version == 4),
                     *(r for n in unique if n.version == 6 and (r := _mapped_part(n)))])
        v6 = _merge((int(n.network_address), int(n.broadcast_address)) for n in unique
                    if n.version == 6)
        return cls(tuple(unique), tuple(s for s, _ in v4), tuple(e for _, e in v4),
                   tuple(s for s, _ in v6), tuple(e for _, e in v6))

    def __contains__(self, ip: object) -> bool:
        if isinstance(ip, ipaddress.IPv4Address):
            return _member(int(ip), self.v4_starts, self.v4_ends)
        if isinstance(ip, ipaddress.IPv6Address):
            if _member(int(ip), self.v6_starts, self.v6_ends):
                return True
            v4 = embedded_ipv4(ip)
            return v4 is not None and _member(int(v4), self.v4_starts, self.v4_ends)
        return False

    def __len__(self) -> int:
        return len(self.networks)

    def __bool__(self) -> bool:
        return bool(self.networks)


def parse_network(entry: str, *, what: str) -> IPNetwork:
    """One address or CIDR; ``ConfigError`` naming ``what`` and the entry otherwise."""
    text = entry.strip()
    address, slash, length = text.partition("/")
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    if not address:
        raise ConfigError(f"{what}: {entry!r} is empty; give an address or CIDR like '10.0.0.0/8'")
    if "%" in address:
        raise ConfigError(f"{what}: {entry!r} is not an IP address or CIDR (zone ids are not "
                          "supported); remove the '%...' part")
    try:
        return ipaddress.ip_network(f"{address}{slash}{length}", strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(f"{address}{slash}{length}", strict=False)
        except ValueError:
            raise ConfigError(f"{what}: {entry!r} is not an IP address or CIDR; write it like "
                              f"'10.0.0.0/8', '192.0.2.1' or '2001:db8::/32'") from exc
        raise ConfigError(f"{what}: {entry!r} has host bits set; did you mean "
                          f"{str(loose)!r}?") from exc


def _mapped_part(net: IPNetwork) -> tuple[int, int] | None:
    """The IPv4 range an IPv6 network covers through IPv4-mapped addresses (the same addresses
    in the socket API), so ``::ffff:10.0.0.0/104`` also holds ``10.0.0.1``."""
    start, end = int(net.network_address), int(net.broadcast_address)
    lo, hi = max(start, _MAPPED << 32), min(end, (_MAPPED << 32) | 0xFFFF_FFFF)
    return (lo & 0xFFFF_FFFF, hi & 0xFFFF_FFFF) if lo <= hi else None


def _merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + 1:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _member(n: int, starts: tuple[int, ...], ends: tuple[int, ...]) -> bool:
    i = bisect_right(starts, n) - 1
    return i >= 0 and n <= ends[i]


DENIED = AddressSet.parse(
    [
        "0.0.0.0/8",        # unspecified ("this network")
        "10.0.0.0/8",       # private
        "100.64.0.0/10",    # shared address space (carrier-grade NAT)
        "127.0.0.0/8",      # loopback
        "169.254.0.0/16",   # link-local, cloud metadata 169.254.169.254
        "172.16.0.0/12",    # private
        "192.168.0.0/16",   # private
        "224.0.0.0/4",      # multicast
        "240.0.0.0/4",      # reserved, broadcast 255.255.255.255
        "::/128",           # unspecified
        "::1/128",          # loopback
        "fc00::/7",         # unique local (private)
        "fe80::/10",        # link-local
        "fec0::/10",        # site-local (deprecated, never global)
        "ff00::/8",         # multicast
    ],
    what="denied ranges",
)


def is_denied_address(ip: IPAddress) -> bool:
    """docs/proxy.md §4: may an allowed name lead here only with ``--allow-range``?"""
    return ip in DENIED
