"""awf-api-proxy's flags and its keys file. Errors are one-line `ConfigError`s (exit 2).

Keys never come from argv (visible in `ps`) or the environment (visible to children): only from
`--keys-file`, a file of `NAME=value` lines, refused unless it is a regular file owned by the
running user with mode 0400 or 0600. Blank lines and `#` comments are allowed; an unknown name,
a duplicate or an empty value is refused, naming the line and never the value.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from proxy import __version__
from proxy.api.providers import KEY_NAMES, PROVIDERS, ProviderName, Target
from proxy.api.ratelimit import Limits
from proxy.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ApiProxyConfig:
    keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    listen_host: str = "127.0.0.1"
    port_base: int = 10000  # 0: every listener on a free port (tests)
    targets: Mapping[ProviderName, Target] = field(default_factory=dict)
    egress_proxy: str | None = None
    extra_ca_certs: Path | None = None
    log_dir: Path | None = None
    limits: Limits = field(default_factory=Limits)
    connect_timeout: float = 30.0
    read_timeout: float = 1800.0

    def port_for(self, index: int) -> int:
        return 0 if self.port_base == 0 else self.port_base + index

    def target(self, name: ProviderName) -> Target:
        return self.targets[name]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see awf-api-proxy --help)")


def _parser() -> _Parser:
    p = _Parser(
        prog="awf-api-proxy",
        description="Holds the LLM API keys for a sandboxed agent: one plain-HTTP listener per "
        "provider (OpenAI 10000, Anthropic 10001, Copilot 10002, Gemini 10003) forwards to the "
        "provider over HTTPS with the real key injected, the agent's own auth removed.",
        allow_abbrev=False,
    )
    add = p.add_argument
    add("--keys-file", metavar="PATH",
        help="NAME=value lines, mode 0400 or 0600, owned by this user; names: "
        + ", ".join(sorted(KEY_NAMES)) + ". A provider without a key answers 503")
    add("--listen-host", metavar="ADDR", help="address the listeners bind (default 127.0.0.1)")
    add("--port-base", metavar="PORT",
        help="port of the first listener, the others follow (default 10000; 0: free ports, "
        "as printed on the ready lines)")
    for prov in PROVIDERS:
        add(f"--{prov.name}-api-target", metavar="HOST[:PORT]",
            help=f"where {prov.name} requests go over HTTPS (default {prov.default_target})")
    add("--egress-proxy", metavar="URL",
        help="http://HOST:PORT of the awf-proxy every request leaves through (CONNECT); "
        "absent: direct connections")
    add("--extra-ca-certs", metavar="PATH",
        help="PEM bundle trusted for the targets besides the system store")
    add("--log-dir", metavar="DIR", help="write DIR/api-proxy.jsonl (one line per request)")
    add("--rate-limit-rpm", metavar="N", help="requests per minute per provider (429 beyond)")
    add("--rate-limit-rph", metavar="N", help="requests per hour per provider (429 beyond)")
    add("--rate-limit-bytes-pm", metavar="N",
        help="request plus response bytes per minute per provider (429 beyond)")
    add("--version", action="version", version=f"awf-api-proxy {__version__}")
    return p


def help_text() -> str:
    return _parser().format_help()


def _count(flag: str, text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{flag}: {text!r} is not a whole number of at least 1")
    return int(text)


def parse_egress_proxy(text: str) -> str:
    flag = "--egress-proxy"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{flag}: {text!r} is not a URL: {exc}") from exc
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"{flag}: {text!r} must be http://HOST:PORT (the awf-proxy listener)")
    if parts.username or parts.password:
        raise ConfigError(f"{flag}: credentials in the URL are not supported; remove them")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{flag}: {text!r} must have no path or query")
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    return f"http://{netloc}:{port or 3128}"


def parse_argv(argv: Sequence[str]) -> tuple[ApiProxyConfig, Path | None]:
    """Flags to a config without keys, and the keys file to read (None: no provider keys)."""
    ns = _parser().parse_args(list(argv))
    targets = {
        prov.name: Target.parse(
            getattr(ns, f"{prov.name}_api_target") or prov.default_target,
            flag=f"--{prov.name}-api-target",
        )
        for prov in PROVIDERS
    }
    listen_host = ns.listen_host or "127.0.0.1"
    try:
        ipaddress.ip_address(listen_host)
    except ValueError as exc:
        raise ConfigError(f"--listen-host: {listen_host!r} is not an IP address") from exc
    port_base = 10000
    if ns.port_base is not None:
        if not ns.port_base.isdigit() or int(ns.port_base) > 65535 - len(PROVIDERS) + 1:
            raise ConfigError(f"--port-base: {ns.port_base!r} is not a port (0 for free ports)")
        port_base = int(ns.port_base)
    cfg = ApiProxyConfig(
        listen_host=listen_host,
        port_base=port_base,
        targets=targets,
        egress_proxy=parse_egress_proxy(ns.egress_proxy) if ns.egress_proxy else None,
        extra_ca_certs=_readable(ns.extra_ca_certs, "--extra-ca-certs"),
        log_dir=Path(ns.log_dir) if ns.log_dir else None,
        limits=Limits(
            rpm=_count("--rate-limit-rpm", ns.rate_limit_rpm),
            rph=_count("--rate-limit-rph", ns.rate_limit_rph),
            bytes_pm=_count("--rate-limit-bytes-pm", ns.rate_limit_bytes_pm),
        ),
    )
    return cfg, Path(ns.keys_file) if ns.keys_file else None


def _readable(text: str | None, flag: str) -> Path | None:
    if not text:
        return None
    path = Path(text)
    if not path.is_file() or not os.access(path, os.R_OK):
        raise ConfigError(f"{flag}: {text!r} is not a readable file")
    return path


def parse_keys(text: str, *, source: str) -> dict[str, str]:
    """`NAME=value` lines to a mapping. Pure; messages name the line, never a value."""
    keys: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name, value = name.strip(), value.strip()
        where = f"--keys-file {source!r} line {lineno}"
        if not sep:
            raise ConfigError(f"{where}: expected NAME=value")
        if name not in KEY_NAMES:
            raise ConfigError(f"{where}: unknown name {name[:40]!r}; known: "
                              + ", ".join(sorted(KEY_NAMES)))
        if name in keys:
            raise ConfigError(f"{where}: {name} is given twice")
        if not value:
            raise ConfigError(f"{where}: {name} is empty; remove the line instead")
        if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value) or not value.isascii():
            raise ConfigError(f"{where}: the value of {name} holds spaces, control or "
                              "non-ASCII characters; a key is one printable word")
        keys[name] = value
    return keys


def load_keys(path: Path) -> dict[str, str]:
    """Read the keys file after checking who may read it; ConfigError if it is unsafe."""
    flag = f"--keys-file {str(path)!r}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"{flag}: cannot open: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{flag}: not a regular file")
        if st.st_uid != os.geteuid():
            raise ConfigError(f"{flag}: owned by uid {st.st_uid}, not by this user "
                              f"(uid {os.geteuid()}); chown it")
        mode = stat.S_IMODE(st.st_mode)
        if mode not in (0o400, 0o600):
            raise ConfigError(f"{flag}: mode {mode:04o} lets others read it; chmod 600 it")
        chunks: list[bytes] = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            if sum(map(len, chunks)) > 1 << 20:
                raise ConfigError(f"{flag}: over 1 MiB; it should hold a few keys")
    finally:
        os.close(fd)
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{flag}: not UTF-8 text") from exc
    return parse_keys(text, source=str(path))
