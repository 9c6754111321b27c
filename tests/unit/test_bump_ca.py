"""The SSL-bump CA and its leaves (proxy/bump_ca.py): the CA's fields, its name constraints
(checked by OpenSSL itself, with leaves forged outside them), leaves, the LRU, handshakes over
memory BIOs, the files, and how long a leaf takes (printed, not asserted)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import ssl
import stat
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from proxy.bump_ca import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CertificateAuthority,
    Constraints,
    LeafCache,
    ca_validity,
    constraints_for,
    leaf_name,
    load_ca,
    make_ca_files,
    sign_leaf,
    wipe_ca_files,
    write_ca,
)
from proxy.errors import ConfigError

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
ALLOW = ["github.com", "api.github.com", "*.githubusercontent.com", "api-*.example.com",
         "https://secure.example.net", "http://plain.example.org", "203.0.113.7",
         "198.51.100.0/24", "[2001:db8::1]"]
BLOCK = ["gist.github.com", "*.evil.githubusercontent.com", "198.51.100.128/25", "other.test"]


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(constraints_for(ALLOW, BLOCK),
                                       now=datetime.now(UTC))


@pytest.fixture(scope="module")
def leaf_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def cache(ca: CertificateAuthority) -> Iterator[LeafCache]:
    c = LeafCache(ca)
    yield c
    c.close()


# ---------------------------------------------------------------------------- constraints


def test_constraints_are_the_literal_suffixes() -> None:
    c = constraints_for(ALLOW, BLOCK)
    # api.github.com is inside github.com; http:// entries are never bumped
    assert c.names == ("example.com", "github.com", "githubusercontent.com",
                       "secure.example.net")
    assert c.networks == (ipaddress.ip_network("198.51.100.0/24"),
                          ipaddress.ip_network("203.0.113.7/32"),
                          ipaddress.ip_network("::ffff:198.51.100.0/120"),   # mapped twins
                          ipaddress.ip_network("::ffff:203.0.113.7/128"),
                          ipaddress.ip_network("2001:db8::1/128"))
    # only plain blocked names and networks inside what is permitted
    assert c.excluded_names == ("gist.github.com",)
    assert c.excluded_networks == (ipaddress.ip_network("198.51.100.128/25"),
                                   ipaddress.ip_network("::ffff:198.51.100.128/121"))


@pytest.mark.parametrize(("allow", "names"), [
    (["*.example.com"], ("example.com",)),
    (["api-*.example.com"], ("example.com",)),
    (["a*b.c.example.com"], ("c.example.com",)),
    (["x.*.example.com"], ("example.com",)),
    (["github.com"], ("github.com",)),
    (["GitHub.COM."], ("github.com",)),
    (["münchen.de"], ("xn--mnchen-3ya.de",)),
    (["https://github.com/"], ("github.com",)),
    (["a.b.test", "b.test", "c.test"], ("b.test", "c.test")),
])
def test_literal_suffix(allow: list[str], names: tuple[str, ...]) -> None:
    c = constraints_for(allow)
    assert c.names == names
    assert c.networks == ()
    assert c.excluded_networks == (ipaddress.ip_network("0.0.0.0/0"),
                                   ipaddress.ip_network("::/0"))


def test_no_names_excludes_every_name() -> None:
    c = constraints_for(["10.0.0.1", "http://plain.example.org"])
    assert c.names == ()
    assert c.excluded_names == ("",)
    assert not c.permits("example.org")
    assert not c.permits("plain.example.org")
    assert c.permits("10.0.0.1")
    nothing = constraints_for([])
    assert not nothing.permits("a.test")
    assert not nothing.permits("1.2.3.4")
    assert not nothing.permits("::1")


def test_bad_entry_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="too broad"):
        constraints_for(["*.com"])


@pytest.mark.parametrize(("host", "permitted"), [
    ("github.com", True),
    ("api.github.com", True),
    ("a.b.github.com", True),
    ("gist.github.com", False),          # blocked: excluded
    ("x.gist.github.com", False),
    ("notgist.github.com", True),
    ("notgithub.com", False),
    ("github.com.evil.test", False),
    ("example.com", True),               # the literal suffix of api-*.example.com
    ("api-v2.example.com", True),
    ("evil.example.com", True),          # coarser than the policy: the policy still decides
    ("example.com.evil.test", False),
    ("secure.example.net", True),
    ("example.net", False),
    ("plain.example.org", False),        # http:// only
    ("other.test", False),
    ("203.0.113.7", True),
    ("203.0.113.8", False),
    ("198.51.100.1", True),
    ("198.51.100.200", False),           # blocked half of the /24
    ("2001:db8::1", True),
    ("2001:db8::2", False),
    ("::ffff:203.0.113.7", True),        # the policy allows the mapped spelling too
    ("::ffff:203.0.113.8", False),
    ("::ffff:198.51.100.200", False),
    ("64:ff9b::203.0.113.7", False),     # NAT64: not the same address to the policy either
])
def test_permits(ca: CertificateAuthority, host: str, permitted: bool) -> None:
    assert ca.constraints.permits(host) is permitted


def test_constraints_round_trip_through_the_extension() -> None:
    c = constraints_for(ALLOW, BLOCK)
    assert Constraints.from_extension(c.extension()) == c
    empty = constraints_for([])
    assert Constraints.from_extension(empty.extension()) == empty


# ---------------------------------------------------------------------------- the CA's fields


def test_validity() -> None:
    assert ca_validity(NOW) == (NOW - timedelta(minutes=5), NOW + timedelta(hours=24))
    assert ca_validity(NOW, timedelta(hours=2)) == (NOW - timedelta(minutes=5),
                                                    NOW + timedelta(hours=24))
    assert ca_validity(NOW, timedelta(hours=30))[1] == NOW + timedelta(hours=31)


def test_ca_fields() -> None:
    ca = CertificateAuthority.create(constraints_for(ALLOW, BLOCK), now=NOW,
                                     agent_timeout=timedelta(hours=48))
    cert = ca.cert
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(ca.key.curve, ec.SECP256R1)
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + timedelta(hours=49)
    assert cert.issuer == cert.subject
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "awf"
    cert.verify_directly_issued_by(cert)  # self-signed

    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical
    assert basic.value.ca
    assert basic.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    nc = cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical
    assert nc.value.permitted_subtrees is not None
    permitted = {t.value for t in nc.value.permitted_subtrees}
    assert permitted == {"example.com", "githubusercontent.com", "github.com",
                         "secure.example.net", ipaddress.ip_network("198.51.100.0/24"),
                         ipaddress.ip_network("203.0.113.7/32"),
                         ipaddress.ip_network("::ffff:198.51.100.0/120"),
                         ipaddress.ip_network("::ffff:203.0.113.7/128"),
                         ipaddress.ip_network("2001:db8::1/128")}
    assert nc.value.excluded_subtrees is not None
    assert {t.value for t in nc.value.excluded_subtrees} == {
        "gist.github.com", ipaddress.ip_network("198.51.100.128/25"),
        ipaddress.ip_network("::ffff:198.51.100.128/121")}
    assert ca.constraints == constraints_for(ALLOW, BLOCK)
    assert CertificateAuthority.of(ca.key, cert).constraints == ca.constraints


def test_of_rejects_a_foreign_key(ca: CertificateAuthority) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError, match="does not belong"):
        CertificateAuthority.of(other, ca.cert)
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="not P-256"):
        CertificateAuthority.of(p384, ca.cert)


# ---------------------------------------------------------------------------- leaves


def test_leaf_fields(ca: CertificateAuthority, leaf_key: ec.EllipticCurvePrivateKey) -> None:
    leaf = ca.issue("api.github.com", leaf_key)
    leaf.verify_directly_issued_by(ca.cert)
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "api.github.com"
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["api.github.com"]
    assert not san.critical
    basic = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical
    assert not basic.value.ca
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert leaf.not_valid_before_utc == ca.cert.not_valid_before_utc
    assert leaf.not_valid_after_utc == ca.cert.not_valid_after_utc
    assert leaf.public_key() == leaf_key.public_key()


def test_ip_leaf(ca: CertificateAuthority, leaf_key: ec.EllipticCurvePrivateKey) -> None:
    leaf = ca.issue(leaf_name("[2001:db8:0::1]"), leaf_key)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("2001:db8::1")]
    assert san.get_values_for_type(x509.DNSName) == []
    assert leaf.subject == x509.Name([])   # OpenSSL would check an IPv4 CN as a name
    assert san_critical(leaf)


def test_long_name_leaf_has_no_common_name(ca: CertificateAuthority,
                                           leaf_key: ec.EllipticCurvePrivateKey) -> None:
    name = ".".join(["a" * 60] * 3) + ".github.com"
    leaf = ca.issue(name, leaf_key)
    assert leaf.subject == x509.Name([])
    assert san_critical(leaf)


def san_critical(leaf: x509.Certificate) -> bool:
    return leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


@pytest.mark.parametrize("host", ["evil.test", "notgithub.com", "gist.github.com",
                                  "203.0.113.8", "plain.example.org"])
def test_no_leaf_outside_the_constraints(ca: CertificateAuthority,
                                         leaf_key: ec.EllipticCurvePrivateKey,
                                         host: str) -> None:
    with pytest.raises(ValueError, match="outside the CA's name constraints"):
        ca.issue(host, leaf_key)


@pytest.mark.parametrize(("host", "name"), [
    ("API.GitHub.com.", "api.github.com"),
    ("127.1", "127.0.0.1"),
    ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
])
def test_leaf_name(host: str, name: str) -> None:
    assert leaf_name(host) == name


@pytest.mark.parametrize("host", ["", "a..b", "a b", "x" * 300, "[nope]"])
def test_leaf_name_rejects(host: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the fault
        leaf_name(host)


# ---------------------------------------------------------------------------- OpenSSL's verdict

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _openssl_verify(tmp_path: Path, ca: CertificateAuthority, leaf: x509.Certificate,
                    *extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem())
    (tmp_path / "leaf.pem").write_bytes(_pem(leaf))
    return subprocess.run(
        [str(OPENSSL), "verify", "-CAfile", str(tmp_path / "ca.pem"), *extra,
         str(tmp_path / "leaf.pem")],
        capture_output=True, text=True, timeout=30, check=False)


@needs_openssl
@pytest.mark.parametrize("host", ["github.com", "api.github.com", "raw.githubusercontent.com",
                                  "api-v2.example.com", "secure.example.net", "203.0.113.7",
                                  "198.51.100.9", "2001:db8::1", "::ffff:203.0.113.7"])
def test_openssl_verifies_a_leaf(tmp_path: Path, ca: CertificateAuthority,
                                 leaf_key: ec.EllipticCurvePrivateKey, host: str) -> None:
    leaf = ca.issue(host, leaf_key)
    done = _openssl_verify(tmp_path, ca, leaf, "-purpose", "sslserver")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith(": OK")


@needs_openssl
@pytest.mark.parametrize(("host", "error"), [
    ("evil.test", "permitted subtree violation"),
    ("notgithub.com", "permitted subtree violation"),
    ("github.com.evil.test", "permitted subtree violation"),
    ("example.net", "permitted subtree violation"),
    ("gist.github.com", "excluded subtree violation"),       # blocked
    ("raw.gist.github.com", "excluded subtree violation"),
    ("203.0.113.8", "permitted subtree violation"),
    ("198.51.100.200", "excluded subtree violation"),        # blocked half
    ("2001:db8::2", "permitted subtree violation"),
    ("::ffff:198.51.100.200", "excluded subtree violation"),
    ("64:ff9b::cb00:7107", "permitted subtree violation"),
])
def test_openssl_rejects_a_leaf_forged_outside_the_constraints(
        tmp_path: Path, ca: CertificateAuthority, leaf_key: ec.EllipticCurvePrivateKey,
        host: str, error: str) -> None:
    """What a leaked CA key could sign, it signs in vain: forged with the key directly."""
    forged = sign_leaf(ca, host, leaf_key)
    forged.verify_directly_issued_by(ca.cert)  # the signature itself is good
    done = _openssl_verify(tmp_path, ca, forged)
    assert done.returncode != 0
    assert error in done.stdout + done.stderr


@needs_openssl
def test_openssl_rejects_any_name_from_an_ip_only_ca(
        tmp_path: Path, leaf_key: ec.EllipticCurvePrivateKey) -> None:
    ca = CertificateAuthority.create(constraints_for(["10.1.2.3"]), now=datetime.now(UTC))
    assert _openssl_verify(tmp_path, ca, ca.issue("10.1.2.3", leaf_key)).returncode == 0
    done = _openssl_verify(tmp_path, ca, sign_leaf(ca, "github.com", leaf_key))
    assert done.returncode != 0
    assert "excluded subtree violation" in done.stdout + done.stderr


@needs_openssl
def test_openssl_rejects_any_ip_from_a_names_only_ca(
        tmp_path: Path, leaf_key: ec.EllipticCurvePrivateKey) -> None:
    ca = CertificateAuthority.create(constraints_for(["github.com"]), now=datetime.now(UTC))
    for ip in ("1.2.3.4", "::1"):
        done = _openssl_verify(tmp_path, ca, sign_leaf(ca, ip, leaf_key))
        assert done.returncode != 0
        assert "excluded subtree violation" in done.stdout + done.stderr


@needs_openssl
def test_openssl_rejects_a_forged_common_name_without_san(
        tmp_path: Path, ca: CertificateAuthority, leaf_key: ec.EllipticCurvePrivateKey) -> None:
    """Clients that still read the CN when there is no SAN: OpenSSL checks it against the
    dNSName constraints too."""
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    forged = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil.test")]))
        .issuer_name(ca.cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(ca.cert.not_valid_before_utc)
        .not_valid_after(ca.cert.not_valid_after_utc)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .sign(ca.key, ca.cert.signature_hash_algorithm)  # type: ignore[arg-type]
    )
    done = _openssl_verify(tmp_path, ca, forged)
    assert done.returncode != 0
    assert "subtree violation" in done.stdout + done.stderr


# ---------------------------------------------------------------------------- handshakes


def _client_context(ca: CertificateAuthority, *, alpn: list[str] | None = None,
                    maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)   # hostname checks and verification on
    ctx.load_verify_locations(cadata=ca.cert_pem().decode())  # the only trust anchor
    ctx.set_alpn_protocols(alpn or ["h2", "http/1.1"])
    if maximum is not None:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = maximum
    return ctx


def _handshake(client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext,
               server_hostname: str) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Drive both ends of a handshake through memory BIOs; raises the first SSLError."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, obj in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            # TLS 1.3: the client is done first; one exchange of application data settles it
            client.write(b"ping")
            s_in.write(c_out.read())
            assert server.read(4) == b"ping"
            return client, server
    raise AssertionError("handshake did not finish")


@pytest.mark.parametrize("host", ["api.github.com", "API.GitHub.com", "203.0.113.7",
                                  "2001:db8::1"])
def test_memory_bio_handshake(ca: CertificateAuthority, cache: LeafCache, host: str) -> None:
    client, server = _handshake(_client_context(ca), cache.context_for(host),
                                leaf_name(host))
    assert client.selected_alpn_protocol() == "http/1.1"
    assert server.selected_alpn_protocol() == "http/1.1"
    assert client.version() in ("TLSv1.2", "TLSv1.3")
    peer = client.getpeercert()
    assert peer is not None


def test_handshake_without_alpn(ca: CertificateAuthority, cache: LeafCache) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=ca.cert_pem().decode())
    client, _ = _handshake(ctx, cache.context_for("github.com"), "github.com")
    assert client.selected_alpn_protocol() is None


def test_h2_only_client_gets_no_alpn_agreement(ca: CertificateAuthority,
                                               cache: LeafCache) -> None:
    """Python's server answers no ALPN (rather than an alert) when nothing overlaps: the
    client is never told h2."""
    client, server = _handshake(_client_context(ca, alpn=["h2"]),
                                cache.context_for("github.com"), "github.com")
    assert client.selected_alpn_protocol() is None
    assert server.selected_alpn_protocol() is None


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_is_refused(ca: CertificateAuthority, cache: LeafCache) -> None:
    with pytest.raises(ssl.SSLError):
        _handshake(_client_context(ca, maximum=ssl.TLSVersion.TLSv1_1),
                   cache.context_for("github.com"), "github.com")


def test_tls_1_2_is_accepted(ca: CertificateAuthority, cache: LeafCache) -> None:
    client, _ = _handshake(_client_context(ca, maximum=ssl.TLSVersion.TLSv1_2),
                           cache.context_for("github.com"), "github.com")
    assert client.version() == "TLSv1.2"


def test_hostname_is_checked(ca: CertificateAuthority, cache: LeafCache) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        _handshake(_client_context(ca), cache.context_for("github.com"), "api.github.com")


def test_python_client_rejects_a_forged_leaf(ca: CertificateAuthority,
                                             leaf_key: ec.EllipticCurvePrivateKey,
                                             tmp_path: Path) -> None:
    """The same forgery as for `openssl verify`, now through a real handshake."""
    forged = sign_leaf(ca, "evil.test", leaf_key)
    (tmp_path / "forged.pem").write_bytes(_pem(forged))
    (tmp_path / "key.pem").write_bytes(leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "forged.pem", tmp_path / "key.pem")
    with pytest.raises(ssl.SSLCertVerificationError, match="subtree violation"):
        _handshake(_client_context(ca), server, "evil.test")


def test_another_ca_is_not_trusted(cache: LeafCache) -> None:
    other = CertificateAuthority.create(constraints_for(["github.com"]), now=datetime.now(UTC))
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(_client_context(other), cache.context_for("github.com"), "github.com")


# ---------------------------------------------------------------------------- the LRU


def test_lru_bound(ca: CertificateAuthority) -> None:
    cache = LeafCache(ca, maxsize=3)
    try:
        first = cache.context_for("a.github.com")
        assert cache.context_for("A.GitHub.com.") is first   # one leaf per normalised name
        cache.context_for("b.github.com")
        cache.context_for("c.github.com")
        assert cache.context_for("a.github.com") is first    # a hit makes it the newest
        cache.context_for("d.github.com")                    # evicts b, the oldest
        assert len(cache) == 3
        assert "b.github.com" not in cache
        assert "A.GITHUB.COM." in cache
        assert "a..b" not in cache
        assert all(n in cache for n in ("a.github.com", "c.github.com", "d.github.com"))
        assert cache.issued == 4
        cache.context_for("b.github.com")                    # made again
        assert cache.issued == 5
        assert len(cache) == 3
        assert "c.github.com" not in cache
    finally:
        cache.close()


def test_default_bound_is_4096(ca: CertificateAuthority) -> None:
    cache = LeafCache(ca)
    assert cache.maxsize == 4096
    cache.close()


def test_closed_cache_refuses(ca: CertificateAuthority) -> None:
    cache = LeafCache(ca)
    cache.context_for("github.com")
    cache.close()
    cache.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        cache.context_for("github.com")


def test_cache_refuses_outside_names(cache: LeafCache) -> None:
    with pytest.raises(ValueError, match="outside"):
        cache.context_for("evil.test")
    assert len(cache) == 0


def test_leaf_key_lives_in_a_memfd(cache: LeafCache) -> None:
    """Nothing of the leaf key reaches a file system: the context reads it from a memfd."""
    fd = cache._key_fd
    assert os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:awf-leaf-key")
    assert os.get_inheritable(fd) is False


def test_leaf_generation_speed(ca: CertificateAuthority) -> None:
    """Measured, not asserted: the machine is shared."""
    cache = LeafCache(ca, maxsize=1000)
    n = 200
    try:
        key = ec.generate_private_key(ec.SECP256R1())
        t0 = time.perf_counter()
        for i in range(n):
            ca.issue(f"h{i}.github.com", key)
        t1 = time.perf_counter()
        for i in range(n):
            cache.context_for(f"h{i}.github.com")
        t2 = time.perf_counter()
        for i in range(n):
            cache.context_for(f"h{i}.github.com")
        t3 = time.perf_counter()
    finally:
        cache.close()
    print(f"\nleaf certificate: {(t1 - t0) / n * 1e3:.3f} ms; leaf + SSLContext: "
          f"{(t2 - t1) / n * 1e3:.3f} ms; cached: {(t3 - t2) / n * 1e6:.1f} us")


# ---------------------------------------------------------------------------- files


def test_write_and_load(tmp_path: Path, ca: CertificateAuthority) -> None:
    old = os.umask(0o077)
    try:
        key_path, cert_path = write_ca(ca, tmp_path / "ca")
    finally:
        os.umask(old)
    assert key_path == tmp_path / "ca" / CA_KEY_FILE
    assert cert_path == tmp_path / "ca" / CA_CERT_FILE
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644   # despite the umask
    assert stat.S_IMODE((tmp_path / "ca").stat().st_mode) == 0o700
    loaded = load_ca(tmp_path / "ca", now=datetime.now(UTC))
    assert loaded.cert == ca.cert
    assert loaded.key.private_numbers() == ca.key.private_numbers()
    assert loaded.constraints == ca.constraints


def test_write_under_a_lax_umask(tmp_path: Path, ca: CertificateAuthority) -> None:
    old = os.umask(0)
    try:
        key_path, _ = write_ca(ca, tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_write_never_overwrites(tmp_path: Path, ca: CertificateAuthority) -> None:
    write_ca(ca, tmp_path)
    with pytest.raises(ConfigError, match="already exists"):
        write_ca(ca, tmp_path)


def test_write_never_follows_a_symlink(tmp_path: Path, ca: CertificateAuthority) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / CA_KEY_FILE).symlink_to(target)
    with pytest.raises(ConfigError, match="already exists"):
        write_ca(ca, tmp_path / "d")
    assert not target.exists()


def test_load_refuses_a_readable_key(tmp_path: Path, ca: CertificateAuthority) -> None:
    key_path, _ = write_ca(ca, tmp_path)
    key_path.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by others; chmod 600"):
        load_ca(tmp_path)


def test_load_refuses_an_expired_ca(tmp_path: Path) -> None:
    old = CertificateAuthority.create(constraints_for(["github.com"]), now=NOW)
    write_ca(old, tmp_path)
    assert load_ca(tmp_path, now=NOW).cert == old.cert
    with pytest.raises(ConfigError, match="not now"):
        load_ca(tmp_path, now=NOW + timedelta(days=2))


def test_load_refuses_a_mismatched_pair(tmp_path: Path, ca: CertificateAuthority) -> None:
    write_ca(ca, tmp_path)
    other = CertificateAuthority.create(constraints_for(["github.com"]), now=NOW)
    (tmp_path / CA_CERT_FILE).write_bytes(other.cert_pem())
    with pytest.raises(ConfigError, match="does not belong"):
        load_ca(tmp_path)


def test_load_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--make-ca"):
        load_ca(tmp_path)


def test_make_ca_files(tmp_path: Path) -> None:
    ca = make_ca_files(tmp_path / "run", ["github.com", "*.example.com"],
                       block=["gist.github.com"], agent_timeout=timedelta(hours=40), now=NOW)
    assert ca.constraints.names == ("example.com", "github.com")
    assert ca.constraints.excluded_names == ("gist.github.com",)
    assert ca.cert.not_valid_after_utc == NOW + timedelta(hours=41)
    assert load_ca(tmp_path / "run").cert == ca.cert
    wipe_ca_files(tmp_path / "run")
    assert list((tmp_path / "run").iterdir()) == []
    wipe_ca_files(tmp_path / "run")  # nothing left: fine
