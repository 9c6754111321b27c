"""Hostname normalisation (docs/proxy.md §2): golden spellings, invalid names, patterns."""

from __future__ import annotations

import pytest

from proxy.hostnames import MAX_NAME, fold_name, normalise_name, normalise_pattern

LONGEST = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 characters


@pytest.mark.parametrize(("raw", "expected"), [
    ("github.com", "github.com"),
    ("GitHub.COM", "github.com"),
    ("API.GITHUB.COM", "api.github.com"),
    ("github.com.", "github.com"),                   # one trailing dot removed
    ("  github.com  ", "github.com"),                # surrounding whitespace stripped
    ("_dmarc.example.com", "_dmarc.example.com"),    # underscore names are valid
    ("_acme-challenge.example.com", "_acme-challenge.example.com"),
    ("_srv._tcp.example.com", "_srv._tcp.example.com"),
    ("localhost", "localhost"),                      # valid name; policy decides
    ("a" * 63 + ".com", "a" * 63 + ".com"),
    (LONGEST, LONGEST),
    (LONGEST + ".", LONGEST),
    ("xn--mnchen-3ya.de", "xn--mnchen-3ya.de"),      # A-labels compared as they are
    ("XN--MNCHEN-3YA.DE", "xn--mnchen-3ya.de"),
    ("münchen.de", "xn--mnchen-3ya.de"),             # IDN -> punycode
    ("MÜNCHEN.DE", "xn--mnchen-3ya.de"),
    ("www.München.de.", "www.xn--mnchen-3ya.de"),
    ("_dmarc.münchen.de", "_dmarc.xn--mnchen-3ya.de"),  # ASCII labels keep their '_'
    ("Straße.de", "xn--strae-oqa.de"),              # UTS 46 non-transitional: ß stays
    ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
    ("\uff47\uff49\uff54\uff48\uff55\uff42.com", "github.com"),  # full-width letters
    ("github\u3002com", "github.com"),              # ideographic full stop is a dot
    ("git\u00adhub.com", "github.com"),             # soft hyphen is ignored by UTS 46
    ("1.2.3.4.nip.io", "1.2.3.4.nip.io"),
])
def test_normalise_name(raw: str, expected: str) -> None:
    assert normalise_name(raw) == expected
    assert normalise_name(expected) == expected


@pytest.mark.parametrize("raw", [
    "",
    "   ",
    ".",
    "..",
    "github.com..",          # only one trailing dot is removed
    ".github.com",
    "a..b.com",
    "a" * 64 + ".com",       # label over 63
    LONGEST + "e",           # name over 253
    "a." * 127 + "bc",       # 256 characters of short labels
    "git hub.com",
    "git\thub.com",
    "git\x00hub.com",
    "github.com/",
    "github.com:443",
    "user@github.com",
    "*.github.com",          # '*' only in entries, through normalise_pattern
    "git%68ub.com",
    "[github.com]",
    "a\u200db.com",          # ZWJ outside its allowed context
    "\u0300a.com",           # label starting with a combining mark
    "\u2488com",             # disallowed by UTS 46
    "_ü.de",                 # a non-ASCII label must be a valid IDNA 2008 label
    "\ud800.com",            # a lone surrogate (undecodable bytes read with surrogateescape)
    "ü\udcff.com",
    "a" * 2000,
])
def test_normalise_name_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match=r".") as info:
        normalise_name(raw)
    assert type(info.value) is ValueError  # not an idna exception leaking through


@pytest.mark.parametrize(("raw", "message"), [
    ("a..b", "empty label"),
    ("a" * 64 + ".com", "over 63"),
    (LONGEST + "e", f"over {MAX_NAME}"),
    ("git hub.com", "' '"),
    ("münchen\u200d.de", "internationalised"),
])
def test_normalise_name_says_why(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalise_name(raw)


@pytest.mark.parametrize(("raw", "expected"), [
    ("*.GitHub.com", "*.github.com"),
    ("api-*.example.com.", "api-*.example.com"),
    ("*.München.de", "*.xn--mnchen-3ya.de"),
    ("\uff0a.example.com", "*.example.com"),          # full-width asterisk maps to '*'
    ("a*b*c.example.com", "a*b*c.example.com"),
    ("*" + "a" * 63 + ".com", "*" + "a" * 63 + ".com"),  # '*' does not count towards 63
    ("_dmarc.example.com", "_dmarc.example.com"),
])
def test_normalise_pattern(raw: str, expected: str) -> None:
    assert normalise_pattern(raw) == expected


@pytest.mark.parametrize("raw", ["*ü.de", "*..com", "a" * 64 + "*.com", "*.a b.com", "*/x.com"])
def test_normalise_pattern_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        normalise_pattern(raw)


@pytest.mark.parametrize(("raw", "expected"), [
    ("  GitHub.com.  ", "github.com"),
    ("127.0.0.1.", "127.0.0.1"),
    ("\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11", "127.0.0.1"),
    ("a..", "a."),
])
def test_fold_name(raw: str, expected: str) -> None:
    assert fold_name(raw) == expected
