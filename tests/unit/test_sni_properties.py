"""Properties of parse_client_hello: only its own errors, and chunking never changes the result."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.sni import (
    BadClientHello,
    ClientHelloInfo,
    ClientHelloReader,
    NotTls,
    parse_client_hello,
)
from tests.unit.sni_hellos import (
    CAPTURED,
    alpn_ext,
    hello,
    python_hello,
    records,
    sni_ext,
    split_records,
)

Outcome = ClientHelloInfo | None | type[Exception]

REAL = [*CAPTURED.values(), python_hello(alpn=["h2", "http/1.1"]), python_hello(None)]
HAND = [hello(sni_ext(b"a.test") + alpn_ext(b"h2")), hello(None)]


def outcome(data: bytes) -> Outcome:
    try:
        return parse_client_hello(data)
    except (NotTls, BadClientHello) as exc:  # anything else propagates and fails the test
        return type(exc)


def check_prefixes(data: bytes, step: int = 1) -> None:
    whole = outcome(data)
    for k in range(0, len(data), step):
        got = outcome(data[:k])
        assert got is None or got == whole, (k, got, whole)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real or hand-made hello with a few bytes replaced, inserted or deleted."""
    data = bytearray(draw(st.sampled_from(REAL + HAND)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["set", "insert", "delete", "ff"]))
        if op == "set":
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "ff":
            data[at : at + 2] = b"\xff\xff"
        else:
            del data[at : at + draw(st.integers(1, 8))]
    return bytes(data)


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_only_raise_our_errors(data: bytes) -> None:
    outcome(data)
    outcome(b"\x16\x03\x01" + data)
    outcome(b"\x16\x03\x01" + len(data).to_bytes(2, "big") + b"\x01" + data)


@settings(max_examples=200)
@given(mutated())
def test_mutated_hellos_only_raise_our_errors_and_chunk_consistently(data: bytes) -> None:
    check_prefixes(data, step=max(1, len(data) // 97))


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_chunking_arbitrary_tls_like_bytes(tail: bytes) -> None:
    check_prefixes(b"\x16\x03\x01" + tail)


@settings(max_examples=100)
@given(st.sampled_from(REAL + HAND), st.lists(st.integers(1, 300), max_size=40), st.binary())
def test_any_record_fragmentation_gives_the_same_hello(
    data: bytes, sizes: list[int], after: bytes
) -> None:
    length = data[3] << 8 | data[4]
    expected = parse_client_hello(data)
    assert expected is not None
    refragmented = records(data[5 : 5 + length], sizes)
    assert parse_client_hello(refragmented + after) == expected
    check_prefixes(refragmented, step=7)


def feed_in_pieces(data: bytes, cuts: list[int]) -> Outcome:
    reader = ClientHelloReader()
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    try:
        for a, b in itertools.pairwise(bounds):
            got = reader.feed(data[a:b])
            if got is not None:
                return got
    except (NotTls, BadClientHello) as exc:
        return type(exc)
    return None


@settings(max_examples=200)
@given(st.one_of(mutated(), st.sampled_from(REAL + HAND)), st.lists(st.integers(0, 2000)))
def test_reader_fed_in_pieces_matches_the_whole(data: bytes, cuts: list[int]) -> None:
    assert feed_in_pieces(data, cuts) == outcome(data)


def test_reader_byte_by_byte_over_one_byte_records() -> None:
    hs, _ = split_records(python_hello(alpn=["x" * 200] * 10))
    data = records(hs, [1] * len(hs))
    assert feed_in_pieces(data, list(range(len(data)))) == outcome(data)
    assert isinstance(outcome(data), ClientHelloInfo)
