"""Properties of the policy core: normalisation is a fixed point; case and one trailing dot never
change a decision; appending `.evil.test` or prepending `not` never allows a name no entry covers;
every spelling of one IP address gets one decision; the compiled matcher agrees with a naive one."""

from __future__ import annotations

import fnmatch
import ipaddress
import re

from hypothesis import assume, given
from hypothesis import strategies as st

from proxy.addr import AddressSet, embedded_ipv4, is_denied_address, parse_ip_literal
from proxy.hostnames import normalise_name, normalise_pattern
from proxy.policy import Policy, Scheme
from proxy.reasons import Reason

VALID_NAME = re.compile(r"[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*")

# A small vocabulary makes entries and names collide often; no label is "evil", "test" or
# starts with "not", so those mutations always leave every entry.
VOCAB = ["a", "b", "ab", "ba", "git", "hub", "github", "api", "api-v2", "x-1", "_s", "com",
         "org", "io", "co", "uk", "-", "_", "0", "9"]
LAST = ["com", "org", "io", "uk", "net", "ab", "git"]   # never numeric: names, not addresses
vocab_label = st.sampled_from(VOCAB)
free_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=8)
label = st.one_of(vocab_label, vocab_label, free_label)


@st.composite
def names(draw: st.DrawFn, min_labels: int = 1, max_labels: int = 4) -> str:
    head = draw(st.lists(label, min_size=min_labels - 1, max_size=max_labels - 1))
    return ".".join([*head, draw(st.sampled_from(LAST))])


@st.composite
def patterns(draw: st.DrawFn) -> str:
    """A valid pattern: 1-3 labels holding `*`s, then two literal labels."""
    glob_labels = draw(st.lists(st.sampled_from(
        ["*", "a*", "*b", "a*b", "*-x", "api-*", "*a*", "g*t*b", "*_*"]), min_size=1, max_size=3))
    middle = draw(st.lists(label, max_size=1))
    return ".".join([*glob_labels, *middle, draw(vocab_label), draw(st.sampled_from(LAST))])


@st.composite
def policies(draw: st.DrawFn) -> tuple[list[str], list[str], list[str], list[str]]:
    plain = draw(st.lists(names(min_labels=2), max_size=6))
    globs = draw(st.lists(patterns(), max_size=3))
    block_plain = draw(st.lists(names(min_labels=2), max_size=2))
    block_globs = draw(st.lists(patterns(), max_size=1))
    return plain, globs, block_plain, block_globs


def covers(name: str, plain: list[str], globs: list[str]) -> bool:
    """The contract's matching rule, written the naive way."""
    return (any(name == e or name.endswith("." + e) for e in plain)
            or any(fnmatch.fnmatchcase(name, g) for g in globs))


def expected_reason(name: str, spec: tuple[list[str], list[str], list[str], list[str]]
                    ) -> Reason | None:
    plain, globs, block_plain, block_globs = spec
    if covers(name, block_plain, block_globs):
        return Reason.DOMAIN_BLOCKED
    return None if covers(name, plain, globs) else Reason.DOMAIN_NOT_ALLOWED


def build(spec: tuple[list[str], list[str], list[str], list[str]]) -> Policy:
    plain, globs, block_plain, block_globs = spec
    return Policy.build(allow_domains=plain + globs, block_domains=block_plain + block_globs)


@st.composite
def instance(draw: st.DrawFn, pattern: str) -> str:
    """A name the pattern matches: each `*` replaced by a run of [a-z0-9_.-] (kept valid)."""
    pieces = pattern.split("*")
    fill = st.sampled_from(["", "a", "x-1", "_", "9", "-", "a.b", "ab.c-d.e", "b_.0"])
    out = pieces[0]
    for piece in pieces[1:]:
        out += draw(fill) + piece
    return out


@st.composite
def requested(draw: st.DrawFn, spec: tuple[list[str], list[str], list[str], list[str]]) -> str:
    """Names near the entries: the entries, their subdomains, instances and near misses."""
    plain, globs, block_plain, block_globs = spec
    near = [*plain, *block_plain]
    near += [draw(instance(g)) for g in [*globs, *block_globs]]
    base = draw(st.sampled_from(near)) if near else draw(names())
    mutate = draw(st.sampled_from(["same", "sub", "not", "evil", "parent", "random"]))
    if mutate == "sub":
        base = f"{draw(label)}.{base}"
    elif mutate == "not":
        base = "not" + base
    elif mutate == "evil":
        base += ".evil.test"
    elif mutate == "parent" and "." in base:
        base = base.partition(".")[2]
    elif mutate == "random":
        base = draw(names())
    assume(VALID_NAME.fullmatch(base) and len(base) <= 253)
    assume(not re.fullmatch(r"[0-9]+|0x[0-9a-f]*", base.rpartition(".")[2]))
    return base


# ---------------------------------------------------------------------------- normalisation


@given(st.text(max_size=80))
def test_normalise_is_a_fixed_point_on_any_text(raw: str) -> None:
    try:
        once = normalise_name(raw)
    except ValueError:
        return
    assert VALID_NAME.fullmatch(once)
    assert len(once) <= 253
    assert normalise_name(once) == once


unicode_label = st.sampled_from(["münchen", "bücher", "例え", "köln", "ǅz", "\uff47\uff49\uff54",
                                 "a\u00adb", "Straße", "ΔΟΚΙΜΉ", "xn--mnchen-3ya"])


@given(st.lists(st.one_of(label, unicode_label), min_size=1, max_size=4),
       st.sampled_from(["", ".", "\u3002", " "]))
def test_normalise_is_a_fixed_point_on_idn(labels: list[str], tail: str) -> None:
    raw = ".".join(labels) + tail
    try:
        once = normalise_name(raw)
    except ValueError:
        return
    assert once.isascii()
    assert normalise_name(once) == once


@given(patterns(), st.booleans())
def test_normalise_pattern_is_a_fixed_point(pattern: str, upper: bool) -> None:
    once = normalise_pattern(pattern.upper() if upper else pattern)
    assert once == pattern
    assert normalise_pattern(once) == once


# ---------------------------------------------------------------------------- decisions


@given(st.data(), policies())
def test_decide_agrees_with_the_naive_rule(data: st.DataObject, spec: tuple[
        list[str], list[str], list[str], list[str]]) -> None:
    policy = build(spec)
    name = data.draw(requested(spec))
    decision = policy.decide(name, 443, Scheme.HTTPS)
    assert decision.reason == expected_reason(name, spec)
    assert decision.allowed is (decision.reason is None)
    assert decision.host == name
    assert policy.allows_name(name) is decision.allowed


@given(st.data(), policies(), st.sampled_from(list(Scheme)), st.sampled_from([80, 443, 22, 8080]))
def test_case_and_one_trailing_dot_never_change_a_decision(
        data: st.DataObject, spec: tuple[list[str], list[str], list[str], list[str]],
        scheme: Scheme, port: int) -> None:
    policy = build(spec)
    name = data.draw(requested(spec))
    flips = data.draw(st.integers(0, 2 ** len(name) - 1))
    mixed = "".join(c.upper() if flips >> i & 1 else c for i, c in enumerate(name))
    decision = policy.decide(name, port, scheme)
    for variant in [name.upper(), mixed, name + ".", mixed + "."]:
        assert policy.decide(variant, port, scheme) == decision


@given(st.lists(st.one_of(label, unicode_label), min_size=1, max_size=3), st.booleans())
def test_case_and_trailing_dot_on_idn(labels: list[str], allow_it: bool) -> None:
    raw = ".".join([*labels, "de"])
    assume("ß" not in raw.lower() and "ǅ" not in raw)  # their upper case is another name
    try:
        name = normalise_name(raw)
    except ValueError:
        return
    policy = Policy.build(allow_domains=[raw.upper() + "." if allow_it else "other.de"])
    decision = policy.decide(raw, 443, Scheme.HTTPS)
    assert decision.allowed is allow_it
    assert decision.host == name
    for variant in [raw.upper(), raw.lower() + ".", raw.upper() + "."]:
        assert policy.decide(variant, 443, Scheme.HTTPS) == decision


@given(policies(), names())
def test_appending_evil_test_never_allows(spec: tuple[list[str], list[str], list[str],
                                                       list[str]], name: str) -> None:
    policy = build(spec)
    evil = name + ".evil.test"
    assert not covers(evil, spec[0], spec[1])
    decision = policy.decide(evil, 443, Scheme.HTTPS)
    assert not decision.allowed
    assert decision.reason in (Reason.DOMAIN_NOT_ALLOWED, Reason.DOMAIN_BLOCKED)


@given(policies())
def test_prepending_not_never_allows_an_uncovered_name(
        spec: tuple[list[str], list[str], list[str], list[str]]) -> None:
    policy = build(spec)
    plain, globs, *_ = spec
    for entry in plain:
        decision = policy.decide("not" + entry, 443, Scheme.HTTPS)
        if not covers("not" + entry, plain, globs):
            assert not decision.allowed


@given(st.text(max_size=300), st.integers(-2, 70_000), st.sampled_from(list(Scheme)))
def test_decide_never_raises(host: str, port: int, scheme: Scheme) -> None:
    policy = Policy.build(allow_domains=["github.com", "*.example.com", "10.0.0.0/8"])
    decision = policy.decide(host, port, scheme)
    if not 1 <= port <= 65535:
        assert decision.reason == Reason.BAD_REQUEST
    assert decision.allowed is (decision.reason is None)


@given(st.lists(st.sampled_from(["a", "b", "ab", "*", "a*", "*b", "*a*", "**"]), min_size=1,
                max_size=4),
       st.lists(st.text(alphabet="ab", min_size=1, max_size=6), min_size=1, max_size=5))
def test_globs_agree_with_fnmatch(glob_labels: list[str], name_labels: list[str]) -> None:
    pattern = ".".join(glob_labels) + ".x.test"
    name = ".".join(name_labels) + ".x.test"
    policy = Policy.build(allow_domains=[pattern])
    glob = "*" in pattern
    expected = covers(name, [] if glob else [pattern], [pattern] if glob else [])
    assert policy.decide(name, 443, Scheme.HTTPS).allowed is expected


# ---------------------------------------------------------------------------- IP literals


@st.composite
def v4_part(draw: st.DrawFn, value: int) -> str:
    radix = draw(st.sampled_from(["dec", "oct", "hex"]))
    zeros = "0" * draw(st.integers(0, 3))
    if radix == "dec":
        return str(value)
    if radix == "oct":
        return "0" + zeros + format(value, "o")
    digits = format(value, "x")
    digits = "".join(c.upper() if draw(st.booleans()) else c for c in digits)
    return draw(st.sampled_from(["0x", "0X"])) + zeros + digits


@st.composite
def v4_spelling(draw: st.DrawFn, ip: ipaddress.IPv4Address) -> str:
    """inet_aton spellings: 1-4 parts, each decimal, octal or hex, the last filling the rest."""
    count = draw(st.integers(1, 4))
    packed = ip.packed
    values = [*packed[: count - 1], int.from_bytes(packed[count - 1:], "big")]
    text = ".".join(draw(v4_part(v)) for v in values)
    return text + draw(st.sampled_from(["", "."]))


@st.composite
def v6_spelling(draw: st.DrawFn, ip: ipaddress.IPv6Address) -> str:
    style = draw(st.sampled_from(["compressed", "exploded", "dotted"]))
    if style == "compressed":
        text = ip.compressed
    elif style == "exploded":
        text = ip.exploded
    else:
        high = ipaddress.IPv6Address(int(ip) & ~0xFFFF_FFFF).exploded.rsplit(":", 2)[0]
        text = f"{high}:{ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)}"
    if draw(st.booleans()):
        text = text.upper()
    text += draw(st.sampled_from(["", "%lo", "%25eth0"]))
    return f"[{text}]" if draw(st.booleans()) or "%" in text else text


ipv4s = st.one_of(
    st.integers(0, 2**32 - 1),
    st.sampled_from([0x7F000001, 0xA9FEA9FE, 0x0A000001, 0xC0A80001, 0x08080808, 0xFFFFFFFF, 0]),
).map(ipaddress.IPv4Address)
EMBEDDING_PREFIXES = [0xFFFF << 32, 0xFFFF_0000 << 32, 0x0064_FF9B << 96, 0]
ipv6s = st.one_of(
    st.integers(0, 2**128 - 1),
    st.tuples(st.sampled_from(EMBEDDING_PREFIXES), st.integers(2, 2**32 - 1)).map(sum),
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**80 - 1)).map(
        lambda t: (0x2002 << 112) | (t[0] << 80) | t[1]),
    st.sampled_from([1, 0, 0xFE80 << 112, 0xFC00 << 112, 0xFF02 << 112 | 1]),
).map(ipaddress.IPv6Address)

ip_entries = st.lists(st.one_of(
    st.tuples(ipv4s, st.integers(8, 32)).map(
        lambda t: str(ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False))),
    st.tuples(ipv6s, st.integers(16, 128)).map(
        lambda t: str(ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False))),
), max_size=3)


@given(st.data(), ipv4s, ip_entries, ip_entries)
def test_every_ipv4_spelling_gets_one_decision(data: st.DataObject, ip: ipaddress.IPv4Address,
                                               allow: list[str], block: list[str]) -> None:
    allow.append(data.draw(st.sampled_from([f"{ip}/32", f"{ip}/24", "192.0.2.0/24"]),
                           label="allow"))
    if "/24" in allow[-1]:
        allow[-1] = str(ipaddress.ip_network(allow[-1], strict=False))
    policy = Policy.build(allow_domains=allow, block_domains=block)
    reference = policy.decide(str(ip), 443, Scheme.HTTPS)
    assert reference.address == ip
    assert reference.host == str(ip)
    for _ in range(5):
        spelling = data.draw(v4_spelling(ip), label="spelling")
        assert parse_ip_literal(spelling) == ip
        assert policy.decide(spelling, 443, Scheme.HTTPS) == reference
    for embedded in [f"[::ffff:{ip}]", f"::ffff:{int(ip) >> 16:x}:{int(ip) & 0xFFFF:x}"]:
        other = policy.decide(embedded, 443, Scheme.HTTPS)
        assert (other.allowed, other.reason) == (reference.allowed, reference.reason)


@given(st.data(), ipv6s, ip_entries)
def test_every_ipv6_spelling_gets_one_decision(data: st.DataObject, ip: ipaddress.IPv6Address,
                                               allow: list[str]) -> None:
    policy = Policy.build(allow_domains=allow)
    reference = policy.decide(str(ip), 443, Scheme.HTTPS)
    assert reference.address == ip
    assert reference.host == str(ip)
    for _ in range(5):
        spelling = data.draw(v6_spelling(ip), label="spelling")
        assert parse_ip_literal(spelling) == ip
        assert policy.decide(spelling, 443, Scheme.HTTPS) == reference


@given(ipv4s)
def test_embedded_forms_are_judged_by_their_ipv4(ip: ipaddress.IPv4Address) -> None:
    n = int(ip)
    forms = [0xFFFF << 32 | n, 0xFFFF_0000 << 32 | n, 0x0064_FF9B << 96 | n,
             0x2002 << 112 | n << 80 | 0x1234]
    if n > 1:
        forms.append(n)  # IPv4-compatible
    for form in map(ipaddress.IPv6Address, forms):
        assert embedded_ipv4(form) == ip
        assert is_denied_address(form) is is_denied_address(ip)
        assert (form in AddressSet.parse([f"{ip}/32"], what="x")) is True


@given(st.lists(st.one_of(
    st.tuples(ipv4s, st.integers(0, 32)).map(
        lambda t: ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False)),
    st.tuples(ipv6s, st.integers(0, 128)).map(
        lambda t: ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False)),
), max_size=6), st.one_of(ipv4s, ipv6s))
def test_address_set_agrees_with_a_naive_scan(
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    s = AddressSet.parse([str(n) for n in networks], what="x")

    def naive(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if any(ip in n for n in networks):
            return True
        if isinstance(ip, ipaddress.IPv4Address):  # its IPv4-mapped spelling is the same address
            return any(ipaddress.IPv6Address(0xFFFF << 32 | int(ip)) in n for n in networks)
        v4 = embedded_ipv4(ip)
        return v4 is not None and naive(v4)

    assert (ip in s) is naive(ip)
