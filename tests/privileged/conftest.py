"""Fixtures the privileged end-to-end tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import wan as wanmod
from tests.support.needs import need_root


@pytest.fixture(scope="module")
def wan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[wanmod.Wan]:
    """The fake internet (tests/support/wan.py), one per test module."""
    need_root()
    w = wanmod.start(tmp_path_factory.mktemp("wan"))
    try:
        yield w
    finally:
        w.close()
