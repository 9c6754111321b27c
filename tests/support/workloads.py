"""The workloads agents run daily, as shell command lines, for both backends' e2e tests.

Each function returns one `bash -c` line to run inside `awf run` with `WS` (a read-write
workspace) and `CA` (the wan's CA) set in the environment: see `client_env`. The names come from
tests/support/forge.py's stand-ins.
"""

from __future__ import annotations

import os
import shutil

from tests.support import forge

# pip retries a refused CONNECT 5 times with back-off (about 8 s) and cargo 3 times (about 10 s)
# before failing; awf's README recommends these (one retry: the 403 is still printed once).
# npm does not retry a 403.
PIP_FAST_FAIL = {"PIP_RETRIES": "1"}
CARGO_FAST_FAIL = {"CARGO_NET_RETRY": "0"}


def timed(script: str) -> str:
    """Run `script` in a subshell and print `ELAPSED_MS=<n>` after it; keep its status."""
    return (f"t0=$(date +%s%N); ( {script} ); rc=$?; "
            "echo ELAPSED_MS=$(( ($(date +%s%N) - t0) / 1000000 )); exit $rc")


def elapsed_ms(stdout: str) -> int:
    line = next(ln for ln in stdout.splitlines() if ln.startswith("ELAPSED_MS="))
    return int(line.split("=", 1)[1])


def client_env(ws: str, ca: str) -> dict[str, str]:
    """What a user sets so that the tools trust the test CA and keep their state in `ws`."""
    env = {
        "WS": ws, "CA": ca,
        "SSL_CERT_FILE": ca, "PIP_CERT": ca, "GIT_SSL_CAINFO": ca, "NODE_EXTRA_CA_CERTS": ca,
        "npm_config_cafile": ca, "CARGO_HTTP_CAINFO": ca, "CURL_CA_BUNDLE": ca,
        "REQUESTS_CA_BUNDLE": ca,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1",
        "npm_config_cache": f"{ws}/.npm", "npm_config_update_notifier": "false",
        "npm_config_audit": "false", "npm_config_fund": "false",
        "CARGO_HOME": f"{ws}/.cargo-home",
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
    }
    rustup = os.path.expanduser("~/.rustup")
    if os.path.isdir(rustup):
        env["RUSTUP_HOME"] = rustup
    return env


def tool(name: str) -> str | None:
    return shutil.which(name)


PIP_INSTALL = (
    "set -e; cd \"$WS\"; /usr/bin/python3 -m venv v; "
    f"v/bin/pip install --index-url https://pypi.test/simple {forge.PIP_PACKAGE}; "
    f"v/bin/python -c 'import {forge.PIP_PACKAGE}; print({forge.PIP_PACKAGE}.VALUE)'"
)

PIP_INSTALL_HTTP = PIP_INSTALL.replace("https://pypi.test/simple",
                                       "http://pypi.test/simple --trusted-host pypi.test")

GIT = "git -c user.name=agent -c user.email=agent@agent.test"
GIT_CLONE_AND_PUSH = (
    f"set -e; cd \"$WS\"; {GIT} clone https://git.test/repo.git repo; cd repo; cat README; "
    f"echo change > change.txt; {GIT} add change.txt; {GIT} commit -q -m 'pushed from {{tag}}'; "
    f"{GIT} push origin main"
)
GIT_CLONE = f"set -e; cd \"$WS\"; {GIT} clone https://git.test/repo.git repo"
GIT_CLONE_HTTP = f"set -e; cd \"$WS\"; {GIT} clone http://git.test/repo.git repo; cat repo/README"
GIT_PUSH = (
    f"set -e; cd \"$WS/repo\"; echo again > again.txt; {GIT} add again.txt; "
    f"{GIT} commit -q -m 'denied push'; {GIT} push origin main"
)


def npm_install(npm: str) -> str:
    return (
        "set -e; cd \"$WS\"; mkdir -p app; cd app; echo '{\"name\":\"app\",\"version\":\"1.0.0\"}' "
        f"> package.json; {npm} install --registry https://npm.test/ {forge.NPM_PACKAGE}; "
        f"node -e 'console.log(require(\"{forge.NPM_PACKAGE}\"))'"
    )


def cargo_fetch(cargo: str) -> str:
    return (
        "set -e; cd \"$WS\"; mkdir -p crate/src crate/.cargo; cd crate; "
        "printf '[package]\\nname = \"app\"\\nversion = \"0.1.0\"\\nedition = \"2021\"\\n"
        f"[dependencies]\\n{forge.CRATE} = \"0.1\"\\n' > Cargo.toml; "
        "echo 'fn main() {}' > src/main.rs; "
        "printf '[source.crates-io]\\nreplace-with = \"forge\"\\n[source.forge]\\n"
        "registry = \"sparse+https://crates.test/index/\"\\n' > .cargo/config.toml; "
        f"{cargo} fetch; ls \"$CARGO_HOME\"/registry/cache/*/{forge.CRATE}-{forge.CRATE_VERSION}"
        ".crate"
    )


# clients that ignore the proxy variables: they go out directly and are intercepted
CURL_NOPROXY = "curl -sS -m 10 --noproxy '*' --cacert \"$CA\" https://{host}/whoami"
PY_NOPROXY = (
    "/usr/bin/python3 -c 'import ssl, sys, urllib.request as u; "
    "o = u.build_opener(u.ProxyHandler({{}}), u.HTTPSHandler(context=ssl.create_default_context("
    "cafile=sys.argv[1]))); print(o.open(\"https://{host}/whoami\", timeout=10).read().decode())'"
    " \"$CA\""
)
NODE_FETCH = (
    "node -e 'fetch(\"https://{host}/whoami\").then(r => r.text()).then(t => console.log(t))"
    ".catch(e => {{ console.error(String(e.cause || e)); process.exit(1) }})'"
)


def connect_to(port: int) -> str:
    """An allowed name, sent (SNI for 443, Host for 80) to a foreign address."""
    scheme = "https" if port == 443 else "http"
    return (f"curl -sS -m 10 --noproxy '*' --cacert \"$CA\" --connect-to "
            f"pypi.test:{port}:{forge.V4_ELSEWHERE}:{port} {scheme}://pypi.test/whoami")
