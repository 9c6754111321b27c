"""sniff(): TLS or HTTP, and the name asked for, from a transparent connection's first bytes."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.errors import BadRequest, HeadTooLarge
from proxy.sni import BadClientHello, NotTls
from proxy.sniff import MAX_SNIFF, Sniffed, Sniffer, sniff
from tests.unit.sni_hellos import (
    CAPTURED,
    NAME,
    alpn_ext,
    hello,
    python_hello,
    records,
    sni_ext,
    split_records,
)

Outcome = Sniffed | None | type[Exception]


def outcome(data: bytes, max_bytes: int = MAX_SNIFF) -> Outcome:
    try:
        return sniff(data, max_bytes=max_bytes)
    except BadRequest as exc:  # BadClientHello and NotTls included; anything else fails
        return type(exc)


def assert_prefixes_wait(data: bytes, step: int = 1) -> None:
    for k in range(0, len(data), step):
        assert sniff(data[:k]) is None, k


# --- TLS ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "host"),
    [
        pytest.param(python_hello(alpn=["h2"]), NAME, id="python"),
        pytest.param(python_hello(None), None, id="python-no-sni"),
        pytest.param(CAPTURED["curl_default"], NAME, id="curl"),
        pytest.param(CAPTURED["openssl_tls12"], NAME, id="openssl-tls12"),
        pytest.param(CAPTURED["openssl_noservername"], None, id="openssl-no-sni"),
        pytest.param(
            hello(sni_ext(b"Mixed.Case.TEST.") + alpn_ext(b"h2")), "Mixed.Case.TEST.", id="raw"
        ),
    ],
)
def test_tls(data: bytes, host: str | None) -> None:
    assert sniff(data) == Sniffed("tls", host)
    assert sniff(data + b"\x14\x03\x03\x00\x01\x01" + b"GET / HTTP/1.1\r\n") == Sniffed("tls", host)
    assert_prefixes_wait(data)


def test_tls_fragmented_over_records() -> None:
    hs, _ = split_records(python_hello())
    data = records(hs, [3] * 200)
    assert sniff(data) == Sniffed("tls", NAME)
    assert_prefixes_wait(data, step=5)


def test_tls_broken_hello() -> None:
    with pytest.raises(BadClientHello, match="several host names"):
        sniff(hello(sni_ext(b"a.test", b"b.test")))
    with pytest.raises(NotTls):
        sniff(b"\x16\x02\x00")


def test_tls_not_complete_within_max_bytes() -> None:
    data = python_hello()
    with pytest.raises(BadClientHello, match="first 100 bytes"):
        sniff(data, max_bytes=100)
    assert sniff(data[:99], max_bytes=100) is None
    assert sniff(data, max_bytes=len(data)) == Sniffed("tls", NAME)
    # a legal hello cut into 1-byte records no longer fits the default 16 KiB peek
    hs, _ = split_records(python_hello(alpn=["x" * 200] * 20))
    slow = records(hs, [1] * len(hs))
    assert len(slow) > MAX_SNIFF
    assert sniff(slow[: MAX_SNIFF - 1]) is None
    with pytest.raises(BadClientHello, match=f"first {MAX_SNIFF} bytes"):
        sniff(slow)


# --- HTTP ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "host"),
    [
        (b"GET / HTTP/1.1\r\nHost: api.example.test\r\n\r\n", NAME),
        (
            b"GET /x?y HTTP/1.1\r\nUser-Agent: t\r\nhost: A.Example.test:8080\r\n\r\n",
            "A.Example.test",
        ),
        (b"POST /p HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc", "a.test"),
        (b"\r\n\r\nGET / HTTP/1.1\r\nHost: a.test\r\n\r\n", "a.test"),
        (b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", "::1"),
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "127.0.0.1"),
        ("GET / HTTP/1.1\r\nHost: bücher.test\r\n\r\n".encode(), "bücher.test"),
        (b"GET / HTTP/1.0\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\nHost: \r\n\r\n", None),
        (b"OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n", "a.test"),
    ],
)
def test_http(head: bytes, host: str | None) -> None:
    assert sniff(head) == Sniffed("http", host)
    assert sniff(head + b"GET /next HTTP/1.1\r\n") == Sniffed("http", host)
    assert_prefixes_wait(head[: head.index(b"\r\n\r\n", 4) + 4])


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET / HTTP/1.1\nHost: a.test\n\n", id="bare-lf"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", id="two-hosts"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a.test:99999\r\n\r\n", id="bad-port"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a.test:http\r\n\r\n", id="named-port"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: user@a.test\r\n\r\n", id="userinfo"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a.test/x\r\n\r\n", id="slash-in-host"),
        pytest.param(b"SSH-2.0-OpenSSH_9.2p1\r\n", id="ssh"),
        pytest.param(b"\x05\x01\x00", id="socks5"),
        pytest.param(b"\x04\x01\x00\x50", id="socks4"),
        pytest.param(b"\x00", id="nul"),
        pytest.param(b" GET / HTTP/1.1\r\n", id="leading-space"),
        pytest.param(b"GET\t/ HTTP/1.1\r\n", id="tab-after-method"),
        pytest.param(b"\x80\x2e\x01\x00\x02", id="sslv2-hello"),
        pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", id="h2-preface"),
    ],
)
def test_neither_or_broken_http(data: bytes) -> None:
    with pytest.raises(BadRequest):
        sniff(data)


def test_http_head_over_max_bytes() -> None:
    head = b"GET / HTTP/1.1\r\nHost: a.test\r\nX: " + b"y" * MAX_SNIFF + b"\r\n\r\n"
    assert sniff(head[:1000]) is None
    with pytest.raises(HeadTooLarge):
        sniff(head)
    small = b"GET / HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\n\r\n"
    with pytest.raises(BadRequest):
        sniff(small, max_bytes=len(small) - 1)
    assert sniff(small, max_bytes=len(small)) == Sniffed("http", "a.test")


def test_empty_needs_more() -> None:
    assert sniff(b"") is None


# --- properties ---------------------------------------------------------------------------

SEEDS = [
    python_hello(alpn=["h2"]),
    CAPTURED["openssl_tls13_alpn"],
    b"GET / HTTP/1.1\r\nHost: a.test:81\r\nAccept: */*\r\n\r\n",
    b"POST http://a.test/x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
]


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_only_raise_bad_request(data: bytes) -> None:
    outcome(data)
    outcome(b"GET / HTTP/1.1\r\n" + data)
    outcome(data, max_bytes=64)


@settings(max_examples=200)
@given(st.sampled_from(SEEDS), st.data())
def test_chunking_never_changes_the_answer(seed: bytes, draw: st.DataObject) -> None:
    data = bytearray(seed)
    for _ in range(draw.draw(st.integers(0, 3))):
        at = draw.draw(st.integers(0, len(data) - 1))
        data[at : at + draw.draw(st.integers(0, 3))] = draw.draw(st.binary(max_size=4))
    whole = outcome(bytes(data))
    for k in range(0, len(data), max(1, len(data) // 60)):
        got = outcome(bytes(data[:k]))
        assert got is None or got == whole, (k, got, whole)


def feed_in_pieces(data: bytes, cuts: list[int], max_bytes: int = MAX_SNIFF) -> Outcome:
    sniffer = Sniffer(max_bytes=max_bytes)
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    try:
        for a, b in itertools.pairwise(bounds):
            got = sniffer.feed(data[a:b])
            if got is not None:
                assert sniffer.feed(b"more") == got
                return got
    except BadRequest as exc:
        return type(exc)
    return None


@settings(max_examples=200)
@given(st.sampled_from(SEEDS), st.data(), st.lists(st.integers(0, 3000)))
def test_sniffer_fed_in_pieces_matches_sniff(seed: bytes, draw: st.DataObject, cuts: list[int]):
    data = bytearray(seed)
    for _ in range(draw.draw(st.integers(0, 3))):
        at = draw.draw(st.integers(0, len(data) - 1))
        data[at : at + draw.draw(st.integers(0, 3))] = draw.draw(st.binary(max_size=4))
    assert feed_in_pieces(bytes(data), cuts) == outcome(bytes(data))
    assert feed_in_pieces(bytes(data), cuts, max_bytes=64) == outcome(bytes(data), max_bytes=64)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: a.test\r\nX: " + b"y" * MAX_SNIFF, id="http"),
        pytest.param(
            records(split_records(python_hello(alpn=["x" * 200] * 20))[0], [1] * 5000), id="tls"
        ),
    ],
)
def test_sniffer_byte_by_byte_is_linear(data: bytes) -> None:
    """16 KiB in one-byte pieces: about 0.1 s when linear, several seconds when quadratic."""
    sniffer = Sniffer()

    def feed_bytewise() -> None:
        for i in range(len(data)):
            sniffer.feed(data[i : i + 1])

    start = time.perf_counter()
    with pytest.raises(BadRequest, match=f"{MAX_SNIFF}"):
        feed_bytewise()
    assert time.perf_counter() - start < 1.5


def test_sniffer_rejects_a_tiny_peek() -> None:
    with pytest.raises(ValueError, match="too small"):
        Sniffer(max_bytes=8)
