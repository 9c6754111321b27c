"""The proxy's own name resolution: static `--resolve` answers, then DNS.

The proxy resolves a name once and dials only addresses it has checked (contract §4), so this module
only returns addresses; callers filter them. The DNS forwarder shares this resolver and its cache.

Algorithm:
* Static entries (`--resolve NAME=IP`) win and never touch DNS.
* Otherwise A and AAAA are queried concurrently with dnspython (absolute names: no search list);
  the result is the A answers then the AAAA answers, deduplicated in order.
* Positive results are cached for min(answer TTL, max_ttl), where the answer TTL is the smallest
  TTL along any CNAME chain. NXDOMAIN and "no addresses" are cached for NEGATIVE_TTL seconds
  (RFC 2308 negative caching, shortened). Timeouts and server failures are not cached, so a
  flapping upstream recovers at once, but concurrent callers still share one lookup.
* Single-flight: concurrent lookups of one name share one task. The task outlives a cancelled
  caller (the others still wait on it) and is bounded by the resolver timeout.
* When one family fails transiently and the other answers, the answers are returned but cached
  only for NEGATIVE_TTL, so the missing family is retried soon.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from proxy.errors import ConfigError, DnsFailure
from proxy.resolve_flags import parse_dns_servers, parse_ip_text, parse_resolve

__all__ = ["Lookup", "Outcome", "Resolver", "parse_dns_servers", "parse_resolve"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

NEGATIVE_TTL = 5.0
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
            try:
                self._dns = dns.asyncresolver.Resolver(configure=True)
            except dns.exception.DNSException as exc:
                raise ConfigError(
                    f"cannot use the system resolver ({exc}); pass --dns-servers"
                ) from exc
        else:
            if not servers:
                raise ConfigError("--dns-servers: no servers given")
            self._dns = dns.asyncresolver.Resolver(configure=False)
            self._dns.nameservers = [dns.nameserver.Do53Nameserver(h, p) for h, p in servers]
        self._dns.cache = None
        # One attempt per server may take at most 2 s, so a dead first server leaves time for the
        # next one; the whole lookup is bounded by `timeout`.
        self._dns.timeout = min(2.0, timeout)
        self._dns.lifetime = timeout

    def cache_clear(self) -> None:
        self._cache.clear()

    async def resolve(self, name: str) -> tuple[IPAddress, ...]:
        """Addresses for a normalised name, A first; DNS problems raise DnsFailure, nothing else."""
        result = await self.lookup(name)
        if result.outcome is not Outcome.OK:
            raise result.failure()
        return result.addresses

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
        try:
            async with asyncio.timeout(self._timeout + 1.0):
                v4, v6 = await asyncio.gather(
                    self._query(qname, dns.rdatatype.A), self._query(qname, dns.rdatatype.AAAA)
                )
        except TimeoutError:
            v4 = v6 = _Family(Outcome.TIMEOUT)
        result, cache_for = _combine(name, v4, v6, self._max_ttl)
        if cache_for > 0:
            self._store(name, result, self._clock() + cache_for)
        return result

    async def _query(self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> _Family:
        try:
            answer = await self._dns.resolve(
                qname, rdtype, dns.rdataclass.IN, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN:
            return _Family(Outcome.NXDOMAIN)
        except dns.exception.Timeout:
            return _Family(Outcome.TIMEOUT)
        except (dns.exception.DNSException, OSError, ValueError):
            # NoNameservers (every server said SERVFAIL/REFUSED or failed), YXDOMAIN, bad replies.
            return _Family(Outcome.SERVFAIL)
        if answer.rrset is None:
            return _Family(Outcome.NODATA)
        ips: list[IPAddress] = []
        for rdata in answer.rrset:
            ip = parse_ip_text(str(rdata.address))
            if ip is not None:
                ips.append(ip)
        if not ips:
            return _Family(Outcome.NODATA)
        return _Family(Outcome.OK, tuple(ips), float(answer.chaining_result.minimum_ttl))

    def _store(self, name: str, lookup: Lookup, expires: float) -> None:
        self._cache.pop(name, None)
        if len(self._cache) >= MAX_CACHE_ENTRIES:
            now = self._clock()
            for key in [k for k, e in self._cache.items() if e.expires <= now]:
                del self._cache[key]
            while len(self._cache) >= MAX_CACHE_ENTRIES:
                del self._cache[next(iter(self._cache))]  # oldest insertion first
        self._cache[name] = _Entry(lookup, expires)


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
            negative = outcome is Outcome.NXDOMAIN
            return Lookup(name, outcome, (), NEGATIVE_TTL if negative else 0.0), (
                NEGATIVE_TTL if negative else 0.0
            )
    return Lookup(name, Outcome.NODATA, (), NEGATIVE_TTL), NEGATIVE_TTL
