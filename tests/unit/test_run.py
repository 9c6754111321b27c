"""The post-run summary (docs/architecture.md §7): outcomes, not decisions; DNS refusals and
the network layer's drops beside the proxy's decisions; the self-test's own records left out;
the `--allow-domains` hint; learn mode's warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from awf.config import parse_run
from awf.run import learn_lines, print_summary, summary_lines


def write(path: Path, records: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def rec(host: str, port: int, decision: str, reason: str | None, **extra: object
        ) -> dict[str, object]:
    return {"ts": "2026-12-06T14:00:00.000Z", "client": "10.0.0.2:40000", "mode": "explicit",
            "method": "GET", "host": host, "port": port, "decision": decision, "reason": reason,
            "status": 200, "bytes_up": 0, "bytes_down": 0, **extra}


def test_summary_counts_and_lists_denials(tmp_path: Path) -> None:
    write(tmp_path / "access.jsonl", [
        rec("awf-selftest.invalid", 80, "deny", "domain_not_allowed"),
        rec("api.github.com", 443, "allow", None),
        rec("example.com", 443, "deny", "domain_not_allowed"),
        rec("1.2.3.4", 80, "deny", "ip_literal"),
    ])
    with (tmp_path / "access.jsonl").open("a") as f:
        f.write("not json\n")
    assert summary_lines(tmp_path, ["api.github.com"]) == [
        "3 requests: 1 allowed, 2 denied",
        "  denied 1.2.3.4:80 (ip_literal)",
        "  denied example.com:443 (domain_not_allowed)",
        "To allow the denied domains: --allow-domains api.github.com,example.com",
    ]


def test_summary_without_logs(tmp_path: Path) -> None:
    assert summary_lines(tmp_path / "missing") == ["0 requests: 0 allowed, 0 denied"]


def test_requests_that_all_failed_upstream_say_so(tmp_path: Path) -> None:
    write(tmp_path / "access.jsonl",
          [rec("nowhere.example", 80, "allow", "dns_failure", status=502)] * 6)
    lines = summary_lines(tmp_path, ["nowhere.example"])
    assert lines[0] == "6 requests: 6 allowed (6 failed upstream), 0 denied"
    assert lines[1:] == ["  failed nowhere.example:80 (dns_failure) \u00d76"]


def test_dns_refusals_and_network_drops_are_counted(tmp_path: Path) -> None:
    """A client that ignores the proxy variables: refused by the DNS forwarder, or dropped at
    the network layer; the self-test's own query and probes are left out."""
    write(tmp_path / "access.jsonl", [])
    write(tmp_path / "dns.jsonl", [
        {"qname": "evil.example", "qtype": "A", "decision": "deny",
         "reason": "domain_not_allowed", "rcode": "NXDOMAIN"},
        {"qname": "awf-selftest.invalid", "qtype": "A", "decision": "deny",
         "reason": "domain_not_allowed", "rcode": "NXDOMAIN"},
    ])
    (tmp_path / "l3-drops.json").write_text(json.dumps([
        {"dst": "203.0.113.7", "proto": "tcp", "port": 22, "count": 2},
        {"dst": "192.0.2.1", "proto": "tcp", "port": 22, "count": 1},  # the self-test's
    ]))
    lines = summary_lines(tmp_path, ["github.com"])
    assert lines[0] == ("0 requests: 0 allowed, 0 denied · 1 DNS name refused · 2 "
                        "network-layer drops")
    assert lines[-1] == "To allow the denied domains: --allow-domains evil.example,github.com"


def test_learn_mode_warnings_and_run_json(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "access.jsonl", [
        rec("a.example", 443, "would_deny", "domain_not_allowed", method="CONNECT"),
        rec("b.example", 80, "would_deny", "domain_not_allowed", failure="dns_failure"),
        rec("ok.example", 443, "allow", None),
    ])
    write(tmp_path / "dns.jsonl", [{"qname": "c.example", "qtype": "A",
                                    "decision": "would_deny", "reason": "domain_not_allowed"}])
    assert "learn mode" in learn_lines(tmp_path, start=True)[0]
    [end] = learn_lines(tmp_path, start=False)
    assert end.startswith("WARNING: learn mode: nothing was blocked by name; 2 requests would "
                          "have been denied (3 names, 1 DNS answer); run `awf logs suggest")
    cfg = parse_run(["--learn", "-d", "ok.example", "--", "true"])
    print_summary(tmp_path, cfg)
    err = capsys.readouterr().err
    assert "3 requests: 1 allowed, 0 denied, 2 would be denied" in err
    assert "  would deny a.example:443 (domain_not_allowed)" in err
    assert ("To allow the denied domains: --allow-domains a.example,b.example,c.example,"
            "ok.example") in err
    assert err.rstrip().splitlines()[-1].startswith("[awf] WARNING: learn mode: nothing")
