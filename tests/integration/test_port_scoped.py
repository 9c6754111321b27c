"""A port-scoped allow entry through a real awf-proxy: that name on that port, nothing else."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.client import connect, get, read_response, roundtrip
from tests.support.origins import http_origin
from tests.support.proxyproc import running_proxy

pytestmark = pytest.mark.integration


async def test_a_port_scoped_entry_allows_that_port_only() -> None:
    async with (http_origin() as o, http_origin() as other,
                running_proxy("--allow-domains", f"svc.test:{o.port}",
                              "--resolve", "svc.test=127.0.0.1",
                              "--allow-range", "127.0.0.1/32") as p):
        ok = await roundtrip(p.port, get(f"http://svc.test:{o.port}/small"))
        assert ok.status == 200
        denied = await roundtrip(p.port, get(f"http://svc.test:{other.port}/small"))
        assert (denied.status, denied.reason) == (403, "port_denied")
        assert not other.seen
        reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
        writer.write(connect(f"svc.test:{o.port}"))
        assert (await read_response(reader, head_only=True)).status == 200
        writer.close()
