"""`awf run --ssl-bump`: the run's CA, its files on a tmpfs, and what the proxy is told.

docs/proxy.md §11 says what awf-proxy does with a CA; this is the run's side of it, the same on
both backends:

- `authority`: a CA made in-process (proxy/bump_ca.py) for this run only. Its name constraints
  are the names the run allows (--allow-domains and its files, the --allow-urls hosts, and the
  names the backend adds itself, host.docker.internal with --enable-host-access), so a leaked key
  signs nothing else; it is valid from 5 minutes ago to max(24 h, --agent-timeout + 1 h).
- `write`: /dev/shm/awf-bump-<run>/, 0700 and owned by the proxy's user: ca-key.pem (0600, the
  proxy's user's), ca.pem, the command's bundle (the host's store and ca.pem) and a copy of
  --extra-ca-certs. Only the proxy is given the key: the Docker backend mounts it into the proxy
  container alone; on the netns backend the proxy runs as root, the command never does, and its
  sandbox has a /dev of its own. The command gets ca.pem and the bundle at fixed paths
  (containers/hostview.py `trust_mounts`) and the variables `containers.agentenv.bump_env` names.
- `wipe`: the key overwritten with zeros, the directory removed; at teardown, and by `awf
  cleanup` for a run whose awf was killed (`dead`: its `owner` pid is gone).

proxy/bump_ca.py (and with it cryptography, 0.05-0.1 s to import) is imported only by the
functions that make or write a CA, so a run without --ssl-bump never loads it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from awf.config import RunConfig
from containers.spec import Mount
from netfilter.errors import SandboxError
from proxy.errors import ConfigError

if TYPE_CHECKING:
    from datetime import datetime

    from proxy.bump_ca import CertificateAuthority

CA_KEY_FILE = "ca-key.pem"  # proxy/bump_ca.py's names (tests/unit/test_run_bump.py holds them)
CA_CERT_FILE = "ca.pem"
ROOT = Path("/dev/shm")
PREFIX = "awf-bump-"
BUNDLE_FILE = "ca-bundle.pem"  # the host's store and the run's CA: what the command trusts
EXTRA_FILE = "extra-ca.pem"  # --extra-ca-certs, for the proxy's upstream verification
OWNER_FILE = "owner"  # awf's pid, for `awf cleanup`
# the host's store, first found: Debian/Ubuntu/Alpine, Fedora/RHEL, others
HOST_STORES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
               "/etc/ssl/cert.pem")


@dataclass(frozen=True, slots=True)
class Files:
    """Where `write` put the run's CA (host paths)."""

    directory: Path
    key: Path
    cert: Path
    bundle: Path
    extra: Path | None  # the copy of --extra-ca-certs


def directory(run: str) -> Path:
    return ROOT / f"{PREFIX}{run}"


def constraint_names(cfg: RunConfig, extra_names: Sequence[str] = ()) -> tuple[list[str],
                                                                              list[str]]:
    """(allowed entries, blocked entries) the CA is limited to: the run's allowlist, the
    --allow-urls hosts and `extra_names` (names the backend allows itself)."""
    from proxy.config import build_rules

    proxy = cfg.proxy
    allow = [*proxy.allow_domains, *extra_names]  # the list files read in by parse_run
    rules = build_rules(proxy)
    if rules is not None:
        allow += rules.host_entries()
    block = list(proxy.block_domains)
    return allow, block


def authority(cfg: RunConfig, *, now: datetime | None = None,
              extra_names: Sequence[str] = ()) -> CertificateAuthority:
    """The run's CA; `now` defaults to the system clock."""
    from datetime import UTC, datetime, timedelta

    from proxy.bump_ca import CertificateAuthority, constraints_for

    allow, block = constraint_names(cfg, extra_names)
    timeout = timedelta(seconds=cfg.agent_timeout) if cfg.agent_timeout else None
    return CertificateAuthority.create(constraints_for(allow, block), now=now or datetime.now(UTC),
                                       agent_timeout=timeout)


def host_store() -> bytes:
    """The host's CA bundle (PEM), or b"" when it has none."""
    import ssl

    paths = [*HOST_STORES, ssl.get_default_verify_paths().cafile or ""]
    for path in filter(None, paths):
        with contextlib.suppress(OSError):
            return Path(path).read_bytes()
    return b""


def bundle_pem(store: bytes, ca_pem: bytes) -> bytes:
    """The command's bundle: the host's store, then the run's CA."""
    if store and not store.endswith(b"\n"):
        store += b"\n"
    return store + ca_pem


def write(ca: CertificateAuthority, run: str, *, uid: int, gid: int,
          extra_ca_certs: Path | None = None, store: bytes | None = None) -> Files:
    """The run's CA files (see the module's docstring); the key and the directory are given to
    uid:gid (the proxy's user) when awf runs as root. SandboxError (exit 125) if /dev/shm cannot
    take them; nothing is left behind then."""
    from proxy.bump_ca import write_ca

    d = directory(run)
    try:
        d.mkdir(mode=0o700)  # never one that exists (/dev/shm is everyone's): that is an error
    except OSError as exc:
        raise SandboxError(f"--ssl-bump: cannot make {d}: {exc.strerror or exc}") from exc
    try:
        os.chmod(d, 0o700)  # whatever the umask says
        (d / OWNER_FILE).write_text(f"{os.getpid()}\n")
        key, cert = write_ca(ca, d)
        bundle = d / BUNDLE_FILE
        bundle.write_bytes(bundle_pem(host_store() if store is None else store, ca.cert_pem()))
        extra = None
        if extra_ca_certs is not None:
            extra = d / EXTRA_FILE
            shutil.copyfile(extra_ca_certs, extra)
        for path in (cert, bundle, *([extra] if extra else [])):
            os.chmod(path, 0o644)
        if os.geteuid() == 0:
            os.chown(key, uid, gid)
            os.chown(d, uid, gid)
    except (OSError, ConfigError) as exc:
        wipe(run)
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SandboxError(f"--ssl-bump: cannot write the run's CA into {d}: {why}") from exc
    return Files(d, key, cert, bundle, extra)


def proxy_flags(cert: str, key: str, extra: str | None) -> list[str]:
    """awf-proxy's --ssl-bump flags, with the paths the proxy sees."""
    return ["--ssl-bump", "--ca-cert", cert, "--ca-key", key,
            *(["--extra-ca-certs", extra] if extra is not None else [])]


IN_PROXY = "/run/awf-ca"  # the Docker proxy container's view of the files it is given


def in_proxy_container(files: Files) -> tuple[list[str], tuple[Mount, ...]]:
    """The Docker backend: awf-proxy's flags and the proxy container's mounts (read-only): the
    key, the certificate and --extra-ca-certs' copy; never the directory itself."""
    mounts = [Mount(str(files.cert), f"{IN_PROXY}/{CA_CERT_FILE}"),
              Mount(str(files.key), f"{IN_PROXY}/{CA_KEY_FILE}")]
    extra = None
    if files.extra is not None:
        extra = f"{IN_PROXY}/{EXTRA_FILE}"
        mounts.append(Mount(str(files.extra), extra))
    return (proxy_flags(f"{IN_PROXY}/{CA_CERT_FILE}", f"{IN_PROXY}/{CA_KEY_FILE}", extra),
            tuple(mounts))


def wipe(run: str) -> None:
    """Overwrite the key with zeros, then remove the run's directory; idempotent."""
    d = directory(run)
    key = d / CA_KEY_FILE
    with contextlib.suppress(OSError):
        fd = os.open(key, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.write(fd, b"\0" * os.fstat(fd).st_size)
        finally:
            os.close(fd)
    shutil.rmtree(d, ignore_errors=True)


def dead(*, everything: bool = False) -> list[str]:
    """Runs whose CA directory is left and whose awf (its `owner` pid) is gone; with
    `everything`, live ones too."""
    out = []
    for d in sorted(ROOT.glob(f"{PREFIX}*")):
        if not everything:
            try:
                os.kill(int((d / OWNER_FILE).read_text()), 0)
                continue
            except (OSError, ValueError):
                pass
        out.append(d.name[len(PREFIX):])
    return out
