"""The post-run summary (docs/architecture.md §7): outcomes, not decisions; DNS refusals and
the network layer's drops beside the proxy's decisions; the self-test's own records left out;
the `--allow-domains` hint; learn mode's warnings; and what a run says it enforces, at its
start and in run.json."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from awf.config import parse_run
from awf.run import (
    Record,
    conduct,
    learn_lines,
    listed,
    policy_lines,
    print_summary,
    summary_lines,
)


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


# --- what the run enforces (issue 21, item 4) ---------------------------------------------------


def test_the_allowed_and_blocked_lines() -> None:
    cfg = parse_run(["-d", "a.test,b.test", "--block-domains", "x.b.test", "--", "true"])
    assert policy_lines(cfg) == ["allowed: a.test, b.test", "blocked: x.b.test"]
    cfg = parse_run(["-d", "a.test", "--", "true"])
    assert policy_lines(cfg) == ["allowed: a.test"]  # no blocked line when nothing is blocked


def test_a_long_allowlist_is_shortened_with_the_count(tmp_path: Path) -> None:
    names = [f"n{i}.test" for i in range(45)]
    (tmp_path / "list").write_text("\n".join(names[5:]) + "\n")
    cfg = parse_run(["-d", ",".join(names[:5]), "--allow-domains-file", str(tmp_path / "list"),
                     "--", "true"])
    [line] = policy_lines(cfg)
    assert line == "allowed: " + ", ".join(names[:30]) + ", … (+15 more)"
    assert listed("x", ["a", "b", "c"], limit=3) == "x: a, b, c"
    assert listed("x", ["a", "b", "c", "d"], limit=3) == "x: a, b, c, … (+1 more)"


def test_an_empty_allowlist_is_a_warning_except_in_learn_mode() -> None:
    assert policy_lines(parse_run(["--", "true"])) == [
        "WARNING: no domain is allowed: every request will be denied"]
    assert policy_lines(parse_run(["--learn", "--", "true"])) == []
    cfg = parse_run(["--enable-host-access", "--", "true"])
    assert policy_lines(cfg) == ["allowed: host.docker.internal"]


@dataclass(kw_only=True)
class _Record(Record):
    BACKEND: ClassVar[str] = "test"


def test_a_run_says_what_it_enforces_and_run_json_keeps_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = parse_run(["-d", "a.test", "--block-domains", "b.a.test", "-e", "MY_TOKEN=s3cret",
                     "-e", "PLAIN=visible", "--", "true"])
    record = _Record(cfg=cfg, run="r1", logs=tmp_path, t0=time.monotonic())
    assert conduct(record, lambda: 0, lambda interrupted: None) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == ["[awf] allowed: a.test", "[awf] blocked: b.a.test"]
    text = (tmp_path / "run.json").read_text()
    assert "s3cret" not in text
    doc = json.loads(text)
    settings = {s["key"]: s for s in doc["config"]["settings"]}
    assert settings["allow_domains"] == {"key": "allow_domains", "value": ["a.test"],
                                         "source": "flag"}
    assert settings["env"]["value"] == ["MY_TOKEN=[REDACTED]", "PLAIN=visible"]
    rules = doc["policy"]["rules"]
    assert {"action": "deny", "reason": "domain_blocked"}.items() <= rules[2].items()
    assert rules[2]["match"]["domain"] == "b.a.test"
    assert rules[3]["action"] == "allow"
    assert rules[3]["match"]["domain"] == "a.test"
    assert rules[-1]["match"] == "everything else"
