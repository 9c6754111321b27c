"""Run awf-proxy as a real process, as users do, and wait for its `listening` lines."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal as _signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

READY = "awf-proxy listening on "


def count_listeners(args: Sequence[str]) -> int:
    flags = ("--listen", "--transparent-listen", "--dns-listen")
    n = sum(1 for a in args if a in flags or a.split("=", 1)[0] in flags)
    explicit = any(a == "--listen" or a.startswith("--listen=") for a in args)
    return n + (0 if explicit else 1)


class ProxyProc:
    def __init__(self, proc: asyncio.subprocess.Process, endpoints: list[str]) -> None:
        self.proc = proc
        self.endpoints = endpoints
        self.stderr_lines: list[str] = []
        self._reader: asyncio.Task[None] | None = None
        self.line_added = asyncio.Event()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def port(self) -> int:
        return int(self.endpoints[0].rsplit(":", 1)[1])

    def endpoint(self, i: int = 0) -> tuple[str, int]:
        host, port = self.endpoints[i].rsplit(":", 1)
        return host.strip("[]"), int(port)

    @classmethod
    async def start(cls, *args: str, timeout: float = 15.0,
                    preexec_fn: Callable[[], object] | None = None) -> ProxyProc:
        argv = list(args)
        if not any(a == "--listen" or a.startswith("--listen=") for a in argv):
            argv += ["--listen", "127.0.0.1:0"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy.main", *argv,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=preexec_fn,
        )
        assert proc.stderr is not None
        want = count_listeners(argv)
        endpoints: list[str] = []
        early: list[str] = []
        try:
            async with asyncio.timeout(timeout):
                while len(endpoints) < want:
                    raw = await proc.stderr.readline()
                    if not raw:
                        await proc.wait()
                        raise RuntimeError(
                            f"awf-proxy exited {proc.returncode} before listening: {''.join(early)}"
                        )
                    line = raw.decode()
                    early.append(line)
                    if line.startswith(READY):
                        endpoints.append(line[len(READY):].strip())
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        self = cls(proc, endpoints)
        self.stderr_lines.extend(early)
        self._reader = asyncio.get_running_loop().create_task(self._read_stderr())
        return self

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while True:
            raw = await self.proc.stderr.readline()
            if not raw:
                return
            self.stderr_lines.append(raw.decode())
            self.line_added.set()

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    async def wait_stderr(self, text: str, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while text not in self.stderr:
                self.line_added.clear()
                await self.line_added.wait()

    def signal(self, sig: int) -> None:
        if self.proc.returncode is None:
            os.kill(self.proc.pid, sig)

    async def stop(self, sig: int = _signal.SIGTERM, timeout: float = 15.0) -> int:
        self.signal(sig)
        try:
            async with asyncio.timeout(timeout):
                code = await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._reader
        return code

    def rss_peak_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM")


@contextlib.asynccontextmanager
async def running_proxy(*args: str) -> AsyncIterator[ProxyProc]:
    p = await ProxyProc.start(*args)
    try:
        yield p
    finally:
        if p.proc.returncode is None:
            await p.stop()
