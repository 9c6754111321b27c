"""The Docker driver: the only module of awf that imports `docker` (the SDK).

Everything awf does with the Engine goes through `DockerDriver`: images, networks, containers,
and what a run needs besides (the subnets Docker already uses, the command's streams through an
attach socket, one exec).

Thin and synchronous: each method is one or two Engine API calls, with every failure translated
into a DockerError naming the object and the fix. Callers on the event loop run it through
asyncio.to_thread. It uses the SDK's low-level APIClient so what reaches the Engine is exactly
what the ContainerSpec says (argv stays a JSON list, never a shell string).

Cleanup methods (remove, remove_network, kill) are idempotent: an object that is already gone is
not an error, so a second cleanup after a crash succeeds.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types
import requests.exceptions

from containers.errors import DockerError
from containers.spec import ContainerSpec, MountKind

DEFAULT_HOST = "unix:///var/run/docker.sock"


def _no_config_file(config_path: object = None) -> None:
    return None


def _ignore_docker_cli_config() -> None:
    """awf pulls nothing and pushes nothing, so it needs no registry credentials, and it must
    not take the Docker CLI's proxy settings into its containers: the SDK is kept from reading
    ~/.docker/config.json at all (it reads it when a client is made and again before a build;
    a malformed one, an `auth` that is not base64, used to be a traceback). Issue 19."""
    import docker.utils.config

    docker.utils.config.find_config_file = _no_config_file
STDOUT, STDERR = 1, 2  # the stream ids of `frames`
_MAX_LINE = 65_536  # a log "line" longer than this is cut, so a stream cannot grow without bound
_IMAGE_REMOVE_PASSES = 8  # children before parents: one pass per layer of FROM


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    id: str
    name: str
    state: str  # "created", "running", "exited", ...
    labels: tuple[tuple[str, str], ...]

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    id: str
    name: str
    labels: tuple[tuple[str, str], ...]

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


@dataclass(frozen=True, slots=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    created: int  # unix time


@dataclass(frozen=True, slots=True)
class Labelled:
    """What list_by_label found."""

    containers: tuple[ContainerInfo, ...]
    networks: tuple[NetworkInfo, ...]


def _explain(exc: Exception) -> str:
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc).strip()
    return str(exc).strip()


def _is_conflict(exc: docker.errors.APIError) -> bool:
    return exc.status_code == 409


@contextmanager
def _translated(what: str, fix: str) -> Iterator[None]:
    """Turn SDK and transport failures inside the block into one DockerError."""
    try:
        yield
    except docker.errors.DockerException as exc:
        raise DockerError(f"{what}: {_explain(exc)}; {fix}") from exc
    except requests.exceptions.RequestException as exc:
        raise DockerError(f"{what}: lost the Docker engine ({exc}); is dockerd running?") from exc


def _split_tag(tag: str) -> tuple[str, str]:
    repository, sep, name = tag.rpartition(":")
    if not sep or "/" in name:  # "repo" or "host:5000/repo"
        return tag, "latest"
    return repository, name


def _label_filter(label: str, value: str | None) -> dict[str, str]:
    return {"label": label if value is None else f"{label}={value}"}


def _pairs(mapping: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((mapping or {}).items()))


def parse_import_result(text: str) -> str:
    """The image id from the JSON lines `POST /images/create?fromSrc=-` answers with."""
    image_id = ""
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise DockerError(f"docker import answered {line[:200]!r}, not JSON") from exc
        if "error" in item:
            raise DockerError(f"docker import failed: {item['error']}")
        status = str(item.get("status", ""))
        if status.startswith("sha256:"):
            image_id = status
    if not image_id:
        raise DockerError(f"docker import gave no image id (answer: {text[:200]!r})")
    return image_id


class DockerDriver:
    def __init__(self, client: docker.DockerClient) -> None:
        self._client = client
        self._api = client.api

    @classmethod
    def from_env(cls, base_url: str | None = None, *, timeout: int = 60) -> DockerDriver:
        """Connect (DOCKER_HOST, else the local socket) and ping; DockerError if it is down."""
        where = base_url or os.environ.get("DOCKER_HOST") or DEFAULT_HOST
        _ignore_docker_cli_config()
        try:
            if base_url is None:
                client = docker.from_env(timeout=timeout)
            else:
                client = docker.DockerClient(base_url=base_url, timeout=timeout)
            client.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            if "PermissionError" in str(exc) or "Permission denied" in str(exc):
                raise DockerError(
                    f"no permission to use the Docker engine's socket {where}; run awf as a "
                    "member of the docker group or as root"
                ) from exc
            if "FileNotFoundError" in str(exc) or "No such file" in str(exc):
                raise DockerError(
                    f"no Docker engine at {where} (no such socket); is dockerd running? "
                    "(--backend netns needs no Docker)"
                ) from exc
            raise DockerError(
                f"cannot reach the Docker engine at {where}: {_explain(exc)}; is dockerd running?"
            ) from exc
        return cls(client)

    def close(self) -> None:
        self._client.close()

    def server_version(self) -> str:
        with _translated("cannot read the Docker engine's version", "is dockerd running?"):
            return str(self._api.version().get("Version", ""))

    # Images

    def image_id(self, tag: str) -> str | None:
        """The image's id, or None if there is no image `tag`."""
        with _translated(f"cannot inspect image {tag!r}", "is dockerd running?"):
            try:
                return str(self._client.images.get(tag).id)
            except docker.errors.ImageNotFound:
                return None

    def image_exists(self, tag: str) -> bool:
        return self.image_id(tag) is not None

    def image_size(self, tag: str) -> int:
        """Bytes on disk of image `tag`, its parents' layers included."""
        with _translated(f"cannot inspect image {tag!r}", "build it with `awf images build`"):
            return int(self._client.images.get(tag).attrs["Size"])

    def import_rootfs(
        self, tar_stream: Iterable[bytes], tag: str, *, changes: Sequence[str] = ()
    ) -> str:
        """`docker import`: a root filesystem tar, streamed in chunks, becomes image `tag`.

        If `tar_stream` raises, the upload is cut short and the engine makes no image.
        """
        repository, name = _split_tag(tag)
        with _translated(f"cannot import the root filesystem as {tag!r}", "see the error above"):
            text = self._api.import_image_from_data(
                tar_stream, repository=repository, tag=name, changes=list(changes)
            )
        return parse_import_result(str(text))

    def tag(self, image: str, tag: str) -> None:
        repository, name = _split_tag(tag)
        with _translated(f"cannot tag {image!r} as {tag!r}", "is dockerd running?"):
            self._api.tag(image, repository, name, force=True)

    def build(
        self,
        context_dir: Path,
        tag: str,
        *,
        buildargs: Mapping[str, str],
        progress: Callable[[str], None],
        labels: Mapping[str, str] | None = None,
        timeout: int = 1800,
    ) -> str:
        """`docker build` with no network; each output line goes to `progress`. Returns the id.

        `timeout` bounds the wait for each piece of output, not the whole build.
        """
        image_id = ""
        with _translated(f"cannot build image {tag!r} from {str(context_dir)!r}", "see above"):
            stream = self._api.build(
                path=str(context_dir),
                tag=tag,
                buildargs=dict(buildargs),
                labels=dict(labels or {}),
                network_mode="none",
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
                timeout=timeout,
            )
            for item in stream:
                if "error" in item:
                    raise DockerError(
                        f"building image {tag!r} failed: {str(item['error']).strip()}; "
                        "see the build output above"
                    )
                for line in str(item.get("stream", "")).splitlines():
                    if line.strip():
                        progress(line.rstrip())
                aux = item.get("aux")
                if isinstance(aux, dict) and "ID" in aux:
                    image_id = str(aux["ID"])
        if not image_id:
            found = self.image_id(tag)
            if found is None:
                raise DockerError(f"building image {tag!r} ended without an image; see above")
            image_id = found
        return image_id

    def remove_image(self, image: str, *, force: bool = True) -> None:
        """Remove one image, or one tag of it; a missing one is fine.

        Without `force`, an image a container uses (even a stopped one) stays: DockerError.
        """
        with _translated(f"cannot remove image {image!r}", "remove what uses it first"):
            try:
                self._api.remove_image(image, force=force)
            except docker.errors.ImageNotFound:
                pass

    def prune_images(self, label: str, value: str | None = None) -> int:
        """Remove untagged leftovers (build stages, replaced images) so labelled; bytes freed."""
        filters: dict[str, Any] = {**_label_filter(label, value), "dangling": True}
        with _translated(f"cannot prune images labelled {label!r}", "is dockerd running?"):
            result = self._client.images.prune(filters=filters)
        return int(result.get("SpaceReclaimed") or 0)

    def list_images(self, label: str, value: str | None = None) -> tuple[ImageInfo, ...]:
        with _translated(f"cannot list images labelled {label!r}", "is dockerd running?"):
            found = self._api.images(all=True, filters=_label_filter(label, value))
        return tuple(
            ImageInfo(
                id=str(i["Id"]),
                tags=tuple(t for t in (i.get("RepoTags") or ()) if t != "<none>:<none>"),
                labels=_pairs(i.get("Labels")),
                created=int(i.get("Created") or 0),
            )
            for i in found
        )

    def remove_images(self, label: str, value: str | None = None) -> tuple[str, ...]:
        """Remove every image labelled `label`(=`value`), children first. Returns their ids.

        An image still used by a container that is not ours stays; the error names it.
        """
        removed: list[str] = []
        last_error: DockerError | None = None
        for _ in range(_IMAGE_REMOVE_PASSES):
            left = self.list_images(label, value)
            if not left:
                return tuple(removed)
            progressed = False
            for image in left:
                with _translated(f"cannot remove image {image.id!r}", "stop what uses it"):
                    try:
                        self._api.remove_image(image.id, force=True)
                    except docker.errors.ImageNotFound:
                        pass
                    except docker.errors.APIError as exc:
                        if not _is_conflict(exc):  # a child image or a container holds it
                            raise
                        last_error = DockerError(
                            f"cannot remove image {image.id!r} {image.tags!r}: {_explain(exc)}"
                        )
                        continue
                removed.append(image.id)
                progressed = True
            if not progressed:
                break
        if self.list_images(label, value) and last_error is not None:
            raise last_error
        return tuple(removed)

    # Networks

    def create_network(
        self,
        name: str,
        *,
        internal: bool,
        subnet_v4: str,
        subnet_v6: str | None,
        labels: Mapping[str, str],
    ) -> str:
        """A bridge network with fixed subnets; IPv6 only if `subnet_v6`. Returns its id.

        A subnet already in use shows as a DockerError whose text contains "overlaps".
        """
        pools = [docker.types.IPAMPool(subnet=subnet_v4)]
        if subnet_v6 is not None:
            pools.append(docker.types.IPAMPool(subnet=subnet_v6))
        with _translated(
            f"cannot create network {name!r} ({subnet_v4}, {subnet_v6 or 'no IPv6'})",
            "choose another subnet, or remove the leftover with `awf cleanup`",
        ):
            made = self._api.create_network(
                name,
                driver="bridge",
                internal=internal,
                ipam=docker.types.IPAMConfig(driver="default", pool_configs=pools),
                enable_ipv6=subnet_v6 is not None,
                labels=dict(labels),
                check_duplicate=True,
            )
        return str(made["Id"])

    # --- --topology-attach (hostview branch) ---
    def inspect_network(self, name: str) -> dict[str, Any] | None:
        """An existing network's Docker description (Name, Driver, IPAM, Labels...), or None."""
        with _translated(f"cannot inspect network {name!r}", "is dockerd running?"):
            try:
                found: dict[str, Any] = self._api.inspect_network(name)
            except docker.errors.NotFound:
                return None
        return found
    # --- end --topology-attach ---

    def remove_network(self, name: str) -> None:
        with _translated(f"cannot remove network {name!r}", "remove its containers first"):
            try:
                self._api.remove_network(name)
            except docker.errors.NotFound:
                pass

    # Containers

    def create_container(self, spec: ContainerSpec) -> str:
        """Create (not start) the container of `spec`, on all its networks. Returns its id."""
        api = self._api
        host_config = api.create_host_config(
            network_mode=spec.network or spec.network_mode,
            mounts=[
                docker.types.Mount(
                    target=m.target,
                    source=m.source,
                    type=m.kind.value,
                    read_only=m.read_only,
                    propagation=m.propagation if m.kind is MountKind.BIND else None,
                )
                for m in spec.mounts
            ],
            tmpfs=dict(spec.tmpfs),
            cap_add=list(spec.cap_add) or None,
            cap_drop=list(spec.cap_drop) or None,
            security_opt=list(spec.security_opt) or None,
            read_only=spec.read_only,
            mem_limit=spec.limits.memory,
            memswap_limit=spec.limits.memory_swap,
            pids_limit=spec.limits.pids,
            nano_cpus=spec.limits.nano_cpus,
            sysctls=dict(spec.sysctls) or None,
            extra_hosts=dict(spec.extra_hosts) or None,
            shm_size=spec.shm_size,
            init=spec.init or None,
        )
        networking = None
        if spec.network is not None:
            networking = api.create_networking_config(
                {  # type: ignore[arg-type]  # the stub says EndpointConfig; the SDK takes a dict
                    spec.network: api.create_endpoint_config(
                        ipv4_address=spec.ipv4_address,
                        ipv6_address=spec.ipv6_address,
                        aliases=list(spec.aliases) or None,
                    )
                }
            )
        kwargs: dict[str, Any] = {}
        if spec.entrypoint is not None:
            kwargs["entrypoint"] = list(spec.entrypoint)
        with _translated(
            f"cannot create container {spec.name!r} from image {spec.image!r}",
            "check the image exists (`awf images build`) and no leftover has that name "
            "(`awf cleanup`)",
        ):
            made = api.create_container(
                spec.image,
                command=list(spec.command) or None,
                name=spec.name,
                environment=[f"{k}={v}" for k, v in spec.env],
                labels=dict(spec.labels),
                user=spec.user or "",
                working_dir=spec.working_dir,
                hostname=spec.hostname,
                host_config=host_config,
                networking_config=networking,
                tty=spec.tty,
                stdin_open=spec.stdin_open,  # the SDK adds StdinOnce (not detached)
                **kwargs,
            )
        cid = str(made["Id"])
        try:
            for extra in spec.extra_networks:
                with _translated(
                    f"cannot attach container {spec.name!r} to network {extra.network!r}",
                    "check the network exists",
                ):
                    api.connect_container_to_network(
                        cid,
                        extra.network,
                        ipv4_address=extra.ipv4_address,
                        ipv6_address=extra.ipv6_address,
                        aliases=list(extra.aliases) or None,
                    )
        except DockerError:
            self.remove(cid)
            raise
        return cid

    def start(self, container: str) -> None:
        with _translated(f"cannot start container {container!r}",
                         "check its image, mounts and networks"):
            self._api.start(container)

    def wait(self, container: str, timeout: float | None = None) -> int:
        """Block until the started container stops; its exit status.

        Raises the builtin TimeoutError after `timeout` seconds (the container keeps running).
        """
        with _translated(f"cannot wait for container {container!r}", "is dockerd running?"):
            try:
                result = self._api.wait(container, timeout=timeout)  # type: ignore[arg-type]
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as exc:
                if timeout is not None and "timed out" in str(exc).lower():
                    raise TimeoutError(
                        f"container {container!r} still running after {timeout} s"
                    ) from exc
                raise
        error = result.get("Error")
        if error and error.get("Message"):
            raise DockerError(f"waiting for container {container!r}: {error['Message']}")
        return int(result["StatusCode"])

    def logs(self, container: str, tail: int | None = None) -> str:
        """stdout and stderr so far, interleaved; the last `tail` lines if given."""
        with _translated(f"cannot read the logs of container {container!r}", "is it removed?"):
            data = self._api.logs(container, stdout=True, stderr=True, tail=tail or "all")
        return data.decode("utf-8", errors="replace")

    def stream_logs(self, container: str) -> Generator[str, None, None]:
        """Lines of stdout and stderr as they come, until the container stops.

        Close the generator to stop following early (e.g. once a readiness line arrived).
        """
        with _translated(f"cannot follow the logs of container {container!r}", "is it removed?"):
            stream = self._api.logs(container, stdout=True, stderr=True, stream=True, follow=True)
            buf = bytearray()
            try:
                for chunk in stream:
                    buf += chunk
                    while True:
                        end = buf.find(b"\n")
                        if end < 0:
                            if len(buf) > _MAX_LINE:
                                yield buf.decode("utf-8", errors="replace")
                                buf.clear()
                            break
                        yield buf[:end].decode("utf-8", errors="replace").rstrip("\r")
                        del buf[: end + 1]
                if buf:
                    yield buf.decode("utf-8", errors="replace")
            finally:
                stream.close()

    def kill(self, container: str, signal: str | int = "SIGTERM") -> bool:
        """Send `signal`; False if the container is gone or not running."""
        with _translated(f"cannot signal container {container!r}", "is dockerd running?"):
            try:
                self._api.kill(container, signal)
            except docker.errors.NotFound:
                return False
            except docker.errors.APIError as exc:
                if _is_conflict(exc):  # not running
                    return False
                raise
        return True

    def remove(self, container: str, force: bool = True) -> None:
        """Remove the container and its anonymous volumes; a missing one is fine."""
        with _translated(f"cannot remove container {container!r}", "try `awf cleanup`"):
            try:
                self._api.remove_container(container, v=True, force=force)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if not (_is_conflict(exc) and "in progress" in _explain(exc)):
                    raise

    def list_by_label(self, label: str, value: str | None = None) -> Labelled:
        """Containers (running or not) and networks carrying `label` (=`value` if given)."""
        filters = _label_filter(label, value)
        with _translated(f"cannot list objects labelled {label!r}", "is dockerd running?"):
            containers = self._api.containers(all=True, filters=filters)
            networks = self._api.networks(filters=filters)
        return Labelled(
            containers=tuple(
                ContainerInfo(
                    id=str(c["Id"]),
                    name=str((c.get("Names") or ["/"])[0]).lstrip("/"),
                    state=str(c.get("State", "")),
                    labels=_pairs(c.get("Labels")),
                )
                for c in containers
            ),
            networks=tuple(
                NetworkInfo(id=str(n["Id"]), name=str(n["Name"]), labels=_pairs(n.get("Labels")))
                for n in networks
            ),
        )

    # What a run needs beyond creating and removing: subnets in use, the command's streams, exec

    def network_subnets(self) -> list[IPv4Network | IPv6Network]:
        """Every subnet of every Docker network (user-defined and default)."""
        with _translated("cannot list Docker networks", "is dockerd running?"):
            found = self._api.networks()
        nets: list[IPv4Network | IPv6Network] = []
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
