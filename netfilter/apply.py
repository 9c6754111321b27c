"""The only nft caller: apply a ruleset, read it back, remove it, read its counters.

Why ``nft -f -`` and not libnftables JSON or netlink from Python: the rendered script goes to
one ``nft`` process as one batch, which the kernel commits as one transaction (all or nothing,
the old table stays if any line fails); the script is the same text a human reads in ``dump``
and hashes in ``sha256()``; and no binding to libnftables (a C library with no wheel) is needed.
pyroute2's nftables API sends a transaction per rule and leaves acks unread. For reading back we
do use nft's JSON (``nft -j``), which is stable to parse, where its text output is not.

Inside a namespace nft runs under ``nsenter --net=/run/netns/NAME``: it only ``setns``es the
network namespace and execs. ``ip netns exec`` also unshares a mount namespace, remounts
``/sys`` and bind-mounts ``/etc/netns/NAME``: slower, and nothing nft needs.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from netfilter.errors import NetfilterError
from netfilter.ruleset import (
    PORT_PROTOCOLS,
    IPNetwork,
    Ruleset,
    RuleShape,
    Table,
    canonical_nets,
)

NETNS_DIR = "/run/netns"
NFT_TIMEOUT = 10.0
HINT = "needs root/CAP_NET_ADMIN and nftables"


class Model(Protocol):
    """What ``apply`` and ``verify`` take: a ``Ruleset``, or ``netfilter.egress_nat.EgressNat``."""

    @property
    def table(self) -> str: ...

    def model(self) -> Table: ...

    def render(self) -> str: ...
_NETNS_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_MISSING = "No such file or directory"


def _argv(args: Sequence[str], netns: str | None) -> list[str]:
    if netns is None:
        return ["nft", *args]
    if not _NETNS_NAME.fullmatch(netns):
        raise NetfilterError(f"network namespace name {netns!r} is not valid")
    return ["nsenter", f"--net={NETNS_DIR}/{netns}", "--", "nft", *args]


def _where(netns: str | None) -> str:
    return "the current netns" if netns is None else f"netns {netns!r}"


def _run(args: Sequence[str], *, netns: str | None, stdin: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    if netns is not None and not os.path.exists(f"{NETNS_DIR}/{netns}"):
        raise NetfilterError(f"network namespace {netns!r} does not exist "
                             f"({NETNS_DIR}/{netns} is missing)")
    argv = _argv(args, netns)
    try:
        return subprocess.run(argv, input=stdin, text=True, capture_output=True,
                              timeout=NFT_TIMEOUT, check=False)
    except FileNotFoundError as exc:
        raise NetfilterError(f"cannot run {argv[0]!r}: not found; install nftables "
                             "(and util-linux for nsenter)") from exc
    except subprocess.TimeoutExpired as exc:
        raise NetfilterError(f"{' '.join(argv)!r} did not finish in {NFT_TIMEOUT:g} s") from exc


def _fail(what: str, table: str, netns: str | None, done: subprocess.CompletedProcess[str]
          ) -> NetfilterError:
    err = done.stderr.strip() or f"exit status {done.returncode}"
    return NetfilterError(f"nft could not {what} table 'inet {table}' in {_where(netns)}: "
                          f"{err} ({HINT})")


def apply(ruleset: Ruleset | Model, *, netns: str | None = None, fresh: bool = False) -> None:
    """Replace table ``inet <ruleset.table>`` with ``ruleset`` in one transaction; with
    ``fresh``, create it (`fresh_script`): the transaction fails if the table exists."""
    script = ruleset.render()
    done = _run(["-f", "-"], netns=netns,
                stdin=fresh_script(script, ruleset.table) if fresh else script)
    if done.returncode != 0:
        raise _fail("apply", ruleset.table, netns, done)


def fresh_script(script: str, table: str) -> str:
    """A rendered ruleset (``add table``, ``delete table``, ``table { ... }``: a replacement)
    as the creation of a table that must not exist yet: ``create table``, which fails the whole
    transaction if it does, then the same ``table { ... }``. For a run's own table (its name
    has the run's id, or it is in a namespace made for the run): a delete in the transaction
    makes the kernel's commit wait for an RCU grace period, 15-20 ms of every start."""
    head = f"add table inet {table}\ndelete table inet {table}\n"
    if not script.startswith(head):
        raise NetfilterError(f"the ruleset of table 'inet {table}' does not start by "
                             "replacing it; cannot create it fresh")
    return f"create table inet {table}\n" + script[len(head):]


def remove(table: str, *, netns: str | None = None) -> bool:
    """Delete table ``inet <table>``; ``False`` if it (or its namespace) was not there."""
    if netns is not None and not os.path.exists(f"{NETNS_DIR}/{netns}"):
        return False
    done = _run(["delete", "table", "inet", table], netns=netns)
    if done.returncode == 0:
        return True
    if _MISSING in done.stderr:
        return False
    raise _fail("delete", table, netns, done)


def list_tables(prefix: str, netns: str | None = None) -> list[str]:
    """Names of the ``inet`` tables starting with ``prefix``, sorted."""
    done = _run(["-j", "list", "tables"], netns=netns)
    if done.returncode != 0:
        raise NetfilterError(f"nft could not list tables in {_where(netns)}: "
                             f"{done.stderr.strip()} ({HINT})")
    names = [o["table"]["name"] for o in _objects(done.stdout) if "table" in o
             and o["table"].get("family") == "inet"]
    return sorted(n for n in names if isinstance(n, str) and n.startswith(prefix))


def _list_table(table: str, netns: str | None, *, terse: bool) -> list[dict[str, Any]]:
    done = _run(["-j", *(["-t"] if terse else []), "list", "table", "inet", table], netns=netns)
    if done.returncode != 0:
        if _MISSING in done.stderr:
            raise NetfilterError(f"table 'inet {table}' is missing in {_where(netns)}; "
                                 "the ruleset was never applied or was removed")
        raise _fail("list", table, netns, done)
    return _objects(done.stdout)


def verify(ruleset: Ruleset | Model, *, netns: str | None = None) -> None:
    """Raise ``NetfilterError`` unless the live table has exactly the model's sets, chains
    (type, hook, priority, policy) and rules (``RuleShape``, in order)."""
    live = read_live(_list_table(ruleset.table, netns, terse=True), ruleset.table)
    problems = differences(ruleset.model(), live)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more"
                                            if len(problems) > 5 else "")
        raise NetfilterError(f"live table 'inet {ruleset.table}' in {_where(netns)} differs "
                             f"from the model: {shown}")


def counters(table: str, netns: str | None = None) -> list[dict[str, object]]:
    """The refused destinations recorded in ``@rejected4``/``@rejected6``, most hit first:
    ``{"dst": "192.0.2.1", "proto": "tcp", "port": 22, "count": 3}`` (``port`` is ``None`` for
    protocols without ports)."""
    return _counters(_list_table(table, netns, terse=False))


def counters_of(text: str) -> list[dict[str, object]]:
    """`counters` from the text of `nft -j list table inet NAME` run elsewhere (in a
    container)."""
    return _counters(_objects(text))


def _counters(objects: list[dict[str, Any]]) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    for obj in objects:
        s = obj.get("set")
        if isinstance(s, dict) and s.get("name") in ("rejected4", "rejected6"):
            found.extend(_elements(s.get("elem") or []))
    return sorted(found, key=lambda e: (-int(str(e["count"])), str(e["dst"]), str(e["proto"]),
                                        int(str(e["port"] or 0))))


def _elements(elems: list[Any]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for item in elems:
        elem = item.get("elem") if isinstance(item, dict) else None
        if not isinstance(elem, dict):
            continue
        val = elem.get("val")
        parts = val.get("concat") if isinstance(val, dict) else None
        if not isinstance(parts, list) or len(parts) != 3:
            continue
        dst, proto, port = parts
        counter = elem.get("counter")
        count = counter.get("packets", 0) if isinstance(counter, dict) else 0
        proto = str(proto)
        out.append({"dst": str(dst), "proto": proto,
                    "port": int(port) if proto in PORT_PROTOCOLS else None,
                    "count": int(count)})
    return out


def _objects(text: str) -> list[dict[str, Any]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NetfilterError(f"nft -j printed something that is not JSON: {exc}") from exc
    items = doc.get("nftables") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise NetfilterError("nft -j output has no 'nftables' list")
    return [o for o in items if isinstance(o, dict)]


# --- reading the live table back (pure) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiveChain:
    name: str
    type: str | None
    hook: str | None
    prio: int | None
    policy: str | None
    rules: tuple[RuleShape, ...]


@dataclass(frozen=True, slots=True)
class LiveTable:
    name: str
    sets: dict[str, tuple[str, ...]]
    chains: dict[str, LiveChain]


def read_live(objects: list[dict[str, Any]], table: str) -> LiveTable:
    """``nft -j list table inet T`` objects, reduced to what ``differences`` compares."""
    sets: dict[str, tuple[str, ...]] = {}
    heads: dict[str, dict[str, Any]] = {}
    rules: dict[str, list[RuleShape]] = {}
    for obj in objects:
        for kind, body in obj.items():
            if not isinstance(body, dict) or body.get("table", table) != table:
                continue
            if kind == "set":
                key = body.get("type")
                sets[str(body.get("name"))] = tuple(key) if isinstance(key, list) else (str(key),)
            elif kind == "chain":
                heads[str(body.get("name"))] = body
                rules.setdefault(str(body.get("name")), [])
            elif kind == "rule":
                rules.setdefault(str(body.get("chain")), []).append(rule_shape(body.get("expr")))
    chains = {}
    for name, head in heads.items():
        prio = head.get("prio")
        chains[name] = LiveChain(name, head.get("type"), head.get("hook"),
                                 prio if isinstance(prio, int) else None, head.get("policy"),
                                 tuple(rules.get(name, ())))
    return LiveTable(table, sets, chains)


def rule_shape(expr: Any) -> RuleShape:
    """The ``RuleShape`` of one rule's JSON ``expr`` list."""
    kinds: list[str] = []
    ints: set[int] = set()
    nets: list[IPNetwork] = []
    names: set[str] = set()
    negated = 0
    for stmt in expr if isinstance(expr, list) else []:
        if not isinstance(stmt, dict):
            continue
        for key, body in stmt.items():
            if key == "match" and isinstance(body, dict):
                negated += body.get("op") == "!="
                left, right = body.get("left"), body.get("right")
                meta = left.get("meta") if isinstance(left, dict) else None
                if (isinstance(meta, dict) and meta.get("key") in ("iifname", "oifname")
                        and isinstance(right, str)):
                    names.add(right)
                else:
                    _leaves(right, ints, nets)
            elif key in ("goto", "jump") and isinstance(body, dict):
                kinds.append(f"{key} {body.get('target')}")
            elif key == "set" and isinstance(body, dict):
                kinds.append(f"set {body.get('op')} {body.get('set')}")
            elif key == "redirect":
                kinds.append(key)
                if isinstance(body, dict) and isinstance(body.get("port"), int):
                    ints.add(body["port"])
            else:
                kinds.append(key)
    return RuleShape(tuple(kinds), frozenset(ints), canonical_nets(nets), frozenset(names),
                     negated)


def _leaves(value: Any, ints: set[int], nets: list[IPNetwork]) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        ints.add(value)
    elif isinstance(value, str):
        try:
            nets.append(ipaddress.ip_network(value))
        except ValueError:
            pass  # a keyword: tcp, established, local, @set
    elif isinstance(value, list):
        for v in value:
            _leaves(v, ints, nets)
    elif isinstance(value, dict):
        if "prefix" in value and isinstance(value["prefix"], dict):
            p = value["prefix"]
            nets.append(ipaddress.ip_network(f"{p.get('addr')}/{p.get('len')}"))
        elif "range" in value and isinstance(value["range"], list) and len(value["range"]) == 2:
            lo, hi = value["range"]
            if isinstance(lo, int) and isinstance(hi, int):
                ints.update(range(lo, min(hi, 65535) + 1))
            else:
                nets.extend(ipaddress.summarize_address_range(
                    ipaddress.ip_address(lo), ipaddress.ip_address(hi)))
        else:
            for v in value.values():
                _leaves(v, ints, nets)


def differences(expected: Table, live: LiveTable) -> list[str]:
    """What differs between the model and the live table; empty when they match."""
    out: list[str] = []
    want_sets = {s.name: s.key for s in expected.sets}
    for name in sorted(want_sets.keys() | live.sets.keys()):
        if name not in live.sets:
            out.append(f"set {name!r} is missing")
        elif name not in want_sets:
            out.append(f"unexpected set {name!r}")
        elif want_sets[name] != live.sets[name]:
            out.append(f"set {name!r} has type {live.sets[name]}, expected {want_sets[name]}")
    want = {c.name: c for c in expected.chains}
    for name in sorted(want.keys() | live.chains.keys()):
        if name not in live.chains:
            out.append(f"chain {name!r} is missing")
            continue
        if name not in want:
            out.append(f"unexpected chain {name!r}")
            continue
        chain, got = want[name], live.chains[name]
        head = ((chain.type, chain.hook, chain.priority.value, chain.policy)
                if chain.hook is not None else (None, None, None, None))
        if head != (got.type, got.hook, got.prio, got.policy):
            out.append(f"chain {name!r} is (type, hook, prio, policy) = "
                       f"{(got.type, got.hook, got.prio, got.policy)}, expected {head}")
        shapes = tuple(r.shape() for r in chain.rules)
        if len(shapes) != len(got.rules):
            out.append(f"chain {name!r} has {len(got.rules)} rules, expected {len(shapes)}")
            continue
        for i, (a, b) in enumerate(zip(shapes, got.rules, strict=True)):
            if a != b:
                out.append(f"chain {name!r} rule {i + 1} is {b}, expected {a} "
                           f"({chain.rules[i].render()!r})")
    return out
