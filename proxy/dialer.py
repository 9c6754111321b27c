"""Connecting upstream: only to addresses that were checked, within the connect timeout."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable, Sequence
from typing import TypeVar

from proxy.addr import IPAddress
from proxy.errors import ConnectFailed, ConnectTimeout

P = TypeVar("P", bound=asyncio.BaseProtocol)


async def dial(
    loop: asyncio.AbstractEventLoop,
    addresses: Sequence[IPAddress],
    port: int,
    factory: Callable[[], P],
    *,
    timeout: float,
    name: str,
) -> tuple[asyncio.Transport, P]:
    """Try each checked address in order; ConnectTimeout or ConnectFailed if none answers.

    The deadline is asyncio.timeout's logic with the loop passed in: asyncio.timeout looks up
    the loop and the task with get_running_loop(), which on Python 3.11 is a getpid() system
    call each time, three per dial.
    """
    task = asyncio.current_task(loop)
    if task is None:
        raise RuntimeError("dial() must run in a task")
    cancelling = task.cancelling()
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    timer = loop.call_later(timeout, expire)
    failures: list[str] = []
    try:
        for ip in addresses:
            try:
                transport, protocol = await loop.create_connection(factory, str(ip), port)
            except OSError as exc:
                failures.append(_failure(ip, exc))
                continue
            return transport, protocol
    except asyncio.CancelledError:
        if expired and task.uncancel() <= cancelling:  # our deadline, nobody else's cancel
            raise ConnectTimeout(
                f"connecting to {name}:{port} took over {timeout:g} s") from None
        raise
    finally:
        timer.cancel()
    raise ConnectFailed(f"cannot connect to {name}:{port}: {'; '.join(failures) or 'no address'}")


NO_ROUTE = (errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)


def _failure(ip: IPAddress, exc: OSError) -> str:
    """One address's failure, as logged (`connect_failed`'s note): an IPv6 address with no
    route says so, since that is a host (or a Docker backend) without IPv6 egress, not a
    broken origin."""
    text = exc.strerror or errno.errorcode.get(exc.errno or 0) or str(exc)
    if ip.version == 6 and exc.errno in NO_ROUTE:
        return f"{ip}: no IPv6 route from the proxy, this host has no IPv6 egress ({text})"
    return f"{ip}: {text}"
