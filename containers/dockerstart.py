"""Starting a Docker run (networks with retries, containers ready by their logs) and stopping it.

A container that joins another's network namespace waits for that one to run (`StartAfter`).
Functions of plain values: a driver, names, specs, timeouts. What a run prints is its caller's
(the `warn` callbacks); what it created is appended to the caller's lists, so teardown sees it
even when a step fails half-way.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path

from containers import attach, labels, topology
from containers.driver import DockerDriver
from containers.errors import DockerError
from containers.spec import ContainerSpec
from netfilter import apply as nft
from netfilter import hostnets
from netfilter.egress_nat import EgressNat, table_name
from netfilter.errors import SandboxError
from netfilter.ruleset import IPNetwork
from proxy.errors import AwfError

CREATE_RETRIES = 6
# Held by every awf on the host while it chooses its subnets and creates its networks, so two
# runs started together do not pick the same free /24 (Docker then refuses one of them).
NETWORKS_LOCK = Path("/run/awf/networks.lock")
# -int is a plain bridge, not a Docker "internal" one: with br_netfilter on (Docker turns it
# on), an internal network's isolation rules (`-i br ! -d SUBNET -j DROP`, `-o br ! -s SUBNET
# -j DROP`) drop the agent's routed packets to the proxy (destination: the real address, so
# the proxy's redirect sees it) and the proxy's replies. The agent still has one way out:
# its routes (set by the keeper; it has no NET_ADMIN or NET_RAW to change them or to forge
# frames) send everything, the bridge's own gateway address included, to the proxy, which
# does not forward; and `inet awf` filters in its namespace.
INT_INTERNAL = False


# --- the lease and the networks -------------------------------------------------------------


def take_lease(work: Path) -> int:
    """An exclusive flock held for awf's whole life; the proxy container watches it."""
    path = work / "lease"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def taken(driver: DockerDriver) -> list[IPNetwork]:
    nets: list[IPNetwork] = [*hostnets.host_networks(), *driver.network_subnets()]
    try:
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "nameserver":
                try:
                    nets.append(ip_network(words[1].split("%")[0]))
                except ValueError:
                    pass
    except OSError:
        pass
    # Default routes are not "taken"; a /0 would swallow every candidate.
    return [n for n in nets if n.prefixlen > 0]


def create_networks(driver: DockerDriver, names: topology.Names, *, ipv6_mode: str,
                    want_v4: IPNetwork | None, want_v6: IPNetwork | None,
                    int_labels: Mapping[str, str], ext_labels: Mapping[str, str],
                    created: list[str], warn: Callable[[str], None],
                    host_ipv6: bool | None = None) -> topology.Subnets:
    """-int and -ext in parallel on subnets nobody holds; an overlap (a race with another run
    or network) is tried again from scratch, a refused IPv6 subnet under `--ipv6 auto` goes on
    with IPv4 only. -ext is dual-stack when the host has IPv6 egress (`host_ipv6`, read from
    its routes when None: `topology.host_has_ipv6`) and IPv6 is not off. Each network made is
    appended to `created`."""
    if host_ipv6 is None:
        host_ipv6 = ipv6_mode != "off" and topology.host_has_ipv6(hostnets.ipv6_routes())
    with _networks_lock():
        return _create_networks(driver, names, ipv6_mode=ipv6_mode, want_v4=want_v4,
                                want_v6=want_v6, int_labels=int_labels,
                                ext_labels=ext_labels, created=created, warn=warn,
                                ext_ipv6=host_ipv6 and ipv6_mode != "off")


def masquerade_ext_v6(run: str, subnets: topology.Subnets) -> str | None:
    """The host's `inet awf_<run>` table masquerading -ext's IPv6 (netfilter/egress_nat.py),
    applied and verified; its name, or None when -ext has no IPv6. NetfilterError when the
    host's nft cannot (the caller goes on without IPv6 egress)."""
    if subnets.ext_v6 is None:
        return None
    nat = EgressNat(table=table_name(run), subnet_v6=subnets.ext_v6)
    try:
        nft.apply(nat)
        nft.verify(nat)
    except AwfError:
        nft.remove(nat.table)
        raise
    return nat.table


def remove_masquerade(run: str) -> None:
    """Delete the run's `inet awf_<run>` table if it is there (idempotent)."""
    nft.remove(table_name(run))


@contextlib.contextmanager
def _networks_lock() -> Iterator[None]:
    """The host-wide lock on choosing subnets; without /run/awf (read-only) the retries of
    `_create_networks` are what stands between two runs."""
    try:
        NETWORKS_LOCK.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(NETWORKS_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _create_networks(driver: DockerDriver, names: topology.Names, *, ipv6_mode: str,
                     want_v4: IPNetwork | None, want_v6: IPNetwork | None,
                     int_labels: Mapping[str, str], ext_labels: Mapping[str, str],
                     created: list[str], warn: Callable[[str], None],
                     ext_ipv6: bool) -> topology.Subnets:
    ipv6 = ipv6_mode != "off"
    pool = ThreadPoolExecutor(2)
    try:
        for attempt in range(CREATE_RETRIES):
            # A retry after an overlap (a network made by someone else in between) starts at
            # a random free candidate, so two racers do not choose the same one again.
            skip = 2 * random.randrange(8) if attempt else 0
            subnets = topology.choose_subnets(
                taken(driver), want_v4=want_v4,  # type: ignore[arg-type]
                want_v6=want_v6, ipv6=ipv6, ext_ipv6=ext_ipv6,  # type: ignore[arg-type]
                skip=skip)
            n = names
            jobs = {
                n.int_net: pool.submit(
                    driver.create_network, n.int_net, internal=INT_INTERNAL,
                    subnet_v4=str(subnets.v4),
                    subnet_v6=str(subnets.v6) if subnets.v6 else None,
                    labels=dict(int_labels)),
                n.ext_net: pool.submit(
                    driver.create_network, n.ext_net, internal=False,
                    subnet_v4=str(subnets.ext_v4),
                    subnet_v6=str(subnets.ext_v6) if subnets.ext_v6 else None,
                    labels=dict(ext_labels)),
            }
            errors: list[DockerError] = []
            for name, job in jobs.items():
                try:
                    job.result()
                    created.append(name)
                except DockerError as exc:
                    errors.append(exc)
            if not errors:
                if ext_ipv6 and subnets.ext_v6 is None:
                    warn("no free IPv6 subnet for the egress network; the proxy has no IPv6 "
                         "egress")
                return subnets
            for name in list(created):  # try again from scratch
                driver.remove_network(name)
                created.remove(name)
            text = " ".join(str(e) for e in errors)
            if "overlap" in text.lower() and attempt + 1 < CREATE_RETRIES:
                continue  # raced with another run or network: the next choice sees it
            if ((subnets.v6 is not None or subnets.ext_v6 is not None) and ipv6_mode == "auto"
                    and "overlap" not in text):
                warn("Docker refused the IPv6 subnet; going on with IPv4 only (IPv6 "
                     "disabled in the sandbox, no IPv6 egress)")
                ipv6 = ext_ipv6 = False
                continue
            raise errors[0]
        raise DockerError("could not create the run's networks: every subnet tried overlapped")
    finally:
        pool.shutdown(wait=True)


# --- readiness --------------------------------------------------------------------------------


class Watch:
    """Follows one container's log lines until it is ready or fails."""

    def __init__(self, driver: DockerDriver, name: str, ready: Callable[[list[str]], bool],
                 failed: str, t0: float) -> None:
        self.name, self.lines, self.done = name, [], threading.Event()
        self.ok = False
        self.at = 0.0  # seconds after t0 when it was ready
        self.t0 = t0
        self._driver, self._ready, self._failed = driver, ready, failed
        self.thread = threading.Thread(target=self._follow, name=f"watch-{name}", daemon=True)

    lines: list[str]

    def _follow(self) -> None:
        stream: Iterator[str] | None = None
        try:
            stream = self._driver.stream_logs(self.name)
            for line in stream:
                self.lines.append(line)
                if line.startswith(self._failed):
                    return
                if self._ready(self.lines):
                    self.ok = True
                    self.at = round(time.monotonic() - self.t0, 4)
                    return
        except AwfError as exc:
            self.lines.append(f"({exc})")
        finally:
            if stream is not None:
                try:
                    stream.close()  # type: ignore[attr-defined]
                except Exception:  # closing a dead stream
                    pass
            self.done.set()

    def failure(self) -> str:
        tail = " | ".join(ln for ln in self.lines[-8:] if ln.strip()) or "no output"
        state = None
        try:
            state = self._driver.state(self.name)
        except AwfError:
            pass
        how = ""
        if state is not None and not state.get("Running"):
            how = f" (exited with status {state.get('ExitCode')})"
        return f"container {self.name!r} failed to start{how}; its last lines: {tail}"

    def not_ready(self, timeout: float) -> str:
        return (f"container {self.name!r} was not ready within {timeout:g} s; its last lines: "
                f"{' | '.join(self.lines[-8:]) or 'no output'}")


def start(driver: DockerDriver, specs: Sequence[tuple[ContainerSpec, Watch]],
          created: list[str]) -> None:
    """Create and start each container in parallel, each watched from its start; each one made
    is appended to `created`."""
    def one(spec: ContainerSpec, watch: Watch) -> None:
        driver.create_container(spec)
        created.append(spec.name)
        driver.start(spec.name)
        watch.thread.start()

    with ThreadPoolExecutor(len(specs)) as pool:
        jobs = [pool.submit(one, s, w) for s, w in specs]
        errors = [j.exception() for j in jobs if j.exception() is not None]
    if errors:
        err = errors[0]
        raise err if isinstance(err, AwfError) else DockerError(str(err))


def wait_ready(watches: Sequence[Watch], timeout: float) -> None:
    """Every watch ready within `timeout` seconds, else a SandboxError quoting its lines."""
    deadline = time.monotonic() + timeout
    for watch in watches:
        left = deadline - time.monotonic()
        if not watch.done.wait(max(left, 0)):
            raise SandboxError(watch.not_ready(timeout))
        if not watch.ok:
            raise SandboxError(watch.failure())


class StartAfter:
    """A container that joins another's network namespace (the API proxy sidecar joins the
    proxy's): created as soon as that one runs, in a thread, while the others get ready;
    `wait` returns its name once its watch says ready."""

    def __init__(self, driver: DockerDriver, spec: ContainerSpec, watch: Watch, *, after: str,
                 created: list[str], timeout: float) -> None:
        self.driver, self.spec, self.watch, self.after = driver, spec, watch, after
        self.created, self.timeout = created, timeout
        self.error: BaseException | None = None
        self.cancel = threading.Event()
        self.deadline = time.monotonic() + timeout
        self.thread = threading.Thread(target=self._start, name="api-start", daemon=True)
        self.thread.start()

    def _start(self) -> None:
        d, proxy = self.driver, self.after
        try:
            while True:  # the proxy container must run before another can join its netns
                if self.cancel.is_set():
                    return
                if proxy in self.created:
                    state = d.state(proxy)
                    if state is not None and state.get("Running"):
                        break
                if time.monotonic() > self.deadline:
                    raise SandboxError(f"container {proxy!r} was not running within "
                                       f"{self.timeout:g} s")
                time.sleep(0.05)
            d.create_container(self.spec)
            self.created.append(self.spec.name)
            d.start(self.spec.name)
            self.watch.thread.start()
        except BaseException as exc:  # handed to wait()
            self.error = exc

    def abandon(self) -> None:
        """Never create it behind the caller's teardown's back."""
        self.cancel.set()
        self.thread.join(self.timeout)

    def wait(self) -> str:
        self.thread.join(max(self.deadline - time.monotonic(), 0))
        if self.error is not None:
            err = self.error
            raise err if isinstance(err, AwfError) else DockerError(str(err))
        if self.thread.is_alive() or not self.watch.done.wait(
                max(self.deadline - time.monotonic(), 0)):
            raise SandboxError(self.watch.not_ready(self.timeout))
        if not self.watch.ok:
            raise SandboxError(self.watch.failure())
        return self.spec.name


# --- stopping ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stopped:
    """What tearing a run down gathered: the keeper's `inet awf` counters as JSON and the
    proxy's last log lines (each None when it could not be had), and the removal errors."""

    drops: str | None
    tail: str | None
    errors: tuple[str, ...]


def stop_run(driver: DockerDriver, names: topology.Names, created: Sequence[str], *,
             run: str, networks: Sequence[str], remove: bool,
             mark: Callable[[str], None] = lambda what: None) -> Stopped:
    """Once the command has exited: each container on its own path, all in parallel, then
    the networks in parallel. The keeper has its counters read, the API sidecar then the
    proxy get SIGTERM (they drain and flush their logs; nothing else needs a graceful stop),
    and each is force-removed (SIGKILL) as soon as its last step is done; what the run label
    finds besides (siblings) goes too. `remove=False` (--keep-containers) stops the services
    and removes nothing. `mark(phase)` is called as each phase ends: `counters`,
    `proxy_stopped`, `containers_removed`, `networks_removed`."""
    errors: list[str] = []

    def rm(name: str) -> None:
        try:
            driver.remove(name)
        except AwfError as exc:
            errors.append(str(exc))

    def keeper() -> str | None:
        try:
            return _l3_drops(driver, names.keeper) if names.keeper in created else None
        finally:
            mark("counters")
            if remove and names.keeper in created:
                rm(names.keeper)

    def proxy() -> str | None:
        tail = None
        try:
            if names.api in created:
                attach.stop(driver, names.api, 3)  # the API sidecar first: it flushes its log
            if names.proxy in created:
                attach.stop(driver, names.proxy, 3)  # SIGTERM: it drains and flushes its log
                with contextlib.suppress(AwfError):
                    tail = driver.logs(names.proxy, tail=20)
        finally:
            mark("proxy_stopped")
            if remove:
                for name in (names.api, names.proxy):
                    if name in created:
                        rm(name)
        return tail

    def labelled() -> tuple[list[str], list[str]]:
        try:
            found = driver.list_by_label(labels.RUN, run)
        except AwfError as exc:
            errors.append(str(exc))
            return [], []
        return [c.name for c in found.containers], [x.name for x in found.networks]

    own = {names.keeper, names.proxy, names.api}
    others = [c for c in created if c not in own]  # the agent (already stopped), the guard
    pool = ThreadPoolExecutor(3 + len(others))
    try:
        found = pool.submit(labelled) if remove else None
        drops, tail = pool.submit(keeper), pool.submit(proxy)
        removing = [pool.submit(rm, c) for c in others] if remove else []
        more_containers, more_networks = found.result() if found is not None else ([], [])
        removing += [pool.submit(rm, c) for c in more_containers
                     if c not in own and c not in others]
        result = Stopped(drops.result(), tail.result(), ())
        for job in removing:
            job.result()
        if not remove:
            return result
        mark("containers_removed")
        nets = list(dict.fromkeys([*networks, *more_networks]))
        for job in [pool.submit(_rm_network, driver, x, errors) for x in nets]:
            job.result()
        mark("networks_removed")
        return Stopped(result.drops, result.tail, tuple(errors))
    finally:
        pool.shutdown(wait=True)


def _rm_network(driver: DockerDriver, name: str, errors: list[str]) -> None:
    try:
        driver.remove_network(name)
    except AwfError as exc:
        errors.append(str(exc))


def _l3_drops(driver: DockerDriver, keeper: str) -> str | None:
    """The keeper's refusal counters, as `awf-netfilter dump` prints them: `nft -j` run in the
    keeper (no Python started there), parsed here."""
    try:
        code, out = driver.exec_run(keeper, ["nft", "-j", "list", "table", "inet", "awf"])
    except AwfError:
        return None
    if code != 0:
        return None
    try:
        return json.dumps(nft.counters_of(out), indent=2) + "\n"
    except AwfError:
        return None
