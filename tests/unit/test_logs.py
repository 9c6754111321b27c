"""The pure parts of `awf logs`: the true count, the allowlist suggestion, the Markdown, the
pretty line, time flags; and the reader's edges on small hand-written files (malformed lines,
truncation while following, splitting a file among processes)."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from awf.logs import read
from awf.logs.format import Filter, parse_time_flag, pretty
from awf.logs.stats import (
    KEEPER_WAIT_NAME,
    MAX_HOSTS,
    OTHER_HOSTS,
    Outcome,
    ProxyFields,
    Tally,
    client_address,
    count,
    outcome,
)
from awf.logs.suggest import collapse, configured_allowlist, registrable, suggest
from awf.logs.summary import markdown, stderr_lines
from netfilter.selftest import NAME, PROBE_V4, PROBE_V6
from proxy.errors import ConfigError

TS = "2026-12-06T17:04:05.123Z"


def rec(host: str, decision: str = "allow", reason: str | None = None, *, port: int = 443,
        ts: str = TS, up: int = 0, down: int = 0, client: str = "10.0.0.2:40000",
        **extra: object) -> dict[str, object]:
    return {"ts": ts, "client": client, "mode": "explicit", "method": "CONNECT", "host": host,
            "port": port, "decision": decision, "reason": reason,
            "status": 200 if reason is None and decision == "allow" else 403,
            "bytes_up": up, "bytes_down": down, "duration_ms": 1.0, **extra}


def dns(name: str, decision: str = "deny", reason: str | None = "domain_not_allowed"
        ) -> dict[str, object]:
    return {"ts": TS, "client": "10.0.0.2:5353", "qname": name, "qtype": "A",
            "decision": decision, "reason": reason,
            "rcode": "NXDOMAIN" if decision == "deny" else "NOERROR", "answers": []}


# -- outcomes and the true count ------------------------------------------------------------


@pytest.mark.parametrize(("decision", "reason", "expected"), [
    ("allow", None, Outcome.ANSWERED),
    ("allow", "dns_failure", Outcome.FAILED),
    ("allow", "connect_failed", Outcome.FAILED),
    ("deny", "domain_not_allowed", Outcome.DENIED),
    ("would_deny", "domain_not_allowed", Outcome.WOULD_DENY),
    ("maybe", None, None),
    (None, None, None),
])
def test_outcome(decision: str | None, reason: str | None, expected: Outcome | None) -> None:
    assert outcome({"decision": decision, "reason": reason}) == expected


def test_count_outcomes_bytes_and_reasons() -> None:
    c = count([
        rec("api.github.com", up=10, down=1000),
        rec("api.github.com", up=5, down=500, ts="2026-12-06T17:04:01.000Z"),
        rec("gone.github.com", reason="dns_failure"),
        rec("slow.github.com", reason="connect_timeout", ts="2026-12-06T17:09:00.000Z"),
        rec("example.com", "deny", "domain_not_allowed", port=80),
        rec("example.com", "deny", "domain_not_allowed", port=80),
        rec("169.254.169.254", "deny", "ip_literal", port=80),
        rec("later.example", "would_deny", "domain_not_allowed"),
    ])
    assert (c.requests, c.allowed, c.answered, c.failed, c.denied, c.would_deny) == (
        8, 4, 2, 2, 3, 1)
    assert (c.bytes_up, c.bytes_down) == (15, 1500)
    assert c.failures == {"dns_failure": 1, "connect_timeout": 1}
    assert c.denials == {"domain_not_allowed": 3, "ip_literal": 1}
    assert c.targets[("example.com", 80, "domain_not_allowed")] == 2
    assert (c.first, c.last) == ("2026-12-06T17:04:01.000Z", "2026-12-06T17:09:00.000Z")
    h = c.hosts["api.github.com"]
    assert (h.answered, h.bytes_up, h.bytes_down) == (2, 15, 1500)
    assert c.hosts["gone.github.com"].failures == {"dns_failure": 1}
    assert c.hosts["gone.github.com"].reasons == {}
    assert c.addresses == {"10.0.0.2": 8}
    assert c.clients == {"agent": 8}


def test_selftest_records_and_drops_are_left_out() -> None:
    c = count(
        [rec(NAME, "deny", "domain_not_allowed", port=80), rec("x.test", selftest=True),
         rec("a.test")],
        [dns(NAME), dns(KEEPER_WAIT_NAME), dns("evil.test"), dns("a.test", "allow", None)],
        [{"dst": PROBE_V4, "proto": "tcp", "port": 22, "count": 1},
         {"dst": PROBE_V6, "proto": "udp", "port": 53, "count": 2},
         {"dst": "203.0.113.7", "proto": "tcp", "port": 22, "count": 3},
         {"dst": "ff02::2", "proto": "ipv6-icmp", "port": None, "count": 1}],
    )
    assert (c.requests, c.answered, c.denied) == (1, 1, 0)
    assert (c.dns_queries, c.dns_refused, c.dns_allowed) == (2, 1, 1)
    assert c.dns_refused_names == {"evil.test": "domain_not_allowed"}
    assert [str(d) for d in c.drops] == ["203.0.113.7 tcp/22 \u00d73", "ff02::2 ipv6-icmp \u00d71"]
    assert c.dropped == 4
    assert c.selftest == 2 + 2 + 3


def test_odd_records_do_not_break_the_count() -> None:
    c = count([{"host": 5, "port": "x", "decision": "deny", "bytes_up": "9"}, {}, rec("a.b")])
    assert (c.requests, c.denied, c.unknown) == (2, 1, 1)
    assert c.hosts[""].denied == 1


def test_api_proxy_clients() -> None:
    c = count([rec("a.test", client="172.30.0.30:5000"), rec("b.test"),
               rec("c.test", client_name="api-proxy")],
              api_proxy=frozenset({"172.30.0.30"}))
    assert c.clients == {"agent": 1, "api-proxy": 2}


@pytest.mark.parametrize(("client", "address"), [
    ("10.0.0.2:4000", "10.0.0.2"), ("[fd00::20]:4000", "fd00::20"), ("", ""), ("x", "x"),
])
def test_client_address(client: str, address: str) -> None:
    assert client_address(client) == address


def test_hosts_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("awf.logs.stats.MAX_HOSTS", 3)
    c = count([rec(f"h{i}.test") for i in range(6)])
    assert set(c.hosts) == {"h0.test", "h1.test", "h2.test", OTHER_HOSTS}
    assert c.hosts[OTHER_HOSTS].answered == 3
    assert c.requests == 6
    assert MAX_HOSTS == 10_000


def test_merge_equals_one_tally() -> None:
    recs = [rec(f"h{i % 7}.test", "deny" if i % 3 else "allow",
                "domain_not_allowed" if i % 3 else None, up=i, down=2 * i,
                ts=f"2026-12-06T17:{i % 60:02d}:00.000Z") for i in range(200)]
    whole = Tally()
    for r in recs:
        whole.add(r)
    a, b, merged = Tally(), Tally(), Tally()
    for r in recs[:77]:
        a.add(r)
    for r in recs[77:]:
        b.add(r)
    merged.merge(a.state())
    merged.merge(b.state())
    assert merged.result().to_json() == whole.result().to_json()


def test_a_big_file_split_among_processes_counts_the_same(tmp_path: Path) -> None:
    lines = [json.dumps(rec(f"h{i % 11}.test", "allow", None if i % 5 else "connect_failed",
                            up=i, ts=f"2026-12-06T17:00:{i % 60:02d}.000Z"))
             for i in range(3000)]
    lines[1234] = "{broken"
    lines[2500] = "[]"
    path = tmp_path / "access.jsonl"
    lines[2000] = ""  # a blank line: skipped, not malformed
    path.write_text("\n".join(lines))  # no newline after the last line
    results = []
    for workers in (1, 2, 3, 7):
        warnings: list[str] = []
        reader = read.Reader(warn=warnings.append)
        tally = Tally()
        read.tally_access(path, tally, reader, workers=workers)
        results.append(tally.result().to_json())
        assert reader.malformed == 2
        assert warnings == [f"{path}: line 1235 is not a JSON object; skipped"]
    assert results[0] == results[1] == results[2] == results[3]
    assert results[0]["requests"] == 2997


# -- the typed short way and the chunked, split reading of a big access log -----------------

# a few values of each field, so that keys repeat (only a key already counted takes the typed
# way), and odd values of every kind for any field
_ODD = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                 st.floats(allow_nan=False), st.text(max_size=4), st.just([1, {"a": None}]))
_FIELD_VALUES: dict[str, st.SearchStrategy[object]] = {  # mostly what the proxy writes
    "ts": st.sampled_from(["2026-12-06T17:00:00.000Z", "2026-12-06T01:00:00.000Z",
                           "2026-12-07T00:00:00.000Z"]),
    "client": st.sampled_from(["10.0.0.2:40000", "10.0.0.2:1", "[fd00::20]:7",
                               "10.0.0.2:40000", "nohost", ":5", "10.0.0.3:x", "10.0.0.4:5:6"]),
    "host": st.sampled_from(["a.test", "b.test", "a.test", "\u00fc.test", NAME,
                             KEEPER_WAIT_NAME, OTHER_HOSTS, ""]),
    "port": st.sampled_from([443, 80, 443, 0, -1, 2**63 - 1, 2**63, 2**64, 2**70]),
    "decision": st.sampled_from(["allow", "deny", "would_deny", "allow", "maybe"]),
    "reason": st.sampled_from([None, "domain_not_allowed", "connect_failed"]),
    "bytes_up": st.sampled_from([0, 7, 0, 7, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -3]),
    "bytes_down": st.sampled_from([0, 9, 0, 9, 2**62, -(2**63) - 1]),
}
_MARKS = st.sampled_from([True, True, False, None, "agent", "api-proxy", "api-proxy"])


@st.composite
def access_lines(draw: st.DrawFn, max_size: int = 40) -> list[bytes]:
    """Lines of an access log: mostly records as the proxy writes them, of a few keys (only a
    key already counted takes the typed way) with any time and byte counts; sometimes with a
    field odd, missing, repeated or escaped, a mark, or not a record at all."""
    keys = draw(st.lists(st.fixed_dictionaries({k: v for k, v in _FIELD_VALUES.items()
                                                if k not in ("ts", "bytes_up", "bytes_down")}),
                         min_size=1, max_size=3))
    lines = []
    for _ in range(draw(st.integers(0, max_size))):
        kind = draw(st.sampled_from([7, 7, 7, 7, 0, 1, 2, 3, 3, 4, 5, 6]))  # 7: as written
        if kind == 0:
            lines.append(draw(st.sampled_from([
                b"", b"  ", b"{broken", b"[]", b'"str"', b"NaN", b"{}", b"\xff\xfe",
                b'{"host":"a.test","n":NaN}', b"[" * 5000 + b"]" * 5000,
                b'{"x":' + b"[" * 5000 + b"]" * 5000 + b"}", b'{"host":"\\udc80"}'])))
            continue
        fields: dict[str, object] = {
            "ts": draw(_FIELD_VALUES["ts"]), **draw(st.sampled_from(keys)),
            "bytes_up": draw(_FIELD_VALUES["bytes_up"]),
            "bytes_down": draw(_FIELD_VALUES["bytes_down"])}
        if kind == 1:
            fields[draw(st.sampled_from(sorted(fields)))] = draw(_ODD)
        if kind == 2:
            del fields[draw(st.sampled_from(sorted(fields)))]
        if kind == 3:
            fields[draw(st.sampled_from(["selftest", "client_name"]))] = draw(_MARKS)
        fields["duration_ms"] = 1.5
        text = json.dumps(fields, ensure_ascii=draw(st.booleans()))
        if kind == 4:  # a key twice: the last one counts
            text = text[:-1] + f', "{draw(st.sampled_from(sorted(_FIELD_VALUES)))}": ' + (
                json.dumps(draw(st.one_of(_ODD, *_FIELD_VALUES.values())))) + "}"
        if kind == 5:  # an escaped key
            text = text.replace('"host"', '"h\\u006fst"')
        if kind == 6:  # a lone surrogate, which only json reads
            text = text.replace('"duration_ms"', '"x": "\\udc80", "duration_ms"')
        lines.append(text.encode("utf-8", "surrogatepass")
                     + draw(st.sampled_from([b"", b" ", b"\r"])))
    return lines


def plain_count(lines: list[bytes], tally: Tally) -> list[int]:
    """What `add_lines` must do, a dict at a time."""
    bad = []
    for i, line in enumerate(lines):
        r = read.parse_line(line)
        if r is None:
            if line.strip():
                bad.append(i)
        else:
            tally.add(r)
    return bad


_DECODE = msgspec.json.Decoder(ProxyFields).decode


# generating a few hundred choices per example is slow on a loaded machine: no health check
_LOADED = settings(suppress_health_check=[HealthCheck.too_slow])


@_LOADED
@given(access_lines(), st.integers(0, 40))
def test_the_typed_way_counts_like_a_dict_at_a_time(lines: list[bytes], cut: int) -> None:
    lines = [line for line in lines if line.isascii() or line.decode(errors="ignore").encode()
             == line]  # read.py gives the typed way only blocks of valid UTF-8
    plain, typed = Tally(), Tally()
    expected = plain_count(lines, plain)
    bad = typed.add_lines(lines[:cut], read.parse_line, _DECODE)
    bad += [cut + i for i in typed.add_lines(lines[cut:], read.parse_line, _DECODE)]
    assert bad == expected
    assert typed.result().to_json() == plain.result().to_json()
    assert typed.state() == plain.state()


def test_the_typed_way_is_taken() -> None:
    """A record whose key is counted takes the typed way: no dict is made for it."""
    line = json.dumps(rec("a.test", up=3, down=4)).encode()
    parsed: list[bytes] = []

    def parse(raw: bytes) -> dict[str, object] | None:
        parsed.append(raw)
        return read.parse_line(raw)

    tally = Tally()
    assert tally.add_lines([line] * 5 + [b"", b"{x"], parse, _DECODE) == [6]
    assert parsed == [line, b"", b"{x"]
    c = tally.result()
    assert (c.requests, c.bytes_up, c.bytes_down) == (5, 15, 20)


def _reference(path: Path) -> tuple[dict[str, object], int, list[str]]:
    warnings: list[str] = []
    reader = read.Reader(warn=warnings.append)
    counts = count(r for r, _ in reader.records(path))
    return counts.to_json(), reader.malformed, warnings


def _chunked(path: Path, **kw: object) -> tuple[dict[str, object], int, list[str]]:
    warnings: list[str] = []
    reader = read.Reader(warn=warnings.append)
    tally = Tally()
    read.tally_access(path, tally, reader, **kw)  # type: ignore[arg-type]
    return tally.result().to_json(), reader.malformed, warnings


@_LOADED
@given(access_lines(max_size=30), st.booleans(), st.integers(1, 300),
       st.integers(1, 5))
def test_chunks_and_ranges_count_like_the_plain_reader(
        lines: list[bytes], newline_at_end: bool, chunk: int, workers: int) -> None:
    """Any chunk size (a line longer than a chunk too) and any split into byte ranges: the same
    count, the same malformed lines, the first one named by its line number in the file."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "access.jsonl"
        path.write_bytes(b"\n".join(lines) + (b"\n" if newline_at_end and lines else b""))
        assert _chunked(path, workers=workers, chunk=chunk, processes=False) == _reference(path)


def test_chunks_split_among_processes(tmp_path: Path) -> None:
    lines = [json.dumps(rec(f"h{i % 7}.test", client=f"10.0.0.{i % 3}:{i}", up=i)).encode()
             for i in range(400)]
    lines[5] = b'{"host":"long.test","pad":"' + b"x" * 5000 + b'"}'  # longer than a chunk
    lines[123] = b"{broken"
    lines[124] = b"[" * 5000 + b"]" * 5000  # nested too deep: malformed, not a traceback
    lines[300] = b""
    path = tmp_path / "access.jsonl"
    path.write_bytes(b"\n".join(lines))
    expected = _reference(path)
    assert expected[1:] == (2, [f"{path}: line 124 is not a JSON object; skipped"])
    for workers in (1, 2, 3):
        for chunk in (16, 1000, read.CHUNK):
            assert _chunked(path, workers=workers, chunk=chunk) == expected


def test_bad_utf8_anywhere_is_malformed(tmp_path: Path) -> None:
    """msgspec does not check the UTF-8 of a field it skips; orjson and json refuse the line,
    and so does the count."""
    good = json.dumps(rec("a.test", url="http://a.test/")).encode()
    bad = good.replace(b"http://a.test/", b"http://a.test/\xff")
    path = tmp_path / "access.jsonl"
    path.write_bytes(b"\n".join([good, good, bad, good]) + b"\n")
    for chunk in (1, read.CHUNK):
        counts, malformed, warnings = _chunked(path, workers=1, chunk=chunk)
        assert (counts["requests"], malformed) == (3, 1)
        assert warnings == [f"{path}: line 3 is not a JSON object; skipped"]


# -- the reader ----------------------------------------------------------------------------


def test_reader_skips_malformed_lines_with_one_warning_per_file(tmp_path: Path) -> None:
    path = tmp_path / "access.jsonl"
    path.write_bytes(b'{"host":"a"}\nnot json\n\n\xff\xfe\n{"host":"b"}\n"str"\n')
    warnings: list[str] = []
    reader = read.Reader(warn=warnings.append)
    assert [r["host"] for r, _ in reader.records(path)] == ["a", "b"]
    assert warnings == [f"{path}: line 2 is not a JSON object; skipped"]
    assert reader.malformed == 3


def test_a_line_nested_too_deep_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "access.jsonl"
    path.write_bytes(b'{"host":"a"}\n{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n")
    warnings: list[str] = []
    reader = read.Reader(warn=warnings.append)
    assert [r["host"] for r, _ in reader.records(path)] == ["a"]
    assert warnings == [f"{path}: line 2 is not a JSON object; skipped"]


def test_reader_accepts_what_only_json_reads(tmp_path: Path) -> None:
    path = tmp_path / "access.jsonl"
    path.write_text('{"host":"\\udc80x","n":NaN}\n')  # a lone surrogate, NaN: orjson refuses
    [(r, _)] = list(read.Reader().records(path))
    assert r["host"] == "\udc80x"


def test_follow_reads_new_lines_and_ends_with_the_run(tmp_path: Path) -> None:
    path = tmp_path / "access.jsonl"
    steps: list[str] = []

    def sleep(_: float) -> None:  # each poll, the "proxy" writes something
        steps.append("poll")
        n = len(steps)
        if n == 1:
            path.write_text('{"n":1}\n{"n":2}\n{"n":')  # a line still being written
        elif n == 2:
            with path.open("a") as f:
                f.write('3}\n')
        elif n == 4:
            path.write_text('{"n":4}\n')  # truncated back (a failed write), then a line
        elif n == 8:
            with path.open("a") as f:
                f.write('{"n":5}\n{"n":6}')  # the last line, written at exit without \n

    alive = iter([True] * 6 + [False] * 10)
    warnings: list[str] = []
    reader = read.Reader(warn=warnings.append)
    got = [r["n"] for r, _ in reader.follow(path, lambda: next(alive), poll=0.3, sleep=sleep)]
    # 4 was written in the same step as the truncation: it is behind the new end
    assert got == [1, 2, 3, 5, 6]
    assert warnings == []


# -- sources -------------------------------------------------------------------------------


def test_run_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read, "RUNS", tmp_path / "runs")
    (tmp_path / "runs").mkdir()
    d = tmp_path / "awf-logs-abcd1234"
    d.mkdir()
    assert read.run_state(d, "abcd1234", docker=False)[0] == "unfinished"
    (tmp_path / "runs" / "abcd1234.pid").write_text(f"{__import__('os').getpid()}\n")
    assert read.run_state(d, "abcd1234", docker=False)[:2] == (
        "running", __import__("os").getpid())
    (d / "run.json").write_text(json.dumps({"id": "abcd1234", "exit_code": 3}))
    assert read.run_state(d, "abcd1234", docker=False)[0] == "finished"
    assert read.run_state(d, "x", docker=False, docker_live={str(d): 1})[0] == "finished"
    (d / "run.json").unlink()
    (tmp_path / "runs" / "abcd1234.pid").unlink()
    assert read.run_state(d, "abcd1234", docker=False, docker_live={str(d): 1})[:2] == (
        "running", 1)


def test_pid_alive() -> None:
    import os

    assert read.pid_alive(os.getpid())
    assert not read.pid_alive(0)
    assert not read.pid_alive(2 ** 22 + 11)


# -- the allowlist suggestion --------------------------------------------------------------


def test_registrable_uses_the_public_suffix_list() -> None:
    assert registrable("api.github.com") == "github.com"
    assert registrable("a.b.example.co.uk") == "example.co.uk"
    assert registrable("foo.github.io") == "foo.github.io"  # a private suffix counts
    assert registrable("github.io") is None


@pytest.mark.parametrize(("names", "expected"), [
    (["api.github.com", "codeload.github.com"], ["github.com"]),
    (["api.github.com"], ["api.github.com"]),
    (["github.com", "api.github.com"], ["github.com"]),
    (["a.foo.github.io", "b.foo.github.io", "bar.github.io"], ["bar.github.io", "foo.github.io"]),
    (["x.example.co.uk", "y.example.co.uk", "z.other.co.uk"],
     ["example.co.uk", "z.other.co.uk"]),
    (["API.GitHub.com.", "api.github.com"], ["api.github.com"]),
    (["localhost", "10.0.0.5", "*.example.com", "https://tls.test", "a.b.c.d.e.test"],
     ["*.example.com", "a.b.c.d.e.test", "https://tls.test", "10.0.0.5"]),
])
def test_collapse(names: list[str], expected: list[str]) -> None:
    assert collapse(names) == expected


def test_suggest_from_the_run() -> None:
    c = count(
        [rec("api.github.com"), rec("codeload.github.com", reason="connect_failed"),
         rec("example.com", "deny", "domain_not_allowed"),
         rec("evil.example.net", "deny", "domain_blocked"),
         rec("10.1.2.3", "deny", "ip_literal"),
         rec("api.npmjs.org", "would_deny", "domain_not_allowed"),
         rec("registry.npmjs.org", "would_deny", "domain_not_allowed")],
        [dns("pypi.org"), dns("files.pythonhosted.org", reason="domain_blocked")])
    s = suggest(c)
    assert s.added == ("api.npmjs.org", "example.com", "pypi.org", "registry.npmjs.org")
    assert s.flag == "--allow-domains example.com,github.com,npmjs.org,pypi.org"
    assert s.yaml("abcd1234") == (
        "# awf logs suggest: the allowlist that would have let run abcd1234 through\n"
        "allow_domains:\n  - example.com\n  - github.com\n  - npmjs.org\n  - pypi.org\n")
    configured = suggest(c, ["api.github.com", "codeload.github.com", "*.corp.example"])
    assert configured.entries == ("\"*.corp.example\"".strip('"'), "example.com", "github.com",
                                  "npmjs.org", "pypi.org")
    assert '  - "*.corp.example"\n' in configured.yaml()


def test_configured_allowlist() -> None:
    assert configured_allowlist({"config": {"allow_domains": "a.com,b.com"}}) == ["a.com",
                                                                                 "b.com"]
    assert configured_allowlist({"config": {"allow_domains": {"value": ["a.com"],
                                                              "source": "flag"}}}) == ["a.com"]
    assert configured_allowlist({"allow_domains": ["x.org"]}) == ["x.org"]
    assert configured_allowlist({"id": "x"}) is None
    assert configured_allowlist(None) is None


# -- Markdown and stderr ---------------------------------------------------------------------


def test_markdown_escapes_and_caps_rows() -> None:
    recs = [rec(f"h{i:02d}.test") for i in range(60)] + [rec("a|b`c", "deny", "bad_request"),
                                                         rec("", "deny", "bad_request")]
    text = markdown(count(recs))
    assert "| a\\|b\\`c | 0 | 1 | bad_request |" in text
    assert "| (none) | 0 | 1 | bad_request |" in text
    assert "| h47.test | 1 | 0 | |" in text
    assert "h48.test" not in text
    assert "| … 12 more hosts | | | |" in text
    assert text.startswith("<details open>\n<summary>awf firewall: 62 requests · 60 allowed · "
                           "2 denied · 62 hosts · 0 network-layer drops</summary>\n")
    assert "To allow" not in text
    assert text.endswith("DNS: 0 queries, 0 refused. Network layer: no drops.\n</details>\n")


def test_stderr_lines() -> None:
    c = count([rec("a.github.com"), rec("example.com", "deny", "domain_not_allowed", port=80),
               rec("example.com", "deny", "domain_not_allowed", port=80),
               rec("b.github.com", reason="connect_failed")])
    assert stderr_lines(c, suggest(c)) == [
        "4 requests: 2 allowed (1 failed upstream), 2 denied",
        "  denied example.com:80 (domain_not_allowed) \u00d72",
        "  failed b.github.com:443 (connect_failed)",
        "To allow the denied domains: --allow-domains example.com,github.com",
    ]


def test_the_summary_names_the_api_proxys_own_requests() -> None:
    c = count([rec("a.github.com"), rec("api.openai.test", client="127.0.0.1:5000",
                                        client_name="api-proxy")])
    assert c.summary_line() == "2 requests (1 by the API proxy): 2 allowed, 0 denied"
    assert count([rec("a.github.com")]).summary_line() == "1 request: 1 allowed, 0 denied"


# -- pretty lines, filters, time flags ------------------------------------------------------


def test_pretty() -> None:
    assert pretty(rec("example.com", "deny", "domain_not_allowed", port=80, method="GET")) == (
        "17:04:05.123 DENY GET example.com:80 403 domain_not_allowed")
    assert pretty(rec("::1", "deny", "ip_literal")) == (
        "17:04:05.123 DENY CONNECT [::1]:443 403 ip_literal")
    coloured = pretty(rec("a.test"), colour=True)
    assert coloured == "17:04:05.123 \x1b[32mALLOW\x1b[0m CONNECT a.test:443 200"
    assert pretty(dns("evil.test")) == "17:04:05.123 DENY DNS A evil.test NXDOMAIN " \
                                       "domain_not_allowed"
    assert pretty({"ts": "odd"}) == "odd ? - ?:None None"


NOW = datetime(2026, 12, 6, 18, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-12-06T17:04:05Z", "2026-12-06T17:04:05+00:00"),
    ("2026-12-06T17:04:05.5+01:00", "2026-12-06T16:04:05.500000+00:00"),
    ("17:04", "2026-12-06T17:04:00+00:00"),
    ("17:04:05.250", "2026-12-06T17:04:05.250000+00:00"),
    ("10m", "2026-12-06T17:50:00+00:00"),
    ("2h", "2026-12-06T16:00:00+00:00"),
    ("1d", "2026-12-05T18:00:00+00:00"),
])
def test_time_flags(text: str, expected: str) -> None:
    got = parse_time_flag(text, now=NOW, flag="--since")
    assert datetime.fromtimestamp(got, UTC).isoformat() == expected


@pytest.mark.parametrize("text", ["", "soon", "25:99", "10x", "2026-13-01"])
def test_bad_time_flags(text: str) -> None:
    with pytest.raises(ConfigError, match="--until"):
        parse_time_flag(text, now=NOW, flag="--until")


def test_filter_hides_selftest_unless_all() -> None:
    assert not Filter()(rec(NAME))
    assert not Filter()(dns(KEEPER_WAIT_NAME))
    assert Filter(everything=True)(rec(NAME))
    assert Filter(host="*.test")(dns("evil.test"))
    assert not Filter(since=1e10)(rec("a.test"))
    assert not Filter(since=0)({"host": "a.test", "ts": "garbage"})


def test_the_short_way_counts_like_the_general_one() -> None:
    recs = [rec("a.test", client="[fd00::20]:5000", up=3), rec("a.test", client="10.0.0.2:1"),
            rec("a.test", client="10.0.0.2:2", reason="connect_failed"),
            rec("b.test", "deny", "domain_not_allowed", client="nohost"),
            rec("b.test", "deny", "domain_not_allowed", client="[fd00::20]:7"),
            rec("c.test", ts="2026-12-06T00:00:00.000Z"), rec(NAME), {**rec("d.test"), "port": 1.5}]
    fast, general = Tally(), Tally()
    for r in recs * 3:
        fast.add(r)
        general._add_general(r)
    assert fast.result().to_json() == general.result().to_json()
    assert fast.result().addresses == {"fd00::20": 6, "10.0.0.2": 12, "nohost": 3}


def test_docker_runs_from_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Docker backend records a live run only in its containers' labels."""
    import os
    import socket

    from containers import labels
    from containers.driver import ContainerInfo, DockerDriver, Labelled

    logs = tmp_path / "custom-logs"
    logs.mkdir()
    me, host = str(os.getpid()), socket.gethostname()

    def info(run: str, pid: str, where: str, *extra: tuple[str, str]) -> ContainerInfo:
        return ContainerInfo(run, f"awf-{run}-proxy", "running", (
            (labels.RUN, run), (labels.OWNER_PID, pid), (labels.HOST, where),
            (labels.LOGS_DIR, str(logs)), *extra))

    class Fake:
        def list_by_label(self, key: str) -> Labelled:
            assert key == labels.RUN
            return Labelled((info("aaaa0001", me, host), info("aaaa0002", "999999999", host),
                             info("aaaa0003", me, "elsewhere"),
                             info("aaaa0004", me, host, (labels.TEST, "1"))), ())

        def close(self) -> None:
            pass

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent")
    monkeypatch.setenv("AWF_LOGS_DOCKER", "1")
    monkeypatch.setattr(DockerDriver, "from_env",
                        classmethod(lambda cls, base_url=None, timeout=60: Fake()))
    live = read.docker_runs()
    assert live == {"aaaa0001": os.getpid(), os.path.realpath(logs): os.getpid()}
    monkeypatch.setenv("TMPDIR", str(tmp_path / "nothing-here"))
    (tmp_path / "nothing-here").mkdir()
    [run] = read.find_runs()
    assert (run.path, run.state, run.pid) == (logs, "running", os.getpid())
    monkeypatch.setenv("AWF_LOGS_DOCKER", "0")
    assert read.docker_runs() == {}
