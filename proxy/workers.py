"""`awf-proxy --workers N`: N processes serve the same listeners (SO_REUSEPORT) under a supervisor.

The supervisor (the process started) holds each listener's port first (a placeholder socket with
SO_REUSEPORT, bound but never listening for TCP, closed once the workers listen; port 0 becomes
one concrete port for all), creates the log files, then forks the workers before any thread or
event loop exists. Each worker binds its own sockets with SO_REUSEPORT, so the kernel spreads new
connections (and DNS datagrams) over them. A worker tells the supervisor on its own pipe when it
listens (`R`) and, at its end, how many log records it dropped (`D<n>`). The supervisor prints the
`awf-proxy listening on` lines once every worker listens, forwards SIGHUP (each worker reloads),
and on SIGTERM/SIGINT forwards the signal and waits for every worker to drain; its exit status
is the first failing worker's, else 0. A worker that ends on its own ends the others: the proxy
fails closed as a whole (exit 1).

The log files are shared: each worker's writer appends whole lines, one write(2) per batch, to
its own O_APPEND descriptor. Linux holds the file's inode lock for the length of a write(2) to
a regular file, so the batches of two workers never interleave and no line is torn; a short
write happens only when the disk is full (docs/proxy.md §8.4).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from proxy.access_log import DROPPED_LINE
from proxy.config import Endpoint, ProxyConfig
from proxy.errors import ConfigError

LOG_FILES = ("access.jsonl", "dns.jsonl")
READY_TIMEOUT = 60.0
PR_SET_PDEATHSIG = 1


@dataclass(slots=True)
class WorkerLink:
    """A worker's end of its pipe to the supervisor."""

    fd: int

    def ready(self) -> None:
        self._send(b"R")

    def dropped(self, count: int) -> None:
        self._send(f"D{count}\n".encode())

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the supervisor is gone: nothing to tell
            os.write(self.fd, data)


# --- port 0 -----------------------------------------------------------------------------------


def _placeholder(host: str, port: int, kind: int) -> socket.socket:
    family, _, _, _, addr = socket.getaddrinfo(host, port, type=kind,
                                               flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio binds
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    return sock


def _fix(host: str, port: int, kinds: tuple[int, ...], flag: str,
         held: list[socket.socket]) -> Endpoint:
    """(host, port) with port 0 replaced by one free for every socket kind in `kinds`; the
    placeholders that hold it are appended to `held`."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    for _attempt in range(20 if port == 0 else 1):
        mine: list[socket.socket] = []
        try:
            first = _placeholder(host, port, kinds[0])
            mine.append(first)
            chosen = int(first.getsockname()[1])
            for kind in kinds[1:]:
                mine.append(_placeholder(host, chosen, kind))
        except OSError as exc:
            for sock in mine:
                sock.close()
            if port == 0 and exc.errno == errno.EADDRINUSE:
                continue
            raise ConfigError(f"{flag} {where}: cannot listen: {exc.strerror or exc}") from exc
        held.extend(mine)
        return host, chosen
    raise ConfigError(f"{flag} {where}: no port free for every worker")


def fixed_ports(cfg: ProxyConfig, held: list[socket.socket]) -> ProxyConfig:
    """`cfg` with each port-0 listener given one concrete port, so that every worker binds the
    same one; the placeholder sockets holding the ports go to `held` (close them once the
    workers listen). A port taken by another process is one ConfigError here, before any
    worker exists."""
    tcp, udp = socket.SOCK_STREAM, socket.SOCK_DGRAM

    def fix(eps: tuple[Endpoint, ...], kinds: tuple[int, ...], flag: str
            ) -> tuple[Endpoint, ...]:
        return tuple(_fix(h, p, kinds, flag, held) for h, p in eps)

    return replace(cfg, listen=fix(cfg.listen, (tcp,), "--listen"),
                   transparent_listen=fix(cfg.transparent_listen, (tcp,),
                                          "--transparent-listen"),
                   dns_listen=fix(cfg.dns_listen, (udp, tcp), "--dns-listen"))


def create_logs(log_dir: Path | None, names: tuple[str, ...]) -> None:
    """Create the log files (0644) before the workers open them, so that no worker takes a
    line another is writing for a partial record left by a crash."""
    if log_dir is None:
        return
    for name in names:
        path = log_dir / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            continue
        except OSError as exc:
            raise ConfigError(f"cannot open log file {str(path)!r}: {exc.strerror}; "
                              "check --log-dir") from exc
        os.fchmod(fd, 0o644)
        os.close(fd)


# --- the supervisor ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Worker:
    pid: int
    fd: int
    ready: bool = False
    dropped: int = 0
    status: int | None = None
    buf: bytes = b""


def supervise(cfg: ProxyConfig, serve: Callable[[ProxyConfig, WorkerLink], int]) -> int:
    """Run `serve(cfg, link)` in `cfg.workers` forked processes; the exit status."""
    held: list[socket.socket] = []
    try:
        cfg = fixed_ports(cfg, held)
        if cfg.log_dir is not None:
            cfg.log_dir.mkdir(parents=True, exist_ok=True)
        create_logs(cfg.log_dir, LOG_FILES)
    except OSError as exc:
        for sock in held:
            sock.close()
        raise ConfigError(f"--log-dir: {exc.strerror or exc}") from exc
    except ConfigError:
        for sock in held:
            sock.close()
        raise
    caught = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    old = {s: signal.getsignal(s) for s in caught}
    received: list[int] = []
    for s in caught:
        signal.signal(s, lambda signum, frame: received.append(signum))
    workers: list[_Worker] = []
    try:
        for _ in range(cfg.workers):
            workers.append(_fork(cfg, serve, workers, held))
        return _watch(cfg, workers, held, received)
    finally:
        for sock in held:
            sock.close()
        for w in workers:
            if w.status is None:
                _signal(w, signal.SIGKILL)
                _reap(w, block=True)
            with contextlib.suppress(OSError):
                os.close(w.fd)
        for s, h in old.items():
            signal.signal(s, h)


def _fork(cfg: ProxyConfig, serve: Callable[[ProxyConfig, WorkerLink], int],
          siblings: list[_Worker], held: list[socket.socket]) -> _Worker:
    r, w = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the worker
        code = 70
        try:
            os.close(r)
            for sib in siblings:
                os.close(sib.fd)
            for sock in held:
                sock.close()
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(s, signal.SIG_DFL)
            _die_with(parent)
            code = serve(cfg, WorkerLink(w))
        except BaseException as exc:  # never back into the supervisor's stack
            print(f"awf-proxy: worker {os.getpid()}: {exc}", file=sys.stderr, flush=True)
            code = 2 if isinstance(exc, ConfigError) else 70
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    os.close(w)
    os.set_blocking(r, False)
    return _Worker(pid, r)


def _die_with(parent: int) -> None:
    """SIGTERM when the supervisor dies, even by SIGKILL: no worker outlives it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # it died before the prctl
        os._exit(1)


def _watch(cfg: ProxyConfig, workers: list[_Worker], held: list[socket.socket],
           received: list[int]) -> int:
    announced = False
    stopping = False
    failed: int | None = None
    started = time.monotonic()
    while any(w.status is None for w in workers):
        fds = [w.fd for w in workers if w.fd >= 0]
        with contextlib.suppress(InterruptedError):
            readable, _, _ = select.select(fds, [], [], 0.05)
            for w in workers:
                if w.fd in readable:
                    _read(w)
        for w in workers:
            if w.status is None:
                _reap(w, block=False)
        while received:
            signum = received.pop(0)
            if signum == signal.SIGHUP:
                for w in workers:
                    _signal(w, signal.SIGHUP)
            else:
                stopping = True
                for w in workers:
                    _signal(w, signal.SIGTERM)
        if not announced and all(w.ready for w in workers):
            for sock in held:  # every worker listens: the ports stay taken by them
                sock.close()
            held.clear()
            announced = True
            for endpoint in _endpoints(cfg):
                print(f"awf-proxy listening on {endpoint}", file=sys.stderr, flush=True)
        ended = [w for w in workers if w.status is not None]
        if ended and not stopping:
            # a worker ended on its own (a bind failed, it crashed): the proxy as a whole ends
            stopping = True
            bad = next((w.status for w in ended if w.status), 1)
            failed = bad if not announced else 1
            for w in workers:
                _signal(w, signal.SIGTERM)
        if not announced and not stopping and time.monotonic() - started > READY_TIMEOUT:
            print(f"awf-proxy: the workers were not listening within {READY_TIMEOUT:g} s",
                  file=sys.stderr, flush=True)
            stopping, failed = True, 1
            for w in workers:
                _signal(w, signal.SIGTERM)
    for w in workers:
        _read(w)
    dropped = sum(w.dropped for w in workers)
    if dropped and cfg.log_dir is not None:
        print(f"{DROPPED_LINE} {dropped}", file=sys.stderr, flush=True)
    if failed is not None:
        return failed
    return next((w.status for w in workers if w.status), 0)


def _endpoints(cfg: ProxyConfig) -> Iterator[str]:
    """What each listener is announced as: the same text a single process prints."""
    for host, port in (*cfg.listen, *cfg.transparent_listen, *cfg.dns_listen):
        yield f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _read(w: _Worker) -> None:
    if w.fd < 0:
        return
    while True:
        try:
            data = os.read(w.fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            os.close(w.fd)
            w.fd = -1
            return
        w.buf += data
        while w.buf:
            if w.buf[:1] == b"R":
                w.ready, w.buf = True, w.buf[1:]
            elif w.buf[:1] == b"D" and b"\n" in w.buf:
                line, _, w.buf = w.buf.partition(b"\n")
                with contextlib.suppress(ValueError):
                    w.dropped = int(line[1:])
            else:
                break


def _reap(w: _Worker, *, block: bool) -> None:
    try:
        pid, status = os.waitpid(w.pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        w.status = w.status if w.status is not None else 1
        return
    if pid:
        w.status = os.waitstatus_to_exitcode(status)
        if w.status < 0:  # killed by a signal
            w.status = 128 - w.status


def _signal(w: _Worker, sig: int) -> None:
    if w.status is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(w.pid, sig)
