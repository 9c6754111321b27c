"""proxy/api/config.py and main(): flags, the keys file, and one-line errors (exit 2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from proxy.api.config import help_text, load_keys, parse_argv, parse_keys
from proxy.api.main import main
from proxy.api.providers import ProviderName, Target
from proxy.api.ratelimit import Limits
from proxy.errors import ConfigError

SECRET = "sk-very-secret-value"


def keys_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "keys"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_defaults() -> None:
    cfg, keys = parse_argv([])
    assert keys is None
    assert cfg.listen_host == "127.0.0.1"
    assert [cfg.port_for(i) for i in range(4)] == [10000, 10001, 10002, 10003]
    assert cfg.targets == {
        ProviderName.OPENAI: Target("api.openai.com"),
        ProviderName.ANTHROPIC: Target("api.anthropic.com"),
        ProviderName.COPILOT: Target("api.githubcopilot.com"),
        ProviderName.GEMINI: Target("generativelanguage.googleapis.com"),
    }
    assert cfg.egress_proxy is None
    assert not cfg.limits.enabled
    assert (cfg.connect_timeout, cfg.read_timeout) == (30.0, 1800.0)


def test_every_flag(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    cfg, keys = parse_argv([
        "--keys-file", "/run/k", "--listen-host", "0.0.0.0", "--port-base", "0",
        "--openai-api-target", "127.0.0.1:9443", "--anthropic-api-target", "a.test",
        "--copilot-api-target", "c.test:8443", "--gemini-api-target", "[::1]:1",
        "--egress-proxy", "http://172.30.0.10:3128", "--extra-ca-certs", str(ca),
        "--log-dir", str(tmp_path), "--rate-limit-rpm", "60", "--rate-limit-rph", "1000",
        "--rate-limit-bytes-pm", "1048576",
    ])
    assert keys == Path("/run/k")
    assert cfg.listen_host == "0.0.0.0"
    assert cfg.port_for(3) == 0
    assert cfg.targets[ProviderName.OPENAI] == Target("127.0.0.1", 9443)
    assert cfg.targets[ProviderName.GEMINI] == Target("::1", 1)
    assert cfg.egress_proxy == "http://172.30.0.10:3128"
    assert cfg.extra_ca_certs == ca
    assert cfg.log_dir == tmp_path
    assert cfg.limits == Limits(60, 1000, 1048576)


def test_help_documents_every_flag() -> None:
    text = help_text()
    for flag in ("--keys-file", "--listen-host", "--port-base", "--openai-api-target",
                 "--anthropic-api-target", "--copilot-api-target", "--gemini-api-target",
                 "--egress-proxy", "--extra-ca-certs", "--log-dir", "--rate-limit-rpm",
                 "--rate-limit-rph", "--rate-limit-bytes-pm", "--version"):
        assert flag in text


@pytest.mark.parametrize(("argv", "message"), [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--openai-api-target", "https://x.test/v1"], "--openai-api-target"),
    (["--egress-proxy", "socks5://p:1080"], "--egress-proxy"),
    (["--egress-proxy", "http://u:p@p:3128"], "credentials"),
    (["--rate-limit-rpm", "0"], "--rate-limit-rpm"),
    (["--rate-limit-bytes-pm", "lots"], "--rate-limit-bytes-pm"),
    (["--listen-host", "localhost"], "--listen-host"),
    (["--port-base", "65535"], "--port-base"),
    (["--extra-ca-certs", "/nonexistent/ca.pem"], "--extra-ca-certs"),
    (["--openai-key", SECRET], "unrecognized arguments"),
])
def test_bad_flags(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("+", r"\+")):
        parse_argv(argv)


def test_main_bad_flag_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--rate-limit-rpm", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("awf-api-proxy: ")


def test_egress_proxy_default_port() -> None:
    cfg, _ = parse_argv(["--egress-proxy", "http://127.0.0.1"])
    assert cfg.egress_proxy == "http://127.0.0.1:3128"


def test_parse_keys() -> None:
    text = f"# the keys\n\nOPENAI_API_KEY={SECRET}\r\n  GEMINI_API_KEY = g-1 \n"
    assert parse_keys(text, source="k") == {"OPENAI_API_KEY": SECRET, "GEMINI_API_KEY": "g-1"}


@pytest.mark.parametrize(("text", "message"), [
    (f"OPENAI_API_KEY {SECRET}", "line 1: expected NAME=value"),
    (f"\nAWS_SECRET={SECRET}", "line 2: unknown name 'AWS_SECRET'"),
    (f"OPENAI_API_KEY={SECRET}\nOPENAI_API_KEY={SECRET}", "line 2: OPENAI_API_KEY is given twice"),
    ("OPENAI_API_KEY=", "line 1: OPENAI_API_KEY is empty"),
    (f"OPENAI_API_KEY={SECRET} more", "one printable word"),
    (f"OPENAI_API_KEY={SECRET}\x00", "control"),
])
def test_parse_keys_refuses_without_showing_the_value(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_keys(text, source="k")
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("mode", [0o400, 0o600])
def test_load_keys_accepts_private_modes(tmp_path: Path, mode: int) -> None:
    path = keys_file(tmp_path, f"ANTHROPIC_API_KEY={SECRET}\n", mode)
    assert load_keys(path) == {"ANTHROPIC_API_KEY": SECRET}


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o700, 0o660, 0o200])
def test_load_keys_refuses_other_modes(tmp_path: Path, mode: int) -> None:
    path = keys_file(tmp_path, f"ANTHROPIC_API_KEY={SECRET}\n", mode)
    with pytest.raises(ConfigError, match=f"mode {mode:04o}.*chmod 600"):
        load_keys(path)


def test_load_keys_refuses_a_symlink_a_directory_and_a_missing_file(tmp_path: Path) -> None:
    real = keys_file(tmp_path, f"OPENAI_API_KEY={SECRET}\n")
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match="cannot open"):
        load_keys(link)
    with pytest.raises(ConfigError, match="cannot open"):
        load_keys(tmp_path / "missing")
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    with pytest.raises(ConfigError):
        load_keys(d)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_load_keys_refuses_another_owner(tmp_path: Path) -> None:
    path = keys_file(tmp_path, f"OPENAI_API_KEY={SECRET}\n")
    os.chown(path, 65534, 65534)
    with pytest.raises(ConfigError, match="owned by uid 65534"):
        load_keys(path)


def test_main_refuses_an_open_keys_file(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = keys_file(tmp_path, f"OPENAI_API_KEY={SECRET}\n", 0o644)
    assert main(["--keys-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "chmod 600" in err
    assert SECRET not in err
