"""Strict sans-IO HTTP/1.1 heads and body framing for awf-proxy's hot path.

Bytes in, values out: no I/O, no await, no clock. A proxy that reads framing
differently from the server behind it lets one request hide another (request
smuggling), so requests are held to the RFC 9112 grammar and anything
ambiguous is a `BadRequest`. Responses are read as tolerantly as browsers
and curl read them (bare LF line ends, obs-fold, whitespace before the
colon, no reason phrase), but their framing is never ambiguous.

Algorithms and RFC notes:

* `HeadParser` keeps one buffer and how far it has scanned. Each `feed`
  looks only at the new bytes (the CRLFCRLF search restarts 3 bytes back,
  the bare CR/LF check 1 byte back), so any split of the input costs O(n).
  Once CRLFCRLF is buffered, one anchored regex checks the whole head in C
  and a second splits the fields; only when it fails does a slow pass find
  the line to blame.
* The head ends at the first CRLFCRLF and must fit in `max_head` bytes. A
  bare CR or bare LF raises as soon as it arrives, so `GET / HTTP/1.1\\n\\n`
  gets its 400 at once rather than a head timeout; so does a first line
  that cannot start a request (a TLS hello or SOCKS greeting).
* Up to 4 empty lines before the request line are ignored (RFC 9112 §2.2).
* Request framing (RFC 9112 §6.1-6.3): Transfer-Encoding must be exactly one
  `chunked` and excludes Content-Length and HTTP/1.0; Content-Length is
  1*DIGIT (at most 18 digits), repeated only with byte-identical values
  (also as a list: `5, 5`); no Host twice; a CONNECT carries no body;
  look-alikes a server might normalise (`Content_Length`) are refused.
* Response framing (RFC 9112 §6.3): HEAD, 1xx, 204, 304 and a 2xx to CONNECT
  have no body; a final `chunked` wins over Content-Length, which is then
  dropped from the forwarded head and the upstream connection is not reused;
  another Transfer-Encoding, or no framing header at all, reads until close.
* `BodyFramer` never copies body bytes: it counts them and parses only the
  chunk-size lines and trailers (chunk line at most 4 KiB, chunk extensions
  at most 64 KiB per body, trailers at most 64 KiB). Chunk lines are strict:
  1-16 hex digits, no whitespace anywhere (not even the BWS RFC 9112 §7.1.1
  allows before `;`: servers disagree about it), CRLF only.
* Hop-by-hop fields (RFC 9110 §7.6.1) are dropped when forwarding, with
  every field named in Connection, except that Connection can never remove
  Host, Content-Length or Transfer-Encoding (framing is forwarded verbatim).
  Whether a head has any is decided once, when it is parsed: `raw_fields`
  and `ResponseHead.raw` are kept only when the head may go on verbatim.
* A head of at most `MEMO_HEAD` bytes that arrives in one piece is looked up
  by its exact bytes first (an LRU of `MEMO_SIZE` heads per kind): parsing
  is a pure function of them, a hit returns the same immutable tuple, and a
  refused head is never kept, so it is refused again. A client polling one
  URL, and an origin's answers within one second, are parsed once.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final, NamedTuple

from proxy.errors import BadRequest, BadResponse, HeadTooLarge

__all__ = [
    "Authority",
    "BadRequest",
    "BadResponse",
    "BodyFramer",
    "Framing",
    "HeadParser",
    "HeadTooLarge",
    "RequestHead",
    "ResponseHead",
    "ResponseHeadParser",
    "error_response",
    "parse_absolute_target",
    "parse_authority",
    "request_head_for_upstream",
    "response_head_for_client",
    "whole_response_head",
]


class Framing(enum.Enum):
    """How the end of a message body is found."""

    NONE = "none"  # no body
    LENGTH = "length"  # Content-Length bytes
    CHUNKED = "chunked"  # chunked transfer coding, ends after the trailers
    UNTIL_CLOSE = "until_close"  # responses only: the body ends when the upstream closes


MAX_BLANK_LINES: Final = 4  # empty lines tolerated before a request or status line
MAX_CHUNK_LINE: Final = 4096  # one chunk-size line, extensions and CRLF included
MAX_CHUNK_EXTENSIONS: Final = 65_536  # chunk-extension bytes in one body
MAX_TRAILERS: Final = 65_536  # trailer section of one chunked body, final CRLF included
_MAX_CL_DIGITS: Final = 18

# -- grammar (RFC 9110 §5.6.2, §5.5; RFC 9112 §3, §5, §7.1) -------------------------------
# Possessive quantifiers (*+, ++) where the next byte can never belong to the run, so no
# backtracking is ever needed: same matches, and sre skips the bookkeeping (about 25% faster).
_TCHAR: Final = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN: Final = rb"[" + _TCHAR + rb"]++"
_FIELD_VCHAR: Final = rb"[\x21-\x7e\x80-\xff]"
_REQUEST_LINE: Final = rb"(" + _TOKEN + rb") ([\x21-\x7e]++) (HTTP/1\.[01])"
_FIELD_LINE: Final = _TOKEN + rb":[\t\x20-\x7e\x80-\xff]*+\r\n"
# The same, except that the value does not end in whitespace (the usual case).
_FIELD_LINE_TRIM: Final = _TOKEN + rb":[\t\x20-\x7e\x80-\xff]*+(?<![ \t])\r\n"

_REQUEST_LINE_RE: Final = re.compile(_REQUEST_LINE)
_REQUEST_HEAD_TRIM_RE: Final = re.compile(
    _REQUEST_LINE + rb"\r\n((?:" + _FIELD_LINE_TRIM + rb")*+)\r\n")
_REQUEST_HEAD_RE: Final = re.compile(
    _REQUEST_LINE + rb"\r\n((?:" + _FIELD_LINE + rb")*+)\r\n")
# Split a field block matched by the regex above them into (name, value without OWS) pairs.
_FIELD_TRIM_RE: Final = re.compile(rb"([^:]++):[ \t]*+([^\r]*+)\r\n")
_FIELD_RE: Final = re.compile(
    rb"(" + _TOKEN + rb"):[ \t]*((?:" + _FIELD_VCHAR + rb"+(?:[ \t]+" + _FIELD_VCHAR
    + rb"+)*)?)[ \t]*\r\n"
)
_TOKEN_RE: Final = re.compile(_TOKEN)
_TCHARS_RE: Final = re.compile(rb"[" + _TCHAR + rb"]*")
_TARGET_RE: Final = re.compile(rb"[\x21-\x7e]+")
_BARE_CR_LF_RE: Final = re.compile(rb"\r[^\n]|(?<!\r)\n")
_CTL_RE: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

_QUOTED: Final = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
# chunk-ext without the BWS RFC 9112 §7.1.1 allows: no client sends it, and servers
# disagree about whitespace there (a smuggling vector), so it is refused.
_CHUNK_LINE_RE: Final = re.compile(
    rb"([0-9A-Fa-f]{1,16})((?:;" + _TOKEN + rb"(?:=(?:" + _TOKEN + rb"|" + _QUOTED
    + rb"))?)*)\r\n"
)
_TRAILER_LINE_RE: Final = re.compile(_FIELD_LINE)
_LF_RE: Final = re.compile(rb"\n")

_STATUS_LINE: Final = rb"(HTTP/1\.[01]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*+))?"
_RESPONSE_HEAD_TRIM_RE: Final = re.compile(
    _STATUS_LINE + rb"\r\n((?:" + _FIELD_LINE_TRIM + rb")*+)\r\n")
# Tolerant forms, for a head the regex above refused: any control but NUL, CR and LF.
_STATUS_LINE_RE: Final = re.compile(rb"(HTTP/1\.[01]) ([0-9]{3})(?: ([^\x00\r\n]*))?")
_RESPONSE_FIELD_RE: Final = re.compile(rb"(" + _TOKEN + rb")[ \t]*:[ \t]*([^\x00\r\n]*)")

_HOST: Final = 1
_CONTENT_LENGTH: Final = 2
_TRANSFER_ENCODING: Final = 3
_CONNECTION: Final = 4
_LOOKALIKE: Final = 5
_FRAMING_FIELDS: Final = {
    b"host": _HOST,
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
}
# The same with the usual spellings, so most names need no .lower(); then the lengths to lower.
_FRAMING_SPELLINGS: Final = {
    **_FRAMING_FIELDS,
    **{k.title(): v for k, v in _FRAMING_FIELDS.items()},
    **{k.upper(): v for k, v in _FRAMING_FIELDS.items()},
}
_FRAMING_LENGTHS: Final = frozenset(len(k) for k in _FRAMING_FIELDS)
HOP_BY_HOP: Final = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization",
    b"proxy-authenticate", b"te", b"trailer", b"upgrade",
})
_NEVER_HOP_BY_HOP: Final = frozenset({b"host", b"content-length", b"transfer-encoding"})

Fields = tuple[tuple[bytes, bytes], ...]


def _show(data: bytes | bytearray, limit: int = 60) -> str:
    """A short repr of peer bytes for an error message."""
    return repr(bytes(data[:limit])) + ("..." if len(data) > limit else "")


def _first(headers: Fields, name: bytes) -> bytes | None:
    name = name.lower()
    for field, value in headers:
        if field.lower() == name:
            return value
    return None


def _connection_tokens(values: Iterable[bytes]) -> frozenset[bytes]:
    return frozenset(
        t for v in values for item in v.split(b",") if (t := item.strip(b" \t").lower())
    )


def _framing_fields(headers: Fields) -> list[tuple[int, bytes, bytes]]:
    """(kind, name, value) of the Host, Content-Length, Transfer-Encoding and Connection
    fields, and of look-alikes such as Content_Length that a server might normalise."""
    found = []
    spellings, lengths = _FRAMING_SPELLINGS, _FRAMING_LENGTHS
    for name, value in headers:
        kind = spellings.get(name)
        if kind is None:
            if len(name) not in lengths:
                continue
            lower = name.lower()
            kind = _FRAMING_FIELDS.get(lower)
            if kind is None:
                if b"_" not in lower or lower.replace(b"_", b"-") not in _FRAMING_FIELDS:
                    continue
                kind = _LOOKALIKE
        found.append((kind, name, value))
    return found


def _connection_options(value: bytes) -> tuple[bool, bool]:
    """Whether a Connection field value says close, and whether it says keep-alive."""
    options = value.lower()
    if options == b"keep-alive":
        return False, True
    if options == b"close":
        return True, False
    tokens = _connection_tokens((options,))
    return b"close" in tokens, b"keep-alive" in tokens


# -- requests ----------------------------------------------------------------------------


class RequestHead(NamedTuple):
    """A validated request head. `headers` keeps names as received and values without OWS.

    An immutable tuple rather than a frozen dataclass: one is built per request, and a frozen
    dataclass's __init__ costs an object.__setattr__ per field."""

    method: bytes
    target: bytes
    version: bytes
    headers: Fields
    framing: Framing
    content_length: int
    keep_alive: bool
    host: bytes | None
    # the field lines as received, each with its CRLF (not the empty line ending the head),
    # when no value ends in whitespace and no field is hop-by-hop; b"" otherwise (forwarding
    # then rebuilds them)
    raw_fields: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        """The first value of field `name` (case-insensitive), or None."""
        return _first(self.headers, name)


class HeadParser:
    """Finds and validates one request head at a time in a byte stream.

    `feed` returns None until the head is complete, then the `RequestHead`;
    the bytes after it wait in `take_rest()`, which also readies the parser
    for the next head. Raises `BadRequest` or `HeadTooLarge`; after that,
    answer 400 and close (the parser is not meant to go on).
    """

    __slots__ = ("_blank", "_buf", "_line_ok", "_max", "_method_ok", "_rest", "_scanned",
                 "_started")

    def __init__(self, *, max_head: int = 65_536) -> None:
        if max_head < 32:
            raise ValueError(f"max_head={max_head!r} is too small for any request head")
        self._max = max_head
        self._buf = bytearray()
        self._rest: bytes | None = None
        self._scanned = 0  # bytes of _buf already checked
        self._started = False  # a byte other than a leading empty line arrived
        self._blank = 0  # leading empty lines skipped
        self._line_ok = False  # the request line is complete and valid
        self._method_ok = False  # the method is complete and is a token

    @property
    def pending(self) -> int:
        """Bytes buffered towards a head not yet complete (0 once a head is returned)."""
        return len(self._buf)

    def take_rest(self) -> bytes:
        """The bytes received after the last head (body, pipelined request or tunnel data).

        Clears them and readies the parser for the next head.
        """
        rest, self._rest = self._rest, None
        return rest or b""

    def feed(self, data: bytes) -> RequestHead | None:
        """Add bytes; the complete head, or None to ask for more."""
        if self._rest is not None:
            raise RuntimeError("HeadParser.feed() after a complete head; call take_rest() first")
        if not self._buf and data[:1] not in (b"\r", b""):
            # The usual case: a whole head in one piece, nothing buffered.
            end = data.find(b"\r\n\r\n", 0, self._max)
            if end >= 0:
                raw = bytes(data[: end + 4])
                head = _memo_request_head(raw) if end < MEMO_HEAD else _parse_request_head(raw)
                self._rest = bytes(data[end + 4 :])
                self._blank = 0
                return head
        buf: bytes | bytearray
        if self._buf:
            self._buf += data
            buf = self._buf
        else:
            buf = data
        if not self._started:
            if buf[:1] not in (b"\r", b""):
                self._started = True
            else:
                buf = self._skip_blank_lines(buf)
                if not self._started:
                    self._keep(buf)
                    return None
        s = self._scanned
        end = buf.find(b"\r\n\r\n", s - 3 if s > 3 else 0, self._max)
        if end < 0:
            self._check_partial(buf, min(len(buf), self._max))
            if len(buf) >= self._max:
                raise HeadTooLarge(
                    f"request head over {self._max} bytes; send fewer or shorter headers")
            self._scanned = len(buf)
            self._keep(buf)
            return None
        end += 4
        head = _parse_request_head(bytes(buf[:end]))
        self._rest = bytes(buf[end:])
        if buf is self._buf:
            self._buf.clear()
        self._scanned = self._blank = 0
        self._started = self._line_ok = self._method_ok = False
        return head

    def _keep(self, buf: bytes | bytearray) -> None:
        if buf is not self._buf:  # _buf was empty and buf is (a slice of) the fed bytes
            self._buf += buf

    def _skip_blank_lines(self, buf: bytes | bytearray) -> bytes | bytearray:
        i, n = 0, len(buf)
        while i + 1 < n and buf[i] == 13 and buf[i + 1] == 10:
            i += 2
            self._blank += 1
            if self._blank > MAX_BLANK_LINES:
                raise BadRequest(
                    f"more than {MAX_BLANK_LINES} empty lines before the request line")
        if i < n and not (i + 1 == n and buf[i] == 13):
            self._started = True
        if not i:
            return buf
        if buf is self._buf:
            del self._buf[:i]
            return self._buf
        return buf[i:]

    def _check_partial(self, buf: bytes | bytearray, n: int) -> None:
        """Checks of the new bytes of an incomplete head that must not wait for its end."""
        s = self._scanned
        bare = _BARE_CR_LF_RE.search(buf, max(s - 1, 0), n)
        if bare is not None:
            raise _bare_cr_lf(bare.start())
        if self._line_ok:
            return
        eol = buf.find(b"\r\n", max(s - 1, 0), n)
        if eol >= 0:
            if _REQUEST_LINE_RE.fullmatch(buf, 0, eol) is None:
                raise _request_line_error(bytes(buf[:eol]))
            self._line_ok = True
        elif not self._method_ok:
            run = _TCHARS_RE.match(buf, s, n)
            stop = n if run is None else run.end()
            if stop < n:
                if buf[stop] != 0x20 or stop == 0:
                    raise BadRequest(
                        f"not an HTTP request: {_show(buf[:stop + 1])} does not start with "
                        "a method token and a space (TLS or SOCKS sent to an HTTP proxy?)")
                self._method_ok = True


def _bare_cr_lf(at: int) -> BadRequest:
    return BadRequest(f"bare CR or LF at byte {at} of the request head; end every line with CRLF")


def _parse_request_head(raw: bytes) -> RequestHead:
    m = _REQUEST_HEAD_TRIM_RE.fullmatch(raw)
    if m is not None:
        method, target, version, block = m.groups()
        headers: Fields = tuple(_FIELD_TRIM_RE.findall(block))
        raw_fields = b"" if any(n.lower() in HOP_BY_HOP for n, _ in headers) else block
    else:  # some value ends in whitespace, or the head is bad
        m = _REQUEST_HEAD_RE.fullmatch(raw)
        if m is None:
            raise _request_head_error(raw)
        method, target, version, block = m.groups()
        headers = tuple(_FIELD_RE.findall(block))
        raw_fields = b""
    host: bytes | None = None
    length: bytes | None = None
    coding: bytes | None = None
    close = keep = False  # Connection: close / keep-alive
    for kind, name, value in _framing_fields(headers):
        if kind == _HOST:
            if host is not None:
                raise BadRequest(
                    f"two Host headers ({_show(host)}, {_show(value)}); send exactly one")
            host = value
        elif kind == _CONTENT_LENGTH:
            for item in value.split(b","):
                item = item.strip(b" \t")
                if not item.isdigit() or len(item) > _MAX_CL_DIGITS:
                    raise BadRequest(
                        f"Content-Length {_show(value)} is not a decimal number of bytes")
                if length is None:
                    length = item
                elif item != length:
                    raise BadRequest(f"conflicting Content-Length values {length!r} and "
                                     f"{item!r}; send one")
        elif kind == _TRANSFER_ENCODING:
            if coding is not None:
                raise BadRequest("two Transfer-Encoding headers; send one 'chunked'")
            coding = value
        elif kind == _CONNECTION:
            says_close, says_keep = _connection_options(value)
            close, keep = close or says_close, keep or says_keep
        else:
            raise BadRequest(f"request header {_show(name)} looks like a framing field; "
                             "spell it with '-' or drop it")
    framing, size = Framing.NONE, 0
    if coding is not None:
        if version == b"HTTP/1.0":
            raise BadRequest("Transfer-Encoding in an HTTP/1.0 request; use Content-Length")
        if length is not None:
            raise BadRequest("both Transfer-Encoding and Content-Length; send only one")
        if coding.lower() != b"chunked":
            raise BadRequest(
                f"Transfer-Encoding {_show(coding)} is not supported; send exactly 'chunked'")
        framing = Framing.CHUNKED
    elif length is not None:
        framing, size = Framing.LENGTH, int(length)
    if method == b"CONNECT":
        if framing is Framing.CHUNKED or size:
            raise BadRequest("CONNECT request with a body; send the bytes through the tunnel")
        framing, size = Framing.NONE, 0
    keep_alive = not close and (keep or version == b"HTTP/1.1")
    return RequestHead(method, target, version, headers, framing, size, keep_alive, host,
                       raw_fields)


# A client polling one URL sends the same head again and again, and an origin answers with the
# same head within one second (its Date): a short head already parsed is looked up by its exact
# bytes (parsing is a pure function of them; a refused head raises again, errors are not kept).
# At most MEMO_SIZE heads of at most MEMO_HEAD bytes each are kept: 256 KiB per kind.
MEMO_HEAD: Final = 1024
MEMO_SIZE: Final = 256
_memo_request_head: Final = functools.lru_cache(maxsize=MEMO_SIZE)(_parse_request_head)


def _request_line_error(line: bytes) -> BadRequest:
    if b"\r" in line or b"\n" in line:
        return BadRequest(f"bare CR or LF in request line {_show(line)}; end it with CRLF")
    parts = line.split(b" ")
    if len(parts) != 3 or not all(parts):
        return BadRequest(f"request line {_show(line)} is not 'METHOD SP target SP HTTP/1.1' "
                          "with single spaces")
    method, target, version = parts
    if _TOKEN_RE.fullmatch(method) is None:
        return BadRequest(f"request method {_show(method)} is not a token")
    if _TARGET_RE.fullmatch(target) is None:
        return BadRequest(f"request target {_show(target)} has a control or non-ASCII byte; "
                          "percent-encode it")
    return BadRequest(f"unsupported HTTP version {_show(version)}; send HTTP/1.1 or HTTP/1.0")


def _request_head_error(raw: bytes) -> BadRequest:
    """Names what is wrong with a head the fast regex refused."""
    lines = raw[:-4].split(b"\r\n")
    if _REQUEST_LINE_RE.fullmatch(lines[0]) is None:
        return _request_line_error(lines[0])
    return _field_lines_error(lines[1:], "request header") or BadRequest(
        f"malformed request head {_show(raw)}")


def _field_lines_error(lines: Iterable[bytes], what: str) -> BadRequest | None:
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            return BadRequest(f"{what} line {_show(line)} starts with whitespace (obs-fold); "
                              "send each field on one line")
        if b"\r" in line or b"\n" in line:
            return BadRequest(f"bare CR or LF in {what} {_show(line)}; end lines with CRLF")
        name, colon, value = line.partition(b":")
        if not colon:
            return BadRequest(f"{what} line {_show(line)} has no colon")
        if _TOKEN_RE.fullmatch(name) is None:
            if name and _TOKEN_RE.fullmatch(name.rstrip(b" \t")) is not None:
                return BadRequest(f"whitespace before the colon in {what} {_show(name)}; "
                                  "remove it")
            return BadRequest(f"{what} name {_show(name)} is not a token")
        ctl = _CTL_RE.search(value)
        if ctl is not None:
            return BadRequest(f"control character {ctl.group()!r} in {what} {_show(name)}; "
                              "remove it")
    return None


# -- responses ---------------------------------------------------------------------------


class ResponseHead(NamedTuple):
    """A response head as read (tolerantly) from the upstream (a tuple: see RequestHead)."""

    version: bytes
    status: int
    reason: bytes
    headers: Fields
    framing: Framing
    content_length: int
    keep_alive: bool  # the upstream connection may carry another request after this one
    # the head as received when a kept-alive client may get it verbatim (a clean HTTP/1.1 head,
    # Content-Length framing, no hop-by-hop field but `Connection: keep-alive`); b"" otherwise
    raw: bytes = b""

    @property
    def interim(self) -> bool:
        """A 1xx other than 101: forward it and keep reading for the final response."""
        return 100 <= self.status < 200 and self.status != 101

    def header(self, name: bytes) -> bytes | None:
        """The first value of field `name` (case-insensitive), or None."""
        return _first(self.headers, name)


class ResponseHeadParser:
    """Reads the response heads to one request: interim 1xx heads, then the final one.

    `feed` returns each head as it completes; after an interim head, call
    `feed(b"")` to go on with bytes already buffered. After the final head,
    `take_rest()` gives the body start. Raises `BadResponse`.
    """

    __slots__ = ("_blank", "_buf", "_final", "_max", "_method", "_rest", "_scanned", "_started")

    def __init__(self, *, request_method: bytes, max_head: int = 65_536) -> None:
        self._method = request_method
        self._max = max_head
        self._buf = bytearray()  # bytes not yet returned as a head
        self._rest = b""  # after a final head read in one piece: the bytes after it
        self._scanned = 0
        self._blank = 0
        self._started = False
        self._final = False

    def feed(self, data: bytes) -> ResponseHead | None:
        """Add bytes; the next complete head, or None to ask for more."""
        if self._final:
            raise RuntimeError("ResponseHeadParser.feed() after the final response head")
        if not self._buf:
            whole = whole_response_head(data, self._method, self._max)
            if whole is not None:
                head, end = whole
                if head.interim:
                    self._buf += data[end:]
                else:
                    self._final = True
                    self._rest = data[end:]
                return head
        buf: bytes | bytearray
        if self._buf:
            self._buf += data
            buf = self._buf
        else:
            buf = data
        if not self._started:
            if buf[:1] in (b"\r", b"\n", b""):
                buf = self._skip_blank_lines(buf)
                if not buf or buf == b"\r":
                    self._keep(buf)
                    return None
            self._started = True
        # The head ends at the first LF CRLF or LF LF (bare LF line ends are tolerated).
        s, limit = self._scanned, self._max
        crlf = buf.find(b"\n\r\n", s - 2 if s > 2 else 0, limit)
        lflf = buf.find(b"\n\n", s - 1 if s > 1 else 0, crlf + 1 if crlf >= 0 else limit)
        if lflf >= 0:
            end = lflf + 2
        elif crlf >= 0:
            end = crlf + 3
        else:
            if len(buf) >= limit:
                raise BadResponse(f"response head over {limit} bytes")
            self._scanned = len(buf)
            self._keep(buf)
            return None
        head = _parse_response_head(bytes(buf[:end]), self._method)
        if buf is self._buf:
            del self._buf[:end]
        else:
            self._buf += buf[end:]
        self._scanned = self._blank = 0
        self._started = False
        self._final = not head.interim
        return head

    def take_rest(self) -> bytes:
        """After the final head: the bytes after it (body start), cleared. Before it: b""."""
        if not self._final:
            return b""
        if self._rest:
            rest, self._rest = self._rest, b""
            return rest
        rest = bytes(self._buf)
        self._buf.clear()
        return rest

    def _keep(self, buf: bytes | bytearray) -> None:
        if buf is not self._buf:  # _buf was empty and buf is (a slice of) the fed bytes
            self._buf += buf

    def _skip_blank_lines(self, buf: bytes | bytearray) -> bytes | bytearray:
        i = 0
        while True:
            step = 2 if buf.startswith(b"\r\n", i) else 1 if buf.startswith(b"\n", i) else 0
            if not step:
                break
            i += step
            self._blank += 1
            if self._blank > MAX_BLANK_LINES:
                raise BadResponse(f"more than {MAX_BLANK_LINES} empty lines before the "
                                  "status line")
        if not i:
            return buf
        if buf is self._buf:
            del self._buf[:i]
            return self._buf
        return buf[i:]


def whole_response_head(data: bytes, method: bytes,
                        max_head: int = 65_536) -> tuple[ResponseHead, int] | None:
    """The usual case of `ResponseHeadParser.feed` on a fresh parser: a whole head at the start
    of `data`, no bare-LF lines, nothing skipped. (head, where its bytes end) or None, when a
    `ResponseHeadParser` must read `data` instead (which then gives the same head)."""
    if data[:5] != b"HTTP/":
        return None
    crlf = data.find(b"\n\r\n", 0, max_head)
    if crlf < 0 or data.find(b"\n\n", 0, crlf + 1) >= 0:
        return None
    end = crlf + 3
    raw = data[:end]
    if end <= MEMO_HEAD:
        return _memo_response_head(raw, method), end
    return _parse_response_head(raw, method), end


def _parse_response_head(raw: bytes, method: bytes) -> ResponseHead:
    m = _RESPONSE_HEAD_TRIM_RE.fullmatch(raw)
    if m is not None:
        version, code, reason, block = m.groups()
        headers: Fields = tuple(_FIELD_TRIM_RE.findall(block))
    else:
        version, code, reason, headers = _read_response_head_tolerantly(raw)
    status = int(code)
    if status < 100:
        raise BadResponse(f"bad status code {code!r}")
    lengths: list[bytes] = []
    codings: list[bytes] | None = None  # None: no Transfer-Encoding field
    close = keep = False
    for kind, _, value in _framing_fields(headers):
        if kind == _CONTENT_LENGTH:
            lengths.append(value)
        elif kind == _TRANSFER_ENCODING:
            codings = codings or []
            codings += (c.lower() for item in value.split(b",") if (c := item.strip(b" \t")))
        elif kind == _CONNECTION:
            says_close, says_keep = _connection_options(value)
            close, keep = close or says_close, keep or says_keep
    keep_alive = not close and (keep or version == b"HTTP/1.1")
    framing, size = Framing.NONE, 0
    if (status < 200 or status in (204, 304) or method == b"HEAD"
            or (method == b"CONNECT" and status < 300)):
        pass  # no body, whatever the fields say
    elif codings is not None:
        chunked = bool(codings) and codings[-1] == b"chunked"
        framing = Framing.CHUNKED if chunked else Framing.UNTIL_CLOSE
        if lengths or version == b"HTTP/1.0" or not chunked:
            keep_alive = False  # RFC 9112 §6.1, §6.3: possible smuggling; do not reuse
    elif lengths:
        framing, size = Framing.LENGTH, _response_length(lengths)
    else:
        framing, keep_alive = Framing.UNTIL_CLOSE, False
    head = ResponseHead(version, status, reason or b"", headers, framing, size, keep_alive)
    return head._replace(raw=raw) if m is not None and _passes_through(head) else head


_memo_response_head: Final = functools.lru_cache(maxsize=MEMO_SIZE)(_parse_response_head)


def _read_response_head_tolerantly(raw: bytes) -> tuple[bytes, bytes, bytes | None, Fields]:
    """Bare LF line ends, obs-fold, whitespace before the colon, controls but NUL in values."""
    lines = raw.split(b"\n")[:-2]
    for k, line in enumerate(lines):
        if line.endswith(b"\r"):
            line = lines[k] = line[:-1]
        if b"\r" in line:
            raise BadResponse(f"bare CR in response line {_show(line)}")
    status_line = _STATUS_LINE_RE.fullmatch(lines[0])
    if status_line is None:
        raise BadResponse(f"bad status line {_show(lines[0])}")
    version, code, reason = status_line.groups()
    fields: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):  # obs-fold: RFC 9112 §5.2 lets a proxy replace it by SP
            if not fields:
                raise BadResponse(f"response head starts with a folded line {_show(line)}")
            name, value = fields[-1]
            more = line.strip(b" \t")
            fields[-1] = (name, value + b" " + more if value and more else value or more)
            continue
        field = _RESPONSE_FIELD_RE.fullmatch(line)
        if field is None:
            raise BadResponse(f"bad response header line {_show(line)}")
        fields.append((field.group(1), field.group(2).rstrip(b" \t")))
    return version, code, reason, tuple(fields)


def _response_length(values: list[bytes]) -> int:
    if len(values) == 1 and values[0].isdigit() and len(values[0]) <= _MAX_CL_DIGITS:
        return int(values[0])  # the usual case
    items = {item.strip(b" \t") for value in values for item in value.split(b",")}
    if len(items) != 1:
        raise BadResponse(f"conflicting Content-Length values {_show(b', '.join(sorted(items)))}")
    item = items.pop()
    if not item.isdigit() or len(item) > _MAX_CL_DIGITS:
        raise BadResponse(f"bad Content-Length {_show(item)}")
    return int(item)


# -- bodies ------------------------------------------------------------------------------

_DONE: Final = 0
_RAW: Final = 1  # until close
_LENGTH: Final = 2
_CHUNK_SIZE: Final = 3
_CHUNK_DATA: Final = 4
_CHUNK_CR: Final = 5
_CHUNK_LF: Final = 6
_TRAILERS: Final = 7


class BodyFramer:
    """Tracks where a streamed body ends, without copying: the caller forwards bytes verbatim.

    `feed` returns how many leading bytes of `data` belong to the body; fewer
    than `len(data)` means the body ended inside `data`. Malformed chunked
    framing raises `error` (BadRequest unless told otherwise, e.g. BadResponse).
    LENGTH with content_length 0 and NONE are done at once; UNTIL_CLOSE never is.
    """

    __slots__ = ("_error", "_extensions", "_line", "_remaining", "_state", "_trailers")

    def __init__(self, framing: Framing, content_length: int = 0, *,
                 error: type[Exception] = BadRequest) -> None:
        self._error = error
        self._remaining = 0
        self._line = bytearray()  # a chunk-size or trailer line split across feeds
        self._extensions = 0
        self._trailers = 0
        if framing is Framing.LENGTH:
            if content_length < 0:
                raise ValueError(f"content_length={content_length!r} is negative")
            self._state, self._remaining = (_LENGTH, content_length) if content_length else (
                _DONE, 0)
        elif framing is Framing.CHUNKED:
            self._state = _CHUNK_SIZE
        elif framing is Framing.UNTIL_CLOSE:
            self._state = _RAW
        else:
            self._state = _DONE

    @property
    def done(self) -> bool:
        """The body is complete (never for UNTIL_CLOSE: the caller sees the close)."""
        return self._state == _DONE

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """How many leading bytes of data belong to the body."""
        state = self._state
        if state == _LENGTH:
            take = min(len(data), self._remaining)
            self._remaining -= take
            if not self._remaining:
                self._state = _DONE
            return take
        if state == _RAW:
            return len(data)
        if state == _DONE:
            return 0
        return self._feed_chunked(data)

    def _feed_chunked(self, data: bytes | bytearray | memoryview) -> int:
        pos, n = 0, len(data)
        while pos < n:
            state = self._state
            if state == _CHUNK_SIZE and not self._line:
                # Fast path: a whole chunk-size line here (and often its whole chunk).
                m = _CHUNK_LINE_RE.match(data, pos, min(n, pos + MAX_CHUNK_LINE))
                if m is not None:
                    pos = m.end()
                    size = self._chunk_size(m)
                    if size and pos + size + 2 <= n:
                        if data[pos + size] != 13 or data[pos + size + 1] != 10:
                            raise self._error("chunk data not followed by CRLF; "
                                              "the chunk size is wrong")
                        pos += size + 2
                        self._remaining, self._state = 0, _CHUNK_SIZE
                    continue
                pos = self._read_line(data, pos, n)  # incomplete or bad
            elif state == _CHUNK_DATA:
                take = min(n - pos, self._remaining)
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _CHUNK_CR
            elif state == _CHUNK_CR:
                if data[pos] != 13:
                    raise self._error(f"chunk data not followed by CRLF (got {data[pos]:#04x}); "
                                      "the chunk size is wrong")
                pos += 1
                if pos < n:
                    if data[pos] != 10:
                        raise self._error("chunk data followed by a bare CR")
                    pos += 1
                    self._state = _CHUNK_SIZE
                else:
                    self._state = _CHUNK_LF
            elif state == _CHUNK_LF:
                if data[pos] != 10:
                    raise self._error("chunk data followed by a bare CR")
                pos += 1
                self._state = _CHUNK_SIZE
            elif state == _DONE:
                break
            else:
                pos = self._read_line(data, pos, n)
        return pos

    def _read_line(self, data: bytes | bytearray | memoryview, pos: int, n: int) -> int:
        """Consumes up to one chunk-size or trailer line; the position after what it took."""
        sizing = self._state == _CHUNK_SIZE
        room = (MAX_CHUNK_LINE if sizing else MAX_TRAILERS - self._trailers) - len(self._line)
        stop = min(n, pos + room)
        lf = _LF_RE.search(data, pos, stop)  # re reads memoryviews without a copy
        if lf is None:
            if stop - pos == room:
                raise self._error(
                    f"chunk-size line over {MAX_CHUNK_LINE} bytes" if sizing
                    else f"chunked trailers over {MAX_TRAILERS} bytes")
            self._line += data[pos:stop]
            return stop
        end = lf.end()
        if self._line:
            self._line += data[pos:end]
            line = bytes(self._line)
            self._line.clear()
        else:
            line = bytes(data[pos:end])
        if sizing:
            self._chunk_size_line(line)
        else:
            self._trailer_line(line)
        return end

    def _chunk_size_line(self, line: bytes) -> None:
        m = _CHUNK_LINE_RE.fullmatch(line)
        if m is None:
            raise self._error(f"bad chunk-size line {_show(line)}: want 1-16 hex digits, "
                              "optional ';ext' and CRLF")
        self._chunk_size(m)

    def _chunk_size(self, m: re.Match[bytes]) -> int:
        """Takes a matched chunk-size line: counts its extensions, enters the chunk."""
        extensions = m.end(2) - m.start(2)
        if extensions:
            self._extensions += extensions
            if self._extensions > MAX_CHUNK_EXTENSIONS:
                raise self._error(
                    f"chunk extensions over {MAX_CHUNK_EXTENSIONS} bytes in one body")
        size = int(m.group(1), 16)
        if size:
            self._remaining, self._state = size, _CHUNK_DATA
        else:
            self._state = _TRAILERS
        return size

    def _trailer_line(self, line: bytes) -> None:
        self._trailers += len(line)
        if line == b"\r\n":
            self._state = _DONE
        elif _TRAILER_LINE_RE.fullmatch(line) is None:
            raise self._error(f"bad trailer line {_show(line)}")


# -- authorities and targets -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Authority:
    """host[:port] of a CONNECT target, absolute URI or Host header, syntax-checked only."""

    host: str  # IPv6 without brackets (zone id as given); DNS names as given
    port: int
    bracketed: bool  # written as [v6]


_PORT_RE: Final = re.compile(rb"[0-9]{1,5}")
# RFC 3986 reg-name without pct-encoding, plus UTF-8 bytes for IDNs; the policy checks further.
_REG_NAME_RE: Final = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=\x80-\xff]+")
_ZONE_ID_RE: Final = re.compile(rb"[A-Za-z0-9\-._~%]+")
_AUTHORITY_END_RE: Final = re.compile(rb"[/?]")


@functools.lru_cache(maxsize=4096)  # pure, and hosts repeat: a hit costs a dict lookup
def parse_authority(raw: bytes, *, default_port: int | None) -> Authority:
    """Parse `host:port`, `[v6]:port` or `host` (with default_port); BadRequest otherwise."""
    if b"@" in raw:
        raise BadRequest(f"userinfo in authority {_show(raw)}; remove 'user@'")
    if raw.startswith(b"["):
        close = raw.find(b"]")
        if close < 0:
            raise BadRequest(f"authority {_show(raw)} has '[' without ']'")
        inner, after = raw[1:close], raw[close + 1 :]
        address, percent, zone = inner.partition(b"%")
        try:
            ipaddress.IPv6Address(address.decode("ascii"))
        except ValueError:
            raise BadRequest(f"{_show(inner)} in brackets is not an IPv6 address") from None
        if percent and _ZONE_ID_RE.fullmatch(zone) is None:
            raise BadRequest(f"bad IPv6 zone id in {_show(raw)}")
        if after and not after.startswith(b":"):
            raise BadRequest(f"authority {_show(raw)} has bytes after ']' that are not ':port'")
        return Authority(inner.decode("ascii"), _port(raw, after[1:] if after else None,
                                                      default_port), True)
    host, colon, port = raw.partition(b":")
    if b":" in port:
        raise BadRequest(f"authority {_show(raw)} has several colons; write IPv6 as [addr]:port")
    if _REG_NAME_RE.fullmatch(host) is None:
        raise BadRequest(f"bad host {_show(host)} in authority {_show(raw)}")
    try:
        text = host.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"host {_show(host)} is not valid UTF-8") from None
    return Authority(text, _port(raw, port if colon else None, default_port), False)


def _port(raw: bytes, port: bytes | None, default_port: int | None) -> int:
    if port is None:
        if default_port is None:
            raise BadRequest(f"authority {_show(raw)} has no port; write host:port")
        return default_port
    if _PORT_RE.fullmatch(port) is None or not 0 < int(port) <= 65535:
        raise BadRequest(f"bad port {_show(port)} in {_show(raw)}: want 1-65535")
    return int(port)


@functools.lru_cache(maxsize=4096)  # pure; a client polling one URL parses it once
def parse_absolute_target(target: bytes) -> tuple[bytes, Authority, bytes]:
    """`http://host[:port]/path?q` -> (b"http", Authority, b"/path?q"); https too (port 443)."""
    sep = target.find(b"://")
    scheme = target[:sep].lower() if sep > 0 else b""
    if scheme not in (b"http", b"https"):
        raise BadRequest(f"request target {_show(target)} is not an absolute http:// URI; "
                         "use CONNECT for other protocols")
    if b"#" in target:
        raise BadRequest(f"fragment in request target {_show(target)}; clients must not send it")
    rest = target[sep + 3 :]
    end = _AUTHORITY_END_RE.search(rest)
    cut = len(rest) if end is None else end.start()
    authority = parse_authority(rest[:cut], default_port=80 if scheme == b"http" else 443)
    path = rest[cut:]
    if not path:
        path = b"/"
    elif path[0] == 0x3F:  # "?"
        path = b"/" + path
    return scheme, authority, path


# -- serialising -------------------------------------------------------------------------


def _dropped(headers: Fields) -> frozenset[bytes]:
    named = _connection_tokens(v for n, v in headers if n.lower() == b"connection")
    return HOP_BY_HOP | (named - _NEVER_HOP_BY_HOP)


def _fields(parts: list[bytes], headers: Fields, drop: frozenset[bytes]) -> None:
    for name, value in headers:
        if name.lower() not in drop:
            parts += (name, b": ", value, b"\r\n")


def request_head_for_upstream(head: RequestHead, path: bytes) -> bytes:
    """The origin-form head for the origin: hop-by-hop fields dropped, framing verbatim."""
    if _TARGET_RE.fullmatch(path) is None:
        raise BadRequest(f"request path {_show(path)} is empty or has a control byte")
    if head.raw_fields:
        # nothing to drop: the field lines go on as received (they passed the strict grammar)
        return b"%s %s HTTP/1.1\r\n%s\r\n" % (head.method, path, head.raw_fields)
    parts = [head.method, b" ", path, b" HTTP/1.1\r\n"]
    _fields(parts, head.headers, _dropped(head.headers))
    parts.append(b"\r\n")
    return b"".join(parts)


def _passes_through(head: ResponseHead) -> bool:
    """An HTTP/1.1 head whose only hop-by-hop field, if any, is `Connection: keep-alive`:
    forwarding it verbatim to a kept-alive client means what rebuilding it would."""
    if head.version != b"HTTP/1.1" or head.framing is not Framing.LENGTH:
        return False
    for name, value in head.headers:
        lower = name.lower()
        if lower in HOP_BY_HOP and not (lower == b"connection" and value.lower() == b"keep-alive"):
            return False
    return True


def response_head_for_client(head: ResponseHead, *, keep_alive: bool) -> bytes:
    """The head for the client: hop-by-hop dropped, Content-Length dropped beside
    Transfer-Encoding, `Connection: close` unless keep_alive (always for UNTIL_CLOSE)."""
    if keep_alive and head.raw:
        return head.raw
    drop = _dropped(head.headers)
    if any(name.lower() == b"transfer-encoding" for name, _ in head.headers):
        drop |= {b"content-length"}
    parts = [b"HTTP/1.1 %d " % head.status, head.reason, b"\r\n"]
    _fields(parts, head.headers, drop)
    if not keep_alive or head.framing is Framing.UNTIL_CLOSE:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


_CTL_TO_QUESTION: Final = {c: "?" for c in (*range(32), 127)}


def error_response(status: int, reason_token: str, body_line: str, *, close: bool = True,
                   extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A complete plain-text answer with `X-Awf-Reason`; control characters in body_line
    become '?' so the body stays one line."""
    phrase = HTTPStatus(status).phrase
    body = (body_line.translate(_CTL_TO_QUESTION) + "\n").encode("utf-8")
    lines = [f"HTTP/1.1 {status} {phrase}", f"X-Awf-Reason: {reason_token}",
             "Content-Type: text/plain; charset=utf-8", f"Content-Length: {len(body)}"]
    for name, value in (("X-Awf-Reason", reason_token), *extra):
        if not (name.isascii() and _TOKEN_RE.fullmatch(name.encode()) and value.isascii()
                and value.isprintable()):
            raise ValueError(f"error_response: bad header {name!r}: {value!r}")
        if name != "X-Awf-Reason":
            lines.append(f"{name}: {value}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body
