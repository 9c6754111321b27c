"""awf-proxy reads the hosts file like the system resolver: before DNS, after --resolve, with the
same address checks as DNS answers, and again on SIGHUP (docs/proxy.md §4)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.support.client import get, roundtrip
from tests.support.origins import http_origin
from tests.support.proxyproc import running_proxy

pytestmark = pytest.mark.integration

# DNS that never answers: a name the hosts file does not hold fails, it never reaches a resolver
NO_DNS = ("--dns-servers", "127.0.0.1:9")


async def test_a_name_from_the_hosts_file_is_reached(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 origin.test\n")
    async with http_origin() as o, running_proxy("--hosts-file", str(hosts), *NO_DNS,
                             "--allow-domains", "origin.test,absent.test",
                             "--allow-range", "127.0.0.1/32",
                             "--allow-ports", str(o.port), "--log-dir", str(tmp_path)) as p:
        resp = await roundtrip(p.port, get(f"http://origin.test:{o.port}/small"))
        assert resp.status == 200
        resp = await roundtrip(p.port, get(f"http://absent.test:{o.port}/small"))
        assert (resp.status, resp.reason) == (502, "dns_failure")
    records = [json.loads(x) for x in (tmp_path / "access.jsonl").read_text().splitlines()]
    assert [(r["host"], r["status"]) for r in records] == [("origin.test", 200),
                                                          ("absent.test", 502)]


async def test_a_loopback_answer_from_the_hosts_file_is_denied_address(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 origin.test\n")
    async with http_origin() as o, running_proxy("--hosts-file", str(hosts), *NO_DNS,
                             "--allow-domains", "origin.test",
                             "--allow-ports", str(o.port)) as p:
        resp = await roundtrip(p.port, get(f"http://origin.test:{o.port}/small"))
        assert (resp.status, resp.reason) == (403, "denied_address")
        assert not o.seen


async def test_resolve_wins_over_the_hosts_file(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.1 origin.test\n")  # TEST-NET: would never answer
    async with http_origin() as o, running_proxy("--hosts-file", str(hosts), *NO_DNS,
                             "--resolve", "origin.test=127.0.0.1",
                             "--allow-domains", "origin.test",
                             "--allow-range", "127.0.0.1/32",
                             "--allow-ports", str(o.port)) as p:
        resp = await roundtrip(p.port, get(f"http://origin.test:{o.port}/small"))
        assert resp.status == 200


async def test_sighup_rereads_the_hosts_file(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("# nothing yet\n")
    async with http_origin() as o, running_proxy("--hosts-file", str(hosts), *NO_DNS,
                             "--allow-domains", "origin.test",
                             "--allow-range", "127.0.0.1/32",
                             "--allow-ports", str(o.port)) as p:
        resp = await roundtrip(p.port, get(f"http://origin.test:{o.port}/small"))
        assert (resp.status, resp.reason) == (502, "dns_failure")
        hosts.write_text("127.0.0.1 origin.test\n")
        p.signal(signal.SIGHUP)
        await p.wait_stderr("policy reloaded")
        resp = await roundtrip(p.port, get(f"http://origin.test:{o.port}/small"))
        assert resp.status == 200


async def test_a_named_hosts_file_that_is_missing_is_exit_2(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"exited 2 .*--hosts-file: no file"):
        async with running_proxy("--hosts-file", str(tmp_path / "missing")):
            pass
