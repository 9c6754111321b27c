"""The running proxy: listeners, the connection registry, destinations, reload and drain.

`ProxyServer` implements `context.ConnectionContext`, all that connections may use of it. It owns
the one swappable reference to the frozen `Policy` (SIGHUP builds a new one and swaps it), the
resolver, the origin pool and the access log. Destinations are checked here: a name is resolved
once, every answer is classified (docs/proxy.md §4), and only checked addresses are handed to the
dialler.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import resource
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar, cast

from proxy import __version__
from proxy.access_log import AccessLog, Entry, learn_scheme_is_tls, would_deny_record
from proxy.addr import IPAddress, embedded_ipv4
from proxy.clients import ClientTable
from proxy.config import (
    ProxyConfig,
    build_clients,
    build_policy,
    build_rules,
    format_endpoint,
    merge,
    static_answers,
)
from proxy.context import ConnectionContext, Limits, Registered
from proxy.dialer import dial
from proxy.errors import (
    ConfigError,
    ConnectFailed,
    ConnectTimeout,
    DeniedAddress,
    DnsFailure,
    SelfConnection,
)
from proxy.http_connection import HttpConnection
from proxy.localaddrs import local_addresses
from proxy.parent import ParentFailed, ParentTimeout
from proxy.parent_handshake import handshake, handshake_factory
from proxy.policy import Decision, Policy, Scheme
from proxy.resolver import Resolver
from proxy.tunnel import TunnelSide
from proxy.upstream import Pool, Upstream
from proxy.urlrules import UrlRules

if TYPE_CHECKING:
    from proxy.bump_setup import Bumper

P = TypeVar("P", bound=asyncio.BaseProtocol)

# (flag, (host, port), protocol factory) of one listening socket
Listener = tuple[str, tuple[str, int], Callable[[], asyncio.Protocol]]

_UNSPECIFIED = {ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::")}

# Descriptors kept free beyond the connections' own: log files, DNS queries, the accept that
# must still succeed so that a client can be answered 503 instead of being dropped (at EMFILE
# libuv accepts and closes pending connections silently, and uvloop says nothing).
FD_RESERVE = 32
KNOWN_MEMO = 1024  # (host, port, policy) entries of known_destinations' memo, then it starts over
FD_WARN_EVERY = 10.0  # seconds between two stderr lines about the descriptor limit


def open_descriptors() -> int:
    """How many file descriptors this process holds (Linux /proc; a guess elsewhere)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 64


def descriptor_limit() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if soft != resource.RLIM_INFINITY else 1 << 30


class ProxyServer:
    def __init__(
        self,
        cfg: ProxyConfig,
        policy: Policy,
        resolver: Resolver,
        log: AccessLog,
        *,
        local: frozenset[IPAddress] | None = None,
        urlrules: UrlRules | None = None,
        bumper: Bumper | None = None,
        clients: ClientTable | None = None,
    ) -> None:
        self.cfg = cfg
        self.policy = policy if urlrules is None else urlrules.policy
        self.urlrules = urlrules
        self.bumper = bumper
        # --client: per-client policies (proxy/clients.py); one context per client name
        self.clients = clients if clients is not None else build_clients(cfg)
        self._client_ctx: dict[str, ConnectionContext] = {}
        self._selecting = bool(cfg.clients)  # listeners pick a context per connection
        self.resolver = resolver
        self.log = log
        self.limits = Limits(head_timeout=cfg.head_timeout,
                             response_timeout=cfg.response_timeout,
                             connect_timeout=cfg.connect_timeout, idle_timeout=cfg.idle_timeout)
        self.pool = Pool()
        self.connections: set[Registered] = set()
        self.started = time.monotonic()
        self.endpoints: list[str] = []
        self._servers: list[asyncio.Server] = []
        self._local = local if local is not None else local_addresses()
        self._self_exact: set[tuple[IPAddress, int]] = set()
        self._self_ports: set[int] = set()
        # known_destinations' memo: (host, port, id(policy)) -> (the resolver's answer, the
        # policy, the checked addresses), valid while both are the very same objects
        self._known: dict[tuple[str, int, int],
                          tuple[tuple[IPAddress, ...], Policy, tuple[IPAddress, ...]]] = {}
        self._debug = cfg.log_level == "debug"
        self._parent_addresses: tuple[IPAddress, ...] = ()  # --upstream-proxy's, from start()
        self._idle = asyncio.Event()
        self.draining = False
        # admission also keeps within RLIMIT_NOFILE: each connection may hold two descriptors
        # (client, origin), each idle pooled origin one; the floor is what start() found open
        self._fd_limit = descriptor_limit()
        self._fd_floor = 64 + FD_RESERVE
        self._fd_warned = -FD_WARN_EVERY
        # set by start(): connections use it instead of asyncio.get_running_loop(), which on
        # Python 3.11 costs a getpid() system call per call
        self.loop: asyncio.AbstractEventLoop = cast(asyncio.AbstractEventLoop, None)

    # -- listeners ---------------------------------------------------------------------------

    async def start(self, extra: Sequence[Listener] = (), *, reuse_port: bool = False) -> None:
        """Bind every listener (explicit first, then `extra`), or raise ConfigError;
        `reuse_port` (--workers) shares each port with the other workers."""
        self.loop = loop = asyncio.get_running_loop()
        wanted: list[Listener] = [
            ("--listen", ep, self.factory(HttpConnection)) for ep in self.cfg.listen
        ]
        wanted.extend(extra)
        await self.resolve_parent()
        for flag, (host, port), factory in wanted:
            try:
                srv = await loop.create_server(
                    factory, host, port, reuse_address=True, backlog=1024,
                    reuse_port=reuse_port or None,
                )
            except OSError as exc:
                await self.close_listeners()
                why = exc.strerror or str(exc)
                raise ConfigError(
                    f"{flag} {format_endpoint(host, port)}: cannot listen: {why}"
                ) from exc
            self._servers.append(srv)
            for sock in srv.sockets:
                bound = sock.getsockname()
                self.endpoints.append(format_endpoint(bound[0], bound[1]))
                self.add_self(bound[0], bound[1])
        self._fd_floor = open_descriptors() + FD_RESERVE

    def factory(self, make: Callable[[ConnectionContext], asyncio.Protocol]
                ) -> Callable[[], asyncio.Protocol]:
        """A listener's protocol factory: `make(self)`, or with --client a `ClientSelector` that
        calls `make` with the context of the connection's client, chosen once per connection."""
        if not self._selecting:
            return lambda: make(self)
        from proxy.clientview import ClientSelector

        return lambda: ClientSelector(self, make)

    def context_for(self, ip: IPAddress | None) -> ConnectionContext:
        """The context of a connection from `ip`: its client's, or the server itself."""
        client = self.clients.select(ip)
        if client is None:
            return self
        ctx = self._client_ctx.get(client.name)
        if ctx is None:
            from proxy.clientview import ClientContext

            ctx = self._client_ctx[client.name] = ClientContext(self, client.name)
        return ctx

    async def resolve_parent(self) -> None:
        """Resolve --upstream-proxy's host once, at start; ConfigError if it has no address.
        The parent is the operator's configuration: no allowlist or docs/proxy.md §4 check applies
        to it."""
        parent = self.cfg.upstream_proxy
        if parent is None:
            return
        try:
            self._parent_addresses = (ipaddress.ip_address(parent.host),)
            return
        except ValueError:
            pass
        try:
            self._parent_addresses = await self.resolver.resolve(parent.host)
        except DnsFailure as exc:
            raise ConfigError(f"--upstream-proxy: {exc}") from None

    def add_self(self, host: str, port: int) -> None:
        """Mark (host, port) as one of ours, for `self_connection`."""
        ip = ipaddress.ip_address(host.split("%", 1)[0])
        if ip in _UNSPECIFIED:
            self._self_ports.add(port)
        else:
            self._self_exact.add((ip, port))
        self._known.clear()

    async def close_listeners(self) -> None:
        servers, self._servers = self._servers, []
        for srv in servers:
            srv.close()
        for srv in servers:
            try:
                async with asyncio.timeout(1):
                    await srv.wait_closed()
            except TimeoutError:
                pass

    # -- the connection registry ----------------------------------------------------------

    def admit(self, conn: Registered) -> bool:
        """Register a new connection, or False (answer 503 overloaded) at --max-connections or
        near the file-descriptor limit."""
        n = len(self.connections)
        if n >= self.cfg.max_connections:
            return False
        if 2 * (n + 1) + len(self.pool) + self._fd_floor > self._fd_limit:
            self.pool.clear()  # idle origins first: each holds a descriptor
            if 2 * (n + 1) + self._fd_floor > self._fd_limit:
                self._warn_descriptors(n)
                return False
        self.connections.add(conn)
        return True

    def _warn_descriptors(self, n: int) -> None:
        now = time.monotonic()
        if now - self._fd_warned < FD_WARN_EVERY:
            return
        self._fd_warned = now
        print(f"awf-proxy: {n} connections are near the file-descriptor limit "
              f"({self._fd_limit}, RLIMIT_NOFILE): new clients get 503 overloaded; raise "
              "the limit (ulimit -n) or lower --max-connections", file=sys.stderr, flush=True)

    def release(self, conn: Registered) -> None:
        self.connections.discard(conn)
        if not self.connections:
            self._idle.set()

    def swap(self, old: Registered, new: Registered) -> None:
        self.connections.discard(old)
        self.connections.add(new)

    def log_record(self, rec: Mapping[str, object] | Entry) -> None:
        if self.policy.learn:  # --- learn mode: mark what the allowlist would have denied ---
            rec = self._learned(rec)
        self.log.record(rec)
        if self._debug:
            if isinstance(rec, Entry):
                rec = rec.as_mapping()
            print(
                f"awf-proxy: {rec.get('decision')} {rec.get('method')} {rec.get('host')}:"
                f"{rec.get('port')} {rec.get('status')} {rec.get('reason') or ''}",
                file=sys.stderr,
            )

    def _learned(self, rec: Mapping[str, object] | Entry) -> Mapping[str, object] | Entry:
        """An allowed request's record as learn mode logs it: `would_deny` when the policy let
        it through only because of learn mode (the decision, cached, is asked again)."""
        get = rec.get if not isinstance(rec, Entry) else rec.as_mapping().get
        host, port = get("host"), get("port")
        if get("decision") != "allow" or not isinstance(host, str) or not isinstance(port, int):
            return rec
        scheme = Scheme.HTTPS if learn_scheme_is_tls(rec) else Scheme.HTTP
        would = self.policy.decide(host, port, scheme).would_deny
        return rec if would is None else would_deny_record(rec, would)

    # -- destinations --------------------------------------------------------------------------

    @property
    def healthz_token(self) -> str | None:
        return self.cfg.healthz_token

    def is_self(self, ip: IPAddress, port: int) -> bool:
        v4 = embedded_ipv4(ip) if ip.version == 6 else None
        for candidate in (ip, v4) if v4 is not None else (ip,):
            if (candidate, port) in self._self_exact:
                return True
            if port in self._self_ports and (
                candidate in self._local or candidate.is_loopback or candidate in _UNSPECIFIED
            ):
                return True
        return False

    async def destinations(self, decision: Decision, port: int, *,
                           policy: Policy | None = None) -> tuple[IPAddress, ...]:
        """The checked addresses to dial for an allowed decision (docs/proxy.md §4, §6 order),
        under `policy` (a client's) or the proxy's."""
        if decision.address is not None:  # an allowed IP literal: exempt from docs/proxy.md §4
            if self.is_self(decision.address, port):
                raise SelfConnection(f"{decision.host}:{port} is this proxy")
            return (decision.address,)
        parent = self.cfg.upstream_proxy is not None
        try:
            addresses = await self.resolver.resolve(decision.host)
        except DnsFailure:
            if parent:  # the parent resolves names; ours cannot here (docs/decisions.md)
                return ()
            raise
        return self._checked(decision, port, addresses, policy, parent)

    def known_destinations(self, decision: Decision, port: int, *,
                           policy: Policy | None = None) -> tuple[IPAddress, ...] | None:
        """`destinations` when it needs no wait and the dial goes direct (no --upstream-proxy):
        an IP literal, a static answer or a fresh cached one; None otherwise. Raises as
        `destinations` does."""
        if self.cfg.upstream_proxy is not None:
            return None
        if decision.address is not None:
            if self.is_self(decision.address, port):
                raise SelfConnection(f"{decision.host}:{port} is this proxy")
            return (decision.address,)
        addresses = self.resolver.known(decision.host)
        if addresses is None:
            return None
        policy = self.policy if policy is None else policy
        key = (decision.host, port, id(policy))
        memo = self._known.get(key)
        if memo is not None and memo[0] is addresses and memo[1] is policy:
            return memo[2]  # the same answer checked under the same policy: the same result
        checked = self._checked(decision, port, addresses, policy, False)
        if len(self._known) >= KNOWN_MEMO:
            self._known.clear()
        self._known[key] = (addresses, policy, checked)
        return checked

    def _checked(self, decision: Decision, port: int, addresses: tuple[IPAddress, ...],
                 policy: Policy | None, parent: bool) -> tuple[IPAddress, ...]:
        """The resolved `addresses` that may be dialled (docs/proxy.md §4)."""
        if any(self.is_self(ip, port) for ip in addresses):
            raise SelfConnection(f"{decision.host}:{port} resolves to this proxy")
        policy = self.policy if policy is None else policy
        checked = tuple(ip for ip in addresses if policy.address_allowed(ip))
        if parent and len(checked) < len(addresses):
            # the parent dials whichever address it resolves: one denied answer is enough
            denied = ", ".join(str(ip) for ip in addresses if ip not in checked)
            raise DeniedAddress(f"{decision.host} resolves to denied addresses ({denied})")
        if not checked:
            shown = ", ".join(str(ip) for ip in addresses)
            raise DeniedAddress(f"{decision.host} resolves only to denied addresses ({shown})")
        return checked

    async def dial(
        self, addresses: Sequence[IPAddress], port: int, factory: Callable[[], P], name: str
    ) -> tuple[asyncio.Transport, P]:
        """Connect to the origin, or with --upstream-proxy through the parent: an `Upstream`
        (plain HTTP) is a connection to the parent that sends absolute-URI requests; anything
        else is a tunnel the parent opened with CONNECT name:port."""
        parent = self.cfg.upstream_proxy
        if parent is None:
            return await dial(self.loop, addresses, port, factory,
                              timeout=self.cfg.connect_timeout, name=name)
        loop = self.loop
        timeout = self.cfg.connect_timeout
        began = loop.time()
        shown_host = f"[{parent.host}]" if ":" in parent.host else parent.host
        wanted = factory()
        plain = isinstance(wanted, Upstream)
        if plain:
            cast(Upstream, wanted).parent = parent  # Exchange.begin sends absolute-URI heads
        try:
            t, proto = await dial(loop, self._parent_addresses, parent.port,
                                  (lambda: wanted) if plain else handshake_factory,
                                  timeout=timeout, name=f"the parent proxy {shown_host}")
        except ConnectTimeout as exc:
            raise ParentTimeout(str(exc)) from None
        except ConnectFailed as exc:
            raise ParentFailed(str(exc)) from None
        if plain:
            return t, wanted
        try:
            async with asyncio.timeout(max(0.0, timeout - (loop.time() - began))):
                await handshake(t, proto, parent, name, port, wanted)
        except TimeoutError:
            t.abort()
            raise ParentTimeout(f"the parent proxy {parent.shown} did not answer CONNECT "
                                f"within {timeout:g} s") from None
        except BaseException:
            t.abort()
            raise
        return t, wanted

    # -- health, reload, upkeep ----------------------------------------------------------

    def health(self) -> dict[str, object]:
        clients = {"clients": self.clients.counts()} if self.clients.clients else {}
        return {
            "status": "ok",
            "version": __version__,
            "policy": self.policy.counts(),
            **clients,
            "connections": len(self.connections),
            "pooled_upstreams": len(self.pool),
            "uptime_s": round(time.monotonic() - self.started, 3),
        }

    def reload(self) -> None:
        """SIGHUP: re-read the config file and list files; keep the old policy if invalid."""
        try:
            cfg = merge(self.cfg.flags, self.cfg.config)
            rules = build_rules(cfg)
            policy = rules.policy if rules is not None else build_policy(cfg)
            clients = build_clients(cfg)
            static = static_answers(cfg)
        except ConfigError as exc:
            print(f"awf-proxy: reload rejected: {exc}; the previous policy stays in force",
                  file=sys.stderr, flush=True)
            return
        self.policy = policy
        self.urlrules = rules
        if cfg.clients and not self._selecting:
            print("awf-proxy: reload: --client cannot be added to a proxy started without "
                  "it; the clients take effect at the next start", file=sys.stderr, flush=True)
        self.clients = clients if self._selecting else ClientTable()
        self.pool.clear()
        if self.bumper is not None:
            self.bumper.clear()
        if static != self.resolver.static:  # --resolve or the hosts file changed
            self.resolver = Resolver(static=static, servers=self.cfg.dns_servers)
        else:
            self.resolver.cache_clear()
        # listeners and timeouts cannot change while running; the policy parts can
        self.cfg = replace(self.cfg, allow_domains=cfg.allow_domains,
                           block_domains=cfg.block_domains, allow_ports=cfg.allow_ports,
                           allow_range=cfg.allow_range, resolve=cfg.resolve,
                           hosts_file=cfg.hosts_file,
                           clients=cfg.clients)
        counts = policy.counts()
        print(f"awf-proxy: policy reloaded: {counts.get('allow', 0)} allowed, "
              f"{counts.get('block', 0)} blocked entries", file=sys.stderr, flush=True)

    async def upkeep(self) -> None:
        """Close idle tunnels and stale pooled origins; one timer for the whole proxy."""
        period = max(0.05, self.cfg.idle_timeout / 4)
        while True:
            await asyncio.sleep(period)
            self.pool.sweep()
            if self.bumper is not None:
                self.bumper.sweep()
            for conn in list(self.connections):
                if isinstance(conn, TunnelSide):
                    peer = conn.peer
                    if conn.active or (peer is not None and peer.active):
                        conn.active = False
                        if peer is not None:
                            peer.active = False
                        conn.idle_sweeps = 0
                    else:
                        conn.idle_sweeps += 1
                        if conn.idle_sweeps >= 4:
                            conn.close_both()

    async def drain(self, timeout: float) -> None:
        """Stop accepting, close idle keep-alive clients, let the rest finish (each answer now
        says `Connection: close`), then abort what is left (an exchange aborted is logged)."""
        await self.close_listeners()
        self.draining = True
        for conn in list(self.connections):
            conn.drain()
        self.pool.clear()
        if self.bumper is not None:
            self.bumper.clear()
        if self.connections:
            self._idle.clear()
            try:
                async with asyncio.timeout(timeout):
                    while self.connections:
                        await self._idle.wait()
                        self._idle.clear()
            except TimeoutError:
                pass
        for conn in list(self.connections):
            conn.abort()
        # let the aborted transports run their connection_lost callbacks (and log)
        await asyncio.sleep(0)
