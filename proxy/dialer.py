"""Connecting upstream: only to addresses that were checked, within the connect timeout."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable, Sequence
from typing import TypeVar

from awf.errors import ConnectFailed, ConnectTimeout
from proxy.addr import IPAddress

P = TypeVar("P", bound=asyncio.BaseProtocol)


async def dial(
    addresses: Sequence[IPAddress],
    port: int,
    factory: Callable[[], P],
    *,
    timeout: float,
    name: str,
) -> tuple[asyncio.Transport, P]:
    """Try each checked address in order; ConnectTimeout or ConnectFailed if none answers."""
    loop = asyncio.get_running_loop()
    failures: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            for ip in addresses:
                try:
                    transport, protocol = await loop.create_connection(factory, str(ip), port)
                except OSError as exc:
                    failures.append(f"{ip}: {exc.strerror or errno.errorcode.get(exc.errno or 0)}")
                    continue
                return transport, protocol
    except TimeoutError:
        raise ConnectTimeout(f"connecting to {name}:{port} took over {timeout:g} s") from None
    raise ConnectFailed(f"cannot connect to {name}:{port}: {'; '.join(failures) or 'no address'}")
