"""The host's IPv6 masquerade for the Docker backend's -ext network, `inet awf_<run>`: pure.

Docker masquerades a bridge network's IPv4 itself, but its IPv6 only when the daemon runs with
``"ip6tables": true`` (experimental in Docker 20.10, the default since 27), and the engine API
does not say which. So awf always adds its own rule for the proxy's IPv6 egress
(docs/architecture.md §5.1): from -ext's /64 to anywhere outside it, masqueraded to the host's
address on the way out. Where Docker masquerades too, nothing changes: a connection is
source-NATed once, by the first ``srcnat`` rule it meets. The table is named like the netns
backend's host tables, so ``awf cleanup`` finds a killed run's (its owner is in
/run/awf/runs/<run>.pid while it lives); teardown deletes it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from ipaddress import IPv6Network

from netfilter.ruleset import (
    Chain,
    Family,
    Match,
    Priority,
    Rule,
    Table,
    _check_table,
    _check_type,
    m_addr,
    m_family,
)

NOTE = "IPv6 only: Docker masquerades -ext's IPv4 itself"


def table_name(run: str) -> str:
    return f"awf_{run}"


@dataclass(frozen=True, slots=True, kw_only=True)
class EgressNat:
    """``postrouting`` (nat, ``srcnat``): ``ip6 saddr SUBNET ip6 daddr != SUBNET masquerade``."""

    table: str
    subnet_v6: IPv6Network

    def __post_init__(self) -> None:
        _check_table(self.table)
        _check_type("subnet_v6", self.subnet_v6, IPv6Network)

    def model(self) -> Table:
        net = self.subnet_v6
        outside = Match(f"ip6 daddr != {net}", nets=frozenset({net}), negated=True)
        masquerade = Rule((m_family(Family.V6), m_addr(Family.V6, "saddr", [net]), outside),
                          "masquerade", ("masquerade",), Family.V6, note=NOTE)
        return Table(self.table, (), (
            Chain("postrouting", (masquerade,), hook="postrouting", type="nat",
                  priority=Priority("srcnat")),))

    def render(self) -> str:
        return self.model().render()

    def sha256(self) -> str:
        return hashlib.sha256(self.render().encode()).hexdigest()
