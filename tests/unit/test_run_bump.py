"""`awf run --ssl-bump` and `--allow-urls` (issue 15): the flags and config keys, the run's CA and
its files (awf/bump.py), what the proxy is told, and what the command sees and is told to trust
(containers/hostview.py trust_mounts, containers/agentenv.py bump_env, the netns sandbox's spec
and the Docker agent's environment). The end-to-end runs are tests/privileged/test_netns_bump.py
and tests/e2e/test_docker_bump.py."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from awf import bump
from awf.config import RunConfig, parse_run
from containers import agentenv
from containers.hostview import (
    RUN_BUNDLE,
    RUN_CA,
    HostFacts,
    HostView,
    host_view,
    trust_mounts,
)
from containers.runspecs import agent_environment
from containers.sandbox import ROOT, plan
from proxy.config import parse_argv
from proxy.errors import ConfigError
from proxy.main import load_bumper

RULE = "GET https://allowed.test/ok/*"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def run(*argv: str, stdin: str | None = None) -> RunConfig:
    return parse_run([*argv, "--", "true"], io.StringIO(stdin) if stdin is not None else None)


def pairs(args: tuple[str, ...]) -> list[tuple[str, str]]:
    return list(zip(args[::2], args[1::2], strict=True))


# ------------------------------------------------------------------------------ flags


def test_ssl_bump_and_allow_urls_reach_the_proxy_flags() -> None:
    cfg = run("--ssl-bump", "--allow-urls", f"{RULE},https://api.github.com/repos/*",
              "--allow-domains", "example.com", "--ssl-bump-exclude", "pinned.example.com")
    assert cfg.ssl_bump is True
    assert cfg.proxy.ssl_bump is True
    assert ("--allow-urls", RULE) in pairs(cfg.proxy_args)
    assert ("--allow-urls", "https://api.github.com/repos/*") in pairs(cfg.proxy_args)
    assert ("--ssl-bump-exclude", "pinned.example.com") in pairs(cfg.proxy_args)
    # --ssl-bump comes with the CA's paths, which each backend adds
    assert "--ssl-bump" not in cfg.proxy_args
    assert not cfg.notes


def test_allow_urls_file_is_read_here(tmp_path: Path) -> None:
    f = tmp_path / "urls.txt"
    f.write_text(f"# the API\n{RULE}\nhttps://api.github.com/repos/*, HEAD https://x.test/a\n")
    cfg = run("--ssl-bump", "--allow-urls-file", str(f))
    got = [v for k, v in pairs(cfg.proxy_args) if k == "--allow-urls"]
    assert got == [RULE, "https://api.github.com/repos/*", "HEAD https://x.test/a"]
    assert "--allow-urls-file" not in cfg.proxy_args  # the proxy may run where f is not
    with pytest.raises(ConfigError, match="--allow-urls-file: cannot read") as exc:
        run("--ssl-bump", "--allow-urls-file", str(tmp_path / "missing"))
    assert exc.value.exit_code == 2


@pytest.mark.parametrize(("argv", "text"), [
    (["--allow-urls", RULE], "--allow-urls: 'GET https://allowed.test/ok/*' is an https "
     "pattern, which needs --ssl-bump"),
    (["--ssl-bump-exclude", "x.test"], "--ssl-bump-exclude: means nothing without --ssl-bump"),
    (["--ssl-bump", "--learn"], "--learn: not with --ssl-bump or --allow-urls"),
    (["--learn", "--allow-urls", "http://a.test/x"], "--learn: not with --ssl-bump"),
    (["--ssl-bump", "--allow-urls", "https://a.test/x", "--ssl-bump-exclude", "a.test"],
     "--ssl-bump-exclude: a host restricted by --allow-urls"),
    (["--ssl-bump", "--allow-urls", "https://a.test"], "--allow-urls"),
])
def test_bad_combinations_are_exit_2(argv: list[str], text: str) -> None:
    with pytest.raises(ConfigError) as exc:
        run(*argv)
    assert str(exc.value).startswith(text), str(exc.value)
    assert exc.value.exit_code == 2
    assert "\n" not in str(exc.value)


def test_a_plain_http_rule_needs_no_bump() -> None:
    cfg = run("--allow-urls", "GET http://allowed.test/ok/*")
    assert cfg.ssl_bump is False
    assert ("--allow-urls", "GET http://allowed.test/ok/*") in pairs(cfg.proxy_args)


def test_upstreams_flags_and_key_map_to_ours(tmp_path: Path) -> None:
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"security": {"sslBump": True}}))
    cfg = run("--config", str(conf), "--allow-urls", RULE)
    assert cfg.ssl_bump
    assert not cfg.notes
    flat = tmp_path / "flat.yaml"
    flat.write_text(f"ssl_bump: true\nallow_urls: ['{RULE}']\nssl_bump_exclude: [p.test]\n")
    cfg = run("--config", str(flat))
    assert cfg.ssl_bump
    assert ("--allow-urls", RULE) in pairs(cfg.proxy_args)
    assert ("--ssl-bump-exclude", "p.test") in pairs(cfg.proxy_args)


# ------------------------------------------------------------------------------ the CA


def test_the_ca_is_limited_to_the_runs_names_and_lives_past_the_timeout() -> None:
    cfg = run("--ssl-bump", "--allow-urls", RULE, "--allow-domains", "example.com",
              "--block-domains", "bad.example.com", "--agent-timeout", "1800")
    ca = bump.authority(cfg, now=NOW, extra_names=["host.docker.internal"])
    for host in ("allowed.test", "example.com", "api.example.com", "host.docker.internal"):
        assert ca.constraints.permits(host), host
    for host in ("github.com", "evil.test", "bad.example.com", "203.0.113.7"):
        assert not ca.constraints.permits(host), host
    assert ca.cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert ca.cert.not_valid_after_utc == NOW + timedelta(hours=31)  # 30 h + 1 h
    short = bump.authority(run("--ssl-bump", "--allow-domains", "a.test"), now=NOW)
    assert short.cert.not_valid_after_utc == NOW + timedelta(hours=24)


@pytest.fixture
def shm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "shm"
    root.mkdir()
    monkeypatch.setattr(bump, "ROOT", root)
    return root


def test_the_files_key_for_the_proxy_alone_bundle_for_the_command(shm: Path,
                                                                  tmp_path: Path) -> None:
    extra = tmp_path / "extra.pem"
    extra.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    ca = bump.authority(run("--ssl-bump", "--allow-urls", RULE), now=datetime.now(UTC))
    files = bump.write(ca, "r1", uid=os.getuid(), gid=os.getgid(), extra_ca_certs=extra,
                       store=b"HOST STORE")
    assert files.directory == shm / "awf-bump-r1"
    assert stat.S_IMODE(files.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    for path in (files.cert, files.bundle):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert files.bundle.read_bytes() == b"HOST STORE\n" + ca.cert_pem()
    assert files.extra is not None
    assert files.extra.read_bytes() == extra.read_bytes()
    assert bump.dead() == []  # its owner (this process) lives
    assert bump.dead(everything=True) == ["r1"]
    # awf-proxy, given the flags, loads exactly this CA (modes and paths are what it wants)
    argv = bump.proxy_flags(str(files.cert), str(files.key), None)
    bumper = load_bumper(parse_argv([*argv, "--allow-urls", RULE]))
    try:
        assert bumper.leaves.ca.cert == ca.cert
    finally:
        bumper.close()
    key_bytes = files.key.read_bytes()
    bump.wipe("r1")
    assert not files.directory.exists()
    assert key_bytes.startswith(b"-----BEGIN PRIVATE KEY-----")
    bump.wipe("r1")  # idempotent


def test_a_run_whose_awf_died_is_a_leftover(shm: Path) -> None:
    d = shm / "awf-bump-dead1"
    d.mkdir()
    (d / "owner").write_text("999999999\n")  # above any pid_max: no such process
    assert bump.dead() == ["dead1"]


def test_a_failed_write_leaves_nothing(shm: Path, tmp_path: Path) -> None:
    ca = bump.authority(run("--ssl-bump", "--allow-domains", "a.test"), now=datetime.now(UTC))
    with pytest.raises(Exception, match="cannot write the run's CA") as exc:
        bump.write(ca, "r2", uid=os.getuid(), gid=os.getgid(),
                   extra_ca_certs=tmp_path / "no-such.pem", store=b"")
    assert getattr(exc.value, "exit_code", None) == 125
    assert not (shm / "awf-bump-r2").exists()


def test_the_proxy_container_gets_the_key_and_cert_not_the_bundle(shm: Path) -> None:
    ca = bump.authority(run("--ssl-bump", "--allow-domains", "a.test"), now=datetime.now(UTC))
    files = bump.write(ca, "r3", uid=os.getuid(), gid=os.getgid(), store=b"")
    flags, mounts = bump.in_proxy_container(files)
    assert flags == ["--ssl-bump", "--ca-cert", "/run/awf-ca/ca.pem", "--ca-key",
                     "/run/awf-ca/ca-key.pem"]
    assert {(m.source, m.target) for m in mounts} == {
        (str(files.cert), "/run/awf-ca/ca.pem"), (str(files.key), "/run/awf-ca/ca-key.pem")}
    assert all(m.read_only for m in mounts)
    bump.wipe("r3")


# ------------------------------------------------------------------------------ the command


def facts(files: set[str], dirs: set[str], links: dict[str, str]) -> HostFacts:
    return HostFacts(exists=lambda p: p in files or p in dirs or p in links,
                     is_dir=lambda p: p in dirs, readlink=links.get,
                     listdir=lambda p: ["ssl", "pki"] if p == "/etc" else ())


DEBIAN = facts({"/etc/ssl/certs/ca-certificates.crt"}, {"/usr", "/etc/ssl", "/etc/ssl/certs"},
               {"/bin": "usr/bin"})
FEDORA = facts({"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"},
               {"/usr", "/etc/pki", "/etc/pki/tls", "/etc/pki/tls/certs", "/etc/pki/ca-trust",
                "/etc/ssl"},
               {"/etc/pki/tls/certs/ca-bundle.crt":
                "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
                "/etc/ssl/certs": "../pki/tls/certs"})


def view_of(f: HostFacts, root: str = "/host") -> HostView:
    return host_view(root=root, home="/home/u", uid=1000, gid=1000, workspace="/src/p",
                     volumes=(), resolv_conf="/w/resolv.conf", hosts="/w/hosts", facts=f)


def test_debian_the_bundle_covers_the_store_and_sits_at_fixed_paths() -> None:
    got = trust_mounts(view_of(DEBIAN), cert="/s/ca.pem", bundle="/s/b.pem", facts=DEBIAN)
    assert [(m.source, m.target, m.read_only) for m in got] == [
        ("/s/ca.pem", "/host" + RUN_CA, True), ("/s/b.pem", "/host" + RUN_BUNDLE, True),
        ("/s/b.pem", "/host/etc/ssl/certs/ca-certificates.crt", True)]


def test_fedora_the_store_is_covered_where_its_symlink_leads() -> None:
    got = trust_mounts(view_of(FEDORA), cert="/s/ca.pem", bundle="/s/b.pem", facts=FEDORA)
    targets = [m.target for m in got]
    assert "/host/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem" in targets
    assert targets.count("/host/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem") == 1
    assert not any(t.endswith("ca-bundle.crt") for t in targets)  # never onto a symlink


def test_an_images_own_root_gets_the_debian_path() -> None:
    got = trust_mounts(view_of(DEBIAN, root=""), cert="/s/ca.pem", bundle="/s/b.pem",
                       facts=DEBIAN)
    assert [m.target for m in got] == [RUN_CA, RUN_BUNDLE, "/etc/ssl/certs/ca-certificates.crt"]


def test_bump_env_names_the_bundle_and_node_gets_the_ca() -> None:
    env = dict(agentenv.bump_env(RUN_CA, RUN_BUNDLE))
    assert env.pop("NODE_EXTRA_CA_CERTS") == RUN_CA
    assert env == dict.fromkeys(("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                                 "GIT_SSL_CAINFO", "PIP_CERT", "DENO_CERT"), RUN_BUNDLE)


def test_netns_sandbox_binds_the_trust_files_and_the_variables_win() -> None:
    caller = {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt", "SUDO_UID": "1000",
              "SUDO_GID": "1000"}
    spec = plan(command=("true",), environ=caller, home="/home/u", workspace="/src/p",
                workspace_owner=(1000, 1000), proxy_url=None, no_proxy="localhost",
                env_all=False, exclude=(), env_file=(),
                explicit=(("SSL_CERT_FILE", "/mine.pem"), *agentenv.bump_env(RUN_CA, RUN_BUNDLE)),
                hidden=(), facts=DEBIAN, trust=("/s/ca.pem", "/s/b.pem"))
    binds = {m["target"]: m for m in spec["mounts"] if m["type"] == "bind"}
    assert binds[ROOT + RUN_CA]["source"] == "/s/ca.pem"
    assert binds[ROOT + RUN_BUNDLE]["source"] == "/s/b.pem"
    assert binds[ROOT + "/etc/ssl/certs/ca-certificates.crt"]["source"] == "/s/b.pem"
    assert all(binds[t]["read_only"] for t in (ROOT + RUN_CA, ROOT + RUN_BUNDLE))
    targets = [m["target"] for m in spec["mounts"]]
    assert targets.index(ROOT + "/etc/ssl") < targets.index(
        ROOT + "/etc/ssl/certs/ca-certificates.crt")  # the store's directory first
    env = dict(spec["env"])
    assert env["SSL_CERT_FILE"] == RUN_BUNDLE
    assert env["NODE_EXTRA_CA_CERTS"] == RUN_CA


def test_docker_agent_variables_replace_the_callers() -> None:
    view = view_of(DEBIAN)
    plain, secrets = agent_environment(
        {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt", "PATH": "/usr/bin"}, view,
        proxy_url="http://172.30.0.10:3128", proxy_v4="172.30.0.10", home="/home/u",
        env_all=False, exclude=(), env_file=(), explicit=(("CURL_CA_BUNDLE", "/x.pem"),),
        tty=False, api_env=list(agentenv.bump_env(RUN_CA, RUN_BUNDLE)), warn=lambda m: None)
    env = dict(plain)
    assert env["SSL_CERT_FILE"] == env["CURL_CA_BUNDLE"] == RUN_BUNDLE
    assert env["NODE_EXTRA_CA_CERTS"] == RUN_CA
    assert [k for k, _ in plain].count("SSL_CERT_FILE") == 1
    assert not secrets


def test_a_leaf_outside_the_runs_names_fails_verification_with_openssl(tmp_path: Path) -> None:
    """The run's CA, as the command would get it, cannot vouch for a name the run does not
    allow, even if its key leaked."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from proxy.bump_ca import sign_leaf

    ca = bump.authority(run("--ssl-bump", "--allow-urls", RULE), now=datetime.now(UTC))
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem())
    for host, ok in (("allowed.test", True), ("github.com", False)):
        leaf = sign_leaf(ca, host, ec.generate_private_key(ec.SECP256R1()))
        path = tmp_path / f"{host}.pem"
        path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        done = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca.pem"),
                               str(path)], capture_output=True, text=True, check=False)
        assert (done.returncode == 0) is ok, (host, done.stdout, done.stderr)
    assert isinstance(ca.cert.extensions.get_extension_for_class(x509.NameConstraints).value,
                      x509.NameConstraints)


def test_awf_cleanup_wipes_a_dead_runs_ca(shm: Path) -> None:
    from awf import leftovers

    d = shm / "awf-bump-dead2"
    d.mkdir()
    (d / "owner").write_text("999999999\n")
    (d / "ca-key.pem").write_text("KEY")
    (d / "ca.pem").write_text("CERT")
    leftovers.remove([leftovers.Leftover("ca", str(d), "dead2")])
    assert not d.exists()


def test_the_audit_names_the_url_rules() -> None:
    from awf.audit import policy_rules

    doc = policy_rules(run("--ssl-bump", "--allow-urls", RULE, "--allow-domains", "a.test"))
    assert doc["url_rules"]["ssl_bump"] is True
    assert doc["url_rules"]["patterns"] == [RULE]
    assert any(r.get("match", {}).get("domain") == "allowed.test" for r in doc["rules"]
               if isinstance(r.get("match"), dict))
    assert policy_rules(run("--allow-domains", "a.test"))["url_rules"] is None


def test_no_warning_for_a_trust_variable_awf_replaces() -> None:
    said: list[str] = []
    caller = {"SSL_CERT_FILE": "/nowhere/ca.pem", "SSL_CERT_DIR": "/nowhere"}
    agent_environment(caller, view_of(DEBIAN), proxy_url=None, proxy_v4="172.30.0.10",
                      home="/home/u", env_all=False, exclude=(), env_file=(), explicit=(),
                      tty=False, api_env=list(agentenv.bump_env(RUN_CA, RUN_BUNDLE)),
                      warn=said.append)
    assert [m.split("=")[0] for m in said] == ["SSL_CERT_DIR"]


def test_a_directory_that_exists_is_refused_and_left_alone(shm: Path) -> None:
    d = shm / "awf-bump-r4"
    d.mkdir()
    (d / "theirs").write_text("x")
    ca = bump.authority(run("--ssl-bump", "--allow-domains", "a.test"), now=datetime.now(UTC))
    with pytest.raises(Exception, match="cannot make") as exc:
        bump.write(ca, "r4", uid=os.getuid(), gid=os.getgid(), store=b"")
    assert getattr(exc.value, "exit_code", None) == 125
    assert (d / "theirs").read_text() == "x"


def test_the_file_names_are_the_proxys_and_a_plain_run_never_loads_the_ca() -> None:
    from proxy import bump_ca

    assert (bump.CA_KEY_FILE, bump.CA_CERT_FILE) == (bump_ca.CA_KEY_FILE, bump_ca.CA_CERT_FILE)
    code = ("import sys, awf.cli, awf.bump, awf.backends.netns; "
            "print('cryptography' in sys.modules, 'proxy.bump_ca' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]
