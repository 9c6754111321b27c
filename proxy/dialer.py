"""Connecting upstream: only to addresses that were checked, within the connect timeout.

`dial` is awaited from a task; `Dialing` is the same dial driven by callbacks, for a tunnel
opened from a protocol callback: it steps `loop.create_connection` itself (no Task, no extra
loop turn before the connect starts) and keeps its deadline as one timer handle.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

from proxy.addr import IPAddress
from proxy.errors import ConnectFailed, ConnectTimeout

P = TypeVar("P", bound=asyncio.BaseProtocol)


async def dial(
    loop: asyncio.AbstractEventLoop,
    addresses: Sequence[IPAddress],
    port: int,
    factory: Callable[[], P],
    *,
    timeout: float,
    name: str,
) -> tuple[asyncio.Transport, P]:
    """Try each checked address in order; ConnectTimeout or ConnectFailed if none answers.

    The deadline is asyncio.timeout's logic with the loop passed in: asyncio.timeout looks up
    the loop and the task with get_running_loop(), which on Python 3.11 is a getpid() system
    call each time, three per dial.
    """
    task = asyncio.current_task(loop)
    if task is None:
        raise RuntimeError("dial() must run in a task")
    cancelling = task.cancelling()
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    timer = loop.call_later(timeout, expire)
    failures: list[str] = []
    try:
        for ip in addresses:
            try:
                transport, protocol = await loop.create_connection(factory, str(ip), port)
            except OSError as exc:
                failures.append(_failure(ip, exc))
                continue
            return transport, protocol
    except asyncio.CancelledError:
        if expired and task.uncancel() <= cancelling:  # our deadline, nobody else's cancel
            raise _timed_out(name, port, timeout) from None
        raise
    finally:
        timer.cancel()
    raise _failed(name, port, failures)


def _timed_out(name: str, port: int, timeout: float) -> ConnectTimeout:
    return ConnectTimeout(f"connecting to {name}:{port} took over {timeout:g} s")


def _failed(name: str, port: int, failures: list[str]) -> ConnectFailed:
    return ConnectFailed(f"cannot connect to {name}:{port}: {'; '.join(failures) or 'no address'}")


TEXT_MEMO = 4096
_TEXT: dict[IPAddress, str] = {}  # addresses as create_connection takes them

_Connecting = Coroutine[Any, None, tuple[asyncio.Transport, Any]]


class Dialing(Generic[P]):
    """`dial` without a task: tries each checked address in order, then calls `connected`
    (transport, protocol) or `failed` (ConnectTimeout, ConnectFailed, or a bug's exception,
    raised inside `failed`'s caller so that a traceback can be printed). Subclasses say what
    happens then. `cancel()` stops it (the half-made connection is closed); nothing is called.

    The coroutine of `loop.create_connection` is stepped here as a Task would step it: sent
    into until it waits on a future, resumed from that future's done callback.
    """

    __slots__ = ("_addresses", "_coro", "_factory", "_failures", "_ip", "_loop", "_name",
                 "_next", "_port", "_timeout", "_timer", "_waiter")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, addresses: Sequence[IPAddress], port: int,
        factory: Callable[[], P], *, timeout: float, name: str,
    ) -> None:
        self._loop = loop
        self._addresses = addresses
        self._port = port
        self._factory = factory
        self._timeout = timeout
        self._name = name
        self._next = 0
        self._failures: list[str] = []
        self._coro: _Connecting | None = None
        self._ip: IPAddress | None = None
        self._waiter: asyncio.Future[Any] | None = None
        self._timer: asyncio.TimerHandle | None = loop.call_later(timeout, self._expire)

    def start(self) -> None:
        """Begin (separate from __init__ so that a subclass is complete first)."""
        self._try_next()

    def connected(self, transport: asyncio.Transport, protocol: P) -> None:
        raise NotImplementedError

    def failed(self, exc: Exception) -> None:
        raise NotImplementedError

    def cancel(self) -> None:
        """Stop dialling: the connection being made is closed; neither callback runs."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._abandon()

    def _abandon(self) -> None:
        coro, self._coro = self._coro, None
        waiter, self._waiter = self._waiter, None
        if coro is None:
            return
        if waiter is not None:  # as Task.cancel: the future first, then the coroutine
            waiter.remove_done_callback(self._wake)
            waiter.cancel()
        try:
            coro.throw(asyncio.CancelledError())  # create_connection closes its transport
        except (asyncio.CancelledError, StopIteration, OSError):
            pass
        else:  # it went on waiting after a cancel: close it
            coro.close()

    def _expire(self) -> None:
        self._timer = None
        if self._coro is None:
            return
        self._abandon()
        self.failed(_timed_out(self._name, self._port, self._timeout))

    def _try_next(self) -> None:
        while self._next < len(self._addresses):
            ip = self._addresses[self._next]
            self._next += 1
            self._ip = ip
            text = _TEXT.get(ip)
            if text is None:  # str() of an ipaddress object is Python code: a few µs
                if len(_TEXT) >= TEXT_MEMO:
                    _TEXT.clear()
                text = _TEXT[ip] = str(ip)
            self._coro = self._loop.create_connection(self._factory, text, self._port)
            if self._step():
                return
        self._done()
        self.failed(_failed(self._name, self._port, self._failures))

    def _wake(self, fut: asyncio.Future[Any] | None) -> None:
        self._waiter = None
        if self._coro is not None and not self._step():
            self._try_next()

    def _step(self) -> bool:
        """Run the coroutine to its next wait; False if this address failed."""
        coro = self._coro
        assert coro is not None
        try:
            waiting = coro.send(None)
        except StopIteration as stop:
            self._coro = None
            self._done()
            transport, protocol = stop.value
            try:
                self.connected(transport, protocol)
            except Exception as exc:  # a bug: failed() reports it, inside this except
                self.failed(exc)
            return True
        except OSError as exc:
            self._coro = None
            assert self._ip is not None
            self._failures.append(_failure(self._ip, exc))
            return False
        except Exception as exc:  # a bug: reported by failed(), which runs inside this except
            self._coro = None
            self._done()
            self.failed(exc)
            return True
        if isinstance(waiting, asyncio.Future):
            waiting._asyncio_future_blocking = False
            self._waiter = waiting
            waiting.add_done_callback(self._wake)
        else:  # a bare yield: go on at the next turn of the loop
            self._loop.call_soon(self._wake, None)
        return True

    def _done(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()


NO_ROUTE = (errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)


def _failure(ip: IPAddress, exc: OSError) -> str:
    """One address's failure, as logged (`connect_failed`'s note): an IPv6 address with no
    route says so, since that is a host (or a Docker backend) without IPv6 egress, not a
    broken origin."""
    text = exc.strerror or errno.errorcode.get(exc.errno or 0) or str(exc)
    if ip.version == 6 and exc.errno in NO_ROUTE:
        return f"{ip}: no IPv6 route from the proxy, this host has no IPv6 egress ({text})"
    return f"{ip}: {text}"
