"""The GitHub host a run works against, from GITHUB_SERVER_URL: GH_HOST, GITHUB_API_URL and the
Copilot API target for GitHub Enterprise Server and GHE.com.

See docs/config.md §8. GH_HOST and the Copilot target as upstream derives them (its
src/github-env.ts and the API proxy's copilot-auth.js), except that a GH_HOST the command already
has is never replaced (upstream overwrites it, and removes it for github.com). GITHUB_API_URL,
which upstream only forwards, is added when the command has none, with the value Actions itself
sets on those hosts.

    https://github.com        nothing: gh's and the tools' defaults are github.com's
    https://acme.ghe.com      GH_HOST=acme.ghe.com  GITHUB_API_URL=https://api.acme.ghe.com
                              Copilot: copilot-api.acme.ghe.com
    https://ghes.example.com  GH_HOST=ghes.example.com
                              GITHUB_API_URL=https://ghes.example.com/api/v3
                              Copilot: api.enterprise.githubcopilot.com

Nothing is added to the allowlist: the run's --allow-domains must name the host (fail closed).
Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

GITHUB = "github.com"
GHEC_SUFFIX = ".ghe.com"
GHES_COPILOT = "api.enterprise.githubcopilot.com"


class Kind(StrEnum):
    GITHUB = "github"  # github.com itself
    GHEC = "ghec"  # a GHE.com tenant, <tenant>.ghe.com
    GHES = "ghes"  # GitHub Enterprise Server, any other host


@dataclass(frozen=True, slots=True)
class Server:
    kind: Kind
    host: str  # the hostname, lower case, without the port
    netloc: str  # host[:port], as the URL gave it (lower case)


def classify(server_url: str | None) -> Server | None:
    """What GITHUB_SERVER_URL names; None when unset or not an http(s) URL with a host."""
    if not server_url:
        return None
    try:
        parts = urlsplit(server_url.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    host = host.rstrip(".")
    netloc = host if port is None else f"{host}:{port}"
    if host == GITHUB:
        return Server(Kind.GITHUB, host, netloc)
    if host.endswith(GHEC_SUFFIX) and len(host) > len(GHEC_SUFFIX):
        return Server(Kind.GHEC, host, netloc)
    return Server(Kind.GHES, host, netloc)


def gh_host(server_url: str | None) -> str | None:
    """GH_HOST for `gh`: the enterprise host's name; None for github.com (gh's default)."""
    s = classify(server_url)
    return None if s is None or s.kind is Kind.GITHUB else s.host


def api_url(server_url: str | None) -> str | None:
    """The REST API's base URL: https://api.<tenant>.ghe.com, or <server>/api/v3 on GHES;
    None for github.com."""
    s = classify(server_url)
    if s is None or s.kind is Kind.GITHUB:
        return None
    if s.kind is Kind.GHEC:
        return f"https://api.{s.netloc}"
    scheme = urlsplit(server_url.strip()).scheme if server_url else "https"
    return f"{scheme}://{s.netloc}/api/v3"


def copilot_target(server_url: str | None) -> str | None:
    """The Copilot API host: copilot-api.<tenant>.ghe.com, or the enterprise endpoint for a
    GHES server; None for github.com (the provider's default, api.githubcopilot.com)."""
    s = classify(server_url)
    if s is None or s.kind is Kind.GITHUB:
        return None
    if s.kind is Kind.GHEC:
        return f"copilot-api.{s.host}"
    return GHES_COPILOT


def command_vars(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """The variables to add to the command's environment `env` (which holds what it is given
    so far): GH_HOST and GITHUB_API_URL from its GITHUB_SERVER_URL, each only if not set."""
    server = env.get("GITHUB_SERVER_URL")
    derived = (("GH_HOST", gh_host(server)), ("GITHUB_API_URL", api_url(server)))
    return [(name, value) for name, value in derived if value is not None and name not in env]
