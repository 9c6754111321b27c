"""The run summary: counts and denied targets, without the self-test's own probes."""

from __future__ import annotations

import json
from pathlib import Path

from awf.run import summary_lines


def test_summary_counts_and_lists_denials(tmp_path: Path) -> None:
    log = tmp_path / "access.jsonl"
    records = [
        {"host": "awf-selftest.invalid", "port": 80, "decision": "deny",
         "reason": "domain_not_allowed"},
        {"host": "api.github.com", "port": 443, "decision": "allow", "reason": None},
        {"host": "example.com", "port": 443, "decision": "deny", "reason": "domain_not_allowed"},
        {"host": "1.2.3.4", "port": 80, "decision": "deny", "reason": "ip_literal"},
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in records) + "not json\n")
    assert summary_lines(log) == [
        "3 requests: 1 allowed, 2 denied",
        "  denied 1.2.3.4:80 (ip_literal)",
        "  denied example.com:443 (domain_not_allowed)",
    ]


def test_summary_without_a_log(tmp_path: Path) -> None:
    assert summary_lines(tmp_path / "missing.jsonl") == ["0 requests: 0 allowed, 0 denied"]
