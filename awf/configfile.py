"""`awf run --config FILE|-`: the file's values under the flags, with each value's source.

A file holds our flat keys (the long flag names, `_` for `-`: `allow_domains: [github.com]`) or
upstream awf's nested camelCase schema as gh-aw writes it (`network: {allowDomains: [...]}`),
or both. Upstream's keys are mapped by the table in `awf.upstream_schema` (docs/config.md).
Precedence: flags > file > defaults; a flag replaces the file's value (lists are not merged).

Format: `.json` is JSON, `.yaml`/`.yml` YAML, anything else (and `-`, standard input) JSON
then YAML. Errors are one-line ConfigErrors (exit 2) naming the file and the key path.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from awf.upstream_schema import CONTAINERS, FLAGS, OPAQUE, REFUSED_CONTAINERS, SCHEMA, Row, Status
from proxy.errors import ConfigError

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL|AUTH", re.IGNORECASE)
REDACTED = "[REDACTED]"
UPSTREAM_ROOTS = frozenset(p.split(".")[0].removesuffix("[]") for p in SCHEMA)
NOT_IN_FILE = frozenset({"help", "config", "print_config", "command"})
LOCALHOST = frozenset({"localhost", "http://localhost", "https://localhost"})


# ------------------------------------------------------------------------------ upstream flags


class UpstreamFlag(argparse.Action):
    """One of upstream's flags that is not ours: parsed, then noted or refused by its row."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, row: Row, arity: str,
                 **kwargs: Any) -> None:
        nargs = {"bool": 0, "value": None, "append": None, "optional": "?"}[arity]
        super().__init__(option_strings, dest, nargs=nargs, const=True if nargs == "?" else None,
                         default=None, help=argparse.SUPPRESS, **kwargs)
        self.row, self.arity = row, arity

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        if self.arity == "bool":
            setattr(namespace, self.dest, True)
        elif self.arity == "append":
            setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), values])
        else:
            setattr(namespace, self.dest, values)


def add_upstream_flags(parser: argparse.ArgumentParser) -> None:
    """Upstream's flags that `awf run` does not define itself (a flag someone implements for
    real later simply takes over: its name is skipped here)."""
    taken = parser._option_string_actions
    for flag in FLAGS:
        names = [n for n in flag.names if n not in taken]
        if names and flag.names[-1] in names:
            parser.add_argument(*names, dest=flag_dest(flag.names[-1]), action=UpstreamFlag,
                                row=flag.row, arity=flag.arity)


def flag_dest(name: str) -> str:
    return name.lstrip("-").replace("-", "_")


# ------------------------------------------------------------------------------ the file


@dataclass
class FileValues:
    name: str = ""
    values: dict[str, Any] = field(default_factory=dict)  # dest -> value as argparse gives it
    where: dict[str, str] = field(default_factory=dict)  # dest -> the key path that set it
    notes: list[str] = field(default_factory=list)


def read_document(spec: str, stdin: TextIO | None = None) -> tuple[Any, str]:
    """The parsed document and the name to quote in errors."""
    if spec == "-":
        name, suffix = "<stdin>", ""
        text = (stdin or sys.stdin).read()
    else:
        path = Path(spec)
        name, suffix = spec, path.suffix.lower()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--config: cannot read {spec!r}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"--config: {spec!r} is not UTF-8 text") from exc
    import yaml

    try:
        if suffix == ".json":
            return json.loads(text), name
        if suffix in (".yaml", ".yml"):
            return yaml.safe_load(text), name
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if suffix == ".json" else "YAML"
        raise ConfigError(f"--config {name}: not valid {kind}: {_one_line(exc)}") from exc
    try:
        return json.loads(text), name
    except ValueError:
        pass
    try:
        return yaml.safe_load(text), name
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config {name}: neither JSON nor YAML: {_one_line(exc)}") from exc


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def flat_keys(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Our flat keys: every long option name, `_` for `-`."""
    keys: dict[str, argparse.Action] = {}
    for action in parser._actions:
        for opt in action.option_strings:
            if opt.startswith("--"):
                keys[flag_dest(opt)] = action
    return keys


def load(spec: str, parser: argparse.ArgumentParser, stdin: TextIO | None = None) -> FileValues:
    data, name = read_document(spec, stdin)
    out = FileValues(name=name)
    if data is None:
        return out
    if not isinstance(data, dict):
        raise ConfigError(f"--config {name}: must hold a mapping of keys (awf's flat keys like "
                          "allow_domains, or upstream's like network.allowDomains)")
    flat = flat_keys(parser)
    for key, value in data.items():
        key = str(key)
        if key in UPSTREAM_ROOTS or key == "$schema":
            _walk_upstream(out, parser, {key: value}, "")
            continue
        action = flat.get(key.replace("-", "_"))
        if action is None or action.dest in NOT_IN_FILE:
            raise ConfigError(f"--config {name}: unknown key {key!r} (neither one of awf's keys, "
                              "the long flag names with _ for -, nor upstream awf's; see "
                              "docs/config.md)")
        if value is None:  # `key:` with no value (as --print-config shows unset keys)
            continue
        out.values[action.dest] = _as_flag_value(action, value, f"--config {name}: {key}")
        out.where[action.dest] = key
    return out


def _walk_upstream(out: FileValues, parser: argparse.ArgumentParser, node: Mapping[Any, Any],
                   prefix: str) -> None:
    for raw_key, value in node.items():
        path = f"{prefix}{raw_key}"
        here = f"--config {out.name}: {path}"
        if path in REFUSED_CONTAINERS and value:
            raise ConfigError(f"{here}: {REFUSED_CONTAINERS[path]}")
        if path in SCHEMA:
            _apply_row(out, parser, path, SCHEMA[path], value)
        elif path in CONTAINERS:
            if not isinstance(value, dict):
                raise ConfigError(f"{here}: expected a mapping, got {_show(value)}")
            _walk_upstream(out, parser, value, f"{path}.")
        elif f"{path}[]" in CONTAINERS:
            if not isinstance(value, list):
                raise ConfigError(f"{here}: expected a list, got {_show(value)}")
            for item in value:
                if not isinstance(item, dict):
                    raise ConfigError(f"{here}: expected a list of mappings, got {_show(item)}")
                _walk_upstream(out, parser, item, f"{path}[].")
        else:
            raise ConfigError(f"--config {out.name}: unknown key {path!r} (neither one of awf's "
                              "keys nor upstream awf's schema; see docs/config.md)")


def _apply_row(out: FileValues, parser: argparse.ArgumentParser, path: str, row: Row,
               value: Any) -> None:
    here = f"--config {out.name}: {path}"
    if path not in OPAQUE and isinstance(value, dict):
        raise ConfigError(f"{here}: expected a value, got a mapping")
    action = parser._option_string_actions.get(row.flag) if row.flag else None
    if row.status is Status.MAPPED or (action is not None
                                       and not isinstance(action, UpstreamFlag)):
        # mapped, or a flag of ours now implements what the table still calls unsupported
        dest = row.ours or (action.dest if action is not None else "")
        target = next((a for a in parser._actions if a.dest == dest), None)
        if target is None:  # pragma: no cover - the table names dests of run_parser
            raise AssertionError(f"{path} maps to unknown dest {dest!r}")
        converted = _convert(row.kind if row.ours else "", target, value, here)
        if (path == "apiProxy.targets.gemini.host"
                and out.where.get(dest) == "apiProxy.targets.antigravity.host"):
            return  # antigravity wins, as upstream
        out.values[dest], out.where[dest] = converted, path
        return
    if isinstance(action, UpstreamFlag) and _same(action.row, row):  # checked after the merge
        out.values[action.dest] = _as_flag_value(action, value, here)
        out.where[action.dest] = path
        return
    if row.asks_nothing(value) or row.silent:
        return
    if row.status is Status.REFUSED:
        raise ConfigError(f"{here}: {row.reason}")
    out.notes.append(f"{path} in {out.name}: {row.reason}")


def _same(a: Row, b: Row) -> bool:
    return (a.status, a.reason, a.inert, a.empty_inert) == (b.status, b.reason, b.inert,
                                                             b.empty_inert)


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _scalar(value: Any, here: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{here}: expected text or a number, got {_show(value)}")
    return str(value)


def _convert(kind: str, action: argparse.Action, value: Any, here: str) -> Any:
    if kind == "csv":
        items = value if isinstance(value, list) else [value]
        return ",".join(_scalar(v, here) for v in items)
    if kind == "not":  # upstream's `enabled: false` is our `--no-...: true`
        if not isinstance(value, bool):
            raise ConfigError(f"{here}: expected true or false, got {_show(value)}")
        return not value
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{here}: expected a whole number, got {_show(value)}")
    return _as_flag_value(action, value, here)


def _as_flag_value(action: argparse.Action, value: Any, here: str) -> Any:
    """A file value in the form the flag's parsing would have given."""
    if action.nargs == 0:  # store_true and boolean upstream flags
        if not isinstance(value, bool):
            raise ConfigError(f"{here}: expected true or false, got {_show(value)}")
        return value
    if isinstance(action, argparse._AppendAction) or (
            isinstance(action, UpstreamFlag) and action.arity == "append"):
        items = value if isinstance(value, list) else [value]
        return [_scalar(v, here) for v in items]
    if isinstance(action, UpstreamFlag) and action.arity == "optional" and value is True:
        return True
    if isinstance(value, list):
        value = ",".join(_scalar(v, here) for v in value)
    text = _scalar(value, here)
    if action.choices is not None and text not in action.choices:
        raise ConfigError(f"{here}: {text!r} is not one of {', '.join(map(str, action.choices))}")
    return text


# ------------------------------------------------------------------------------ layering


@dataclass
class Layered:
    ns: argparse.Namespace
    sources: dict[str, str]  # dest -> flag | file | default
    file: FileValues
    notes: list[str]
    keys: dict[str, str] = field(default_factory=dict)  # dest -> its flat key (long flag name)


def parse_layered(parser: argparse.ArgumentParser, argv: Sequence[str],
                  stdin: TextIO | None = None) -> Layered:
    """Flags over the --config file over the defaults; upstream's noted flags noted, its
    refused ones refused (ConfigError)."""
    actions = [a for a in parser._actions if a.dest != "help"]
    defaults = {a.dest: a.default for a in actions}
    saved = [(a, a.default) for a in actions]
    for a in actions:
        a.default = argparse.SUPPRESS
    try:
        given = vars(parser.parse_args(list(argv)))
    finally:
        for a, d in saved:
            a.default = d
    spec = given.get("config")
    file = load(spec, parser, stdin) if spec else FileValues()
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for dest, default in defaults.items():
        if dest in given:
            merged[dest], sources[dest] = given[dest], "flag"
        elif dest in file.values:
            merged[dest], sources[dest] = file.values[dest], "file"
        else:
            merged[dest], sources[dest] = default, "default"
    merged.setdefault("command", [])
    notes = list(file.notes)
    for action in actions:
        if not isinstance(action, UpstreamFlag):
            continue
        value = merged[action.dest]
        if action.row.asks_nothing(value) or action.row.silent:
            continue
        from_flag = sources[action.dest] == "flag"
        if action.row.status is Status.REFUSED:
            where = (action.option_strings[-1] if from_flag
                     else f"--config {file.name}: {file.where[action.dest]}")
            raise ConfigError(f"{where}: {action.row.reason}")
        where = (action.option_strings[-1] if from_flag
                 else f"{file.where[action.dest]} in {file.name}")
        notes.append(f"{where}: {action.row.reason}")
    keys = {}
    for action in actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        keys[action.dest] = flag_dest(longs[0]) if longs else action.dest
    return Layered(argparse.Namespace(**merged), sources, file, notes, keys)


def take_localhost(entries: Sequence[str]) -> tuple[list[str], bool]:
    """Upstream's `localhost` keyword out of --allow-domains values (each maybe a
    comma-separated list): the values without it, and whether it was there."""
    out: list[str] = []
    found = False
    for value in entries:
        items = [s.strip() for s in value.split(",")]
        kept = [s for s in items if s.lower().rstrip("/") not in LOCALHOST]
        found = found or len(kept) < len(items)
        if any(kept):
            out.append(",".join(kept))
    return out, found


# ------------------------------------------------------------------------------ printing


def redact(key: str, value: Any) -> Any:
    """Secrets out: a key named like one, and NAME=VALUE items whose NAME is."""
    if SECRET_NAME.search(key):
        return REDACTED if value not in (None, False, [], "") else value
    if isinstance(value, list):
        return [_redact_item(v) for v in value]
    return _redact_item(value)


_URL_PASSWORD = re.compile(r"(?<=://)([^/@:\s]*):[^/@\s]*@")


def _redact_item(item: Any) -> Any:
    if isinstance(item, str) and "://" in item:  # --upstream-proxy http://user:pass@host:port
        item = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{REDACTED}@", item)
    if isinstance(item, str) and "=" in item:
        name, _, _ = item.partition("=")
        if SECRET_NAME.search(name):
            return f"{name}={REDACTED}"
    return item


def effective_items(layered: Layered) -> Iterator[tuple[str, Any, str]]:
    """(key, value, source) for every setting but the command, redacted."""
    upstream_only = {f.names[-1].lstrip("-").replace("-", "_") for f in FLAGS}
    for dest in sorted(vars(layered.ns)):
        if dest in NOT_IN_FILE or (dest in upstream_only and layered.sources[dest] == "default"):
            continue
        key = layered.keys.get(dest, dest)
        yield key, redact(key, getattr(layered.ns, dest)), layered.sources[dest]


def render_effective(items: Sequence[tuple[str, Any, str]], config: str | None) -> str:
    """YAML that `--config` reads back (our flat keys), each line with its source."""
    head = f"# awf run: effective configuration (config file: {config or 'none'})\n"
    width = max((len(k) for k, _, _ in items), default=0)
    lines = [f"{(k + ':').ljust(width + 1)} {json.dumps(v, default=str)}  # {src}"
             for k, v, src in items]
    return head + "\n".join(lines) + "\n"
