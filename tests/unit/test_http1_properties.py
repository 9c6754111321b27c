"""Properties of proxy/http1.py: only its own errors, chunking never matters, h11 agrees.

h11 is the differential oracle: on valid requests both parsers must read the
same head, the same body end and the same keep-alive; on mutated requests,
whatever we accept h11 must accept and read the same way (we are the stricter
one, never the looser one).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import h11
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from proxy.errors import BadRequest, RequestError
from proxy.http1 import (  # the private names: to check the fast path against the slow one
    _FIELD_TRIM_RE,
    _RESPONSE_HEAD_TRIM_RE,
    HOP_BY_HOP,
    Authority,
    BadResponse,
    BodyFramer,
    Framing,
    HeadParser,
    RequestHead,
    ResponseHead,
    ResponseHeadParser,
    _read_response_head_tolerantly,
    error_response,
    parse_absolute_target,
    parse_authority,
    request_head_for_upstream,
    response_head_for_client,
    whole_response_head,
)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
SPECIAL = {b"host", b"content-length", b"transfer-encoding", b"connection", b"expect",
           b"content_length", b"transfer_encoding", *HOP_BY_HOP}

tokens = st.text(TCHARS, min_size=1, max_size=10).map(str.encode)
names = tokens.filter(lambda n: n.lower() not in SPECIAL)
VALUE_BYTES = bytes([*range(0x21, 0x7F), 0x80, 0xC3, 0xA9, 0xFF]) + b"   \t"
values = st.binary(max_size=24).map(
    lambda b: bytes(VALUE_BYTES[x % len(VALUE_BYTES)] for x in b).strip(b" \t"))
ows = st.sampled_from([b"", b"", b" ", b"\t", b" \t "])
methods = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"]) | tokens
targets = st.text("abcdefghij0123456789/?=&%-._~!$'()*+,;:@", max_size=30).map(
    lambda t: b"/" + t.encode())


@dataclass(frozen=True)
class Wire:
    """One request as bytes, and what a correct parser reads from it."""

    raw: bytes  # head and body
    method: bytes
    target: bytes
    version: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes  # decoded
    framing: Framing
    keep_alive: bool


# Strategies are built once: building them inside a draw dominates the test time.
REQUEST_METHODS = methods.filter(lambda m: m != b"CONNECT")
VERSIONS = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"])
FIELD_LISTS = st.lists(st.tuples(names, values), max_size=4)
CONNECTIONS = st.sampled_from([None, b"close", b"keep-alive", b"Keep-Alive, X-Opt"])
BODIES = st.binary(max_size=40)
FRAMINGS_10 = st.sampled_from([Framing.NONE, Framing.LENGTH])
FRAMINGS_11 = st.sampled_from([Framing.NONE, Framing.LENGTH, Framing.CHUNKED])
CL_NAMES = st.sampled_from([b"Content-Length", b"content-length"])
TE_FIELDS = st.tuples(st.sampled_from([b"Transfer-Encoding", b"transfer-encoding"]),
                      st.sampled_from([b"chunked", b"Chunked", b"CHUNKED"]))
CUTS = st.lists(st.integers(0, 40), max_size=4)
SIZE_FORMATS = st.sampled_from([b"%x", b"%X", b"0%x"])
EXTENSIONS = st.sampled_from([b"", b";a", b";a=b", b';n="q d"', b";x=1;y"])
TRAILERS = st.sampled_from([b"", b"X-Sum: 1\r\n", b"A: b\r\nC:\r\n"])
POSITIONS = st.integers(0, 8)


@st.composite
def wires(draw: st.DrawFn, *, version: bytes | None = None) -> Wire:
    method = draw(REQUEST_METHODS)
    target = draw(targets)
    version = version or draw(VERSIONS)
    fields = draw(FIELD_LISTS)
    if version == b"HTTP/1.1" or draw(st.booleans()):
        fields.insert(draw(POSITIONS) % (len(fields) + 1), (b"Host", b"a.test"))
    connection = draw(CONNECTIONS)
    if connection is not None:
        fields.append((b"Connection", connection))
    body = draw(BODIES)
    framing = draw(FRAMINGS_11 if version == b"HTTP/1.1" else FRAMINGS_10)
    wire_body = b""
    if framing is Framing.NONE:
        body = b""
    elif framing is Framing.LENGTH:
        fields.append((draw(CL_NAMES), b"%d" % len(body)))
        wire_body = body
    else:
        fields.append(draw(TE_FIELDS))
        wire_body = chunked(draw, body)
    head = b"%s %s %s\r\n" % (method, target, version)
    for name, value in fields:
        head += name + b":" + draw(ows) + value + draw(ows) + b"\r\n"
    keep_alive = connection is None or b"close" not in connection.lower()
    if version == b"HTTP/1.0":
        keep_alive = connection is not None and b"keep-alive" in connection.lower()
    return Wire(head + b"\r\n" + wire_body, method, target, version, tuple(fields), body,
                framing, keep_alive)


def chunked(draw: st.DrawFn, body: bytes) -> bytes:
    """body in the chunked coding, cut at drawn places, with extensions and trailers."""
    cuts = sorted(min(c, len(body)) for c in draw(CUTS))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    out = b""
    for piece in pieces:
        if piece:
            size = draw(SIZE_FORMATS) % len(piece)
            out += size + draw(EXTENSIONS) + b"\r\n" + piece + b"\r\n"
    return out + b"0\r\n" + draw(TRAILERS) + b"\r\n"


NEXT = b"GET /next HTTP/1.1\r\nHost: a.test\r\n\r\n"


# -- running a connection's worth of bytes through HeadParser and BodyFramer ---------------

Event = RequestHead | tuple[str, int] | type[Exception]


def run(pieces: list[bytes], max_head: int = 65_536) -> list[Event]:
    """Heads and body lengths read from a client stream delivered in these pieces."""
    events: list[Event] = []
    parser = HeadParser(max_head=max_head)
    framer: BodyFramer | None = None
    size = 0
    try:
        for piece in pieces:
            data = piece
            while data:
                if framer is None:
                    head = parser.feed(data)
                    if head is None:
                        break
                    events.append(head)
                    framer, size = BodyFramer(head.framing, head.content_length), 0
                    data = parser.take_rest()
                else:
                    used = framer.feed(data)
                    size, data = size + used, data[used:]
                if framer is not None and framer.done:
                    events.append(("body", size))
                    framer = None
    except RequestError as exc:
        events.append(type(exc))
    return events


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def with_splits(data: bytes) -> st.SearchStrategy[tuple[bytes, list[bytes]]]:
    """data and data cut into pieces, often right after a CR or LF, where parsers slip."""
    marks = [i + 1 for i, byte in enumerate(data) if byte in b"\r\n"]
    points = st.integers(0, len(data))
    if marks:
        points |= st.sampled_from(marks)
    return st.tuples(st.just(data), st.lists(points, max_size=8).map(lambda c: split(data, c)))


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """data with a few bytes replaced, inserted or deleted, favouring bytes that matter."""
    out = bytearray(data)
    alphabet = b" \t\r\n:;,=\"0159aAfF-_\x00\x0b\x7f\x80\xff"
    for _ in range(draw(st.integers(1, 3))):
        if not out:
            break
        at = draw(st.integers(0, len(out) - 1))
        byte = draw(st.sampled_from(alphabet) | st.integers(0, 255))
        op = draw(st.sampled_from(["set", "insert", "delete"]))
        if op == "set":
            out[at] = byte
        elif op == "insert":
            out.insert(at, byte)
        else:
            del out[at]
    return bytes(out)


# -- only our own errors, and chunking never matters ----------------------------------------

@FAST
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=6))
def test_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    for prefix in (b"", b"GET / HTTP/1.1\r\n", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked"
                   b"\r\n\r\n"):
        assert run(split(prefix + data, cuts)) == run([prefix + data])


BLANKS = st.sampled_from([b"", b"", b"\r\n", b"\r\n" * 4])
STREAMS = st.lists(st.tuples(BLANKS, wires()), min_size=1, max_size=2).map(
    lambda ws: b"".join(blank + w.raw for blank, w in ws))


@FAST
@given(STREAMS.flatmap(with_splits))
def test_valid_streams_chunk_invariantly(case: tuple[bytes, list[bytes]]) -> None:
    stream, pieces = case
    whole = run([stream])
    assert all(not isinstance(e, type) for e in whole), whole
    assert run(pieces) == whole
    assert run([stream[i : i + 1] for i in range(len(stream))]) == whole
    for i in range(len(stream)):  # every cut in two: the one-piece fast path meets the slow one
        assert run([stream[:i], stream[i:]]) == whole


@FAST
@given(STREAMS.map(lambda stream: stream + b"\r\n" + NEXT).flatmap(mutated)
       .flatmap(with_splits), st.sampled_from([65_536, 40, 80]))
def test_mutated_streams_chunk_invariantly(case: tuple[bytes, list[bytes]], limit: int) -> None:
    stream, pieces = case
    whole = run([stream], limit)
    assert run(pieces, limit) == whole
    assert run([stream[i : i + 1] for i in range(len(stream))], limit) == whole


@FAST
@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=6))
def test_body_framer_on_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    def frame(pieces: list[bytes]) -> tuple[int, bool] | type[Exception]:
        framer, used = BodyFramer(Framing.CHUNKED), 0
        try:
            for piece in pieces:
                n = framer.feed(memoryview(piece))
                used += n
                if n < len(piece):
                    break
        except BadRequest as exc:
            return type(exc)
        return used, framer.done

    for prefix in (b"", b"5\r\nhello\r\n", b"0\r\n"):
        assert frame(split(prefix + data, cuts)) == frame([prefix + data])


# -- h11 as the oracle ----------------------------------------------------------------------

def h11_read(stream: bytes) -> tuple[h11.Request, bytes, bool, h11.Request | Exception | None]:
    """h11's request, body, keep-alive and next request (or why not) for stream.

    Raises if h11 refuses the first request or its body."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(stream)
    first = conn.next_event()
    assert isinstance(first, h11.Request), first
    body = b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.EndOfMessage):
            break
        assert isinstance(event, h11.Data), event
        body += event.data
    conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
    conn.send(h11.EndOfMessage())
    keep_alive = conn.our_state is h11.DONE
    second: h11.Request | Exception | None = None
    if keep_alive:
        conn.start_next_cycle()
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            second = exc
        else:
            assert event is h11.NEED_DATA or isinstance(event, h11.Request), event
            second = event if isinstance(event, h11.Request) else None
    return first, body, keep_alive, second


def ours_read(stream: bytes) -> tuple[RequestHead, int, RequestHead | None]:
    """Our first head, its body length on the wire, and the head after the body."""
    parser = HeadParser()
    head = parser.feed(stream)
    assert head is not None
    rest = parser.take_rest()
    framer = BodyFramer(head.framing, head.content_length)
    used = framer.feed(rest)
    assert framer.done
    return head, used, parser.feed(rest[used:])


def normalised(headers: object) -> list[tuple[bytes, bytes]]:
    """Names lowercased and Transfer-Encoding's value too (h11 lowercases it)."""
    out = []
    for name, value in headers:  # type: ignore[attr-defined]
        name = bytes(name).lower()
        out.append((name, bytes(value).lower() if name == b"transfer-encoding" else bytes(value)))
    return out


@FAST
@given(wires())
def test_h11_agrees_on_valid_requests(wire: Wire) -> None:
    stream = wire.raw + NEXT
    head, used, second = ours_read(stream)
    assert (head.method, head.target, head.version) == (wire.method, wire.target, wire.version)
    assert head.headers == wire.headers
    assert (head.framing, head.keep_alive) == (wire.framing, wire.keep_alive)
    assert used == len(wire.raw) - len(wire.raw.split(b"\r\n\r\n", 1)[0]) - 4
    assert second is not None
    assert second.target == b"/next"

    theirs, body, keep_alive, their_second = h11_read(stream)
    assert (theirs.method, theirs.target) == (head.method, head.target)
    assert b"HTTP/" + theirs.http_version == head.version
    assert normalised(theirs.headers.raw_items()) == normalised(head.headers)
    assert body == wire.body
    if head.version == b"HTTP/1.1":  # h11 never keeps an HTTP/1.0 client alive
        assert keep_alive == head.keep_alive
    if keep_alive:
        assert isinstance(their_second, h11.Request)
        assert their_second.target == second.target


@FAST
@given(wires(version=b"HTTP/1.1").flatmap(lambda w: mutated(w.raw + NEXT)))
def test_whatever_we_accept_h11_reads_the_same(stream: bytes) -> None:
    try:
        head, _, second = ours_read(stream)
    except (RequestError, AssertionError):
        event("we refuse, or the body is incomplete")
        return
    assume(head.host is not None)  # h11 refuses HTTP/1.1 without Host; we leave that to the caller
    assume(not stream.startswith((b"\r\n", b"\n")))  # h11 refuses leading empty lines
    assume(head.method != b"CONNECT" and head.header(b"upgrade") is None)
    event("we accept: compared with h11")
    theirs, _, keep_alive, their_second = h11_read(stream)
    assert (theirs.method, theirs.target) == (head.method, head.target)
    # h11 keeps one of several equal Content-Length fields; the framing shows through NEXT.
    assert without_length(theirs.headers.raw_items()) == without_length(head.headers)
    if head.version == b"HTTP/1.1":
        assert keep_alive == head.keep_alive
    if keep_alive and second is not None and second.host is not None:
        assert isinstance(their_second, h11.Request), their_second
        assert (their_second.method, their_second.target) == (second.method, second.target)
        assert normalised(their_second.headers.raw_items()) == normalised(second.headers)


def without_length(headers: object) -> list[tuple[bytes, bytes]]:
    return [(n, v) for n, v in normalised(headers) if n != b"content-length"]


# -- responses ------------------------------------------------------------------------------

STATUSES = st.sampled_from([200, 201, 404, 500])


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, int, bytes]:
    status = draw(STATUSES)
    fields = draw(FIELD_LISTS)
    body = draw(BODIES)
    if draw(st.booleans()):
        fields.append((b"Content-Length", b"%d" % len(body)))
        wire_body = body
    else:
        fields.append((b"Transfer-Encoding", b"chunked"))
        wire_body = chunked(draw, body)
    head = b"HTTP/1.1 %d Reason\r\n" % status
    for name, value in fields:
        head += name + b":" + draw(ows) + value + draw(ows) + b"\r\n"
    return head + b"\r\n" + wire_body, status, body


def read_response(pieces: list[bytes]) -> tuple[ResponseHead, int] | type[Exception] | None:
    parser = ResponseHeadParser(request_method=b"GET")
    head: ResponseHead | None = None
    framer, used = None, 0
    try:
        for piece in pieces:
            if head is None:
                head = parser.feed(piece)
                if head is None:
                    continue
                framer = BodyFramer(head.framing, head.content_length, error=BadResponse)
                piece = parser.take_rest()
            assert framer is not None
            used += framer.feed(piece)
            if framer.done:
                return head, used
    except BadResponse as exc:
        return type(exc)
    return None


@FAST
@given(responses(), st.lists(st.integers(0, 400), max_size=6))
def test_h11_agrees_on_valid_responses(case: tuple[bytes, int, bytes], cuts: list[int]) -> None:
    raw, status, body = case
    ours = read_response([raw + b"NEXT"])
    assert isinstance(ours, tuple)
    assert read_response(split(raw + b"NEXT", cuts)) == ours
    head, used = ours
    assert used == len(raw) - len(raw.split(b"\r\n\r\n", 1)[0]) - 4

    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "a.test")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    theirs = conn.next_event()
    assert isinstance(theirs, h11.Response)
    assert theirs.status_code == head.status == status
    assert normalised(theirs.headers.raw_items()) == normalised(head.headers)
    got = b""
    while not isinstance(event := conn.next_event(), h11.EndOfMessage):
        assert isinstance(event, h11.Data)
        got += event.data
    assert got == body


@FAST
@given(responses())
def test_fast_and_tolerant_response_readers_agree(case: tuple[bytes, int, bytes]) -> None:
    raw = case[0].split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    raw = re.sub(rb"[ \t]+\r\n", b"\r\n", raw)  # the fast path takes no trailing OWS
    fast = _RESPONSE_HEAD_TRIM_RE.fullmatch(raw)
    assert fast is not None
    version, code, reason, block = fast.groups()
    assert _read_response_head_tolerantly(raw) == (
        version, code, reason, tuple(_FIELD_TRIM_RE.findall(block)))


@FAST
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=6))
def test_response_parser_on_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    for prefix in (b"", b"HTTP/1.1 200 OK\r\n"):
        assert read_response(split(prefix + data, cuts)) == read_response([prefix + data])


@FAST
@given(responses().flatmap(lambda case: mutated(b"\r\n" + case[0])).flatmap(with_splits))
def test_mutated_responses_chunk_invariantly(case: tuple[bytes, list[bytes]]) -> None:
    raw, pieces = case
    assert read_response(pieces) == read_response([raw])


# -- authorities, targets and serialising ----------------------------------------------------

hostnames = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,8}){0,3}",
                          fullmatch=True)
ports = st.integers(1, 65535)


@FAST
@given(st.binary(max_size=60), st.sampled_from([None, 80]))
def test_parse_authority_raises_only_bad_request(raw: bytes, default: int | None) -> None:
    try:
        authority = parse_authority(raw, default_port=default)
    except BadRequest:
        return
    assert 0 < authority.port <= 65535
    assert authority.host
    assert "@" not in authority.host


@FAST
@given(st.binary(max_size=60))
def test_parse_absolute_target_raises_only_bad_request(raw: bytes) -> None:
    for target in (raw, b"http://" + raw, b"https://a.test" + raw):
        try:
            scheme, _, path = parse_absolute_target(target)
        except BadRequest:
            continue
        assert scheme in (b"http", b"https")
        assert path.startswith(b"/")


@FAST
@given(hostnames, ports, st.sampled_from([b"http", b"HTTP", b"https"]), targets)
def test_authorities_round_trip(host: str, port: int, scheme: bytes, path: bytes) -> None:
    raw = b"%s:%d" % (host.encode(), port)
    assert parse_authority(raw, default_port=None) == Authority(host, port, False)
    assert parse_absolute_target(b"%s://%s%s" % (scheme, raw, path)) == (
        scheme.lower(), Authority(host, port, False), path)


@FAST
@given(st.ip_addresses(v=6), ports)
def test_ipv6_authorities_round_trip(address: ipaddress.IPv6Address, port: int) -> None:
    raw = b"[%s]:%d" % (str(address).encode(), port)
    assert parse_authority(raw, default_port=None) == Authority(str(address), port, True)


@FAST
@given(wires())
def test_forwarded_head_reparses_without_hop_by_hop(wire: Wire) -> None:
    head = ours_read(wire.raw + NEXT)[0]
    forwarded = HeadParser().feed(request_head_for_upstream(head, head.target))
    assert forwarded is not None
    assert (forwarded.method, forwarded.target, forwarded.version) == (
        head.method, head.target, b"HTTP/1.1")
    named = {t.strip().lower() for t in (head.header(b"connection") or b"").split(b",")}
    assert forwarded.headers == tuple(
        (n, v) for n, v in head.headers if n.lower() not in HOP_BY_HOP | named)
    assert (forwarded.framing, forwarded.content_length) == (head.framing, head.content_length)


@FAST
@given(st.text(max_size=80), st.sampled_from([(403, "domain_not_allowed"), (400, "bad_request"),
                                                (502, "dns_failure")]))
def test_error_responses_parse(line: str, answer: tuple[int, str]) -> None:
    status, reason = answer
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "a.test")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(error_response(status, reason, line))
    head = conn.next_event()
    assert isinstance(head, h11.Response)
    assert head.status_code == status
    assert dict(head.headers)[b"x-awf-reason"] == reason.encode()
    data = conn.next_event()
    assert isinstance(data, h11.Data)
    text = bytes(data.data).decode()
    assert text.endswith("\n")
    assert text.count("\n") == 1
    assert "\r" not in text
    assert isinstance(conn.next_event(), h11.EndOfMessage)


def response_events(pieces: list[bytes]) -> list[object]:
    """Every head (status, headers, framing, length, keep-alive) and the rest, or the error."""
    parser = ResponseHeadParser(request_method=b"GET")
    out: list[object] = []
    try:
        for i, piece in enumerate(pieces):
            head = parser.feed(piece)
            while head is not None:
                out.append((head.status, head.headers, head.framing, head.content_length,
                            head.keep_alive))
                if not head.interim:
                    out.append(parser.take_rest() + b"".join(pieces[i + 1:]))
                    return out
                head = parser.feed(b"")
    except BadResponse as exc:
        out.append(type(exc))
    return out


_LINE_ENDS = st.sampled_from([b"\r\n", b"\n"])


@st.composite
def response_streams(draw: st.DrawFn) -> bytes:
    """Interim heads, then a final one, any line ends, then body bytes."""
    wire = b""
    for status in [*draw(st.lists(st.sampled_from([100, 102, 103]), max_size=2)), 200]:
        eol = draw(_LINE_ENDS)
        wire += b"HTTP/1.1 %d X" % status + eol
        for name, value in draw(st.lists(st.sampled_from(
                [(b"Content-Length", b"3"), (b"Connection", b"close"), (b"X-A", b"1"),
                 (b"Transfer-Encoding", b"chunked"), (b"Content_Length", b"4")]), max_size=3)):
            wire += name + b": " + value + draw(_LINE_ENDS)
        wire += draw(_LINE_ENDS)
    return wire + draw(st.binary(max_size=20))


@FAST
@given(response_streams(), st.lists(st.integers(0, 300), max_size=6))
def test_response_heads_read_alike_whole_or_in_pieces(wire: bytes, cuts: list[int]) -> None:
    """The one-piece fast path and the buffered path agree, byte by byte included."""
    whole = response_events([wire])
    assert response_events(split(wire, cuts)) == whole
    assert response_events([wire[i:i + 1] for i in range(len(wire))]) == whole


def whole_or_error(data: bytes) -> object:
    try:
        return whole_response_head(data, b"GET")
    except BadResponse as exc:
        return type(exc)


@FAST
@given(st.one_of(response_streams(), st.binary(max_size=300),
                 responses().flatmap(lambda case: mutated(case[0]))))
def test_whole_response_head_reads_as_the_parser_does(wire: bytes) -> None:
    """The exchange's shortcut (no parser object when a head arrives whole) gives the parser's
    head and body start, or None (then the parser reads the same bytes), or the same error."""
    whole = whole_or_error(wire)
    events = response_events([wire])
    if whole is None:
        return
    if isinstance(whole, type):
        assert events[-1] is whole
        return
    assert isinstance(whole, tuple)
    head, end = whole
    assert events[0] == (head.status, head.headers, head.framing, head.content_length,
                         head.keep_alive)
    if not head.interim:
        assert events[1] == wire[end:]
    assert whole_or_error(wire) == whole  # a second read (memoised) gives the same


@FAST
@given(st.one_of(response_streams(), responses().map(lambda case: case[0])))
def test_a_response_head_is_kept_verbatim_only_when_it_may_pass_through(wire: bytes) -> None:
    whole = whole_or_error(wire)
    if not isinstance(whole, tuple):
        return
    resp = whole[0]
    if resp.raw:
        assert resp.raw == wire[:whole[1]]
        assert resp.version == b"HTTP/1.1"
        assert resp.framing is Framing.LENGTH
        assert all(n.lower() not in HOP_BY_HOP or (n.lower(), v.lower()) == (
            b"connection", b"keep-alive") for n, v in resp.headers)
        assert response_head_for_client(resp, keep_alive=True) == resp.raw


def test_memoised_heads_raise_every_time() -> None:
    """Errors are not memoised: the same bad head is refused again, the same good one is read
    alike (one object, as its parse is pure)."""
    bad = b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"
    for _ in range(3):
        try:
            HeadParser().feed(bad)
        except BadRequest:
            continue
        raise AssertionError("a head with two Host fields was accepted")
    good = b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n"
    assert HeadParser().feed(good) is HeadParser().feed(b"%s" % good)
    bad_resp = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
    for _ in range(3):
        try:
            whole_response_head(bad_resp, b"GET")
        except BadResponse:
            continue
        raise AssertionError("conflicting Content-Length values were accepted")
