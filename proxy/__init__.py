"""awf-proxy: the allowlisting HTTP/CONNECT proxy (see docs/proxy.md)."""
