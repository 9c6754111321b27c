"""`awf run --config`, upstream awf's schema and flags, --print-config, --audit-dir, localhost.

The upstream key and flag lists next to this file were read from github/gh-aw-firewall at
f550957 (docs/awf-config.schema.json, src/cli-options.ts); when the mirror is present the lists
are checked against it too.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from awf import configfile
from awf.audit import policy_rules, write_audit
from awf.config import RunConfig, parse_run, run_parser
from awf.upstream_schema import FLAGS, OPAQUE, OURS, REFUSED_CONTAINERS, SCHEMA, Status
from proxy.config import build_policy
from proxy.errors import ConfigError
from proxy.policy import Scheme

HERE = Path(__file__).parent
MIRROR = Path("/work/.mirror/github+gh-aw-firewall/repo")
SCHEMA_PATHS = (HERE / "upstream_schema_paths.txt").read_text().split()
UPSTREAM_FLAGS = (HERE / "upstream_flags.txt").read_text().split()


def run(*argv: str, stdin: str | None = None) -> RunConfig:
    return parse_run(list(argv), io.StringIO(stdin) if stdin is not None else None)


def write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    if name.endswith((".yaml", ".yml")):
        path.write_text(yaml.safe_dump(data))
    else:
        path.write_text(json.dumps(data))
    return str(path)


def effective(cfg: RunConfig) -> dict[str, tuple[Any, str]]:
    return {k: (v, s) for k, v, s in cfg.effective}


# ------------------------------------------------------------------------------ the tables


def _leaf_paths(schema: dict[str, Any]) -> list[str]:
    defs = schema.get("$defs", {})

    def deref(node: dict[str, Any]) -> dict[str, Any]:
        return defs[node["$ref"].split("/")[-1]] if "$ref" in node else node

    out: list[str] = []

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, sub in node.get("properties", {}).items():
            sub = deref(sub)
            path = f"{prefix}{key}"
            if sub.get("properties"):
                walk(sub, path + ".")
            elif sub.get("type") == "array" and deref(sub.get("items", {})).get("properties"):
                walk(deref(sub["items"]), path + "[].")
            else:
                out.append(path)

    walk(schema, "")
    return out


def test_every_upstream_schema_key_has_exactly_one_row():
    assert sorted(SCHEMA) == sorted(SCHEMA_PATHS)
    assert len(SCHEMA_PATHS) == 169


@pytest.mark.skipif(not MIRROR.exists(), reason="upstream mirror not present")
def test_the_key_list_is_upstreams_current_schema():
    text = subprocess.run(["git", "-C", str(MIRROR), "show", "HEAD:docs/awf-config.schema.json"],
                          capture_output=True, text=True, check=True).stdout
    assert sorted(_leaf_paths(json.loads(text))) == sorted(SCHEMA_PATHS)


def test_every_upstream_flag_is_ours_or_has_a_row_and_parses():
    parser = run_parser()
    upstream_only = {n for f in FLAGS for n in f.names}
    for name in UPSTREAM_FLAGS:
        assert (name in OURS) != (name in upstream_only), name
        assert name in parser._option_string_actions, name
    assert set(OURS) | upstream_only == set(UPSTREAM_FLAGS)


def test_mapped_rows_name_our_dests():
    dests = {a.dest for a in run_parser()._actions}
    for path, row in SCHEMA.items():
        if row.status is Status.MAPPED:
            assert row.ours in dests, path
        else:
            assert row.reason, path
    for name, dest in OURS.items():
        assert run_parser()._option_string_actions[name].dest == dest, name


def test_the_docs_table_covers_every_key_and_flag():
    doc = (HERE.parents[1] / "docs" / "config.md").read_text()
    for path in SCHEMA:
        assert f"`{path}`" in doc, path
    for name in UPSTREAM_FLAGS:
        assert f"`{name}`" in doc, name


def _nested(path: str, value: Any) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    if head.endswith("[]"):
        return {head[:-2]: [_nested(rest, value)]}
    return {head: _nested(rest, value) if rest else value}


def _sample(path: str) -> Any:
    row = SCHEMA[path]
    action = run_parser()._option_string_actions.get(row.flag) if row.flag else None
    if row.status is Status.MAPPED:
        return {"list": ["a.example.com"], "csv": ["1.1.1.1"], "bool": True, "not": True,
                "int": 5}.get(
            row.kind, "debug" if path == "logging.logLevel" else "x")
    if path in OPAQUE:
        return {"a": "b"}
    candidates: list[Any] = [True, False] if action is not None and action.nargs == 0 else []
    return next(c for c in [*candidates, "x"] if not row.asks_nothing(c))


@pytest.mark.parametrize("path", sorted(SCHEMA))
def test_each_row_does_what_its_status_says(path: str, tmp_path: Path):
    row = SCHEMA[path]
    spec = write(tmp_path, "c.json", _nested(path, _sample(path)))
    if row.status is Status.REFUSED or path.split("[]")[0] in REFUSED_CONTAINERS:
        with pytest.raises(ConfigError) as exc:
            configfile.parse_layered(run_parser(), ["--config", spec, "--", "true"])
        assert str(exc.value).startswith(f"--config {spec}: {path.split('[]')[0]}")
        return
    got = configfile.load(spec, run_parser())
    if row.status is Status.MAPPED:
        assert got.values[row.ours] is not None
        assert got.where[row.ours] == path
        assert not got.notes
    elif row.silent:
        assert not got.notes
        assert not got.values
    elif row.flag and row.flag in run_parser()._option_string_actions:
        assert got.where  # noted after the merge, under its flag's dest
        layered = configfile.parse_layered(run_parser(), ["--config", spec, "--", "true"])
        assert [n for n in layered.notes if n.startswith(f"{path} in {spec}: ")]
    else:
        assert got.notes == [f"{path} in {spec}: {row.reason}"]


# ------------------------------------------------------------------------------ the file


def test_flat_keys_yaml_and_precedence(tmp_path: Path):
    spec = write(tmp_path, "c.yaml", {"allow_domains": ["github.com", "pypi.org"],
                                      "log_level": "debug", "keep_containers": True,
                                      "agent_timeout": 5})
    cfg = run("--config", spec, "--", "true")
    assert cfg.proxy.allow_domains == ("github.com", "pypi.org")
    assert cfg.log_level == "debug"
    assert cfg.keep_containers
    assert cfg.agent_timeout == 300
    eff = effective(cfg)
    assert eff["allow_domains"] == (["github.com", "pypi.org"], "file")
    assert eff["ipv6"] == ("auto", "default")
    # a flag replaces the file's value; lists are not merged
    cfg = run("--config", spec, "-d", "example.com", "--log-level", "warn", "--", "true")
    assert cfg.proxy.allow_domains == ("example.com",)
    assert cfg.log_level == "warn"
    assert effective(cfg)["allow_domains"] == (["example.com"], "flag")
    assert effective(cfg)["keep_containers"] == (True, "file")


def test_nested_upstream_keys_and_flags_win(tmp_path: Path):
    spec = write(tmp_path, "c.json", {
        "network": {"allowDomains": ["github.com"], "dnsServers": ["8.8.8.8", "1.1.1.1"]},
        "container": {"agentTimeout": 2, "memoryLimit": "4g", "enableDind": True},
        "environment": {"envAll": True, "excludeEnv": ["A", "B"]},
        "security": {"allowHostPorts": "3000,3001", "enableHostAccess": True},
        "logging": {"logLevel": "error"}})
    cfg = run("--config", spec, "--memory-limit", "2g", "--", "true")
    assert cfg.proxy.allow_domains == ("github.com",)
    assert cfg.proxy.dns_servers == (("8.8.8.8", 53), ("1.1.1.1", 53))
    assert cfg.agent_timeout == 120
    assert cfg.enable_docker
    assert cfg.env_all
    assert cfg.memory_limit == 2 * 1024 ** 3  # the flag
    assert cfg.exclude_env == ("A", "B")
    assert cfg.log_level == "error"
    assert cfg.proxy.allow_ports == frozenset({3000, 3001})
    assert cfg.enable_host_access


def test_format_by_extension_else_json_then_yaml(tmp_path: Path):
    (tmp_path / "c.conf").write_text("allow_domains: [github.com]\n")
    assert run("--config", str(tmp_path / "c.conf"), "--", "true").proxy.allow_domains == (
        "github.com",)
    (tmp_path / "c.json").write_text("allow_domains: [github.com]\n")
    with pytest.raises(ConfigError, match=r"c\.json: not valid JSON"):
        run("--config", str(tmp_path / "c.json"), "--", "true")
    (tmp_path / "c.yml").write_text("[unclosed\n")
    with pytest.raises(ConfigError, match=r"c\.yml: not valid YAML"):
        run("--config", str(tmp_path / "c.yml"), "--", "true")
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        run("--config", str(tmp_path / "list.yaml"), "--", "true")
    with pytest.raises(ConfigError, match="cannot read"):
        run("--config", str(tmp_path / "missing.json"), "--", "true")
    (tmp_path / "empty.yaml").write_text("")
    assert run("--config", str(tmp_path / "empty.yaml"), "--", "true").proxy.allow_domains == ()


def test_config_from_stdin():
    cfg = run("--config", "-", "--", "true",
              stdin='{"network": {"allowDomains": ["github.com"]}}')
    assert cfg.proxy.allow_domains == ("github.com",)
    assert cfg.config_file == "-"
    cfg = run("--config", "-", "--", "true", stdin="network:\n  blockDomains: [x.github.com]\n")
    assert cfg.proxy.block_domains == ("x.github.com",)
    with pytest.raises(ConfigError, match="<stdin>: unknown key 'nope'"):
        run("--config", "-", "--", "true", stdin="nope: 1\n")


@pytest.mark.parametrize(("doc", "path"), [
    ({"allow_domain": ["x.com"]}, "allow_domain"),
    ({"network": {"allowDomain": ["x.com"]}}, "network.allowDomain"),
    ({"container": {"images": {"squid": "a", "proxy": "b"}}}, "container.images.proxy"),
    ({"apiProxy": {"targets": {"mistral": {"host": "x"}}}}, "apiProxy.targets.mistral"),
    ({"config": "other.json"}, "config"),
    ({"print_config": True}, "print_config"),
])
def test_unknown_keys_name_the_path_and_file(tmp_path: Path, doc: dict[str, Any], path: str):
    spec = write(tmp_path, "c.json", doc)
    with pytest.raises(ConfigError) as exc:
        run("--config", spec, "--", "true")
    assert f"--config {spec}: unknown key {path!r}" in str(exc.value)
    assert exc.value.exit_code == 2


@pytest.mark.parametrize(("doc", "text"), [
    ({"network": {"allowDomains": "github.com", "dnsServers": {"a": 1}}}, "expected a value"),
    ({"container": {"tty": "yes"}}, "container.tty: expected true or false"),
    ({"container": {"agentTimeout": "ten"}}, "container.agentTimeout: expected a whole number"),
    ({"logging": {"logLevel": "loud"}}, "logging.logLevel: 'loud' is not one of"),
    ({"network": 5}, "network: expected a mapping"),
    ({"keep_containers": "yes"}, "keep_containers: expected true or false"),
])
def test_bad_values_are_one_line_errors(tmp_path: Path, doc: dict[str, Any], text: str):
    with pytest.raises(ConfigError, match=text):
        run("--config", write(tmp_path, "c.json", doc), "--", "true")


def test_file_values_are_validated_like_flags(tmp_path: Path):
    with pytest.raises(ConfigError, match="too broad"):
        run("--config", write(tmp_path, "c.json", {"network": {"allowDomains": ["com"]}}),
            "--", "true")


@pytest.mark.parametrize(("doc", "text"), [
    ({"apiProxy": {"maxTurns": 10}}, "apiProxy.maxTurns: not enforced"),
    ({"filesystem": {"allowWrite": []}}, "filesystem.allowWrite: not supported yet"),
    ({"network": {"isolation": False}}, "network.isolation: awf always isolates"),
    ({"security": {"legacySecurity": True}}, "security.legacySecurity: dropped on purpose"),
    ({"security": {"securityMode": "compat"}}, "security.securityMode: dropped on purpose"),
    ({"security": {"allowHostServicePorts": ["5432"]}}, "bypassed the dangerous-port list"),
    ({"enclaves": [{"script": {}, "repos": [{"repo": "o/r", "sensitivity": "public"}]}]},
     "enclaves: not supported"),
    ({"legacy_security": True}, r"c\.json: legacy_security: dropped on purpose"),
])
def test_refused_keys_exit_2_with_why(tmp_path: Path, doc: dict[str, Any], text: str):
    with pytest.raises(ConfigError, match=text) as exc:
        run("--config", write(tmp_path, "c.json", doc), "--", "true")
    assert exc.value.exit_code == 2
    assert "\n" not in str(exc.value)


def test_values_that_ask_for_nothing_are_accepted_silently(tmp_path: Path):
    spec = write(tmp_path, "c.json", {
        "$schema": "https://example.com/s.json",
        "network": {"isolation": True, "topologyAttach": []},
        "security": {"legacySecurity": False, "securityMode": "strict", "enableDlp": False,
                     "sslBump": False},
        "apiProxy": {"enabled": True, "maxTurns": None},
        "container": {"skipPull": False, "buildLocal": False},
        "runner": {"topology": "standard"}, "rateLimiting": {"enabled": False}})
    cfg = run("--config", spec, "--", "true")
    assert cfg.notes == ()


def test_noted_keys_give_one_line_each(tmp_path: Path):
    spec = write(tmp_path, "c.json", {"container": {"imageTag": "0.25", "images": {"agent": "x"}},
                                      "platform": {"type": "ghes"},
                                      "logging": {"sessionStateDir": "/tmp/s"}})
    cfg = run("--config", spec, "--", "true")
    assert len(cfg.notes) == 4
    assert any(n.startswith(f"container.imageTag in {spec}: no effect here") for n in cfg.notes)
    assert any(n.startswith(f"platform.type in {spec}: no effect here") for n in cfg.notes)


def test_antigravity_beats_gemini_target(tmp_path: Path):
    gemini, antigravity = {"host": "g.example.com"}, {"host": "a.example.com"}
    for targets in ({"gemini": gemini, "antigravity": antigravity},
                    {"antigravity": antigravity, "gemini": gemini}):
        spec = write(tmp_path, "c.json", {"apiProxy": {"targets": targets}})
        assert dict(run("--config", spec, "--", "true").api_targets) == {
            "gemini": "a.example.com"}


# ------------------------------------------------------------------------------ --print-config


def test_print_config_shows_each_source_and_reads_back(tmp_path: Path):
    spec = write(tmp_path, "c.json", {"network": {"allowDomains": ["github.com"]},
                                      "logging": {"logLevel": "debug"}})
    cfg = run("--config", spec, "--print-config", "-e", "GH_TOKEN=s3cret", "--tty")
    assert cfg.print_config
    assert cfg.command == ()
    text = configfile.render_effective(cfg.effective, cfg.config_file)
    lines = text.splitlines()
    assert lines[0] == f"# awf run: effective configuration (config file: {spec})"
    assert any(line.startswith("allow_domains:") and line.endswith('["github.com"]  # file')
               for line in lines)
    assert any(line.startswith("tty:") and line.endswith("true  # flag") for line in lines)
    assert any(line.startswith("backend:") and line.endswith('"docker"  # default')
               for line in lines)
    assert "s3cret" not in text
    assert "GH_TOKEN=[REDACTED]" in text
    assert not any(line.startswith(("enable_dlp:", "image_tag:")) for line in lines)
    # the output is a flat config file: read back, it gives the same settings
    again = tmp_path / "again.yaml"
    again.write_text(text.replace("GH_TOKEN=[REDACTED]", "GH_TOKEN=x"))
    back = effective(run("--config", str(again), "--print-config"))
    for key, (value, _source) in effective(cfg).items():
        if key not in ("env",):
            assert back[key][0] == value, key


def test_print_config_exits_0_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from awf.cli import main

    spec = write(tmp_path, "c.json", {"container": {"imageTag": "1"}})
    assert main(["--config", spec, "--print-config"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("# awf run: effective configuration")
    assert err == (f"awf: note: container.imageTag in {spec}: {SCHEMA['container.imageTag'].reason}"
                   "\n")
    assert main(["run", "--legacy-security", "--", "true"]) == 2
    assert capsys.readouterr().err.startswith("awf: --legacy-security: dropped on purpose")


# ------------------------------------------------------------------------------ upstream flags


def test_aliases():
    cfg = run("-k", "--enable-dind", "--network-subnet", "172.31.0.0/24", "--diagnostic-logs",
              "--allow-host-ports", "3000", "--cpu-limit", "2", "--no-enable-api-proxy",
              "--", "true")
    assert cfg.keep_containers
    assert cfg.enable_docker
    assert cfg.subnet == "172.31.0.0/24"
    assert cfg.diagnostics
    assert cfg.proxy.allow_ports == frozenset({3000})
    assert cfg.cpus == 2
    assert cfg.api_proxy is False
    assert run("--diagnostics", "--", "true").diagnostics
    assert run("--", "true").api_proxy is True


@pytest.mark.parametrize(("argv", "text"), [
    (["--allow-host-service-ports", "5432"], "--allow-host-service-ports: dropped on purpose: "
     "it bypassed the dangerous-port list; use --allow-host-ports"),
    (["--legacy-security"], "--legacy-security: dropped on purpose"),
    (["--security-mode", "compat"], "--security-mode: dropped on purpose"),
    (["--no-network-isolation"], "--no-network-isolation: awf always isolates"),
    (["--allow-urls", "https://github.com/o/*"], "--allow-urls: 'https://github.com/o/*' is an "
     "https pattern, which needs --ssl-bump"),
    (["--dns-over-https"], "--dns-over-https: not supported yet"),
    (["--container-runtime", "gvisor"], "--container-runtime: not supported yet"),
    (["--enable-dlp"], "--enable-dlp: not supported"),
    (["--openai-base-url-env", "URL"], "--openai-base-url-env: not supported"),
    (["--max-cache-misses", "3"], "--max-cache-misses: not enforced"),
    (["--difc-proxy-host", "h:1"], "--difc-proxy-host: not supported"),
    (["--reflect"], "--reflect: not supported"),
    (["--ruleset-file", "r.yaml"], "--ruleset-file: not supported yet"),
])
def test_refused_flags_exit_2_with_why(argv: list[str], text: str):
    with pytest.raises(ConfigError) as exc:
        run(*argv, "--", "true")
    assert str(exc.value).startswith(text)
    assert exc.value.exit_code == 2


def test_noted_and_no_op_flags():
    cfg = run("--image-tag", "0.25.1", "--image-registry", "ghcr.io/x", "--skip-pull", "-b",
              "--enable-api-proxy", "--network-isolation", "--security-mode", "strict",
              "--no-rate-limit", "--session-state-dir", "/tmp/s",
              "--cloud-hypervisor-vcpus", "2", "--", "true")
    flags = [n.split(":")[0] for n in cfg.notes]
    assert flags == ["--build-local", "--image-registry", "--image-tag", "--skip-pull",
                     "--session-state-dir", "--cloud-hypervisor-vcpus"]
    assert all("no effect" in n for n in cfg.notes)
    assert effective(cfg)["image_tag"] == ("0.25.1", "flag")


def test_topology_attach_and_share_home_are_ours(tmp_path):
    cfg = run("--topology-attach", "mcpg", "--topology-attach", "n2", "--topology-attach", "mcpg",
              "--share-home", "/h/.m2", "--", "true")
    assert cfg.topology_attach == ("mcpg", "n2")
    assert cfg.share_home == ("/h/.m2",)
    assert not cfg.notes
    conf = tmp_path / "c.json"
    conf.write_text('{"network": {"topologyAttach": ["gw"]}}')
    assert run("--config", str(conf), "--", "true").topology_attach == ("gw",)
    with pytest.raises(ConfigError):
        run("--topology-attach", "bad name", "--", "true")


def test_agent_image_presets():
    assert run("--agent-image", "default", "--", "true").agent_image is None
    cfg = run("--agent-image", "act", "--", "true")
    assert cfg.agent_image is None
    assert cfg.notes[0].startswith("--agent-image act:")
    assert run("--agent-image", "my-image:1", "--", "true").agent_image == "my-image:1"


def test_an_implemented_flag_takes_over_its_row(tmp_path: Path):
    """When one of ours defines a flag the table still refuses, the file key maps to it."""
    parser = run_parser()
    assert type(parser._option_string_actions["--enable-dlp"]) is configfile.UpstreamFlag
    import argparse

    fresh = argparse.ArgumentParser()
    fresh.add_argument("--enable-dlp", action="store_true")
    configfile.add_upstream_flags(fresh)
    assert type(fresh._option_string_actions["--enable-dlp"]) is not configfile.UpstreamFlag
    spec = write(tmp_path, "c.json", {"security": {"enableDlp": True}})
    assert configfile.load(spec, fresh).values == {"enable_dlp": True}


# ------------------------------------------------------------------------------ localhost, ports


@pytest.mark.parametrize("entry", ["localhost", "https://localhost", "http://localhost/",
                                   "LOCALHOST"])
def test_localhost_keyword_is_host_access(entry: str):
    cfg = run("-d", f"github.com,{entry}", "--", "true")
    assert cfg.enable_host_access
    assert cfg.proxy.allow_domains == ("github.com",)
    assert "localhost" not in " ".join(cfg.proxy_args).lower()
    assert effective(cfg)["enable_host_access"] == (True, "flag (the localhost keyword)")


def test_localhost_alone_and_from_a_file(tmp_path: Path):
    cfg = run("-d", "localhost", "--", "true")
    assert cfg.enable_host_access
    assert cfg.proxy_args == ()
    spec = write(tmp_path, "c.json", {"network": {"allowDomains": ["localhost", "pypi.org"]}})
    cfg = run("--config", spec, "--", "true")
    assert cfg.enable_host_access
    assert cfg.proxy.allow_domains == ("pypi.org",)
    assert not run("-d", "localhost.example.com", "--", "true").enable_host_access


def test_port_scoped_entries_pass_through():
    cfg = run("-d", "github.com,svc.example.com:8080,api.example.com:9000-9002", "--", "true")
    assert "svc.example.com:8080" in cfg.proxy_args[1]
    assert cfg.intercept_ports == frozenset({80, 443, 8080, 9000, 9001, 9002})
    policy = build_policy(cfg.proxy)
    assert policy.decide("svc.example.com", 8080, Scheme.HTTPS).allowed
    assert not policy.decide("svc.example.com", 443, Scheme.HTTPS).allowed
    with pytest.raises(ConfigError, match="22"):
        run("-d", "svc.example.com:22", "--", "true")


def test_port_scoped_ports_reach_the_rulesets(tmp_path: Path):
    cfg = run("-d", "svc.example.com:8080", "--", "true")
    write_audit(cfg, tmp_path)
    nft = (tmp_path / "rulesets.nft").read_text()
    assert "th dport { 80, 443, 8080 } redirect to :3129" in nft


def test_the_upstream_proxy_parent_reaches_the_rulesets(tmp_path: Path):
    cfg = run("-d", "github.com", "--upstream-proxy", "http://u:s3cret@10.20.0.5:3128", "--",
              "true")
    write_audit(cfg, tmp_path)
    nft = (tmp_path / "rulesets.nft").read_text()
    assert "ip daddr 10.20.0.5 meta l4proto tcp th dport 3128 accept" in nft
    assert "s3cret" not in nft


# ------------------------------------------------------------------------------ --audit-dir


def test_audit_dir_writes_policy_config_and_rulesets(tmp_path: Path):
    spec = write(tmp_path, "c.json", {"network": {"allowDomains": ["github.com", "localhost"],
                                                  "blockDomains": ["gist.github.com"]}})
    cfg = run("--config", spec, "--audit-dir", str(tmp_path / "audit"), "-e", "API_KEY=k123",
              "-e", "PLAIN=v", "--", "curl", "-H", "Authorization: token abc")
    paths = write_audit(cfg, tmp_path / "audit")
    assert sorted(p.name for p in paths) == ["config.json", "policy.json", "rulesets.nft"]
    assert all(p.stat().st_mode & 0o077 == 0 for p in paths)
    policy = json.loads((tmp_path / "audit" / "policy.json").read_text())
    rules = policy["rules"]
    assert [r["n"] for r in rules] == list(range(1, len(rules) + 1))
    assert rules[2] == {"n": 3, "action": "deny", "reason": "domain_blocked",
                        "match": {"domain": "gist.github.com", "subdomains": True}}
    assert rules[3]["action"] == "allow"
    assert rules[3]["match"]["domain"] == "github.com"
    assert rules[4]["match"]["domain"] == "host.docker.internal"
    assert rules[-1]["action"] == "deny"
    assert rules[-1]["match"] == "everything else"
    text = (tmp_path / "audit" / "config.json").read_text()
    record = json.loads(text)
    settings = {s["key"]: s for s in record["settings"]}
    assert settings["env"]["value"] == ["API_KEY=[REDACTED]", "PLAIN=v"]
    assert settings["allow_domains"]["source"] == "file"
    assert "k123" not in text
    assert "token abc" not in text
    nft = (tmp_path / "audit" / "rulesets.nft").read_text()
    assert "table inet awf_proxy" in nft
    assert "table inet awf" in nft
    assert "172.30.0.0/24" in nft


def test_audit_redacts_keys_named_like_secrets():
    assert configfile.redact("openai_api_key", "sk-1") == "[REDACTED]"
    assert configfile.redact("auth_token", None) is None
    assert configfile.redact("env", ["MY_SECRET=1", "X=2", "PASSWORD"]) == [
        "MY_SECRET=[REDACTED]", "X=2", "PASSWORD"]
    assert configfile.redact("resolve", ["a.example.com=1.2.3.4"]) == ["a.example.com=1.2.3.4"]


def test_audit_netns_says_rulesets_are_per_run(tmp_path: Path):
    cfg = run("--backend", "netns", "-d", "github.com", "--", "true")
    names = sorted(p.name for p in write_audit(cfg, tmp_path / "a"))
    assert names == ["config.json", "policy.json", "rulesets.txt"]
    assert policy_rules(cfg)["rules"][-1]["action"] == "deny"


# ------------------------------------------------------------------------------ gh-aw replay


GH_AW_CONFIG = {
    "$schema": "https://raw.githubusercontent.com/github/gh-aw-firewall/main/docs/"
               "awf-config.schema.json",
    "network": {
        "allowDomains": ["api.github.com", "github.com", "*.githubusercontent.com",
                         "api.githubcopilot.com", "registry.npmjs.org", "localhost"],
        "blockDomains": ["gist.github.com"],
        "dnsServers": ["8.8.8.8", "8.8.4.4"],
        "isolation": True,
    },
    "apiProxy": {"enabled": True, "targets": {"copilot": {"host": "api.githubcopilot.com"}}},
    "security": {"legacySecurity": False, "allowHostPorts": ["3000"]},
    "container": {"agentTimeout": 20, "imageTag": "0.25.29", "skipPull": True,
                  "memoryLimit": "6g", "mounts": ["/tmp/gh-aw:/tmp/gh-aw:rw"]},
    "environment": {"excludeEnv": ["COPILOT_GITHUB_TOKEN"]},
    "logging": {"logLevel": "info", "proxyLogsDir": "/tmp/gh-aw/sandbox/firewall/logs",
                "auditDir": "/tmp/gh-aw/sandbox/firewall/audit"},
}


def test_replays_a_gh_aw_invocation(tmp_path: Path):
    spec = tmp_path / "awf-config.json"
    spec.write_text(json.dumps(GH_AW_CONFIG, indent=2))
    argv = ["--config", str(spec), "--env-all", "--container-workdir", "/w", "--image-tag", "x",
            "--skip-pull", "--enable-api-proxy", "--log-level", "debug", "--",
            "/bin/bash", "-c", "copilot --add-dir /tmp/gh-aw --prompt \"$(cat prompt.txt)\""]
    cfg = parse_run(argv)
    assert cfg.command == ("/bin/bash", "-c",
                           "copilot --add-dir /tmp/gh-aw --prompt \"$(cat prompt.txt)\"")
    assert cfg.env_all
    assert cfg.container_workdir == "/w"
    assert cfg.log_level == "debug"
    assert cfg.agent_timeout == 20 * 60
    assert cfg.memory_limit == 6 * 1024 ** 3
    assert cfg.volumes == ("/tmp/gh-aw:/tmp/gh-aw:rw",)
    assert cfg.exclude_env == ("COPILOT_GITHUB_TOKEN",)
    assert cfg.logs_dir == Path("/tmp/gh-aw/sandbox/firewall/logs")
    assert cfg.audit_dir == Path("/tmp/gh-aw/sandbox/firewall/audit")
    assert cfg.enable_host_access
    assert cfg.proxy.allow_ports == frozenset({3000})
    assert dict(cfg.api_targets) == {"copilot": "api.githubcopilot.com"}
    assert [n.split(":")[0] for n in cfg.notes] == ["--image-tag", "--skip-pull"]
    # the proxy gets exactly the file's policy, minus the keyword; it enforces it
    assert cfg.proxy_args == (
        "--allow-domains", "api.github.com", "--allow-domains", "github.com",
        "--allow-domains", "*.githubusercontent.com", "--allow-domains", "api.githubcopilot.com",
        "--allow-domains", "registry.npmjs.org", "--block-domains", "gist.github.com",
        "--allow-ports", "3000", "--dns-servers", "8.8.8.8,8.8.4.4")
    policy = build_policy(cfg.proxy)
    assert policy.decide("api.github.com", 443, Scheme.HTTPS).allowed
    assert policy.decide("raw.githubusercontent.com", 443, Scheme.HTTPS).allowed
    assert policy.decide("registry.npmjs.org", 443, Scheme.HTTPS).allowed
    assert not policy.decide("gist.github.com", 443, Scheme.HTTPS).allowed
    assert not policy.decide("example.com", 443, Scheme.HTTPS).allowed
    assert not policy.decide("githubusercontent.com", 443, Scheme.HTTPS).allowed
    assert not policy.decide("github.com", 22, Scheme.HTTPS).allowed
    assert not policy.decide("localhost", 80, Scheme.HTTP).allowed


def test_replays_the_shorthand_with_config_on_stdin(capsys: pytest.CaptureFixture[str]):
    from awf.cli import main

    cfg = parse_run(["--config", "-", "--print-config"], io.StringIO(json.dumps(GH_AW_CONFIG)))
    assert effective(cfg)["allow_domains"][1] == "file"
    assert main(["--config", "/nonexistent.json", "--", "true"]) == 2
    assert "cannot read" in capsys.readouterr().err
