"""The DNS forwarder behind the transparent listener (docs/proxy.md §9, docs/architecture.md §3.3).

The agent's resolv.conf names only this forwarder, so a name the policy denies must never leave
the proxy: denied names get NXDOMAIN with Extended DNS Error 15 "Blocked" (RFC 8914) and no
upstream query is made. Allowed names get A/AAAA answers from the proxy's own Resolver (same
cache the proxy dials from), filtered by docs/proxy.md §4 and with TTL <= max_ttl. Other query types
get an empty NOERROR, again without an upstream query (HTTPS/SVCB records could carry address
hints we do not filter). Malformed queries get REFUSED; packets with the QR bit set or too short
for a header are dropped (never answer an answer: no reflection loops).

Rules for one question (the pure part: parse_query, judge, answer):
* the name is allowed when policy.decide(name, 443, HTTPS) or decide(name, 80, HTTP) allows it,
  or a port-scoped entry (`svc.test:8080`) covers it and no entry blocks it: the port is the
  proxy's to check, on the connection, as for any other name;
* if none of the name's addresses passes policy.address_allowed: NXDOMAIN + EDE 15
  ("denied_address"); if some pass but none of the asked family: empty NOERROR, because an
  NXDOMAIN would deny the name for every type in the client's negative cache (RFC 2308);
* upstream NXDOMAIN -> NXDOMAIN, no addresses -> empty NOERROR, timeout/SERVFAIL -> SERVFAIL;
* EDE needs EDNS: a query without OPT gets a plain NXDOMAIN (RFC 6891 forbids an unsolicited OPT).
* learn mode (policy.learn): a name allowed only by learn mode is answered like an allowed one
  and logged `decision: would_deny` with the reason the allowlist would have given (a failed
  lookup's reason kept as `failure`); its budget base is its last two labels.

Exfiltration budget (screen): a name may carry data to whoever runs an allowed domain's
nameservers, so before any upstream query
* a name with a label over 63 characters or longer than max_name_length (--dns-max-name-length,
  default 100, without the final dot) is REFUSED, reason "name_too_long", allowed or not;
* an allowed name is counted against its base (budget_base: the shortest plain allow entry
  covering it, or for a name allowed only by a *-pattern the parent of the shortest suffix the
  policy allows); once a base has seen subdomain_budget (--dns-subdomain-budget, default 100)
  distinct names first asked in the last 60 s, a new name under it is REFUSED, reason
  "dns_budget", until some of those age out. A name already counted is answered again freely;
  --resolve names are not counted (they never go upstream).

Transport (the edge, DnsForwarder): UDP answers fit the client's EDNS payload (512 without
EDNS, at most 1232) or are truncated with TC so the client retries over TCP. TCP uses 2-byte
length framing (RFC 7766), several queries per connection, answered in order, with a read
timeout and caps on connections and queries per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from proxy.access_log import rfc3339
from proxy.errors import AwfError, ConfigError
from proxy.hostnames import normalise_name
from proxy.policy import Policy, Scheme
from proxy.reasons import Reason
from proxy.resolver import IPAddress, Lookup, Outcome, Resolver

logger = logging.getLogger(__name__)

OUR_PAYLOAD = 1232  # EDNS payload we advertise and the most we send over UDP (DNS flag day 2020)
MAX_UDP_INFLIGHT = 1024  # UDP queries waiting on the resolver; more are dropped (clients retry)
MAX_TCP_CONNECTIONS = 256
MAX_TCP_QUERIES = 1000  # per connection
TCP_IDLE_TIMEOUT = 10.0  # for each query's length + message and each reply's write
CLOSE_TIMEOUT = 2.0

_ADDRESS_TYPES = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}

MAX_LABEL = 63  # RFC 1035 2.3.4
DEFAULT_MAX_NAME_LENGTH = 100  # characters, without the final dot (--dns-max-name-length)
DEFAULT_SUBDOMAIN_BUDGET = 100  # distinct names per base per BUDGET_WINDOW (--dns-subdomain-budget)
BUDGET_WINDOW = 60.0  # seconds
BUDGET_MAX_BASES = 4096  # bases remembered; the oldest is forgotten past it


@dataclass(frozen=True, slots=True)
class Query:
    """One well-formed question. `name` is normalised, or None when it is not a valid hostname."""

    message: dns.message.Message
    name: str | None
    qtype: dns.rdatatype.RdataType

    @property
    def qname_text(self) -> str:
        return self.name if self.name is not None else self.message.question[0].name.to_text()


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the policy says about a question; `local` holds the addresses of a local answer."""

    allowed: bool
    reason: Reason | None = None
    local: tuple[IPAddress, ...] | None = None
    would_deny: Reason | None = None  # learn mode: allowed, but the allowlist would deny it

    def needs_lookup(self, query: Query) -> bool:
        return self.allowed and self.local is None and query.qtype in _ADDRESS_TYPES


@dataclass(frozen=True, slots=True)
class Reply:
    """A response and what to log about it."""

    message: dns.message.Message
    decision: str  # "allow" | "deny" | "would_deny" (learn mode)
    reason: Reason | None
    answers: tuple[str, ...] = ()
    failure: Reason | None = None  # would_deny: the reason the lookup failed, if it did

    @property
    def rcode(self) -> str:
        return dns.rcode.to_text(self.message.rcode())


def parse_query(wire: bytes) -> Query | Reply | None:
    """A question to judge, a REFUSED reply for a malformed query, or None: drop the packet."""
    if len(wire) < 12 or wire[2] & 0x80:  # no full header, or QR set: never answer
        return None
    try:
        message = dns.message.from_wire(wire)
    except Exception:  # untrusted bytes: any parse failure is REFUSED, fail closed
        response = dns.message.Message(id=int.from_bytes(wire[:2], "big"))
        response.flags = dns.flags.QR
        response.set_rcode(dns.rcode.REFUSED)
        return Reply(response, "deny", Reason.BAD_REQUEST)
    if (
        message.opcode() != dns.opcode.QUERY
        or len(message.question) != 1
        or message.question[0].rdclass != dns.rdataclass.IN
        or message.question[0].rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR)
        or (
            dns.rdatatype.is_metatype(message.question[0].rdtype)
            and message.question[0].rdtype != dns.rdatatype.ANY
        )
    ):
        return refuse(message)
    question = message.question[0]
    try:
        name: str | None = normalise_name(question.name.to_text(omit_final_dot=True))
    except (AwfError, ValueError):
        name = None
    return Query(message, name, question.rdtype)


def refuse(message: dns.message.Message, reason: Reason = Reason.BAD_REQUEST) -> Reply:
    response = _response(message)
    response.set_rcode(dns.rcode.REFUSED)
    return Reply(response, "deny", reason)


def name_too_long(query: Query, max_length: int) -> bool:
    """A label over 63 characters or a name over `max_length` (the final dot not counted)."""
    text = query.qname_text.rstrip(".")
    return len(text) > max_length or any(len(label) > MAX_LABEL for label in text.split("."))


def budget_base(name: str, policy: Policy) -> str:
    """The allowed name whose distinct subdomains share one budget: the shortest plain allow
    entry covering `name` (a plain entry covers its subdomains); for a name allowed only by a
    *-pattern, the parent of the shortest suffix the policy allows, so that x1.example.com and
    x2.example.com under *.example.com, or a.x1.example.com and a.x2.example.com, share
    example.com."""
    labels = name.split(".")
    suffixes = [".".join(labels[i:]) for i in range(len(labels) - 1, -1, -1)]  # shortest first
    for suffix in suffixes:
        if suffix in policy.allow_names:
            return suffix
    for suffix in suffixes:
        if policy.allows_name(suffix):
            parent = suffix.partition(".")[2]
            return parent or suffix
    return name


class SubdomainBudget:
    """Distinct names first asked in the last `window` seconds, per base; pure (the caller
    passes the time), bounded (`limit` names per base, `max_bases` bases)."""

    __slots__ = ("_limit", "_max_bases", "_seen", "_window")

    def __init__(self, limit: int, *, window: float = BUDGET_WINDOW,
                 max_bases: int = BUDGET_MAX_BASES) -> None:
        if limit < 1:
            raise ConfigError(f"--dns-subdomain-budget: {limit} is not a positive whole number")
        self._limit = limit
        self._window = window
        self._max_bases = max_bases
        self._seen: OrderedDict[str, OrderedDict[str, float]] = OrderedDict()

    def admit(self, base: str, name: str, now: float) -> bool:
        """True if `name` may be asked: already counted in the window, or `base` has room."""
        names = self._seen.get(base)
        if names is None:
            if len(self._seen) >= self._max_bases:
                self._seen.popitem(last=False)
            names = self._seen[base] = OrderedDict()
        else:
            self._seen.move_to_end(base)
        cutoff = now - self._window
        while names:
            first, at = next(iter(names.items()))
            if at > cutoff:
                break
            del names[first]
        if name in names:
            return True
        if len(names) >= self._limit:
            return False
        names[name] = now
        return True


def screen(query: Query, policy: Policy, local_answers: Mapping[str, Sequence[IPAddress]],
           *, max_name_length: int, budget: SubdomainBudget, now: float) -> Verdict | Reply:
    """judge(), after the exfiltration checks: REFUSED for a name too long (whatever the
    policy says) or for a new allowed name past its base's budget."""
    if name_too_long(query, max_name_length):
        return refuse(query.message, Reason.NAME_TOO_LONG)
    verdict = judge(query, policy, local_answers)
    if verdict.would_deny is not None and query.name is not None:
        base = ".".join(query.name.split(".")[-2:])  # learn mode: no allow entry to count under
    else:
        base = budget_base(query.name, policy) if query.name is not None else ""
    if (verdict.allowed and verdict.local is None and query.name is not None
            and not budget.admit(base, query.name, now)):
        return refuse(query.message, Reason.DNS_BUDGET)
    return verdict


def judge(
    query: Query, policy: Policy, local_answers: Mapping[str, Sequence[IPAddress]]
) -> Verdict:
    """Allowed if the name may be reached over HTTPS or plain HTTP; local names always are; IP
    literals never are (an allowed literal needs no DNS, and asking upstream would leak it)."""
    if query.name is None:
        return Verdict(False, Reason.BAD_REQUEST)
    local = local_answers.get(query.name)
    if local is not None:
        return Verdict(True, None, tuple(local))
    https = policy.decide(query.name, 443, Scheme.HTTPS)
    if https.address is not None:  # "10.0.0.5." or "2130706433.": never a name to look up
        return Verdict(False, Reason.IP_LITERAL)
    if https.allowed and https.would_deny is None:
        return Verdict(True)
    http = policy.decide(query.name, 80, Scheme.HTTP)
    if http.allowed and http.would_deny is None:
        return Verdict(True)
    if https.allowed or http.allowed:  # learn mode
        return Verdict(True, would_deny=https.would_deny or http.would_deny)
    if policy.allows_name(query.name):
        return Verdict(True)  # allowed on its HOST:PORT entry's ports only (checked when dialled)
    return Verdict(False, https.reason or http.reason or Reason.DOMAIN_NOT_ALLOWED)


def answer(
    query: Query,
    verdict: Verdict,
    lookup: Lookup | None,
    *,
    address_allowed: Callable[[IPAddress], bool],
    max_ttl: int,
) -> Reply:
    """The response to a judged question; `lookup` is the Resolver's result when needs_lookup().
    In learn mode an answer allowed only by learn mode is marked `would_deny`."""
    reply = _answer(query, verdict, lookup, address_allowed=address_allowed, max_ttl=max_ttl)
    if verdict.would_deny is None or reply.decision != "allow":
        return reply
    return Reply(reply.message, "would_deny", verdict.would_deny, reply.answers, reply.reason)


def _answer(
    query: Query,
    verdict: Verdict,
    lookup: Lookup | None,
    *,
    address_allowed: Callable[[IPAddress], bool],
    max_ttl: int,
) -> Reply:
    response = _response(query.message)
    family = _ADDRESS_TYPES.get(query.qtype)
    if not verdict.allowed:
        return _blocked(query, response, verdict.reason or Reason.DOMAIN_NOT_ALLOWED)
    if verdict.local is not None:
        ips = [ip for ip in verdict.local if ip.version == family]
        return _addresses(query, response, ips, max_ttl, None)
    if family is None:
        return Reply(response, "allow", None)
    if lookup is None or lookup.outcome in (Outcome.TIMEOUT, Outcome.SERVFAIL):
        response.set_rcode(dns.rcode.SERVFAIL)
        return Reply(response, "allow", Reason.DNS_FAILURE)
    if lookup.outcome is Outcome.NXDOMAIN:
        response.set_rcode(dns.rcode.NXDOMAIN)
        return Reply(response, "allow", Reason.DNS_FAILURE)
    if lookup.outcome is Outcome.NODATA:
        return Reply(response, "allow", Reason.DNS_FAILURE)
    permitted = [ip for ip in lookup.addresses if address_allowed(ip)]
    if not permitted:
        return _blocked(query, response, Reason.DENIED_ADDRESS)
    ttl = max(0, min(max_ttl, int(lookup.ttl)))
    return _addresses(query, response, [ip for ip in permitted if ip.version == family], ttl, None)


def encode(reply: Reply, *, udp: bool) -> bytes:
    """Wire form. Over UDP, an answer too big for the client keeps as many addresses as fit and
    sets TC: a client with TCP fallback asks again over TCP, one without (old musl) still gets
    usable addresses instead of an empty truncated answer."""
    message = reply.message
    if not udp:
        limit = 65535
    elif message.edns < 0 or message.request_payload <= 0:
        limit = 512
    else:
        limit = min(max(message.request_payload, 512), OUR_PAYLOAD)
    try:
        return message.to_wire(max_size=limit)
    except dns.exception.TooBig:
        pass
    if len(message.answer) != 1:
        return message.to_wire(max_size=limit, prefer_truncation=True)
    rrset = message.answer[0]
    rdatas = list(rrset)
    flags = message.flags
    best = message.to_wire(max_size=limit, prefer_truncation=True)  # empty answer with TC
    low, high = 1, len(rdatas) - 1  # binary search for the most addresses that fit
    try:
        message.flags = flags | dns.flags.TC
        while low <= high:  # at most log2(len(rdatas)) renders
            mid = (low + high) // 2
            message.answer = [dns.rrset.from_rdata_list(rrset.name, rrset.ttl, rdatas[:mid])]
            try:
                best = message.to_wire(max_size=limit)
            except dns.exception.TooBig:
                high = mid - 1
            else:
                low = mid + 1
    finally:
        message.flags = flags
        message.answer = [rrset]
    return best


def _response(query: dns.message.Message) -> dns.message.Message:
    return dns.message.make_response(
        query, recursion_available=True, our_payload=OUR_PAYLOAD, pad=0
    )


def _blocked(query: Query, response: dns.message.Message, reason: Reason) -> Reply:
    response.set_rcode(dns.rcode.NXDOMAIN)
    if query.message.edns >= 0:
        ede = dns.edns.EDEOption(dns.edns.EDECode.BLOCKED, str(reason))
        response.use_edns(0, 0, OUR_PAYLOAD, query.message.payload, options=[ede])
    return Reply(response, "deny", reason)


def _addresses(
    query: Query,
    response: dns.message.Message,
    ips: Sequence[IPAddress],
    ttl: int,
    reason: Reason | None,
) -> Reply:
    if ips:
        owner = query.message.question[0].name  # as asked: clients may check 0x20 randomisation
        rrset = dns.rrset.from_text_list(
            owner, ttl, dns.rdataclass.IN, query.qtype, [str(ip) for ip in ips]
        )
        response.answer.append(rrset)
    return Reply(response, "allow", reason, tuple(str(ip) for ip in ips))


def _client_text(addr: Any) -> str:
    try:
        host, port = str(addr[0]), int(addr[1])
    except (TypeError, ValueError, IndexError):
        return str(addr)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _UdpProtocol(asyncio.DatagramProtocol):
    __slots__ = ("_forwarder", "transport")

    def __init__(self, forwarder: DnsForwarder) -> None:
        self._forwarder = forwarder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Neither asyncio's nor uvloop's UDP transport subclasses DatagramTransport at runtime.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.transport is not None:
            self._forwarder._udp_query(self.transport, data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors about clients that went away; nothing to do


class DnsForwarder:
    """Serves DNS over UDP and TCP on one address for the agent, under the live policy."""

    def __init__(
        self,
        *,
        policy_ref: Callable[[], Policy],
        resolver: Resolver | None = None,
        resolver_ref: Callable[[], Resolver] | None = None,
        log: Callable[[Mapping[str, object]], None],
        local_answers: Mapping[str, Sequence[IPAddress]] = {},
        max_ttl: int = 60,
        clock: Callable[[], float] = time.time,
        max_name_length: int = DEFAULT_MAX_NAME_LENGTH,
        subdomain_budget: int = DEFAULT_SUBDOMAIN_BUDGET,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        # resolver_ref follows a resolver that SIGHUP may replace; resolver is a fixed one.
        if (resolver is None) == (resolver_ref is None):
            raise TypeError("DnsForwarder needs exactly one of resolver= and resolver_ref=")
        fixed = resolver
        self._policy_ref = policy_ref
        self._resolver_ref = resolver_ref or (lambda: cast(Resolver, fixed))
        self._log = log
        self._local = {normalise_name(name): tuple(ips) for name, ips in local_answers.items()}
        self._max_ttl = max_ttl
        self._clock = clock
        self._max_name_length = max_name_length
        self._budget = SubdomainBudget(subdomain_budget)
        self._monotonic = monotonic
        self._udp: list[asyncio.DatagramTransport] = []
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tcp_connections = 0
        self._udp_pending = 0
        self._closing = False

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> tuple[str, int]:
        """Bind UDP and TCP on host:port (port 0: one free port for both); ConfigError if not.
        `reuse_port` (--workers) shares the port with the other workers."""
        loop = asyncio.get_running_loop()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        for _attempt in range(20 if port == 0 else 1):
            try:
                udp, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self), local_addr=(host, port),
                    reuse_port=reuse_port or None,
                )
            except OSError as exc:
                raise ConfigError(f"--dns-listen {where}: cannot bind UDP: {exc.strerror}") from exc
            sockname = udp.get_extra_info("sockname")
            bound = (str(sockname[0]), int(sockname[1]))
            try:
                server = await asyncio.start_server(self._tcp_accept, bound[0], bound[1],
                                                    reuse_port=reuse_port or None)
            except OSError as exc:
                udp.close()
                if port == 0 and exc.errno == errno.EADDRINUSE:
                    continue  # the UDP port is taken for TCP: pick another
                raise ConfigError(f"--dns-listen {where}: cannot bind TCP: {exc.strerror}") from exc
            self._udp.append(udp)
            self._servers.append(server)
            return bound
        raise ConfigError(f"--dns-listen {where}: no port free for both UDP and TCP")

    async def close(self) -> None:
        """Stop listening and cancel queries in progress."""
        self._closing = True
        for udp in self._udp:
            udp.close()
        for server in self._servers:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.gather(*tasks, return_exceptions=True)
                for server in self._servers:
                    await server.wait_closed()
        self._udp.clear()
        self._servers.clear()

    # One query, whatever the transport.

    def _prepare(self, wire: bytes) -> tuple[Query, Verdict | Reply] | Reply | None:
        parsed = parse_query(wire)
        if not isinstance(parsed, Query):
            return parsed
        return parsed, screen(parsed, self._policy_ref(), self._local,
                              max_name_length=self._max_name_length, budget=self._budget,
                              now=self._monotonic())

    async def _finish(self, query: Query, verdict: Verdict) -> Reply:
        lookup = None
        if verdict.needs_lookup(query) and query.name is not None:
            lookup = await self._resolver_ref().lookup(query.name)
        # Read the policy again: a SIGHUP during the lookup must not let a stale allow through.
        policy = self._policy_ref()
        if lookup is not None:
            verdict = judge(query, policy, self._local)
        return answer(
            query, verdict, lookup, address_allowed=policy.address_allowed, max_ttl=self._max_ttl
        )

    def _record(self, client: Any, query: Query | None, reply: Reply) -> None:
        self._log(
            {
                "ts": rfc3339(self._clock()),
                "client": _client_text(client),
                "qname": query.qname_text if query is not None else None,
                "qtype": dns.rdatatype.to_text(query.qtype) if query is not None else None,
                "decision": reply.decision,
                "reason": reply.reason,
                "rcode": reply.rcode,
                "answers": list(reply.answers),
                **({"failure": reply.failure} if reply.failure is not None else {}),
            }
        )

    async def _handle(self, wire: bytes, client: Any) -> Reply | None:
        prepared = self._prepare(wire)
        if prepared is None or isinstance(prepared, Reply):
            if prepared is not None:
                self._record(client, None, prepared)
            return prepared
        query, verdict = prepared
        if isinstance(verdict, Reply):
            self._record(client, query, verdict)
            return verdict
        reply = (
            await self._finish(query, verdict)
            if verdict.needs_lookup(query)
            else answer(
                query,
                verdict,
                None,
                address_allowed=self._policy_ref().address_allowed,
                max_ttl=self._max_ttl,
            )
        )
        self._record(client, query, reply)
        return reply

    # UDP: answer at once unless the resolver is needed, then in a task.

    def _udp_query(self, transport: asyncio.DatagramTransport, wire: bytes, client: Any) -> None:
        if self._closing:
            return
        try:
            prepared = self._prepare(wire)
            if prepared is None:
                return
            if isinstance(prepared, Reply):
                self._record(client, None, prepared)
                transport.sendto(encode(prepared, udp=True), client)
                return
            query, verdict = prepared
            if isinstance(verdict, Reply):
                self._record(client, query, verdict)
                transport.sendto(encode(verdict, udp=True), client)
                return
            if not verdict.needs_lookup(query):
                reply = answer(
                    query,
                    verdict,
                    None,
                    address_allowed=self._policy_ref().address_allowed,
                    max_ttl=self._max_ttl,
                )
                self._record(client, query, reply)
                transport.sendto(encode(reply, udp=True), client)
                return
        except Exception:
            logger.exception("DNS query from %s failed; dropped", _client_text(client))
            return
        if self._udp_pending >= MAX_UDP_INFLIGHT:
            return  # overloaded: drop, the client retries
        self._udp_pending += 1
        self._spawn(self._udp_lookup(transport, query, verdict, client))

    async def _udp_lookup(
        self, transport: asyncio.DatagramTransport, query: Query, verdict: Verdict, client: Any
    ) -> None:
        try:
            reply = await self._finish(query, verdict)
            self._record(client, query, reply)
            if not transport.is_closing():
                transport.sendto(encode(reply, udp=True), client)
        except Exception:
            logger.exception("DNS query from %s failed; dropped", _client_text(client))
        finally:
            self._udp_pending -= 1

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # TCP: RFC 7766 framing, queries answered in order.

    def _tcp_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Our own task rather than a coroutine callback: in Python 3.11 asyncio's done-callback for
        # a cancelled client_connected_cb coroutine raises CancelledError into the loop.
        if self._closing or self._tcp_connections >= MAX_TCP_CONNECTIONS:
            writer.close()
            return
        self._tcp_connections += 1
        self._spawn(self._tcp_connection(reader, writer))

    async def _tcp_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        client = writer.get_extra_info("peername")
        try:
            for _ in range(MAX_TCP_QUERIES):
                try:
                    async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                        size = int.from_bytes(await reader.readexactly(2), "big")
                        wire = await reader.readexactly(size)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return
                reply = await self._handle(wire, client)
                if reply is None:
                    return
                data = encode(reply, udp=False)
                writer.write(len(data).to_bytes(2, "big") + data)
                try:
                    async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                        await writer.drain()
                except (TimeoutError, ConnectionError):
                    return
        except Exception:
            logger.exception("DNS connection from %s failed; closed", _client_text(client))
        finally:
            self._tcp_connections -= 1
            writer.close()
