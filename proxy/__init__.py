"""awf-proxy: the allowlisting HTTP/CONNECT proxy (docs/proxy.md says how it behaves)."""

__version__ = "0.1.0"
