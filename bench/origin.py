"""The origin server both proxies forward to: nginx on loopback, plain HTTP and TLS ports.

Paths served: `/` ("ok\\n"), `/small` (SMALL_BODY, ~100 B, from memory), `/big` (a sparse
256 MiB file on tmpfs, sent with sendfile). The TLS port uses a throwaway self-signed P-256
certificate for origin.test; clients in the bench do not verify it.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ORIGIN_NAME = "origin.test"
DENIED_NAME = "denied.test"
SMALL_BODY = "x" * 99 + "\n"
BIG_SIZE = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class OriginLayout:
    root: Path
    http_port: int
    tls_port: int
    address: str = "127.0.0.1"  # case (e) uses its own loopback address with ports 80 and 443

    @property
    def conf(self) -> Path:
        return self.root / "nginx.conf"


def write_self_signed(cert_path: Path, key_path: Path, name: str = ORIGIN_NAME) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o644)  # nginx workers run unprivileged; the key is throwaway


def nginx_conf(layout: OriginLayout, max_conns: int) -> str:
    """nginx configuration text for the origin (pure)."""
    r = layout.root
    return f"""\
# awf bench origin; generated, throwaway
worker_processes 1;
pid {r}/nginx.pid;
error_log {r}/nginx-error.log warn;
worker_rlimit_nofile {max_conns * 2 + 1024};
events {{
    worker_connections {max_conns + 512};
    use epoll;
    multi_accept on;
}}
http {{
    access_log off;
    client_body_temp_path {r}/tmp/body;
    proxy_temp_path {r}/tmp/proxy;
    fastcgi_temp_path {r}/tmp/fastcgi;
    uwsgi_temp_path {r}/tmp/uwsgi;
    scgi_temp_path {r}/tmp/scgi;
    keepalive_timeout 600s;
    keepalive_requests 100000000;
    client_header_timeout 600s;
    sendfile on;
    tcp_nopush on;
    default_type text/plain;
    server {{
        listen {layout.address}:{layout.http_port} backlog=4096;
        listen {layout.address}:{layout.tls_port} ssl backlog=4096;
        server_name {ORIGIN_NAME};
        ssl_certificate {r}/origin.crt;
        ssl_certificate_key {r}/origin.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache off;
        ssl_session_tickets off;
        root {r}/www;
        location = / {{ return 200 "ok\\n"; }}
        location = /small {{ return 200 "{SMALL_BODY[:-1]}\\n"; }}
        location = /big {{ }}
    }}
}}
"""


def prepare(layout: OriginLayout, max_conns: int) -> None:
    """Write config, certificate and content under layout.root (which must be on tmpfs)."""
    r = layout.root
    (r / "tmp").mkdir(parents=True, exist_ok=True)
    www = r / "www"
    www.mkdir(exist_ok=True)
    big = www / "big"
    with big.open("wb") as f:
        f.truncate(BIG_SIZE)  # sparse on tmpfs: reads are zero pages, no 256 MiB of RAM used
    os.chmod(big, 0o644)
    for d in (r, r / "tmp", www):
        d.chmod(0o755)
    write_self_signed(r / "origin.crt", r / "origin.key")
    layout.conf.write_text(nginx_conf(layout, max_conns))


def nginx_argv(layout: OriginLayout) -> list[str]:
    return [
        "taskset", "-c", "0",
        "nginx", "-p", str(layout.root), "-c", str(layout.conf), "-e", "stderr",
        "-g", "daemon off;",
    ]  # fmt: skip
