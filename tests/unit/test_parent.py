"""proxy.parent's pure parts: the --upstream-proxy URL, the CONNECT head, the parent's answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import parse_argv
from proxy.errors import ConfigError
from proxy.parent import (
    Parent,
    ParentFailed,
    connect_request,
    for_parent,
    parse_answer,
    parse_parent_url,
)

SECRET = "pa%3Ass:w0rd"


def test_url_with_credentials() -> None:
    p = parse_parent_url(f"http://user:{SECRET}@Proxy.Corp.Example:3128")
    assert (p.host, p.port) == ("proxy.corp.example", 3128)
    assert p.authorization == b"Basic dXNlcjpwYTpzczp3MHJk"  # user:pa:ss:w0rd
    for text in (repr(p), p.shown, str(parse_argv(["--upstream-proxy",
                                                   f"http://user:{SECRET}@p:1"]))):
        assert "w0rd" not in text
        assert "user" not in text.replace("upstream", "")


@pytest.mark.parametrize(("url", "host", "port"), [
    ("http://10.0.0.1:8080", "10.0.0.1", 8080),
    ("http://[fd00::1]:3128/", "fd00::1", 3128),
    ("HTTP://proxy:3128", "proxy", 3128),
])
def test_url_without_credentials(url: str, host: str, port: int) -> None:
    assert parse_parent_url(url) == Parent(host, port, None)


@pytest.mark.parametrize("url", [
    "https://p:3128", "socks5://p:1080", "p:3128", "http://p", "http://p:0", "http://p:99999",
    "http://p:3128/path", "http://p:3128?x", "http://:3128", "http://bad_host:3128",
    f"ftp://u:{SECRET}@p:21", f"http://:{SECRET}@p:3128", "",
])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="--upstream-proxy") as err:
        parse_parent_url(url)
    assert "w0rd" not in str(err.value)
    assert "\n" not in str(err.value)


def test_connect_request() -> None:
    p = Parent("p", 3128, b"Basic eA==")
    assert connect_request(p, "example.com", 443) == (
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
        b"Proxy-Authorization: Basic eA==\r\n\r\n")
    assert connect_request(Parent("p", 1), "::1", 443).startswith(b"CONNECT [::1]:443 ")


def test_for_parent_makes_the_target_absolute() -> None:
    wire = b"GET /a?b HTTP/1.1\r\nHost: example.com\r\n\r\n"
    assert for_parent(wire, Parent("p", 1), "example.com", 80) == (
        b"GET http://example.com/a?b HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert for_parent(wire, Parent("p", 1, b"Basic eA=="), "::1", 8080) == (
        b"GET http://[::1]:8080/a?b HTTP/1.1\r\nProxy-Authorization: Basic eA==\r\n"
        b"Host: example.com\r\n\r\n")


def test_parse_answer() -> None:
    assert parse_answer(b"HTTP/1.1 200 Connection established\r\n") is None
    head = b"HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\n"
    assert parse_answer(head + b"origin bytes") == (200, "Connection established", len(head))
    assert parse_answer(b"HTTP/1.0 407\r\n\r\n") == (407, "", 16)
    with pytest.raises(ParentFailed):
        parse_answer(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(ParentFailed):
        parse_answer(b"x" * 20_000)


def test_config_file_key(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"upstream-proxy": "http://u:pw@10.0.0.5:3128"}')
    cfg = parse_argv(["--config", str(path)])
    assert cfg.upstream_proxy == Parent("10.0.0.5", 3128, b"Basic dTpwdw==")
