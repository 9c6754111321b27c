"""Squid as the reference proxy: same allowlist, same ports, logs on tmpfs, no cache, no helpers.

Squid runs in the foreground (`-N`, which also means one process, no SMP kids; with the bench's
`--workers N`, `workers N` in its config and `--foreground` instead) with `-d1`
so that "Accepting HTTP Socket connections" reaches stderr and marks readiness. origin.test
resolves through Squid's own `hosts_file` (a file we write; /etc/hosts is never touched), and
`dns_nameservers 127.0.0.1` keeps any other lookup on loopback. Squid drops root privileges to
its default user, so its directory is handed to that user.
"""

from __future__ import annotations

import pwd
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.origin import ORIGIN_NAME

SQUID_USER = "proxy"  # Debian's --with-default-user
MAX_FILEDESCRIPTORS = 65536  # wished for; capped by the hard RLIMIT_NOFILE we can give it
READY_PATTERN = r"Accepting HTTP Socket connections"


@dataclass(frozen=True, slots=True)
class SquidLayout:
    root: Path
    port: int

    @property
    def conf(self) -> Path:
        return self.root / "squid.conf"


def squid_conf(layout: SquidLayout, allowed_ports: Sequence[int], max_fds: int,
               workers: int = 1) -> str:
    """squid.conf text (pure). `workers` > 1: Squid's SMP mode, that many kids."""
    r = layout.root
    ports = " ".join(str(p) for p in sorted({80, 443, *allowed_ports}))
    smp = f"workers {workers}\n" if workers > 1 else ""
    return f"""\
# awf bench: squid with the same policy as awf-proxy; generated, throwaway
{smp}http_port 127.0.0.1:{layout.port}
visible_hostname awf-bench-squid
pid_filename {r}/squid.pid
cache_log {r}/cache.log
access_log stdio:{r}/access.log
logfile_rotate 0
coredump_dir {r}
cache deny all
hosts_file {r}/hosts
dns_nameservers 127.0.0.1
pinger_enable off
max_filedescriptors {min(max_fds, MAX_FILEDESCRIPTORS)}
shutdown_lifetime 1 seconds
acl allowed_dst dstdomain .{ORIGIN_NAME}
acl bench_ports port {ports}
acl CONNECT method CONNECT
http_access deny !bench_ports
http_access allow allowed_dst
http_access deny all
"""


def prepare(layout: SquidLayout, allowed_ports: Sequence[int], max_fds: int,
            workers: int = 1) -> None:
    layout.root.mkdir(parents=True, exist_ok=True)
    (layout.root / "hosts").write_text(f"127.0.0.1 {ORIGIN_NAME}\n")
    layout.conf.write_text(squid_conf(layout, allowed_ports, max_fds, workers))
    try:
        pw = pwd.getpwnam(SQUID_USER)
    except KeyError:
        return
    for path in (layout.root, *layout.root.iterdir()):
        shutil.chown(path, pw.pw_uid, pw.pw_gid)


def squid_argv(layout: SquidLayout, workers: int = 1, cpus: str = "1") -> list[str]:
    """One process (`-N`), or with `workers` > 1 the SMP master in the foreground with its
    kids (`-N` would disable them)."""
    mode = ["-N"] if workers <= 1 else ["--foreground"]
    return ["taskset", "-c", cpus, "squid", *mode, "-d1", "-f", str(layout.conf)]


def squid_version() -> str:
    try:
        out = subprocess.run(
            ["squid", "-v"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError:
        return "not installed"
    return out.splitlines()[0].strip() if out else "unknown"
