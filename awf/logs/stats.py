"""The true count of a run: outcomes, not just decisions. Pure: records in, `Counts` out.

A proxy record (`access.jsonl`, docs/proxy.md §7) has one of four outcomes:

* **answered**: `decision: allow`, `reason: null`: the policy let it through and it completed;
* **failed**: `decision: allow` with a reason (`dns_failure`, `connect_failed`, ...): the policy
  let it through and the request then failed upstream;
* **denied**: `decision: deny`;
* **would_deny**: `decision: would_deny`, written by a learn mode: the allowlist would have denied
  it (it is counted apart: it did not stop the run).

Beside them: the DNS forwarder's answers (`dns.jsonl`: `deny` is a refused name; `would_deny`,
from a learn mode, an answered name the allowlist would have refused) and the
network layer's drops (`l3-drops.json`). The self-test's probes are left out of every count:
records marked `"selftest": true`, records for `netfilter.selftest.NAME` (and for the Docker
keeper's readiness query, `KEEPER_WAIT_NAME`), and the drops of the self-test's own probes
(TCP/22 and UDP/53 to its TEST-NET addresses).

`count()` is the function to call; `Tally` is the same thing fed one record at a time (the CLI
streams a file through it, so memory is bounded by the number of distinct hosts, which is capped
at `MAX_HOSTS`: past it, new hosts are counted under `OTHER_HOSTS`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from operator import itemgetter
from typing import Annotated, Any

import msgspec

from netfilter.selftest import NAME as SELFTEST_NAME
from netfilter.selftest import PROBE_V4, PROBE_V6

TIMES = "\u00d7"  # the multiplication sign, as in "tcp/22 x3"
# the Docker keeper's readiness query to the DNS forwarder (containers/keeper.py, a literal
# there): like the self-test's, not the command's
KEEPER_WAIT_NAME = "awf-.wait.invalid"
INTERNAL_NAMES = frozenset({SELFTEST_NAME, KEEPER_WAIT_NAME})
MAX_HOSTS = 10_000
# the fields of a proxy record that the count reads, fetched in one call on the hot path
_FIELDS = itemgetter("ts", "client", "host", "port", "decision", "reason", "bytes_up",
                     "bytes_down")
# orjson reads an integer outside [-2**63, 2**64) as a float, which `Tally.add` does not add up:
# the typed way (`ProxyFields`) takes only what both read alike
_INT_MAX = (1 << 63) - 1
_Count = Annotated[int, msgspec.Meta(ge=0, le=_INT_MAX)]
# what decoding a line as ProxyFields may raise (DecodeError: not JSON, or not ProxyFields);
# RecursionError: nested too deep
_DECODE_ERRORS = (msgspec.DecodeError, RecursionError)
OTHER_HOSTS = "(other hosts)"
MAX_NAMES = 10_000  # distinct refused DNS names kept
MAX_ADDRESSES = 1_000  # distinct client addresses kept
# the self-test's probes that the agent table refuses (netfilter/selftest.py: ssh_refused,
# udp_fails): never a real destination, so their drops are the self-test's own
SELFTEST_DROPS = frozenset((addr, proto, port) for addr in (PROBE_V4, PROBE_V6)
                           for proto, port in (("tcp", 22), ("udp", 53)))


class ProxyFields(msgspec.Struct, gc=False):
    """The fields of a proxy record that the count reads, as msgspec decodes them straight from
    a line (`Tally.add_lines`): 0.6 of the time orjson takes for a whole dict, checked in C. A
    line that does not fit (a field missing or of another type, a number past `_INT_MAX`, a
    `selftest` or `client_name` mark: those must be absent) is read as a dict and goes through
    `Tally.add`."""

    ts: str
    client: str
    host: str
    port: _Count
    decision: str
    reason: str | None
    bytes_up: _Count
    bytes_down: _Count
    selftest: msgspec.UnsetType = msgspec.UNSET
    client_name: msgspec.UnsetType = msgspec.UNSET


class Outcome(StrEnum):
    ANSWERED = "answered"
    FAILED = "failed"
    DENIED = "denied"
    WOULD_DENY = "would_deny"


def outcome(rec: Mapping[str, Any]) -> Outcome | None:
    """The outcome of one proxy record; None when its decision is not one we know."""
    decision = rec.get("decision")
    if decision == "allow":
        return Outcome.ANSWERED if rec.get("reason") is None else Outcome.FAILED
    if decision == "deny":
        return Outcome.DENIED
    if decision == "would_deny":
        return Outcome.WOULD_DENY
    return None


def is_selftest(rec: Mapping[str, Any]) -> bool:
    """The self-test's own record: marked, or for its name (proxy or DNS record)."""
    return (rec.get("selftest") is True or rec.get("host") in INTERNAL_NAMES
            or rec.get("qname") in INTERNAL_NAMES)


def client_address(client: object) -> str:
    """`ip:port` or `[ip]:port` → `ip`; anything else as text."""
    text = client if isinstance(client, str) else ""
    if text.startswith("["):
        return text[1:text.find("]")] if "]" in text else text
    host, sep, port = text.rpartition(":")
    return host if sep and port.isdigit() and ":" not in host else text


def client_kind(rec: Mapping[str, Any], api_proxy: frozenset[str] = frozenset()) -> str:
    """`agent` or `api-proxy`: the record's own `client_name` when it has one, else by address
    (`api_proxy` holds the API-proxy sidecar's addresses, from run.json)."""
    name = rec.get("client_name")
    if name in ("agent", "api-proxy"):
        return str(name)
    return "api-proxy" if api_proxy and client_address(rec.get("client")) in api_proxy else "agent"


def host_port(host: str, port: object) -> str:
    shown = f"[{host}]" if ":" in host else (host or "?")
    return f"{shown}:{port}"


@dataclass(slots=True)
class HostCount:
    host: str
    answered: int = 0
    failed: int = 0
    denied: int = 0
    would_deny: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # denial reasons
    failures: dict[str, int] = field(default_factory=dict)  # allowed-but-failed reasons
    bytes_up: int = 0
    bytes_down: int = 0

    @property
    def allowed(self) -> int:
        return self.answered + self.failed

    @property
    def requests(self) -> int:
        return self.answered + self.failed + self.denied + self.would_deny

    def to_json(self) -> dict[str, object]:
        return {"host": self.host, "requests": self.requests, "allowed": self.allowed,
                "answered": self.answered, "failed": self.failed, "denied": self.denied,
                "would_deny": self.would_deny, "reasons": dict(sorted(self.reasons.items())),
                "failures": dict(sorted(self.failures.items())),
                "bytes_up": self.bytes_up, "bytes_down": self.bytes_down}


@dataclass(frozen=True, slots=True)
class Drop:
    dst: str
    proto: str
    port: int | None
    count: int

    def __str__(self) -> str:
        where = self.proto if self.port is None else f"{self.proto}/{self.port}"
        return f"{self.dst} {where} {TIMES}{self.count}"


@dataclass(slots=True)
class Counts:
    """What a run did. `requests` = answered + failed + denied + would_deny."""

    requests: int = 0
    answered: int = 0
    failed: int = 0
    denied: int = 0
    would_deny: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # reason -> allowed but failed
    denials: dict[str, int] = field(default_factory=dict)  # reason -> denied (and would_deny)
    hosts: dict[str, HostCount] = field(default_factory=dict)
    # (host, port, reason) -> n, for every denied or failed request
    targets: dict[tuple[str, int, str], int] = field(default_factory=dict)
    would_targets: set[tuple[str, int, str]] = field(default_factory=set)  # learn mode's
    denied_names: dict[str, str] = field(default_factory=dict)  # name -> reason (proxy)
    would_deny_names: set[str] = field(default_factory=set)
    allowed_names: set[str] = field(default_factory=set)  # names the policy let through
    bytes_up: int = 0
    bytes_down: int = 0
    first: str | None = None  # ts of the earliest record (RFC 3339)
    last: str | None = None
    clients: dict[str, int] = field(default_factory=dict)  # agent / api-proxy -> requests
    addresses: dict[str, int] = field(default_factory=dict)  # client ip -> requests
    unknown: int = 0  # proxy records whose decision is not known
    dns_queries: int = 0
    dns_allowed: int = 0
    dns_refused: int = 0
    dns_failed: int = 0  # allowed names that did not resolve (dns_failure)
    dns_refused_names: dict[str, str] = field(default_factory=dict)  # name -> reason
    dns_allowed_names: set[str] = field(default_factory=set)
    dns_would_deny: int = 0  # learn mode: answered, but the allowlist would have refused
    dns_would_deny_names: set[str] = field(default_factory=set)
    drops: list[Drop] = field(default_factory=list)
    selftest: int = 0  # records and drops left out as the self-test's
    malformed: int = 0  # lines the reader skipped (set by the reader, not by count())

    @property
    def allowed(self) -> int:
        return self.answered + self.failed

    @property
    def dropped(self) -> int:
        return sum(d.count for d in self.drops)

    def to_json(self) -> dict[str, object]:
        return {
            "requests": self.requests, "allowed": self.allowed, "answered": self.answered,
            "failed": self.failed, "denied": self.denied, "would_deny": self.would_deny,
            "failures": dict(sorted(self.failures.items())),
            "denials": dict(sorted(self.denials.items())),
            "bytes_up": self.bytes_up, "bytes_down": self.bytes_down,
            "time": {"first": self.first, "last": self.last},
            "clients": dict(sorted(self.clients.items())),
            "addresses": dict(sorted(self.addresses.items(), key=lambda kv: (-kv[1], kv[0]))),
            "hosts": [h.to_json() for h in sorted_hosts(self)],
            "denied_targets": [{"host": h, "port": p, "reason": r, "count": n}
                               for (h, p, r), n in sorted(self.targets.items())],
            "dns": {"queries": self.dns_queries, "allowed": self.dns_allowed,
                    "refused": self.dns_refused, "failed": self.dns_failed,
                    "would_deny": self.dns_would_deny,
                    "refused_names": dict(sorted(self.dns_refused_names.items()))},
            "network_drops": {"packets": self.dropped,
                              "destinations": [{"dst": d.dst, "proto": d.proto, "port": d.port,
                                                "count": d.count} for d in self.drops]},
            "unknown": self.unknown, "selftest_excluded": self.selftest,
            "malformed": self.malformed,
        }

    def summary_line(self) -> str:
        """`14 requests: 11 allowed (1 failed upstream), 3 denied`, then DNS and drops; the API
        proxy sidecar's own requests, when there are any, are named after the count."""
        n = self.requests
        text = f"{n} request{'s' if n != 1 else ''}"
        sidecar = self.clients.get("api-proxy", 0)
        if sidecar:  # the API proxy's own egress, through the same proxy (docs/api-proxy.md)
            text += f" ({sidecar} by the API proxy)"
        text += f": {self.allowed} allowed"
        if self.failed:
            text += f" ({self.failed} failed upstream)"
        text += f", {self.denied} denied"
        if self.would_deny:
            text += f", {self.would_deny} would be denied"
        if self.dns_refused:
            text += f" · {self.dns_refused} DNS name{'s' if self.dns_refused != 1 else ''} refused"
        if self.dropped:
            text += (f" · {self.dropped} network-layer drop"
                     f"{'s' if self.dropped != 1 else ''}")
        return text


def sorted_hosts(counts: Counts) -> list[HostCount]:
    """Most allowed first, then most denied, then by name."""
    return sorted(counts.hosts.values(), key=lambda h: (-h.allowed, -h.denied - h.would_deny,
                                                        h.host))


def _bump(d: dict[str, int], key: str, n: int = 1) -> None:
    d[key] = d.get(key, 0) + n


def _int(v: object) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


class Tally:
    """`count()` one record at a time. `add` keeps only a small key per record; `result()` builds
    the `Counts`."""

    def __init__(self, api_proxy: frozenset[str] = frozenset()) -> None:
        self.api_proxy = self._api = api_proxy
        # (host, port, decision, reason, client ip, client kind) -> [n, bytes_up, bytes_down]
        self._keys: dict[tuple[str, int, str, str | None, str, str], list[int]] = {}
        self._hosts: set[str] = set()
        self._first: str | None = None
        self._last: str | None = None
        self._dns = Counts()
        self._selftest = 0
        self._drops: dict[tuple[str, str, int | None], int] = {}

    def add(self, rec: Mapping[str, Any]) -> None:
        """One proxy record (access.jsonl). The hot path of `awf logs stats`: a record as the
        proxy writes it takes the short way; anything else goes through `_add_general`."""
        try:
            ts, client, host, port, decision, reason, up, down = _FIELDS(rec)
        except (KeyError, TypeError):
            self._add_general(rec)
            return
        if (ts.__class__ is not str or client.__class__ is not str or host.__class__ is not str
                or port.__class__ is not int or decision.__class__ is not str
                or up.__class__ is not int or down.__class__ is not int
                or not (reason is None or reason.__class__ is str)
                or "selftest" in rec or "client_name" in rec or self._api
                or host in INTERNAL_NAMES or host not in self._hosts):
            self._add_general(rec)
            return
        if self._first is None or ts < self._first:
            self._first = ts
        if self._last is None or ts > self._last:
            self._last = ts
        address = client.rpartition(":")[0]  # "[v6]" keeps its brackets: see result()
        key = (host, port, decision, reason, address, "agent")
        slot = self._keys.get(key)
        if slot is None or not address:
            self._add_general(rec)
            return
        slot[0] += 1
        slot[1] += up
        slot[2] += down

    def add_lines(self, lines: Iterable[bytes], parse: Callable[[bytes], dict[str, Any] | None],
                  decode: Callable[[bytes], ProxyFields] | None = None) -> list[int]:
        """Count the lines of an access log: the hot path of `awf logs stats` on a big file.
        Returns the indexes (from 0) of the lines that are not records; blank lines are skipped.

        `parse` reads a line as a dict (None when it is not a JSON object) for `add`. `decode`,
        when given, reads a line as `ProxyFields` first, and a record whose key is already
        counted is counted here without a dict; anything else (the first record of each key, a
        marked record, odd types, not JSON) is `parse`d. Both ways count alike; `decode` must
        refuse what `parse` refuses (`awf.logs.read` gives it only blocks of valid UTF-8, as
        msgspec does not check the fields it skips)."""
        bad: list[int] = []
        get = self._keys.get
        add, hosts = self.add, self._hosts
        first, last = self._first, self._last
        typed = None if self._api else decode  # API-proxy clients: `add` tells them apart
        for i, line in enumerate(lines):
            if typed is not None:
                try:
                    r = typed(line)
                except _DECODE_ERRORS:
                    pass
                else:
                    # as in `add`'s short way (no key is made for the self-test's names)
                    address = r.client.rpartition(":")[0]
                    host = r.host
                    slot = get((host, r.port, r.decision, r.reason, address, "agent"))
                    if (slot is not None and address and host in hosts and first is not None
                            and last is not None):
                        ts = r.ts
                        if ts < first:
                            first = ts
                        elif ts > last:
                            last = ts
                        slot[0] += 1
                        slot[1] += r.bytes_up
                        slot[2] += r.bytes_down
                        continue
            rec = parse(line)
            if rec is None:
                if line.strip():
                    bad.append(i)
                continue
            self._first, self._last = first, last
            add(rec)
            first, last = self._first, self._last
        self._first, self._last = first, last
        return bad

    def _add_general(self, rec: Mapping[str, Any]) -> None:
        """`add` for any record: missing fields, odd types, marks, API-proxy clients."""
        get = rec.get
        host = get("host")
        if host.__class__ is not str:
            host = ""
        if host in INTERNAL_NAMES or get("selftest") is True:
            self._selftest += 1
            return
        if host not in self._hosts:
            if len(self._hosts) >= MAX_HOSTS:
                host = OTHER_HOSTS
            else:
                self._hosts.add(host)
        ts = get("ts")
        if ts.__class__ is str:
            if self._first is None or ts < self._first:
                self._first = ts
            if self._last is None or ts > self._last:
                self._last = ts
        decision = get("decision")
        reason = get("reason")
        client = get("client")
        # `ip` or `[ip]` (as the hot path keys it; result() strips the brackets)
        head, _, tail = client.rpartition(":") if client.__class__ is str else ("", "", "")
        address = head if head and tail.isdigit() else client_address(client)
        kind = "agent" if not self._api and "client_name" not in rec else client_kind(
            rec, self._api)
        key = (host, _int(get("port")), decision if decision.__class__ is str else "",
               reason if reason.__class__ is str else None, address, kind)
        slot = self._keys.get(key)
        if slot is None:
            if len(self._keys) >= MAX_HOSTS * 10:  # many addresses or ports per host: fold
                key = (key[0], key[1], key[2], key[3], "", key[5])
                slot = self._keys.setdefault(key, [0, 0, 0])
            else:
                slot = self._keys[key] = [0, 0, 0]
        slot[0] += 1
        up = get("bytes_up")
        if up.__class__ is int:
            slot[1] += up
        down = get("bytes_down")
        if down.__class__ is int:
            slot[2] += down

    def state(self) -> tuple[object, ...]:
        """What `merge` takes: a worker process's tally, sent back to the parent."""
        return (self._keys, self._hosts, self._first, self._last, self._selftest)

    def merge(self, state: tuple[object, ...]) -> None:
        """Add another Tally's `state()` of proxy records (DNS and drops are not merged)."""
        keys, _hosts, first, last, selftest = state
        assert isinstance(keys, dict)
        assert isinstance(selftest, int)
        for key, (n, up, down) in keys.items():
            host = key[0]
            if host not in self._hosts and host != OTHER_HOSTS:
                if len(self._hosts) >= MAX_HOSTS:
                    key = (OTHER_HOSTS, *key[1:])
                else:
                    self._hosts.add(host)
            slot = self._keys.setdefault(key, [0, 0, 0])
            slot[0] += n
            slot[1] += up
            slot[2] += down
        if isinstance(first, str) and (self._first is None or first < self._first):
            self._first = first
        if isinstance(last, str) and (self._last is None or last > self._last):
            self._last = last
        self._selftest += selftest

    def add_dns(self, rec: Mapping[str, Any]) -> None:
        """One DNS forwarder record (dns.jsonl)."""
        if rec.get("selftest") is True or rec.get("qname") in INTERNAL_NAMES:
            self._selftest += 1
            return
        c = self._dns
        c.dns_queries += 1
        name = rec.get("qname")
        name = name if isinstance(name, str) else ""
        reason = rec.get("reason")
        if rec.get("decision") == "would_deny":  # learn mode: answered, counted apart
            c.dns_would_deny += 1
            if name and len(c.dns_would_deny_names) < MAX_NAMES:
                c.dns_would_deny_names.add(name)
        elif rec.get("decision") == "allow":
            c.dns_allowed += 1
            if reason == "dns_failure":
                c.dns_failed += 1
            if name and len(c.dns_allowed_names) < MAX_NAMES:
                c.dns_allowed_names.add(name)
        else:
            c.dns_refused += 1
            if name and (name in c.dns_refused_names or len(c.dns_refused_names) < MAX_NAMES):
                c.dns_refused_names[name] = str(reason)

    def add_drops(self, drops: object) -> None:
        """`l3-drops.json`: a list of `{"dst", "proto", "port", "count"}`, or
        `{"drops": [...]}`."""
        if isinstance(drops, Mapping):
            drops = drops.get("drops")
        if not isinstance(drops, list):
            return
        for d in drops:
            if not isinstance(d, Mapping):
                continue
            dst, proto, port = str(d.get("dst", "?")), str(d.get("proto", "?")), d.get("port")
            port = port if isinstance(port, int) and not isinstance(port, bool) else None
            n = _int(d.get("count"))
            if (dst, proto, port) in SELFTEST_DROPS:
                self._selftest += n
                continue
            self._drops[(dst, proto, port)] = self._drops.get((dst, proto, port), 0) + n

    def result(self) -> Counts:
        c = Counts(first=self._first, last=self._last, selftest=self._selftest)
        d = self._dns
        c.dns_queries, c.dns_allowed, c.dns_refused, c.dns_failed = (
            d.dns_queries, d.dns_allowed, d.dns_refused, d.dns_failed)
        c.dns_refused_names = dict(d.dns_refused_names)
        c.dns_allowed_names = set(d.dns_allowed_names)
        c.dns_would_deny, c.dns_would_deny_names = d.dns_would_deny, set(d.dns_would_deny_names)
        c.drops = sorted((Drop(dst, proto, port, n) for (dst, proto, port), n in self._drops.items()
                          if n > 0), key=lambda x: (-x.count, x.dst, x.proto, x.port or 0))
        for (host, port, decision, reason, address, kind), (n, up, down) in self._keys.items():
            out = outcome({"decision": decision, "reason": reason})
            if out is None:
                c.unknown += n
                continue
            c.requests += n
            c.bytes_up += up
            c.bytes_down += down
            h = c.hosts.get(host)
            if h is None:
                h = c.hosts[host] = HostCount(host)
            h.bytes_up += up
            h.bytes_down += down
            _bump(c.clients, kind, n)
            if address.startswith("["):
                address = address[1:-1]
            if address and (address in c.addresses or len(c.addresses) < MAX_ADDRESSES):
                _bump(c.addresses, address, n)
            why = reason or "?"
            if out is Outcome.ANSWERED:
                c.answered += n
                h.answered += n
                c.allowed_names.add(host)
                continue
            if out is Outcome.FAILED:
                c.failed += n
                h.failed += n
                _bump(c.failures, why, n)
                _bump(h.failures, why, n)
                c.allowed_names.add(host)
            elif out is Outcome.DENIED:
                c.denied += n
                h.denied += n
                _bump(c.denials, why, n)
                c.denied_names.setdefault(host, why)
            else:
                c.would_deny += n
                h.would_deny += n
                _bump(c.denials, why, n)
                c.would_deny_names.add(host)
                c.would_targets.add((host, port, why))
            if out is not Outcome.FAILED:
                _bump(h.reasons, why, n)
            target = (host, port, why)
            c.targets[target] = c.targets.get(target, 0) + n
        c.allowed_names.discard(OTHER_HOSTS)
        c.denied_names.pop(OTHER_HOSTS, None)
        c.would_deny_names.discard(OTHER_HOSTS)
        return c


def count(
    access: Iterable[Mapping[str, Any]],
    dns: Iterable[Mapping[str, Any]] = (),
    drops: object = None,
    *,
    api_proxy: frozenset[str] = frozenset(),
) -> Counts:
    """The true count of a run: `access` are access.jsonl records, `dns` dns.jsonl records,
    `drops` the parsed l3-drops.json (a list of `{"dst","proto","port","count"}`), `api_proxy` the
    API-proxy sidecar's addresses (for `Counts.clients`). Self-test records are left out."""
    t = Tally(api_proxy)
    for rec in access:
        t.add(rec)
    for rec in dns:
        t.add_dns(rec)
    if drops is not None:
        t.add_drops(drops)
    return t.result()
