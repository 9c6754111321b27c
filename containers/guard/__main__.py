"""`python -m containers.guard --listen PATH --upstream SOCKET --config JSON`.

Prints `awf-guard listening on PATH` once the socket accepts, one line per decision on stderr,
and exits 0 on SIGTERM or SIGINT; a bad config is one line `awf-guard: ...` and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from containers.guard.policy import GuardConfig
from containers.guard.server import Guard
from proxy.errors import ConfigError


async def _run(listen: str, upstream: str, cfg: GuardConfig) -> int:
    guard = Guard(listen, upstream, cfg)
    await guard.start()
    print(f"awf-guard listening on {listen}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await guard.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m containers.guard",
                                     description="awf's Docker API guard")
    parser.add_argument("--listen", required=True, help="unix socket to create (mode 0666)")
    parser.add_argument("--upstream", default="/var/run/docker.sock",
                        help="the engine's unix socket")
    parser.add_argument("--config", required=True, help="the GuardConfig as JSON")
    args = parser.parse_args(argv)
    try:
        cfg = GuardConfig.from_json(args.config)
    except ConfigError as exc:
        print(f"awf-guard: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        return asyncio.run(_run(args.listen, args.upstream, cfg))
    except OSError as exc:
        print(f"awf-guard: cannot listen on {args.listen}: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
