"""Flags that mean something to one backend only are exit 2 with the other, naming the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from awf.config import parse_run, run_parser
from netfilter.errors import SandboxError
from netfilter.netns import pick_subnet
from proxy.errors import ConfigError


@pytest.mark.parametrize(("args", "flag"), [
    (["-v", "/tmp:/x"], "-v"),
    (["--memory-limit", "1g"], "--memory-limit"),
    (["--enable-docker"], "--enable-docker"),
    (["-t"], "-t"),
    (["--subnet", "172.31.0.0/24"], "--subnet"),
    (["--keep-containers"], "--keep-containers"),  # (--env-all works on both: the sandbox)
])
def test_docker_flags_with_the_netns_backend_are_exit_2(args: list[str], flag: str) -> None:
    with pytest.raises(ConfigError, match=f"^{flag}\\b.*--backend docker only") as err:
        parse_run(["--backend", "netns", *args, "--", "true"])
    assert err.value.exit_code == 2


def test_subnet_pool_is_the_netns_backends() -> None:
    cfg = parse_run(["--backend", "netns", "--subnet-pool", "10.99.0.0/16", "--", "true"])
    assert cfg.subnet_pool == "10.99.0.0/16"
    with pytest.raises(ConfigError, match=r"^--subnet-pool: applies to --backend netns only"):
        parse_run(["--subnet-pool", "10.99.0.0/16", "--", "true"])
    with pytest.raises(ConfigError, match="smaller than a /30"):
        parse_run(["--backend", "netns", "--subnet-pool", "10.99.0.0/31", "--", "true"])


def test_the_netns_message_names_a_flag_that_exists() -> None:
    from ipaddress import IPv4Network, IPv6Network

    with pytest.raises(SandboxError, match="--subnet-pool") as err:
        pick_subnet("x", [IPv4Network("10.0.0.0/8")], IPv4Network("10.213.0.0/16"),
                    IPv6Network("fd61:7766:1::/48"))
    flags = {o for a in run_parser()._actions for o in a.option_strings}
    named = [w.strip(";,.") for w in str(err.value).split() if w.startswith("--")]
    assert named
    assert all(w in flags for w in named)


def test_docker_flags_pass_with_the_docker_backend() -> None:
    cfg = parse_run(["-v", "/tmp:/x", "--memory-limit", "1g", "--enable-docker", "--", "true"])
    assert cfg.volumes == ("/tmp:/x",)


def test_list_files_reach_the_proxy_as_entries_not_host_paths(tmp_path: Path) -> None:
    """The Docker backend's proxy cannot see the caller's files: a path passed on named nothing
    there, and the proxy did not start."""
    allow, block = tmp_path / "allow.txt", tmp_path / "block.txt"
    allow.write_text("# comment\ngithub.com\n*.npmjs.org, pypi.org\n")
    block.write_text("gist.github.com\n")
    cfg = parse_run(["--allow-domains", "example.com", "--allow-domains-file", str(allow),
                     "--block-domains-file", str(block), "--", "true"])
    assert str(tmp_path) not in " ".join(cfg.proxy_args)
    assert cfg.proxy_args == ("--allow-domains", "example.com",
                              "--allow-domains", "github.com,*.npmjs.org,pypi.org",
                              "--block-domains", "gist.github.com")


def test_an_unreadable_list_file_is_exit_2_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--allow-domains-file: cannot read"):
        parse_run(["--allow-domains-file", str(tmp_path / "missing"), "--", "true"])
