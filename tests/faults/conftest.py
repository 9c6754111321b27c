"""Fault tests: a real awf-proxy process on loopback, fed what breaks things (issue 18)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.origins import Origin, http_origin


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    async with http_origin() as o:
        yield o
