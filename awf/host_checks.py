"""What the netns backend needs from the host, checked before anything is made."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

from netfilter.errors import SandboxError
from proxy.errors import ConfigError

IPAddress = IPv4Address | IPv6Address

TOOLS = ("nft", "ip", "setpriv", "unshare", "nsenter", "tini")


def check_netns_host() -> None:
    if os.geteuid() != 0:
        raise SandboxError("awf run --backend netns needs root (network namespaces and "
                           "nftables); run it with sudo")
    for tool in TOOLS:
        if shutil.which(tool) is None:
            raise SandboxError(f"{tool!r} is missing; apt-get install nftables iproute2 "
                               "util-linux tini")


MIN_LOG_SPACE = 1 << 20  # bytes free where the run's logs go: access.jsonl, run.json, drops


def check_logs_dir(chosen: Path | None) -> None:
    """Before anything is made: the logs directory (--proxy-logs-dir, else $TMPDIR) can be one
    and its disk has room. A full disk used to surface as a traceback at the end of the run,
    when run.json and l3-drops.json could not be written (issue 19)."""
    where = chosen if chosen is not None else Path(tempfile.gettempdir())
    flag = "--proxy-logs-dir" if chosen is not None else "$TMPDIR"
    probe = where
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{flag} {str(where)!r}: {str(probe)!r} is not a directory")
    try:
        st = os.statvfs(probe)
    except OSError as exc:
        raise SandboxError(f"{flag} {str(where)!r}: {exc.strerror}") from exc
    free = st.f_bavail * st.f_frsize
    if free < MIN_LOG_SPACE:
        raise SandboxError(f"the logs directory {str(where)!r} is on a full disk ({free // 1024} "
                           f"KiB free; awf needs {MIN_LOG_SPACE >> 20} MiB); free some space "
                           "or pass --proxy-logs-dir DIR on another disk")


def check_resolvers(given: Sequence[tuple[str, int]] | None) -> None:
    """The netns backend's proxy runs on this host and asks --dns-servers, else the host's
    resolv.conf: one that does not answer stops the run before the command (exit 125, one
    line naming it), instead of costing every request a DNS timeout (issue 19)."""
    from containers import resolvers

    servers: list[tuple[IPAddress, int]] = []
    if given:
        for name, port in given:
            servers.append((ip_address(name.strip("[]")), port))
    else:
        try:
            text = resolvers.RESOLV_CONF.read_text()
        except OSError:
            return  # awf-proxy says so itself
        servers = [(ip, 53) for ip in resolvers.nameservers(text)]
    dead = resolvers.probe(servers) if servers else ()
    if dead:
        raise SandboxError(resolvers.dead_resolvers_message(dead, "this host"))
