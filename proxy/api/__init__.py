"""awf-api-proxy: the sidecar that holds the LLM keys so the agent never does (docs/api-proxy.md).

    providers   the provider table and the header/query rules (pure)
    usage       token counts read from response bodies as they stream (pure)
    ratelimit   opt-in request and byte windows (pure; the clock is an argument)
    config      flags and the keys file
    service     the aiohttp listeners and the forwarding (the only I/O)
    main        `awf-api-proxy`: the one place that prints and picks an exit code

This package imports aiohttp; `proxy/` itself never does, so awf-proxy still starts without it.
Nothing here is imported by `proxy/`'s own modules.
"""
