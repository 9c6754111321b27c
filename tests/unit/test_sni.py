"""parse_client_hello on real ClientHellos (Python ssl, openssl s_client, curl) and broken ones."""

from __future__ import annotations

import ssl

import pytest

from proxy.errors import BadRequest
from proxy.sni import (
    MAX_HELLO,
    BadClientHello,
    ClientHelloInfo,
    NotTls,
    looks_like_tls,
    parse_client_hello,
)
from tests.unit.sni_hellos import (
    CAPTURED,
    NAME,
    alpn_ext,
    ext,
    handshake,
    hello,
    hello_body,
    python_hello,
    records,
    sni_ext,
    split_records,
    u16,
)

TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3


# --- real clients -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "sni", "alpn"),
    [
        pytest.param(python_hello(), NAME, (), id="python-default"),
        pytest.param(python_hello(alpn=["h2", "http/1.1"]), NAME, (b"h2", b"http/1.1"), id="alpn"),
        pytest.param(python_hello(maximum=TLS12), NAME, (), id="python-tls12-only"),
        pytest.param(python_hello(minimum=TLS13), NAME, (), id="python-tls13-only"),
        pytest.param(python_hello(None), None, (), id="python-no-sni"),
        pytest.param(python_hello("API.Example.TEST."), "API.Example.TEST.", (), id="raw-case-dot"),
        pytest.param(python_hello("xn--bcher-kva.test"), "xn--bcher-kva.test", (), id="a-label"),
        pytest.param(CAPTURED["openssl_tls13_alpn"], NAME, (b"h2", b"http/1.1"), id="openssl-13"),
        pytest.param(CAPTURED["openssl_tls12"], NAME, (), id="openssl-12"),
        pytest.param(CAPTURED["openssl_noservername"], None, (), id="openssl-no-sni"),
        pytest.param(CAPTURED["curl_default"], NAME, (b"h2", b"http/1.1"), id="curl"),
        pytest.param(CAPTURED["curl_tls12"], NAME, (b"h2", b"http/1.1"), id="curl-tls12"),
    ],
)
def test_real_hello(data: bytes, sni: str | None, alpn: tuple[bytes, ...]) -> None:
    assert parse_client_hello(data) == ClientHelloInfo(sni, alpn, 0x0303)
    # every strict prefix asks for more, and bytes after the hello change nothing
    for k in range(len(data)):
        assert parse_client_hello(data[:k]) is None
    ccs = bytes.fromhex("140303000101")
    assert parse_client_hello(data + ccs + b"\x17\x03\x03\x00\x05hello") == parse_client_hello(data)


@pytest.mark.parametrize("sizes", [[1] * 600, [2] * 300, [3, 1, 4, 1, 5], [7] * 90, [100], [200]])
def test_hello_fragmented_over_records(sizes: list[int]) -> None:
    whole = python_hello(alpn=["h2"])
    hs, _ = split_records(whole)
    data = records(hs, sizes)
    assert data.count(b"\x16\x03\x01") >= 2
    assert (
        parse_client_hello(data)
        == parse_client_hello(whole)
        == ClientHelloInfo(NAME, (b"h2",), 0x0303)
    )
    for k in range(len(data)):
        assert parse_client_hello(data[:k]) is None


def test_tls13_record_version_accepted() -> None:
    hs, _ = split_records(python_hello())
    assert parse_client_hello(records(hs, version=b"\x03\x03")) == ClientHelloInfo(NAME, (), 0x0303)


def test_large_real_hello_within_cap() -> None:
    names = [f"p{i:04d}-" + "x" * 90 for i in range(90)]  # ~8.6 KiB of ALPN
    data = python_hello(alpn=names)
    info = parse_client_hello(data)
    assert info is not None
    assert info.sni == NAME
    assert info.alpn == tuple(n.encode() for n in names)


def test_real_hello_over_cap_is_rejected() -> None:
    names = [f"p{i:04d}-" + "x" * 200 for i in range(300)]  # ~62 KiB: OpenSSL splits it in records
    data = python_hello(alpn=names)
    assert len(data) > 2 * MAX_HELLO
    with pytest.raises(BadClientHello, match="cap"):
        parse_client_hello(data[:9])  # the handshake header alone condemns it


# --- hand-made ----------------------------------------------------------------------------


def test_hand_made_minimal_and_without_extensions() -> None:
    assert parse_client_hello(hello(sni_ext(b"a.test"))) == ClientHelloInfo("a.test", (), 0x0303)
    assert parse_client_hello(hello(None)) == ClientHelloInfo(None, (), 0x0303)
    assert parse_client_hello(hello(b"")) == ClientHelloInfo(None, (), 0x0303)
    assert parse_client_hello(hello(None, version=0x0300)) == ClientHelloInfo(None, (), 0x0300)
    unknown = ext(0xFE0D, b"\x00" * 40) + ext(43, b"\x02\x03\x04")
    assert parse_client_hello(hello(unknown + sni_ext(b"x.test") + alpn_ext(b"h2"))) == (
        ClientHelloInfo("x.test", (b"h2",), 0x0303)
    )
    assert parse_client_hello(hello(sni_ext(b"127.0.0.1"))) == ClientHelloInfo(
        "127.0.0.1", (), 0x0303
    )  # an IP literal is the policy's business


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",
        b"\x17\x03\x03\x00\x10",
        b"\x15",
        b"\x80\x2e\x01\x00\x02",  # SSLv2-style hello
        b"\x16\x02",
        b"\x16\x03\x04",
        b"\x16\x04\x01\x00\x05",
        b"\x00",
    ],
)
def test_not_tls(data: bytes) -> None:
    assert not looks_like_tls(data)
    with pytest.raises(NotTls):
        parse_client_hello(data)


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        (b"", False),
        (b"\x16", True),
        (b"\x16\x03", True),
        (b"\x16\x03\x00", True),
        (b"\x16\x03\x01\x02\x00", True),
        (b"\x16\x03\x03", True),
        (b"\x16\x03\x04", False),
        (b"\x16\x02\x01", False),
        (b"G", False),
    ],
)
def test_looks_like_tls(first: bytes, expected: bool) -> None:
    assert looks_like_tls(first) is expected


def _body_hs(exts: bytes | None, **kw: int) -> bytes:
    return handshake(hello_body(exts, version=kw.get("version", 0x0303)))


GOOD = hello(sni_ext(b"a.test"))
GOOD_HS, _ = split_records(GOOD)


def _patch(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + len(new) :]


BAD_CASES: list[tuple[str, bytes, str]] = [
    ("record-len-0", b"\x16\x03\x01\x00\x00", "record length 0"),
    ("record-len-too-big", b"\x16\x03\x01\x40\x01" + GOOD_HS, "record length 16385"),
    ("record-len-ffff", b"\x16\x03\x01\xff\xff" + GOOD_HS, "record length 65535"),
    ("not-client-hello", records(handshake(hello_body(None), msg_type=2)), "message type 2"),
    ("hello-over-cap", b"\x16\x03\x01\x00\x04\x01\x00\x40\x01", "cap"),
    ("hello-ffffff", b"\x16\x03\x01\x00\x04\x01\xff\xff\xff", "cap"),
    ("alert-mid-hello", records(GOOD_HS[:10]) + b"\x15\x03\x01\x00\x02\x02\x28", "interrupts"),
    ("bad-version-mid-hello", records(GOOD_HS[:10]) + b"\x16\x04\x01", "interrupts"),
    ("stray-after-hello", records(GOOD_HS + b"\x00"), "stray"),
    ("stray-record-len", b"\x16\x03\x01" + u16(len(GOOD_HS) + 9) + GOOD_HS, "stray"),
    ("short-hello", records(handshake(b"\x03\x03" + bytes(20))), "too short"),
    ("legacy-version-2", records(_body_hs(None, version=0x0200)), "not 03xx"),
    ("session-id-33", records(handshake(hello_body(None, sid=bytes(33)))), "session id"),
    ("odd-suites", records(handshake(hello_body(None, suites=b"\x13\x01\x13"))), "cipher_suites"),
    ("no-suites", records(handshake(hello_body(None, suites=b""))), "cipher_suites"),
    ("no-compression", records(handshake(hello_body(None, comp=b""))), "compression"),
    (
        "suites-past-end",
        records(handshake(u16(0x0303) + bytes(32) + b"\x00" + b"\xff\xfe\x13\x01")),
        "before compression",
    ),
    (
        "compression-past-end",
        records(handshake(u16(0x0303) + bytes(32) + b"\x00\x00\x02\x13\x01\x09\x00")),
        "past the end",
    ),
    (
        "extensions-len-short",
        records(handshake(hello_body(None) + u16(3) + sni_ext(b"a.test"))),
        "disagrees",
    ),
    (
        "extensions-len-long",
        records(handshake(hello_body(None) + u16(0xFFFF) + sni_ext(b"a.test"))),
        "disagrees",
    ),
    ("extensions-len-torn", records(handshake(hello_body(None) + b"\x00")), "before extensions"),
    ("ext-header-torn", hello(b"\x00\x00\x00"), "truncated extension"),
    ("ext-past-end", hello(b"\x00\x10\x00\x09\x00\x03\x02h2"), "runs past the end"),
    ("duplicate-sni-ext", hello(sni_ext(b"a.test") + sni_ext(b"evil.test")), "twice"),
    ("duplicate-other-ext", hello(ext(43, b"\x02\x03\x04") * 2), "twice"),
    ("two-host-names", hello(sni_ext(b"a.test", b"evil.test")), "several host names"),
    ("same-host-twice", hello(sni_ext(b"a.test", b"a.test")), "several host names"),
    ("name-type-1", hello(sni_ext(b"a.test", name_type=1)), "not host_name"),
    (
        "host-then-type-1",
        hello(ext(0, u16(14) + b"\x00\x00\x04a.tt\x01\x00\x04b.tt")),
        "not host_name",
    ),
    ("empty-name", hello(sni_ext(b"")), "zero"),
    ("empty-list", hello(ext(0, u16(0))), "server_name list"),
    ("empty-sni-ext", hello(ext(0, b"")), "server_name list"),
    ("list-len-long", hello(ext(0, u16(20) + b"\x00\x00\x06a.test")), "server_name list"),
    ("list-len-short", hello(ext(0, u16(4) + b"\x00\x00\x06a.test")), "server_name list"),
    ("name-len-ffff", hello(ext(0, u16(9) + b"\x00\xff\xffa.test")), "past the end"),
    ("entry-torn", hello(ext(0, u16(10) + b"\x00\x00\x06a.test\x00")), "truncated"),
    ("utf8-name", hello(sni_ext("bücher.test".encode())), "printable ASCII"),
    ("latin1-name", hello(sni_ext(b"b\xfccher.test")), "printable ASCII"),
    ("nul-in-name", hello(sni_ext(b"a.test\x00.evil.test")), "printable ASCII"),
    ("space-in-name", hello(sni_ext(b"a.test evil.test")), "printable ASCII"),
    ("crlf-in-name", hello(sni_ext(b"a.test\r\nX: y")), "printable ASCII"),
    ("alpn-empty-name", hello(alpn_ext(b"h2", b"")), "ALPN name"),
    ("alpn-list-long", hello(ext(16, u16(9) + b"\x02h2")), "ALPN list"),
    ("alpn-empty-list", hello(ext(16, u16(0))), "ALPN list"),
    ("alpn-name-past-end", hello(ext(16, u16(3) + b"\x05h2")), "ALPN name"),
]


@pytest.mark.parametrize(("data", "match"), [pytest.param(d, m, id=i) for i, d, m in BAD_CASES])
def test_bad_client_hello(data: bytes, match: str) -> None:
    with pytest.raises(BadClientHello, match=match):
        parse_client_hello(data)
    # fragmented over 1-byte records it fails the same way, or waits only if the cut came first
    for k in range(len(data)):
        try:
            got = parse_client_hello(data[:k])
        except BadClientHello:
            continue
        assert got is None


def test_errors_are_value_errors_and_bad_requests() -> None:
    for cls in (NotTls, BadClientHello):
        assert issubclass(cls, ValueError)
        assert issubclass(cls, BadRequest)
    assert BadClientHello.status == 400


def test_message_names_the_offending_name() -> None:
    with pytest.raises(BadClientHello) as info:
        parse_client_hello(hello(sni_ext(b"a\x00b.test")))
    assert "b'a\\x00b.test'" in str(info.value)
