"""The allow/block policy (docs/proxy.md §2, §3, §6): a frozen value built once at start-up (and
again on SIGHUP), whose ``decide()`` reads only its arguments.

Matching:

* A plain entry covers itself and every subdomain: the requested name and each of its parent
  suffixes (cut at dots, never inside a label) are looked up in one dict of name -> scheme bits.
* ``*`` matches any run of ``[a-z0-9_.-]``, possibly empty and crossing dots; the whole name must
  match. The entries of each scheme class (both, ``http://`` only, ``https://`` only) are compiled
  at build time into one alternation used with ``fullmatch``. No ReDoS: names over 253 characters
  never reach a regex, and each middle literal of ``a*b*c`` is found with an atomic lazy group
  ``(?>[...]*?b)``. For globs whose only operator is ``*``, committing to the leftmost occurrence
  of each middle literal is always correct (it leaves the longest tail), so nothing is retried and
  a match costs O(len(name) * len(pattern)) per entry.
* A pattern must end in at least two literal labels (``*.example.com``, ``api-*.example.com``):
  ``*.com``, ``foo*.com`` or ``www.example.*`` would each let anyone with a domain in.
* Entries are normalised like requested names (``hostnames.normalise_name``), IDN entries too.
* IP addresses and CIDRs in the allow list allow those literal addresses (exempt from
  docs/proxy.md §4); in the block list they block them, both as literals and as resolved addresses.
* A port-scoped entry (``svc.example.com:8080``, ``svc.example.com:8000-8010``,
  ``[2001:db8::1]:8443``) allows its name (and subdomains, patterns as above) on those ports
  only, 80 and 443 included only if listed; the global ports (80, 443, ``--allow-ports``) do
  not apply to it. Dangerous ports are refused at start-up as in ``--allow-ports``. The same
  name on another port is ``port_denied``. Scoped entries are kept apart from the others, so a
  policy without them pays nothing.

Precedence (docs/proxy.md §6): bad_request, ip_literal, domain_blocked, domain_not_allowed,
scheme_denied, port_denied.

Learn mode (``build(learn=True)``, ``awf-proxy --learn``): every name is allowed, over both
schemes, on the global ports; the decision then carries ``would_deny``, the reason the allowlist
would have given (``domain_not_allowed`` or ``scheme_denied``). The hard rules stay: bad
requests, IP literals, the blocklist, ports (dangerous and unlisted ones, and a port-scoped
entry's other ports), and names under ``.invalid`` (RFC 6761: never resolvable; the self-test
asks for one and must still be denied). Addresses (§4) are checked after the decision as always.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from proxy.addr import (
    AddressSet,
    IPAddress,
    IPNetwork,
    is_denied_address,
    parse_ip_literal,
    parse_network,
)
from proxy.errors import ConfigError
from proxy.hostnames import normalise_name, normalise_pattern
from proxy.reasons import Reason


class Scheme(StrEnum):
    """How a request arrived: plain HTTP, or TLS (CONNECT tunnels and transparent TLS)."""

    HTTP = "http"
    HTTPS = "https"


_HTTP, _HTTPS, _BOTH = 1, 2, 3
_BIT: Mapping[str, int] = MappingProxyType({Scheme.HTTP: _HTTP, Scheme.HTTPS: _HTTPS})
_PREFIX = {_HTTP: "http://", _HTTPS: "https://", _BOTH: ""}

DEFAULT_PORTS = frozenset({80, 443})
DANGEROUS_PORTS: Mapping[int, str] = MappingProxyType({
    22: "SSH",
    23: "Telnet",
    25: "SMTP",
    110: "POP3",
    143: "IMAP",
    445: "SMB",
    1433: "Microsoft SQL Server",
    1521: "Oracle",
    3306: "MySQL",
    3389: "RDP",
    5432: "PostgreSQL",
    5984: "CouchDB",
    6379: "Redis",
    6984: "CouchDB over TLS",
    8086: "InfluxDB",
    8088: "InfluxDB RPC",
    9200: "Elasticsearch",
    9300: "Elasticsearch transport",
    27017: "MongoDB",
    27018: "MongoDB shard",
    28017: "MongoDB web console",
})

_CACHE_MAX = 8192
_CACHE_HOST_MAX = 256  # longer hosts are never valid names; do not let them fill the cache
_STAR = "[a-z0-9_.-]"
_PORT_ITEM = re.compile(r"([0-9]+)(?:-([0-9]+))?")
_HOST_PORT = re.compile(r"(?:\[[^\]]*\]|[^:\[\]]*):[A-Za-z0-9-]*")
_SCOPED = re.compile(r"(\[[^\]/]+\]|[^:\[\]/]+):([0-9]+(?:-[0-9]+)?)")
_FORBIDDEN = "'\"`;#\\,%"
_ONLY_PUNCTUATION = frozenset(".*")


# ---------------------------------------------------------------------------- ports


def parse_ports(spec: str, *, what: str = "--allow-ports") -> frozenset[int]:
    """``"8080,9000-9010"`` -> the ports; ``ConfigError`` naming the bad item and the fix."""
    if "\n" in spec or "\r" in spec:
        raise ConfigError(f"{what}: {spec!r} contains a line break; separate ports with commas")
    if not spec.strip():
        raise ConfigError(f"{what}: no ports given; write them like '8080,9000-9010'")
    ports: set[int] = set()
    for item in spec.split(","):
        token = item.strip()
        if not token:
            raise ConfigError(f"{what}: empty item in {spec!r}; write ports like '8080,9000-9010'")
        m = _PORT_ITEM.fullmatch(token)
        if m is None:
            kind = "negative" if token.startswith("-") else "not a port number or range"
            raise ConfigError(f"{what}: {token!r} is {kind}; use 1-65535, like '8080' or "
                              "'9000-9010'")
        start = _port_number(m.group(1), what)
        end = start if m.group(2) is None else _port_number(m.group(2), what)
        if start > end:
            raise ConfigError(f"{what}: range {token!r} starts after it ends; write it as "
                              f"'{end}-{start}'")
        dangerous = [p for p in sorted(DANGEROUS_PORTS) if start <= p <= end]
        if dangerous and start != end:
            p = dangerous[0]
            raise ConfigError(f"{what}: range {token!r} includes {p}, which is never allowed "
                              f"({DANGEROUS_PORTS[p]}); split the range around it")
        check_port(start, what=what)
        ports.update(range(start, end + 1))
    return frozenset(ports)


def check_port(port: int, *, what: str = "--allow-ports") -> int:
    """One allowed-port value: 1..65535 and not dangerous."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"{what}: {port} is not a port; use 1-65535")
    if port in DANGEROUS_PORTS:
        raise ConfigError(f"{what}: {port} is never allowed ({DANGEROUS_PORTS[port]}); remove it")
    return port


def _port_number(digits: str, what: str) -> int:
    significant = digits.lstrip("0")
    if len(significant) > 5 or int(significant or "0") > 65535:
        raise ConfigError(f"{what}: {digits} is over 65535; use 1-65535")
    if not significant:
        raise ConfigError(f"{what}: port 0 cannot be allowed; use 1-65535")
    return int(significant)


# ---------------------------------------------------------------------------- domain entries


def parse_domain_list(text: str) -> list[str]:
    """File/flag syntax: one entry per line or comma-separated; ``#`` starts a comment; blank
    items are skipped. Entries are returned as written (``parse_entry`` validates them)."""
    entries: list[str] = []
    for line in text.split("\n"):
        for item in line.partition("#")[0].split(","):
            entry = item.strip(" \t\r")
            if entry:
                entries.append(entry)
    return entries


@dataclass(frozen=True, slots=True)
class DomainEntry:
    """One validated allow/block entry: a name, a ``*`` pattern, or an IP network."""

    schemes: frozenset[Scheme]
    name: str | None = None           # normalised name or pattern
    network: IPNetwork | None = None
    ports: frozenset[int] | None = None   # a port-scoped entry's ports; None: the global ones

    @property
    def wildcard(self) -> bool:
        return self.name is not None and "*" in self.name

    @property
    def mask(self) -> int:
        return sum(_BIT[s] for s in self.schemes)

    def __str__(self) -> str:
        body = str(self.network) if self.network is not None else str(self.name)
        if self.ports is not None:
            if self.network is not None and self.network.version == 6:
                body = f"[{body}]"
            body += ":" + _port_text(self.ports)
        return _PREFIX[self.mask] + body


def _port_text(ports: frozenset[int]) -> str:
    low, high = min(ports), max(ports)
    return str(low) if low == high else f"{low}-{high}"


def parse_entry(raw: str, *, what: str = "--allow-domains") -> DomainEntry:
    """Validate one docs/proxy.md §2 entry; ``ConfigError`` naming ``what``, the entry, the fix."""
    for c in raw:
        if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0:
            raise ConfigError(f"{what}: {raw!r} contains control character U+{ord(c):04X}; "
                              "remove it")
    text = raw.strip()
    if not text:
        raise ConfigError(f"{what}: empty entry; remove it or write a domain like 'example.com'")
    if any(c.isspace() for c in text):
        raise ConfigError(f"{what}: {raw!r} contains whitespace; give one domain per entry")
    for c in _FORBIDDEN:
        if c in text:
            hint = "separate entries instead" if c == "," else "remove it"
            raise ConfigError(f"{what}: {raw!r} contains {c!r}, which no domain has; {hint}")
    mask = _BOTH
    lower = text.lower()
    if lower.startswith("http://"):
        mask, text = _HTTP, text[len("http://"):]
    elif lower.startswith("https://"):
        mask, text = _HTTPS, text[len("https://"):]
    if "://" in text:
        raise ConfigError(f"{what}: {raw!r} has an unknown or second scheme; only one "
                          "'http://' or 'https://' prefix is allowed")
    if text.endswith("/"):
        text = text[:-1]
    if not text:
        raise ConfigError(f"{what}: {raw!r} has no domain after its prefix; write it like "
                          "'https://example.com'")
    schemes = frozenset(Scheme(s) for s, bit in _BIT.items() if mask & bit)
    ports: frozenset[int] | None = None
    scoped = _SCOPED.fullmatch(text)
    if scoped is not None:
        text = scoped.group(1)
        if text.startswith("["):
            text = text[1:-1]
        ports = parse_ports(scoped.group(2), what=f"{what}: {raw!r}")
    network = _entry_network(text, raw, what)
    if network is not None:
        return DomainEntry(schemes, network=network, ports=ports)
    if "/" in text:
        raise ConfigError(f"{what}: {raw!r} has a path; entries are domains (paths belong to "
                          "--allow-urls with SSL bump)")
    return DomainEntry(schemes, name=_entry_name(text, raw, what), ports=ports)


def _entry_network(text: str, raw: str, what: str) -> IPNetwork | None:
    address, slash, length = text.partition("/")
    try:
        ip = parse_ip_literal(address)
    except ValueError as exc:
        if "*" in address:
            raise ConfigError(f"{what}: {raw!r} looks like a pattern of IP addresses; list "
                              "them as a CIDR like '10.0.0.0/8'") from exc
        if _HOST_PORT.fullmatch(address):
            raise ConfigError(f"{what}: {raw!r} has a bad port; write one like "
                              "'svc.example.com:8080' or 'svc.example.com:8000-8010'") from exc
        raise ConfigError(f"{what}: {raw!r} is neither a domain nor an IP address: "
                          f"{exc}") from exc
    if ip is None:
        return None
    if slash and not (length.isascii() and length.isdigit()):
        raise ConfigError(f"{what}: {raw!r} has a bad prefix length; write a CIDR like "
                          "'10.0.0.0/8'")
    return parse_network(f"{ip}/{length}" if slash else str(ip), what=f"{what}: {raw!r}")


def _entry_name(text: str, raw: str, what: str) -> str:
    too_broad = f"{what}: {raw!r} is too broad; list the domains you need, like 'example.com'"
    if _ONLY_PUNCTUATION.issuperset(text):
        raise ConfigError(too_broad)
    if text.startswith("."):
        raise ConfigError(f"{what}: {raw!r} starts with a dot; write {text.lstrip('.')!r}, "
                          "which covers its subdomains too")
    wildcard = "*" in text
    try:
        name = normalise_pattern(text) if wildcard else normalise_name(text)
    except ValueError as exc:
        raise ConfigError(f"{what}: {raw!r} is not a valid domain: {exc}") from exc
    labels = name.split(".")
    if not wildcard:
        if len(labels) < 2:
            raise ConfigError(f"{what}: {raw!r} is too broad (a single label covers a whole "
                              "top-level domain); list the domains you need, like 'example.com'")
        return name
    name = re.sub(r"\*+", "*", name)
    literal = 0
    for label in reversed(name.split(".")):
        if "*" in label:
            break
        literal += 1
    if literal < 2:
        raise ConfigError(f"{what}: {raw!r} is too broad; a pattern must end in two labels "
                          "without '*', like '*.example.com'")
    return name


def _glob_regex(pattern: str) -> str:
    first, *middle, last = pattern.split("*")
    return "".join([re.escape(first),
                    *(f"(?>{_STAR}*?{re.escape(piece)})" for piece in middle),
                    f"{_STAR}*{re.escape(last)}"])


def _compile(patterns: Iterable[str]) -> re.Pattern[str]:
    return re.compile("(?:" + "|".join(_glob_regex(p) for p in patterns) + ")")


# ---------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one request; a denial is a value, not an exception."""

    allowed: bool
    reason: Reason | None   # None when allowed
    host: str               # the normalised name, or the canonical text of the IP literal
    address: IPAddress | None = None   # set when host was an IP literal (allowed or not)
    would_deny: Reason | None = None   # learn mode: allowed, but the allowlist would deny it


@dataclass(frozen=True, slots=True)
class _Scoped:
    """The port-scoped allow entries of one port set and scheme class, compiled together."""

    mask: int
    ports: frozenset[int]
    names: frozenset[str]
    pattern: re.Pattern[str] | None
    addresses: AddressSet

    def covers(self, name: str) -> bool:
        return ((bool(self.names) and _covered(name, self.names))
                or (self.pattern is not None and self.pattern.fullmatch(name) is not None))


def _scoped(entries: Iterable[DomainEntry]) -> tuple[_Scoped, ...]:
    groups: dict[tuple[int, frozenset[int]], list[DomainEntry]] = {}
    for e in entries:
        assert e.ports is not None
        groups.setdefault((e.mask, e.ports), []).append(e)
    out = []
    for (mask, ports), group in groups.items():
        patterns = [str(e.name) for e in group if e.wildcard]
        out.append(_Scoped(
            mask, ports,
            names=frozenset(str(e.name) for e in group if e.name is not None and not e.wildcard),
            pattern=_compile(patterns) if patterns else None,
            addresses=AddressSet.of(e.network for e in group if e.network is not None),
        ))
    return tuple(out)


@dataclass(frozen=True, slots=True, eq=False)
class Policy:
    """Built once by ``build()``; swapped whole on SIGHUP. ``decide`` is pure and memoised."""

    allow_entries: tuple[DomainEntry, ...]
    block_entries: tuple[DomainEntry, ...]
    ports: frozenset[int]
    allow_ranges: AddressSet
    allow_names: Mapping[str, int]              # plain name -> scheme bits
    allow_patterns: tuple[tuple[int, re.Pattern[str]], ...]   # (scheme bits, alternation)
    allow_addresses: tuple[tuple[int, AddressSet], ...]       # (scheme bits, literals allowed)
    block_names: frozenset[str]
    block_pattern: re.Pattern[str] | None
    block_addresses: AddressSet
    scoped: tuple[_Scoped, ...] = ()   # port-scoped allow entries, apart from the others
    learn: bool = False   # learn mode: names the allowlist would deny are allowed, marked
    _cache: dict[tuple[str, int, int], Decision] = field(
        default_factory=dict, init=False, repr=False)

    @classmethod
    def build(cls, *, allow_domains: Iterable[str], block_domains: Iterable[str] = (),
              allow_ports: Iterable[int] = (), allow_ranges: Iterable[str] = (),
              learn: bool = False) -> Policy:
        """Validate everything and precompile; ``ConfigError`` names the bad entry and the fix."""
        for given in (allow_domains, block_domains, allow_ranges):
            if isinstance(given, str):
                raise TypeError("pass a list of entries, not one string (see parse_domain_list)")
        allows = _unique(parse_entry(e, what="--allow-domains") for e in allow_domains)
        blocks = _unique(_any_scheme(parse_entry(e, what="--block-domains"))
                         for e in block_domains)
        for e in blocks:
            if e.ports is not None:
                raise ConfigError(f"--block-domains: {str(e)!r} has a port; a blocked domain is "
                                  f"blocked on every port: write {str(e).rsplit(':', 1)[0]!r}")
        ports = DEFAULT_PORTS | {check_port(p) for p in allow_ports}
        ranges = AddressSet.parse(allow_ranges, what="--allow-range")

        names: dict[str, int] = {}
        patterns: dict[int, list[str]] = {}
        networks: dict[int, list[IPNetwork]] = {}
        for e in allows:
            if e.ports is not None:
                continue  # port-scoped: compiled apart, below
            if e.network is not None:
                networks.setdefault(e.mask, []).append(e.network)
            elif e.wildcard:
                patterns.setdefault(e.mask, []).append(str(e.name))
            else:
                names[str(e.name)] = names.get(str(e.name), 0) | e.mask
        block_patterns = [str(e.name) for e in blocks if e.wildcard]
        return cls(
            allow_entries=allows,
            block_entries=blocks,
            ports=frozenset(ports),
            allow_ranges=ranges,
            allow_names=names,
            allow_patterns=tuple((m, _compile(patterns[m]))
                                 for m in sorted(patterns, reverse=True)),
            allow_addresses=tuple((m, AddressSet.of(networks[m]))
                                  for m in sorted(networks, reverse=True)),
            block_names=frozenset(str(e.name) for e in blocks
                                  if e.name is not None and not e.wildcard),
            block_pattern=_compile(block_patterns) if block_patterns else None,
            block_addresses=AddressSet.of(e.network for e in blocks if e.network is not None),
            scoped=_scoped(e for e in allows if e.ports is not None),
            learn=learn,
        )

    def decide(self, host: str, port: int, scheme: Scheme) -> Decision:
        """The verdict for ``host:port`` reached over ``scheme``; see the module docstring."""
        bit = _HTTPS if scheme == "https" else _HTTP if scheme == "http" else 0
        if not bit:
            raise ValueError(f"unknown scheme {scheme!r}")
        key = (host, port, bit)
        decision = self._cache.get(key)
        if decision is None:
            decision = self._decide(host, port, bit)
            if len(host) <= _CACHE_HOST_MAX:
                if len(self._cache) >= _CACHE_MAX:  # drop the oldest; safe if raced
                    self._cache.pop(next(iter(self._cache), key), None)
                self._cache[key] = decision
        return decision

    def address_allowed(self, ip: IPAddress) -> bool:
        """docs/proxy.md §4: may an allowed name lead to ``ip``? Blocked addresses never may."""
        if ip in self.block_addresses:
            return False
        return not is_denied_address(ip) or ip in self.allow_ranges

    def allows_name(self, host: str) -> bool:
        """Is ``host`` a name (not an IP literal) that some entry allows over some scheme and no
        entry blocks? For the DNS forwarder, which does not know port or scheme."""
        try:
            if parse_ip_literal(host) is not None:
                return False
            name = normalise_name(host)
        except ValueError:
            return False
        if self._blocked(name):
            return False
        if self.learn and _learnable(name):
            return True
        return self._name_mask(name, _BOTH) != 0 or any(sc.covers(name) for sc in self.scoped)

    def scoped_ports(self) -> frozenset[int]:
        """The ports that only port-scoped entries allow (interception must cover them too)."""
        return frozenset().union(*(sc.ports for sc in self.scoped)) - self.ports

    def counts(self) -> dict[str, int]:
        """Sizes for ``/healthz``; ``ports`` counts 80 and 443 too."""
        return {"allow": len(self.allow_entries), "block": len(self.block_entries),
                "allow_ranges": len(self.allow_ranges), "ports": len(self.ports)}

    def _decide(self, host: str, port: int, bit: int) -> Decision:
        try:
            ip = parse_ip_literal(host)
            name = str(ip) if ip is not None else normalise_name(host)
        except ValueError:
            return Decision(False, Reason.BAD_REQUEST, host)
        if not 1 <= port <= 65535:
            return Decision(False, Reason.BAD_REQUEST, name, ip)
        would: Reason | None = None
        if ip is not None:
            mask = 0
            for m, addresses in self.allow_addresses:
                if ip in addresses:
                    mask |= m
            scoped = [sc for sc in self.scoped if ip in sc.addresses]
            if not mask and not scoped:
                return Decision(False, Reason.IP_LITERAL, name, ip)
            if ip in self.block_addresses:
                return Decision(False, Reason.DOMAIN_BLOCKED, name, ip)
        else:
            if self._blocked(name):
                return Decision(False, Reason.DOMAIN_BLOCKED, name)
            mask = self._name_mask(name, bit)
            scoped = [sc for sc in self.scoped if sc.covers(name)] if self.scoped else []
            if not mask and not scoped:
                if not (self.learn and _learnable(name)):
                    return Decision(False, Reason.DOMAIN_NOT_ALLOWED, name)
                would = Reason.DOMAIN_NOT_ALLOWED
                mask = _BOTH
        if not (mask | _sum_masks(scoped)) & bit:
            if not (self.learn and ip is None):
                return Decision(False, Reason.SCHEME_DENIED, name, ip)
            would = would or Reason.SCHEME_DENIED
            mask |= bit
        if not (mask & bit and port in self.ports) and not any(
                sc.mask & bit and port in sc.ports for sc in scoped):
            return Decision(False, Reason.PORT_DENIED, name, ip)
        return Decision(True, None, name, ip, would_deny=would)

    def _blocked(self, name: str) -> bool:
        if self.block_names and _covered(name, self.block_names):
            return True
        return self.block_pattern is not None and self.block_pattern.fullmatch(name) is not None

    def _name_mask(self, name: str, bit: int) -> int:
        """Scheme bits of the entries covering ``name``; stops once ``bit`` is covered."""
        names = self.allow_names
        mask = names.get(name, 0)
        i = name.find(".")
        while i >= 0 and not mask & bit:
            mask |= names.get(name[i + 1:], 0)
            i = name.find(".", i + 1)
        for m, pattern in self.allow_patterns:
            if mask & bit:
                break
            if m & ~mask and pattern.fullmatch(name):
                mask |= m
        return mask


def _learnable(name: str) -> bool:
    """Learn mode may allow this name: two labels or more, not under ``.invalid``."""
    return "." in name and name != "invalid" and not name.endswith(".invalid")


def _sum_masks(scoped: Iterable[_Scoped]) -> int:
    mask = 0
    for sc in scoped:
        mask |= sc.mask
    return mask


def _covered(name: str, names: frozenset[str]) -> bool:
    """Is ``name`` or one of its parent domains (cut at dots) in ``names``?"""
    if name in names:
        return True
    i = name.find(".")
    while i >= 0:
        if name[i + 1:] in names:
            return True
        i = name.find(".", i + 1)
    return False


def _unique(entries: Iterable[DomainEntry]) -> tuple[DomainEntry, ...]:
    return tuple(dict.fromkeys(entries))


def _any_scheme(entry: DomainEntry) -> DomainEntry:
    return DomainEntry(frozenset(Scheme), entry.name, entry.network, entry.ports)


__all__ = [
    "DANGEROUS_PORTS",
    "DEFAULT_PORTS",
    "Decision",
    "DomainEntry",
    "Policy",
    "Scheme",
    "check_port",
    "parse_domain_list",
    "parse_entry",
    "parse_ports",
]
