"""awf: an egress firewall for AI agents (the CLI and the orchestration of `awf run`)."""

from proxy import __version__

__all__ = ["__version__"]
