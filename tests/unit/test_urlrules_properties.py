"""Properties of --allow-urls (proxy/urlrules.py): target normalisation is a fixed point and
leaves no dot segment or escaped separator; no path holding an escaped slash is ever allowed,
whatever the patterns; the compiled globs agree with a naive backtracking matcher; host case and
one trailing dot never change a decision."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from proxy.errors import BadRequest
from proxy.policy import Scheme
from proxy.urlrules import UrlRules, _glob, decide_url, normalise_target

# Pieces that make the tricky cases likely: dots, slashes, escapes of both, parameters.
PIECES = ["/", "/", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "%00", "%25", "%", "%7e",
          "%41", ";", "?", "a", "b", "repos", "x", "~", "-", "_", "*", "=", "&", "2", "e", "f",
          "\\", "#", " "]
targets = st.lists(st.sampled_from(PIECES), max_size=24).map(lambda p: "/" + "".join(p))
path_pieces = st.lists(st.sampled_from([p for p in PIECES if p not in ("?", "#")]),
                       max_size=12).map("".join)

RULES = UrlRules.build([
    "https://api.github.com/*",
    "https://*.example.com/*",
    "http://plain.test/*",
    "GET https://q.test/*?*",
])


def _join(path: str, query: str | None) -> str:
    return path if query is None else f"{path}?{query}"


@given(targets)
def test_normalisation_is_idempotent(target: str) -> None:
    try:
        path, query = normalise_target(target)
    except BadRequest:
        return
    assert normalise_target(_join(path, query)) == (path, query)


@given(targets)
def test_normalised_paths_are_clean(target: str) -> None:
    try:
        path, _ = normalise_target(target)
    except BadRequest:
        return
    assert path.startswith("/")
    segments = path.split("/")[1:]
    assert "." not in segments
    assert ".." not in segments
    upper = path.upper()
    for bad in ("%2F", "%5C", "%00", "\\", "#"):
        assert bad not in upper


@given(path_pieces, st.sampled_from(["%2f", "%2F"]), targets,
       st.sampled_from(["api.github.com", "a.example.com", "q.test", "plain.test"]),
       st.sampled_from(["GET", "POST"]), st.sampled_from([Scheme.HTTP, Scheme.HTTPS]))
def test_an_escaped_slash_in_the_path_is_never_allowed(
        before: str, slash: str, after: str, host: str, method: str, scheme: Scheme) -> None:
    # `after` starts with '/' and may hold a query; the escaped slash is in the path either way
    target = "/" + before + slash + after
    decision = decide_url(RULES, method, scheme, host, 443 if scheme == Scheme.HTTPS else 80,
                          target)
    assert not decision.allowed


GLOB_ALPHABET = "ab/*"


@given(st.text(alphabet=GLOB_ALPHABET, max_size=8), st.text(alphabet="ab/", max_size=12))
def test_glob_agrees_with_a_naive_matcher(pattern: str, text: str) -> None:
    naive = re.compile(".*".join(re.escape(p) for p in pattern.split("*")), re.DOTALL)
    assert (_glob(pattern).fullmatch(text) is not None) == (naive.fullmatch(text) is not None)


@given(st.sampled_from(["api.github.com", "x.api.github.com", "a.example.com", "evil.test",
                        "example.com", "plain.test"]),
       targets, st.booleans(), st.booleans())
def test_host_case_and_trailing_dot_never_change_a_decision(host: str, target: str,
                                                            upper: bool, dot: bool) -> None:
    spelled = (host.upper() if upper else host) + ("." if dot else "")
    a = decide_url(RULES, "GET", Scheme.HTTPS, host, 443, target)
    b = decide_url(RULES, "GET", Scheme.HTTPS, spelled, 443, target)
    assert (a.allowed, a.reason, a.target) == (b.allowed, b.reason, b.target)
