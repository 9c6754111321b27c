"""``--allow-urls`` (docs/proxy.md §11): URL patterns checked on each request that the proxy can
read (inside SSL bump, and plain HTTP), as a frozen value built once and a pure ``decide_url``.

Pattern grammar (``ConfigError`` naming the pattern and the fault otherwise)::

    pattern = [ methods SP ] scheme "://" host [ ":" port ] path [ "?" query ]
    methods = method *( "|" method )     ; letters, digits, "-", "_"; upper-cased
    scheme  = "https" / "http"           ; any case
    host    = a docs/proxy.md §2 entry: a name (covering its subdomains), a "*" pattern, an IPv4
              literal or a bracketed IPv6 literal; no userinfo, no CIDR
    port    = 1-65535, not a dangerous port, and allowed (80, 443 or --allow-ports)
    path    = "/" ...                    ; required; "*" matches any run, "/" included
    query   = ...                        ; "*" likewise

Matching a request (``decide_url``), in this order:

1. the host, port and scheme go through ``Policy.decide`` of a policy whose allowlist is
   ``--allow-domains`` plus each pattern's host (under the pattern's scheme): so the blocklist
   beats patterns (``domain_blocked``), and each pattern allows its own host;
2. a host covered by no pattern's host (docs/proxy.md §2 matching, on the *parsed* host, never a
   regex over the URL) is decided by step 1 alone;
3. a host covered by any pattern's host is *restricted*: its request target is normalised
   (``normalise_target``; a target it refuses is ``bad_request``) and must match a pattern whose
   host covers it, with the same scheme, the same port if the pattern names one, a listed method
   if the pattern lists any, a path that the path glob matches whole, and, only if the pattern
   has ``?``, a query that the query glob matches whole (no query counts as empty). Otherwise
   ``url_not_allowed``. A restricted host is restricted over both schemes.

Target normalisation (the result is what was matched, so the caller forwards it, not the
original):

* the target starts with ``/``; only visible ASCII; no ``#``; no ``\\`` in the path (some origins
  read it as ``/``);
* ``%XX`` must be valid hex. Escaped unreserved characters (``A-Z a-z 0-9 - . _ ~``) are decoded,
  as RFC 3986 §6.2.2.2 allows (so ``%2e`` is a dot); other escapes are kept, hex upper-cased. An
  escaped ``/`` (``%2F``), ``\\`` (``%5C``), NUL or other control character in the path is refused,
  as are the double escapes ``%252E``, ``%252F``, ``%255C``, ``%2500``: origins disagree on them;
* dot segments are resolved as RFC 3986 §5.2.4 does (``/a/b/../c`` -> ``/a/c``; ``..`` never
  climbs above ``/``). A path that has both a dot segment and an empty segment (``//``) is
  refused, as is a segment starting ``.;`` or ``..;`` (Tomcat reads ``..;x`` as ``..``): servers
  that merge slashes, or strip path parameters, would resolve it elsewhere;
* the query is only checked for valid escapes and normalised the same way (unreserved decoded,
  hex upper-cased); an escaped ``/`` is fine there.

Normalising twice gives the same result. Globs compile to one anchored regex used with
``fullmatch``; each middle literal is found with an atomic lazy group ``(?>.*?lit)``, which
never backtracks (for ``*``-only globs the leftmost occurrence is always right), so a match costs
O(len(target) * len(pattern)).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from dataclasses import dataclass

from proxy.addr import parse_ip_literal
from proxy.errors import BadRequest, ConfigError, RequestError
from proxy.hostnames import normalise_name
from proxy.http1 import parse_absolute_target, parse_authority
from proxy.policy import Policy, Scheme, check_port, parse_domain_list, parse_entry
from proxy.reasons import Reason

_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_HEX = frozenset(string.hexdigits)
_METHOD = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_PORT = re.compile(r"[0-9]{1,5}")
_DOUBLE_ESCAPES = ("2E", "2F", "5C", "00")
_PARAM_DOTS = (".;", "..;", ".%3B", "..%3B")
_SCHEMES = {"http://": Scheme.HTTP, "https://": Scheme.HTTPS}


# ---------------------------------------------------------------------------- normalisation


def normalise_target(target: str) -> tuple[str, str | None]:
    """``(path, query)`` of an origin-form request target, normalised as the module docstring
    says; ``query`` is ``None`` when there is no ``?``. ``BadRequest`` naming the fault."""
    if not target.startswith("/"):
        raise BadRequest(f"request target {target[:50]!r} is not a path starting with '/'")
    path, sep, query = target.partition("?")
    return _normalise_path(path), (_normalise_query(query) if sep else None)


def _check_chars(text: str, what: str, forbidden: str) -> None:
    for c in text:
        if not "!" <= c <= "~" or c in forbidden:
            raise BadRequest(f"{what} contains {c!r}; send it percent-encoded")


def _unescape(text: str, what: str, *, path: bool) -> str:
    """Decode escaped unreserved characters, upper-case other escapes; refuse the dangerous."""
    if "%" not in text:
        return text
    out: list[str] = []
    i = 0
    while True:
        j = text.find("%", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        hx = text[j + 1:j + 3]
        if len(hx) != 2 or not _HEX.issuperset(hx):
            raise BadRequest(f"{what} has a bad escape {text[j:j + 3]!r}; write '%' as '%25'")
        hx = hx.upper()
        ch = chr(int(hx, 16))
        if ch in _UNRESERVED:
            out.append(ch)
        else:
            if path:
                if hx in ("2F", "5C"):
                    raise BadRequest(f"{what} has an escaped {ch!r} (%{hx}), which origins read "
                                     "differently; it is refused under --allow-urls")
                if ch < " " or ch == "\x7f":
                    raise BadRequest(f"{what} has an escaped control character (%{hx})")
                if hx == "25" and text[j + 3:j + 5].upper() in _DOUBLE_ESCAPES:
                    raise BadRequest(f"{what} has a double escape {text[j:j + 5]!r}; it is "
                                     "refused under --allow-urls")
            out.append("%" + hx)
        i = j + 3


def _normalise_path(raw: str) -> str:
    _check_chars(raw, "path", "#\\")
    path = _unescape(raw, "path", path=True)
    segments = path[1:].split("/")
    if any(s.startswith(_PARAM_DOTS) for s in segments):
        raise BadRequest("path has a dot segment with parameters ('..;'); it is refused under "
                         "--allow-urls")
    if not any(s in (".", "..") for s in segments):
        return path
    if "//" in path:
        raise BadRequest("path has both an empty segment ('//') and a dot segment; servers "
                         "resolve it differently, so it is refused under --allow-urls")
    out: list[str] = []
    last = len(segments) - 1
    for k, seg in enumerate(segments):
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
            continue
        if k == last:
            out.append("")
    return "/" + "/".join(out)


def _normalise_query(raw: str) -> str:
    _check_chars(raw, "query", "#")
    return _unescape(raw, "query", path=False)


# ---------------------------------------------------------------------------- globs


def _glob(text: str) -> re.Pattern[str]:
    """``*`` is any run of characters; everything else literal; the whole string must match."""
    pieces = re.sub(r"\*+", "*", text).split("*")
    if len(pieces) == 1:
        return re.compile(re.escape(text), re.DOTALL)
    first, *middle, last = pieces
    return re.compile("".join([re.escape(first),
                               *(f"(?>.*?{re.escape(m)})" for m in middle),
                               f".*{re.escape(last)}"]), re.DOTALL)


# ---------------------------------------------------------------------------- patterns


@dataclass(frozen=True, slots=True)
class UrlRule:
    """One validated pattern."""

    text: str                          # as written
    methods: frozenset[str] | None     # None: any method
    scheme: Scheme
    host: str                          # docs/proxy.md §2 entry body: name, pattern or IP network
    port: int | None                   # None: any allowed port
    path: re.Pattern[str]
    query: re.Pattern[str] | None      # None: the query is ignored


def parse_url_list(text: str) -> list[str]:
    """Flag/file syntax, as for domains: one pattern per line or comma-separated, ``#`` starts a
    comment, blank items skipped (so a pattern cannot hold ``,`` or ``#``; escape a comma as
    ``%2C``)."""
    return parse_domain_list(text)


def parse_rule(raw: str, *, ports: Iterable[int] = (80, 443)) -> UrlRule:
    """Validate one pattern; ``ports`` are the ports allowed (80, 443 and ``--allow-ports``)."""
    what = f"--allow-urls: {raw!r}"
    parts = raw.split()
    if not parts:
        raise ConfigError("--allow-urls: empty pattern; write it like "
                          "'https://api.example.com/v1/*'")
    if len(parts) > 2:
        raise ConfigError(f"{what} has spaces inside; write 'GET|HEAD https://host/path', "
                          "with one space after the methods and none in the URL")
    methods: frozenset[str] | None = None
    if len(parts) == 2:
        names = parts[0].split("|")
        for m in names:
            if not _METHOD.fullmatch(m):
                raise ConfigError(f"{what}: {m!r} is not a method; list methods like "
                                  "'GET|HEAD' before the URL")
        methods = frozenset(m.upper() for m in names)
    url = parts[-1]
    lower = url.lower()
    scheme = next((s for p, s in _SCHEMES.items() if lower.startswith(p)), None)
    if scheme is None:
        raise ConfigError(f"{what} must start with 'https://' or 'http://' (after the "
                          "optional methods)")
    rest = url[len(scheme) + 3:]
    slash = rest.find("/")
    authority, target = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    if not target:
        raise ConfigError(f"{what} has no path; add one, like '{url.rstrip('/')}/*' (or use "
                          "--allow-domains for the whole host)")
    if "#" in target:
        raise ConfigError(f"{what} has a fragment ('#'), which is never sent; remove it")
    host, port = _authority(authority, what)
    entry = parse_entry(host, what=what)
    body = str(entry.network) if entry.network is not None else str(entry.name)
    if port is not None:
        check_port(port, what=what)
        if port not in set(ports):
            raise ConfigError(f"{what} names port {port}, which is not allowed; add it to "
                              "--allow-ports")
    try:
        path, query = normalise_target(target)
    except BadRequest as exc:
        raise ConfigError(f"{what}: {exc}") from exc
    if path != _without_dots(target.partition("?")[0]):
        raise ConfigError(f"{what} has dot segments ('.' or '..'); write the path they resolve "
                          f"to, {path!r}")
    return UrlRule(
        text=raw.strip(),
        methods=methods,
        scheme=scheme,
        host=body,
        port=port,
        path=_glob(path),
        query=None if query is None else _glob(query),
    )


def _without_dots(path: str) -> str:
    """The path as ``_normalise_path`` would leave it if no dot segment had been resolved."""
    return _unescape(path, "path", path=True)


def _authority(authority: str, what: str) -> tuple[str, int | None]:
    if not authority:
        raise ConfigError(f"{what} has no host; write it like 'https://api.example.com/*'")
    if "@" in authority:
        raise ConfigError(f"{what} has user information ('@'); remove it")
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise ConfigError(f"{what} has an unclosed '['; write IPv6 as '[2001:db8::1]'")
        host, after = authority[:close + 1], authority[close + 1:]
        if after and not after.startswith(":"):
            raise ConfigError(f"{what} has {after!r} after its IPv6 address")
        port_text = after[1:] if after else None
    else:
        if authority.count(":") > 1:
            raise ConfigError(f"{what}: write an IPv6 host in brackets, like '[2001:db8::1]'")
        host, sep, port_text_ = authority.partition(":")
        port_text = port_text_ if sep else None
    if port_text is None:
        return host, None
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"{what} has a bad port {port_text!r}; use 1-65535")
    return host, int(port_text)


# ---------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class UrlDecision:
    """The verdict on one request; a denial is a value, not an exception."""

    allowed: bool
    reason: Reason | None      # None when allowed
    host: str                  # normalised name or canonical IP text
    rule: str | None = None    # the pattern that allowed it (restricted hosts only)
    target: str | None = None  # the normalised target, to forward (restricted hosts only)


@dataclass(frozen=True, slots=True, eq=False)
class UrlRules:
    """Built once by ``build()``, swapped whole on SIGHUP; ``decide_url`` is pure."""

    rules: tuple[UrlRule, ...]
    policy: Policy                         # --allow-domains plus each pattern's host
    restricted: Policy | None              # allows exactly the hosts patterns cover
    matchers: tuple[Policy, ...]           # per rule: allows exactly its host

    @classmethod
    def build(cls, patterns: Iterable[str], *, allow_domains: Iterable[str] = (),
              block_domains: Iterable[str] = (), allow_ports: Iterable[int] = (),
              allow_ranges: Iterable[str] = ()) -> UrlRules:
        """Validate every pattern and build the combined policy; ``ConfigError`` as
        ``Policy.build`` and ``parse_rule`` raise it."""
        if isinstance(patterns, str) or isinstance(allow_domains, str):
            raise TypeError("pass a list of patterns, not one string (see parse_url_list)")
        allow_ports = list(allow_ports)
        base = Policy.build(allow_domains=[], allow_ports=allow_ports)
        rules = tuple(dict.fromkeys(parse_rule(p, ports=base.ports) for p in patterns))
        policy = Policy.build(
            allow_domains=[*allow_domains, *(f"{r.scheme}://{r.host}" for r in rules)],
            block_domains=block_domains, allow_ports=allow_ports, allow_ranges=allow_ranges)
        one: dict[str, Policy] = {}
        for r in rules:
            if r.host not in one:
                one[r.host] = Policy.build(allow_domains=[r.host])
        restricted = (Policy.build(allow_domains=list(one)) if one else None)
        return cls(rules, policy, restricted, tuple(one[r.host] for r in rules))

    def host_entries(self) -> tuple[str, ...]:
        """The patterns' hosts as allow entries (with their scheme), for the CA's constraints."""
        return tuple(dict.fromkeys(f"{r.scheme}://{r.host}" for r in self.rules))

    def restricts(self, host: str) -> bool:
        """Is ``host`` (normalised) covered by some pattern's host?"""
        return self.restricted is not None and _covers(self.restricted, host)


def _covers(matcher: Policy, host: str) -> bool:
    # a matcher has no blocklist, any-scheme entries and port 443 allowed: allowed == covered
    return matcher.decide(host, 443, Scheme.HTTPS).allowed


def decide_url(rules: UrlRules, method: str, scheme: Scheme | str, host: str, port: int,
               path_and_query: str) -> UrlDecision:
    """The verdict for ``method scheme://host:port path_and_query``; see the module docstring.
    ``path_and_query`` is the origin-form request target."""
    scheme = Scheme(scheme)
    d = rules.policy.decide(host, port, scheme)
    if not d.allowed:
        return UrlDecision(False, d.reason, d.host)
    if not rules.restricts(d.host):
        return UrlDecision(True, None, d.host)
    try:
        path, query = normalise_target(path_and_query)
    except BadRequest:
        return UrlDecision(False, Reason.BAD_REQUEST, d.host)
    target = path if query is None else f"{path}?{query}"
    for rule, matcher in zip(rules.rules, rules.matchers, strict=True):
        if (rule.scheme == scheme
                and (rule.port is None or rule.port == port)
                and (rule.methods is None or method in rule.methods)
                and rule.path.fullmatch(path) is not None
                and (rule.query is None or rule.query.fullmatch(query or "") is not None)
                and _covers(matcher, d.host)):
            return UrlDecision(True, None, d.host, rule=rule.text, target=target)
    return UrlDecision(False, Reason.URL_NOT_ALLOWED, d.host, target=target)


def decide_bumped(rules: UrlRules, tunnel_host: str, tunnel_port: int, method: str,
                  host_header: bytes | None, target: bytes) -> UrlDecision:
    """One request inside a bumped tunnel opened for ``tunnel_host:tunnel_port`` (the CONNECT
    authority, or the SNI name and original port), in docs/proxy.md §11's order:

    1. the ``Host`` header (and the authority of an absolute-form target) must name the tunnel's
       host and port (443 may be left out), compared normalised; otherwise ``misdirected``
       (421); a missing or malformed one is ``bad_request``;
    2. and 3. ``decide_url`` over ``https`` (blocklist, then the URL rules).
    """
    try:
        tunnel = _host_key(tunnel_host)
    except ValueError:
        return UrlDecision(False, Reason.BAD_REQUEST, tunnel_host)
    if host_header is None:
        return UrlDecision(False, Reason.BAD_REQUEST, tunnel)
    if not target.startswith(b"/") and b"://" in target[:10]:
        try:
            scheme, authority, target = parse_absolute_target(target)
        except RequestError:
            return UrlDecision(False, Reason.BAD_REQUEST, tunnel)
        if scheme != b"https" or authority.port != tunnel_port or not _same_host(
                authority.host, tunnel):
            return UrlDecision(False, Reason.MISDIRECTED, tunnel)
    try:
        given = parse_authority(host_header, default_port=443)
    except RequestError:
        return UrlDecision(False, Reason.BAD_REQUEST, tunnel)
    if given.port != tunnel_port or not _same_host(given.host, tunnel):
        return UrlDecision(False, Reason.MISDIRECTED, tunnel)
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        return UrlDecision(False, Reason.BAD_REQUEST, tunnel)
    return decide_url(rules, method, Scheme.HTTPS, tunnel_host, tunnel_port, text)


def _host_key(host: str) -> str:
    ip = parse_ip_literal(host)
    return str(ip) if ip is not None else normalise_name(host)


def _same_host(given: str, tunnel: str) -> bool:
    try:
        return _host_key(given) == tunnel
    except ValueError:
        return False


__all__ = [
    "UrlDecision",
    "UrlRule",
    "UrlRules",
    "decide_bumped",
    "decide_url",
    "normalise_target",
    "parse_rule",
    "parse_url_list",
]
