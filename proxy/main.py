"""`awf-proxy`: parse the flags, bind every listener, serve until SIGTERM/SIGINT, drain, exit 0.

The only place in proxy/ that picks an exit code: a configuration error is one line and exit 2,
before anything listens. It also prints the `awf-proxy listening on` lines. While it serves, the
proxy writes one-line notices on stderr from `server` (a reload, the descriptor limit, each
decision at --log-level debug), `http_connection` (an internal error on one connection) and
`access_log` (its summary); with --log-dir it ends with `awf-proxy: log records dropped: N` if
any were.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from proxy.access_log import DROPPED_LINE, AccessLog
from proxy.clients import ClientTable
from proxy.config import (
    ProxyConfig,
    build_clients,
    build_policy,
    build_rules,
    check_bump_flags,
    parse_argv,
    read_lists,
    static_answers,
)
from proxy.errors import ConfigError
from proxy.policy import Policy
from proxy.resolver import Resolver
from proxy.server import Listener, ProxyServer
from proxy.urlrules import UrlRules

if TYPE_CHECKING:
    from proxy.bump_setup import Bumper
    from proxy.dnsfwd import DnsForwarder
    from proxy.workers import WorkerLink


def _log_path(cfg: ProxyConfig, name: str) -> Path | None:
    if cfg.log_dir is None:
        return None
    try:
        cfg.log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--log-dir: cannot create {str(cfg.log_dir)!r}: {exc.strerror}") from exc
    if not os.access(cfg.log_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"--log-dir: {str(cfg.log_dir)!r} is not writable")
    return cfg.log_dir / name


async def serve(
    cfg: ProxyConfig,
    policy: Policy | None = None,
    *,
    ready: Callable[[list[str]], None] | None = None,
    urlrules: UrlRules | None = None,
    bumper: Bumper | None = None,
    clients: ClientTable | None = None,
    worker: WorkerLink | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT. As one of --workers (`worker`): the listeners are bound
    with SO_REUSEPORT, and readiness and the dropped-records count go to the supervisor."""
    if urlrules is None and policy is None:
        urlrules = build_rules(cfg)
    if bumper is None and cfg.ssl_bump:
        bumper = load_bumper(cfg)
    policy = policy if policy is not None else build_policy(cfg)
    access = AccessLog(_log_path(cfg, "access.jsonl"), stderr_summary=cfg.log_dir is None)
    resolver = Resolver(static=static_answers(cfg), servers=cfg.dns_servers)
    server = ProxyServer(cfg, policy, resolver, access, urlrules=urlrules, bumper=bumper,
                         clients=clients)
    extra: list[Listener] = []
    if cfg.transparent_listen:
        from proxy.transparent import TransparentConnection

        extra.extend(
            ("--transparent-listen", ep, server.factory(TransparentConnection))
            for ep in cfg.transparent_listen
        )
    await server.start(extra, reuse_port=worker is not None)
    dns_servers: list[DnsForwarder] = []
    dns_log: AccessLog | None = None
    if cfg.dns_listen:
        from proxy.dnsfwd import DnsForwarder

        dns_log = AccessLog(_log_path(cfg, "dns.jsonl"), stderr_summary=False)
        for host, port in cfg.dns_listen:
            fwd = DnsForwarder(
                policy_ref=lambda: server.policy,
                resolver_ref=lambda: server.resolver,
                log=dns_log.record,
                max_name_length=cfg.dns_max_name_length,
                subdomain_budget=cfg.dns_subdomain_budget,
            )
            try:
                bound = await fwd.start(host, port, reuse_port=worker is not None)
            except (OSError, ConfigError) as exc:
                await server.close_listeners()
                for started in dns_servers:
                    await started.close()
                if isinstance(exc, ConfigError):
                    raise
                raise ConfigError(
                    f"--dns-listen {host}:{port}: cannot listen: {exc.strerror or exc}"
                ) from exc
            dns_servers.append(fwd)
            server.endpoints.append(f"[{bound[0]}]:{bound[1]}" if ":" in bound[0]
                                    else f"{bound[0]}:{bound[1]}")
            server.add_self(bound[0], bound[1])
    access.start()
    if dns_log is not None:
        dns_log.start()
    # the handlers before the "listening" lines: a supervisor may signal as soon as it reads them
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    for endpoint in server.endpoints if worker is None else ():  # the supervisor says it
        print(f"awf-proxy listening on {endpoint}", file=sys.stderr, flush=True)
    if worker is not None:
        worker.ready()
    if ready is not None:
        ready(server.endpoints)
    try:
        async with asyncio.TaskGroup() as tg:
            upkeep = tg.create_task(server.upkeep())
            await stop.wait()
            await server.drain(cfg.drain_timeout)
            for fwd in dns_servers:
                await fwd.close()
            upkeep.cancel()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await asyncio.to_thread(access.close)
        if dns_log is not None:
            await asyncio.to_thread(dns_log.close)
        dropped = access.dropped + (dns_log.dropped if dns_log is not None else 0)
        if worker is not None:
            worker.dropped(dropped)  # the supervisor prints the sum
        elif dropped and cfg.log_dir is not None:  # for awf's summary; the log dir may be full
            print(f"{DROPPED_LINE} {dropped}", file=sys.stderr, flush=True)
    return 0  # AccessLog.close() printed the summary on stderr when there is no --log-dir


def load_bumper(cfg: ProxyConfig) -> Bumper:
    """--ssl-bump: the CA from --ca-cert/--ca-key, upstream trust with --extra-ca-certs."""
    from proxy.bump_setup import load_ca_paths, make_bumper

    assert cfg.ca_cert is not None  # check_bump_flags
    assert cfg.ca_key is not None
    ca = load_ca_paths(cfg.ca_cert, cfg.ca_key)
    return make_bumper(ca, cfg.extra_ca_certs, cfg.ssl_bump_exclude)


def make_ca(cfg: ProxyConfig) -> int:
    """--make-ca DIR: a CA constrained to the allowed names and the --allow-urls hosts."""
    from proxy.bump_ca import make_ca_files

    assert cfg.make_ca is not None
    rules = build_rules(cfg)
    allow = [*cfg.allow_domains, *read_lists(cfg.allow_domains_file, "--allow-domains-file")]
    block = [*cfg.block_domains, *read_lists(cfg.block_domains_file, "--block-domains-file")]
    names = [*allow, *(rules.host_entries() if rules is not None else ())]
    make_ca_files(cfg.make_ca, names, block=block)
    print(f"awf-proxy: wrote {cfg.make_ca / 'ca.pem'} and {cfg.make_ca / 'ca-key.pem'}",
          file=sys.stderr)
    return 0


def raise_fd_limit(connections: int) -> None:
    """Each client may hold two sockets (client and origin): raise the soft limit to fit the
    connection cap, as far as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * connections + 256
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (OSError, ValueError):
            pass


def main(argv: Sequence[str] | None = None) -> int:
    code = _main(sys.argv[1:] if argv is None else list(argv))
    if argv is None:  # the program itself: leave without the interpreter's own teardown
        quick_exit(code)
    return code


def quick_exit(code: int) -> None:
    """Flush the standard streams and end the process at once. Everything awf-proxy writes is
    written and closed by then (the logs with os.write); freeing every module at exit cost
    about 0.1 s on a busy machine, on the path of every `awf run`'s teardown."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code)


def _main(args: list[str]) -> int:
    try:
        cfg = parse_argv(args)
        check_bump_flags(cfg)
        if cfg.make_ca is not None:
            return make_ca(cfg)
        raise_fd_limit(cfg.max_connections)
        urlrules = build_rules(cfg)  # validate everything before the event loop starts
        policy = urlrules.policy if urlrules is not None else build_policy(cfg)
        clients = build_clients(cfg)
        bumper = load_bumper(cfg) if cfg.ssl_bump else None
        import uvloop

        if cfg.workers > 1:
            from proxy.workers import supervise

            return supervise(cfg, lambda wcfg, link: uvloop.run(
                serve(wcfg, policy, urlrules=urlrules, bumper=bumper, clients=clients,
                      worker=link)))
        return uvloop.run(serve(cfg, policy, urlrules=urlrules, bumper=bumper,
                                clients=clients))
    except ConfigError as exc:
        print(f"awf-proxy: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C during drain
        return 130


if __name__ == "__main__":
    sys.exit(main())
