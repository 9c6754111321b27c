"""The addresses of this host, for the `self_connection` check (docs/proxy.md §6).

Read from procfs (no subprocess, no netlink import) once at start; `parse_*` are pure.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from proxy.addr import IPAddress


def parse_fib_trie(text: str) -> set[ipaddress.IPv4Address]:
    """Local IPv4 addresses: the `|-- a.b.c.d` leaf followed by `/32 host LOCAL`."""
    found: set[ipaddress.IPv4Address] = set()
    last: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|--"):
            last = stripped[3:].strip()
        elif stripped.startswith("/32 host LOCAL") and last:
            try:
                found.add(ipaddress.IPv4Address(last))
            except ValueError:
                pass
    return found


def parse_if_inet6(text: str) -> set[ipaddress.IPv6Address]:
    found: set[ipaddress.IPv6Address] = set()
    for line in text.splitlines():
        fields = line.split()
        if fields and len(fields[0]) == 32:
            try:
                found.add(ipaddress.IPv6Address(int(fields[0], 16)))
            except ValueError:
                pass
    return found


def local_addresses(proc: Path = Path("/proc/net")) -> frozenset[IPAddress]:
    addrs: set[IPAddress] = {ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1")}
    try:
        addrs |= parse_fib_trie((proc / "fib_trie").read_text())
    except OSError:
        pass
    try:
        addrs |= parse_if_inet6((proc / "if_inet6").read_text())
    except OSError:
        pass
    return frozenset(addrs)
