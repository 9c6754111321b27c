"""The host's addresses and routes, read with `ip -j` instead of pyroute2 (whose import costs awf's
Docker backend 0.2-0.7 s at every start, for this one reading).

The same answer as `netns.host_networks`: every address and every route (all tables, both
families) of the host namespace, default routes left out. The parsing is pure (`addresses`,
`routes`); `host_networks` runs `ip` twice.
"""

from __future__ import annotations

import json
import subprocess
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

from netfilter.errors import SandboxError

Network = IPv4Network | IPv6Network


def _json(text: str) -> list[Any]:
    doc = json.loads(text) if text.strip() else []
    if not isinstance(doc, list):
        raise ValueError("not a list")
    return doc


def addresses(text: str) -> list[Network]:
    """The networks of `ip -j addr show`'s addresses (address/prefix, host bits ignored)."""
    out: list[Network] = []
    for link in _json(text):
        for info in link.get("addr_info") or ():
            local, plen = info.get("local"), info.get("prefixlen")
            if local and plen is not None:
                out.append(ip_network(f"{str(local).split('%')[0]}/{plen}", strict=False))
    return out


def routes(text: str) -> list[Network]:
    """The destinations of `ip -j route show table all`, default routes left out."""
    out: list[Network] = []
    for route in _json(text):
        dst = route.get("dst")
        if not dst or dst == "default":
            continue
        net = ip_network(str(dst).split("%")[0], strict=False)
        if net.prefixlen:
            out.append(net)
    return out


def unicast_routes(text: str) -> list[IPv6Network]:
    """The destinations of `ip -j -6 route show table main type unicast` (``::/0`` for the
    default route)."""
    out: list[IPv6Network] = []
    for route in _json(text):
        dst = str(route.get("dst") or "")
        if dst:
            out.append(IPv6Network("::/0" if dst == "default" else dst.split("%")[0],
                                   strict=False))
    return out


def ipv6_routes() -> list[IPv6Network]:
    """The host's unicast IPv6 routes in the main table; nothing when IPv6 is off or `ip`
    cannot tell: that host has no IPv6 to offer."""
    try:
        return unicast_routes(_ip("-6", "route", "show", "table", "main", "type", "unicast"))
    except (SandboxError, ValueError, AttributeError, TypeError):
        return []


def _ip(*args: str) -> str:
    try:
        done = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"cannot read the host's addresses and routes: {exc}") from exc
    if done.returncode != 0:
        raise SandboxError(f"cannot read the host's addresses and routes: ip {' '.join(args)}: "
                           f"{done.stderr.strip() or done.returncode}")
    return done.stdout


def host_networks() -> list[Network]:
    """Every address and every route (all tables) of the host namespace, but default routes."""
    try:
        return [*addresses(_ip("addr", "show")),
                *routes(_ip("-4", "route", "show", "table", "all")),
                *routes(_ip("-6", "route", "show", "table", "all"))]
    except (ValueError, AttributeError, TypeError) as exc:
        raise SandboxError(f"cannot read the host's addresses and routes: `ip -j` printed "
                           f"something unexpected ({exc})") from exc
