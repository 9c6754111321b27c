"""proxy/clients.py and the --client flags: which client a source address belongs to, and each
client's own policy (docs/proxy.md §12)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from proxy.clients import (
    ClientSpec,
    ClientTable,
    parse_client_file,
    parse_client_flags,
    peer_address,
)
from proxy.config import build_clients, parse_argv
from proxy.errors import ConfigError
from proxy.policy import Scheme
from proxy.reasons import Reason


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def table(*argv: str) -> ClientTable:
    return build_clients(parse_argv(list(argv)))


def test_no_client_flag_means_no_client() -> None:
    t = table("--allow-domains", "example.com")
    assert t.clients == ()
    assert t.select(ip("127.0.0.1")) is None


def test_flags_make_one_spec_per_name_in_order() -> None:
    specs = parse_client_flags(
        ["api-proxy=127.0.0.2/32", "ci=10.1.0.0/16,fd00::/64", "api-proxy=127.0.0.3"],
        ["api-proxy=api.openai.com:443, api.anthropic.com", "ci=github.com"],
        ["api-proxy=evil.api.openai.com"])
    assert [s.name for s in specs] == ["api-proxy", "ci"]
    assert specs[0] == ClientSpec(
        "api-proxy", (ipaddress.ip_network("127.0.0.2/32"), ipaddress.ip_network("127.0.0.3/32")),
        ("api.openai.com:443", "api.anthropic.com"), ("evil.api.openai.com",))
    assert specs[1].networks == (ipaddress.ip_network("10.1.0.0/16"),
                                 ipaddress.ip_network("fd00::/64"))


def test_select_by_source_address_mapped_v6_too() -> None:
    t = table("--client", "api-proxy=127.0.0.2/32", "--client", "ci=10.1.0.0/16,fd00::/64")
    assert t.select(ip("127.0.0.2")).name == "api-proxy"  # type: ignore[union-attr]
    assert t.select(ip("::ffff:127.0.0.2")).name == "api-proxy"  # type: ignore[union-attr]
    assert t.select(ip("10.1.200.3")).name == "ci"  # type: ignore[union-attr]
    assert t.select(ip("fd00::5")).name == "ci"  # type: ignore[union-attr]
    for other in ("127.0.0.1", "10.2.0.1", "fd01::1", "::1"):
        assert t.select(ip(other)) is None
    assert t.select(None) is None


def test_a_clients_policy_is_its_own_list_with_the_proxys_ports_and_ranges() -> None:
    t = table("--allow-domains", "github.com", "--allow-ports", "8080",
              "--allow-range", "10.9.0.0/16",
              "--client", "api-proxy=127.0.0.2/32",
              "--client-allow-domains", "api-proxy=api.openai.com,svc.test:9443",
              "--client-block-domains", "api-proxy=bad.api.openai.com")
    policy = t.get("api-proxy").policy  # type: ignore[union-attr]
    assert policy.decide("api.openai.com", 443, Scheme.HTTPS).allowed
    assert policy.decide("api.openai.com", 8080, Scheme.HTTPS).allowed  # --allow-ports
    assert policy.decide("svc.test", 9443, Scheme.HTTPS).allowed
    assert policy.decide("svc.test", 443, Scheme.HTTPS).reason == Reason.PORT_DENIED
    assert policy.decide("github.com", 443, Scheme.HTTPS).reason == Reason.DOMAIN_NOT_ALLOWED
    assert policy.decide("bad.api.openai.com", 443, Scheme.HTTPS).reason == Reason.DOMAIN_BLOCKED
    assert policy.address_allowed(ip("10.9.1.1"))  # --allow-range
    assert not policy.address_allowed(ip("10.8.1.1"))
    assert not policy.learn


def test_a_client_without_entries_allows_nothing() -> None:
    policy = table("--allow-domains", "github.com", "--client", "x=192.0.2.0/24",
                   "--learn").get("x").policy  # type: ignore[union-attr]
    assert not policy.learn
    assert policy.decide("github.com", 443, Scheme.HTTPS).reason == Reason.DOMAIN_NOT_ALLOWED


@pytest.mark.parametrize(("argv", "message"), [
    (["--client", "api-proxy"], "--client: 'api-proxy' is not NAME=CIDR"),
    (["--client", "Api=127.0.0.1"], "--client: 'Api' is not a client name"),
    (["--client", "a=127.0.0.1/8"], "has host bits set; did you mean '127.0.0.0/8'"),
    (["--client", "a=localhost"], "--client: 'localhost' is not an IP address or CIDR"),
    (["--client", "a="], "--client: 'a' has no source network"),
    (["--client", "a=10.0.0.0/8", "--client", "b=10.1.0.0/16"],
     "--client: b's 10.1.0.0/16 overlaps a's 10.0.0.0/8"),
    (["--client-allow-domains", "a=x.test"], "need a client: --client NAME=CIDR"),
    (["--client", "a=10.0.0.1", "--client-allow-domains", "b=x.test"],
     "--client-allow-domains: no client 'b'; define it first with --client b=CIDR"),
    (["--client", "a=10.0.0.1", "--client-allow-domains", "a=*.com"],
     "--client-allow-domains a: '*.com' is too broad"),
    (["--client", "a=10.0.0.1", "--client-block-domains", "a=x.test:80"],
     "--client-block-domains a: 'x.test:80' has a port"),
    (["--client", "a=10.0.0.1", "--client-allow-domains", "a=x.test:22"],
     "--client-allow-domains a: "),
])
def test_bad_flags_are_one_config_error_naming_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        table(*argv)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_the_config_file_list_form(tmp_path: Path) -> None:
    path = tmp_path / "proxy.json"
    path.write_text(json.dumps({"allow_domains": ["github.com"], "clients": [
        {"name": "api-proxy", "from": ["127.0.0.2/32", "::1"],
         "allow_domains": ["api.openai.com", "api.anthropic.com:8443"],
         "block-domains": "x.api.openai.com"}]}))
    t = table("--config", str(path))
    client = t.get("api-proxy")
    assert client is not None
    assert t.select(ip("::1")) is client
    assert client.policy.decide("api.anthropic.com", 8443, Scheme.HTTPS).allowed
    assert client.policy.decide("x.api.openai.com", 443, Scheme.HTTPS).reason == \
        Reason.DOMAIN_BLOCKED


def test_client_flags_replace_the_files_clients(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text("clients:\n  - name: old\n    from: 10.0.0.0/8\n")
    assert [c.name for c in table("--config", str(path)).clients] == ["old"]
    t = table("--config", str(path), "--client", "new=192.0.2.0/24")
    assert [c.name for c in t.clients] == ["new"]


@pytest.mark.parametrize(("value", "message"), [
    ("x", "clients[0] must be a mapping"),
    ([{"name": "a"}], "clients[0] needs a name and a from"),
    ([{"name": "a", "from": "10.0.0.0/8", "allow": ["x"]}], "unknown key 'allow'"),
    ([{"name": "a", "from": "10.0.0.0/8"}, {"name": "a", "from": "192.0.2.0/24"}],
     "'a' is defined twice"),
    ([{"name": "a", "from": 5}], "expected text"),
])
def test_bad_file_clients(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_client_file(value)
    assert message in str(err.value)


def test_file_with_both_forms_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "proxy.json"
    path.write_text(json.dumps({"clients": [{"name": "a", "from": "10.0.0.0/8"}],
                                "client": "b=192.0.2.0/24"}))
    with pytest.raises(ConfigError, match="not both"):
        parse_argv(["--config", str(path)])


def test_peer_address() -> None:
    assert peer_address(("127.0.0.2", 5000)) == ip("127.0.0.2")
    assert peer_address(("fe80::1%eth0", 5000, 0, 2)) == ip("fe80::1")
    assert peer_address(None) is None
    assert peer_address("") is None
    assert peer_address(("not-an-ip", 1)) is None
