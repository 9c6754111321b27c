"""`awf logs`: show, follow, count and summarise a run's logs.

    awf logs [--source RUN|DIR|FILE|running] [--list] [-f] [--format pretty|json|raw]
             [--decision allow|deny|would_deny] [--host GLOB] [--reason R]
             [--client agent|api-proxy]
             [--since T] [--until T] [--all]
    awf logs stats   [--source ...] [--format pretty|json|markdown]
    awf logs summary [--source ...] [--step-summary]
    awf logs suggest [--source ...] [--format both|flags|yaml]

Exit codes: 0 done, 1 no source to read (one line saying where it looked) or no
$GITHUB_STEP_SUMMARY, 2 bad flags, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from awf.config import OneLineParser
from awf.logs import read
from awf.logs.format import Filter, parse_time_flag, pretty, stats_markdown, stats_pretty
from awf.logs.read import NoLogs, Reader, Source
from awf.logs.stats import Counts
from awf.logs.suggest import Suggestion, configured_allowlist, suggest
from awf.logs.summary import markdown
from proxy.errors import AwfError

SUBCOMMANDS = ("stats", "summary", "suggest")


def _source_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", metavar="RUN|DIR|FILE|running",
                   help="a run id, a logs directory, one file, or 'running' (default: the "
                   "running run, else the newest logs directory in $TMPDIR)")


def _show_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="awf logs", description="Show a run's proxy decisions "
                      "(access.jsonl), one line each. Subcommands: stats, summary, suggest.",
                      allow_abbrev=False)
    _source_arg(p)
    p.add_argument("--list", action="store_true", help="list the sources found and exit")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep printing new records until the run ends")
    p.add_argument("--format", choices=("pretty", "json", "raw"), default="pretty")
    p.add_argument("--decision", choices=("allow", "deny", "would_deny"))
    p.add_argument("--host", metavar="GLOB", help="e.g. '*.github.com' or '*:22'")
    p.add_argument("--reason", metavar="R", help="a reason token (comma-separated for several; "
                   "'none' for completed requests)")
    p.add_argument("--client", choices=("agent", "api-proxy"))
    p.add_argument("--since", metavar="T", help="RFC 3339, a UTC time of day, or an age (10m)")
    p.add_argument("--until", metavar="T")
    p.add_argument("--all", action="store_true", help="include the self-test's records")
    return p


def _stats_parser(name: str, formats: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    texts = {
        "stats": "Count a run: totals, outcomes, hosts, reasons, DNS, network-layer drops, "
        "time range, clients and bytes.",
        "summary": "Print the run's summary in Markdown (for a GitHub step summary).",
        "suggest": "Print the smallest allowlist that would have let the run through, as a "
        "flag and as a --config YAML file.",
    }
    p = OneLineParser(prog=f"awf logs {name}", description=texts[name], allow_abbrev=False)
    _source_arg(p)
    if formats:
        p.add_argument("--format", choices=formats, default=formats[0])
    if name == "summary":
        p.add_argument("--step-summary", action="store_true",
                       help="append it to $GITHUB_STEP_SUMMARY instead of printing it")
    return p


def _colour(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and "NO_COLOR" not in os.environ and (
        os.environ.get("TERM") != "dumb")


def _emit_for(fmt: str) -> Callable[[dict[str, object], bytes], None]:
    out = sys.stdout
    if fmt == "raw":
        def emit(rec: dict[str, object], line: bytes) -> None:
            out.flush()
            out.buffer.write(line if line.endswith(b"\n") else line + b"\n")
            out.buffer.flush()
    elif fmt == "json":
        def emit(rec: dict[str, object], line: bytes) -> None:
            out.write(json.dumps(rec, separators=(",", ":"), ensure_ascii=False) + "\n")
    else:
        colour = _colour(out)

        def emit(rec: dict[str, object], line: bytes) -> None:
            out.write(pretty(rec, colour=colour) + "\n")
    return emit


def _list(ns: argparse.Namespace) -> int:
    runs = read.find_runs()
    if not runs:
        where = ", ".join(str(d / (read.PREFIX + "*")) for d in read.search_dirs())
        raise NoLogs(f"no awf logs found (looked for running runs and in {where})")
    for r in runs:
        started = datetime.fromtimestamp(r.mtime, UTC).strftime("%Y-%m-%d %H:%M:%S")
        try:
            size = (r.path / read.ACCESS).stat().st_size
        except OSError:
            size = 0
        if ns.format == "json":
            print(json.dumps({"id": r.id, "state": r.state, "exit_code": r.exit_code,
                              "pid": r.pid, "updated": started + "Z", "path": str(r.path),
                              "access_bytes": size}))
        else:
            state = r.state + (f" (exit {r.exit_code})" if r.exit_code is not None else "")
            print(f"{state:<20} {r.id:<10} {started}Z {size:>12,d} B  {r.path}")
    return 0


def _filter(ns: argparse.Namespace, source: Source) -> Filter:
    now = datetime.now(UTC)
    reasons = None
    if ns.reason:
        reasons = frozenset(r.strip() for r in ns.reason.split(",") if r.strip())
    return Filter(
        decision=ns.decision, host=ns.host, reasons=reasons, client=ns.client,
        since=None if ns.since is None else parse_time_flag(ns.since, now=now, flag="--since"),
        until=None if ns.until is None else parse_time_flag(ns.until, now=now, flag="--until"),
        everything=ns.all,
        api_proxy=source.run.api_proxy if source.run is not None else frozenset())


def _show(ns: argparse.Namespace) -> int:
    if ns.list:
        return _list(ns)
    source = read.resolve(ns.source)
    path = source.access or source.dns
    if path is None:
        raise NoLogs(f"{source.label} holds no proxy or DNS records (for drops, use "
                     "'awf logs stats')")
    keep = _filter(ns, source)
    emit = _emit_for(ns.format)
    reader = Reader()
    if ns.follow:
        running = source.is_running()
        if running is None:  # a file or a bare directory: follow until interrupted
            def alive() -> bool:
                return True
        else:
            alive = source.run.is_running if source.run is not None else (lambda: False)
        records = reader.follow(path, alive)
    else:
        if not path.exists() and source.run is None:
            raise NoLogs(f"no {path.name} in {source.label}")
        records = reader.records(path)
    for rec, line in records:
        if keep(rec):
            emit(rec, line)
            if ns.follow:
                sys.stdout.flush()
    return 0


def _counts(ns: argparse.Namespace) -> tuple[Source, Counts]:
    source = read.resolve(ns.source)
    return source, read.load_counts(source)


def _label(source: Source) -> str:
    run = source.run
    if run is None:
        return source.label
    state = run.state + (f", exit {run.exit_code}" if run.exit_code is not None else "")
    return f"{source.label} (run {run.id}, {state})"


def _stats(ns: argparse.Namespace) -> int:
    source, counts = _counts(ns)
    if ns.format == "json":
        doc = {"source": source.label, "run": None if source.run is None else source.run.id,
               **counts.to_json()}
        print(json.dumps(doc, indent=1, ensure_ascii=False))
    elif ns.format == "markdown":
        sys.stdout.write(stats_markdown(counts, _label(source)))
    else:
        sys.stdout.write(stats_pretty(counts, _label(source)))
    return 0


def _hint(source: Source, counts: Counts) -> Suggestion:
    doc = source.run.doc if source.run is not None else None
    return suggest(counts, configured_allowlist(doc))


def _summary(ns: argparse.Namespace) -> int:
    source, counts = _counts(ns)
    text = markdown(counts, _hint(source, counts))
    if not ns.step_summary:
        sys.stdout.write(text)
        return 0
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        raise NoLogs("--step-summary: GITHUB_STEP_SUMMARY is not set (it is, in a GitHub "
                     "Actions step)")
    try:
        with open(target, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise NoLogs(f"--step-summary: cannot append to {target}: {exc.strerror}") from exc
    return 0


def _suggest(ns: argparse.Namespace) -> int:
    source, counts = _counts(ns)
    hint = _hint(source, counts)
    run = source.run.id if source.run is not None else None
    if ns.format in ("both", "flags"):
        print(hint.flag)
    if ns.format == "both":
        print()
    if ns.format in ("both", "yaml"):
        sys.stdout.write(hint.yaml(run))
    if not hint.added:
        print("awf logs suggest: no denied names to add", file=sys.stderr)
    return 0


def main(argv: Sequence[str]) -> int:
    """`awf logs ...`; AwfErrors are printed by the caller (awf.cli.main)."""
    args = list(argv)
    try:
        if args and args[0] in SUBCOMMANDS:
            name, rest = args[0], args[1:]
            formats = {"stats": ("pretty", "json", "markdown"), "summary": (),
                       "suggest": ("both", "flags", "yaml")}[name]
            ns = _stats_parser(name, formats).parse_args(rest)
            return {"stats": _stats, "summary": _summary, "suggest": _suggest}[name](ns)
        return _show(_show_parser().parse_args(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 0


def run(argv: Sequence[str]) -> int:
    """Entry point with its own error printing (for `python -m awf.logs.cli`)."""
    try:
        return main(argv)
    except AwfError as exc:
        print(f"awf logs: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))

