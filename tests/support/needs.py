"""Requirements of the privileged and docker layers: fail loudly, or skip with the reason.

Our machines and CI have root and Docker, so a missing need is a failure there. A developer
without them sets AWF_ALLOW_SKIP=1 to skip those layers; the skip names what is missing.
"""

from __future__ import annotations

import os
import shutil

import pytest


def need(ok: bool, what: str) -> None:
    if ok:
        return
    if os.environ.get("AWF_ALLOW_SKIP") == "1":
        pytest.skip(f"needs {what} (skipped because AWF_ALLOW_SKIP=1)")
    pytest.fail(f"this test needs {what}; set AWF_ALLOW_SKIP=1 to skip it on a machine without")


def need_root() -> None:
    need(os.geteuid() == 0, "root (network namespaces and nftables)")
    need(shutil.which("nft") is not None, "the nft command (apt-get install nftables)")
    need(shutil.which("ip") is not None, "the ip command (apt-get install iproute2)")


def need_docker() -> None:
    need(os.path.exists("/var/run/docker.sock"), "a Docker engine at /var/run/docker.sock")
