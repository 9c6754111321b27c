"""The smallest allowlist that would have let a run through. Pure.

The names to add are those the proxy denied with `domain_not_allowed`, those a learn mode logged
as `would_deny`, and those the DNS forwarder refused with `domain_not_allowed` (a client that
ignores the proxy variables resolves first, and is stopped there). They join the allowlist the
run had: the configured `allow_domains` when run.json records them, else the names the policy
was seen to allow. Then, within one registrable domain (Public Suffix List, the copy bundled
with `publicsuffixlist`: nothing is fetched), two or more names become that domain, since an
entry covers its subdomains (`api.github.com` + `codeload.github.com` → `github.com`); a single
name stays as it is, and an entry another covers is dropped. IP literals and entries with a
scheme or pattern are kept verbatim; single-label names (refused as entries) are left out.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from publicsuffixlist import PublicSuffixList

from awf.logs.stats import Counts

ADD_REASONS = frozenset({"domain_not_allowed"})


@cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()  # the bundled list; never downloads


def registrable(name: str) -> str | None:
    """`api.github.com` → `github.com`; None for a public suffix itself (`github.io`)."""
    found: str | None = _psl().privatesuffix(name)
    return found


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_network(text.strip("[]"), strict=False)
    except ValueError:
        return False
    return True


def _plain_name(entry: str) -> bool:
    return bool(entry) and "*" not in entry and "://" not in entry and not is_ip(entry)


def covered(name: str, entries: Iterable[str]) -> bool:
    """An entry covers itself and its subdomains (docs/proxy.md §2)."""
    return any(name == e or name.endswith("." + e) for e in entries)


def collapse(names: Iterable[str]) -> list[str]:
    """Group plain names by registrable domain; a group of two or more becomes the domain; then
    drop what another entry covers. Sorted."""
    groups: dict[str, set[str]] = {}
    kept: set[str] = set()
    for raw in names:
        name = raw.strip().lower().rstrip(".")
        if not _plain_name(name):
            if name:
                kept.add(name)
            continue
        if "." not in name:
            continue  # single label: not a valid entry
        base = registrable(name) or name
        groups.setdefault(base, set()).add(name)
    plain: set[str] = set()
    for base, members in groups.items():
        plain |= {base} if len(members) > 1 or base in members else members
    plain = {n for n in plain if not covered(n, plain - {n})}
    return sorted(kept | plain, key=_order)


def _order(entry: str) -> tuple[int, str]:
    return (1 if is_ip(entry) else 0, entry)


@dataclass(frozen=True, slots=True)
class Suggestion:
    entries: tuple[str, ...]  # the whole allowlist
    added: tuple[str, ...]  # the denied names it now lets through
    configured: bool  # whether the base was the run's configured allowlist

    @property
    def flag(self) -> str:
        return "--allow-domains " + ",".join(self.entries)

    def yaml(self, run: str | None = None) -> str:
        head = "# awf logs suggest: the allowlist that would have let "
        head += f"run {run} through\n" if run else "the run through\n"
        lines = [head, "allow_domains:\n"]
        lines += [f"  - {_yaml_scalar(e)}\n" for e in self.entries]
        return "".join(lines)


def _yaml_scalar(text: str) -> str:
    """Plain when safe (`github.com`), else double-quoted (`"*.github.com"`, `"http://x"`)."""
    if re.fullmatch(r"[a-z0-9][a-z0-9._-]*", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def denied_names(counts: Counts) -> list[str]:
    """The names whose denial an allowlist entry would lift."""
    names = {n for n, r in counts.denied_names.items() if r in ADD_REASONS}
    names |= counts.would_deny_names
    names |= counts.dns_would_deny_names
    names |= {n for n, r in counts.dns_refused_names.items() if r in ADD_REASONS}
    return sorted(n for n in names if n and not is_ip(n) and "." in n)


def suggest(counts: Counts, configured: Iterable[str] | None = None) -> Suggestion:
    """The allowlist: `configured` (when known) or the allowed names seen, plus the denied
    names, collapsed."""
    add = denied_names(counts)
    if configured is not None:
        base = [e.strip() for e in configured if e.strip()]
    else:
        base = sorted((counts.allowed_names | counts.dns_allowed_names) - {""})
    return Suggestion(tuple(collapse([*base, *add])), tuple(add), configured is not None)


def configured_allowlist(doc: object) -> list[str] | None:
    """The run's `allow_domains`, when its run.json records them (`config.allow_domains` or
    `allow_domains`, a list or a comma-separated string)."""
    if not isinstance(doc, dict):
        return None
    for holder in (doc.get("config"), doc.get("policy"), doc):
        if isinstance(holder, dict) and "allow_domains" in holder:
            value = holder["allow_domains"]
            if isinstance(value, dict):  # {"value": ..., "source": ...}
                value = value.get("value")
            if isinstance(value, str):
                return [v for v in value.split(",") if v.strip()]
            if isinstance(value, list):
                return [str(v) for v in value]
    return None
