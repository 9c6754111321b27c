"""What `awf run --backend docker` needs from the engine beyond `DockerDriver`: the subnets
Docker already uses, following a container's output as two streams, and one exec.

Kept apart from containers/driver.py (another owner) as a subclass; same conventions: every
SDK failure becomes a DockerError naming the object and the fix.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from ipaddress import ip_network

import docker
import docker.errors

from containers.driver import DockerDriver, _translated
from netfilter.ruleset import IPNetwork

STDOUT, STDERR = 1, 2


class RunDriver(DockerDriver):
    @classmethod
    def connect(cls, timeout: int = 60) -> RunDriver:
        base = DockerDriver.from_env(timeout=timeout)
        return cls(base._client)

    def network_subnets(self) -> list[IPNetwork]:
        """Every subnet of every Docker network (user-defined and default)."""
        with _translated("cannot list Docker networks", "is dockerd running?"):
            found = self._api.networks()
        nets: list[IPNetwork] = []
        for n in found:
            for pool in ((n.get("IPAM") or {}).get("Config") or []):
                subnet = pool.get("Subnet")
                if subnet:
                    try:
                        nets.append(ip_network(subnet, strict=False))
                    except ValueError:
                        pass
        return nets

    def attach(self, container: str, *, stdin: bool = False) -> object:
        """A socket carrying the created container's stdout and stderr (and, with `stdin`,
        taking its input); attach before start, so nothing the command prints is missed."""
        params = {"stdout": 1, "stderr": 1, "stream": 1}
        if stdin:
            params["stdin"] = 1
        with _translated(f"cannot attach to container {container!r}", "is it removed?"):
            sock = self._api.attach_socket(container, params=params)
        raw = getattr(sock, "_sock", sock)
        settimeout = getattr(raw, "settimeout", None)
        if settimeout is not None:
            settimeout(None)  # the command may be silent for a long time
        return sock

    def frames(self, sock: object, *, tty: bool = False) -> Iterator[tuple[int, bytes]]:
        """(STDOUT|STDERR, bytes) frames from an `attach` socket until the container stops.
        With a TTY the stream is raw (no frame headers), all of it STDOUT."""
        raw = getattr(sock, "_sock", sock)
        try:
            while tty:
                chunk = raw.recv(65536)  # type: ignore[attr-defined]
                if not chunk:
                    return
                yield STDOUT, chunk
            while True:
                head = _read_exact(raw, 8)
                if head is None:
                    return
                kind, size = head[0], int.from_bytes(head[4:8], "big")
                body = _read_exact(raw, size) if size else b""
                if body is None:
                    return
                yield (STDERR if kind == 2 else STDOUT), body
        finally:
            close = getattr(sock, "close", None)
            if close is not None:
                try:
                    close()
                except OSError:
                    pass

    @staticmethod
    def send(sock: object, data: bytes) -> None:
        """Input for a container attached with stdin; empty data half-closes it (EOF)."""
        raw = getattr(sock, "_sock", sock)
        if data:
            raw.sendall(data)  # type: ignore[attr-defined]
        else:
            raw.shutdown(socket.SHUT_WR)  # type: ignore[attr-defined]

    def resize(self, container: str, rows: int, cols: int) -> None:
        with _translated(f"cannot resize the TTY of container {container!r}", "is it running?"):
            self._api.resize(container, height=rows, width=cols)

    def exec_run(self, container: str, argv: list[str], timeout: int = 10) -> tuple[int, str]:
        """Run argv in the running container; (exit code, stdout+stderr)."""
        with _translated(f"cannot exec in container {container!r}", "is it running?"):
            made = self._api.exec_create(container, argv, stdout=True, stderr=True)
            out = self._api.exec_start(made["Id"])
            code = self._api.exec_inspect(made["Id"]).get("ExitCode")
        text = out.decode(errors="replace") if isinstance(out, bytes) else str(out)
        return (int(code) if code is not None else -1), text

    def state(self, container: str) -> dict[str, object] | None:
        """The container's State, or None if it is gone."""
        with _translated(f"cannot inspect container {container!r}", "is dockerd running?"):
            try:
                info = self._api.inspect_container(container)
            except docker.errors.NotFound:
                return None
        state = info.get("State")
        return dict(state) if isinstance(state, dict) else None


def _read_exact(sock: object, n: int) -> bytes | None:
    buf = bytearray()
    recv = getattr(sock, "recv", None)
    while len(buf) < n:
        chunk = (recv(n - len(buf)) if recv is not None
                 else os.read(sock.fileno(), n - len(buf)))  # type: ignore[attr-defined]
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)
