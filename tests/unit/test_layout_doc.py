"""docs/layout.md lists every module of the four packages, and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("proxy", "netfilter", "containers", "awf")


def test_every_module_is_in_the_layout_doc() -> None:
    listed = set(re.findall(r"^- `([^`]+\.py)`", (ROOT / "docs" / "layout.md").read_text(),
                            flags=re.M))
    present = {str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    assert sorted(present - listed) == [], "add these to docs/layout.md"
    assert sorted(listed - present) == [], "these are gone: remove them from docs/layout.md"
