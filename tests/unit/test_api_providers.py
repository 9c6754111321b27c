"""proxy/api/providers.py: what crosses the sidecar, as tables."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.api.providers import (
    BY_NAME,
    PLACEHOLDER,
    Credential,
    ProviderName,
    Target,
    auth_headers,
    clean_query,
    credential_for,
    downstream_headers,
    request_id,
    upstream_headers,
)
from proxy.errors import ConfigError

OPENAI = BY_NAME[ProviderName.OPENAI]
ANTHROPIC = BY_NAME[ProviderName.ANTHROPIC]
COPILOT = BY_NAME[ProviderName.COPILOT]
GEMINI = BY_NAME[ProviderName.GEMINI]
SECRET = "sk-real"

CLIENT = [
    ("Host", "172.30.0.30:10000"),
    ("Authorization", f"Bearer {PLACEHOLDER}"),
    ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
    ("x-api-key", PLACEHOLDER),
    ("X-Goog-Api-Key", PLACEHOLDER),
    ("api-key", PLACEHOLDER),
    ("Forwarded", "for=1.2.3.4;host=evil.test"),
    ("Via", "1.1 somewhere"),
    ("X-Forwarded-For", "1.2.3.4"),
    ("X-Forwarded-Host", "evil.test"),
    ("Connection", "keep-alive, X-Secret-Hop"),
    ("X-Secret-Hop", "drop me"),
    ("Keep-Alive", "timeout=5"),
    ("Transfer-Encoding", "chunked"),
    ("Content-Length", "99"),
    ("TE", "trailers"),
    ("Upgrade", "websocket"),
    ("Expect", "100-continue"),
    ("X-Custom", f"has {PLACEHOLDER} inside"),
    ("X-Request-ID", "client-id"),
    ("Content-Type", "application/json"),
    ("OpenAI-Beta", "assistants=v2"),
    ("Accept", "text/event-stream"),
]


def names(headers: list[tuple[str, str]]) -> list[str]:
    return [n.lower() for n, _ in headers]


@pytest.mark.parametrize(("provider", "auth"), [
    (OPENAI, [("Authorization", f"Bearer {SECRET}")]),
    (ANTHROPIC, [("x-api-key", SECRET), ("anthropic-version", "2023-06-01")]),
    (COPILOT, [("Authorization", f"Bearer {SECRET}"),
               ("Copilot-Integration-Id", "copilot-developer-cli")]),
    (GEMINI, [("x-goog-api-key", SECRET)]),
])
def test_upstream_headers_strip_then_inject(provider, auth) -> None:
    cred = credential_for(provider, {provider.key_names[0]: SECRET})
    assert cred is not None
    out = upstream_headers(provider, cred, CLIENT, "rid-1", 12)
    assert out == [
        ("Content-Type", "application/json"),
        ("OpenAI-Beta", "assistants=v2"),
        ("Accept", "text/event-stream"),
        *auth,
        ("Content-Length", "12"),
        ("X-Request-ID", "rid-1"),
    ]
    assert all(PLACEHOLDER not in v for _, v in out)


def test_no_declared_length_means_no_content_length() -> None:
    out = upstream_headers(OPENAI, Credential("OPENAI_API_KEY", SECRET), CLIENT, "r", None)
    assert "content-length" not in names(out)


def test_client_versions_are_kept() -> None:
    cred = Credential("ANTHROPIC_API_KEY", SECRET)
    out = upstream_headers(ANTHROPIC, cred, [("anthropic-version", "2024-01-01")], "r", None)
    assert ("anthropic-version", "2024-01-01") in out
    assert names(out).count("anthropic-version") == 1
    out = upstream_headers(COPILOT, Credential("COPILOT_GITHUB_TOKEN", SECRET),
                           [("copilot-integration-id", "vscode-chat")], "r", None)
    assert names(out).count("copilot-integration-id") == 1


@pytest.mark.parametrize(("keys", "expected"), [
    ({"OPENAI_API_KEY": "a", "CODEX_API_KEY": "b"}, ("OPENAI_API_KEY", "a")),
    ({"CODEX_API_KEY": "b"}, ("CODEX_API_KEY", "b")),
    ({"ANTHROPIC_API_KEY": "x"}, None),
    ({}, None),
])
def test_openai_credential(keys, expected) -> None:
    cred = credential_for(OPENAI, keys)
    assert (None if cred is None else (cred.name, cred.secret)) == expected


def test_claude_oauth_token_is_a_bearer_token() -> None:
    cred = credential_for(ANTHROPIC, {"CLAUDE_CODE_OAUTH_TOKEN": "oat"})
    assert cred is not None
    out = upstream_headers(ANTHROPIC, cred, [], "r", None)
    assert ("Authorization", "Bearer oat") in out
    assert "x-api-key" not in names(out)


def test_credential_repr_hides_the_secret() -> None:
    assert SECRET not in repr(Credential("OPENAI_API_KEY", SECRET))


def test_downstream_headers() -> None:
    out = downstream_headers([
        ("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked"),
        ("Connection", "close, X-Hop"), ("X-Hop", "1"), ("x-request-id", "req_openai"),
        ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Content-Encoding", "gzip"),
    ], "rid")
    assert out == [
        ("Content-Type", "text/event-stream"), ("X-Upstream-Request-ID", "req_openai"),
        ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Content-Encoding", "gzip"),
        ("X-Request-ID", "rid"),
    ]


@pytest.mark.parametrize(("query", "expected"), [
    ("", ""),
    ("key=abc", ""),
    ("alt=sse&key=abc", "alt=sse"),
    ("key=abc&alt=sse&key=def", "alt=sse"),
    ("k%65y=abc&alt=sse", "alt=sse"),
    ("KEY=abc", "KEY=abc"),
    ("keys=1&monkey=2&key", "keys=1&monkey=2"),
    ("a=%2F&b=c+d", "a=%2F&b=c+d"),
    (f"alt=sse&token={PLACEHOLDER}", "alt=sse"),
    ("t=placeholder%2Dtoken%2Dfor%2Dcredential%2Disolation&a=1", "a=1"),
])
def test_clean_query_for_gemini(query: str, expected: str) -> None:
    assert clean_query(query, drop_key=True) == expected


@pytest.mark.parametrize(("query", "expected"), [
    ("key=abc&alt=sse", "key=abc&alt=sse"),
    (f"key={PLACEHOLDER}&alt=sse", "alt=sse"),
    ("a=%2F&b=c+d", "a=%2F&b=c+d"),
])
def test_clean_query_for_the_others(query: str, expected: str) -> None:
    assert clean_query(query, drop_key=False) == expected


@pytest.mark.parametrize(("given", "expected"), [
    ("abc-123_x.y", "abc-123_x.y"),
    ("a" * 128, "a" * 128),
    ("a" * 129, "new"),
    ("", "new"),
    (None, "new"),
    ("has space", "new"),
    ("x\r\nInjected: 1", "new"),
    ("ünicode", "new"),
    ("a,b", "new"),
])
def test_request_id(given: str | None, expected: str) -> None:
    assert request_id(given, lambda: "new") == expected


@pytest.mark.parametrize(("text", "host", "port", "netloc"), [
    ("api.openai.com", "api.openai.com", 443, "api.openai.com"),
    ("API.OpenAI.com.", "api.openai.com", 443, "api.openai.com"),
    ("127.0.0.1:9443", "127.0.0.1", 9443, "127.0.0.1:9443"),
    ("[::1]:8443", "::1", 8443, "[::1]:8443"),
    ("[::1]", "::1", 443, "[::1]"),
    ("proxy.example.test:443", "proxy.example.test", 443, "proxy.example.test"),
])
def test_target_parse(text: str, host: str, port: int, netloc: str) -> None:
    t = Target.parse(text, flag="--openai-api-target")
    assert (t.host, t.port, t.netloc) == (host, port, netloc)


@pytest.mark.parametrize(("target", "path", "query", "url"), [
    (Target("api.openai.com"), "/v1/chat/completions", "", "https://api.openai.com/v1/chat/completions"),
    (Target("::1", 8443), "/v1/x%2Fy", "a=%20b", "https://[::1]:8443/v1/x%2Fy?a=%20b"),
    (Target("127.0.0.1", 9000), "//evil.test/x", "", "https://127.0.0.1:9000//evil.test/x"),
])
def test_target_url(target: Target, path: str, query: str, url: str) -> None:
    built = target.url(path, query)
    assert str(built) == url
    assert built.host == target.host
    assert built.port == target.port


@pytest.mark.parametrize("path", ["http://evil.test/x", "evil.test:443", "*", ""])
def test_target_url_needs_a_path(path: str) -> None:
    with pytest.raises(ValueError, match="origin-form"):
        Target("api.openai.com").url(path, "")


@pytest.mark.parametrize("text", [
    "https://api.openai.com", "api.openai.com/v1", "user@host", "", "host:", "host:0",
    "host:70000", "host:x", "::1", "[::1", "bad_host!", "[::1]x",
])
def test_target_parse_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="--openai-api-target"):
        Target.parse(text, flag="--openai-api-target")


_NAMES = st.sampled_from([
    "Authorization", "authorization", "PROXY-AUTHORIZATION", "x-api-key", "X-Goog-Api-Key",
    "api-key", "Host", "Forwarded", "Via", "X-Forwarded-Proto", "x-forwarded-anything",
    "Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "TE", "Trailer",
    "Content-Type", "Accept", "X-Custom", "OpenAI-Organization", "X-Request-ID",
])
_VALUES = st.one_of(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E),
                            max_size=30),
                    st.just(PLACEHOLDER), st.just(f"Bearer {PLACEHOLDER}"))


@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=20),
       st.sampled_from([OPENAI, ANTHROPIC, COPILOT, GEMINI]))
def test_no_client_auth_or_placeholder_ever_leaves(client, provider) -> None:
    cred = credential_for(provider, {provider.key_names[0]: SECRET})
    assert cred is not None
    out = upstream_headers(provider, cred, client, "rid", None)
    assert all(PLACEHOLDER not in v for _, v in out)
    sent = names(out)
    for name in ("host", "proxy-authorization", "forwarded", "via", "connection",
                 "keep-alive", "transfer-encoding", "upgrade", "te", "trailer"):
        assert name not in sent
    assert not any(n.startswith("x-forwarded-") for n in sent)
    auth = [(n.lower(), v) for n, v in out
            if n.lower() in ("authorization", "x-api-key", "x-goog-api-key", "api-key")]
    assert auth == [(n.lower(), v) for n, v in auth_headers(provider, cred)]
    assert sent.count("x-request-id") == 1


@given(st.lists(st.tuples(st.sampled_from(["key", "k%65y", "alt", "KEY", "q", "key+"]),
                          st.sampled_from(["", "v", PLACEHOLDER, "a%20b"])), max_size=8))
def test_clean_query_never_lets_a_gemini_key_or_the_placeholder_through(params) -> None:
    query = "&".join(f"{k}={v}" for k, v in params)
    out = clean_query(query, drop_key=True)
    assert PLACEHOLDER not in out
    for part in out.split("&") if out else []:
        assert part.split("=", 1)[0] not in ("key", "k%65y")
