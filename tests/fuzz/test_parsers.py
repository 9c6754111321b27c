"""Time-boxed fuzzing of the pure parsers (`make fuzz` runs them longer).

Each target feeds seeds and their mutants whole and in pieces (byte by byte now and then) and
asserts an answer for every input: a value or one of our own errors (never anything else), the
same whole as in pieces, and for request heads we accept, the same reading as h11's.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import dns.message
import h11
import pytest

from proxy.dnsfwd import Query, Reply, encode, parse_query
from proxy.errors import RequestError
from proxy.sni import ClientHelloReader
from tests.fuzz.mutate import inputs, pieces
from tests.unit.sni_hellos import CAPTURED, python_hello
from tests.unit.test_http1_properties import read_response, run

pytestmark = pytest.mark.timeout(600)

REQUESTS = [
    b"GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a.test:8080\r\nConnection: close\r\n\r\n",
    b"POST http://a.test/p HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello",
    b"POST http://a.test/p HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
    b"PUT /u HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5 ;a\r\nhello\r\n0\r\n\r\n",
    b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
    b"GET http://[2001:db8::1]:80/ HTTP/1.0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\n\r\n",
]
RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close",
]


def _h11_reads_alike(stream: bytes, events: Sequence[object]) -> None:
    """A head we accept, h11 reads with the same method and target (we are the stricter one)."""
    if not events or isinstance(events[0], type):
        return
    head = events[0]
    if (head.host is None or head.method == b"CONNECT"  # type: ignore[attr-defined]
            or stream.startswith((b"\r\n", b"\n"))):
        return  # h11 refuses a missing Host and leading empty lines, and has no CONNECT tunnel
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(stream)
    theirs = conn.next_event()
    assert isinstance(theirs, h11.Request), (stream, theirs)
    assert (theirs.method, theirs.target) == (head.method, head.target)  # type: ignore[attr-defined]


def test_request_parser() -> None:
    rng = random.Random(1)
    for n, data in enumerate(inputs(REQUESTS, name="request")):
        whole = run([data])
        assert run(pieces(data, rng)) == whole, (n, data)
        _h11_reads_alike(data, whole)


def test_response_parser() -> None:
    rng = random.Random(2)
    for n, data in enumerate(inputs(RESPONSES, name="response")):
        whole = read_response([data])
        assert read_response(pieces(data, rng)) == whole, (n, data)


def _hello(chunks: list[bytes]) -> object:
    reader = ClientHelloReader()
    try:
        for chunk in chunks:
            hello = reader.feed(chunk)
            if hello is not None:
                return hello
    except RequestError as exc:  # NotTls, BadClientHello: both answer (close, logged)
        return type(exc)
    return None


def test_client_hello_parser() -> None:
    rng = random.Random(3)
    seeds = [*CAPTURED.values(), python_hello(), python_hello(None), python_hello(alpn=['h2'])]
    for n, data in enumerate(inputs(seeds, name="hello")):
        whole = _hello([data])
        assert _hello(pieces(data, rng)) == whole, (n, data)


def _dns_seeds() -> list[bytes]:
    out = []
    for name, rdtype in [("a.test", "A"), ("b.a.test", "AAAA"), ("x" * 63 + ".test", "TXT"),
                         ("a.test", "ANY"), ("a.test", "AXFR")]:
        out.append(dns.message.make_query(name, rdtype).to_wire())
    return out


def test_dns_query_parser() -> None:
    for data in inputs(_dns_seeds(), name="dns"):
        parsed = parse_query(data)
        if len(data) < 12 or data[2] & 0x80:
            assert parsed is None  # no header or a response: dropped, never answered
            continue
        assert isinstance(parsed, Query | Reply), data
        if isinstance(parsed, Reply):  # refusals go out on both transports
            for udp in (True, False):
                assert encode(parsed, udp=udp)
