"""The API sidecar's entry point on both backends: awf-api-proxy in this process, its egress
through the run's own awf-proxy.

    python -m containers.api_entry SPEC_JSON

SPEC_JSON: {"sidecar": [awf-api-proxy flags besides --egress-proxy], "egress_proxy":
"http://127.0.0.1:PORT" (the run's awf-proxy on a loopback address of its network namespace,
where the proxy's `api-proxy` client policy allows the providers' targets and nothing else:
docs/decisions.md), "lease": path or null}.

With a lease (Docker), awf's lease is watched as the proxy container does: when awf is gone the
process exits at once. awf-api-proxy prints its `listening` lines and `awf-api-proxy ready`
(what awf waits for) itself; if it fails (a bad flag, a taken port: its own line first),
`awf-api-proxy failed: ...` follows and the exit status is 125 (awf stops the command: fail
closed). SIGTERM/SIGINT: awf-api-proxy drains and exits 0.

No key passes through here: awf-api-proxy reads its keys file itself.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

FAILED = "awf-api-proxy failed:"
READY = "awf-api-proxy ready"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(spec: dict[str, object]) -> int:
    flags, egress = spec.get("sidecar"), spec.get("egress_proxy")
    if not isinstance(flags, list) or not isinstance(egress, str) or not egress:
        raise ValueError("the spec needs a 'sidecar' list and an 'egress_proxy' URL")
    lease = spec.get("lease")
    if isinstance(lease, str) and lease:
        from containers.proxy_entry import watch_lease

        watch_lease(lease)
    from proxy.api.main import main as api_main

    status = api_main([*map(str, flags), "--egress-proxy", egress])
    if status != 0:
        _say(f"{FAILED} awf-api-proxy exited with status {status}")
        return 125
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(args) != 1:
            raise ValueError("usage: python -m containers.api_entry SPEC_JSON")
        spec = json.loads(args[0])
        if not isinstance(spec, dict):
            raise ValueError("SPEC_JSON must be an object")
        return run(spec)
    except (ValueError, OSError) as exc:
        _say(f"{FAILED} {exc}")
        return 125


if __name__ == "__main__":
    sys.exit(main())
