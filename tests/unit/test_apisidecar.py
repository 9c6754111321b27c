"""awf/apisidecar.py: when the sidecar starts, what the command and the sidecar are told."""

from __future__ import annotations

import ipaddress
import json
import os
import stat
from pathlib import Path

import pytest

from awf import apisidecar
from awf import run as shared
from awf.config import parse_run
from proxy.config import build_clients, build_policy, parse_argv
from proxy.errors import ConfigError
from proxy.policy import Scheme

P = "placeholder-token-for-credential-isolation"


def test_no_key_or_no_api_proxy_starts_nothing() -> None:
    assert apisidecar.plan(parse_run(["--", "true"]), {}) is None
    cfg = parse_run(["--no-api-proxy", "--", "true"])
    assert apisidecar.plan(cfg, {"OPENAI_API_KEY": "sk-x"}) is None
    cfg = parse_run(["--enable-api-proxy", "--", "true"])
    assert apisidecar.plan(cfg, {"OPENAI_API_KEY": "sk-x"}) is not None


def test_a_bad_target_is_a_config_error_even_without_keys() -> None:
    with pytest.raises(ConfigError, match="--openai-api-target"):
        apisidecar.plan(parse_run(["--openai-api-target", "a b", "--", "true"]), {})


def test_the_key_never_shows_in_a_repr() -> None:
    sc = apisidecar.plan(parse_run(["--", "true"]), {"OPENAI_API_KEY": "sk-secret-1"})
    assert sc is not None
    assert "sk-secret-1" not in repr(sc)


def test_agent_env_has_urls_and_placeholders_for_configured_providers_only() -> None:
    sc = apisidecar.plan(parse_run(["--", "true"]),
                         {"OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": "sk-a"})
    assert sc is not None
    assert sc.providers == ("openai", "anthropic")
    env = dict(apisidecar.agent_env(sc, "172.30.0.10"))
    assert env["OPENAI_BASE_URL"] == "http://172.30.0.10:10000/v1"
    assert env["ANTHROPIC_BASE_URL"] == "http://172.30.0.10:10001"
    assert env["OPENAI_API_KEY"] == env["CODEX_API_KEY"] == env["ANTHROPIC_API_KEY"] == P
    assert "COPILOT_API_URL" not in env
    assert "GEMINI_API_KEY" not in env
    assert "sk-o" not in json.dumps(env)
    assert "sk-a" not in json.dumps(env)
    assert apisidecar.with_no_proxy("localhost,::1", "10.0.0.1") == "localhost,::1,10.0.0.1"


def test_the_proxy_gets_a_loopback_listener_and_a_client_allowed_only_the_targets() -> None:
    cfg = parse_run(["--allow-domains", "github.com", "--allow-ports", "8080",
                     "--resolve", "api.x.test=192.0.2.5", "--openai-api-target",
                     "api.x.test:8443", "--", "true"])
    sc = apisidecar.plan(cfg, {"OPENAI_API_KEY": "sk-o"})
    assert sc is not None
    extra = apisidecar.proxy_client_args(sc, "127.0.0.1:3130")
    proxy = parse_argv(shared.proxy_argv([ipaddress.ip_address("172.30.0.10")], cfg, "/logs")
                       + extra)
    assert ("127.0.0.1", 3130) in proxy.listen
    main, client = build_policy(proxy), build_clients(proxy).select(
        ipaddress.ip_address("127.0.0.1"))
    assert client is not None
    assert client.name == "api-proxy"
    for host, port in (("api.x.test", 8443), ("api.anthropic.com", 443),
                       ("api.githubcopilot.com", 443),
                       ("generativelanguage.googleapis.com", 443)):
        assert client.policy.decide(host, port, Scheme.HTTPS).allowed, host
        assert not main.decide(host, port, Scheme.HTTPS).allowed, host  # never the agent's
    assert not client.policy.decide("api.x.test", 443, Scheme.HTTPS).allowed  # its port only
    assert not client.policy.decide("github.com", 443, Scheme.HTTPS).allowed
    assert main.decide("github.com", 443, Scheme.HTTPS).allowed
    # the agent's address is not the client
    assert build_clients(proxy).select(ipaddress.ip_address("172.30.0.20")) is None
    side = apisidecar.sidecar_argv(sc, listen_host="172.30.0.10", keys_file="/k",
                                   log_dir="/l", extra_ca_certs=None)
    assert side[side.index("--openai-api-target") + 1] == "api.x.test:8443"
    assert "sk-o" not in " ".join(extra + side)
    spec = json.loads(apisidecar.entry_spec(side, egress_listen="127.0.0.1:3130", lease=None))
    assert spec["egress_proxy"] == "http://127.0.0.1:3130"


def test_keys_file_is_0400_in_a_0700_dir_and_wiped(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apisidecar, "KEYS_ROOT", tmp_path)
    sc = apisidecar.plan(parse_run(["--", "true"]), {"GEMINI_API_KEY": "AIza-1"})
    assert sc is not None
    path = apisidecar.write_keys(sc, "run1", os.getuid(), os.getgid())
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text() == "GEMINI_API_KEY=AIza-1\n"
    apisidecar.wipe_keys("run1")
    assert not path.parent.exists()


def test_summary_counts_requests_and_tokens_per_provider(tmp_path: Path) -> None:
    (tmp_path / "api-proxy").mkdir()
    rows = [{"provider": "openai", "status": 200, "input_tokens": 5, "output_tokens": 3},
            {"provider": "openai", "status": 200, "input_tokens": 11, "output_tokens": 7},
            {"provider": "anthropic", "status": 502, "input_tokens": None}]
    (tmp_path / "api-proxy" / "api-proxy.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows))
    assert apisidecar.summary_lines(tmp_path) == [
        "api-proxy: anthropic 1 request (1 failed), 0 in / 0 out tokens",
        "api-proxy: openai 2 requests, 16 in / 10 out tokens"]
    assert apisidecar.summary_lines(tmp_path / "none") == []


def test_dead_keys_are_those_whose_owner_is_gone(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apisidecar, "KEYS_ROOT", tmp_path)
    sc = apisidecar.plan(parse_run(["--", "true"]), {"GEMINI_API_KEY": "AIza-1"})
    assert sc is not None
    apisidecar.write_keys(sc, "live", os.getuid(), os.getgid())
    apisidecar.write_keys(sc, "dead", os.getuid(), os.getgid())
    (tmp_path / "awf-dead" / "owner").write_text("999999999\n")
    assert apisidecar.dead_keys() == ["dead"]
    assert apisidecar.dead_keys(everything=True) == ["dead", "live"]


def test_rate_limit_flags_reach_the_sidecar_and_it_accepts_them() -> None:
    from proxy.api.config import parse_argv as api_parse_argv
    from proxy.api.ratelimit import Limits

    cfg = parse_run(["--rate-limit-rpm", "1", "--rate-limit-rph", "30",
                     "--rate-limit-bytes-pm", "1048576", "--", "true"])
    assert cfg.api_rate_limits == (("--rate-limit-rpm", 1), ("--rate-limit-rph", 30),
                                   ("--rate-limit-bytes-pm", 1048576))
    sc = apisidecar.plan(cfg, {"OPENAI_API_KEY": "sk-o"})
    assert sc is not None
    side = apisidecar.sidecar_argv(sc, listen_host="127.0.0.1", keys_file="/k", log_dir="/l",
                                   extra_ca_certs=None)
    assert side[side.index("--rate-limit-rpm") + 1] == "1"
    api_cfg, _ = api_parse_argv(side)
    assert api_cfg.limits == Limits(rpm=1, rph=30, bytes_pm=1048576)
    plain = apisidecar.plan(parse_run(["--", "true"]), {"OPENAI_API_KEY": "sk-o"})
    assert plain is not None
    assert not any(a.startswith("--rate-limit") for a in apisidecar.sidecar_argv(
        plain, listen_host="127.0.0.1", keys_file="/k", log_dir="/l", extra_ca_certs=None))


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5"])
def test_a_bad_rate_limit_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match="--rate-limit-rph"):
        parse_run(["--rate-limit-rph", value, "--", "true"])


def test_no_rate_limit_wins_with_a_note() -> None:
    cfg = parse_run(["--rate-limit-rpm", "5", "--no-rate-limit", "--", "true"])
    assert cfg.api_rate_limits == ()
    assert any("--no-rate-limit" in n for n in cfg.notes)


@pytest.mark.parametrize(("doc", "want"), [
    ({"rateLimiting": {"requestsPerMinute": 2, "bytesPerMinute": 4096}},
     (("--rate-limit-rpm", 2), ("--rate-limit-bytes-pm", 4096))),
    ({"rateLimiting": {"enabled": True, "requestsPerHour": 7}}, (("--rate-limit-rph", 7),)),
    ({"rateLimiting": {"enabled": False, "requestsPerMinute": 2}}, ()),
    ({"rate_limit_rpm": 3}, (("--rate-limit-rpm", 3),)),
    ({"rate_limit_rpm": 3, "no_rate_limit": True}, ()),
    ({"rate_limit_rpm": 3, "no_rate_limit": False}, (("--rate-limit-rpm", 3),)),
])
def test_upstream_rate_limiting_keys_map_onto_the_flags(
        tmp_path: Path, doc: dict[str, object], want: tuple[tuple[str, int], ...]) -> None:
    path = tmp_path / "awf.json"
    path.write_text(json.dumps(doc))
    assert parse_run(["--config", str(path), "--", "true"]).api_rate_limits == want
    # a flag wins over the file
    assert parse_run(["--config", str(path), "--rate-limit-rpm", "9", "--no-rate-limit",
                      "--", "true"]).api_rate_limits == ()


def test_a_non_number_in_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "awf.json"
    path.write_text(json.dumps({"rateLimiting": {"requestsPerMinute": "lots"}}))
    with pytest.raises(ConfigError, match="requestsPerMinute: expected a whole number"):
        parse_run(["--config", str(path), "--", "true"])
