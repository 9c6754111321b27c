"""The end of a run: run.json's timings carry the teardown's phases and `end`, and the
keeper's refusal counters are parsed from `nft -j` text read in the container."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from awf.config import parse_run
from awf.run import Record, conduct
from netfilter.apply import counters_of


class _Run(Record):
    BACKEND: ClassVar[str] = "test"


def test_run_json_has_the_teardown_phases_and_the_end(tmp_path: Path) -> None:
    cfg = parse_run(["-d", "example.com", "--", "true"])
    record = _Run(cfg=cfg, run="0123abcd", logs=tmp_path, t0=0.0)

    def body() -> int:
        record.mark("exec")
        record.mark("exited")
        return 0

    def teardown(interrupted: bool) -> None:
        record.mark("teardown")
        record.mark("proxy_stopped")

    assert conduct(record, body, teardown) == 0
    timings = json.loads((tmp_path / "run.json").read_text())["timings"]
    assert list(timings) == ["exec", "exited", "teardown", "proxy_stopped", "end"]
    assert timings["end"] >= timings["proxy_stopped"] >= timings["exited"] > 0


def test_counters_from_nft_json_text() -> None:
    text = json.dumps({"nftables": [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": "awf", "handle": 1}},
        {"set": {"family": "inet", "name": "rejected4", "table": "awf",
                 "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 2,
                 "flags": ["dynamic"], "elem": [
                     {"elem": {"val": {"concat": ["192.0.2.1", "tcp", 22]},
                               "counter": {"packets": 1, "bytes": 60}}},
                     {"elem": {"val": {"concat": ["203.0.113.7", "udp", 53]},
                               "counter": {"packets": 3, "bytes": 180}}},
                     {"elem": {"val": {"concat": ["203.0.113.8", "icmp", 0]},
                               "counter": {"packets": 2, "bytes": 168}}}]}},
        {"set": {"family": "inet", "name": "rejected6", "table": "awf",
                 "type": ["ipv6_addr", "inet_proto", "inet_service"], "handle": 3}},
    ]})
    assert counters_of(text) == [
        {"dst": "203.0.113.7", "proto": "udp", "port": 53, "count": 3},
        {"dst": "203.0.113.8", "proto": "icmp", "port": None, "count": 2},
        {"dst": "192.0.2.1", "proto": "tcp", "port": 22, "count": 1},
    ]
