"""`awf-api-proxy`: read the flags and the keys file, bind every listener, serve until SIGTERM.

The only place in proxy/api/ that prints to the user or picks an exit code: a configuration
error is one line and exit 2, before anything listens. Once every listener is bound it prints
one `awf-api-proxy listening on HOST:PORT (provider)` line per listener, then
`awf-api-proxy ready`. Nothing per request goes to stderr: that is what `--log-dir` is for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from proxy.access_log import AccessLog
from proxy.api.config import ApiProxyConfig, load_keys, parse_argv
from proxy.config import format_endpoint
from proxy.errors import ConfigError

READY = "awf-api-proxy ready"


def _log_path(log_dir: Path | None) -> Path | None:
    if log_dir is None:
        return None
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--log-dir: cannot create {str(log_dir)!r}: {exc.strerror}") from exc
    if not os.access(log_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"--log-dir: {str(log_dir)!r} is not writable")
    return log_dir / "api-proxy.jsonl"


async def serve(cfg: ApiProxyConfig, *, ready: Callable[[], None] | None = None) -> int:
    from proxy.api.service import ApiProxy, QuietClientErrors  # aiohttp: once flags are good

    logging.getLogger("aiohttp.server").addFilter(QuietClientErrors())

    log = AccessLog(_log_path(cfg.log_dir), stderr_summary=False)
    log.start()
    api = ApiProxy(cfg, log)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # installed before `ready` (a stop may follow at once) and kept until the log is flushed, so
    # a repeated SIGTERM during the shutdown grace cannot cut the last records
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            bound = await api.start()
        except OSError as exc:
            raise ConfigError(
                f"--listen-host/--port-base: cannot listen on {cfg.listen_host}: "
                f"{exc.strerror or exc}; is another awf-api-proxy running?"
            ) from exc
        for host, port, name in bound:
            print(f"awf-api-proxy listening on {format_endpoint(host, port)} ({name})",
                  file=sys.stderr, flush=True)
        print(READY, file=sys.stderr, flush=True)
        if ready is not None:
            ready()
        await stop.wait()
    finally:
        try:
            await api.close()
            await asyncio.to_thread(log.close)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        cfg, keys_file = parse_argv(args)
        if keys_file is not None:
            cfg = replace(cfg, keys=load_keys(keys_file))
        import uvloop

        return int(uvloop.run(serve(cfg)))
    except ConfigError as exc:
        print(f"awf-api-proxy: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
