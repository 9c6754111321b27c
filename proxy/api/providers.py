"""The provider table and the rules for what crosses the sidecar (docs/api-proxy.md §3). Pure.

A request from the agent keeps its method, path, body and ordinary headers. Everything that
could carry a credential or steer routing is removed: the client's own auth (`Authorization`,
`Proxy-Authorization`, `x-api-key`, `x-goog-api-key`, `api-key`), hop-by-hop headers and those
named in `Connection`, `Host`, `Forwarded`, `Via`, `X-Forwarded-*`, and any header whose value
holds the placeholder token. Then the provider's real auth is added. The target host is the
configured one, never the request's; Gemini's `key=` query parameter is removed, and so is
any query parameter holding the placeholder.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

from proxy.errors import ConfigError
from proxy.hostnames import normalise_name

PLACEHOLDER = "placeholder-token-for-credential-isolation"
"""What the agent is given instead of a key; it must never leave the sidecar."""

ANTHROPIC_VERSION = "2023-06-01"
COPILOT_INTEGRATION_ID = "copilot-developer-cli"
MAX_REQUEST_ID = 128

if TYPE_CHECKING:
    from yarl import URL  # imported by `Target.url` (the sidecar): awf run's planning needs none

Headers = list[tuple[str, str]]


class ProviderName(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    COPILOT = "copilot"
    GEMINI = "gemini"


@dataclass(frozen=True, slots=True)
class Provider:
    name: ProviderName
    port: int  # default listener port
    default_target: str
    base_path: str  # the path the agent's base URL carries; requests pass it through unchanged
    key_names: tuple[str, ...]  # keys-file names that configure it, the first present wins
    input_fields: tuple[str, ...]  # JSON usage fields, see usage.py
    output_fields: tuple[str, ...]

    @property
    def service(self) -> str:
        return f"awf-api-proxy-{self.name}"


PROVIDERS: tuple[Provider, ...] = (
    Provider(ProviderName.OPENAI, 10000, "api.openai.com", "/v1",
             ("OPENAI_API_KEY", "CODEX_API_KEY"),
             # Chat Completions, and the Responses API (Codex)
             ("prompt_tokens", "input_tokens"), ("completion_tokens", "output_tokens")),
    Provider(ProviderName.ANTHROPIC, 10001, "api.anthropic.com", "",
             ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"),
             ("input_tokens",), ("output_tokens",)),
    Provider(ProviderName.COPILOT, 10002, "api.githubcopilot.com", "",
             ("COPILOT_GITHUB_TOKEN",),
             ("prompt_tokens", "input_tokens"), ("completion_tokens", "output_tokens")),
    Provider(ProviderName.GEMINI, 10003, "generativelanguage.googleapis.com", "",
             ("GEMINI_API_KEY",),
             ("promptTokenCount",), ("candidatesTokenCount",)),
)
BY_NAME: Mapping[ProviderName, Provider] = {p.name: p for p in PROVIDERS}
KEY_NAMES: frozenset[str] = frozenset(n for p in PROVIDERS for n in p.key_names)


@dataclass(frozen=True, slots=True)
class Credential:
    name: str  # the keys-file name it came from
    secret: str

    def __repr__(self) -> str:  # never the secret, in a traceback or anywhere else
        return f"Credential({self.name!r}, <redacted>)"


def credential_for(provider: Provider, keys: Mapping[str, str]) -> Credential | None:
    """The provider's credential from the keys file, or None: the provider is not configured."""
    for name in provider.key_names:
        secret = keys.get(name)
        if secret:
            return Credential(name, secret)
    return None


def auth_headers(provider: Provider, cred: Credential) -> Headers:
    """The headers that carry the real credential."""
    if provider.name is ProviderName.ANTHROPIC:
        if cred.name == "CLAUDE_CODE_OAUTH_TOKEN":  # an OAuth token is a bearer token
            return [("Authorization", f"Bearer {cred.secret}")]
        return [("x-api-key", cred.secret)]
    if provider.name is ProviderName.GEMINI:
        return [("x-goog-api-key", cred.secret)]
    return [("Authorization", f"Bearer {cred.secret}")]


@dataclass(frozen=True, slots=True)
class Target:
    """Where a provider's requests go: always HTTPS, the host never taken from a request."""

    host: str  # a normalised name, an IPv4 address, or an IPv6 address without brackets
    port: int = 443

    @classmethod
    def parse(cls, text: str, *, flag: str) -> Target:
        """'api.openai.com', 'api.openai.com:8443', '127.0.0.1:9000', '[::1]:9000'."""
        raw = text.strip()
        if "/" in raw or "@" in raw or not raw:
            raise ConfigError(f"{flag}: {text!r} is not HOST[:PORT] (no scheme, user or path)")
        port_text = ""
        if raw.startswith("["):
            host, sep, rest = raw[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ConfigError(f"{flag}: {text!r} is not [IPv6]:PORT")
            port_text = rest[1:]
            if rest and not port_text:
                raise ConfigError(f"{flag}: {text!r} has an empty port")
        elif raw.count(":") > 1:
            raise ConfigError(f"{flag}: write the IPv6 address {raw!r} in brackets: [{raw}]:PORT")
        else:
            host, sep, port_text = raw.partition(":")
            if sep and not port_text:
                raise ConfigError(f"{flag}: {text!r} has an empty port")
        port = 443
        if port_text:
            if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
                raise ConfigError(f"{flag}: {port_text!r} is not a port (1-65535)")
            port = int(port_text)
        try:
            return cls(str(ipaddress.ip_address(host)), port)
        except ValueError:
            pass
        try:
            return cls(normalise_name(host), port)
        except ValueError as exc:
            raise ConfigError(f"{flag}: {host!r} is not a hostname or IP address: {exc}") from exc

    @property
    def url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def netloc(self) -> str:
        return self.url_host if self.port == 443 else f"{self.url_host}:{self.port}"

    def url(self, raw_path: str, raw_query: str) -> URL:
        """https://target + the request's path and query, both still percent-encoded as sent.
        The host is always the target's: a path like `//evil.test/x` stays a path."""
        if not raw_path.startswith("/"):
            raise ValueError(f"not an origin-form path: {raw_path[:40]!r}")
        from yarl import URL

        return URL.build(scheme="https", host=self.url_host, port=self.port, path=raw_path,
                         query_string=raw_query, encoded=True)


HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "proxy-authenticate", "proxy-authorization",
})
_REQUEST_DROP = HOP_BY_HOP | frozenset({
    "host", "authorization", "x-api-key", "x-goog-api-key", "api-key",
    "forwarded", "via", "expect", "x-request-id", "content-length",
})
_RESPONSE_DROP = HOP_BY_HOP | frozenset({"x-request-id"})


def _connection_tokens(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    return frozenset(
        token.strip().lower()
        for name, value in headers if name.lower() == "connection"
        for token in value.split(",") if token.strip()
    )


def upstream_headers(
    provider: Provider,
    cred: Credential,
    client: Iterable[tuple[str, str]],
    request_id: str,
    content_length: int | None,
) -> Headers:
    """The request headers the provider sees: the client's, cleaned, plus the real auth.

    `content_length` is the body's declared length (None: none declared, the body, if any, goes
    chunked), so a framing header never passes through unchecked.
    """
    given = list(client)
    drop = _REQUEST_DROP | _connection_tokens(given)
    out: Headers = []
    seen: set[str] = set()
    for name, value in given:
        low = name.lower()
        if low in drop or low.startswith("x-forwarded-") or PLACEHOLDER in value:
            continue
        out.append((name, value))
        seen.add(low)
    out.extend(auth_headers(provider, cred))
    if provider.name is ProviderName.ANTHROPIC and "anthropic-version" not in seen:
        out.append(("anthropic-version", ANTHROPIC_VERSION))
    if provider.name is ProviderName.COPILOT and "copilot-integration-id" not in seen:
        out.append(("Copilot-Integration-Id", COPILOT_INTEGRATION_ID))
    if content_length is not None:
        out.append(("Content-Length", str(content_length)))
    out.append(("X-Request-ID", request_id))
    return out


def downstream_headers(upstream: Iterable[tuple[str, str]], request_id: str) -> Headers:
    """The response headers the agent sees: the provider's without hop-by-hop ones, plus ours.

    The provider's own request id (OpenAI's `x-request-id`) is kept as `X-Upstream-Request-ID`,
    since `X-Request-ID` echoes the agent's.
    """
    given = list(upstream)
    drop = _RESPONSE_DROP | _connection_tokens(given)
    out: Headers = []
    for name, value in given:
        low = name.lower()
        if low == "x-request-id":
            out.append(("X-Upstream-Request-ID", value))
        elif low not in drop:
            out.append((name, value))
    out.append(("X-Request-ID", request_id))
    return out


def clean_query(raw_query: str, *, drop_key: bool) -> str:
    """A raw (still percent-encoded) query without the parameters that carry a credential:
    `key` (Gemini's, when `drop_key`) and any holding the placeholder; the rest unchanged."""
    if not raw_query or (not drop_key and "%" not in raw_query
                         and PLACEHOLDER not in raw_query):
        return raw_query
    kept = []
    for part in raw_query.split("&"):
        name = _param_name(part)
        if drop_key and name == "key":
            continue
        if PLACEHOLDER in part or PLACEHOLDER in unquote_plus(part):
            continue
        kept.append(part)
    return "&".join(kept)


def _param_name(part: str) -> str:
    return unquote_plus(part.split("=", 1)[0])


_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def request_id(given: str | None, make: Callable[[], str]) -> str:
    """The client's X-Request-ID if it is 1-128 token characters (RFC 9110), else a new one."""
    if given and len(given) <= MAX_REQUEST_ID and _TCHAR.issuperset(given):
        return given
    return make()
