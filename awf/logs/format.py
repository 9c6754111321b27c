"""How records and counts are shown: pretty lines, filters, time flags, the stats report. Pure.

A pretty line: `17:04:05.123 DENY GET example.com:80 403 domain_not_allowed` (UTC, as in the
log). The word is the outcome: ALLOW (answered), FAIL (allowed, then failed upstream: the reason
says why), DENY, or WOULD-DENY (a learn mode's record). DNS records read
`17:04:05.123 DENY DNS A evil.test NXDOMAIN domain_not_allowed`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from awf.logs.stats import (
    OTHER_HOSTS,
    Counts,
    Outcome,
    client_kind,
    host_port,
    is_selftest,
    outcome,
    sorted_hosts,
)
from awf.logs.summary import cell, headline
from proxy.errors import ConfigError

WORDS = {Outcome.ANSWERED: "ALLOW", Outcome.FAILED: "FAIL", Outcome.DENIED: "DENY",
         Outcome.WOULD_DENY: "WOULD-DENY"}
COLOURS = {"ALLOW": "32", "FAIL": "33", "DENY": "31", "WOULD-DENY": "35"}


def parse_ts(text: object) -> float | None:
    """An RFC 3339 time as Unix seconds; None when it is not one."""
    if not isinstance(text, str):
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time_flag(text: str, *, now: datetime, flag: str) -> float:
    """`--since`/`--until`: an RFC 3339 time (`2026-12-06T13:04:05Z`), a time of day today in
    UTC (`13:04`, `13:04:05.123`), or an age (`90s`, `10m`, `2h`, `1d`)."""
    value = text.strip()
    if m := _DURATION.fullmatch(value):
        return (now - timedelta(seconds=float(m[1]) * _UNITS[m[2]])).timestamp()
    if re.fullmatch(r"\d{1,2}:\d\d(:\d\d(\.\d+)?)?", value):
        value = f"{now.astimezone(UTC).date().isoformat()}T{value}"
    t = parse_ts(value)
    if t is None:
        raise ConfigError(f"{flag} {text!r}: give an RFC 3339 time (2026-12-06T13:04:05Z), a time "
                          "of day in UTC (13:04:05) or an age (10m, 2h)")
    return t


@dataclass(frozen=True, slots=True)
class Filter:
    decision: str | None = None  # allow | deny | would_deny
    host: str | None = None  # a glob, against host (or host:port when it has a ':')
    reasons: frozenset[str] | None = None  # "none" matches a null reason
    client: str | None = None  # agent | api-proxy
    since: float | None = None
    until: float | None = None
    everything: bool = False  # --all: the self-test's records too
    api_proxy: frozenset[str] = frozenset()

    def __call__(self, rec: Mapping[str, Any]) -> bool:
        if not self.everything and is_selftest(rec):
            return False
        if self.decision is not None and rec.get("decision") != self.decision:
            return False
        if self.host is not None:
            host = rec.get("qname") if "qname" in rec else rec.get("host")
            text = str(host or "").lower()
            if ":" in self.host and "qname" not in rec:
                text = host_port(text, rec.get("port"))
            if not fnmatch.fnmatchcase(text, self.host.lower()):
                return False
        if self.reasons is not None:
            reason = rec.get("reason")
            if ("none" if reason is None else str(reason)) not in self.reasons:
                return False
        if self.client is not None and client_kind(rec, self.api_proxy) != self.client:
            return False
        if self.since is not None or self.until is not None:
            t = parse_ts(rec.get("ts"))
            if t is None:
                return False
            if self.since is not None and t < self.since:
                return False
            if self.until is not None and t > self.until:
                return False
        return True


def _clock(ts: object) -> str:
    text = str(ts)
    if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text):
        return text[11:23]
    return text


def pretty(rec: Mapping[str, Any], *, colour: bool = False) -> str:
    """One record as one line."""
    if "qname" in rec:
        word = "ALLOW" if rec.get("decision") == "allow" else "DENY"
        if word == "ALLOW" and rec.get("reason") is not None:
            word = "FAIL"
        if rec.get("decision") == "would_deny":  # learn mode: answered all the same
            word = "WOULD-DENY"
        parts = ["DNS", str(rec.get("qtype") or "?"), str(rec.get("qname") or "?"),
                 str(rec.get("rcode") or "?")]
    else:
        out = outcome(rec)
        word = WORDS[out] if out is not None else str(rec.get("decision") or "?").upper()
        host = rec.get("host")
        parts = [str(rec.get("method") or "-"),
                 host_port(host if isinstance(host, str) else "", rec.get("port")),
                 str(rec.get("status"))]
    if rec.get("reason") is not None:
        parts.append(str(rec.get("reason")))
    if is_selftest(rec):
        parts.append("(self-test)")
    shown = f"\x1b[{COLOURS[word]}m{word}\x1b[0m" if colour and word in COLOURS else word
    return " ".join([_clock(rec.get("ts")), shown, *parts])


# --- the stats report --------------------------------------------------------------------------


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _span(c: Counts) -> str:
    if c.first is None or c.last is None:
        return "no records"
    a, b = parse_ts(c.first), parse_ts(c.last)
    length = f" ({b - a:.1f} s)" if a is not None and b is not None else ""
    return f"{c.first} .. {c.last}{length}"


def _top(d: Mapping[str, int], limit: int = 10) -> str:
    items = sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{k} {v}" for k, v in items[:limit])
    return text + (f", … {len(items) - limit} more" if len(items) > limit else "")


def stats_pretty(c: Counts, label: str) -> str:
    lines = [
        f"source     {label}",
        f"time       {_span(c)}",
        f"requests   {c.requests}: {c.allowed} allowed ({c.answered} answered, {c.failed} failed "
        f"upstream), {c.denied} denied" + (f", {c.would_deny} would be denied"
                                             if c.would_deny else ""),
        f"bytes      {size(c.bytes_up)} up, {size(c.bytes_down)} down",
        f"clients    {_top(c.clients) or 'none'}; {len(c.addresses)} address"
        f"{'es' if len(c.addresses) != 1 else ''} ({_top(c.addresses, 5)})",
        f"DNS        {c.dns_queries} quer{'y' if c.dns_queries == 1 else 'ies'}: "
        f"{c.dns_allowed} allowed ({c.dns_failed} failed), "
        f"{c.dns_refused} refused" + (f" ({', '.join(sorted(c.dns_refused_names)[:10])})"
                                       if c.dns_refused_names else ""),
        f"network    {c.dropped} drop{'s' if c.dropped != 1 else ''}"
        + (": " + ", ".join(str(d) for d in c.drops[:10]) if c.drops else ""),
    ]
    if c.selftest:
        lines.append(f"excluded   {c.selftest} self-test record{'s' if c.selftest != 1 else ''}")
    if c.unknown:
        lines.append(f"unknown    {c.unknown} record{'s' if c.unknown != 1 else ''} with an "
                     "unknown decision")
    if c.malformed:
        lines.append(f"malformed  {c.malformed} line{'s' if c.malformed != 1 else ''} skipped")
    reasons = [(r, n, "denied") for r, n in c.denials.items()]
    reasons += [(r, n, "failed upstream") for r, n in c.failures.items()]
    if reasons:
        lines += ["", "reasons"]
        width = max(len(r) for r, _, _ in reasons)
        for r, n, what in sorted(reasons, key=lambda x: (-x[1], x[0])):
            lines.append(f"  {r:<{width}}  {n:>8}  {what}")
    hosts = sorted_hosts(c)
    if hosts:
        width = max(12, *(len(h.host or "(none)") for h in hosts[:100]))
        lines += ["", f"  {'host':<{width}}  {'allowed':>8} {'failed':>7} {'denied':>7} "
                      f"{'up':>10} {'down':>10}  reasons"]
        for h in hosts[:100]:
            why = ", ".join(sorted({**h.reasons, **h.failures}))
            lines.append(f"  {h.host or '(none)':<{width}}  {h.allowed:>8} {h.failed:>7} "
                         f"{h.denied + h.would_deny:>7} {size(h.bytes_up):>10} "
                         f"{size(h.bytes_down):>10}  {why}".rstrip())
        if len(hosts) > 100:
            lines.append(f"  … {len(hosts) - 100} more hosts")
    return "\n".join(lines) + "\n"


def stats_markdown(c: Counts, label: str) -> str:
    out = [f"### awf firewall: {headline(c)}", "", f"Source: `{cell(label)}`. Time: {_span(c)}.",
           f"Bytes: {size(c.bytes_up)} up, {size(c.bytes_down)} down.", "",
           "| Host | Answered | Failed | Denied | Up | Down | Reasons |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for h in sorted_hosts(c)[:100]:
        why = ", ".join(sorted({**h.reasons, **h.failures}))
        name = h.host if h.host != OTHER_HOSTS else "(other hosts)"
        out.append(f"| {cell(name or '(none)')} | {h.answered} | {h.failed} | "
                   f"{h.denied + h.would_deny} | {size(h.bytes_up)} | {size(h.bytes_down)} | "
                   f"{cell(why)} |")
    out += ["", "| Reason | Count | Outcome |", "|---|---:|---|"]
    out += [f"| {cell(r)} | {n} | denied |" for r, n in sorted(c.denials.items())]
    out += [f"| {cell(r)} | {n} | failed upstream |" for r, n in sorted(c.failures.items())]
    out += ["", f"DNS: {c.dns_queries} queries, {c.dns_allowed} allowed, {c.dns_refused} refused"
            + (f" ({cell(', '.join(sorted(c.dns_refused_names)[:10]))})"
               if c.dns_refused_names else "") + ".",
            "Network layer: " + (", ".join(str(d) for d in c.drops[:10]) or "no drops") + ".",
            f"Clients: {_top(c.clients) or 'none'}."]
    if c.selftest:
        out.append(f"Self-test records left out: {c.selftest}.")
    if c.malformed:
        out.append(f"Malformed lines skipped: {c.malformed}.")
    return "\n".join(out) + "\n"
