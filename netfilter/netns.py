"""Network namespaces, links, addresses and routes: the only module of awf that speaks netlink
(through ``netfilter.rtnl``) or changes anything with the ``ip`` command, and the only one that
``setns``es a thread.

For the netns backend: one agent namespace joined to the host by a veth pair, the host's taken
subnets, leftovers by name, and ``ip netns exec`` (the command's prefix: it gives the command the
namespace's own ``/etc/netns/NAME/resolv.conf``). For the containers: the keeper's and the
proxy's routes. For everyone: ``run_in``, a function run in a thread inside a namespace. nft is
``netfilter.apply``'s job.

``create`` works from one short-lived thread, because ``unshare``/``setns`` of the network
namespace only change the calling thread: the thread opens a netlink socket in the host
namespace, ``unshare(CLONE_NEWNET)``s, bind-mounts ``/proc/thread-self/ns/net`` on
``/run/netns/NAME`` (what ``ip netns add`` does), sets the namespace's sysctls (``/proc/sys/net``
shows the namespace of the thread that opens it), opens a second netlink socket there and creates
the veth pair from inside with its peer in the host namespace. A socket keeps the namespace it
was created in, so from then on the thread drives both sides; it ``setns``es back only to write
the host end's sysctls. No fork, no ``ip`` processes: the whole create takes a few ms, most of it
the kernel building the namespace. The caller's threads never change namespace.

All of it goes through ``netfilter.rtnl``, a few hundred lines of the standard library:
importing pyroute2 cost every ``awf run`` 0.07-0.2 s (in awf on the netns backend, in the keeper
and the proxy container on the Docker backend), more than the namespace itself.

IPv6 addresses get ``IFA_F_NODAD`` and the namespace ``accept_dad=0``: the link has exactly two
ends, so duplicate detection can only delay the first packet. Router advertisements and
autoconfiguration are off in the namespace (a route must come only from us), and the host end has
IPv4 forwarding and redirects off (``nft``'s forward chain drops the agent's traffic too).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import re
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_network,
)
from typing import TypeVar

from netfilter.errors import SandboxError
from netfilter.rtnl import RT_SCOPE_LINK, Rtnl

NETNS_DIR = "/run/netns"
PREFIX = "awf-"
CLONE_NEWNET = 0x40000000
IFA_F_NODAD = 0x02
IFNAMSIZ = 15  # usable characters
_RUN = re.compile(r"[a-z0-9][a-z0-9-]{0,9}")  # "awf-" + run + "h" fits IFNAMSIZ
CREATE_TIMEOUT = 10.0
POOL_V4, POOL_V6 = "10.213.0.0/16", "fd61:7766:1::/48"  # awf run --subnet-pool: the v4 one


Network = IPv4Network | IPv6Network
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AgentLink:
    """One agent namespace and its veth pair: the host end is the agent's only next hop."""

    run: str
    netns: str  # awf-<run>
    host_if: str  # awf-<run>h, in the host namespace
    agent_if: str  # in the agent namespace
    host_v4: IPv4Interface
    agent_v4: IPv4Interface
    host_v6: IPv6Interface | None
    agent_v6: IPv6Interface | None

    def __post_init__(self) -> None:
        check_run(self.run)
        for name in (self.host_if, self.agent_if):
            if not 1 <= len(name) <= IFNAMSIZ or "/" in name or name in (".", ".."):
                raise SandboxError(f"interface name {name!r} is not valid (1 to {IFNAMSIZ} "
                                   "characters, no '/')")
        if self.host_v4.network != self.agent_v4.network or self.host_v4 == self.agent_v4:
            raise SandboxError(f"veth addresses {self.host_v4} and {self.agent_v4} must be "
                               "two different addresses of one subnet")
        if (self.host_v6 is None) != (self.agent_v6 is None):
            raise SandboxError("give IPv6 addresses for both ends of the veth or for neither")
        if (self.host_v6 is not None and self.agent_v6 is not None
                and (self.host_v6.network != self.agent_v6.network
                     or self.host_v6 == self.agent_v6)):
            raise SandboxError(f"veth addresses {self.host_v6} and {self.agent_v6} must be "
                               "two different addresses of one subnet")

    @classmethod
    def for_run(cls, run: str, net_v4: IPv4Network, net_v6: IPv6Network | None,
                *, agent_if: str = "eth0") -> AgentLink:
        """Names from the run id; the host end takes the subnet's first address, the agent
        the second."""
        check_run(run)
        hosts4 = list(net_v4.hosts())
        if len(hosts4) < 2:
            raise SandboxError(f"subnet {net_v4} has fewer than two host addresses")
        host_v6 = agent_v6 = None
        if net_v6 is not None:
            if net_v6.num_addresses < 4:
                raise SandboxError(f"subnet {net_v6} is smaller than a /126")
            base = net_v6.network_address
            host_v6 = IPv6Interface((base + 1, net_v6.prefixlen))
            agent_v6 = IPv6Interface((base + 2, net_v6.prefixlen))
        return cls(run=run, netns=f"{PREFIX}{run}", host_if=f"{PREFIX}{run}h",
                   agent_if=agent_if,
                   host_v4=IPv4Interface((hosts4[0], net_v4.prefixlen)),
                   agent_v4=IPv4Interface((hosts4[1], net_v4.prefixlen)),
                   host_v6=host_v6, agent_v6=agent_v6)


def check_run(run: str) -> None:
    if not isinstance(run, str) or not _RUN.fullmatch(run):
        raise SandboxError(f"run id {run!r} is not valid; use 1 to 10 lowercase letters, "
                           "digits or '-' so 'awf-<run>h' fits in 15 characters")


# --- subnet choice ---------------------------------------------------------------------------


def pick_subnet(run: str, taken: Iterable[Network], pool_v4: IPv4Network,
                pool_v6: IPv6Network) -> tuple[IPv4Network, IPv6Network]:
    """The first /30 of ``pool_v4`` (with the /126 at the same index of ``pool_v6``) that
    overlaps nothing in ``taken``. The search starts at an index hashed from ``run``, so
    concurrent runs rarely try the same one; it wraps around once at most."""
    if pool_v4.prefixlen > 30 or pool_v6.prefixlen > 126:
        raise SandboxError(f"subnet pools {pool_v4} and {pool_v6} are smaller than a /30 "
                           "and a /126")
    taken4 = [n for n in taken if isinstance(n, IPv4Network)]
    taken6 = [n for n in taken if isinstance(n, IPv6Network)]
    count = min(2 ** (30 - pool_v4.prefixlen), 2 ** min(126 - pool_v6.prefixlen, 62))
    start = int.from_bytes(hashlib.sha256(run.encode()).digest()[:8], "big") % count
    base4, base6 = int(pool_v4.network_address), int(pool_v6.network_address)
    for step in range(count):
        i = (start + step) % count
        v4 = IPv4Network((base4 + 4 * i, 30))
        v6 = IPv6Network((base6 + 4 * i, 126))
        if not any(v4.overlaps(t) for t in taken4) and not any(v6.overlaps(t) for t in taken6):
            return v4, v6
    raise SandboxError(f"every /30 of {pool_v4} (or /126 of {pool_v6}) overlaps a host "
                       "address or route; pass another --subnet-pool")


def host_networks() -> list[Network]:
    """Every address and every route (all tables) of the host namespace, but default routes."""
    try:
        with Rtnl() as rtnl:
            return rtnl.networks()
    except (OSError, ValueError) as exc:
        raise SandboxError(f"cannot read the host's addresses and routes: {exc}") from exc


def choose_subnet(run: str, pool_v4: str = POOL_V4,
                  pool_v6: str = POOL_V6) -> tuple[IPv4Network, IPv6Network]:
    """A /30 and a /126 for ``run`` that overlap no host address or route."""
    try:
        p4, p6 = IPv4Network(pool_v4), IPv6Network(pool_v6)
    except ValueError as exc:
        raise SandboxError(f"subnet pool {pool_v4!r}/{pool_v6!r} is not valid: {exc}") from exc
    return pick_subnet(run, host_networks(), p4, p6)


# --- create / destroy ------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
MNT_DETACH, MS_BIND, MS_REC, MS_SHARED = 2, 4096, 16384, 1 << 20


def _mount(source: str, target: str, flags: int) -> int:
    return int(_libc.mount(source.encode(), target.encode(), b"none", flags, None))


def _attach(name: str) -> None:
    """Bind-mount the calling thread's network namespace on /run/netns/``name``, as ``ip netns
    add`` does (/run/netns made a shared mount point first, so the mount shows in every mount
    namespace)."""
    os.makedirs(NETNS_DIR, exist_ok=True)
    if _mount("", NETNS_DIR, MS_SHARED | MS_REC) != 0:
        if _mount(NETNS_DIR, NETNS_DIR, MS_BIND | MS_REC) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"bind-mount {NETNS_DIR}: {os.strerror(err)}")
        if _mount("", NETNS_DIR, MS_SHARED | MS_REC) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"make {NETNS_DIR} shared: {os.strerror(err)}")
    path = f"{NETNS_DIR}/{name}"
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
    if _mount("/proc/thread-self/ns/net", path, MS_BIND) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bind-mount the namespace on {path}: {os.strerror(err)}")


def _unshare_net() -> None:
    if _libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _sysctl(path: str, value: str) -> None:
    with open(f"/proc/sys/net/{path}", "w", encoding="ascii") as f:
        f.write(value)


def _agent_sysctls(ipv6: bool) -> None:
    """In the agent namespace, before its veth end exists (``default`` applies to it)."""
    for scope in ("all", "default"):
        if ipv6:
            for key, value in (("accept_ra", "0"), ("autoconf", "0"), ("accept_dad", "0"),
                               ("dad_transmits", "0"), ("accept_redirects", "0"),
                               ("router_solicitations", "0"), ("use_tempaddr", "0")):
                _sysctl(f"ipv6/conf/{scope}/{key}", value)
        else:
            _sysctl(f"ipv6/conf/{scope}/disable_ipv6", "1")
        _sysctl(f"ipv4/conf/{scope}/accept_redirects", "0")
    if not ipv6:
        _sysctl("ipv6/conf/lo/disable_ipv6", "1")


def _host_sysctls(link: AgentLink) -> None:
    """On the host end: never forward for the agent, no redirects, strict reverse path."""
    name = link.host_if
    _sysctl(f"ipv4/conf/{name}/forwarding", "0")
    _sysctl(f"ipv4/conf/{name}/send_redirects", "0")
    _sysctl(f"ipv4/conf/{name}/accept_redirects", "0")
    _sysctl(f"ipv4/conf/{name}/rp_filter", "1")
    if link.host_v6 is None:
        _sysctl(f"ipv6/conf/{name}/disable_ipv6", "1")
    else:
        for key in ("accept_ra", "autoconf", "accept_dad", "accept_redirects"):
            _sysctl(f"ipv6/conf/{name}/{key}", "0")


@dataclass(slots=True)
class _Progress:
    """What ``create`` has made so far, for the rollback."""

    mounted: bool = False
    veth: bool = False


def _build(link: AgentLink, progress: _Progress) -> None:
    """The body of ``create``; runs in its own thread (see the module docstring)."""
    ipv6 = link.host_v6 is not None and link.agent_v6 is not None
    host_ns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with Rtnl() as host:
            _unshare_net()
            _attach(link.netns)  # bind-mount this thread's new netns
            progress.mounted = True
            _agent_sysctls(ipv6)
            with Rtnl() as inner:
                inner.link_up(socket.if_nametoindex("lo"))
                inner.add_veth(link.agent_if, link.host_if, host_ns)
                progress.veth = True
                aidx = socket.if_nametoindex(link.agent_if)  # asks this thread's netns
                _setns(host_ns)  # the rest of the thread's life is in the host namespace
                hidx = socket.if_nametoindex(link.host_if)
                _host_sysctls(link)
                host.add_addr(hidx, link.host_v4)
                inner.add_addr(aidx, link.agent_v4)
                if ipv6 and link.host_v6 is not None and link.agent_v6 is not None:
                    host.add_addr(hidx, link.host_v6, IFA_F_NODAD)
                    inner.add_addr(aidx, link.agent_v6, IFA_F_NODAD)
                host.link_up(hidx)
                inner.link_up(aidx)
                inner.add_default_route(link.host_v4.ip, aidx)
                if ipv6 and link.host_v6 is not None:
                    inner.add_default_route(link.host_v6.ip, aidx)
    finally:
        os.close(host_ns)


def run_in(netns: str | None, func: Callable[[], T], *, timeout: float, what: str) -> T:
    """``func()`` in a short-lived thread that first ``setns``es into network namespace
    ``netns`` (a name in /run/netns, or a path), or stays in ours when it is None; its result,
    or its exception re-raised here. A namespace switch changes only the calling thread, and a
    socket keeps the namespace it was made in, so the caller's threads never move.
    SandboxError if the namespace cannot be entered or ``func`` runs past ``timeout``."""
    results: list[T] = []
    errors: list[BaseException] = []

    def body() -> None:
        try:
            if netns is not None:
                _enter(netns if "/" in netns else f"{NETNS_DIR}/{netns}")
            results.append(func())
        except BaseException as exc:  # handed to the caller's thread below
            errors.append(exc)

    worker = threading.Thread(target=body, name=f"awf-netns-{what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise SandboxError(f"{what} did not finish within {timeout:g} s")
    if errors:
        raise errors[0]
    return results[0]


def _enter(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise SandboxError(f"cannot enter {path}: {exc.strerror}") from exc


def create(link: AgentLink) -> None:
    """Make the namespace, the veth pair, addresses, routes and sysctls of ``link``; on any
    failure remove what was made and raise ``SandboxError``."""
    if os.path.exists(f"{NETNS_DIR}/{link.netns}"):
        raise SandboxError(f"network namespace {link.netns!r} already exists; a run with id "
                           f"{link.run!r} is alive or crashed (try 'awf cleanup')")
    progress = _Progress()
    try:
        run_in(None, lambda: _build(link, progress), timeout=CREATE_TIMEOUT,
               what=f"create {link.netns}")
    except BaseException as exc:
        cleanup_errors = _rollback(link, progress)
        if not isinstance(exc, OSError | SandboxError):
            raise  # a bug: still roll back, but do not disguise it
        extra = f" (rollback also failed: {cleanup_errors})" if cleanup_errors else ""
        reason = str(exc)
        if isinstance(exc, OSError) and exc.errno == errno.EEXIST:
            reason += f" (does an interface {link.host_if!r} exist already?)"
        raise SandboxError(f"cannot create network namespace {link.netns!r} and veth "
                           f"{link.host_if!r}: {reason}; needs root (CAP_NET_ADMIN and "
                           f"CAP_SYS_ADMIN){extra}") from exc


def _rollback(link: AgentLink, progress: _Progress) -> str:
    problems = []
    if progress.veth:
        try:
            delete_link(link.host_if)
        except OSError as exc:
            problems.append(f"delete {link.host_if!r}: {exc}")
    if progress.mounted or os.path.exists(f"{NETNS_DIR}/{link.netns}"):
        try:
            remove_netns(link.netns)
        except OSError as exc:
            problems.append(f"remove {link.netns!r}: {exc}")
    return "; ".join(problems)


def delete_link(name: str) -> bool:
    """Delete host link ``name`` (a veth takes its peer with it); False if there is none."""
    try:
        index = socket.if_nametoindex(name)
    except OSError:  # ENODEV: no such interface
        return False
    with Rtnl() as rtnl:
        try:
            rtnl.delete_link(index)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return False
            raise
    return True


def remove_netns(name: str) -> bool:
    """Unmount and unlink /run/netns/``name`` (``ip netns delete``); False if there is none."""
    path = f"{NETNS_DIR}/{name}"
    if not os.path.exists(path):
        return False
    _libc.umount2(path.encode(), MNT_DETACH)  # not mounted (a half-made one): unlinked anyway
    os.unlink(path)
    return True


def destroy(link_or_run: AgentLink | str) -> None:
    """Delete the host end of the veth (which deletes the pair, synchronously) and the
    namespace. Idempotent: what is already gone is fine."""
    if isinstance(link_or_run, AgentLink):
        host_if, ns = link_or_run.host_if, link_or_run.netns
    else:
        check_run(link_or_run)
        host_if, ns = f"{PREFIX}{link_or_run}h", f"{PREFIX}{link_or_run}"
    try:
        delete_link(host_if)
        remove_netns(ns)
    except FileNotFoundError:
        pass  # removed between the check and the unlink: gone is what we want
    except OSError as exc:
        raise SandboxError(f"cannot remove network namespace {ns!r} or veth {host_if!r}: "
                           f"{exc}; needs root") from exc


def remove_leftover(name: str) -> None:
    """Remove what `leftovers` named: the namespace /run/netns/``name`` if there is one, else
    the host link ``name``. SandboxError if it cannot."""
    try:
        if not remove_netns(name):
            delete_link(name)
    except FileNotFoundError:
        pass  # gone meanwhile
    except OSError as exc:
        raise SandboxError(f"cannot remove {name!r}: {exc}; needs root") from exc


def leftovers(prefix: str = PREFIX) -> list[str]:
    """Names of namespaces (in ``/run/netns``) and host links starting with ``prefix``."""
    names: set[str] = set()
    try:
        names.update(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        pass
    try:
        with Rtnl() as rtnl:
            names.update(n for n in rtnl.link_names() if n.startswith(prefix))
    except OSError as exc:
        raise SandboxError(f"cannot list host links: {exc}") from exc
    return sorted(names)


def exec_argv(netns: str) -> list[str]:
    """The prefix that runs a command in namespace ``netns`` with a private mount namespace in
    which /etc/netns/``netns``/* is bind-mounted over /etc/* (so /etc/resolv.conf is the run's):
    ``ip netns exec``, which does exactly that."""
    return ["ip", "netns", "exec", netns]


# --- routes in the calling thread's namespace (the keeper's and the proxy container's) ---------


def _family(addr: IPv4Address | IPv6Address | Network) -> int:
    return socket.AF_INET if addr.version == 4 else socket.AF_INET6


def _anywhere(version: int) -> Network:
    return ip_network("0.0.0.0/0" if version == 4 else "::/0")


def route_only_via(dev: str, subnet: Network, proxy: IPv4Address | IPv6Address) -> None:
    """On ``dev``: drop ``subnet``'s on-link route, reach ``proxy`` alone on-link, and send
    everything else (the subnet's other addresses included) via ``proxy``."""
    try:
        try:
            idx = socket.if_nametoindex(dev)
        except OSError:
            raise SandboxError(f"no interface {dev!r} to route via the proxy") from None
        with Rtnl() as rtnl:
            rtnl.delete_route(subnet, oif=idx)
            rtnl.replace_route(ip_network(f"{proxy}/{proxy.max_prefixlen}"), oif=idx,
                               scope=RT_SCOPE_LINK)
            rtnl.replace_route(_anywhere(proxy.version), gateway=proxy, oif=idx)
    except OSError as exc:
        raise SandboxError(f"could not route {subnet} on {dev!r} via {proxy}: {exc}") from exc


MAIN_TABLE = 254


def main_routes(version: int) -> list[str]:
    """The destinations of the main table's routes of one family, as `ip -j route` writes them:
    'default', a bare address for a host route, else the CIDR."""
    family, full = (socket.AF_INET, 32) if version == 4 else (socket.AF_INET6, 128)
    try:
        with Rtnl() as rtnl:
            found = rtnl.main_routes(family)
    except OSError as exc:
        raise SandboxError(f"cannot list the IPv{version} routes: {exc}") from exc
    out = []
    for dst, length in found:
        out.append("default" if dst is None or length == 0
                   else str(dst.network_address) if length == full else str(dst))
    return out


def delete_route(dst: str, version: int) -> None:
    """Delete the main table's route to ``dst`` (as `main_routes` names it)."""
    try:
        net = _anywhere(version) if dst == "default" else ip_network(dst)
        with Rtnl() as rtnl:
            rtnl.delete_route(net)
    except (OSError, ValueError) as exc:
        raise SandboxError(f"cannot delete the route to {dst}: {exc}") from exc


def route_gateway(dst: str) -> str | None:
    """The gateway of the kernel's route to ``dst``; None if it is on-link or unroutable."""
    try:
        with Rtnl() as rtnl:
            found = rtnl.gateway_to(ip_network(dst).network_address)
    except (OSError, ValueError):
        return None
    return None if found is None else str(found)


def set_default_route(gateway: IPv4Address | IPv6Address) -> None:
    """Replace the default route of ``gateway``'s family with one via ``gateway``."""
    try:
        with Rtnl() as rtnl:
            rtnl.replace_route(_anywhere(gateway.version), gateway=gateway)
    except OSError as exc:
        raise SandboxError(f"cannot set the default route via {gateway}: {exc}") from exc


def delete_default_route(version: int) -> bool:
    """Delete the IPv4 or IPv6 default route; False if there was none."""
    try:
        with Rtnl() as rtnl:
            rtnl.delete_route(_anywhere(version))
    except OSError:
        return False
    return True
