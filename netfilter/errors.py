"""The errors netfilter raises (below `proxy.errors.FirewallError`: exit 125)."""

from __future__ import annotations

from proxy.errors import FirewallError


class NetfilterError(FirewallError):
    """nft or netlink refused a change."""


class SandboxError(FirewallError):
    """A namespace, a process in it or the self-test failed."""
