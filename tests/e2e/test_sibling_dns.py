"""Issue 20: --enable-docker siblings resolve names through the proxy's DNS forwarder.

With NetworkMode=container: the engine gave a sibling the keeper's resolv.conf, which names
Docker's 127.0.0.11, and the agent's rules refuse that: siblings could not resolve any name.
The guard now binds the run's resolv.conf (the forwarder) into every sibling.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.e2e.test_docker_run import POLICY, assert_no_leftovers, awf_argv
from tests.support import wan as wanmod
from tests.support.needs import need_docker, need_root

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

Outcome = tuple[dict[str, str], list[dict[str, object]]]  # the probes' results, dns.jsonl

SCRIPT = r'''
sib() { docker run --rm --entrypoint= awf-agent:latest "$@"; }
echo "allowed=$(sib getent ahostsv4 allowed.test | awk '{print $1}' | sort -u | tr '\n' ' ')"
sib getent hosts nope.other.test >/dev/null; echo "denied_rc=$?"
echo "resolv=$(sib grep nameserver /etc/resolv.conf | tr '\n' ';')"
echo "agent_resolv=$(grep nameserver /etc/resolv.conf | tr '\n' ';')"
echo "done=1"
'''


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    need_docker()
    need_root()
    logs = tmp_path_factory.mktemp("logs")
    done = subprocess.run(awf_argv(*POLICY, "--enable-docker", "--proxy-logs-dir", str(logs),
                                   "--", SCRIPT),
                          capture_output=True, text=True, timeout=300, check=False)
    results = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert results.get("done") == "1", done.stdout + done.stderr[-3000:]
    dns_log = logs / "dns.jsonl"
    records = ([json.loads(ln) for ln in dns_log.read_text().splitlines() if ln.strip()]
               if dns_log.exists() else [])
    return results, records


def test_sibling_resolves_an_allowed_name_through_the_forwarder(
        outcome: Outcome) -> None:
    results, records = outcome
    assert results["allowed"].split() == [wanmod.V4], results
    assert any(r["qname"] == "allowed.test" and r["decision"] == "allow" for r in records)


def test_sibling_does_not_resolve_a_denied_name(
        outcome: Outcome) -> None:
    results, records = outcome
    assert results["denied_rc"] != "0", results
    assert any(r["qname"] == "nope.other.test" and r["decision"] == "deny" for r in records)


def test_sibling_has_the_agents_resolv_conf(
        outcome: Outcome) -> None:
    results, _ = outcome
    assert results["resolv"] == results["agent_resolv"]
    assert "127.0.0.11" not in results["resolv"]


def test_no_leftovers(outcome: Outcome) -> None:
    assert_no_leftovers()
