"""`awf run --upstream-proxy URL`: passed to the proxy, validated like the proxy, never shown
with its password; the host's HTTPS_PROXY/HTTP_PROXY are only mentioned, never used."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from awf.config import parse_run
from awf.configfile import render_effective
from proxy.errors import ConfigError

URL = "http://runner:s3cret@proxy.corp.example:3128"


def _notes(argv: list[str]) -> tuple[str, ...]:
    return parse_run(argv, io.StringIO("")).notes


def test_flag_goes_to_the_proxy_and_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(var, raising=False)
    cfg = parse_run(["--backend", "netns", "--upstream-proxy", URL, "--", "true"])
    i = cfg.proxy_args.index("--upstream-proxy")
    assert cfg.proxy_args[i + 1] == URL
    assert cfg.proxy.upstream_proxy is not None
    assert cfg.proxy.upstream_proxy.port == 3128
    shown = render_effective(cfg.effective, None)
    assert "s3cret" not in shown
    assert "runner:[REDACTED]@proxy.corp.example:3128" in shown
    assert not cfg.notes


def test_config_file_key(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"network": {"upstreamProxy": URL}}))
    cfg = parse_run(["--backend", "netns", "--config", str(path), "--", "true"])
    assert URL in cfg.proxy_args


@pytest.mark.parametrize("url", ["https://p:3128", "http://p", "socks5://p:1080"])
def test_bad_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="--upstream-proxy"):
        parse_run(["--backend", "netns", "--upstream-proxy", url, "--", "true"])


def test_host_proxy_variables_are_noted_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", URL)
    cfg = parse_run(["--", "true"])
    [note] = [n for n in cfg.notes if "HTTPS_PROXY" in n]
    assert "--upstream-proxy" in note
    assert "s3cret" not in note
    assert "--upstream-proxy" not in cfg.proxy_args
    assert cfg.proxy.upstream_proxy is None
    cfg = parse_run(["--backend", "netns", "--upstream-proxy", URL, "--", "true"])
    assert not [n for n in cfg.notes if "HTTPS_PROXY" in n]


def test_docker_backend_takes_it() -> None:
    cfg = parse_run(["--upstream-proxy", URL, "--", "true"])
    assert cfg.backend == "docker"
    assert URL in cfg.proxy_args
