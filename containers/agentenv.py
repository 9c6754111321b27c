"""The agent container's environment, mounts and command, from the caller's.

See docs/architecture.md §9.3.

Pure: the caller's environment and file contents come in as arguments. Layers, a later one
winning: core (proxy variables, HOME, PATH), passthrough (a short list, or everything with
--env-all), --env-file, -e, then GH_HOST and GITHUB_API_URL derived from the command's
GITHUB_SERVER_URL when it names an enterprise host and they are not set
(containers/github_host.py). Never passed: PATH/HOME/SUDO_*, proxy variables, DOCKER_*, LD_*,
AWF_*, GitHub tokens, provider keys, Actions runtime tokens, and any --exclude-env name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from containers import github_host
from proxy.errors import ConfigError

PASSTHROUGH = (
    "LANG", "LANGUAGE", "TZ", "TERM", "CI", "GITHUB_ACTIONS", "GITHUB_SERVER_URL",
    "GITHUB_API_URL", "GITHUB_GRAPHQL_URL", "GITHUB_REPOSITORY", "GITHUB_WORKSPACE",
    "GITHUB_RUN_ID", "GITHUB_SHA", "GITHUB_REF", "GITHUB_EVENT_NAME", "RUNNER_OS",
    "RUNNER_ARCH", "XDG_CONFIG_HOME", "GH_HOST",
)
PASSTHROUGH_PREFIXES = ("LC_", "OTEL_")
# CA bundles and directories: passed when the file they name is visible in the sandbox
CA_VARS = ("NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
           "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "PIP_CERT")
# --ssl-bump (awf/bump.py): the variables that name the bundle (the host's store and the run's
# CA), and Node's, which adds the CA alone to its own store
BUMP_BUNDLE_VARS = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO",
                    "PIP_CERT", "DENO_CERT")
NEVER = frozenset({
    "PATH", "PWD", "OLDPWD", "SHLVL", "_", "HOME",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "FTP_PROXY", "NO_PROXY",
    "SSH_AUTH_SOCK", "GPG_AGENT_INFO",
    "ACTIONS_RUNTIME_TOKEN", "ACTIONS_RESULTS_URL", "ACTIONS_CACHE_URL",
    "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "GITHUB_TOKEN", "GH_TOKEN", "GITHUB_PAT", "GITHUB_PERSONAL_ACCESS_TOKEN", "GITHUB_API_TOKEN",
    "GH_ACCESS_TOKEN", "COPILOT_GITHUB_TOKEN",
    "OPENAI_API_KEY", "OPENAI_KEY", "CODEX_API_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "COPILOT_PROVIDER_API_KEY", "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
})
NEVER_PREFIXES = ("SUDO_", "DOCKER_", "LD_", "AWF_")
_OTLP_HEADERS = re.compile(r"OTEL_EXPORTER_OTLP_.*HEADERS")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
AGENT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# the toolchains chroot host mode mounts from $HOME (containers/hostview.py TOOLCHAINS) that hold
# commands: after the system's, so they add commands (cargo, rustc, pipx's) and shadow none
HOME_TOOL_DIRS = (".cargo/bin", ".local/bin")
MAX_VALUE, MAX_TOTAL = 64 * 1024, 1024 * 1024
REFUSED_TARGETS = ("/proc", "/sys", "/dev", "/run/awf")
REFUSED_SOURCES = ("/", "/proc", "/sys", "/dev")


def never_passed(name: str, exclude: Iterable[str] = ()) -> bool:
    upper = name.upper()
    return (upper in NEVER or name in set(exclude) or upper.startswith(NEVER_PREFIXES)
            or bool(_OTLP_HEADERS.fullmatch(upper)))


def with_home_tools(path: str, home: str) -> str:
    """`path` and then the toolchains chroot host mode mounts from $HOME: last, so they add
    commands (cargo, rustc, pipx's) and shadow none."""
    tools = (f"{home.rstrip('/')}/{d}" for d in HOME_TOOL_DIRS)
    return ":".join(dict.fromkeys([*path.split(":"), *tools]))


def command_path(host_path: str, github_path: str = "") -> list[str]:
    """The command's PATH candidates, in order: the directories of the $GITHUB_PATH file (one
    a line; a later line was added later and comes first, as Actions prepends each), the
    host's $PATH, then awf's default. hostview keeps those the sandbox can see."""
    added = [line.strip() for line in github_path.splitlines() if line.strip()]
    out = [*reversed(added), *host_path.split(":"), *AGENT_PATH.split(":")]
    return [d for d in dict.fromkeys(out) if d.startswith("/")]


def read_env_file(path: Path | None) -> list[tuple[str, str]]:
    """--env-file's KEY=VALUE lines (none without the flag); ConfigError if unreadable."""
    if path is None:
        return []
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"--env-file {str(path)!r}: {exc.strerror}") from exc
    return parse_env_file(text, str(path))


def parse_env_file(text: str, where: str) -> list[tuple[str, str]]:
    """KEY=VALUE lines; '#' comments and blank lines skipped; no expansion, no quotes removed."""
    out: list[tuple[str, str]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _NAME.fullmatch(name):
            raise ConfigError(f"--env-file {where!r} line {n}: {raw!r} is not KEY=VALUE")
        out.append((name, value))
    return out


def agent_env(caller: Mapping[str, str], *, proxy_url: str | None, no_proxy: str, home: str,
              env_all: bool, exclude: Sequence[str], env_file: Sequence[tuple[str, str]],
              explicit: Sequence[tuple[str, str]], tty: bool = False,
              path: str | None = None, visible: Callable[[str], bool] | None = None
              ) -> tuple[tuple[str, str], ...]:
    """The container's environment, in a stable order. `path`: the command's PATH;
    `visible(file)`: whether a host file is seen in the sandbox (CA_VARS naming one pass)."""
    path = with_home_tools(AGENT_PATH, home) if path is None else path
    env: dict[str, str] = {"HOME": home, "PATH": path}
    if tty:
        env.update(TERM="xterm-256color", FORCE_COLOR="1")
    else:
        env["NO_COLOR"] = "1"
    if proxy_url is not None:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env[name] = proxy_url
        env["NO_PROXY"] = env["no_proxy"] = no_proxy
    for name, value in sorted(caller.items()):
        if never_passed(name, exclude) or name.lower() in ("no_proxy", "http_proxy",
                                                           "https_proxy", "all_proxy"):
            continue
        passed = env_all or name in PASSTHROUGH or name.startswith(PASSTHROUGH_PREFIXES) or (
            name in CA_VARS and visible is not None and visible(value))
        if passed and len(value) <= MAX_VALUE:
            env[name] = value
    for name, value in [*env_file, *explicit]:
        if name.startswith(NEVER_PREFIXES[2:]):  # LD_*, AWF_*: awf's own
            raise ConfigError(f"{name}: awf sets {name} itself; it cannot be overridden")
        env[name] = value
    for name, value in github_host.command_vars(env):  # GHES and GHE.com: docs/config.md §8
        if not never_passed(name, exclude):
            env[name] = value
    total = sum(len(k) + len(v) + 2 for k, v in env.items())
    if total > MAX_TOTAL:
        raise ConfigError(f"the command's environment is {total} bytes, over 1 MiB; pass "
                          "fewer variables (--exclude-env NAME, or drop --env-all)")
    return tuple(env.items())


def bump_env(ca: str, bundle: str) -> tuple[tuple[str, str], ...]:
    """--ssl-bump: the command's trust variables, `ca` and `bundle` being paths in the sandbox.
    They replace whatever the caller passed for the same names: a client told to trust another
    store would refuse every bumped connection."""
    return (*((name, bundle) for name in BUMP_BUNDLE_VARS), ("NODE_EXTRA_CA_CERTS", ca))


@dataclass(frozen=True, slots=True)
class Volume:
    source: str
    target: str
    read_only: bool


def parse_volume(spec: str, *, environ: Mapping[str, str], forbidden: Sequence[str] = ()
                 ) -> Volume:
    """-v HOST:CONTAINER[:ro|rw]: $VAR expands (unset is an error); HOST must exist and is
    resolved; targets under /proc, /sys, /dev, /run/awf and Docker sockets are refused."""

    def expand(text: str) -> str:
        def one(m: re.Match[str]) -> str:
            name = m.group(1) or m.group(2)
            if name not in environ:
                raise ConfigError(f"-v {spec!r}: ${name} is not set")
            return environ[name]
        return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", one, text)

    parts = spec.split(":")
    mode = "rw"
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        mode = parts.pop()
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ConfigError(f"-v {spec!r} is not HOST:CONTAINER[:ro|rw]")
    host, target = expand(parts[0]), expand(parts[1])
    if not os.path.exists(host):
        raise ConfigError(f"-v {spec!r}: {host!r} does not exist on this host")
    source = os.path.realpath(host)
    if not target.startswith("/"):
        raise ConfigError(f"-v {spec!r}: the container path {target!r} must be absolute")
    target = os.path.normpath(target)
    for bad in REFUSED_TARGETS:
        if target == bad or target.startswith(bad + "/"):
            raise ConfigError(f"-v {spec!r}: mounting over {bad} is not allowed")
    if source in REFUSED_SOURCES or source.endswith("docker.sock") or target.endswith(
            "docker.sock"):
        raise ConfigError(f"-v {spec!r}: {source!r} may not be mounted into the sandbox")
    for bad in forbidden:
        if source == bad or source.startswith(bad.rstrip("/") + "/") or bad.startswith(
                source.rstrip("/") + "/"):
            raise ConfigError(f"-v {spec!r}: {source!r} holds awf's own files ({bad!r})")
    return Volume(source, target, mode == "ro")


_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|_KEY$|_PAT$", re.IGNORECASE)
# served once per process by the one-shot-token library, whether forwarded or not (upstream's)
ONE_SHOT_DEFAULTS = ("GITHUB_TOKEN", "GH_TOKEN", "GITHUB_PAT", "GITHUB_PERSONAL_ACCESS_TOKEN",
                     "GITHUB_API_TOKEN", "GH_ACCESS_TOKEN", "COPILOT_GITHUB_TOKEN",
                     "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN",
                     "GEMINI_API_KEY")


def is_secret(name: str) -> bool:
    """Names that travel in the secrets file, never in the container's Env.

    See docs/architecture.md §9.3."""
    return name in ONE_SHOT_DEFAULTS or bool(_SECRET_NAME.search(name))


def split_secrets(env: Sequence[tuple[str, str]]
                  ) -> tuple[tuple[tuple[str, str], ...], dict[str, str]]:
    """(what may be seen, the secrets): the secrets reach only the command's environment."""
    plain = tuple((k, v) for k, v in env if not is_secret(k))
    return plain, {k: v for k, v in env if is_secret(k)}


def command_argv(command: Sequence[str]) -> tuple[str, ...]:
    """One argument runs under bash -c (so $VARs expand inside); several run as they are."""
    if len(command) == 1:
        return ("bash", "-c", command[0])
    return tuple(command)
