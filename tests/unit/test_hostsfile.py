"""The hosts file parser and how its answers combine with --resolve (docs/proxy.md §4)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from proxy.config import parse_argv, static_answers
from proxy.errors import ConfigError
from proxy.hostsfile import parse_hosts

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address

HOSTS = """\
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
# a comment line
192.0.2.10  Svc.Test svc-alias.test.   # trailing comment
192.0.2.11  svc.test
fe80::1%eth0  zoned.test
not-an-ip   broken.test
300.1.1.1   overflow.test
192.0.2.12  bad..name.test good.test
192.0.2.13
2001:db8::5 v6.test
"""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("localhost", (V4("127.0.0.1"), V6("::1"))),
        ("ip6-loopback", (V6("::1"),)),
        ("svc.test", (V4("192.0.2.10"), V4("192.0.2.11"))),  # every line, in file order
        ("svc-alias.test", (V4("192.0.2.10"),)),  # trailing dot removed, like requested names
        ("good.test", (V4("192.0.2.12"),)),
        ("v6.test", (V6("2001:db8::5"),)),
    ],
)
def test_parse_hosts_answers(name: str, expected: tuple[object, ...]) -> None:
    assert parse_hosts(HOSTS)[name] == expected


@pytest.mark.parametrize("name", ["zoned.test", "broken.test", "overflow.test", "bad..name.test",
                                  "a", "comment"])
def test_parse_hosts_skips_what_the_c_library_skips(name: str) -> None:
    assert name not in parse_hosts(HOSTS)


def test_parse_hosts_of_nothing() -> None:
    assert parse_hosts("") == {}
    assert parse_hosts("\n# only comments\n   \n") == {}


def test_resolve_beats_the_hosts_file(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(HOSTS)
    cfg = parse_argv(["--hosts-file", str(hosts), "--resolve", "svc.test=192.0.2.99"])
    answers = static_answers(cfg)
    assert answers["svc.test"] == (V4("192.0.2.99"),)
    assert answers["good.test"] == (V4("192.0.2.12"),)


def test_empty_hosts_file_flag_ignores_it(tmp_path: Path) -> None:
    cfg = parse_argv(["--hosts-file", "", "--resolve", "x.test=192.0.2.1"])
    assert cfg.hosts_file is None
    assert static_answers(cfg) == {"x.test": (V4("192.0.2.1"),)}


def test_default_is_etc_hosts() -> None:
    assert parse_argv([]).hosts_file == Path("/etc/hosts")


def test_named_hosts_file_must_exist(tmp_path: Path) -> None:
    cfg = parse_argv(["--hosts-file", str(tmp_path / "missing")])
    with pytest.raises(ConfigError, match=r"--hosts-file: no file .*missing.*--hosts-file ''"):
        static_answers(cfg)
