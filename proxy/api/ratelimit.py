"""Opt-in rate limits per provider: requests per minute and per hour, bytes per minute. Pure.

Each limit is a sliding window of fixed buckets (60 one-second buckets for a minute, 60
one-minute buckets for an hour), so memory is constant however busy the sidecar is, and a
bucket ages out whole: a limit may admit up to one bucket's worth early, never late. The
clock is an argument (monotonic seconds), read by the caller.

A request is admitted when every request window is below its limit and the byte window is
below its limit; it then counts one in each request window. Bytes (up and down) are counted
as they flow, so one large exchange can take the byte window over its limit: the next
request waits. A refusal names the window that refused, how many seconds until it has room
(`Retry-After`, `X-RateLimit-Reset`: delta seconds, at least 1) and its limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from proxy.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int | None = None
    rph: int | None = None
    bytes_pm: int | None = None

    def __post_init__(self) -> None:
        for flag, value in (("--rate-limit-rpm", self.rpm), ("--rate-limit-rph", self.rph),
                            ("--rate-limit-bytes-pm", self.bytes_pm)):
            if value is not None and value < 1:
                raise ConfigError(f"{flag}: {value} must be at least 1 (omit it for no limit)")

    @property
    def enabled(self) -> bool:
        return any(v is not None for v in (self.rpm, self.rph, self.bytes_pm))


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    window: str = ""  # "rpm", "rph" or "bytes_pm" when refused
    limit: int = 0
    retry_after: int = 0  # whole seconds until the refusing window has room

    def headers(self) -> list[tuple[str, str]]:
        return [
            ("Retry-After", str(self.retry_after)),
            ("X-RateLimit-Limit", str(self.limit)),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", str(self.retry_after)),
        ]


ALLOWED = Verdict(True)


class Window:
    """A count over the last `span` seconds, kept in `buckets` equal buckets."""

    __slots__ = ("_counts", "_ids", "_n", "_width")

    def __init__(self, span: float, buckets: int = 60) -> None:
        self._n = buckets
        self._width = span / buckets
        self._ids = [-1] * buckets
        self._counts = [0] * buckets

    def _current(self, now: float) -> int:
        return math.floor(now / self._width)

    def add(self, now: float, amount: int = 1) -> None:
        bid = self._current(now)
        slot = bid % self._n
        if self._ids[slot] != bid:
            self._ids[slot], self._counts[slot] = bid, 0
        self._counts[slot] += amount

    def _live(self, now: float) -> list[tuple[int, int]]:
        """(bucket id, count) of the buckets still in the window, oldest first."""
        oldest = self._current(now) - self._n + 1
        return sorted((bid, c) for bid, c in zip(self._ids, self._counts, strict=True)
                      if bid >= oldest and c)

    def total(self, now: float) -> int:
        return sum(c for _, c in self._live(now))

    def wait(self, now: float, limit: int) -> float:
        """Seconds until the count is below `limit` again (0 if it already is)."""
        live = self._live(now)
        total = sum(c for _, c in live)
        for bid, count in live:
            if total < limit:
                break
            total -= count
            expires = (bid + self._n) * self._width
            if total < limit:
                return max(0.0, expires - now)
        return 0.0


class RateLimiter:
    __slots__ = ("_bytes", "_hour", "_minute", "limits")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._minute = Window(60.0)
        self._hour = Window(3600.0)
        self._bytes = Window(60.0)

    def admit(self, now: float) -> Verdict:
        """Admit one request (and count it), or say which window refuses and for how long."""
        checks = (("rpm", self.limits.rpm, self._minute), ("rph", self.limits.rph, self._hour),
                  ("bytes_pm", self.limits.bytes_pm, self._bytes))
        for name, limit, window in checks:
            if limit is not None and window.total(now) >= limit:
                wait = window.wait(now, limit)
                return Verdict(False, name, limit, max(1, math.ceil(wait)))
        if self.limits.rpm is not None:
            self._minute.add(now)
        if self.limits.rph is not None:
            self._hour.add(now)
        return ALLOWED

    def count_bytes(self, now: float, n: int) -> None:
        if self.limits.bytes_pm is not None and n:
            self._bytes.add(now, n)
