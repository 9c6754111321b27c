"""What the netns backend needs from the host, checked before anything is made."""

from __future__ import annotations

import os
import shutil

from netfilter.errors import SandboxError

TOOLS = ("nft", "ip", "setpriv", "unshare", "nsenter", "tini")


def check_netns_host() -> None:
    if os.geteuid() != 0:
        raise SandboxError("awf run --backend netns needs root (network namespaces and "
                           "nftables); run it with sudo")
    for tool in TOOLS:
        if shutil.which(tool) is None:
            raise SandboxError(f"{tool!r} is missing; apt-get install nftables iproute2 "
                               "util-linux tini")
