"""The errors containers raises (below `proxy.errors.FirewallError`: exit 125)."""

from __future__ import annotations

from proxy.errors import FirewallError


class DockerError(FirewallError):
    """The Docker engine refused or failed."""
