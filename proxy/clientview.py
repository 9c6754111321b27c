"""A named client's view of the running proxy (docs/proxy.md §12): `ClientContext`, the
`ConnectionContext` its connections hold, and `ClientSelector`, the protocol a listener accepts
with when clients are configured.

`ClientSelector.connection_made` looks the peer address up once (`ClientTable.select`), makes the
real connection (`HttpConnection`, `TransparentConnection`) with the server itself or with that
client's `ClientContext`, hands it the transport (`set_protocol`) and steps aside: nothing of it
stays on the data path, and without clients no selector is used at all. A `ClientContext` is the
server but for the policy (the client's own, looked up by name at each decision, so SIGHUP swaps
it), no URL rules and no bumping (its connections are opaque tunnels or plain forwards), and its
log records, which carry `client_name`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from proxy.access_log import Entry
from proxy.addr import IPAddress
from proxy.clients import peer_address
from proxy.context import ConnectionContext, Limits, Registered
from proxy.policy import Decision, Policy
from proxy.upstream import Pool
from proxy.urlrules import UrlRules

if TYPE_CHECKING:
    from proxy.bump_setup import Bumper
    from proxy.server import ProxyServer

P = TypeVar("P", bound=asyncio.BaseProtocol)

DENY_ALL = Policy.build(allow_domains=[])  # a client a reload removed: fail closed


class ClientContext:
    """The server as one client's connections see it (implements `ConnectionContext`)."""

    __slots__ = ("_server", "name")

    def __init__(self, server: ProxyServer, name: str) -> None:
        self._server = server
        self.name = name

    @property
    def policy(self) -> Policy:
        client = self._server.clients.get(self.name)
        return client.policy if client is not None else DENY_ALL

    @property
    def urlrules(self) -> UrlRules | None:
        return None

    @property
    def bumper(self) -> Bumper | None:
        return None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._server.loop

    @property
    def limits(self) -> Limits:
        return self._server.limits

    @property
    def pool(self) -> Pool:
        return self._server.pool

    @property
    def draining(self) -> bool:
        return self._server.draining

    @property
    def healthz_token(self) -> str | None:
        return self._server.healthz_token

    def admit(self, conn: Registered) -> bool:
        return self._server.admit(conn)

    def release(self, conn: Registered) -> None:
        self._server.release(conn)

    def swap(self, old: Registered, new: Registered) -> None:
        self._server.swap(old, new)

    def log_record(self, rec: Mapping[str, object] | Entry) -> None:
        """The record as the server logs it, plus `client_name` (never learn-mode marks: a
        client's policy is never in learn mode)."""
        out = rec.as_mapping() if isinstance(rec, Entry) else dict(rec)
        out["client_name"] = self.name
        self._server.log.record(out)
        if self._server.cfg.log_level == "debug":
            print(f"awf-proxy: {out.get('decision')} {out.get('method')} {out.get('host')}:"
                  f"{out.get('port')} {out.get('status')} {out.get('reason') or ''} "
                  f"({self.name})", file=sys.stderr)

    def is_self(self, ip: IPAddress, port: int) -> bool:
        return self._server.is_self(ip, port)

    async def destinations(self, decision: Decision, port: int) -> tuple[IPAddress, ...]:
        return await self._server.destinations(decision, port, policy=self.policy)

    def known_destinations(self, decision: Decision, port: int) -> tuple[IPAddress, ...] | None:
        return self._server.known_destinations(decision, port, policy=self.policy)

    async def dial(
        self, addresses: Sequence[IPAddress], port: int, factory: Callable[[], P], name: str
    ) -> tuple[asyncio.Transport, P]:
        return await self._server.dial(addresses, port, factory, name)

    def health(self) -> dict[str, object]:
        return self._server.health()


class ClientSelector(asyncio.Protocol):
    """Accepts one connection, picks its context by peer address, and hands over."""

    __slots__ = ("_make", "_server")

    def __init__(self, server: ProxyServer,
                 make: Callable[[ConnectionContext], asyncio.Protocol]) -> None:
        self._server = server
        self._make = make

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._server
        ctx = server.context_for(peer_address(transport.get_extra_info("peername")))
        conn = self._make(ctx)
        transport.set_protocol(conn)
        conn.connection_made(transport)
