"""proxy/api/usage.py: token counts from whole and chunked bodies, never from text."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.api.providers import BY_NAME, ProviderName
from proxy.api.usage import UsageMeter


def meter(provider: ProviderName, encoding: str = "") -> UsageMeter:
    p = BY_NAME[provider]
    return UsageMeter(p.input_fields, p.output_fields, encoding)


def sse(*events: object) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


OPENAI_SSE = sse(
    {"choices": [{"delta": {"content": '"prompt_tokens": 999, "completion_tokens":5'}}],
     "usage": None},
    {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7,
                              "prompt_tokens_details": {"cached_tokens": 3}}},
) + b"data: [DONE]\n\n"
ANTHROPIC_SSE = (
    b"event: message_start\n" + sse({"type": "message_start", "message": {
        "usage": {"input_tokens": 25, "cache_creation_input_tokens": 100, "output_tokens": 1}}})
    + b"event: content_block_delta\n" + sse({"delta": {"text": 'x "input_tokens": 1'}})
    + b"event: message_delta\n" + sse({"type": "message_delta", "usage": {"output_tokens": 15}})
)
GEMINI_STREAM = sse(
    {"usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 2}},
    {"usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 6}},
)
CASES = [
    (ProviderName.OPENAI, OPENAI_SSE, (11, 7)),
    (ProviderName.OPENAI, json.dumps({"usage": {"prompt_tokens": 5,
                                                "completion_tokens": 3}}).encode(), (5, 3)),
    (ProviderName.OPENAI, b'{"usage":{"input_tokens":40,"output_tokens":2}}', (40, 2)),
    (ProviderName.ANTHROPIC, ANTHROPIC_SSE, (25, 15)),
    (ProviderName.ANTHROPIC, b'{"usage": {"input_tokens" : 9 ,\n "output_tokens":\t4}}', (9, 4)),
    (ProviderName.GEMINI, GEMINI_STREAM, (12, 6)),
    (ProviderName.GEMINI, b'[{"usageMetadata":{"promptTokenCount":3}}]', (3, None)),
    (ProviderName.COPILOT, b'{"usage":{"prompt_tokens":8,"completion_tokens":1}}', (8, 1)),
    (ProviderName.OPENAI, b'{"text":"\\"prompt_tokens\\":5"}', (None, None)),
    (ProviderName.OPENAI, b"not json at all", (None, None)),
    (ProviderName.OPENAI, b'{"usage":{"prompt_tokens":12', (12, None)),  # cut short: last value
]


def run(provider: ProviderName, chunks: list[bytes], encoding: str = "") -> tuple[
        int | None, int | None]:
    m = meter(provider, encoding)
    for c in chunks:
        m.feed(c)
    m.finish()
    return m.input_tokens, m.output_tokens


@pytest.mark.parametrize(("provider", "body", "expected"), CASES)
def test_whole_and_byte_by_byte(provider, body: bytes, expected) -> None:
    assert run(provider, [body]) == expected
    assert run(provider, [body[i:i + 1] for i in range(len(body))]) == expected


@given(st.data())
def test_any_chunking_gives_the_same_counts(data: st.DataObject) -> None:
    provider, body, expected = data.draw(st.sampled_from(CASES))
    padding = data.draw(st.integers(0, 300))
    body = b" " * padding + body  # move the members across the carry boundary
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=20)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    assert run(provider, chunks) == expected


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies_are_read(encoding: str) -> None:
    body = b'{"pad":"' + b"x" * 500_000 + b'","usage":{"prompt_tokens":5,"completion_tokens":3}}'
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    chunks = [packed[i:i + 1000] for i in range(0, len(packed), 1000)]
    assert run(ProviderName.OPENAI, chunks, encoding) == (5, 3)


def test_unknown_encoding_and_corrupt_gzip_give_none() -> None:
    body = b'{"usage":{"prompt_tokens":5}}'
    assert run(ProviderName.OPENAI, [body], "br") == (None, None)
    assert run(ProviderName.OPENAI, [b"\x1f\x8bnot gzip"], "gzip") == (None, None)


@pytest.mark.parametrize(("content_type", "applies"), [
    ("application/json", True), ("application/json; charset=utf-8", True),
    ("text/event-stream", True), ("application/problem+json", True),
    ("application/octet-stream", False), ("text/plain", False), ("", False),
])
def test_applies(content_type: str, applies: bool) -> None:
    assert UsageMeter.applies(content_type) is applies
