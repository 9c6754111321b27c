"""awf logs: read, count and summarise the logs of awf runs (docs/architecture.md)."""
