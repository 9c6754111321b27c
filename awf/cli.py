"""`awf`: the command line. It picks every exit code of awf and prints every error that ends a
command (`awf: ...`, one line) and the answers of `cleanup`, `images` and `--version`. During
`awf run`, `awf.run` prints the `[awf]` lines and the summary, and the command's own output
passes through unchanged.

    awf run [options] -- COMMAND     (also: awf [options] -- COMMAND)
    awf cleanup [--run ID | --all [--force]] [--dry-run]
    awf images build [--force] [--mirror URL] [--base-image IMAGE]
    awf logs [stats|summary|suggest] ...   (awf/logs/cli.py)
    awf --version
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from awf import signals

if TYPE_CHECKING:
    from awf.config import RunConfig

USAGE = """usage: awf run [options] -- COMMAND [ARG...]
       awf cleanup [--run ID | --all [--force]] [--dry-run]
       awf images build [--force] [--mirror URL] [--base-image IMAGE]
       awf logs [stats|summary|suggest] [--source RUN|DIR|FILE|running] [options]
       awf --version

awf runs COMMAND with no way to the network but awf-proxy. See `awf run --help`."""


def _cleanup(argv: Sequence[str]) -> int:
    from awf.config import OneLineParser

    p = OneLineParser(prog="awf cleanup",
                      description="Remove what killed awf runs left behind: awf-* namespaces "
                      "and veths, awf_* nft tables, and the Docker containers and networks "
                      "labelled io.awf.run. A run whose awf is still alive is never touched "
                      "without --force. Logs are kept.")
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    p.add_argument("--run", metavar="ID", help="only this run (e.g. after --keep-containers)")
    p.add_argument("--all", action="store_true",
                   help="every awf run; live ones are named, and removed only with --force")
    p.add_argument("--force", action="store_true",
                   help="remove live runs too (with --run or --all): their awf loses its sandbox")
    ns = p.parse_args(list(argv))
    from awf.leftovers import find, remove

    found = find()
    if ns.run:
        found = [f for f in found if f.run == ns.run]
    live = sorted({f.run for f in found if f.live})
    if not (ns.force and (ns.run or ns.all)):
        if ns.run or ns.all:
            for run in live:
                print(f"awf cleanup: run {run} is alive; not removing it (--force removes a "
                      "live run)", file=sys.stderr)
        found = [f for f in found if not f.live]
    if not found:
        print("awf cleanup: nothing to remove", file=sys.stderr)
        return 0
    for item in found:
        print(f"{'would remove' if ns.dry_run else 'removing'} {item}", file=sys.stderr)
    if not ns.dry_run:
        remove(found)
    return 0


def _images(argv: Sequence[str]) -> int:
    from awf.config import OneLineParser

    p = OneLineParser(prog="awf images", description="Build awf's container images offline "
                      "(first time: a Debian base from the apt mirror, a minute or two; then "
                      "instant, tagged by the hash of their inputs).")
    p.add_argument("action", choices=("build",))
    p.add_argument("--force", action="store_true", help="rebuild even if the tags exist")
    p.add_argument("--mirror", metavar="URL", help="the Debian mirror of the base image "
                   "(default: $AWF_MIRROR, else the host's apt sources)")
    p.add_argument("--base-image", metavar="IMAGE", help="start from this local image (Python "
                   "3.11+, nftables, libseccomp) instead of building a Debian base")
    ns = p.parse_args(list(argv))
    from containers.driver import DockerDriver
    from containers.images import ensure_images

    driver = DockerDriver.from_env()
    images = ensure_images(driver, progress=lambda line: print(line, file=sys.stderr,
                                                               flush=True), force=ns.force,
                           mirror=ns.mirror, base_image=ns.base_image)
    for tag in (images.base, images.runtime, images.agent):
        print(tag)
    return 0


def _run_netns(cfg: RunConfig, t0: float) -> int:
    from awf.host_checks import check_netns_host, check_resolvers
    from awf.proxy_child import ProxyChild

    check_netns_host()
    check_resolvers(cfg.proxy.dns_servers)  # issue 19: a dead resolver, before anything
    proxy = ProxyChild.fork()  # before any thread; it imports the proxy on the other core
    try:
        from awf.backends.netns import run_netns

        return run_netns(cfg, proxy, t0)
    finally:
        proxy.stop(1)  # already stopped by the run's teardown, unless it never began


def _before_run(cfg: RunConfig) -> bool:
    """--config's notes, --print-config (True: done), --audit-dir, --docker-host."""
    for note in cfg.notes:
        print(f"awf: note: {note}", file=sys.stderr)
    if cfg.print_config:
        from awf.configfile import render_effective

        print(render_effective(cfg.effective, cfg.config_file), end="")
        return True
    if cfg.audit_dir is not None:
        from awf.audit import write_audit
        from proxy.errors import ConfigError

        try:
            write_audit(cfg, cfg.audit_dir)
        except OSError as exc:
            raise ConfigError(f"--audit-dir {str(cfg.audit_dir)!r}: {exc.strerror}") from exc
    if cfg.docker_host:
        os.environ["DOCKER_HOST"] = cfg.docker_host  # what awf's Docker client connects to
    return False


def main(argv: Sequence[str] | None = None) -> int:
    signals.catch()  # first of all: from here on SIGINT/SIGTERM end awf with 128+N
    try:
        code = _main(list(sys.argv[1:] if argv is None else argv))
    except signals.Interrupted as exc:
        signals.delivered()
        print(f"awf: {exc}: stopped, nothing left running", file=sys.stderr)
        return 128 + exc.signum
    if argv is None and _RAN:
        _quick_exit(code)
    return code


_RAN: list[bool] = []  # `awf run` ran to its end (teardown done, run.json written)


def _quick_exit(code: int) -> None:
    """The end of `awf run` as a program: its teardown is done and its files are closed, so
    the interpreter's own teardown (freeing every module, a few tenths of a second on a busy
    machine) is skipped; only the standard streams are flushed."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what sys.exit would have ignored too
            pass
    os._exit(code)


def _main(args: list[str]) -> int:
    from proxy.errors import AwfError, ConfigError

    try:
        if not args or args[0] in ("-h", "--help", "help"):
            print(USAGE)  # before awf.config (the proxy's flags, 40-60 ms to import)
            return 0 if args else 2
        from awf.config import parse_run, version_text

        if args[0] in ("-V", "--version"):
            print(version_text())
            return 0
        if args[0] == "cleanup":
            return _cleanup(args[1:])
        if args[0] == "images":
            return _images(args[1:])
        if args[0] == "logs":
            from awf.logs.cli import main as logs

            return logs(args[1:])
        if args[0] == "run":
            args = args[1:]
        elif not (args[0].startswith("-")):
            raise ConfigError(f"unknown command {args[0]!r}; try: awf run -- COMMAND")
        t0 = time.monotonic()
        cfg = parse_run(args)
        if _before_run(cfg):
            return 0
        from awf.host_checks import check_logs_dir

        check_logs_dir(cfg.logs_dir)  # issue 19: a full disk is one line, before anything
        if cfg.backend == "docker":
            from awf.backends.docker import run_docker

            code = run_docker(cfg)
        else:
            code = _run_netns(cfg, t0)
        _RAN.append(True)
        return code
    except AwfError as exc:
        print(f"awf: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
