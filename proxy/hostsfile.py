"""The hosts file (`--hosts-file`, default /etc/hosts): read like the system resolver reads it.

`parse_hosts` is pure: text in, name -> addresses out. Each line is an address followed by its
names; `#` starts a comment; lines whose address is not a plain IPv4 or IPv6 address (a zone id,
a typo) and names that are not valid hostnames are skipped, as the C library skips them. A name on
several lines gets every address, in file order. Names are normalised like requested names, so a
hosts entry matches whatever spelling a client sends.

The addresses get the same checks as DNS answers (docs/proxy.md §4): a hosts entry pointing at
127.0.0.1 is `denied_address` unless `--allow-range` covers it.
"""

from __future__ import annotations

from pathlib import Path

from proxy.errors import ConfigError
from proxy.hostnames import normalise_name
from proxy.resolve_flags import IPAddress, parse_ip_text

DEFAULT = Path("/etc/hosts")


def parse_hosts(text: str) -> dict[str, tuple[IPAddress, ...]]:
    found: dict[str, dict[IPAddress, None]] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        ip = parse_ip_text(fields[0])
        if ip is None:
            continue
        for raw in fields[1:]:
            try:
                name = normalise_name(raw)
            except ValueError:
                continue
            found.setdefault(name, {})[ip] = None
    return {name: tuple(ips) for name, ips in found.items()}


def load_hosts(path: Path | None, *, explicit: bool) -> dict[str, tuple[IPAddress, ...]]:
    """The entries of `path` (None: no hosts file). A missing default file is an empty one; a
    file the user named that cannot be read is a ConfigError."""
    if path is None:
        return {}
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError as exc:
        if not explicit:
            return {}
        raise ConfigError(f"--hosts-file: no file {str(path)!r}; pass --hosts-file '' to "
                          "use none") from exc
    except OSError as exc:
        raise ConfigError(f"--hosts-file: cannot read {str(path)!r}: {exc.strerror}") from exc
    return parse_hosts(text)
