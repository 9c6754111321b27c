"""The per-run CA and its leaf certificates for SSL bump (docs/proxy.md §11), built in-process with
``cryptography`` (as mitmproxy's ``certs.py`` does): no ``openssl`` subprocess, no key on disk
that the caller did not ask for.

The CA:

* ECDSA P-256; ``basicConstraints`` critical ``CA:TRUE, pathlen:0`` (it signs leaves only);
  ``keyUsage`` critical ``keyCertSign, cRLSign``; ``extendedKeyUsage serverAuth`` (OpenSSL and
  others treat a CA's EKU as a limit, so a leaked key cannot sign client or code certificates).
* ``nameConstraints`` (critical, RFC 5280 §4.2.1.10) limited to what the run allows, so a leaked
  key can sign nothing else. Each allow entry contributes its *literal suffix*: the labels after
  the last label holding ``*`` (``*.example.com`` and ``api-*.example.com`` give ``example.com``;
  ``github.com`` gives ``github.com``, which in RFC 5280 covers its subdomains, as docs/proxy.md §2
  does). IP and CIDR entries become ``iPAddress`` subtrees (an IPv4 one with its IPv4-mapped
  IPv6 twin, as the policy allows both spellings). Constraints of one type say nothing
  about the other, so when no name (no address) is allowed the CA *excludes* every name (the
  empty ``dNSName``, which matches all) or every address (``0.0.0.0/0``, ``::/0``). Plain
  blocked names and blocked networks inside a permitted subtree are excluded too.
  ``http://``-only entries are skipped: plain HTTP is never bumped.
* Validity from ``now - 5 min`` (clock skew) to ``now + max(24 h, agent timeout + 1 h)``.

Leaves: one P-256 key per ``LeafCache`` (per proxy), one certificate per exact name (``dNSName``
SAN and CN, or an ``iPAddress`` SAN and no CN for an IP literal; never a wildcard; no CN either
for names over 64 characters, the SAN then critical), valid as long as the CA,
``CA:FALSE``, ``digitalSignature``, ``serverAuth``. Each becomes a server ``ssl.SSLContext``
(TLS 1.2 or later, ALPN ``http/1.1`` only), cached in an LRU (4096 by default).

Key storage: ``ssl.SSLContext.load_cert_chain`` only reads files, so the leaf key is written once
into an anonymous ``memfd`` (RAM, no name in any file system, close-on-exec) that stays open for
the cache's lifetime, and each leaf certificate into a short-lived ``memfd``; both are read
through ``/proc/self/fd/N``. Nothing of the leaves ever reaches a disk. The CA key is written only
by ``write_ca`` into the directory the caller names (a tmpfs, per docs/proxy.md §11), 0600.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import ssl
import stat
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from proxy.addr import IPNetwork, parse_ip_literal
from proxy.errors import ConfigError
from proxy.hostnames import normalise_name
from proxy.policy import Scheme, parse_entry

CA_KEY_FILE = "ca-key.pem"
CA_CERT_FILE = "ca.pem"
LEAF_CACHE_SIZE = 4096
BACKDATE = timedelta(minutes=5)
MIN_LIFETIME = timedelta(hours=24)
TIMEOUT_MARGIN = timedelta(hours=1)
ALPN = ("http/1.1",)

_ALL_V4 = ipaddress.IPv4Network("0.0.0.0/0")
_ALL_V6 = ipaddress.IPv6Network("::/0")
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_CN_MAX = 64  # X.520 upper bound on commonName


# ---------------------------------------------------------------------------- name constraints


@dataclass(frozen=True, slots=True)
class Constraints:
    """The CA's name constraints, as RFC 5280 reads them. An empty permitted tuple means "this
    type is not limited"; the empty name in ``excluded_names`` excludes every name."""

    names: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()
    excluded_names: tuple[str, ...] = ()
    excluded_networks: tuple[IPNetwork, ...] = ()

    def permits(self, host: str) -> bool:
        """Would a leaf for ``host`` (a normalised name, or an IP literal) pass the constraints?"""
        ip = parse_ip_literal(host) if _looks_like_ip(host) else None
        if ip is not None:
            if any(ip in n for n in self.excluded_networks if n.version == ip.version):
                return False
            return not self.networks or any(ip in n for n in self.networks
                                            if n.version == ip.version)
        if any(_under(host, e) for e in self.excluded_names):
            return False
        return not self.names or any(_under(host, n) for n in self.names)

    def extension(self) -> x509.NameConstraints:
        permitted: list[x509.GeneralName] = [x509.DNSName(n) for n in self.names]
        permitted += [x509.IPAddress(n) for n in self.networks]
        excluded: list[x509.GeneralName] = [x509.DNSName(n) for n in self.excluded_names]
        excluded += [x509.IPAddress(n) for n in self.excluded_networks]
        return x509.NameConstraints(permitted_subtrees=permitted or None,
                                    excluded_subtrees=excluded or None)

    @classmethod
    def from_extension(cls, ext: x509.NameConstraints) -> Constraints:
        def split(trees: list[x509.GeneralName] | None) -> tuple[tuple[str, ...],
                                                                 tuple[IPNetwork, ...]]:
            names = tuple(str(t.value) for t in trees or () if isinstance(t, x509.DNSName))
            nets = tuple(t.value for t in trees or () if isinstance(t, x509.IPAddress)
                         if isinstance(t.value, ipaddress.IPv4Network | ipaddress.IPv6Network))
            return names, nets
        names, networks = split(ext.permitted_subtrees)
        excluded_names, excluded_networks = split(ext.excluded_subtrees)
        return cls(names, networks, excluded_names, excluded_networks)


def constraints_for(allow: Iterable[str], block: Iterable[str] = ()) -> Constraints:
    """The constraints for a run allowing ``allow`` (``--allow-domains`` entries, and the hosts of
    ``--allow-urls`` patterns, in entry syntax) and blocking ``block``. ``ConfigError`` for a bad
    entry, as ``Policy.build`` would raise."""
    entries = [parse_entry(e, what="--allow-domains") for e in allow]
    suffixes = {_literal_suffix(str(e.name)) for e in entries
                if e.name is not None and Scheme.HTTPS in e.schemes}
    names = tuple(sorted(n for n in suffixes
                         if not any(o != n and _under(n, o) for o in suffixes)))
    networks = _collapse(e.network for e in entries
                         if e.network is not None and Scheme.HTTPS in e.schemes)
    blocked = [parse_entry(e, what="--block-domains") for e in block]
    excluded_names = sorted({str(b.name) for b in blocked
                             if b.name is not None and not b.wildcard
                             and any(_under(str(b.name), n) for n in names)})
    excluded_networks = [b.network for b in blocked if b.network is not None
                         and any(b.network.overlaps(n) for n in networks
                                 if n.version == b.network.version)]
    if not names:
        excluded_names = [""]
    if not networks:
        excluded_networks = [_ALL_V4, _ALL_V6]
    return Constraints(names, networks, tuple(excluded_names), _collapse(excluded_networks))


def _literal_suffix(name: str) -> str:
    labels = name.split(".")
    for i in range(len(labels) - 1, -1, -1):
        if "*" in labels[i]:
            return ".".join(labels[i + 1:])
    return name


def _under(name: str, base: str) -> bool:
    """RFC 5280 dNSName subtree: ``base`` itself or a name made by adding labels on the left;
    the empty base covers every name."""
    return not base or name == base or name.endswith("." + base)


def _looks_like_ip(host: str) -> bool:
    try:
        return parse_ip_literal(host) is not None
    except ValueError:
        return False


def _collapse(networks: Iterable[IPNetwork]) -> tuple[IPNetwork, ...]:
    """Merged networks, v4 first; each IPv4 network brings its IPv4-mapped IPv6 twin
    (``::ffff:a.b.c.d``), which the policy treats as the same address but X.509 does not."""
    nets = list(networks)
    nets += [ipaddress.IPv6Network((int(_MAPPED.network_address) | int(n.network_address),
                                    96 + n.prefixlen))
             for n in nets if isinstance(n, ipaddress.IPv4Network)]
    v4 = ipaddress.collapse_addresses(n for n in nets if isinstance(n, ipaddress.IPv4Network))
    v6 = ipaddress.collapse_addresses(n for n in nets if isinstance(n, ipaddress.IPv6Network))
    return (*v4, *v6)


# ---------------------------------------------------------------------------- the CA


def ca_validity(now: datetime, agent_timeout: timedelta | None = None) -> tuple[datetime,
                                                                              datetime]:
    """``(not_before, not_after)``: from 5 minutes ago to ``max(24 h, timeout + 1 h)`` ahead."""
    lifetime = MIN_LIFETIME if agent_timeout is None else max(MIN_LIFETIME,
                                                              agent_timeout + TIMEOUT_MARGIN)
    return now - BACKDATE, now + lifetime


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A CA key and certificate; ``constraints`` are read back from the certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    constraints: Constraints

    @classmethod
    def create(cls, constraints: Constraints, *, now: datetime,
               agent_timeout: timedelta | None = None) -> CertificateAuthority:
        """A new CA limited to ``constraints``; ``now`` is the caller's clock (UTC)."""
        key = ec.generate_private_key(ec.SECP256R1())
        not_before, not_after = ca_validity(now, agent_timeout)
        name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "awf"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"awf run CA {secrets.token_hex(4)}"),
        ])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(constraints.extension(), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert, constraints)

    @classmethod
    def of(cls, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> CertificateAuthority:
        """Check that ``key`` and ``cert`` make one of our CAs; ``ValueError`` naming the fault."""
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"the key is on {key.curve.name}, not P-256")
        if cert.public_key() != key.public_key():
            raise ValueError("the key does not belong to the certificate")
        try:
            basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            nc = cert.extensions.get_extension_for_class(x509.NameConstraints).value
        except x509.ExtensionNotFound as exc:
            raise ValueError(f"the certificate is not an awf CA: {exc}") from exc
        if not basic.ca or basic.path_length != 0:
            raise ValueError("the certificate is not a CA with pathlen 0")
        return cls(key, cert, Constraints.from_extension(nc))

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def issue(self, host: str, leaf_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
        """A leaf for one exact name or IP literal (``leaf_name`` form). ``ValueError`` if the
        name is outside the constraints: no client would accept such a leaf."""
        if not self.constraints.permits(host):
            raise ValueError(f"{host!r} is outside the CA's name constraints")
        return sign_leaf(self, host, leaf_key)


def sign_leaf(ca: CertificateAuthority, host: str,
              leaf_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """Sign a leaf for ``host`` without checking the constraints (tests forge with it)."""
    ip = parse_ip_literal(host) if _looks_like_ip(host) else None
    san: x509.GeneralName = x509.IPAddress(ip) if ip is not None else x509.DNSName(host)
    # No CN for an IP: OpenSSL checks a CN that looks like a hostname ("203.0.113.7" does)
    # against the dNSName constraints, and clients read the SAN anyway.
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]
                        if ip is None and len(host) <= _CN_MAX else [])
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(ca.cert.not_valid_before_utc)
        .not_valid_after(ca.cert.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([san]), critical=not subject)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .sign(ca.key, hashes.SHA256())
    )


def leaf_name(host: str) -> str:
    """The exact name a leaf is made for: the canonical text of an IP literal, else the
    normalised hostname. ``ValueError`` if ``host`` is neither."""
    ip = parse_ip_literal(host)
    return str(ip) if ip is not None else normalise_name(host)


# ---------------------------------------------------------------------------- files (the edge)


def write_ca(ca: CertificateAuthority, directory: Path) -> tuple[Path, Path]:
    """Write ``ca-key.pem`` (0600) and ``ca.pem`` (0644) into ``directory`` (made 0700 if
    missing); never overwrites or follows a symlink. Returns ``(key_path, cert_path)``."""
    directory = Path(directory)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--make-ca: cannot create {str(directory)!r}: {exc.strerror}; "
                          "choose a writable directory") from exc
    key_path, cert_path = directory / CA_KEY_FILE, directory / CA_CERT_FILE
    _write_new(key_path, ca.key_pem(), 0o600)
    try:
        _write_new(cert_path, ca.cert_pem(), 0o644)
    except ConfigError:
        key_path.unlink(missing_ok=True)
        raise
    return key_path, cert_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError as exc:
        raise ConfigError(f"--make-ca: {str(path)!r} already exists; remove it or choose "
                          "another directory") from exc
    except OSError as exc:
        raise ConfigError(f"--make-ca: cannot create {str(path)!r}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, mode)  # whatever the umask says
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def load_ca(directory: Path, *, now: datetime | None = None) -> CertificateAuthority:
    """Read back what ``write_ca`` wrote; ``ConfigError`` naming the file and the fix if it is
    missing, readable by others, expired, or not one of our CAs."""
    directory = Path(directory)
    key_path, cert_path = directory / CA_KEY_FILE, directory / CA_CERT_FILE
    try:
        fd = os.open(key_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
                raise ConfigError(f"CA key {str(key_path)!r} is readable by others; "
                                  f"chmod 600 it")
            with os.fdopen(os.dup(fd), "rb") as f:
                key_pem = f.read()
        finally:
            os.close(fd)
        cert_pem = cert_path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the CA in {str(directory)!r}: {exc}; make one with "
                          "--make-ca") from exc
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_pem)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the key is not an ECDSA key")
        ca = CertificateAuthority.of(key, cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ConfigError(f"the CA in {str(directory)!r} is unusable: {exc}; make a new one "
                          "with --make-ca") from exc
    if now is not None and not (cert.not_valid_before_utc <= now < cert.not_valid_after_utc):
        raise ConfigError(f"the CA in {str(directory)!r} is valid from "
                          f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                          f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not now; make a new "
                          "one with --make-ca")
    return ca


def make_ca_files(directory: Path, names: Iterable[str], *, block: Iterable[str] = (),
                  agent_timeout: timedelta | None = None,
                  now: datetime | None = None) -> CertificateAuthority:
    """``awf-proxy --make-ca DIR``: a CA for ``names`` (allow entries), written into
    ``directory``. ``now`` defaults to the system clock."""
    constraints = constraints_for(names, block)
    ca = CertificateAuthority.create(constraints, now=now or datetime.now(UTC),
                                     agent_timeout=agent_timeout)
    write_ca(ca, Path(directory))
    return ca


def wipe_ca_files(directory: Path) -> None:
    """Overwrite the CA key with zeros, then remove both files (cleanup); missing files are
    fine."""
    key_path = Path(directory) / CA_KEY_FILE
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        pass
    else:
        try:
            os.write(fd, b"\0" * os.fstat(fd).st_size)
        finally:
            os.close(fd)
    key_path.unlink(missing_ok=True)
    (Path(directory) / CA_CERT_FILE).unlink(missing_ok=True)


# ---------------------------------------------------------------------------- leaves


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        raise
    return fd


def server_context(cert_pem: bytes, key_path: str) -> ssl.SSLContext:
    """A server context for one leaf: TLS 1.2 or later, ALPN ``http/1.1`` only, no
    renegotiation. The certificate goes through a short-lived ``memfd``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    ctx.set_alpn_protocols(list(ALPN))
    fd = _memfd("awf-leaf-cert", cert_pem)
    try:
        ctx.load_cert_chain(f"/proc/self/fd/{fd}", key_path)
    finally:
        os.close(fd)
    return ctx


class LeafCache:
    """Server contexts per exact name, signed by ``ca``, kept in an LRU of ``maxsize``.

    One leaf key for the whole cache (generated unless given), held in a ``memfd``; call
    ``close()`` (or drop the cache) to release it. Not thread-safe: use it from the event loop.
    """

    def __init__(self, ca: CertificateAuthority, *, maxsize: int = LEAF_CACHE_SIZE,
                 key: ec.EllipticCurvePrivateKey | None = None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.ca = ca
        self.maxsize = maxsize
        self.issued = 0
        self._key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
        self._contexts: OrderedDict[str, ssl.SSLContext] = OrderedDict()
        key_pem = self._key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())
        self._key_fd = _memfd("awf-leaf-key", key_pem)
        self._finalizer = weakref.finalize(self, os.close, self._key_fd)

    def context_for(self, host: str) -> ssl.SSLContext:
        """The server context for ``host`` (a name or an IP literal, any accepted spelling).
        ``ValueError`` if it is not a valid name or lies outside the CA's constraints: the
        policy should never have let such a host be bumped."""
        if not self._finalizer.alive:
            raise ValueError("the leaf cache is closed")
        name = leaf_name(host)
        ctx = self._contexts.get(name)
        if ctx is not None:
            self._contexts.move_to_end(name)
            return ctx
        cert = self.ca.issue(name, self._key)
        ctx = server_context(cert.public_bytes(serialization.Encoding.PEM),
                             f"/proc/self/fd/{self._key_fd}")
        self.issued += 1
        self._contexts[name] = ctx
        if len(self._contexts) > self.maxsize:
            self._contexts.popitem(last=False)
        return ctx

    def __len__(self) -> int:
        return len(self._contexts)

    def __contains__(self, host: object) -> bool:
        """Is a context for ``host`` (any accepted spelling) cached?"""
        if not isinstance(host, str):
            return False
        try:
            return leaf_name(host) in self._contexts
        except ValueError:
            return False

    def close(self) -> None:
        self._contexts.clear()
        self._finalizer()


__all__ = [
    "ALPN",
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "LEAF_CACHE_SIZE",
    "CertificateAuthority",
    "Constraints",
    "LeafCache",
    "ca_validity",
    "constraints_for",
    "leaf_name",
    "load_ca",
    "make_ca_files",
    "server_context",
    "sign_leaf",
    "wipe_ca_files",
    "write_ca",
]
