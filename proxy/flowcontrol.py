"""The flow-control marks of every stream transport the proxy owns (clients, tunnels, origins).

A side stops reading when the transport it writes to holds HIGH_WATER bytes unsent, and reads
again below LOW_WATER: memory per connection stays bounded whatever the peers' speeds.
"""

from __future__ import annotations

import asyncio

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


def tune(transport: asyncio.BaseTransport) -> None:
    """Our flow-control marks on a fresh stream transport. (uvloop sets TCP_NODELAY on every
    TCP transport itself; asking for the socket object here would cost a wrapper per call.)"""
    if isinstance(transport, asyncio.WriteTransport):
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
