"""A CONNECT still dialling its origin when the proxy is told to stop: past --drain-timeout the
client is aborted, the dial is stopped with it (not left to --connect-timeout), the proxy exits
cleanly and logs nothing for it. The tunnel's dial runs without a task (`tunnel.Opening`); this
is its cancel path. (While the dial runs the client's reading is paused, so that a FIN sent
right after the CONNECT is passed on after the join: a client leaving is noticed then.)

Then `dialer.Dialing` itself, on uvloop and on asyncio's loop: the next address after a
refusal, every refused address named, the deadline, and a cancel that closes its socket."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
import uvloop

from proxy.addr import IPAddress
from proxy.dialer import Dialing
from proxy.errors import ConnectFailed, ConnectTimeout
from tests.integration.test_explicit import ORIGIN, policy_args
from tests.support.client import connect, roundtrip
from tests.support.origins import echo_origin
from tests.support.proxyproc import ProxyProc, running_proxy

pytestmark = pytest.mark.integration


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_a_drain_stops_a_dial_in_progress(tmp_path: Path) -> None:
    # a listener whose accept queue is full: further SYNs are dropped, the connect stalls
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    p = await ProxyProc.start(*policy_args(port, extra=("--connect-timeout", "60")),
                              "--drain-timeout", "1", "--log-dir", str(tmp_path))
    try:
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            try:
                f.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(f)
        await asyncio.sleep(0.2)
        base = open_fds(p.pid)
        clients = []
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
            writer.write(connect(f"{ORIGIN}:{port}"))
            clients.append((reader, writer))
        async with asyncio.timeout(10):
            while open_fds(p.pid) < base + 6:  # each client's socket and its dial's
                await asyncio.sleep(0.02)
        began = time.monotonic()
        code = await p.stop(timeout=30)
        took = time.monotonic() - began
        for reader, writer in clients:
            try:
                got = await reader.read()
            except ConnectionResetError:
                got = b""
            assert got == b""  # aborted, nothing answered
            writer.close()
    finally:
        for f in fillers:
            f.close()
        listener.close()
        if p.proc.returncode is None:
            await p.stop()
    assert code == 0
    assert took < 20  # the drain's 1 s and the exit, not the 60 s connect timeout
    log = tmp_path / "access.jsonl"
    assert not log.exists() or log.read_text() == ""
    assert "Traceback" not in p.stderr


# --- dialer.Dialing itself, on uvloop (as the proxy runs) and on asyncio's own loop -----------


class Recorder(Dialing[asyncio.Protocol]):
    """A Dialing that records its outcome."""

    __slots__ = ("done", "outcome")

    def __init__(self, loop: asyncio.AbstractEventLoop, addresses: list[IPAddress], port: int,
                 timeout: float) -> None:
        super().__init__(loop, addresses, port, asyncio.Protocol, timeout=timeout,
                         name="dial.test")
        self.outcome: list[object] = []
        self.done = loop.create_future()

    def connected(self, transport: asyncio.Transport, protocol: asyncio.Protocol) -> None:
        self.outcome.append(transport)
        self.done.set_result(None)

    def failed(self, exc: Exception) -> None:
        self.outcome.append(exc)
        self.done.set_result(None)


def run_on(kind: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if kind == "uvloop":
        uvloop.run(main())
    else:
        asyncio.run(main())


LOOPS = pytest.mark.parametrize("kind", ["uvloop", "asyncio"])


def stalled_listener() -> tuple[socket.socket, list[socket.socket]]:
    """A listener whose accept queue is full: a connect to it stalls."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(4):
        f = socket.socket()
        f.setblocking(False)
        try:
            f.connect(listener.getsockname())
        except BlockingIOError:
            pass
        fillers.append(f)
    return listener, fillers


@LOOPS
def test_dialing_tries_the_next_address_after_a_refusal(kind: str) -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        d = Recorder(asyncio.get_running_loop(),
                     [ip_address("127.0.0.2"), ip_address("127.0.0.1")], port, 5)
        d.start()
        await asyncio.wait_for(d.done, 5)
        [t] = d.outcome
        assert not isinstance(t, Exception)
        assert t.get_extra_info("peername") == ("127.0.0.1", port)  # type: ignore[attr-defined]
        t.close()  # type: ignore[attr-defined]
        server.close()

    run_on(kind, main)


@LOOPS
def test_a_bug_in_connected_reaches_failed(kind: str) -> None:
    class Buggy(Recorder):
        __slots__ = ()

        def connected(self, transport: asyncio.Transport, protocol: asyncio.Protocol) -> None:
            transport.close()
            raise ZeroDivisionError("a bug")

    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        d = Buggy(asyncio.get_running_loop(), [ip_address("127.0.0.1")], port, 5)
        d.start()
        await asyncio.wait_for(d.done, 5)
        [exc] = d.outcome
        assert isinstance(exc, ZeroDivisionError)
        server.close()

    run_on(kind, main)


@LOOPS
def test_dialing_names_every_refused_address(kind: str) -> None:
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main() -> None:
        d = Recorder(asyncio.get_running_loop(),
                     [ip_address("127.0.0.2"), ip_address("127.0.0.1")], port, 5)
        d.start()
        await asyncio.wait_for(d.done, 5)
        [exc] = d.outcome
        assert isinstance(exc, ConnectFailed)
        assert f"dial.test:{port}" in str(exc)
        assert "127.0.0.2: " in str(exc)
        assert "127.0.0.1: " in str(exc)

    run_on(kind, main)


@LOOPS
def test_dialing_times_out_and_closes_its_socket(kind: str) -> None:
    listener, fillers = stalled_listener()
    port = listener.getsockname()[1]

    async def main() -> None:
        d = Recorder(asyncio.get_running_loop(), [ip_address("127.0.0.1")], port, 0.3)
        d.start()
        dialling = open_fds(os.getpid())  # the dial's socket among them
        await asyncio.wait_for(d.done, 5)
        [exc] = d.outcome
        assert isinstance(exc, ConnectTimeout)
        await asyncio.sleep(0.05)  # the transport's close runs on the loop
        assert open_fds(os.getpid()) == dialling - 1

    try:
        run_on(kind, main)
    finally:
        for f in fillers:
            f.close()
        listener.close()


@LOOPS
def test_a_cancelled_dialing_calls_nothing_and_closes_its_socket(kind: str) -> None:
    listener, fillers = stalled_listener()
    port = listener.getsockname()[1]

    async def main() -> None:
        d = Recorder(asyncio.get_running_loop(), [ip_address("127.0.0.1")], port, 0.3)
        d.start()
        await asyncio.sleep(0.1)
        dialling = open_fds(os.getpid())  # the dial's socket among them
        d.cancel()
        await asyncio.sleep(0.5)  # past the deadline: the timer was cancelled too
        assert d.outcome == []
        assert open_fds(os.getpid()) == dialling - 1

    try:
        run_on(kind, main)
    finally:
        for f in fillers:
            f.close()
        listener.close()


async def connect_status(proxy_port: int, authority: str) -> bytes:
    """The status line a CONNECT gets (a tunnel's is not followed by a close)."""
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        try:
            writer.write(connect(authority))
            head = await reader.readuntil(b"\r\n\r\n")
            return head.split(b"\r\n", 1)[0]
        finally:
            writer.close()


async def test_a_reload_rechecks_the_addresses_of_a_known_name(tmp_path: Path) -> None:
    """The Task-less dial checks a name's known addresses once per (answer, policy): a SIGHUP
    that drops the range they were allowed by must refuse them at the next CONNECT."""
    config = tmp_path / "proxy.yaml"
    config.write_text("allow_range: [127.0.0.1/32]\n")
    async with echo_origin() as o, running_proxy(
        "--config", str(config), "--allow-domains", ORIGIN, "--resolve", f"{ORIGIN}=127.0.0.1",
        "--allow-ports", str(o.port), "--log-dir", str(tmp_path),
    ) as p:
        target = f"{ORIGIN}:{o.port}"
        for _ in range(2):  # the second one is answered from the memo
            assert await connect_status(p.port, target) == b"HTTP/1.1 200 Connection established"
        config.write_text("allow_range: []\n")
        p.signal(signal.SIGHUP)
        await p.wait_stderr("policy reloaded")
        denied = await roundtrip(p.port, connect(target))
        assert (denied.status, denied.reason) == (403, "denied_address")
        config.write_text("allow_range: [127.0.0.1/32]\n")
        p.signal(signal.SIGHUP)
        async with asyncio.timeout(10):
            while p.stderr.count("policy reloaded") < 2:
                await asyncio.sleep(0.05)
        assert await connect_status(p.port, target) == b"HTTP/1.1 200 Connection established"
