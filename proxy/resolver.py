"""The proxy's own name resolution: static `--resolve` answers, the hosts file, then DNS.

The proxy resolves a name once and dials only addresses it has checked (docs/proxy.md §4), so this
module only returns addresses; callers filter them. The DNS forwarder shares this resolver and its
cache.

Algorithm:
* Static answers win and never touch DNS: `--resolve` entries, then the hosts file's (a name in
  either is answered from there only, as the system resolver does with /etc/hosts).
* Otherwise A and AAAA are queried concurrently (absolute names: no search list); the result is
  the A answers then the AAAA answers, deduplicated in order. Each query tries the servers in
  order over a connected UDP socket, so a server that refuses (ICMP port unreachable) is skipped
  at once instead of costing a timeout; one attempt takes at most 2 s, a truncated answer is
  asked again over TCP, and the whole lookup is bounded by the resolver timeout.
* Positive results are cached for min(answer TTL, max_ttl), where the answer TTL is the smallest
  TTL along any CNAME chain. NXDOMAIN and "no addresses" are cached for NEGATIVE_TTL seconds
  (RFC 2308 negative caching, shortened). Timeouts and server failures are cached for
  FAILURE_TTL seconds only: long enough that a burst of requests to a name whose DNS is down
  fails fast, short enough that a flapping upstream recovers at once.
* Single-flight: concurrent lookups of one name share one task. The task outlives a cancelled
  caller (the others still wait on it) and is bounded by the resolver timeout.
* When one family fails transiently and the other answers, the answers are returned but cached
  only for NEGATIVE_TTL, so the missing family is retried soon.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from proxy.errors import ConfigError, DnsFailure
from proxy.resolve_flags import parse_dns_servers, parse_ip_text, parse_resolve

__all__ = ["Lookup", "Outcome", "Resolver", "parse_dns_servers", "parse_resolve"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

NEGATIVE_TTL = 5.0
FAILURE_TTL = 2.0
ATTEMPT_TIMEOUT = 2.0  # one query to one server; a dead first server leaves time for the next
MAX_CACHE_ENTRIES = 10_000


class Outcome(StrEnum):
    """How a lookup ended; only OK carries addresses."""

    OK = "ok"
    NXDOMAIN = "NXDOMAIN"
    NODATA = "no addresses"
    TIMEOUT = "timeout"
    SERVFAIL = "SERVFAIL"


@dataclass(frozen=True, slots=True)
class Lookup:
    """The result of resolving one name. `ttl` is what remains of its validity, in seconds."""

    name: str
    outcome: Outcome
    addresses: tuple[IPAddress, ...] = ()
    ttl: float = 0.0

    def failure(self) -> DnsFailure:
        return DnsFailure(f"cannot resolve {self.name!r}: {self.outcome.value}")


@dataclass(frozen=True, slots=True)
class _Family:
    """The answer to one query type."""

    outcome: Outcome
    addresses: tuple[IPAddress, ...] = ()
    ttl: float = 0.0


@dataclass(frozen=True, slots=True)
class _Entry:
    lookup: Lookup
    expires: float


class Resolver:
    """Resolves names to addresses with static entries, a TTL-bounded cache and single-flight."""

    def __init__(
        self,
        *,
        static: Mapping[str, Sequence[IPAddress]] = {},
        servers: Sequence[tuple[str, int]] | None = None,
        timeout: float = 5.0,
        max_ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._static = {name: tuple(dict.fromkeys(ips)) for name, ips in static.items() if ips}
        self._timeout = timeout
        self._max_ttl = max_ttl
        self._clock = clock
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Task[Lookup]] = {}
        if servers is None:
            servers = system_servers()
        elif not servers:
            raise ConfigError("--dns-servers: no servers given")
        self._servers = tuple(servers)

    @property
    def static(self) -> Mapping[str, tuple[IPAddress, ...]]:
        return self._static

    def cache_clear(self) -> None:
        self._cache.clear()

    async def resolve(self, name: str) -> tuple[IPAddress, ...]:
        """Addresses for a normalised name, A first; DNS problems raise DnsFailure, nothing else."""
        result = await self.lookup(name)
        if result.outcome is not Outcome.OK:
            raise result.failure()
        return result.addresses

    def known(self, name: str) -> tuple[IPAddress, ...] | None:
        """The addresses resolve() would return at once (a static answer, or a fresh cached
        success), without a coroutine; None when it would have to ask (or would raise)."""
        static = self._static.get(name)
        if static is not None:
            return static
        entry = self._cache.get(name)
        if entry is not None and entry.lookup.outcome is Outcome.OK and (
            self._clock() < entry.expires
        ):
            return entry.lookup.addresses
        return None

    async def lookup(self, name: str) -> Lookup:
        """Like resolve(), but returns the outcome and remaining TTL instead of raising."""
        static = self._static.get(name)
        if static is not None:
            return Lookup(name, Outcome.OK, static, self._max_ttl)
        now = self._clock()
        entry = self._cache.get(name)
        if entry is not None:
            if now < entry.expires:
                return _with_ttl(entry.lookup, entry.expires - now)
            del self._cache[name]
        task = self._inflight.get(name)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch(name), name=f"resolve {name}")
            self._inflight[name] = task
            task.add_done_callback(functools.partial(self._forget, name))
        # shield: a cancelled caller must not cancel the lookup other callers share.
        return await asyncio.shield(task)

    def _forget(self, name: str, task: asyncio.Task[Lookup]) -> None:
        if self._inflight.get(name) is task:
            del self._inflight[name]

    async def _fetch(self, name: str) -> Lookup:
        try:
            qname = dns.name.from_text(name)
        except dns.exception.DNSException:
            return Lookup(name, Outcome.NXDOMAIN)
        deadline = self._clock() + self._timeout
        try:
            async with asyncio.timeout(self._timeout + 1.0):
                v4, v6 = await asyncio.gather(
                    self._query(qname, dns.rdatatype.A, deadline),
                    self._query(qname, dns.rdatatype.AAAA, deadline),
                )
        except TimeoutError:
            v4 = v6 = _Family(Outcome.TIMEOUT)
        result, cache_for = _combine(name, v4, v6, self._max_ttl)
        if cache_for > 0:
            self._store(name, result, self._clock() + cache_for)
        return result

    async def _query(
        self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, deadline: float
    ) -> _Family:
        """Ask the servers in order until one answers; refusing servers are dropped at once."""
        query = dns.message.make_query(qname, rdtype, dns.rdataclass.IN)
        query.flags |= dns.flags.RD
        waiting = list(self._servers)  # servers that may still answer (timed out, not refused)
        outcome = Outcome.SERVFAIL
        while waiting:
            for server in list(waiting):
                left = min(ATTEMPT_TIMEOUT, deadline - self._clock())
                if left <= 0:
                    return _Family(Outcome.TIMEOUT)
                try:
                    response = await _ask(query, server, left)
                except TimeoutError:
                    outcome = Outcome.TIMEOUT
                    continue
                except (OSError, EOFError, dns.exception.DNSException, ValueError):
                    waiting.remove(server)  # refused, unreachable or a bad reply
                    continue
                family = _family(response)
                if family is None:  # SERVFAIL, REFUSED, ...: this server cannot help
                    waiting.remove(server)
                    continue
                return family
            if outcome is not Outcome.TIMEOUT:
                break
        return _Family(outcome)

    def _store(self, name: str, lookup: Lookup, expires: float) -> None:
        self._cache.pop(name, None)
        if len(self._cache) >= MAX_CACHE_ENTRIES:
            now = self._clock()
            for key in [k for k, e in self._cache.items() if e.expires <= now]:
                del self._cache[key]
            while len(self._cache) >= MAX_CACHE_ENTRIES:
                del self._cache[next(iter(self._cache))]  # oldest insertion first
        self._cache[name] = _Entry(lookup, expires)


def system_servers() -> tuple[tuple[str, int], ...]:
    """The system's resolvers, from /etc/resolv.conf."""
    try:
        conf = dns.resolver.Resolver(configure=True)
    except dns.exception.DNSException as exc:
        raise ConfigError(f"cannot use the system resolver ({exc}); pass --dns-servers") from exc
    servers = tuple((str(ns), conf.nameserver_ports.get(str(ns), conf.port))
                    for ns in conf.nameservers)
    if not servers:
        raise ConfigError("the system resolver lists no nameserver; pass --dns-servers")
    return servers


class _OneAnswer(asyncio.DatagramProtocol):
    """Receives the reply to one query on a connected UDP socket; ICMP errors end it at once."""

    def __init__(self, answer: asyncio.Future[bytes], query_id: bytes) -> None:
        self._answer, self._id = answer, query_id

    def datagram_received(self, data: bytes, addr: object) -> None:
        if data[:2] == self._id and not self._answer.done():
            self._answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self._answer.done():
            self._answer.set_exception(exc)


async def _ask(
    query: dns.message.Message, server: tuple[str, int], timeout: float
) -> dns.message.Message:
    """One query to one server: UDP, then TCP if the answer was truncated."""
    loop = asyncio.get_running_loop()
    wire = query.to_wire()
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    answer: asyncio.Future[bytes] = loop.create_future()
    async with asyncio.timeout(timeout):
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _OneAnswer(answer, wire[:2]), remote_addr=server, family=family)
        try:
            transport.sendto(wire)
            data = await answer
        finally:
            transport.close()
        response = dns.message.from_wire(data, ignore_trailing=True)
        if not query.is_response(response):
            raise ValueError("the reply does not answer the query")
        if response.flags & dns.flags.TC:
            response = await dns.asyncquery.tcp(query, server[0], timeout=timeout, port=server[1])
    return response


def _family(response: dns.message.Message) -> _Family | None:
    """The addresses in a response; None when the server could not answer (SERVFAIL, REFUSED)."""
    rcode = response.rcode()
    if not isinstance(response, dns.message.QueryMessage):
        return None
    if rcode == dns.rcode.NXDOMAIN:
        return _Family(Outcome.NXDOMAIN)
    if rcode != dns.rcode.NOERROR:
        return None
    try:
        chain = response.resolve_chaining()
    except dns.exception.DNSException:
        return None
    if chain.answer is None:
        return _Family(Outcome.NODATA)
    ips: list[IPAddress] = []
    for rdata in chain.answer:
        ip = parse_ip_text(str(rdata.address))
        if ip is not None:
            ips.append(ip)
    if not ips:
        return _Family(Outcome.NODATA)
    return _Family(Outcome.OK, tuple(ips), float(chain.minimum_ttl))


def _with_ttl(lookup: Lookup, ttl: float) -> Lookup:
    return Lookup(lookup.name, lookup.outcome, lookup.addresses, ttl)


def _combine(name: str, v4: _Family, v6: _Family, max_ttl: float) -> tuple[Lookup, float]:
    """Merge the A and AAAA answers; returns the lookup and how long to cache it (0: not at all)."""
    addresses = tuple(dict.fromkeys(v4.addresses + v6.addresses))
    if addresses:
        ttl = min([f.ttl for f in (v4, v6) if f.outcome is Outcome.OK] + [max_ttl])
        transient = {v4.outcome, v6.outcome} & {Outcome.TIMEOUT, Outcome.SERVFAIL}
        cache_for = min(ttl, NEGATIVE_TTL) if transient else ttl
        return Lookup(name, Outcome.OK, addresses, cache_for), cache_for
    outcomes = {v4.outcome, v6.outcome}
    for outcome in (Outcome.NXDOMAIN, Outcome.SERVFAIL, Outcome.TIMEOUT):
        if outcome in outcomes:
            ttl = NEGATIVE_TTL if outcome is Outcome.NXDOMAIN else FAILURE_TTL
            return Lookup(name, outcome, (), ttl), ttl
    return Lookup(name, Outcome.NODATA, (), NEGATIVE_TTL), NEGATIVE_TTL
