"""Read the SNI name (and ALPN) from the first bytes of a transparent TLS connection.

Sans-IO: bytes in, a `ClientHelloInfo` (or `None`: need more bytes) out. The contract is
mitmproxy's `parse_client_hello`: a hello, `None`, or a `ValueError` (here `NotTls` or
`BadClientHello`, which are also `proxy.errors.BadRequest`). Nothing else escapes on any input.

Wire format (RFC 8446 §5.1 and §4.1.2, RFC 6066 §3, RFC 7301 §3.1):

    record     = type(1)=0x16  version(2)=0x03 0x00..0x03  length(2)=1..2^14  fragment
    handshake  = msg_type(1)=1  length(3)  ClientHello        (may span several records)
    ClientHello= legacy_version(2) random(32) session_id<0..32> cipher_suites<2..2^16-2>
                 compression_methods<1..2^8-1> [extensions<0..2^16-1>]
    extension  = type(2) data<0..2^16-1>       server_name = 0, ALPN = 16
    server_name= ServerNameList<1..2^16-1> of  name_type(1)=0  HostName<1..2^16-1>
    ALPN       = ProtocolNameList<2..2^16-1> of ProtocolName<1..2^8-1>

Strictness (fail closed; the name decides where the proxy dials): every length must agree
exactly with its container, an extension type may appear once, the server_name list must hold
exactly one host_name and nothing else (OpenSSL accepts no more), the name must be printable
ASCII (A-labels), and no other bytes may follow the hello inside its last record. The hello is
capped at `MAX_HELLO` bytes as soon as its length field arrives; the number of records it
spans is not (one-byte records are legal), so the caller bounds its peek (`proxy.sniff`).

Chunking: checks run in stream order and each looks only at bytes already present, so a
prefix of the input either returns `None` or ends exactly as the whole input does.
`ClientHelloReader` is the same parser fed piece by piece in O(n) overall.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.errors import BadRequest

__all__ = [
    "MAX_HELLO",
    "BadClientHello",
    "ClientHelloInfo",
    "ClientHelloReader",
    "NotTls",
    "looks_like_tls",
    "parse_client_hello",
]

MAX_HELLO = 16_384  # ClientHello body bytes we are willing to reassemble
_MAX_RECORD = 16_384  # 2^14: largest plaintext record fragment (RFC 8446 §5.1)
_HANDSHAKE = 0x16
_CLIENT_HELLO = 0x01
_EXT_SERVER_NAME = 0
_EXT_ALPN = 16
_HOST_NAME = 0
_PRINTABLE_ASCII = bytes(range(0x21, 0x7F))  # what a host_name may hold; the policy validates


class NotTls(BadRequest, ValueError):
    """The bytes do not start a TLS handshake record; the caller may try HTTP instead."""


class BadClientHello(BadRequest, ValueError):
    """The bytes start a TLS handshake but the ClientHello is malformed or too large."""


@dataclass(frozen=True, slots=True)
class ClientHelloInfo:
    sni: str | None  # the host_name as sent (ASCII, not normalised); None: no server_name
    alpn: tuple[bytes, ...]  # offered protocols, in order; () when no ALPN extension
    legacy_version: int  # ClientHello.legacy_version, e.g. 0x0303


def looks_like_tls(first: bytes | bytearray) -> bool:
    """True if `first` (possibly only 1-2 bytes) can start a TLS handshake record."""
    n = len(first)
    return (
        n > 0
        and first[0] == _HANDSHAKE
        and (n < 2 or first[1] == 0x03)
        and (n < 3 or first[2] <= 0x03)
    )


def parse_client_hello(data: bytes) -> ClientHelloInfo | None:
    """Parse the ClientHello at the start of `data`; None until all of it has arrived.

    Raises NotTls if the first record header is not a TLS handshake record, BadClientHello if
    anything after it is malformed or the hello is over MAX_HELLO bytes. Bytes after the
    record that completes the hello are ignored.
    """
    return ClientHelloReader().feed(data)


class ClientHelloReader:
    """`parse_client_hello` over a stream fed in pieces, in O(n) for the whole stream.

    Calling the pure function again on a growing buffer re-reads every record each time,
    which a client sending one-byte segments of one-byte records turns into O(n^2). The
    reader keeps the records it has joined and resumes at the first incomplete one. After it
    raises, discard it; after it returns a hello, `feed` returns that hello again.
    """

    __slots__ = ("_body", "_buf", "_hello", "_need", "_offset")

    def __init__(self) -> None:
        self._buf = bytearray()  # every byte fed (the caller bounds how many)
        self._offset = 0  # start of the first record not yet joined into _body
        self._body = bytearray()  # handshake bytes of the records joined so far
        self._need = -1  # 4 + ClientHello length, once the handshake header has been seen
        self._hello: ClientHelloInfo | None = None

    def feed(self, data: bytes) -> ClientHelloInfo | None:
        """Add bytes; the ClientHelloInfo once complete, None to ask for more."""
        if self._hello is not None:
            return self._hello
        self._buf += data
        message = self._reassemble()
        if message is not None:
            self._hello = _parse_hello(message)
        return self._hello

    def _reassemble(self) -> bytes | None:
        """Join complete records' fragments until the first handshake message is whole.

        Checks run in stream order and look only at bytes already present, so a prefix
        of the stream either returns None or fails exactly as the whole stream does.
        """
        data, body = self._buf, self._body
        if not self._offset and not looks_like_tls(data[:3]):
            if not data:
                return None
            raise NotTls(f"not a TLS handshake record: starts with {bytes(data[:3]).hex()!r}")
        while True:  # each pass joins one record of >= 1 byte: at most MAX_HELLO + 4 passes
            offset = self._offset
            header = data[offset : offset + 5]
            if offset and header and not looks_like_tls(header):
                raise BadClientHello(
                    f"TLS ClientHello: record {bytes(header[:3]).hex()!r} interrupts the handshake"
                )
            if len(header) < 5:
                return None
            length = header[3] << 8 | header[4]
            if length == 0 or length > _MAX_RECORD:
                raise BadClientHello(
                    f"TLS ClientHello: record length {length} not in 1..{_MAX_RECORD}"
                )
            start = len(body)
            if self._need < 0:  # the handshake header may begin in this record
                head = body + data[offset + 5 : offset + 5 + min(length, 4 - start)]
                if head and head[0] != _CLIENT_HELLO:
                    raise BadClientHello(
                        f"TLS handshake starts with message type {head[0]}, not ClientHello (1)"
                    )
                if len(head) == 4:
                    size = head[1] << 16 | head[2] << 8 | head[3]
                    if size > MAX_HELLO:
                        raise BadClientHello(
                            f"TLS ClientHello of {size} bytes is over the {MAX_HELLO}-byte cap"
                        )
                    self._need = size + 4
            need = self._need
            if need >= 0 and start + length > need:
                raise BadClientHello(
                    f"TLS ClientHello: {start + length - need} stray bytes after the hello"
                    " in its last record"
                )
            end = offset + 5 + length
            if end > len(data):
                return None
            body += data[offset + 5 : end]
            self._offset = end
            if len(body) == need:
                return bytes(body)


def _parse_hello(h: bytes) -> ClientHelloInfo:
    """Parse one complete handshake message `h` (4-byte header included)."""
    end = len(h)
    if end < 4 + 2 + 32 + 1:
        raise BadClientHello(f"TLS ClientHello of {end - 4} bytes is too short")
    if h[4] != 0x03:
        raise BadClientHello(f"TLS ClientHello version {h[4:6].hex()!r} is not 03xx")
    legacy_version = h[4] << 8 | h[5]
    p = 38  # after header, legacy_version and random
    sid_len = h[p]
    if sid_len > 32:
        raise BadClientHello(f"TLS ClientHello session id of {sid_len} bytes, over 32")
    p += 1 + sid_len
    cs_len = _u16(h, p, end, "cipher_suites")
    if cs_len < 2 or cs_len % 2:
        raise BadClientHello(f"TLS ClientHello cipher_suites length {cs_len} is not even and >= 2")
    p += 2 + cs_len
    if p >= end:
        raise BadClientHello("TLS ClientHello ends before compression_methods")
    comp_len = h[p]
    if comp_len < 1:
        raise BadClientHello("TLS ClientHello offers no compression method")
    p += 1 + comp_len
    if p > end:
        raise BadClientHello("TLS ClientHello: compression_methods run past the end")
    if p == end:  # TLS <= 1.2 may omit the extensions block
        return ClientHelloInfo(None, (), legacy_version)
    ext_len = _u16(h, p, end, "extensions")
    p += 2
    if p + ext_len != end:
        raise BadClientHello(
            f"TLS ClientHello: extensions length {ext_len} disagrees with the {end - p} bytes left"
        )
    sni: str | None = None
    alpn: tuple[bytes, ...] = ()
    seen: set[int] = set()
    while p < end:  # each pass consumes >= 4 bytes
        if p + 4 > end:
            raise BadClientHello("TLS ClientHello: truncated extension header")
        etype = h[p] << 8 | h[p + 1]
        elen = h[p + 2] << 8 | h[p + 3]
        p += 4
        if p + elen > end:
            raise BadClientHello(f"TLS ClientHello: extension {etype} runs past the end")
        if etype in seen:
            raise BadClientHello(f"TLS ClientHello: extension {etype} appears twice")
        seen.add(etype)
        if etype == _EXT_SERVER_NAME:
            sni = _server_name(h[p : p + elen])
        elif etype == _EXT_ALPN:
            alpn = _alpn(h[p : p + elen])
        p += elen
    return ClientHelloInfo(sni, alpn, legacy_version)


def _u16(h: bytes, p: int, end: int, what: str) -> int:
    if p + 2 > end:
        raise BadClientHello(f"TLS ClientHello ends before {what}")
    return h[p] << 8 | h[p + 1]


def _server_name(ext: bytes) -> str:
    """The single host_name of a server_name extension (RFC 6066 §3)."""
    end = len(ext)
    if end < 2 or (ext[0] << 8 | ext[1]) != end - 2 or end == 2:
        raise BadClientHello("TLS ClientHello: server_name list length is wrong or zero")
    name: bytes | None = None
    p = 2
    while p < end:  # each pass consumes >= 3 bytes
        if p + 3 > end:
            raise BadClientHello("TLS ClientHello: truncated server_name entry")
        name_type, name_len = ext[p], ext[p + 1] << 8 | ext[p + 2]
        p += 3
        if name_type != _HOST_NAME:
            raise BadClientHello(f"TLS ClientHello: server_name type {name_type}, not host_name")
        if name_len == 0 or p + name_len > end:
            raise BadClientHello("TLS ClientHello: host_name length is zero or runs past the end")
        if name is not None:
            raise BadClientHello("TLS ClientHello: server_name lists several host names")
        name = ext[p : p + name_len]
        p += name_len
    if name is None:  # unreachable: end > 2 means the loop ran at least once
        raise BadClientHello("TLS ClientHello: server_name has no host_name")
    if name.translate(None, _PRINTABLE_ASCII):
        raise BadClientHello(
            f"TLS ClientHello: host_name {name[:80]!r} is not printable ASCII (send A-labels)"
        )
    return name.decode("ascii")


def _alpn(ext: bytes) -> tuple[bytes, ...]:
    """The protocol names of an ALPN extension (RFC 7301 §3.1)."""
    end = len(ext)
    if end < 4 or (ext[0] << 8 | ext[1]) != end - 2:
        raise BadClientHello("TLS ClientHello: ALPN list length is wrong or too short")
    names: list[bytes] = []
    p = 2
    while p < end:  # each pass consumes >= 2 bytes
        n = ext[p]
        if n == 0 or p + 1 + n > end:
            raise BadClientHello("TLS ClientHello: ALPN name is empty or runs past the end")
        names.append(ext[p + 1 : p + 1 + n])
        p += 1 + n
    return tuple(names)
