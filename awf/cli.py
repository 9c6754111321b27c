"""`awf`: the only place that prints to the user or picks an exit code.

    awf run [options] -- COMMAND     (also: awf [options] -- COMMAND)
    awf cleanup [--dry-run]
    awf --version
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from awf.config import parse_run, version_text
from awf.errors import AwfError, ConfigError

USAGE = """usage: awf run [options] -- COMMAND [ARG...]
       awf cleanup [--dry-run]
       awf --version

awf runs COMMAND with no way to the network but awf-proxy. See `awf run --help`."""


def _cleanup(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="awf cleanup",
                                description="Remove what killed awf runs left behind: "
                                "awf-* namespaces and veths, awf_* nft tables.")
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    ns = p.parse_args(list(argv))
    from awf.leftovers import find, remove

    found = find()
    if not found:
        print("awf cleanup: nothing to remove", file=sys.stderr)
        return 0
    for item in found:
        print(f"{'would remove' if ns.dry_run else 'removing'} {item}", file=sys.stderr)
    if not ns.dry_run:
        remove(found)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if not args or args[0] in ("-h", "--help", "help"):
            print(USAGE)
            return 0 if args else 2
        if args[0] in ("-V", "--version"):
            print(version_text())
            return 0
        if args[0] == "cleanup":
            return _cleanup(args[1:])
        if args[0] == "run":
            args = args[1:]
        elif not (args[0].startswith("-")):
            raise ConfigError(f"unknown command {args[0]!r}; try: awf run -- COMMAND")
        cfg = parse_run(args)
        if cfg.backend == "docker":
            raise ConfigError("--backend docker is not in this build yet; use --backend netns")
        from awf.netns_run import run_netns

        return run_netns(cfg)
    except AwfError as exc:
        print(f"awf: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
