"""``awf-netfilter``: apply, verify, remove or dump one nft table by hand or from awf.

    awf-netfilter apply  --spec FILE [--netns NAME]    replace the table, then verify it
    awf-netfilter verify --spec FILE [--netns NAME]    compare the live table with the spec
    awf-netfilter remove --table NAME [--netns NAME]   delete the table (missing is fine)
    awf-netfilter dump   --spec FILE                   print the rendered nft script
    awf-netfilter dump   --table NAME [--netns NAME]   print the live refusal counters (JSON)

FILE is a JSON ruleset spec (``netfilter.ruleset.ruleset_from_spec``), ``-`` for stdin. Exit
codes: 0 done, 2 bad usage or spec (one line on stderr), 125 nft or the namespace failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from netfilter import apply as nft
from netfilter.ruleset import Ruleset, ruleset_from_spec
from proxy.errors import AwfError, ConfigError

PROG = "awf-netfilter"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, via main()
        raise ConfigError(f"{message} (see '{PROG} --help')")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Apply, verify, remove or dump an awf nft table.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, text in (("apply", "replace the table atomically, then verify it"),
                       ("verify", "compare the live table with the spec")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--spec", required=True, help="JSON ruleset spec file, '-' for stdin")
        p.add_argument("--netns", help="named network namespace (/run/netns/NAME)")
    p = sub.add_parser("remove", help="delete the table; a missing table is fine")
    p.add_argument("--table", required=True)
    p.add_argument("--netns")
    p = sub.add_parser("dump", help="print the rendered script (--spec) or live counters "
                                    "(--table)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--spec")
    what.add_argument("--table")
    p.add_argument("--netns")
    return parser


def _load(path: str) -> Ruleset:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read ruleset spec {path!r}: {exc.strerror}") from exc
    try:
        return ruleset_from_spec(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"ruleset spec {path!r} is not JSON: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    if args.command == "apply":
        ruleset = _load(args.spec)
        nft.apply(ruleset, netns=args.netns)
        nft.verify(ruleset, netns=args.netns)
        print(f"applied inet {ruleset.table} sha256={ruleset.sha256()}")
    elif args.command == "verify":
        ruleset = _load(args.spec)
        nft.verify(ruleset, netns=args.netns)
        print(f"verified inet {ruleset.table} sha256={ruleset.sha256()}")
    elif args.command == "remove":
        removed = nft.remove(args.table, netns=args.netns)
        print(f"removed inet {args.table}" if removed else f"no table inet {args.table}")
    elif args.spec is not None:
        sys.stdout.write(_load(args.spec).render())
    else:
        print(json.dumps(nft.counters(args.table, netns=args.netns), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        return run(args)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except AwfError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
