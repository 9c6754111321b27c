"""The run summary in Markdown (docs/architecture.md §8), for a GitHub step summary. Pure.

    <details open>
    <summary>awf firewall: 14 requests · 11 allowed · 3 denied · 4 hosts · 1 network-layer
    drop</summary>   (one line)

    | Host | Allowed | Denied | Reason |
    ...

    DNS: 23 queries, 2 refused (example.com, evil.test). Network layer: 203.0.113.7 tcp/22 x1.

    To allow the denied domains: `--allow-domains github.com,example.com`
    </details>
"""

from __future__ import annotations

from awf.logs.stats import TIMES, Counts, HostCount, host_port, sorted_hosts
from awf.logs.suggest import Suggestion

MAX_ROWS = 50
MAX_NAMES = 10


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`").replace("\n", " ")


def reasons_cell(h: HostCount) -> str:
    """Denial reasons, then failure reasons marked `(upstream)`, most frequent first."""
    def order(d: dict[str, int]) -> list[str]:
        return [r for r, _ in sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))]

    parts = order(h.reasons) + [f"{r} (upstream)" for r in order(h.failures)]
    return cell(", ".join(parts))


def headline(c: Counts) -> str:
    parts = [_plural(c.requests, "request"),
             f"{c.allowed} allowed" + (f" ({c.failed} failed upstream)" if c.failed else ""),
             f"{c.denied} denied"]
    if c.would_deny:
        parts.append(f"{c.would_deny} would be denied")
    parts.append(_plural(len(c.hosts), "host"))
    parts.append(_plural(c.dropped, "network-layer drop"))
    return " · ".join(parts)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES])
    return shown + (f", … {len(names) - MAX_NAMES} more" if len(names) > MAX_NAMES else "")


def rows(hosts: list[HostCount], limit: int = MAX_ROWS) -> list[HostCount]:
    """At most `limit` hosts, in their order; when some must go, the hosts with denials or
    failures stay first (they are what a reader looks for)."""
    if len(hosts) <= limit:
        return hosts
    trouble = [h for h in hosts if h.denied or h.would_deny or h.failed][:limit]
    keep = {id(h) for h in trouble}
    keep |= {id(h) for h in [h for h in hosts if id(h) not in keep][:limit - len(trouble)]}
    return [h for h in hosts if id(h) in keep]


def markdown(c: Counts, hint: Suggestion | None = None, *, open_: bool = True) -> str:
    """The `<details>` block: the headline, a table by host, DNS and drops, and the
    `--allow-domains` that would have let the denied names through."""
    out = [f"<details{' open' if open_ else ''}>",
           f"<summary>awf firewall: {headline(c)}</summary>", ""]
    hosts = sorted_hosts(c)
    if hosts:
        out += ["| Host | Allowed | Denied | Reason |", "|---|---:|---:|---|"]
        for h in rows(hosts):
            denied = h.denied + h.would_deny
            reason = reasons_cell(h)
            out.append(f"| {cell(h.host or '(none)')} | {h.allowed} | {denied} |"
                       + (f" {reason} |" if reason else " |"))
        if len(hosts) > MAX_ROWS:
            out.append(f"| … {len(hosts) - MAX_ROWS} more hosts | | | |")
        out.append("")
    refused = sorted(c.dns_refused_names)
    dns = f"DNS: {_plural(c.dns_queries, 'query').replace('querys', 'queries')}"
    dns += f", {c.dns_refused} refused" + (f" ({_names(refused)})" if refused else "") + "."
    drops = ", ".join(str(d) for d in c.drops[:MAX_NAMES])
    if len(c.drops) > MAX_NAMES:
        drops += f", … {len(c.drops) - MAX_NAMES} more"
    net = f"Network layer: {drops}." if drops else "Network layer: no drops."
    out += [f"{dns} {net}", ""]
    if hint is not None and hint.added:
        out += [f"To allow the denied domains: `{hint.flag}`", ""]
    if out[-1] == "":
        out.pop()
    out.append("</details>")
    return "\n".join(out) + "\n"


def stderr_lines(c: Counts, hint: Suggestion | None = None, *, limit: int = 20) -> list[str]:
    """The post-run summary on stderr, without the `[awf] ` prefix: the count, one line per
    denied or failed `host:port` with its reason, and the `--allow-domains` hint."""
    lines = [c.summary_line()]
    targets = sorted(c.targets.items(), key=lambda kv: (-kv[1], kv[0]))
    for (host, port, reason), n in targets[:limit]:
        what = "failed" if reason in c.failures and reason not in c.denials else "denied"
        if (host, port, reason) in c.would_targets:
            what = "would deny"  # learn mode let it through
        lines.append(f"  {what} {host_port(host, port)} ({reason})"
                     + (f" {TIMES}{n}" if n > 1 else ""))
    if len(targets) > limit:
        lines.append(f"  … {len(targets) - limit} more (awf logs --decision deny)")
    if hint is not None and hint.added:
        lines.append(f"To allow the denied domains: {hint.flag}")
    return lines
