"""Learn mode in the proxy's pure parts (issue 17): the policy allows every name but marks what
the allowlist would deny; the hard rules stay; the DNS forwarder and the access log record
`would_deny`; `--learn` parses."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import dns.rcode
import pytest

from proxy.access_log import Entry, learn_scheme_is_tls, would_deny_record
from proxy.config import build_policy, parse_argv
from proxy.dnsfwd import SubdomainBudget, answer, judge, screen
from proxy.policy import Policy, Scheme
from proxy.reasons import Reason
from proxy.resolver import Lookup, Outcome
from tests.unit.test_dnsfwd import query

HTTP, HTTPS = Scheme.HTTP, Scheme.HTTPS
LEARN = Policy.build(allow_domains=["allowed.test", "https://tls.test", "svc.test:8080"],
                     block_domains=["blocked.test"], allow_ports=[8443], learn=True)


def verdict(host: str, port: int = 443, scheme: Scheme = HTTPS) -> tuple[bool, str | None,
                                                                         str | None]:
    d = LEARN.decide(host, port, scheme)
    return d.allowed, d.reason, d.would_deny


@pytest.mark.parametrize(("host", "port", "scheme", "expected"), [
    ("allowed.test", 443, HTTPS, (True, None, None)),
    ("api.allowed.test", 80, HTTP, (True, None, None)),
    ("other.test", 443, HTTPS, (True, None, Reason.DOMAIN_NOT_ALLOWED)),
    ("other.test", 80, HTTP, (True, None, Reason.DOMAIN_NOT_ALLOWED)),
    ("other.test", 8443, HTTPS, (True, None, Reason.DOMAIN_NOT_ALLOWED)),  # --allow-ports
    ("tls.test", 80, HTTP, (True, None, Reason.SCHEME_DENIED)),
    # the hard rules stay
    ("other.test", 22, HTTPS, (False, Reason.PORT_DENIED, None)),
    ("other.test", 8080, HTTPS, (False, Reason.PORT_DENIED, None)),
    ("svc.test", 443, HTTPS, (False, Reason.PORT_DENIED, None)),  # scoped to 8080
    ("svc.test", 8080, HTTPS, (True, None, None)),
    ("blocked.test", 443, HTTPS, (False, Reason.DOMAIN_BLOCKED, None)),
    ("x.blocked.test", 80, HTTP, (False, Reason.DOMAIN_BLOCKED, None)),
    ("169.254.169.254", 80, HTTP, (False, Reason.IP_LITERAL, None)),
    ("203.0.113.7", 443, HTTPS, (False, Reason.IP_LITERAL, None)),
    ("[2001:db8::1]", 443, HTTPS, (False, Reason.IP_LITERAL, None)),
    ("awf-selftest.invalid", 443, HTTPS, (False, Reason.DOMAIN_NOT_ALLOWED, None)),
    ("localhost", 80, HTTP, (False, Reason.DOMAIN_NOT_ALLOWED, None)),  # one label
    ("bad_host!", 80, HTTP, (False, Reason.BAD_REQUEST, None)),
])
def test_learn_decisions(host: str, port: int, scheme: Scheme,
                         expected: tuple[bool, str | None, str | None]) -> None:
    assert verdict(host, port, scheme) == expected


def test_without_learn_nothing_changes() -> None:
    strict = Policy.build(allow_domains=["allowed.test"])
    d = strict.decide("other.test", 443, HTTPS)
    assert (d.allowed, d.reason, d.would_deny) == (False, Reason.DOMAIN_NOT_ALLOWED, None)
    assert not strict.allows_name("other.test")


def test_learn_addresses_stay_checked() -> None:
    for text in ("169.254.169.254", "127.0.0.1", "10.1.2.3", "fe80::1"):
        assert not LEARN.address_allowed(ipaddress.ip_address(text))
    assert LEARN.address_allowed(ipaddress.ip_address("93.184.216.34"))


def test_allows_name_in_learn_mode() -> None:
    assert LEARN.allows_name("anything.example")
    assert not LEARN.allows_name("blocked.test")
    assert not LEARN.allows_name("awf-selftest.invalid")
    assert not LEARN.allows_name("10.0.0.1")


def test_flag_and_config_key(tmp_path: Path) -> None:
    assert parse_argv(["--learn"]).learn is True
    assert parse_argv([]).learn is False
    cfg = tmp_path / "c.yaml"
    cfg.write_text("learn: true\nallow_domains: [a.test]\n")
    assert build_policy(parse_argv(["--config", str(cfg)])).learn is True


def test_dns_answers_learnt_names_and_marks_them() -> None:
    q = query("other.test")
    v = judge(q, LEARN, {})
    assert (v.allowed, v.would_deny) == (True, Reason.DOMAIN_NOT_ALLOWED)
    assert v.needs_lookup(q)
    ok = Lookup("other.test", Outcome.OK, (ipaddress.ip_address("93.184.216.34"),), 30)
    reply = answer(q, v, ok, address_allowed=LEARN.address_allowed, max_ttl=60)
    assert reply.message.rcode() == dns.rcode.NOERROR
    assert (reply.decision, reply.reason, reply.answers) == (
        "would_deny", Reason.DOMAIN_NOT_ALLOWED, ("93.184.216.34",))
    failed = Lookup("other.test", Outcome.NXDOMAIN, (), 0)
    reply = answer(q, v, failed, address_allowed=LEARN.address_allowed, max_ttl=60)
    assert (reply.decision, reply.reason, reply.failure) == (
        "would_deny", Reason.DOMAIN_NOT_ALLOWED, Reason.DNS_FAILURE)
    meta = Lookup("other.test", Outcome.OK, (ipaddress.ip_address("169.254.169.254"),), 30)
    reply = answer(q, v, meta, address_allowed=LEARN.address_allowed, max_ttl=60)
    assert (reply.decision, reply.reason) == ("deny", Reason.DENIED_ADDRESS)


def test_dns_hard_rules_in_learn_mode() -> None:
    for name, reason in (("blocked.test", Reason.DOMAIN_BLOCKED),
                         ("10.0.0.5", Reason.IP_LITERAL),
                         ("awf-selftest.invalid", Reason.DOMAIN_NOT_ALLOWED)):
        v = judge(query(name), LEARN, {})
        assert (v.allowed, v.reason) == (False, reason)


def test_dns_learnt_names_share_a_budget_by_their_last_two_labels() -> None:
    budget = SubdomainBudget(2)
    out = [screen(query(f"n{i}.other.test"), LEARN, {}, max_name_length=100, budget=budget,
                  now=0.0) for i in range(3)]
    assert [getattr(o, "allowed", False) for o in out] == [True, True, False]
    assert screen(query("a.allowed.test"), LEARN, {}, max_name_length=100, budget=budget,
                  now=0.0).allowed  # type: ignore[union-attr]


def test_would_deny_record() -> None:
    e = Entry(1.0, 2.0, "10.0.0.2:5000", "explicit", "GET", "other.test", 80,
              "http://other.test/", "allow", None, 200, 10, 20)
    assert not learn_scheme_is_tls(e)
    rec = would_deny_record(e, Reason.DOMAIN_NOT_ALLOWED)
    assert (rec["decision"], rec["reason"], rec["bytes_up"]) == (
        "would_deny", "domain_not_allowed", 10)
    assert "failure" not in rec
    failed = {"method": "CONNECT", "host": "x.test", "port": 443, "decision": "allow",
              "reason": "dns_failure"}
    assert learn_scheme_is_tls(failed)
    rec = would_deny_record(failed, Reason.DOMAIN_NOT_ALLOWED)
    assert (rec["decision"], rec["reason"], rec["failure"]) == (
        "would_deny", "domain_not_allowed", "dns_failure")


def test_awf_logs_shows_a_learnt_dns_answer_as_would_deny() -> None:
    from awf.logs.format import pretty

    line = pretty({"ts": "2026-12-06T14:00:00.000Z", "qname": "x.test", "qtype": "A",
                   "decision": "would_deny", "reason": "domain_not_allowed", "rcode": "NOERROR"})
    assert line.split()[1] == "WOULD-DENY", line


def test_learn_is_refused_with_url_rules() -> None:
    from proxy.errors import ConfigError

    with pytest.raises(ConfigError, match="--learn: not with --ssl-bump or --allow-urls"):
        build_policy(parse_argv(["--learn", "--allow-urls", "http://a.test/x"]))
