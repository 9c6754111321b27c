"""The DNS forwarder's pure core: parse_query, judge, answer and encode, no sockets."""

from __future__ import annotations

import ipaddress

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config import parse_argv
from proxy.dnsfwd import (
    DEFAULT_MAX_NAME_LENGTH,
    DEFAULT_SUBDOMAIN_BUDGET,
    Query,
    Reply,
    SubdomainBudget,
    Verdict,
    answer,
    budget_base,
    encode,
    judge,
    name_too_long,
    parse_query,
    refuse,
    screen,
)
from proxy.errors import ConfigError
from proxy.policy import Policy
from proxy.reasons import Reason
from proxy.resolver import IPAddress, Lookup, Outcome

POLICY = Policy.build(
    allow_domains=["allowed.test", "http://plain.test", "https://tls.test", "192.0.2.0/24",
                   "svc.test:8080"],
    block_domains=["blocked.allowed.test", "blocked.svc.test"],
)
RANGES = Policy.build(allow_domains=["allowed.test"], allow_ranges=["10.0.0.0/8"])
LOCAL: dict[str, list[IPAddress]] = {
    "awf-proxy": [ipaddress.ip_address("172.30.0.10"), ipaddress.ip_address("fd61:7766::10")]
}


def ips(*texts: str) -> tuple[IPAddress, ...]:
    return tuple(ipaddress.ip_address(t) for t in texts)


def query(name: str, rdtype: str = "A", *, edns: bool = True) -> Query:
    msg = dns.message.make_query(name, rdtype, use_edns=0 if edns else False)
    parsed = parse_query(msg.to_wire())
    assert isinstance(parsed, Query)
    return parsed


def respond(
    q: Query, lookup: Lookup | None = None, policy: Policy = POLICY, max_ttl: int = 60
) -> Reply:
    verdict = judge(q, policy, LOCAL)
    if not verdict.needs_lookup(q):
        assert lookup is None, "a lookup was given for a question that needs none"
    return answer(q, verdict, lookup, address_allowed=policy.address_allowed, max_ttl=max_ttl)


def ede_codes(msg: dns.message.Message) -> list[tuple[int, str | None]]:
    return [
        (int(o.code), o.text) for o in msg.options if isinstance(o, dns.edns.EDEOption)
    ]


def addresses(msg: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in msg.answer for rd in rrset]


# parse_query


def test_parse_normalises_the_name():
    q = query("ApI.Allowed.TEST.", "AAAA")
    assert q.name == "api.allowed.test"
    assert q.qtype == dns.rdatatype.AAAA


@pytest.mark.parametrize("wire", [b"", b"\x12", b"\x12\x34\x01\x00" + b"\x00" * 7])
def test_parse_drops_what_has_no_header(wire: bytes):
    assert parse_query(wire) is None


def test_parse_drops_responses():
    msg = dns.message.make_response(dns.message.make_query("allowed.test", "A"))
    assert parse_query(msg.to_wire()) is None


def test_parse_refuses_garbage_with_its_id():
    reply = parse_query(b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07trunc")
    assert isinstance(reply, Reply)
    wire = encode(reply, udp=True)
    msg = dns.message.from_wire(wire)
    assert msg.id == 0xBEEF
    assert msg.rcode() == dns.rcode.REFUSED
    assert msg.flags & dns.flags.QR
    assert (reply.decision, reply.reason) == ("deny", Reason.BAD_REQUEST)


def two_questions() -> bytes:
    msg = dns.message.make_query("allowed.test", "A")
    name = msg.question[0].name
    msg.question.append(dns.rrset.RRset(name, dns.rdataclass.IN, dns.rdatatype.AAAA))
    return msg.to_wire()


def no_question() -> bytes:
    msg = dns.message.make_query("allowed.test", "A")
    msg.question = []
    return msg.to_wire()


def opcode(op: dns.opcode.Opcode) -> bytes:
    msg = dns.message.make_query("allowed.test", "A")
    msg.set_opcode(op)
    return msg.to_wire()


@pytest.mark.parametrize(
    "wire",
    [
        two_questions(),
        no_question(),
        opcode(dns.opcode.NOTIFY),
        opcode(dns.opcode.STATUS),
        dns.message.make_query("allowed.test", "A", rdclass="CH").to_wire(),
        dns.message.make_query("allowed.test", "AXFR").to_wire(),
        dns.message.make_query("allowed.test", "IXFR").to_wire(),
        dns.message.make_query("allowed.test", "MAILB").to_wire(),
    ],
    ids=["two-questions", "no-question", "notify", "status", "chaos", "axfr", "ixfr", "mailb"],
)
def test_parse_refuses_what_is_not_one_plain_question(wire: bytes):
    reply = parse_query(wire)
    assert isinstance(reply, Reply)
    assert reply.message.rcode() == dns.rcode.REFUSED
    assert reply.decision == "deny"


def pipeline(wire: bytes) -> None:
    """Everything the edge does with one packet, minus the sockets: must not raise."""
    parsed = parse_query(wire)
    if isinstance(parsed, Query):
        verdict = judge(parsed, POLICY, LOCAL)
        lookup = Lookup("allowed.test", Outcome.OK, ips("192.0.2.1", "2001:db8::1"), 30)
        reply = answer(
            parsed, verdict, lookup if verdict.needs_lookup(parsed) else None,
            address_allowed=POLICY.address_allowed, max_ttl=60,
        )
        dns.message.from_wire(encode(reply, udp=True))
    elif isinstance(parsed, Reply):
        dns.message.from_wire(encode(parsed, udp=True))


@given(st.binary(max_size=600))
@settings(max_examples=300)
def test_random_bytes_never_raise(wire: bytes):
    pipeline(wire)


SEED = dns.message.make_query("api.allowed.test", "A", use_edns=0).to_wire()


@given(st.lists(st.tuples(st.integers(0, len(SEED) - 1), st.integers(0, 255)), max_size=6))
@settings(max_examples=300)
def test_mutated_queries_never_raise(edits: list[tuple[int, int]]):
    wire = bytearray(SEED)
    for index, value in edits:
        wire[index] = value
    pipeline(bytes(wire))


# judge


@pytest.mark.parametrize(
    ("name", "allowed", "reason"),
    [
        ("allowed.test", True, None),
        ("a.b.allowed.test", True, None),
        ("plain.test", True, None),  # http:// entry: port 80 is enough
        ("tls.test", True, None),  # https:// entry
        ("svc.test", True, None),  # HOST:PORT entry: its port is checked on the connection
        ("api.svc.test", True, None),
        ("blocked.svc.test", False, Reason.DOMAIN_BLOCKED),
        ("blocked.allowed.test", False, Reason.DOMAIN_BLOCKED),
        ("x.blocked.allowed.test", False, Reason.DOMAIN_BLOCKED),
        ("notallowed.test", False, Reason.DOMAIN_NOT_ALLOWED),
        ("allowed.test.evil.test", False, Reason.DOMAIN_NOT_ALLOWED),
        ("192.0.2.1", False, Reason.IP_LITERAL),  # allowed as a literal, but never looked up
        ("10.0.0.5", False, Reason.IP_LITERAL),
        ("a\\000b.allowed.test", False, Reason.BAD_REQUEST),
        ("a\\.b.allowed.test", False, Reason.BAD_REQUEST),
        (".", False, Reason.BAD_REQUEST),
    ],
)
def test_judge(name: str, allowed: bool, reason: Reason | None):
    verdict = judge(query(name), POLICY, LOCAL)
    assert (verdict.allowed, verdict.reason) == (allowed, reason)


def test_local_names_are_answered_without_policy():
    q = query("AWF-PROXY.", "A")
    verdict = judge(q, POLICY, LOCAL)
    assert verdict.allowed
    assert not verdict.needs_lookup(q)
    reply = respond(q)
    assert addresses(reply.message) == ["172.30.0.10"]
    assert addresses(respond(query("awf-proxy", "AAAA")).message) == ["fd61:7766::10"]
    assert respond(query("awf-proxy", "MX")).message.answer == []


# answer


def test_denied_name_gets_nxdomain_with_ede_blocked():
    q = query("notallowed.test")
    assert not judge(q, POLICY, LOCAL).needs_lookup(q)
    reply = respond(q)
    assert reply.message.rcode() == dns.rcode.NXDOMAIN
    assert ede_codes(reply.message) == [(15, "domain_not_allowed")]
    assert (reply.decision, reply.reason, reply.answers) == ("deny", Reason.DOMAIN_NOT_ALLOWED, ())
    parsed = dns.message.from_wire(encode(reply, udp=True))
    assert ede_codes(parsed) == [(dns.edns.EDECode.BLOCKED, "domain_not_allowed")]


def test_denied_name_without_edns_gets_plain_nxdomain():
    reply = respond(query("notallowed.test", edns=False))
    assert reply.message.rcode() == dns.rcode.NXDOMAIN
    parsed = dns.message.from_wire(encode(reply, udp=True))
    assert parsed.edns < 0
    assert parsed.rcode() == dns.rcode.NXDOMAIN


@pytest.mark.parametrize("rdtype", ["TXT", "MX", "HTTPS", "SVCB", "CNAME", "ANY", "PTR", "NS"])
def test_other_types_of_allowed_names_are_empty(rdtype: str):
    q = query("allowed.test", rdtype)
    assert not judge(q, POLICY, LOCAL).needs_lookup(q)
    reply = respond(q)
    assert reply.message.rcode() == dns.rcode.NOERROR
    assert reply.message.answer == []
    assert (reply.decision, reply.reason) == ("allow", None)


def test_allowed_a_and_aaaa():
    lookup = Lookup("allowed.test", Outcome.OK, ips("192.0.2.1", "192.0.2.2", "2001:db8::1"), 30.7)
    a = respond(query("Allowed.Test", "A"), lookup)
    assert addresses(a.message) == ["192.0.2.1", "192.0.2.2"]
    assert a.message.answer[0].ttl == 30
    assert a.message.answer[0].name.to_text() == "Allowed.Test."  # the owner as asked
    assert (a.decision, a.reason, a.answers) == ("allow", None, ("192.0.2.1", "192.0.2.2"))
    aaaa = respond(query("allowed.test", "AAAA"), lookup)
    assert addresses(aaaa.message) == ["2001:db8::1"]


def test_ttl_is_capped():
    lookup = Lookup("allowed.test", Outcome.OK, ips("192.0.2.1"), 3600)
    assert respond(query("allowed.test"), lookup, max_ttl=60).message.answer[0].ttl == 60


def test_header_flags():
    msg = dns.message.make_query("allowed.test", "A", use_edns=0)
    msg.id = 4242
    parsed = parse_query(msg.to_wire())
    assert isinstance(parsed, Query)
    reply = respond(parsed, Lookup("allowed.test", Outcome.OK, ips("192.0.2.1"), 30))
    out = dns.message.from_wire(encode(reply, udp=True))
    assert out.id == 4242
    assert out.flags & dns.flags.QR
    assert out.flags & dns.flags.RD
    assert out.flags & dns.flags.RA
    assert out.question == msg.question


def test_denied_addresses_are_filtered():
    lookup = Lookup("allowed.test", Outcome.OK, ips("10.0.0.6", "192.0.2.6", "::1"), 30)
    assert addresses(respond(query("allowed.test"), lookup).message) == ["192.0.2.6"]
    assert respond(query("allowed.test", "AAAA"), lookup).message.answer == []


@pytest.mark.parametrize(
    "address", ["10.0.0.5", "127.0.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0"]
)
def test_a_name_leading_only_to_denied_addresses_is_nxdomain(address: str):
    lookup = Lookup("allowed.test", Outcome.OK, ips(address), 30)
    reply = respond(query("allowed.test"), lookup)
    assert reply.message.rcode() == dns.rcode.NXDOMAIN
    assert ede_codes(reply.message) == [(15, "denied_address")]
    assert (reply.decision, reply.reason, reply.answers) == ("deny", Reason.DENIED_ADDRESS, ())


@pytest.mark.parametrize("address", ["::1", "::ffff:10.0.0.5", "fe80::1", "64:ff9b::a00:5"])
def test_denied_ipv6_forms(address: str):
    lookup = Lookup("allowed.test", Outcome.OK, ips(address), 30)
    assert respond(query("allowed.test", "AAAA"), lookup).message.rcode() == dns.rcode.NXDOMAIN


def test_allow_range_lets_a_private_answer_through():
    lookup = Lookup("allowed.test", Outcome.OK, ips("10.0.0.5"), 30)
    reply = respond(query("allowed.test"), lookup, policy=RANGES)
    assert reply.message.rcode() == dns.rcode.NOERROR
    assert addresses(reply.message) == ["10.0.0.5"]


def test_other_family_left_gives_empty_noerror():
    # Only the AAAA survives docs/proxy.md §4: the A question must not say NXDOMAIN, which would
    # hide the AAAA.
    lookup = Lookup("allowed.test", Outcome.OK, ips("10.0.0.5", "2001:db8::5"), 30)
    reply = respond(query("allowed.test", "A"), lookup)
    assert reply.message.rcode() == dns.rcode.NOERROR
    assert reply.message.answer == []
    assert reply.decision == "allow"


@pytest.mark.parametrize(
    ("outcome", "rcode"),
    [
        (Outcome.NXDOMAIN, dns.rcode.NXDOMAIN),
        (Outcome.NODATA, dns.rcode.NOERROR),
        (Outcome.TIMEOUT, dns.rcode.SERVFAIL),
        (Outcome.SERVFAIL, dns.rcode.SERVFAIL),
    ],
)
def test_upstream_failures(outcome: Outcome, rcode: dns.rcode.Rcode):
    reply = respond(query("allowed.test"), Lookup("allowed.test", outcome))
    assert reply.message.rcode() == rcode
    assert reply.message.answer == []
    assert (reply.decision, reply.reason) == ("allow", Reason.DNS_FAILURE)
    assert ede_codes(reply.message) == []


def test_missing_lookup_fails_closed():
    q = query("allowed.test")
    reply = answer(q, Verdict(True), None, address_allowed=POLICY.address_allowed, max_ttl=60)
    assert reply.message.rcode() == dns.rcode.SERVFAIL


def test_refuse_keeps_the_question():
    msg = dns.message.make_query("allowed.test", "A")
    reply = refuse(msg)
    assert reply.message.rcode() == dns.rcode.REFUSED
    assert reply.message.question == msg.question


# encode


def many() -> Lookup:
    return Lookup("allowed.test", Outcome.OK, ips(*(f"192.0.2.{i}" for i in range(1, 201))), 30)


@pytest.mark.parametrize(
    ("payload", "limit"), [(None, 512), (512, 512), (1232, 1232), (4096, 1232)]
)
def test_udp_answers_keep_what_fits_and_set_tc(payload: int | None, limit: int):
    if payload is None:
        msg = dns.message.make_query("allowed.test", "A")
    else:
        msg = dns.message.make_query("allowed.test", "A", use_edns=0, payload=payload)
    parsed = parse_query(msg.to_wire())
    assert isinstance(parsed, Query)
    reply = respond(parsed, many())
    wire = encode(reply, udp=True)
    assert limit - 16 < len(wire) <= limit  # one more A record (16 bytes) would not fit
    out = dns.message.from_wire(wire)
    assert out.flags & dns.flags.TC
    kept = addresses(out)
    assert 0 < len(kept) < 200
    assert set(kept) <= set(addresses(reply.message))  # dnspython shuffles records on the wire
    assert len(addresses(reply.message)) == 200  # the reply itself is left whole
    assert not reply.message.flags & dns.flags.TC


def test_small_udp_answers_are_whole():
    reply = respond(query("allowed.test"), Lookup("allowed.test", Outcome.OK, ips("192.0.2.1"), 9))
    out = dns.message.from_wire(encode(reply, udp=True))
    assert not out.flags & dns.flags.TC
    assert addresses(out) == ["192.0.2.1"]


def test_tcp_is_not_truncated():
    wire = encode(respond(query("allowed.test", edns=False), many()), udp=False)
    out = dns.message.from_wire(wire)
    assert not out.flags & dns.flags.TC
    assert len(addresses(out)) == 200


@given(st.sampled_from(["allowed.test", "notallowed.test", "blocked.allowed.test", "tls.test"]),
       st.sampled_from(["A", "AAAA", "TXT", "HTTPS"]), st.booleans(), st.booleans())
@settings(max_examples=100)
def test_denied_names_never_carry_addresses(name: str, rdtype: str, edns: bool, upper: bool):
    q = query(name.upper() if upper else name, rdtype, edns=edns)
    verdict = judge(q, POLICY, LOCAL)
    lookup = Lookup(name, Outcome.OK, ips("192.0.2.1", "2001:db8::1"), 30)
    reply = answer(
        q, verdict, lookup if verdict.needs_lookup(q) else None,
        address_allowed=POLICY.address_allowed, max_ttl=60,
    )
    if not verdict.allowed:
        assert reply.message.answer == []
        assert reply.message.rcode() == dns.rcode.NXDOMAIN
        assert ede_codes(reply.message) == ([(15, str(verdict.reason))] if edns else [])


# --- the exfiltration budget (issue 20) ------------------------------------------------------

PATTERNS = Policy.build(allow_domains=["*.cdn.test", "plain.test"])


def screened(name: str, budget: SubdomainBudget | None = None, *, max_len: int = 100,
             policy: Policy = POLICY, now: float = 0.0) -> Verdict | Reply:
    return screen(query(name), policy, LOCAL, max_name_length=max_len,
                  budget=budget or SubdomainBudget(100), now=now)


def test_defaults_are_100_and_100() -> None:
    assert DEFAULT_MAX_NAME_LENGTH == 100
    assert DEFAULT_SUBDOMAIN_BUDGET == 100


def test_a_240_character_subdomain_of_an_allowed_name_is_refused() -> None:
    name = ".".join(["d" * 59] * 4) + ".allowed.test"
    reply = screened(name)
    assert isinstance(reply, Reply)
    assert reply.message.rcode() == dns.rcode.REFUSED
    assert (reply.decision, reply.reason) == ("deny", Reason.NAME_TOO_LONG)


def test_name_length_limit_is_configurable_and_counts_without_the_final_dot() -> None:
    name = "a" * 50 + "." + "a" * 36 + ".allowed.test"  # exactly 100
    assert len(name) == 100
    assert isinstance(screened(name), Verdict)
    assert isinstance(screened("b" + name), Reply)
    assert isinstance(screened(name, max_len=99), Reply)
    assert isinstance(screened("b" + name, max_len=200), Verdict)


def test_a_label_over_63_is_refused_whatever_the_length_limit() -> None:
    # not sendable in wire form, so built from a parsed query whose text is replaced
    q = query("allowed.test")
    long_label = Query(q.message, "x" * 64 + ".allowed.test", q.qtype)
    assert name_too_long(long_label, 1000)
    assert not name_too_long(Query(q.message, "x" * 63 + ".allowed.test", q.qtype), 1000)


def test_denied_long_name_is_refused_too() -> None:
    reply = screened("x" * 60 + "." + "y" * 60 + ".denied.test", max_len=100)
    assert isinstance(reply, Reply)
    assert reply.reason == Reason.NAME_TOO_LONG


def test_budget_base_plain_entry_and_pattern() -> None:
    assert budget_base("allowed.test", POLICY) == "allowed.test"
    assert budget_base("a.b.allowed.test", POLICY) == "allowed.test"
    assert budget_base("x1.cdn.test", PATTERNS) == "cdn.test"
    assert budget_base("a.x2.cdn.test", PATTERNS) == "cdn.test"
    assert budget_base("q.plain.test", PATTERNS) == "plain.test"


def test_budget_counts_distinct_names_per_base_per_minute() -> None:
    b = SubdomainBudget(3)
    assert all(b.admit("allowed.test", f"s{i}.allowed.test", 10.0) for i in range(3))
    assert not b.admit("allowed.test", "s3.allowed.test", 20.0)
    assert b.admit("allowed.test", "s1.allowed.test", 20.0)  # already counted: free
    assert b.admit("other.test", "s3.other.test", 20.0)  # bases are separate
    assert not b.admit("allowed.test", "s3.allowed.test", 69.9)
    assert b.admit("allowed.test", "s3.allowed.test", 70.1)  # the first three aged out


def test_budget_forgets_the_oldest_base_past_its_cap() -> None:
    b = SubdomainBudget(1, max_bases=2)
    assert b.admit("a.test", "x.a.test", 0.0)
    assert b.admit("b.test", "x.b.test", 0.0)
    assert b.admit("c.test", "x.c.test", 0.0)  # a.test forgotten
    assert b.admit("a.test", "y.a.test", 0.0)


def test_screen_refuses_a_new_allowed_name_past_the_budget_and_logs_why() -> None:
    b = SubdomainBudget(2)
    assert isinstance(screened("one.allowed.test", b), Verdict)
    assert isinstance(screened("two.allowed.test", b), Verdict)
    reply = screened("three.allowed.test", b)
    assert isinstance(reply, Reply)
    assert reply.message.rcode() == dns.rcode.REFUSED
    assert reply.reason == Reason.DNS_BUDGET
    # denied names and local answers are not counted and not refused by the budget
    denied = screened("x.denied.test", b)
    assert isinstance(denied, Verdict)
    assert not denied.allowed
    assert isinstance(screened("awf-proxy", b), Verdict)


def test_pattern_subdomains_share_one_budget() -> None:
    b = SubdomainBudget(2)
    assert isinstance(screened("x1.cdn.test", b, policy=PATTERNS), Verdict)
    assert isinstance(screened("a.x2.cdn.test", b, policy=PATTERNS), Verdict)
    assert isinstance(screened("x3.cdn.test", b, policy=PATTERNS), Reply)


def test_budget_flags_parse_and_default() -> None:
    cfg = parse_argv([])
    assert (cfg.dns_max_name_length, cfg.dns_subdomain_budget) == (100, 100)
    cfg = parse_argv(["--dns-max-name-length", "80", "--dns-subdomain-budget", "5"])
    assert (cfg.dns_max_name_length, cfg.dns_subdomain_budget) == (80, 5)
    with pytest.raises(ConfigError, match="--dns-subdomain-budget"):
        parse_argv(["--dns-subdomain-budget", "0"])
