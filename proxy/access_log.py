"""The JSON-lines decision log (docs/proxy.md §7), written by one thread: the loop never blocks.

record() runs on the event loop: it bumps the summary counters and hands the record to a queue;
nothing else. A record is a mapping, or for the hot path (one per forwarded request) an `Entry`:
a tuple of raw values, so the timestamp, the rounding and the JSON text are all made by the writer
thread, never on the loop. The writer thread JSON-encodes whatever is queued and appends it
with os.write on an O_APPEND descriptor, one write per batch of whole lines, so lines go out at once
(well within the flush interval) and a reader never sees a line that will not be completed.

A short write is continued with the rest. If a write fails (ENOSPC, EIO) after part of a batch went
out, the file is truncated back to the last complete line, the unwritten lines are counted in
`dropped`, one line is printed on stderr, and writing resumes with the next batch. Nothing here
raises after start().
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from proxy.errors import ConfigError
from proxy.reasons import Reason

DROPPED_LINE = "awf-proxy: log records dropped:"  # + " N", on stderr at exit (proxy.main)
MAX_PENDING = 200_000  # records queued but not yet written; past it record() drops (counted)
MAX_BATCH = 4096  # lines per os.write
# queued records that wake the writer before its interval: under load it then formats a few
# hundred lines at a time (about a millisecond) instead of half a second's worth in one go,
# which on a proxy pinned to one core would stall the event loop for tens of milliseconds
WAKE_AT = 512
MAX_DENY_KEYS = 1000  # distinct (target, reason) pairs kept for the summary
SUMMARY_ITEMS = 10

# json.dumps's own string encoder (C): the same escaping as encode_line, for one string
_json_string: Callable[[str], str] = encode_basestring

_second: tuple[int, str] = (-1, "")  # the last second formatted: a hot path formats one per second


def rfc3339(t: float) -> str:
    """A Unix time as RFC 3339 UTC with milliseconds: '2026-11-23T18:20:01.123Z'."""
    global _second
    millis = math.floor(round(t * 1000, 3))  # 0.123 * 1000 may be 122.99999...: not 122
    seconds, ms = divmod(millis, 1000)
    cached = _second
    if cached[0] != seconds:
        cached = _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{cached[1]}.{ms:03d}Z"


def encode_line(rec: Mapping[str, object]) -> bytes | None:
    """One compact JSON object and a newline, keys in order; None if it cannot be encoded."""
    try:
        text = json.dumps(
            rec, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str
        )
        try:
            return (text + "\n").encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: escape everything instead
            text = json.dumps(rec, separators=(",", ":"), allow_nan=False, default=str)
            return (text + "\n").encode("ascii")
    except (TypeError, ValueError):
        return None


class Entry(NamedTuple):
    """One forwarded request, as raw values: `encode_entry` makes the docs/proxy.md §7 line from it
    (the same text `encode_line` makes from the equivalent mapping, `as_mapping`)."""

    started: float  # Unix time the request head was complete
    ended: float  # Unix time the exchange ended
    client: str
    mode: str
    method: str
    host: str
    port: int
    url: str | None
    decision: str
    reason: str | None
    status: int
    bytes_up: int
    bytes_down: int
    tls: str | None = None  # "bumped": a request read inside a bumped connection (§11)

    def as_mapping(self) -> dict[str, object]:
        rec: dict[str, object] = {
            "ts": rfc3339(self.started), "client": self.client, "mode": self.mode,
            "method": self.method, "host": self.host, "port": self.port,
        }
        if self.url is not None:
            rec["url"] = self.url
        rec.update(decision=self.decision, reason=self.reason, status=self.status,
                   bytes_up=self.bytes_up, bytes_down=self.bytes_down,
                   duration_ms=round((self.ended - self.started) * 1000, 1))
        if self.tls is not None:
            rec["tls"] = self.tls
        return rec


FAILED_AFTER_ALLOW = frozenset({
    Reason.DNS_FAILURE, Reason.CONNECT_FAILED, Reason.CONNECT_TIMEOUT,
    Reason.RESPONSE_TIMEOUT, Reason.BAD_RESPONSE, Reason.UPSTREAM_TLS_FAILED,
})
"""Reasons that end a request the policy allowed: logged `decision: allow` with the reason."""


def decision_record(
    started: float, client: str, mode: str, method: str, host: str, port: int,
    url: str | None, reason: Reason | None, status: int,
) -> dict[str, object]:
    """The record of a request answered without forwarding anything (a denial, an error, or
    `reason=None` for a tunnel whose byte counts are filled in when it ends)."""
    decision = "deny" if reason is not None and reason not in FAILED_AFTER_ALLOW else "allow"
    return Entry(
        started, time.time(), client, mode, method, host, port, url, decision,
        reason.value if reason is not None else None, status, 0, 0,
    ).as_mapping()


def would_deny_record(rec: Mapping[str, object] | Entry, would: Reason) -> dict[str, object]:
    """Learn mode: a request the policy let through only because of learn mode, as logged:
    `decision: would_deny` with the reason the allowlist would have given. If the request then
    failed upstream (`dns_failure`, ...), that reason is kept as `failure`."""
    out = dict(rec.as_mapping() if isinstance(rec, Entry) else rec)
    failure = out.get("reason")
    out["decision"] = "would_deny"
    out["reason"] = would.value
    if failure is not None:
        out["failure"] = failure
    return out


def learn_scheme_is_tls(rec: Mapping[str, object] | Entry) -> bool:
    """Whether a record's request came over TLS: a CONNECT tunnel, transparent TLS, or an
    `https://` URL (a bumped request)."""
    method: object
    url: object
    if isinstance(rec, Entry):
        method, url = rec.method, rec.url
    else:
        method, url = rec.get("method"), rec.get("url")
    return method in ("CONNECT", "TLS") or (isinstance(url, str) and url.startswith("https:"))


def peer_text(transport: _HasExtraInfo) -> str:
    """The `client` field: a transport's peer as `ip:port` (`[v6]:port`), or `unknown`."""
    peer = transport.get_extra_info("peername")
    if not peer:
        return "unknown"
    host, port = peer[0], peer[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _HasExtraInfo(Protocol):
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


def encode_entry(e: Entry) -> bytes | None:
    """`encode_line(e.as_mapping())`, without building the mapping."""
    enc = _json_string
    url = "" if e.url is None else ',"url":' + enc(e.url)
    reason = "null" if e.reason is None else enc(e.reason)
    duration = round((e.ended - e.started) * 1000, 1)
    tls = "" if e.tls is None else ',"tls":' + enc(e.tls)
    text = (
        f'{{"ts":"{rfc3339(e.started)}","client":{enc(e.client)},"mode":{enc(e.mode)},'
        f'"method":{enc(e.method)},"host":{enc(e.host)},"port":{e.port:d}{url},'
        f'"decision":{enc(e.decision)},"reason":{reason},"status":{e.status:d},'
        f'"bytes_up":{e.bytes_up:d},"bytes_down":{e.bytes_down:d},"duration_ms":{duration!r}{tls}}}\n'
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: the general path escapes them
        return encode_line(e.as_mapping())


class AccessLog:
    """Decision records to a JSON-lines file (optional) and a summary of them."""

    def __init__(
        self,
        path: Path | None,
        *,
        flush_interval: float = 0.5,
        stderr_summary: bool = True,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._path = path
        self._flush_interval = flush_interval
        self._stderr_summary = stderr_summary
        self._max_pending = max_pending
        # the loop thread appends under the lock; the writer swaps the list out every interval
        # or when WAKE_AT records wait, so the threads meet once per batch, not per record
        self._pending: list[Mapping[str, object] | Entry] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd = -1
        self._closed = False
        self._reported = False
        # Counters: the loop thread writes the first five, the writer thread the last.
        self._total = 0
        self._allowed = 0
        self._denied = 0
        self._would_deny = 0  # learn mode
        self._denies: dict[tuple[str, str], int] = {}
        self._overflow = 0
        self._write_lost = 0

    @property
    def dropped(self) -> int:
        """Records lost to write errors or to a writer that could not keep up."""
        return self._overflow + self._write_lost

    def start(self) -> None:
        """Open the file (mode 0644 if created), start the writer thread; ConfigError if not."""
        if self._path is None or self._thread is not None or self._closed:
            return
        flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
        try:
            try:
                self._fd = os.open(self._path, flags | os.O_CREAT | os.O_EXCL, 0o644)
                os.fchmod(self._fd, 0o644)  # whatever the umask
            except FileExistsError:
                self._fd = os.open(self._path, flags & ~os.O_WRONLY | os.O_RDWR)
                cut = _cut_partial_line(self._fd)
                if cut:
                    print(f"awf-proxy: {str(self._path)!r} ended in a partial record ({cut} "
                          "bytes, from a process killed while writing); removed it",
                          file=sys.stderr, flush=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot open log file {str(self._path)!r}: {exc.strerror}; check --log-dir"
            ) from exc
        self._thread = threading.Thread(target=self._run, name="awf-access-log", daemon=True)
        self._thread.start()

    def record(self, rec: Mapping[str, object] | Entry) -> None:
        """Count one decision and queue it for the writer; O(1), no I/O. Call from one thread."""
        self._total += 1
        if isinstance(rec, Entry):
            decision: object = rec.decision
        else:
            decision = rec.get("decision")
        if decision == "allow":
            self._allowed += 1
        elif decision == "would_deny":
            self._would_deny += 1
        elif decision == "deny":
            self._denied += 1
            if isinstance(rec, Entry):
                rec = rec.as_mapping()
            key = (_target(rec), str(rec.get("reason")))
            count = self._denies.get(key)
            if count is not None:
                self._denies[key] = count + 1
            elif len(self._denies) < MAX_DENY_KEYS:
                self._denies[key] = 1
        if self._thread is None or self._closed:
            return
        with self._lock:
            if len(self._pending) >= self._max_pending:
                self._overflow += 1
                return
            self._pending.append(rec)  # the caller hands the record over; it is not copied
            if len(self._pending) == WAKE_AT:
                self._wake.set()

    def close(self, timeout: float = 5.0) -> None:
        """Write everything queued, stop the writer and print the summary; idempotent. It blocks:
        from a running event loop call it through asyncio.to_thread."""
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is not None:
            self._stop.set()
            self._wake.set()
            thread.join(timeout)
            if not thread.is_alive():
                os.close(self._fd)
                self._fd = -1
        if self._stderr_summary:
            print(self.summary(), file=sys.stderr, flush=True)

    def summary(self) -> str:
        text = f"awf-proxy: {self._total} decisions: {self._allowed} allowed, {self._denied} denied"
        if self._would_deny:
            text += f", {self._would_deny} would be denied (learn mode)"
        if self._denies:
            ranked = sorted(self._denies.items(), key=lambda kv: -kv[1])  # stable: first seen first
            parts = [
                f"{target} {reason}" + (f" x{count}" if count > 1 else "")
                for (target, reason), count in ranked[:SUMMARY_ITEMS]
            ]
            if len(ranked) > SUMMARY_ITEMS:
                parts.append("...")
            text += f" ({', '.join(parts)})"
        if self.dropped:
            text += f"; {self.dropped} log records dropped"
        return text

    # The writer thread.

    def _run(self) -> None:
        while True:
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            stopping = self._stop.is_set()
            with self._lock:
                batch, self._pending = self._pending, []
            for start in range(0, len(batch), MAX_BATCH):
                lines: list[bytes] = []
                for rec in batch[start:start + MAX_BATCH]:
                    line = encode_entry(rec) if isinstance(rec, Entry) else encode_line(rec)
                    if line is None:
                        self._write_lost += 1
                    else:
                        lines.append(line)
                if lines:
                    self._write(b"".join(lines), len(lines))
            if stopping:
                return

    def _write(self, data: bytes, nlines: int) -> None:
        view = memoryview(data)
        written = 0
        while written < len(data):  # every pass writes at least one byte or returns
            try:
                n = os.write(self._fd, view[written:])
            except OSError as exc:
                self._failed(exc, data, written, nlines)
                return
            if n <= 0:
                self._failed(OSError(0, "write returned 0"), data, written, nlines)
                return
            written += n

    def _failed(self, exc: OSError, data: bytes, written: int, nlines: int) -> None:
        kept = data.rfind(b"\n", 0, written) + 1
        partial = written - kept
        if partial:
            try:
                os.ftruncate(self._fd, os.fstat(self._fd).st_size - partial)
            except OSError:
                pass  # not a regular file (or truncation failed too): nothing better to do
        self._write_lost += nlines - data.count(b"\n", 0, kept)
        if not self._reported:
            self._reported = True
            print(
                f"awf-proxy: cannot write {str(self._path)!r}: {exc.strerror or exc}; "
                "log records are being dropped",
                file=sys.stderr,
                flush=True,
            )


def _cut_partial_line(fd: int, chunk: int = 65_536) -> int:
    """Truncate an append-only log after its last newline; returns the bytes removed.

    A process killed during a write can leave a record cut short (the kernel may end a write to a
    regular file early when a fatal signal is pending); the next writer would glue its first
    record to it. Cutting the tail at start-up keeps the promise that every line is whole.
    """
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        start = max(0, end - chunk)
        data = os.pread(fd, end - start, start)
        newline = data.rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        end = start
    else:
        keep = 0
    if keep < size:
        os.ftruncate(fd, keep)
    return size - keep


def _target(rec: Mapping[str, object]) -> str:
    host = rec.get("host", rec.get("qname"))
    port = rec.get("port")
    if port is None:
        return str(host)
    text = str(host)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"
