"""A running container's streams and terminal: its output to ours, ours to it, its exit, its stop.

The Docker backend's agent is attached before it starts; these are the pieces of that which
need only the driver and the container's name.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from types import FrameType

from containers.driver import STDERR, DockerDriver
from proxy.errors import AwfError


def pump(driver: DockerDriver, sock: object, tty: bool = False) -> None:
    """The container's stdout and stderr, byte for byte, to ours."""
    try:
        for kind, data in driver.frames(sock, tty=tty):
            out = sys.stderr.buffer if kind == STDERR else sys.stdout.buffer
            out.write(data)
            out.flush()
    except (OSError, ValueError, AwfError):
        pass


def output_thread(driver: DockerDriver, sock: object, tty: bool) -> threading.Thread:
    """`pump` in a started daemon thread."""
    thread = threading.Thread(target=pump, args=(driver, sock, tty), name="agent-output",
                              daemon=True)
    thread.start()
    return thread


def forward_input(driver: DockerDriver, sock: object) -> None:
    """Our stdin to the command's, then EOF (the container is created with StdinOnce, so the
    half-close closes the command's stdin)."""
    fd = 0

    def forward() -> None:
        try:
            while data := os.read(fd, 65536):
                driver.send(sock, data)
        except OSError:
            pass
        try:
            driver.send(sock, b"")
        except OSError:
            pass

    threading.Thread(target=forward, name="agent-input", daemon=True).start()


@contextlib.contextmanager
def terminal(driver: DockerDriver, container: str, sock: object
             ) -> Iterator[Callable[[], None]]:
    """--tty: our terminal in raw mode, keystrokes to the command, SIGWINCH to its TTY."""
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd) if os.isatty(fd) else None

    def resize(signum: int = 0, frame: FrameType | None = None) -> None:
        try:
            cols, rows = os.get_terminal_size(fd)
            driver.resize(container, rows, cols)
        except (OSError, AwfError):
            pass

    if saved is not None:
        tty.setraw(fd)
    old = signal.signal(signal.SIGWINCH, resize)
    forward_input(driver, sock)
    try:
        yield resize  # called once the container runs
    finally:
        signal.signal(signal.SIGWINCH, old)
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def stop(driver: DockerDriver, name: str, grace: float) -> None:
    """SIGTERM (the init passes it on), then SIGKILL after `grace` seconds."""
    try:
        if not driver.kill(name, "SIGTERM"):
            return
        try:
            driver.wait(name, timeout=grace)
        except TimeoutError:
            driver.kill(name, "SIGKILL")
            driver.wait(name, timeout=10)
    except (AwfError, TimeoutError):
        pass


def exits(driver: DockerDriver, names: Iterable[str],
          lost: Callable[[str, Exception], Exception]) -> Callable[[str, float], int | None]:
    """Wait for each container in a thread; the answer is `exited(name, timeout)`: its status,
    None while it runs, or `lost(name, error)` raised when waiting for it failed."""
    got: dict[str, queue.Queue[int | Exception]] = {name: queue.Queue() for name in names}

    def waiter(name: str) -> None:
        try:
            got[name].put(driver.wait(name))
        except Exception as exc:  # handed to the main thread
            got[name].put(exc)

    for name in got:
        threading.Thread(target=waiter, args=(name,), daemon=True).start()

    def exited(name: str, timeout: float) -> int | None:
        try:
            result = got[name].get(timeout=timeout)
        except queue.Empty:
            return None
        got[name].put(result)  # it stays known
        if isinstance(result, Exception):
            raise lost(name, result)
        return result

    return exited
