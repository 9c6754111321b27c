"""Token counts read from a response body as it streams past, without holding the body. Pure.

Every provider reports usage as JSON members with integer values, and the last report is the
total, whether the body is one JSON document or a stream of events:

    OpenAI     "usage": {"prompt_tokens": N, "completion_tokens": N}  (the final SSE chunk when
               streaming with include_usage); the Responses API uses input_tokens/output_tokens
    Anthropic  "usage": {"input_tokens": N, "output_tokens": N}; in SSE, message_start carries
               both and each message_delta the running output_tokens
    Gemini     "usageMetadata": {"promptTokenCount": N, "candidatesTokenCount": N}, repeated
               and cumulative in a stream

So the meter looks for `"<field>" : <digits>` and keeps the last value of each field. A member
name in JSON is a string preceded by `{` or `,` and whitespace; the same characters inside a
string value are escaped (`\\"`), so a match whose quote follows a backslash is text, not a
member, and is skipped. The scan is one compiled regex over each chunk plus a carried tail of
CARRY bytes, longer than any match (a field name, at most MAX_SPACE whitespace on each side of
the colon and MAX_DIGITS digits), so a member split across chunks is found once whole; a match
that ends at the end of the data seen so far may be a number cut short, so it waits for the
next chunk or `finish()`. Feeding a body in any chunking gives the same counts (a property test
checks it). gzip and deflate bodies are inflated in bounded pieces for the scan only; other
encodings (br, zstd) are not read, and their counts stay None.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

MAX_SPACE = 16
MAX_DIGITS = 15
CARRY = 128
INFLATE_PIECE = 256 * 1024  # inflated bytes produced per step: a gzip bomb stays bounded

METERED_TYPES = ("application/json", "text/event-stream", "application/x-ndjson",
                 "application/jsonl", "application/stream+json")


def _pattern(fields: Iterable[str]) -> re.Pattern[bytes]:
    names = b"|".join(re.escape(f.encode()) for f in fields)
    return re.compile(
        rb'(?<!\\)"(' + names + rb')"[ \t\r\n]{0,%d}:[ \t\r\n]{0,%d}(\d{1,%d})'
        % (MAX_SPACE, MAX_SPACE, MAX_DIGITS)
    )


class UsageMeter:
    """Feed response body chunks; read `input_tokens` and `output_tokens` after `finish()`."""

    __slots__ = ("_inflate", "_input", "_output", "_pattern", "_tail", "_tail_is_all",
                 "input_tokens", "output_tokens")

    def __init__(self, input_fields: Iterable[str], output_fields: Iterable[str],
                 content_encoding: str = "") -> None:
        self._input = frozenset(f.encode() for f in input_fields)
        self._output = frozenset(f.encode() for f in output_fields)
        self._pattern: re.Pattern[bytes] | None = _pattern(
            sorted(f.decode() for f in self._input | self._output))
        self._tail = b""
        self._tail_is_all = True  # the tail is the whole body so far: nothing precedes it
        encoding = content_encoding.strip().lower()
        self._inflate: zlib._Decompress | None = None
        if encoding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._inflate = zlib.decompressobj()  # zlib-wrapped, as RFC 9110 says
        elif encoding not in ("", "identity"):
            self._pattern = None  # unreadable: the counts stay None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None

    @classmethod
    def applies(cls, content_type: str) -> bool:
        """Only JSON-ish bodies are scanned: a download of bytes costs nothing."""
        mime = content_type.split(";", 1)[0].strip().lower()
        return mime in METERED_TYPES or mime.endswith("+json")

    def feed(self, data: bytes) -> None:
        if self._pattern is None or not data:
            return
        if self._inflate is None:
            self._scan(data, final=False)
            return
        try:
            piece = self._inflate.decompress(data, INFLATE_PIECE)
            self._scan(piece, final=False)
            while self._inflate.unconsumed_tail:
                piece = self._inflate.decompress(self._inflate.unconsumed_tail, INFLATE_PIECE)
                self._scan(piece, final=False)
        except zlib.error:
            self._pattern = None  # corrupt: stop reading, keep the counts so far

    def finish(self) -> None:
        """The body ended: a number at its very end is whole now."""
        self._scan(b"", final=True)
        self._tail, self._tail_is_all = b"", False

    def _scan(self, data: bytes, *, final: bool) -> None:
        if self._pattern is None:
            return
        buf = self._tail + data if self._tail else data
        truncated = not self._tail_is_all
        end = len(buf)
        for m in self._pattern.finditer(buf):
            if m.end() == end and not final:
                continue  # the number may go on in the next chunk
            if truncated and m.start() == 0:
                # the byte before the quote is gone; such a match ended CARRY bytes before the
                # last chunk's end, so it was read then, with that byte in view
                continue
            name, value = m.group(1), int(m.group(2))
            if name in self._input:
                self.input_tokens = value
            if name in self._output:
                self.output_tokens = value
        if len(buf) > CARRY:
            self._tail, self._tail_is_all = buf[-CARRY:], False
        else:
            self._tail = buf
