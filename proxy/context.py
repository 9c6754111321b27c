"""What a connection may use of the running proxy: the `ConnectionContext` protocol.

Connections (`HttpConnection`, `TransparentConnection`, tunnels, exchanges) hold a
`ConnectionContext`, never the `ProxyServer` itself: the protocol lists everything they may
touch (the current policy, the checked dialler, the origin pool, the log, the limits, the loop
and the connection registry), so a test can pass a small fake and nothing reaches listeners,
reload or drain. `ProxyServer` implements it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from proxy.access_log import Entry
from proxy.addr import IPAddress
from proxy.policy import Decision, Policy
from proxy.upstream import Pool
from proxy.urlrules import UrlRules

if TYPE_CHECKING:
    from proxy.bump_setup import Bumper

P = TypeVar("P", bound=asyncio.BaseProtocol)


@dataclass(frozen=True, slots=True)
class Limits:
    """The per-connection clocks, in seconds, from the command line (docs/proxy.md §5.3)."""

    head_timeout: float = 30.0
    response_timeout: float = 300.0
    connect_timeout: float = 10.0
    idle_timeout: float = 300.0


class Registered(Protocol):
    """What the connection registry needs of a connection: to drain and to stop it."""

    def drain(self) -> None:
        """SIGTERM: take no new request; close now if none is in progress."""
        ...

    def abort(self) -> None: ...


class ConnectionContext(Protocol):
    """Everything a connection may use of the server, and nothing else."""

    @property
    def policy(self) -> Policy: ...  # read per request: SIGHUP swaps it

    @property
    def urlrules(self) -> UrlRules | None: ...  # --allow-urls / --ssl-bump; swapped with policy

    @property
    def bumper(self) -> Bumper | None: ...  # --ssl-bump: the leaves and upstream TLS

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def limits(self) -> Limits: ...

    @property
    def pool(self) -> Pool: ...

    @property
    def draining(self) -> bool: ...  # SIGTERM: answers say `Connection: close`

    @property
    def healthz_token(self) -> str | None: ...  # --healthz-token

    def admit(self, conn: Registered) -> bool:
        """Register a new connection, or False at the connection cap."""
        ...

    def release(self, conn: Registered) -> None: ...

    def swap(self, old: Registered, new: Registered) -> None:
        """`new` now owns `old`'s socket (a tunnel, or intercepted HTTP)."""
        ...

    def log_record(self, rec: Mapping[str, object] | Entry) -> None: ...

    def is_self(self, ip: IPAddress, port: int) -> bool: ...

    async def destinations(self, decision: Decision, port: int) -> tuple[IPAddress, ...]:
        """The checked addresses an allowed decision may be dialled at (docs/proxy.md §4)."""
        ...

    def known_destinations(self, decision: Decision, port: int) -> tuple[IPAddress, ...] | None:
        """`destinations` when it needs no wait and the dial goes direct; None otherwise."""
        ...

    async def dial(
        self, addresses: Sequence[IPAddress], port: int, factory: Callable[[], P], name: str
    ) -> tuple[asyncio.Transport, P]:
        """Connect to one of `addresses` within the connect timeout."""
        ...

    def health(self) -> dict[str, object]: ...
