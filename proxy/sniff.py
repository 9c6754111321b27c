"""Tell what a transparently intercepted connection speaks, and which name it asks for.

The transparent listener has no CONNECT line to read: the name comes from the first bytes.
A TLS record starts with 0x16, which no HTTP method can (methods are tokens), so the first
byte decides: TLS goes to `proxy.sni.parse_client_hello`, anything else must be an HTTP/1.x
request head for `proxy.http1.HeadParser` (which also tolerates up to 4 leading CRLFs and
rejects a non-token first line as soon as it arrives). Only the first `max_bytes` count: a
client that has not identified itself by then is refused (docs/proxy.md §5.2: 16 KiB peek).

`sniff(data)` is pure: call it with all bytes received so far. `Sniffer` is the same logic
fed chunk by chunk in O(n) overall, for the edge (see its docstring for why).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Literal

from proxy.errors import BadRequest
from proxy.http1 import HeadParser, RequestHead, parse_authority
from proxy.sni import BadClientHello, ClientHelloReader

__all__ = ["MAX_SNIFF", "Sniffed", "Sniffer", "sniff"]

MAX_SNIFF = 16_384
_TLS_HANDSHAKE = 0x16
# RFC 9110 tchar, plus CR for the empty lines RFC 9112 §2.2 lets a server skip
_HTTP_FIRST = frozenset(
    b"!#$%&'*+-.^_`|~\r" + string.digits.encode() + string.ascii_letters.encode()
)


@dataclass(frozen=True, slots=True)
class Sniffed:
    kind: Literal["tls", "http"]
    host: str | None  # SNI host_name as sent, or the Host header's host (no port, IPv6 unbracketed)
    # HTTP: the parsed head and the bytes fed after it, so the head is parsed once
    head: RequestHead | None = field(default=None, compare=False)
    rest: bytes = field(default=b"", compare=False)


def sniff(data: bytes, *, max_bytes: int = MAX_SNIFF) -> Sniffed | None:
    """Classify the first bytes of a transparent connection; None: need more bytes.

    Raises BadClientHello for a broken or oversized TLS hello (close the connection),
    BadRequest for a broken HTTP head, for bytes that are neither, and for a head that does
    not fit in `max_bytes` (answer 400). `host` is None for TLS without SNI (deny `no_sni`)
    and for HTTP without a Host value (answer 400). Only the first `max_bytes` bytes count.
    """
    return Sniffer(max_bytes=max_bytes).feed(data)


class Sniffer:
    """`sniff` over a stream fed in pieces, in O(n) for the whole peek.

    Calling `sniff` again on a growing buffer rescans it each time, which one-byte segments
    turn into O(n^2) (about 5 s of CPU for a 16 KiB HTTP head); the edge should feed each
    received chunk here instead. After it raises, discard it; after it returns a result,
    `feed` returns that result again and ignores the new bytes. `fed` counts the bytes it
    took: an HTTP head's `rest` is followed by whatever was received beyond them.
    """

    __slots__ = ("_fed", "_http", "_max", "_result", "_tls")

    def __init__(self, *, max_bytes: int = MAX_SNIFF) -> None:
        if max_bytes < 32:
            raise ValueError(f"max_bytes={max_bytes!r} is too small to sniff; use >= 32")
        self._max = max_bytes
        self._fed = 0  # bytes accepted so far, at most _max
        self._tls: ClientHelloReader | None = None
        self._http: HeadParser | None = None
        self._result: Sniffed | None = None

    @property
    def fed(self) -> int:
        return self._fed

    def feed(self, data: bytes) -> Sniffed | None:
        """Add bytes; the Sniffed answer once known, None to ask for more."""
        if self._result is not None or not data:
            return self._result
        if self._fed + len(data) > self._max:
            data = data[: self._max - self._fed]
        first = not self._fed
        self._fed += len(data)
        if first:
            if data[0] == _TLS_HANDSHAKE:
                self._tls = ClientHelloReader()
            elif data[0] in _HTTP_FIRST:
                self._http = HeadParser(max_head=self._max)
            else:
                raise BadRequest(
                    f"transparent connection starts with {data[:8]!r}: neither a TLS"
                    " ClientHello nor an HTTP request"
                )
        if self._tls is not None:
            hello = self._tls.feed(data)  # NotTls (a BadRequest) if the record header is off
            if hello is not None:
                self._result = Sniffed("tls", hello.sni)
            elif self._fed >= self._max:
                raise BadClientHello(f"no complete TLS ClientHello in the first {self._max} bytes")
        elif self._http is not None:
            head = self._http.feed(data)
            if head is not None:
                self._result = Sniffed("http", _host(head.host), head, self._http.take_rest())
            elif self._fed >= self._max:  # HeadParser raises first; the bound must not rely on it
                raise BadRequest(f"no complete HTTP request head in the first {self._max} bytes")
        return self._result


def _host(value: bytes | None) -> str | None:
    if not value:  # absent, or empty (RFC 9112 §3.2: no authority to name)
        return None
    return parse_authority(value, default_port=80).host
