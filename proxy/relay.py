"""Turning an accepted connection into a tunnel to a checked origin address.

Shared by CONNECT (explicit) and intercepted TLS (transparent): resolve once, check every
address, dial a checked one, then hand both transports to `TunnelSide`s. The access-log record
is written when both sockets are closed.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from proxy.policy import Decision
from proxy.tunnel import TunnelSide, join

if TYPE_CHECKING:
    from proxy.server import ProxyServer


async def open_relay(
    server: ProxyServer,
    owner: object,
    client: asyncio.Transport,
    decision: Decision,
    port: int,
    *,
    reply: bytes,
    first_up: bytes,
    record: dict[str, object],
    started: float,
) -> TunnelSide | None:
    """Dial, then relay. Raises RequestError before anything was sent to the client.

    Returns the client's TunnelSide, now the transport's protocol (reading still paused: the
    caller feeds anything it buffered, then resumes), or None if the client left meanwhile.
    """
    addresses = await server.destinations(decision, port)
    up_t, up = await server.dial(addresses, port, TunnelSide, decision.host)
    if client.is_closing():
        up_t.close()
        return None
    mine = TunnelSide()
    mine.transport = client
    mine.nbytes = len(first_up)

    def finished() -> None:
        record["bytes_up"] = mine.nbytes
        record["bytes_down"] = up.nbytes
        record["duration_ms"] = round((time.time() - started) * 1000, 1)
        server.log_record(record)
        server.release(mine)

    join(mine, up, finished)
    server.swap(owner, mine)
    if reply:
        client.write(reply)
    client.set_protocol(mine)
    if first_up:
        up_t.write(first_up)
    return mine
