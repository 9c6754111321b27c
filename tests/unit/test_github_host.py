"""Enterprise hosts (issue 21, item 3): GH_HOST, GITHUB_API_URL and the Copilot API target
derived from GITHUB_SERVER_URL for GHES and GHE.com, as upstream derives them; a GH_HOST or
GITHUB_API_URL the command already has is never replaced. docs/config.md §8."""

from __future__ import annotations

import pytest

from awf import apisidecar
from awf.config import parse_run
from containers import agentenv, github_host
from containers.github_host import Kind


@pytest.mark.parametrize(("url", "kind", "host"), [
    ("https://github.com", Kind.GITHUB, "github.com"),
    ("https://GitHub.com/", Kind.GITHUB, "github.com"),
    ("https://acme.ghe.com", Kind.GHEC, "acme.ghe.com"),
    ("https://ghes.example.com", Kind.GHES, "ghes.example.com"),
    ("https://ghes.example.com:8443/", Kind.GHES, "ghes.example.com"),
    ("http://git.internal", Kind.GHES, "git.internal"),
])
def test_classify(url: str, kind: Kind, host: str) -> None:
    s = github_host.classify(url)
    assert s is not None
    assert (s.kind, s.host) == (kind, host)


@pytest.mark.parametrize("url", [None, "", "not a url", "ghes.example.com", "ftp://x.test",
                                 "https://", "https://h:99999"])
def test_nothing_is_derived_from_what_is_not_a_server_url(url: str | None) -> None:
    assert github_host.classify(url) is None
    assert github_host.gh_host(url) is None
    assert github_host.api_url(url) is None
    assert github_host.copilot_target(url) is None


def test_ghes() -> None:
    url = "https://ghes.example.com"
    assert github_host.gh_host(url) == "ghes.example.com"
    assert github_host.api_url(url) == "https://ghes.example.com/api/v3"
    assert github_host.copilot_target(url) == "api.enterprise.githubcopilot.com"
    assert github_host.api_url("https://ghes.example.com:8443") == (
        "https://ghes.example.com:8443/api/v3")


@pytest.mark.parametrize("url", ["https://ghes.example.com/", "https://ghes.example.com:8443",
                                 "https://GHES.example.com:8443/"])
def test_gh_host_is_the_name_alone(url: str) -> None:
    """As upstream's gh-host-injection tests: a port or a trailing slash is not part of it."""
    assert github_host.gh_host(url) == "ghes.example.com"


def test_ghe_com() -> None:
    url = "https://acme.ghe.com"
    assert github_host.gh_host(url) == "acme.ghe.com"
    assert github_host.api_url(url) == "https://api.acme.ghe.com"
    assert github_host.copilot_target(url) == "copilot-api.acme.ghe.com"


def test_github_com_needs_nothing() -> None:
    url = "https://github.com"
    assert github_host.gh_host(url) is None
    assert github_host.api_url(url) is None
    assert github_host.copilot_target(url) is None
    assert github_host.command_vars({"GITHUB_SERVER_URL": url}) == []


def test_command_vars_never_replace_what_is_set() -> None:
    env = {"GITHUB_SERVER_URL": "https://ghes.example.com", "GH_HOST": "other.example"}
    assert github_host.command_vars(env) == [
        ("GITHUB_API_URL", "https://ghes.example.com/api/v3")]
    env["GITHUB_API_URL"] = "https://ghes.example.com/custom"
    assert github_host.command_vars(env) == []


def _env(caller: dict[str, str], *, env_all: bool = False, exclude: tuple[str, ...] = (),
         explicit: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    return dict(agentenv.agent_env(caller, proxy_url=None, no_proxy="", home="/h",
                                   env_all=env_all, exclude=exclude, env_file=(),
                                   explicit=explicit))


@pytest.mark.parametrize("env_all", [False, True])
def test_the_command_gets_gh_host_with_and_without_env_all(env_all: bool) -> None:
    """GITHUB_SERVER_URL is passed by default, so GH_HOST follows it either way."""
    env = _env({"GITHUB_SERVER_URL": "https://acme.ghe.com"}, env_all=env_all)
    assert env["GH_HOST"] == "acme.ghe.com"
    assert env["GITHUB_API_URL"] == "https://api.acme.ghe.com"


def test_an_explicit_gh_host_wins() -> None:
    caller = {"GITHUB_SERVER_URL": "https://ghes.example.com", "GH_HOST": "mine.example"}
    assert _env(caller)["GH_HOST"] == "mine.example"
    assert _env(caller)["GITHUB_API_URL"] == "https://ghes.example.com/api/v3"  # still added
    env = _env({"GITHUB_SERVER_URL": "https://ghes.example.com"},
               explicit=(("GH_HOST", "flag.example"),))
    assert env["GH_HOST"] == "flag.example"
    # Actions' own GITHUB_API_URL is kept as it is
    caller = {"GITHUB_SERVER_URL": "https://ghes.example.com",
              "GITHUB_API_URL": "https://ghes.example.com/api/v3/"}
    assert _env(caller)["GITHUB_API_URL"] == "https://ghes.example.com/api/v3/"


def test_an_excluded_name_is_not_derived_either() -> None:
    env = _env({"GITHUB_SERVER_URL": "https://ghes.example.com"}, exclude=("GH_HOST",))
    assert "GH_HOST" not in env
    assert env["GITHUB_API_URL"] == "https://ghes.example.com/api/v3"  # the other one is
    env = _env({"GITHUB_SERVER_URL": "https://ghes.example.com"},
               exclude=("GITHUB_SERVER_URL",))
    assert "GH_HOST" not in env
    assert "GITHUB_SERVER_URL" not in env


def test_a_server_url_given_with_e_counts_too() -> None:
    env = _env({}, explicit=(("GITHUB_SERVER_URL", "https://ghes.example.com"),))
    assert env["GH_HOST"] == "ghes.example.com"


def _copilot(environ: dict[str, str], *flags: str) -> str:
    sc = apisidecar.plan(parse_run([*flags, "--", "true"]),
                         {"COPILOT_GITHUB_TOKEN": "gho-x", **environ})
    assert sc is not None
    return dict(sc.targets)["copilot"].host


def test_the_copilot_target_follows_the_server_url() -> None:
    assert _copilot({}) == "api.githubcopilot.com"
    assert _copilot({"GITHUB_SERVER_URL": "https://github.com"}) == "api.githubcopilot.com"
    assert _copilot({"GITHUB_SERVER_URL": "https://acme.ghe.com"}) == "copilot-api.acme.ghe.com"
    assert _copilot({"GITHUB_SERVER_URL": "https://ghes.example.com"}) == (
        "api.enterprise.githubcopilot.com")
    # the flag wins
    assert _copilot({"GITHUB_SERVER_URL": "https://acme.ghe.com"},
                    "--copilot-api-target", "copilot.example") == "copilot.example"
