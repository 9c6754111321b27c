"""Table tests of proxy/http1.py: exact bytes in, exact heads, positions or errors out."""

from __future__ import annotations

import re

import pytest

from proxy.errors import BadRequest, HeadTooLarge, RequestError
from proxy.http1 import (
    MAX_CHUNK_LINE,
    MAX_TRAILERS,
    Authority,
    BadResponse,
    BodyFramer,
    Framing,
    HeadParser,
    RequestHead,
    ResponseHead,
    ResponseHeadParser,
    error_response,
    parse_absolute_target,
    parse_authority,
    request_head_for_upstream,
    response_head_for_client,
)

Outcome = tuple[RequestHead, bytes] | type[Exception] | None


def feed_whole(data: bytes, max_head: int = 65_536) -> Outcome:
    parser = HeadParser(max_head=max_head)
    try:
        head = parser.feed(data)
    except RequestError as exc:
        return type(exc)
    return None if head is None else (head, parser.take_rest())


def feed_bytewise(data: bytes, max_head: int = 65_536) -> Outcome:
    parser = HeadParser(max_head=max_head)
    for i in range(len(data)):
        try:
            head = parser.feed(data[i : i + 1])
        except RequestError as exc:
            return type(exc)
        if head is not None:
            return head, parser.take_rest() + data[i + 1 :]
    return None


def request(data: bytes) -> RequestHead:
    """The head of data, checked to be the same fed whole and byte by byte."""
    whole = feed_whole(data)
    assert feed_bytewise(data) == whole
    assert isinstance(whole, tuple), whole
    return whole[0]


def rejected(data: bytes) -> type[Exception] | None:
    whole = feed_whole(data)
    assert feed_bytewise(data) == whole
    return whole if isinstance(whole, type) else None


# -- request heads that parse -------------------------------------------------------------

GET = (b"GET /api/v1/items?page=2 HTTP/1.1\r\nHost: api.example.test\r\n"
       b"User-Agent: curl/8.5.0\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\n"
       b"Connection: keep-alive\r\nAuthorization: Bearer abc\r\n\r\n")


def test_typical_get() -> None:
    assert request(GET) == RequestHead(
        method=b"GET", target=b"/api/v1/items?page=2", version=b"HTTP/1.1",
        headers=((b"Host", b"api.example.test"), (b"User-Agent", b"curl/8.5.0"),
                 (b"Accept", b"*/*"), (b"Accept-Encoding", b"gzip, deflate"),
                 (b"Connection", b"keep-alive"), (b"Authorization", b"Bearer abc")),
        framing=Framing.NONE, content_length=0, keep_alive=True, host=b"api.example.test",
        raw_fields=b"")  # Connection is hop-by-hop: forwarding rebuilds the field lines


def test_field_lines_kept_as_received_only_without_hop_by_hop_fields() -> None:
    clean = GET.replace(b"Connection: keep-alive\r\n", b"")
    assert request(clean).raw_fields == clean[clean.index(b"\r\n") + 2:-2]
    for hop in (b"Connection: close", b"Proxy-Connection: keep-alive", b"TE: trailers",
                b"Keep-Alive: timeout=5", b"Upgrade: websocket"):
        head = request(clean.replace(b"Accept: */*", hop))
        assert head.raw_fields == b""
        assert b"\r\n" + hop.split(b":")[0].lower() + b":" not in (
            request_head_for_upstream(head, b"/").lower())


@pytest.mark.parametrize(("raw", "headers"), [
    (b"GET / HTTP/1.1\r\n\r\n", ()),
    (b"GET / HTTP/1.1\r\nX:\r\n\r\n", ((b"X", b""),)),
    (b"GET / HTTP/1.1\r\nX: \t \r\n\r\n", ((b"X", b""),)),
    (b"GET / HTTP/1.1\r\nX:  a  b \t\r\n\r\n", ((b"X", b"a  b"),)),
    (b"GET / HTTP/1.1\r\nX:\ta\r\n\r\n", ((b"X", b"a"),)),
    (b"GET / HTTP/1.1\r\nX: a:b: c\r\n\r\n", ((b"X", b"a:b: c"),)),
    (b"GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n", ((b"X", b"caf\xc3\xa9"),)),  # obs-text
    (b"GET / HTTP/1.1\r\nx-A: 1\r\nX-a: 2\r\n\r\n", ((b"x-A", b"1"), (b"X-a", b"2"))),
    (b"GET / HTTP/1.1\r\n!#$%&'*+-.^_`|~09aZ: v\r\n\r\n", ((b"!#$%&'*+-.^_`|~09aZ", b"v"),)),
])
def test_header_values_lose_only_ows(raw: bytes, headers: tuple[tuple[bytes, bytes], ...]) -> None:
    assert request(raw).headers == headers


@pytest.mark.parametrize(("raw", "method", "target", "version"), [
    (b"GET / HTTP/1.1\r\n\r\n", b"GET", b"/", b"HTTP/1.1"),
    (b"GET / HTTP/1.0\r\n\r\n", b"GET", b"/", b"HTTP/1.0"),
    (b"get /x HTTP/1.1\r\n\r\n", b"get", b"/x", b"HTTP/1.1"),  # methods are case-sensitive tokens
    (b"CONNECT a.test:443 HTTP/1.1\r\n\r\n", b"CONNECT", b"a.test:443", b"HTTP/1.1"),
    (b"OPTIONS * HTTP/1.1\r\n\r\n", b"OPTIONS", b"*", b"HTTP/1.1"),
    (b"GET http://a.test/p?q=%20#f HTTP/1.1\r\n\r\n", b"GET", b"http://a.test/p?q=%20#f",
     b"HTTP/1.1"),
    (b"\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n", b"GET", b"/", b"HTTP/1.1"),  # 4 empty lines
])
def test_request_line(raw: bytes, method: bytes, target: bytes, version: bytes) -> None:
    head = request(raw)
    assert (head.method, head.target, head.version) == (method, target, version)


@pytest.mark.parametrize(("fields", "framing", "length"), [
    (b"", Framing.NONE, 0),
    (b"Content-Length: 0\r\n", Framing.LENGTH, 0),
    (b"Content-Length: 5\r\n", Framing.LENGTH, 5),
    (b"content-length: 005\r\n", Framing.LENGTH, 5),
    (b"Content-Length: 5\r\nContent-Length: 5\r\n", Framing.LENGTH, 5),
    (b"Content-Length: 5, 5\r\n", Framing.LENGTH, 5),
    (b"Content-Length: 5,5\r\nCONTENT-LENGTH: 5\r\n", Framing.LENGTH, 5),
    (b"Content-Length: 999999999999999999\r\n", Framing.LENGTH, 999_999_999_999_999_999),
    (b"Transfer-Encoding: chunked\r\n", Framing.CHUNKED, 0),
    (b"transfer-encoding: Chunked\r\n", Framing.CHUNKED, 0),
    (b"TRANSFER-ENCODING:  CHUNKED \r\n", Framing.CHUNKED, 0),
    (b"Transfer_Encodings: chunked\r\n", Framing.NONE, 0),  # not a look-alike: other length
])
def test_request_framing(fields: bytes, framing: Framing, length: int) -> None:
    head = request(b"POST /upload HTTP/1.1\r\nHost: a.test\r\n" + fields + b"\r\n")
    assert (head.framing, head.content_length) == (framing, length)


@pytest.mark.parametrize(("raw", "keep_alive"), [
    (b"GET / HTTP/1.1\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nConnection: x-foo,,CLOSE \r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n", True),
    (b"GET / HTTP/1.0\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
    (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", True),
    (b"GET / HTTP/1.0\r\nConnection: foo, keep-alive\r\n\r\n", True),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\nProxy-Connection: keep-alive\r\n\r\n", False),
])
def test_keep_alive(raw: bytes, keep_alive: bool) -> None:
    assert request(raw).keep_alive is keep_alive


def test_host_and_header_lookup() -> None:
    head = request(b"GET / HTTP/1.1\r\nhOST: a.test:8080\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
    assert head.host == b"a.test:8080"
    assert head.header(b"Host") == b"a.test:8080"
    assert head.header(b"X-A") == b"1"
    assert head.header(b"missing") is None
    assert request(b"GET / HTTP/1.1\r\n\r\n").host is None


@pytest.mark.parametrize("fields", [b"", b"Content-Length: 0\r\n"])
def test_connect_without_body(fields: bytes) -> None:
    head = request(b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n" + fields + b"\r\n")
    assert (head.framing, head.content_length) == (Framing.NONE, 0)


# -- request heads that are refused --------------------------------------------------------

H = b"GET / HTTP/1.1\r\n"


@pytest.mark.parametrize("raw", [
    # request line
    b"GET  / HTTP/1.1\r\n\r\n",
    b"GET /  HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1 \r\n\r\n",
    b" GET / HTTP/1.1\r\n\r\n",
    b"GET\t/ HTTP/1.1\r\n\r\n",
    b"GET HTTP/1.1\r\n\r\n",
    b"GET / \r\n\r\n",
    b"/ HTTP/1.1\r\n\r\n",
    b"G@T / HTTP/1.1\r\n\r\n",
    b"G(ET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/2.0\r\n\r\n",
    b"GET / HTTP/1.2\r\n\r\n",
    b"GET / HTTP/0.9\r\n\r\n",
    b"GET / http/1.1\r\n\r\n",
    b"GET / HTTP/1.1x\r\n\r\n",
    b"GET / HTTP/11\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\n\r\n",
    b"GET /\x7f HTTP/1.1\r\n\r\n",
    b"GET /\x1b HTTP/1.1\r\n\r\n",
    b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    # line ends
    b"GET / HTTP/1.1\n\n",
    b"GET / HTTP/1.1\r\n\n",
    b"GET / HTTP/1.1\n\r\n",
    b"GET / HTTP/1.1\r\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\n\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
    b"\n" + H + b"\r\n",
    b"\r\n\r\n\r\n\r\n\r\n" + H + b"\r\n",  # 5 empty lines
    # field syntax
    H + b"Host : a\r\n\r\n",
    H + b"Host\t: a\r\n\r\n",
    H + b"Transfer-Encoding : chunked\r\n\r\n",
    H + b"Host: a\r\n folded\r\n\r\n",
    H + b"Host: a\r\n\tfolded\r\n\r\n",
    H + b" Host: a\r\n\r\n",
    H + b"NoColon\r\n\r\n",
    H + b": no-name\r\n\r\n",
    H + b"X Y: z\r\n\r\n",
    H + b"X\x00: z\r\n\r\n",
    H + b"X\xc3\xa9: z\r\n\r\n",
    H + b"X: a\x00b\r\n\r\n",
    H + b"X: \x00\r\n\r\n",
    H + b"X: a\x01\r\n\r\n",
    H + b"X: a\x1fb\r\n\r\n",
    H + b"X: a\x7fb\r\n\r\n",
    H + b"X: a\x0bb\r\n\r\n",
    H + b"X: a\x0cb\r\n\r\n",
    # Host
    H + b"Host: a\r\nHost: b\r\n\r\n",
    H + b"Host: a\r\nhost: a\r\n\r\n",
    # Content-Length
    H + b"Content-Length: +5\r\n\r\n",
    H + b"Content-Length: -5\r\n\r\n",
    H + b"Content-Length: 0x5\r\n\r\n",
    H + b"Content-Length: 5.0\r\n\r\n",
    H + b"Content-Length: 5 5\r\n\r\n",
    H + b"Content-Length: 1e3\r\n\r\n",
    H + b"Content-Length:\r\n\r\n",
    H + b"Content-Length: 5,\r\n\r\n",
    H + b"Content-Length: ,5\r\n\r\n",
    H + b"Content-Length: 5, 6\r\n\r\n",
    H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
    H + b"Content-Length: 5\r\nContent-Length: 05\r\n\r\n",
    H + b"Content-Length: 1000000000000000000\r\n\r\n",  # 19 digits
    H + b"Content-Length: \xd9\xa5\r\n\r\n",  # ARABIC-INDIC DIGIT FIVE
    H + b"Content_Length: 5\r\n\r\n",
    # Transfer-Encoding
    H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",  # TE.CL
    H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",  # CL.TE
    H + b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
    H + b"Transfer-Encoding: xchunked\r\n\r\n",
    H + b"Transfer-Encoding: chunkedx\r\n\r\n",
    H + b"Transfer-Encoding: chunked, chunked\r\n\r\n",
    H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    H + b"Transfer-Encoding: gzip, chunked\r\n\r\n",
    H + b"Transfer-Encoding: chunked, gzip\r\n\r\n",
    H + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
    H + b"Transfer-Encoding: identity\r\n\r\n",
    H + b"Transfer-Encoding: chunked;q=1\r\n\r\n",
    H + b"Transfer-Encoding: chunked,\r\n\r\n",
    H + b"Transfer-Encoding: \"chunked\"\r\n\r\n",
    H + b"Transfer-Encoding:\r\n\r\n",
    H + b"Transfer-Encoding: chunked\x0b\r\n\r\n",
    H + b"Transfer_Encoding: chunked\r\n\r\n",
    H + b"transfer_encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    # CONNECT with a body
    b"CONNECT a.test:443 HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
    b"CONNECT a.test:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    # not HTTP at all
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    b"\x05\x01\x00\r\n\r\n",
])
def test_bad_request(raw: bytes) -> None:
    assert rejected(raw) is BadRequest


@pytest.mark.parametrize("partial", [
    b"GET / HTTP/1.1\n",
    b"GET / HTTP/1.1\r\nHost: a\n",
    b"GET / HTTP/1.1\r\nX: a\rb",
    b"\rG",
    b"\n",
    b"\x16\x03\x01",
    b"\x05\x01\x00",
    b" ",
    b"GET\r",
    b"GET\x00",
    b"GET  / HTTP/1.1\r\n",
    b"GET / HTTP/1.1 \r\n",
    b"GET / HTTP/2.0\r\n",
    b"\r\n\r\n\r\n\r\n\r\n",
])
def test_errors_raise_before_the_head_ends(partial: bytes) -> None:
    """A bare CR/LF or a bad first line answers at once instead of waiting for a timeout."""
    assert rejected(partial) is BadRequest


@pytest.mark.parametrize("partial", [
    b"", b"\r", b"\r\n", b"\r\n\r", b"\r\n\r\n\r\n\r\n", b"G", b"GET", b"GET ", b"GET /",
    b"GET / HTTP/1.1", b"GET / HTTP/1.1\r", b"GET / HTTP/1.1\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n", b"GET / HTTP/1.1\r\nHost: a\r\n\r",
    b"GET / HTTP/1.1\r\nBad Line\r\n",  # checked only once the head is complete
])
def test_incomplete_heads_wait(partial: bytes) -> None:
    assert feed_whole(partial) is None
    assert feed_bytewise(partial) is None


def test_head_size_limit() -> None:
    head = b"GET / HTTP/1.1\r\nX: " + b"a" * 100 + b"\r\n\r\n"
    size = len(head)
    assert isinstance(feed_whole(head, max_head=size), tuple)
    assert isinstance(feed_bytewise(head, max_head=size), tuple)
    assert feed_whole(head, max_head=size - 1) is HeadTooLarge
    assert feed_bytewise(head, max_head=size - 1) is HeadTooLarge
    assert feed_whole(head[:-4], max_head=size - 4) is HeadTooLarge  # never completes in time
    assert feed_whole(head[:-4], max_head=size - 3) is None
    assert feed_whole(b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000) is HeadTooLarge
    assert issubclass(HeadTooLarge, BadRequest)


def test_head_too_large_vs_bare_lf_depends_only_on_the_bytes() -> None:
    """A bare LF inside the size limit is a BadRequest; beyond it, the head is too large."""
    inside = b"GET / HTTP/1.1\r\nX: " + b"a" * 50 + b"\n" + b"a" * 100
    beyond = b"GET / HTTP/1.1\r\nX: " + b"a" * 100 + b"\n"
    assert feed_whole(inside, max_head=100) is BadRequest
    assert feed_bytewise(inside, max_head=100) is BadRequest
    assert feed_whole(beyond, max_head=100) is HeadTooLarge
    assert feed_bytewise(beyond, max_head=100) is HeadTooLarge


def test_errors_name_the_problem() -> None:
    cases = {
        H + b"Transfer-Encoding : chunked\r\n\r\n": "whitespace before the colon",
        H + b"Host: a\r\n folded\r\n\r\n": "obs-fold",
        H + b"X: a\x00\r\n\r\n": "control character b'\\x00'",
        H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n": "conflicting Content-Length",
        b"GET / HTTP/2.0\r\n\r\n": "unsupported HTTP version",
        b"GET / HTTP/1.1\n": "bare CR or LF",
        b"\x16\x03\x01": "not an HTTP request",
    }
    for raw, words in cases.items():
        with pytest.raises(BadRequest, match=re.escape(words)):
            HeadParser().feed(raw)


# -- the parser as a stream ---------------------------------------------------------------

def test_pipelined_requests_and_take_rest() -> None:
    one = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"
    two = b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n"
    parser = HeadParser()
    first = parser.feed(one + b"abc" + two)
    assert first is not None
    assert first.target == b"/a"
    assert parser.pending == 0
    with pytest.raises(RuntimeError):
        parser.feed(b"")
    rest = parser.take_rest()
    assert rest == b"abc" + two
    assert parser.take_rest() == b""
    framer = BodyFramer(first.framing, first.content_length)
    used = framer.feed(rest)
    assert (used, framer.done) == (3, True)
    second = parser.feed(rest[used:])
    assert second is not None
    assert second.target == b"/b"
    assert parser.take_rest() == b""


def test_pending_counts_a_partial_head() -> None:
    parser = HeadParser()
    assert parser.feed(b"GET / HT") is None
    assert parser.pending == 8
    assert parser.feed(b"TP/1.1\r\n\r\nxyz") is not None
    assert parser.pending == 0
    assert parser.take_rest() == b"xyz"


def test_connect_leaves_tunnel_bytes() -> None:
    parser = HeadParser()
    head = parser.feed(b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n\x16\x03\x01")
    assert head is not None
    assert head.method == b"CONNECT"
    assert parser.take_rest() == b"\x16\x03\x01"


def test_empty_lines_split_from_the_head() -> None:
    parser = HeadParser()
    assert parser.feed(b"\r") is None
    head = parser.feed(b"\nGET / HTTP/1.1\r\n\r\n")
    assert head is not None
    assert head.target == b"/"
    parser.take_rest()
    assert parser.feed(b"\r\n\r\n\r\n") is None
    assert parser.feed(b"GET /a HTTP/1.1\r\n\r\n") is not None
    parser.take_rest()
    assert parser.feed(b"\r\n\r\n\r\n\r\nGET /b HTTP/1.1\r\n\r\n") is not None  # count restarts


def test_empty_lines_are_counted_across_feeds() -> None:
    parser = HeadParser()
    for _ in range(4):
        assert parser.feed(b"\r") is None
        assert parser.feed(b"\n") is None
    with pytest.raises(BadRequest):
        parser.feed(b"\r\n")


# -- responses ----------------------------------------------------------------------------

def response(raw: bytes, method: bytes = b"GET") -> tuple[ResponseHead, bytes]:
    """The final head of raw and the bytes after it, checked the same whole and bytewise."""
    results = []
    for step in (len(raw) or 1, 1):
        parser = ResponseHeadParser(request_method=method)
        head: ResponseHead | None = None
        for i in range(0, len(raw), step):
            head = parser.feed(raw[i : i + step])
            while head is not None and head.interim:
                head = parser.feed(b"")
            if head is not None:
                results.append((head, parser.take_rest() + raw[i + step :]))
                break
    assert len(results) == 2, results
    assert results[0] == results[1]
    return results[0]


@pytest.mark.parametrize(("raw", "method", "framing", "length", "keep_alive"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"GET", Framing.LENGTH, 5, True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", b"GET", Framing.LENGTH, 5, True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", b"GET",
     Framing.LENGTH, 5, True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"GET", Framing.CHUNKED, 0, True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", b"GET",
     Framing.CHUNKED, 0, True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
     b"GET", Framing.CHUNKED, 0, True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", b"GET",
     Framing.CHUNKED, 0, False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", b"GET",
     Framing.CHUNKED, 0, False),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", b"GET",
     Framing.UNTIL_CLOSE, 0, False),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n", b"GET",
     Framing.UNTIL_CLOSE, 0, False),
    (b"HTTP/1.1 200 OK\r\n\r\n", b"GET", Framing.UNTIL_CLOSE, 0, False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"HEAD", Framing.NONE, 0, True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"HEAD", Framing.NONE, 0, True),
    (b"HTTP/1.1 204 No Content\r\n\r\n", b"GET", Framing.NONE, 0, True),
    (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", b"GET", Framing.NONE, 0, True),
    (b"HTTP/1.1 200 Connection established\r\n\r\n", b"CONNECT", Framing.NONE, 0, True),
    (b"HTTP/1.1 407 Auth\r\nContent-Length: 2\r\n\r\n", b"CONNECT", Framing.LENGTH, 2, True),
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", b"GET", Framing.NONE, 0, True),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", b"GET",
     Framing.LENGTH, 1, False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", b"GET", Framing.LENGTH, 1, False),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", b"GET",
     Framing.LENGTH, 1, True),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
     b"GET", Framing.CHUNKED, 0, False),
])
def test_response_framing(raw: bytes, method: bytes, framing: Framing, length: int,
                          keep_alive: bool) -> None:
    head, rest = response(raw + b"BODY", method)
    assert (head.framing, head.content_length, head.keep_alive) == (framing, length, keep_alive)
    assert rest == b"BODY"


@pytest.mark.parametrize(("raw", "status", "reason", "headers"), [
    (b"HTTP/1.1 200 OK\r\nA: 1\r\n\r\n", 200, b"OK", ((b"A", b"1"),)),
    (b"HTTP/1.1 200\r\nA: 1\r\n\r\n", 200, b"", ((b"A", b"1"),)),
    (b"HTTP/1.1 200 \r\n\r\n", 200, b"", ()),
    (b"HTTP/1.1 404 Not  Found \r\n\r\n", 404, b"Not  Found ", ()),
    (b"HTTP/1.1 200 OK\nA: 1\nB:2\n\n", 200, b"OK", ((b"A", b"1"), (b"B", b"2"))),
    (b"HTTP/1.1 200 OK\nA: 1\r\n\n", 200, b"OK", ((b"A", b"1"),)),
    (b"HTTP/1.1 200 OK\r\nA: 1\n\r\n", 200, b"OK", ((b"A", b"1"),)),
    (b"HTTP/1.1 200 OK\r\nA: 1\r\n  2 \r\n\t3\r\nB: 4\r\n\r\n", 200, b"OK",
     ((b"A", b"1 2 3"), (b"B", b"4"))),
    (b"HTTP/1.1 200 OK\r\nA:\r\n 2\r\n\r\n", 200, b"OK", ((b"A", b"2"),)),
    (b"HTTP/1.1 200 OK\r\nA : 1 \r\n\r\n", 200, b"OK", ((b"A", b"1"),)),
    (b"HTTP/1.1 200 OK\r\nA: x\x01y\r\n\r\n", 200, b"OK", ((b"A", b"x\x01y"),)),
    (b"\r\n\nHTTP/1.1 200 OK\r\n\r\n", 200, b"OK", ()),
])
def test_response_heads_are_read_tolerantly(raw: bytes, status: int, reason: bytes,
                                            headers: tuple[tuple[bytes, bytes], ...]) -> None:
    head, _ = response(raw, b"HEAD")
    assert (head.status, head.reason, head.headers) == (status, reason, headers)


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 20 OK\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/1.1 099 Low\r\n\r\n",
    b"HTTP/2 200 OK\r\n\r\n",
    b"HTTP/1.2 200 OK\r\n\r\n",
    b"ICY 200 OK\r\n\r\n",
    b"HTTP/1.1  200 OK\r\n\r\n",
    b"HTTP/1.1 200 O\x00K\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nA: \x00\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nA: 1\rB: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n: v\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nA B: v\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
    b"\r\n\r\n\r\n\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
])
def test_bad_response(raw: bytes) -> None:
    parser = ResponseHeadParser(request_method=b"GET")
    with pytest.raises(BadResponse):
        parser.feed(raw)
    assert issubclass(BadResponse, RequestError)  # in the one tree
    assert BadResponse.status == 502


def test_interim_responses_then_final() -> None:
    raw = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
           b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    parser = ResponseHeadParser(request_method=b"POST")
    first = parser.feed(raw)
    assert first is not None
    assert (first.status, first.interim, first.framing) == (
        100, True, Framing.NONE)
    assert parser.take_rest() == b""  # not before the final head
    second = parser.feed(b"")
    assert second is not None
    assert second.status == 103
    assert second.header(b"link") == b"</a>"
    final = parser.feed(b"")
    assert final is not None
    assert (final.status, final.interim) == (200, False)
    assert parser.take_rest() == b"ok"
    with pytest.raises(RuntimeError):
        parser.feed(b"")


def test_response_head_size_limit() -> None:
    parser = ResponseHeadParser(request_method=b"GET", max_head=64)
    with pytest.raises(BadResponse):
        parser.feed(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 64)


# -- bodies -------------------------------------------------------------------------------

def frame(framing: Framing, data: bytes, length: int = 0) -> tuple[int, bool] | type[Exception]:
    """(bytes of data in the body, done), the same fed whole, bytewise and as memoryviews."""
    results: list[tuple[int, bool] | type[Exception]] = []
    for step, view in ((len(data) or 1, False), (1, False), (3, True)):
        framer = BodyFramer(framing, length)
        used = 0
        try:
            for i in range(0, len(data), step):
                piece = data[i : i + step]
                n = framer.feed(memoryview(piece) if view else piece)
                used += n
                if n < len(piece):
                    break
            results.append((used, framer.done))
        except BadRequest as exc:
            results.append(type(exc))
    assert results[0] == results[1] == results[2], results
    return results[0]


@pytest.mark.parametrize(("framing", "length", "data", "outcome"), [
    (Framing.NONE, 0, b"GET", (0, True)),
    (Framing.LENGTH, 0, b"GET", (0, True)),
    (Framing.LENGTH, 5, b"hello", (5, True)),
    (Framing.LENGTH, 5, b"helloGET", (5, True)),
    (Framing.LENGTH, 5, b"hel", (3, False)),
    (Framing.UNTIL_CLOSE, 0, b"anything", (8, False)),
])
def test_length_framing(framing: Framing, length: int, data: bytes,
                        outcome: tuple[int, bool]) -> None:
    assert frame(framing, data, length) == outcome


CHUNKED_OK = [
    b"0\r\n\r\n",
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    b"A\r\n0123456789\r\n0\r\n\r\n",
    b"a\r\n0123456789\r\n000\r\n\r\n",
    b"0005\r\nhello\r\n0\r\n\r\n",
    b"000000000000000F\r\n0123456789abcde\r\n0\r\n\r\n",  # 16 hex digits
    b"5;ext\r\nhello\r\n0\r\n\r\n",
    b"5;a=b;c=\"d e\\\"\"\r\nhello\r\n0;last\r\n\r\n",
    b"5\r\nhe\r\nl\r\n0\r\n\r\n",  # CRLF inside chunk data is data
    b"0\r\nX-Trailer: 1\r\nY:\r\n\r\n",
    b"0\r\nX-Trailer: caf\xc3\xa9\r\n\r\n",
]


@pytest.mark.parametrize("body", CHUNKED_OK)
def test_chunked_bodies(body: bytes) -> None:
    assert frame(Framing.CHUNKED, body) == (len(body), True)
    assert frame(Framing.CHUNKED, body + b"GET / HTTP/1.1\r\n") == (len(body), True)
    assert frame(Framing.CHUNKED, body[:-1]) == (len(body) - 1, False)


@pytest.mark.parametrize("body", [
    b"-5\r\nhello\r\n0\r\n\r\n",
    b"+5\r\nhello\r\n0\r\n\r\n",
    b"0x5\r\nhello\r\n0\r\n\r\n",
    b" 5\r\nhello\r\n0\r\n\r\n",
    b"5 \r\nhello\r\n0\r\n\r\n",
    b"5\t\r\nhello\r\n0\r\n\r\n",
    b"g\r\nhello\r\n0\r\n\r\n",
    b"\r\nhello\r\n0\r\n\r\n",
    b"5\nhello\r\n0\r\n\r\n",
    b"5\r\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhelloX\r\n0\r\n\r\n",
    b"5\r\nhello\n0\r\n\r\n",
    b"5\r\nhello\rX0\r\n\r\n",
    b"5\r\nhell\r\n0\r\n\r\n",
    b"00000000000000005\r\nhello\r\n0\r\n\r\n",  # 17 hex digits
    b"10000000000000000\r\n",
    b"5;\r\nhello\r\n0\r\n\r\n",
    b"5;=b\r\nhello\r\n0\r\n\r\n",
    b"5;a=\r\nhello\r\n0\r\n\r\n",
    b"5;a=\"b\r\nhello\r\n0\r\n\r\n",
    b"5;a b\r\nhello\r\n0\r\n\r\n",
    b"5 ;a\r\nhello\r\n0\r\n\r\n",  # BWS: allowed by RFC 9112, refused here (and by h11)
    b"5\t;a\r\nhello\r\n0\r\n\r\n",
    b"5; a\r\nhello\r\n0\r\n\r\n",
    b"5;a =b\r\nhello\r\n0\r\n\r\n",
    b"5;a= b\r\nhello\r\n0\r\n\r\n",
    b"5;a\nb\r\nhello\r\n0\r\n\r\n",
    b"5;a\x00\r\nhello\r\n0\r\n\r\n",
    b"5\x00\r\nhello\r\n0\r\n\r\n",
    b"0\r\nX: a\n\r\n",
    b"0\r\nX: a\rb\r\n\r\n",
    b"0\r\n folded: x\r\n\r\n",
    b"0\r\nNoColon\r\n\r\n",
    b"0\r\nX : v\r\n\r\n",
    b"0\r\nX: \x00\r\n\r\n",
    b"0\r\n\n",
    b"0\r\n\r\r\n",
    b"5;" + b"a" * MAX_CHUNK_LINE + b"\r\nhello\r\n0\r\n\r\n",
    b"0\r\n" + b"X: " + b"a" * MAX_TRAILERS + b"\r\n\r\n",
    b"0\r\n" + b"X: a\r\n" * (MAX_TRAILERS // 6 + 1) + b"\r\n",
])
def test_bad_chunked_bodies(body: bytes) -> None:
    assert frame(Framing.CHUNKED, body) is BadRequest


def test_chunk_line_limit_is_exact() -> None:
    fill = MAX_CHUNK_LINE - len(b"5;\r\n")
    fits = b"5;" + b"a" * fill + b"\r\nhello\r\n0\r\n\r\n"
    assert frame(Framing.CHUNKED, fits) == (len(fits), True)
    over = b"5;" + b"a" * (fill + 1) + b"\r\nhello\r\n0\r\n\r\n"
    assert frame(Framing.CHUNKED, over) is BadRequest


def test_chunk_extensions_are_limited_per_body() -> None:
    chunk = b"1;" + b"e" * 4000 + b"\r\nx\r\n"
    body = chunk * 16 + b"0\r\n\r\n"  # 16 * 4001 extension bytes < 64 KiB
    assert frame(Framing.CHUNKED, body) == (len(body), True)
    assert frame(Framing.CHUNKED, chunk * 17 + b"0\r\n\r\n") is BadRequest


def test_trailer_limit_is_exact() -> None:
    line = b"X: " + b"a" * (MAX_TRAILERS - 7) + b"\r\n"  # + final CRLF = MAX_TRAILERS
    assert frame(Framing.CHUNKED, b"0\r\n" + line + b"\r\n") == (len(line) + 5, True)
    line = b"X: " + b"a" * (MAX_TRAILERS - 6) + b"\r\n"
    assert frame(Framing.CHUNKED, b"0\r\n" + line + b"\r\n") is BadRequest


def test_huge_chunk_sizes_are_counted_not_buffered() -> None:
    framer = BodyFramer(Framing.CHUNKED)
    assert framer.feed(b"ffffffffffffffff\r\n") == 18
    block = memoryview(bytes(1 << 16))
    for _ in range(64):
        assert framer.feed(block) == len(block)
    assert not framer.done


def test_framer_error_class_can_be_chosen() -> None:
    framer = BodyFramer(Framing.CHUNKED, error=BadResponse)
    with pytest.raises(BadResponse):
        framer.feed(b"zz\r\n")


def test_done_framer_takes_nothing() -> None:
    framer = BodyFramer(Framing.CHUNKED)
    assert framer.feed(b"0\r\n\r\nX") == 5
    assert framer.done
    assert framer.feed(b"more") == 0


# -- authorities and targets ----------------------------------------------------------------

@pytest.mark.parametrize(("raw", "default", "authority"), [
    (b"example.com:443", None, Authority("example.com", 443, False)),
    (b"Example.COM.:8080", None, Authority("Example.COM.", 8080, False)),
    (b"example.com", 80, Authority("example.com", 80, False)),
    (b"example.com:00080", None, Authority("example.com", 80, False)),
    (b"example.com:65535", None, Authority("example.com", 65535, False)),
    (b"a:1", None, Authority("a", 1, False)),
    (b"127.0.0.1:80", None, Authority("127.0.0.1", 80, False)),
    (b"0x7f.1:80", None, Authority("0x7f.1", 80, False)),
    (b"2130706433:80", None, Authority("2130706433", 80, False)),
    (b"under_score.test:80", None, Authority("under_score.test", 80, False)),
    (b"b\xc3\xbccher.de:443", None, Authority("b\u00fccher.de", 443, False)),
    (b"[::1]:443", None, Authority("::1", 443, True)),
    (b"[::1]", 443, Authority("::1", 443, True)),
    (b"[0:0::1]:80", None, Authority("0:0::1", 80, True)),
    (b"[::ffff:127.0.0.1]:80", None, Authority("::ffff:127.0.0.1", 80, True)),
    (b"[fe80::1%25lo]:80", None, Authority("fe80::1%25lo", 80, True)),
    (b"[fe80::1%lo]:80", None, Authority("fe80::1%lo", 80, True)),
    (b"[FE80::1%eth0.5]", 80, Authority("FE80::1%eth0.5", 80, True)),
])
def test_parse_authority(raw: bytes, default: int | None, authority: Authority) -> None:
    assert parse_authority(raw, default_port=default) == authority


@pytest.mark.parametrize("raw", [
    b"", b":80", b"example.com", b"example.com:", b"example.com:0", b"example.com:65536",
    b"example.com:99999", b"example.com:100000", b"example.com:+80", b"example.com:-1",
    b"example.com: 80", b"example.com:80 ", b" example.com:80", b"example.com:8a",
    b"example.com:0x50", b"example.com:\xd9\xa8\xd9\xa0", b"example.com:80:80",
    b"user@example.com:80", b"user:pw@example.com:80", b"@example.com:80",
    b"::1", b"::1:80", b"fe80::1%lo:80", b"[::1]x", b"[::1]:", b"[::1]:0", b"[::1", b"::1]:80",
    b"[]:80", b"[example.com]:80", b"[127.0.0.1]:80", b"[::1%]:80", b"[::1%l o]:80",
    b"[v1.x]:80", b"[::1]]:80", b"exa mple.com:80", b"example.com\x00:80", b"ex/ample:80",
    b"ex\\ample:80", b"ex?ample:80", b"ex#ample:80", b"%65xample.com:80", b"\xff\xfe:80",
    b"\xc3:80", b"ex\tample:80", b"ex\x7fample:80", b"[::1]:80\x00",
])
def test_parse_authority_rejects(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_authority(raw, default_port=None)


def test_authority_without_port_uses_default_only_when_given() -> None:
    with pytest.raises(BadRequest, match="no port"):
        parse_authority(b"example.com", default_port=None)


@pytest.mark.parametrize(("target", "scheme", "authority", "path"), [
    (b"http://example.com/path?q", b"http", Authority("example.com", 80, False), b"/path?q"),
    (b"http://example.com", b"http", Authority("example.com", 80, False), b"/"),
    (b"HTTP://Example.com", b"http", Authority("Example.com", 80, False), b"/"),
    (b"hTtP://example.com:8080/", b"http", Authority("example.com", 8080, False), b"/"),
    (b"http://example.com?x=1", b"http", Authority("example.com", 80, False), b"/?x=1"),
    (b"http://example.com/a/../b;p?x=/y", b"http", Authority("example.com", 80, False),
     b"/a/../b;p?x=/y"),
    (b"https://example.com:8443/x", b"https", Authority("example.com", 8443, False), b"/x"),
    (b"https://example.com/x", b"https", Authority("example.com", 443, False), b"/x"),
    (b"http://[::1]:8080/x", b"http", Authority("::1", 8080, True), b"/x"),
    (b"http://[::1]/x", b"http", Authority("::1", 80, True), b"/x"),
])
def test_parse_absolute_target(target: bytes, scheme: bytes, authority: Authority,
                               path: bytes) -> None:
    assert parse_absolute_target(target) == (scheme, authority, path)


@pytest.mark.parametrize("target", [
    b"/path", b"*", b"example.com:80", b"ftp://example.com/", b"ws://example.com/",
    b"httpx://example.com/", b"http:/example.com/", b"http:example.com/", b"://example.com/",
    b"http://", b"http:///x", b"http://example.com/#frag", b"http://example.com#frag",
    b"http://user@example.com/", b"http://allowed.test\\@evil.test/",
    b"http://evil.test\\.allowed.test/", b"http://example.com:0/", b"http://example.com:/",
    b"http://example.com:http/", b"http://exa mple.com/", b"http://::1/",
])
def test_parse_absolute_target_rejects(target: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_absolute_target(target)


# -- serialising --------------------------------------------------------------------------

def test_request_head_for_upstream_drops_hop_by_hop() -> None:
    head = request(
        b"GET http://a.test/x?y HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, X-Foo\r\n"
        b"X-Foo: 1\r\nKeep-Alive: 5\r\nProxy-Connection: keep-alive\r\n"
        b"Proxy-Authorization: Basic eDp5\r\nProxy-Authenticate: x\r\nTE: trailers\r\n"
        b"Trailer: X-T\r\nUpgrade: h2c\r\nuser-agent: t\r\nX-Bar:  2 \r\n\r\n")
    assert request_head_for_upstream(head, b"/x?y") == (
        b"GET /x?y HTTP/1.1\r\nHost: a.test\r\nuser-agent: t\r\nX-Bar: 2\r\n\r\n")


def test_request_head_without_hop_by_hop_fields_goes_on_as_received() -> None:
    head = request(b"GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\nX-A:\t1\r\nx-b:2\r\n\r\n")
    assert request_head_for_upstream(head, b"/x") == (
        b"GET /x HTTP/1.1\r\nHost: a.test\r\nX-A:\t1\r\nx-b:2\r\n\r\n")
    # a value ending in whitespace is not kept raw: the fields are rebuilt, trimmed
    spaced = request(b"GET /x HTTP/1.1\r\nHost: a.test\r\nX-A: 1 \r\n\r\n")
    assert spaced.raw_fields == b""
    assert request_head_for_upstream(spaced, b"/x") == (
        b"GET /x HTTP/1.1\r\nHost: a.test\r\nX-A: 1\r\n\r\n")


def test_request_head_for_upstream_keeps_framing_and_host() -> None:
    head = request(
        b"POST http://a.test/ HTTP/1.0\r\nhost: a.test\r\nContent-Length: 5\r\n"
        b"Connection: Content-Length, HOST, transfer-encoding, keep-alive\r\n\r\n")
    assert request_head_for_upstream(head, b"/") == (
        b"POST / HTTP/1.1\r\nhost: a.test\r\nContent-Length: 5\r\n\r\n")
    chunked = request(b"PUT /u HTTP/1.1\r\nHost: a\r\ntransfer-encoding: Chunked\r\n\r\n")
    assert request_head_for_upstream(chunked, b"/u") == (
        b"PUT /u HTTP/1.1\r\nHost: a\r\ntransfer-encoding: Chunked\r\n\r\n")


@pytest.mark.parametrize("path", [b"", b"/a b", b"/\r\nX: y", b"/\x00"])
def test_request_head_for_upstream_refuses_a_bad_path(path: bytes) -> None:
    with pytest.raises(BadRequest):
        request_head_for_upstream(request(b"GET / HTTP/1.1\r\n\r\n"), path)


def test_response_head_for_client() -> None:
    head, _ = response(
        b"HTTP/1.0 200 Fine\r\nServer: s\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
        b"Keep-Alive: timeout=5\r\nContent-Length: 2\r\nUpgrade: h2\r\n"
        b"Proxy-Authenticate: Basic\r\n\r\n")
    assert response_head_for_client(head, keep_alive=True) == (
        b"HTTP/1.1 200 Fine\r\nServer: s\r\nContent-Length: 2\r\n\r\n")
    assert response_head_for_client(head, keep_alive=False) == (
        b"HTTP/1.1 200 Fine\r\nServer: s\r\nContent-Length: 2\r\nConnection: close\r\n\r\n")


def test_response_head_for_client_drops_content_length_beside_transfer_encoding() -> None:
    head, _ = response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                       b"Transfer-Encoding: chunked\r\nX: y\r\n\r\n")
    assert response_head_for_client(head, keep_alive=True) == (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n")


def test_response_head_for_client_closes_an_until_close_body() -> None:
    head, _ = response(b"HTTP/1.1 200\r\nX: y\r\n\r\n")
    assert head.framing is Framing.UNTIL_CLOSE
    assert response_head_for_client(head, keep_alive=True) == (
        b"HTTP/1.1 200 \r\nX: y\r\nConnection: close\r\n\r\n")


def test_error_response() -> None:
    assert error_response(403, "domain_not_allowed", "example.com:443 denied") == (
        b"HTTP/1.1 403 Forbidden\r\nX-Awf-Reason: domain_not_allowed\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 23\r\n"
        b"Connection: close\r\n\r\nexample.com:443 denied\n")
    assert error_response(503, "overloaded", "busy", close=False,
                          extra=(("Retry-After", "1"),)) == (
        b"HTTP/1.1 503 Service Unavailable\r\nX-Awf-Reason: overloaded\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n"
        b"Retry-After: 1\r\n\r\nbusy\n")


def test_error_response_body_is_one_line() -> None:
    raw = error_response(400, "bad_request", "b\u00e4d\r\nX-Injected: 1")
    head, body = raw.split(b"\r\n\r\n", 1)
    assert body == "b\u00e4d??X-Injected: 1\n".encode()
    assert b"Content-Length: %d\r\n" % len(body) in head
    assert b"X-Injected" not in head


@pytest.mark.parametrize("extra", [
    (("Retry-After", "1\r\nX: y"),), (("Bad Name", "1"),), (("X", "\u00e9"),),
])
def test_error_response_refuses_bad_extra_headers(extra: tuple[tuple[str, str], ...]) -> None:
    with pytest.raises(ValueError, match="bad header"):
        error_response(503, "overloaded", "busy", extra=extra)
