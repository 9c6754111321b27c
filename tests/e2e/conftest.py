"""Fixtures the Docker end-to-end tests share."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support import wan as wanmod
from tests.support.needs import need_docker, need_root


@pytest.fixture(scope="module")
def wan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[wanmod.Wan]:
    """The fake internet (tests/support/wan.py), one per test module, its CA readable by the
    sandbox's unprivileged user (a test passes it with --extra-ca-certs or -v)."""
    need_docker()
    need_root()
    wanmod.reap()
    w = wanmod.start(tmp_path_factory.mktemp("wan"))
    os.chmod(w.ca_pem.parent, 0o755)
    os.chmod(w.ca_pem, 0o644)
    try:
        yield w
    finally:
        w.close()
