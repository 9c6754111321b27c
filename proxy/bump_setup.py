"""SSL bump's proxy-wide parts (docs/proxy.md §11): the CA from `--ca-cert`/`--ca-key`, the
upstream verification (`--extra-ca-certs`), the excluded hosts (`--ssl-bump-exclude`) and the idle
upstream TLS connections. The bumped connections themselves are `proxy/bump.py`.
"""

from __future__ import annotations

import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from proxy.bump_ca import CertificateAuthority, LeafCache
from proxy.errors import ConfigError
from proxy.policy import Policy, Scheme
from proxy.upstream import Pool

# ---------------------------------------------------------------------------- configuration


def load_ca_paths(cert_path: Path, key_path: Path) -> CertificateAuthority:
    """`--ca-cert`/`--ca-key`: the CA, or a ConfigError naming the file and the fix (a key
    readable by group or others is refused)."""
    try:
        fd = os.open(key_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
                raise ConfigError(f"--ca-key: {str(key_path)!r} is readable by others; "
                                  "chmod 600 it")
            with os.fdopen(os.dup(fd), "rb") as f:
                key_pem = f.read()
        finally:
            os.close(fd)
        cert_pem = Path(cert_path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"--ca-cert/--ca-key: cannot read {exc.filename!r}: {exc.strerror}; "
                          "make a CA with awf-proxy --make-ca DIR") from exc
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_pem)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the key is not an ECDSA key")
        return CertificateAuthority.of(key, cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ConfigError(f"--ca-cert/--ca-key: unusable CA: {exc}; make a new one with "
                          "awf-proxy --make-ca DIR") from exc


def upstream_context(extra_ca_certs: Path | None) -> ssl.SSLContext:
    """Verification for origins: the system store plus `--extra-ca-certs`, TLS 1.2 or later,
    hostname checked, ALPN http/1.1. Never relaxed."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["http/1.1"])
    if extra_ca_certs is not None:
        try:
            ctx.load_verify_locations(cafile=str(extra_ca_certs))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--extra-ca-certs: cannot load {str(extra_ca_certs)!r}: "
                              f"{exc}; give a PEM bundle") from exc
    return ctx


@dataclass(eq=False)
class Bumper:
    """What bumping needs for the whole proxy: the leaves, the upstream verification, the
    excluded hosts and the idle upstream TLS connections."""

    leaves: LeafCache
    upstream_ssl: ssl.SSLContext
    exclude: Policy | None

    def __post_init__(self) -> None:
        self.pool = Pool()  # idle verified TLS connections to origins, by (host, port)

    def excluded(self, host: str) -> bool:
        return self.exclude is not None and self.exclude.decide(host, 443,
                                                                Scheme.HTTPS).allowed

    def sweep(self) -> None:
        """Every idle period / 4 (server upkeep): idle upstreams live at most half of it."""
        self.pool.sweep()

    def clear(self) -> None:
        self.pool.clear()

    def close(self) -> None:
        self.clear()
        self.leaves.close()


def make_bumper(ca: CertificateAuthority, extra_ca_certs: Path | None,
                exclude: tuple[str, ...]) -> Bumper:
    excluded = Policy.build(allow_domains=list(exclude)) if exclude else None
    return Bumper(LeafCache(ca), upstream_context(extra_ca_certs), excluded)
