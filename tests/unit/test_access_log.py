"""The access log: whole JSON lines written off the loop, flushed within 1 s, errors survived."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.access_log import WAKE_AT, AccessLog, Entry, encode_entry, encode_line, rfc3339
from proxy.errors import ConfigError
from proxy.reasons import Reason


def rec(i: int, *, decision: str = "allow", host: str = "example.test", port: int = 443,
        reason: str | None = None) -> dict[str, object]:
    return {
        "ts": rfc3339(1_700_000_000 + i / 1000),
        "client": "127.0.0.1:5000",
        "mode": "explicit",
        "method": "CONNECT",
        "host": host,
        "port": port,
        "decision": decision,
        "reason": reason,
        "status": 200 if decision == "allow" else 403,
        "bytes_up": i,
        "bytes_down": 0,
        "duration_ms": 1.5,
    }


def read_lines(path: Path) -> list[dict[str, object]]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n")
    return [json.loads(line) for line in data.decode().splitlines()]


@pytest.mark.parametrize(
    ("t", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1_795_464_001.123, "2026-11-23T20:00:01.123Z"),
        (1_795_464_001.9999, "2026-11-23T20:00:01.999Z"),
        (951_782_400.5, "2000-02-29T00:00:00.500Z"),
    ],
)
def test_rfc3339(t: float, text: str):
    assert rfc3339(t) == text


def test_encode_line_is_compact_and_ordered():
    line = encode_line({"b": 1, "a": "é", "reason": Reason.DOMAIN_BLOCKED, "n": None})
    assert line == '{"b":1,"a":"é","reason":"domain_blocked","n":null}\n'.encode()


def test_encode_line_escapes_newlines_and_odd_values():
    line = encode_line({"url": "http://x.test/a\nb", "ip": Path("/x"), "bad": "\udcff"})
    assert line is not None
    assert line.count(b"\n") == 1
    assert json.loads(line) == {"url": "http://x.test/a\nb", "ip": "/x", "bad": "\udcff"}
    assert encode_line({"d": float("nan")}) is None


_text = st.text(max_size=40)  # any code point, lone surrogates and controls included


@given(
    started=st.floats(0, 4e9), took=st.floats(0, 1e5), client=_text, mode=_text, method=_text,
    host=_text, port=st.integers(0, 65535), url=st.none() | _text,
    decision=st.sampled_from(["allow", "deny"]), reason=st.none() | _text,
    status=st.integers(100, 599), up=st.integers(0, 2**63), down=st.integers(0, 2**63),
)
def test_entry_encodes_as_its_mapping(
    started: float, took: float, client: str, mode: str, method: str, host: str, port: int,
    url: str | None, decision: str, reason: str | None, status: int, up: int, down: int,
):
    """The hot path's hand-made JSON is byte for byte what json.dumps makes of the record."""
    e = Entry(started, started + took, client, mode, method, host, port, url, decision, reason,
              status, up, down)
    assert encode_entry(e) == encode_line(e.as_mapping())


def test_entry_line_has_the_contract_shape(tmp_path: Path):
    path = tmp_path / "access.jsonl"
    log = AccessLog(path, stderr_summary=False)
    log.start()
    log.record(Entry(1_795_464_001.123, 1_795_464_001.2, "127.0.0.1:5000", "explicit", "GET",
                     "origin.test", 80, "http://origin.test/a", "allow", None, 200, 10, 20))
    log.record(rec(1, decision="deny", reason="domain_not_allowed"))
    log.close()
    first, second = read_lines(path)
    assert first == {
        "ts": "2026-11-23T20:00:01.123Z", "client": "127.0.0.1:5000", "mode": "explicit",
        "method": "GET", "host": "origin.test", "port": 80, "url": "http://origin.test/a",
        "decision": "allow", "reason": None, "status": 200, "bytes_up": 10, "bytes_down": 20,
        "duration_ms": 77.0,
    }
    keys = list(rec(0))
    assert list(first) == [*keys[:6], "url", *keys[6:]]  # the contract's order
    assert second["decision"] == "deny"
    assert log.summary().startswith("awf-proxy: 2 decisions: 1 allowed, 1 denied")


def test_records_written_and_close_flushes(tmp_path: Path):
    path = tmp_path / "access.jsonl"
    log = AccessLog(path, stderr_summary=False)
    log.start()
    for i in range(5):
        log.record(rec(i))
    log.close()
    lines = read_lines(path)
    assert [line["bytes_up"] for line in lines] == [0, 1, 2, 3, 4]
    assert list(lines[0]) == list(rec(0))  # key order kept
    assert path.read_text().splitlines()[0] == json.dumps(rec(0), separators=(",", ":"))
    assert log.dropped == 0


def test_mode_is_0644_whatever_the_umask(tmp_path: Path):
    path = tmp_path / "access.jsonl"
    old = os.umask(0o077)
    try:
        log = AccessLog(path, stderr_summary=False)
        log.start()
    finally:
        os.umask(old)
    log.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_existing_file_is_appended_and_keeps_its_mode(tmp_path: Path):
    path = tmp_path / "access.jsonl"
    path.write_text('{"old":1}\n')
    path.chmod(0o600)
    log = AccessLog(path, stderr_summary=False)
    log.start()
    log.record(rec(7))
    log.close()
    assert [line.get("old", line.get("bytes_up")) for line in read_lines(path)] == [1, 7]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_flushes_without_close(tmp_path: Path):
    path = tmp_path / "access.jsonl"
    log = AccessLog(path, stderr_summary=False)
    log.start()
    try:
        log.record(rec(1))
        deadline = time.monotonic() + 1.5
        while path.stat().st_size == 0:
            assert time.monotonic() < deadline, "record not on disk within the flush interval"
            time.sleep(0.01)
        assert read_lines(path) == [rec(1)]
    finally:
        log.close()


async def test_ten_thousand_records_from_the_loop(tmp_path: Path):
    path = tmp_path / "access.jsonl"
    log = AccessLog(path, stderr_summary=False)
    log.start()
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(10_000):
        log.record(rec(i, host=f"h{i}.example.test"))
        if i % 100 == 0:
            await asyncio.sleep(0)  # interleave with the writer thread
    spent = loop.time() - start
    await asyncio.to_thread(log.close)
    lines = read_lines(path)
    assert sorted(int(str(line["bytes_up"])) for line in lines) == list(range(10_000))
    assert log.dropped == 0
    assert spent < 2.0  # record() is cheap: no I/O or encoding on the loop


def test_a_full_batch_wakes_the_writer_before_its_interval(tmp_path: Path):
    """Under load the writer formats a few hundred lines at a time, not an interval's worth."""
    path = tmp_path / "access.jsonl"
    log = AccessLog(path, flush_interval=60, stderr_summary=False)
    log.start()
    try:
        for i in range(WAKE_AT - 1):
            log.record(rec(i))
        time.sleep(0.3)
        assert path.read_bytes() == b""  # not yet: neither the interval nor a full batch
        log.record(rec(WAKE_AT))
        deadline = time.monotonic() + 5
        while len(read_lines(path)) < WAKE_AT and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(read_lines(path)) == WAKE_AT
    finally:
        log.close()


def test_close_is_idempotent_and_later_records_are_not_written(tmp_path: Path):
    path = tmp_path / "access.jsonl"
    log = AccessLog(path, stderr_summary=False)
    log.start()
    log.record(rec(1))
    log.close()
    log.close()
    log.record(rec(2))
    assert len(read_lines(path)) == 1


def test_without_a_path_only_counts(capsys: pytest.CaptureFixture[str]):
    log = AccessLog(None)
    log.start()
    log.record(rec(1))
    log.record(rec(2, decision="deny", host="example.com", reason="domain_not_allowed"))
    log.close()
    err = capsys.readouterr().err
    assert err == (
        "awf-proxy: 2 decisions: 1 allowed, 1 denied (example.com:443 domain_not_allowed)\n"
    )


def test_summary_ranks_denials():
    log = AccessLog(None, stderr_summary=False)
    for i in range(9):
        log.record(rec(i))
    for _ in range(2):
        log.record(rec(0, decision="deny", host="example.com", reason="domain_not_allowed"))
    log.record(rec(0, decision="deny", host="evil.test", port=80, reason="domain_blocked"))
    log.record(rec(0, decision="deny", host="::1", port=443, reason="ip_literal"))
    log.record(rec(0, decision="deny", host="evil.test", port=80, reason="domain_blocked"))
    log.record(rec(0, decision="deny", host="evil.test", port=80, reason="domain_blocked"))
    assert log.summary() == (
        "awf-proxy: 15 decisions: 9 allowed, 6 denied (evil.test:80 domain_blocked x3, "
        "example.com:443 domain_not_allowed x2, [::1]:443 ip_literal)"
    )


def test_summary_is_bounded():
    log = AccessLog(None, stderr_summary=False)
    for i in range(50):
        log.record(rec(i, decision="deny", host=f"h{i}.test", reason="domain_not_allowed"))
    summary = log.summary()
    assert summary.startswith("awf-proxy: 50 decisions: 0 allowed, 50 denied (h0.test:443 ")
    assert summary.endswith(", ...)")
    assert summary.count("domain_not_allowed") == 10


def test_dns_records_are_summarised_by_qname():
    log = AccessLog(None, stderr_summary=False)
    log.record(
        {"qname": "evil.test", "qtype": "A", "decision": "deny", "reason": "domain_not_allowed"}
    )
    assert log.summary().endswith("(evil.test domain_not_allowed)")


def test_unopenable_path_is_a_config_error(tmp_path: Path):
    log = AccessLog(tmp_path / "missing-dir" / "access.jsonl")
    with pytest.raises(ConfigError, match=r"cannot open log file .*missing-dir"):
        log.start()


def test_overflow_is_counted_not_raised(tmp_path: Path):
    log = AccessLog(tmp_path / "access.jsonl", stderr_summary=False, max_pending=0)
    log.start()
    for i in range(10):
        log.record(rec(i))
    log.close()
    assert log.dropped == 10
    assert log.summary().endswith("; 10 log records dropped")


def test_write_errors_are_survived(capsys: pytest.CaptureFixture[str]):
    # /dev/full fails every write with ENOSPC.
    log = AccessLog(Path("/dev/full"), stderr_summary=False, flush_interval=0.05)
    log.start()
    for i in range(100):
        log.record(rec(i))
    deadline = time.monotonic() + 5
    while log.dropped < 100:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    log.record(rec(100))
    log.close()
    assert log.dropped == 101
    err = capsys.readouterr().err
    assert err.count("cannot write '/dev/full'") == 1
    assert "No space left on device" in err


@pytest.mark.parametrize("tail", [b'{"cut":', b'{"bytes_up":9,"half', b"x" * 70_000])
@pytest.mark.parametrize("before", [b"", b'{"old":1}\n', b'{"old":1}\n' * 10_000])
def test_a_partial_last_line_from_a_crash_is_cut_at_start(tmp_path: Path, capsys, before, tail):
    path = tmp_path / "access.jsonl"
    path.write_bytes(before + tail)
    log = AccessLog(path, stderr_summary=False)
    log.start()
    log.record(rec(7))
    log.close()
    assert path.read_bytes() == before + encode_line(rec(7))
    assert f"ended in a partial record ({len(tail)} bytes" in capsys.readouterr().err


def test_a_whole_last_line_is_left_alone(tmp_path: Path, capsys):
    path = tmp_path / "access.jsonl"
    path.write_bytes(b'{"old":1}\n')
    log = AccessLog(path, stderr_summary=False)
    log.start()
    log.close()
    assert path.read_bytes() == b'{"old":1}\n'
    assert "partial" not in capsys.readouterr().err
