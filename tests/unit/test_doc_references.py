"""Section references in the code point at our own docs (docs/*.md), never at documents outside
the repository (the old contract and ARCHITECTURE.md), and every one names a section that exists.

A reference is written `docs/<name>.md §N` or `docs/<name>.md §N.M`; further sections may follow
(`docs/proxy.md §2, §3, §6`). `§N` must be a `## N.` heading of that file and `§N.M` a
`### N.M` heading."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TREES = ("proxy", "netfilter", "containers", "awf", "tests", "bench")
STALE = re.compile(r"contract §|ARCHITECTURE §|PROXY-CONTRACT", re.I)
REF = re.compile(r"docs/([a-z0-9-]+)\.md ((?:§\d+(?:\.\d+)?(?:, | and )?)+)")


def _sources() -> list[Path]:
    this = Path(__file__).resolve()  # it names the stale forms to look for
    return sorted(p for tree in TREES for p in (ROOT / tree).rglob("*.py") if p != this)


def _sections(doc: Path) -> set[str]:
    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", doc.read_text(), flags=re.M))


def test_no_reference_to_documents_outside_the_repository() -> None:
    stale = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
             for p in _sources()
             for i, line in enumerate(p.read_text().splitlines(), 1) if STALE.search(line)]
    assert stale == [], "point these at docs/proxy.md, docs/architecture.md, ... instead"


def test_every_docs_reference_names_a_section_that_exists() -> None:
    bad = []
    for p in _sources():
        for i, line in enumerate(p.read_text().splitlines(), 1):
            for m in REF.finditer(line):
                doc = ROOT / "docs" / f"{m.group(1)}.md"
                where = f"{p.relative_to(ROOT)}:{i}"
                if not doc.is_file():
                    bad.append(f"{where}: no file docs/{m.group(1)}.md")
                    continue
                have = _sections(doc)
                bad += [f"{where}: docs/{m.group(1)}.md has no §{n}"
                        for n in re.findall(r"§(\d+(?:\.\d+)?)", m.group(2)) if n not in have]
    assert bad == []


def test_the_checks_see_references() -> None:
    """Guards against a pattern that silently matches nothing."""
    text = "\n".join(p.read_text() for p in _sources())
    assert len(re.findall(r"docs/(?:proxy|architecture)\.md §\d", text)) > 50
