"""Per-client policies (docs/proxy.md §12): a connection whose source address is in a named
client's networks is decided under that client's own allow and block lists instead of the
proxy's; every other connection gets the proxy's policy.

Pure: parsing the `--client`, `--client-allow-domains` and `--client-block-domains` flags (or the
config file's `clients` list) into `ClientSpec`s, building one frozen `Policy` per client, and
`ClientTable.select`, which maps a peer address to its client (or None) once per connection.
Two clients' networks may not overlap, so a source has at most one client. A client's policy has
only its own domain entries: ports (80, 443, `--allow-ports`) and `--allow-range` are the
proxy's, URL rules and bumping never apply to it, and it is never in learn mode.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.addr import AddressSet, IPAddress, IPNetwork, parse_network
from proxy.errors import ConfigError
from proxy.policy import Policy, parse_domain_list

NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
CLIENT_FLAGS = ("client", "client_allow_domains", "client_block_domains")


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """One client as configured: its name (the log's `client_name`), source networks and
    entries (validated when its policy is built)."""

    name: str
    networks: tuple[IPNetwork, ...]
    allow_domains: tuple[str, ...] = ()
    block_domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Client:
    """One client as running: where it connects from and its policy."""

    name: str
    addresses: AddressSet
    policy: Policy


def _name(text: str, flag: str) -> str:
    name = text.strip()
    if NAME_RE.fullmatch(name) is None:
        raise ConfigError(f"{flag}: {name!r} is not a client name; use 1-32 of a-z 0-9 '-', "
                          "starting with a letter or digit (e.g. api-proxy)")
    return name


def _split(text: str, flag: str, want: str) -> tuple[str, str]:
    name, sep, rest = text.partition("=")
    if not sep:
        raise ConfigError(f"{flag}: {text!r} is not NAME={want}, e.g. "
                          f"'api-proxy={'127.0.0.1/32' if want == 'CIDR' else 'example.com'}'")
    return _name(name, flag), rest


def _networks(items: Iterable[str], flag: str) -> list[IPNetwork]:
    return [parse_network(item, what=flag) for item in items if item.strip()]


def parse_client_flags(clients: Sequence[str], allows: Sequence[str] = (),
                       blocks: Sequence[str] = ()) -> tuple[ClientSpec, ...]:
    """`--client NAME=CIDR[,CIDR...]` (repeatable; the same NAME again adds networks),
    `--client-allow-domains NAME=LIST` and `--client-block-domains NAME=LIST` (repeatable; LIST
    as in --allow-domains) to specs, in the order the names first appear."""
    nets: dict[str, list[IPNetwork]] = {}
    for text in clients:
        name, rest = _split(text, "--client", "CIDR")
        nets.setdefault(name, []).extend(_networks(rest.split(","), "--client"))
    entries: dict[str, tuple[list[str], list[str]]] = {name: ([], []) for name in nets}
    for flag, texts, index in (("--client-allow-domains", allows, 0),
                               ("--client-block-domains", blocks, 1)):
        for text in texts:
            name, rest = _split(text, flag, "LIST")
            if name not in entries:
                raise ConfigError(f"{flag}: no client {name!r}; define it first with "
                                  f"--client {name}=CIDR")
            entries[name][index].extend(parse_domain_list(rest))
    specs = tuple(ClientSpec(name, tuple(nets[name]), tuple(entries[name][0]),
                             tuple(entries[name][1])) for name in nets)
    check(specs)
    return specs


def _texts(value: object, what: str) -> list[str]:
    values = value if isinstance(value, list) else [value]
    out: list[str] = []
    for v in values:
        if not isinstance(v, str):
            raise ConfigError(f"{what}: expected text, got {v!r}")
        out.append(v)
    return out


def parse_client_file(value: object) -> tuple[ClientSpec, ...]:
    """The config file's `clients`: a list of mappings `{name, from, allow_domains,
    block_domains}`; `from` a CIDR or a list of them, the entry lists as in the file's
    `allow_domains`."""
    items = value if isinstance(value, list) else [value]
    specs = []
    for i, item in enumerate(items):
        what = f"clients[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"--config: {what} must be a mapping with name, from, "
                              "allow_domains and block_domains")
        keys = {str(k).replace("-", "_"): v for k, v in item.items()}
        unknown = set(keys) - {"name", "from", "allow_domains", "block_domains"}
        if unknown:
            raise ConfigError(f"--config: {what}: unknown key {sorted(unknown)[0]!r}; known: "
                              "name, from, allow_domains, block_domains")
        if "name" not in keys or "from" not in keys:
            raise ConfigError(f"--config: {what} needs a name and a from (a CIDR)")
        name = _name(str(keys["name"]), f"--config: {what}.name")
        nets = _networks((n for t in _texts(keys["from"], f"{what}.from")
                          for n in t.split(",")), f"--config: {what}.from")
        lists: list[tuple[str, ...]] = []
        for key in ("allow_domains", "block_domains"):
            found: list[str] = []
            for text in _texts(keys.get(key, []), f"--config: {what}.{key}"):
                found.extend(parse_domain_list(text))
            lists.append(tuple(found))
        specs.append(ClientSpec(name, tuple(nets), lists[0], lists[1]))
    out = tuple(specs)
    check(out)
    return out


def check(specs: Sequence[ClientSpec]) -> None:
    """Names unique, every client with a network, no two clients' networks overlapping (a
    source has at most one client)."""
    seen: dict[str, ClientSpec] = {}
    for spec in specs:
        if spec.name in seen:
            raise ConfigError(f"--client: {spec.name!r} is defined twice; give each client "
                              "its own name")
        if not spec.networks:
            raise ConfigError(f"--client: {spec.name!r} has no source network; write it like "
                              f"--client {spec.name}=127.0.0.1/32")
        for other in seen.values():
            for a in spec.networks:
                for b in other.networks:
                    if a.version == b.version and a.overlaps(b):
                        raise ConfigError(f"--client: {spec.name}'s {a} overlaps {other.name}'s "
                                          f"{b}; a source address can have only one client")
        seen[spec.name] = spec


@dataclass(frozen=True, slots=True)
class ClientTable:
    """The running clients; empty: every connection is decided under the proxy's policy."""

    clients: tuple[Client, ...] = ()

    @classmethod
    def build(cls, specs: Iterable[ClientSpec], *, allow_ports: Iterable[int] = (),
              allow_ranges: Iterable[str] = ()) -> ClientTable:
        """One Policy per client: its entries, the proxy's ports and ranges, never learn mode.
        A bad entry is a ConfigError naming the client's flag."""
        ports, ranges = frozenset(allow_ports), tuple(allow_ranges)
        out = []
        for spec in specs:
            try:
                policy = Policy.build(allow_domains=list(spec.allow_domains),
                                      block_domains=list(spec.block_domains),
                                      allow_ports=ports, allow_ranges=ranges)
            except ConfigError as exc:
                text = str(exc)
                for flag in ("--allow-domains", "--block-domains"):
                    if text.startswith(flag):
                        text = f"--client-{flag[2:]} {spec.name}" + text[len(flag):]
                raise ConfigError(text) from None
            out.append(Client(spec.name, AddressSet.of(spec.networks), policy))
        return cls(tuple(out))

    def select(self, ip: IPAddress | None) -> Client | None:
        """The client a connection from `ip` belongs to, or None (the proxy's own policy).
        An IPv4-mapped IPv6 peer (a dual-stack listener) counts as its IPv4 address."""
        if ip is None:
            return None
        for client in self.clients:
            if ip in client.addresses:
                return client
        return None

    def get(self, name: str) -> Client | None:
        for client in self.clients:
            if client.name == name:
                return client
        return None

    def counts(self) -> dict[str, dict[str, int]]:
        """Per client, its policy's sizes (for /healthz)."""
        return {c.name: c.policy.counts() for c in self.clients}


def peer_address(peername: Any) -> IPAddress | None:
    """A socket's peername (`(host, port, ...)`) to its address, or None (a Unix socket, no
    peer)."""
    if not peername or not isinstance(peername, tuple) or not isinstance(peername[0], str):
        return None
    try:
        return ipaddress.ip_address(peername[0].split("%", 1)[0])
    except ValueError:
        return None
