"""A leaf context from proxy/bump_ca.py serving a real TLS server on loopback, with a Python
client that trusts only the run's CA and checks the hostname."""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime

import pytest

from proxy.bump_ca import CertificateAuthority, LeafCache, constraints_for

pytestmark = pytest.mark.integration


async def _serve_once(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext,
                      server_hostname: str) -> tuple[bytes, str | None]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(await reader.readexactly(5))
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname=server_hostname)
            try:
                alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
                writer.write(b"hello")
                return await reader.readexactly(5), alpn
            finally:
                writer.close()
    finally:
        server.close()
        async with asyncio.timeout(5):
            await server.wait_closed()


def _client(ca: CertificateAuthority) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)   # CERT_REQUIRED, check_hostname
    ctx.load_verify_locations(cadata=ca.cert_pem().decode())
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


async def test_loopback_handshake() -> None:
    ca = CertificateAuthority.create(constraints_for(["example.test"]), now=datetime.now(UTC))
    cache = LeafCache(ca)
    try:
        data, alpn = await _serve_once(cache.context_for("api.example.test"), _client(ca),
                                       "api.example.test")
        assert data == b"hello"
        assert alpn == "http/1.1"
    finally:
        cache.close()


async def test_loopback_wrong_name_fails() -> None:
    ca = CertificateAuthority.create(constraints_for(["example.test"]), now=datetime.now(UTC))
    cache = LeafCache(ca)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            await _serve_once(cache.context_for("api.example.test"), _client(ca),
                              "www.example.test")
    finally:
        cache.close()
