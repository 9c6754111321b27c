"""Pure number crunching for the bench: percentiles, median-with-range, and the generators' output.

Percentiles use linear interpolation between closest ranks (numpy's default, "type 7"):
for sorted x[0..n-1] and q in [0, 100], h = (n - 1) * q / 100, result = x[floor h] +
(h - floor h) * (x[floor h + 1] - x[floor h]).
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

WRK_MARKER = "AWF_BENCH_JSON "


class BenchParseError(ValueError):
    """Output of a load generator that the bench cannot read."""


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """q-th percentile (0..100) of already sorted values, linear interpolation."""
    if not sorted_values:
        raise BenchParseError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q={q!r} outside 0..100")
    h = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, len(sorted_values) - 1)
    return float(sorted_values[lo]) + (h - lo) * (
        float(sorted_values[hi]) - float(sorted_values[lo])
    )


@dataclass(frozen=True, slots=True)
class Spread:
    """Median of repetitions with the observed range."""

    median: float
    lo: float
    hi: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.lo, "max": self.hi, "n": self.n}


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise BenchParseError("no repetitions to summarise")
    ordered = sorted(values)
    return Spread(percentile(ordered, 50.0), ordered[0], ordered[-1], len(ordered))


def latencies_from_bytes(raw: bytes) -> list[int]:
    """The loadgen --lat-out file: native-endian uint32 microseconds, one per completed unit."""
    if len(raw) % 4:
        raise BenchParseError(f"latency file of {len(raw)} bytes is not a whole number of uint32")
    values = array("I")
    if values.itemsize != 4:
        raise BenchParseError("this platform's C unsigned int is not 4 bytes")
    values.frombytes(raw)
    return sorted(values)


def parse_wrk_output(stdout: str) -> dict[str, int]:
    """The one JSON line our wrk Lua `done()` prints, prefixed with WRK_MARKER."""
    for line in stdout.splitlines():
        if line.startswith(WRK_MARKER):
            try:
                data = json.loads(line[len(WRK_MARKER) :])
            except json.JSONDecodeError as exc:
                raise BenchParseError(f"bad wrk summary line {line!r}: {exc}") from None
            if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
                raise BenchParseError(f"wrk summary is not a flat object of integers: {line!r}")
            for key in ("requests", "duration_us", "p50_us", "p99_us"):
                if key not in data:
                    raise BenchParseError(f"wrk summary lacks {key!r}: {line!r}")
            return data
    raise BenchParseError(f"no {WRK_MARKER.strip()!r} line in wrk output: {stdout[-400:]!r}")


def parse_loadgen_output(stdout: str) -> dict[str, Any]:
    """The final JSON object line loadgen prints (READY lines before it are skipped)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BenchParseError(f"bad loadgen summary {line!r}: {exc}") from None
            if not isinstance(data, dict):
                raise BenchParseError(f"loadgen summary is not an object: {line!r}")
            for key in ("completed", "elapsed_s", "bytes", "errors"):
                if key not in data:
                    raise BenchParseError(f"loadgen summary lacks {key!r}: {line!r}")
            return data
    raise BenchParseError(f"no JSON summary in loadgen output: {stdout[-400:]!r}")


def parse_ready_line(line: str) -> tuple[int, int]:
    """'READY <ok> <errors>' from loadgen idle mode."""
    parts = line.split()
    if len(parts) != 3 or parts[0] != "READY":
        raise BenchParseError(f"expected 'READY ok errors', got {line!r}")
    try:
        return int(parts[1]), int(parts[2])
    except ValueError:
        raise BenchParseError(f"expected 'READY ok errors', got {line!r}") from None


def total_errors(errors: dict[str, Any]) -> int:
    return sum(int(v) for v in errors.values())
