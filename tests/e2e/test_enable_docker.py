"""`awf run --enable-docker` end to end: the command's own containers, made through the guard,
live behind the same proxy and rules as the command, and cannot escape (finding M3)."""

from __future__ import annotations

import pytest

from tests.e2e.test_docker_run import POLICY, assert_no_leftovers, awf
from tests.support import wan as wanmod

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

SCRIPT = r'''
img=awf-agent:latest
sib() { docker run --rm --entrypoint= "$img" "$@"; }
echo "allowed=$(sib curl -sS -m 8 -x "$HTTP_PROXY" http://allowed.test/)"
echo "denied=$(sib curl -sS -m 8 -o /dev/null -w '%{http_code}' -x "$HTTP_PROXY" http://other.test/)"
echo "literal=$(sib curl -sS -m 8 -o /dev/null -w '%{http_code}' --noproxy '*' http://V4/)"
sib nc -z -w 3 V4 22; echo "tcp22=$?"
docker run --rm --network host --entrypoint= "$img" true 2>/dev/null; echo "host_net=$?"
docker run --rm --privileged --entrypoint= "$img" true 2>/dev/null; echo "privileged=$?"
docker run --rm -v /:/h --entrypoint= "$img" true 2>/dev/null; echo "root_bind=$?"
docker run --rm --pid host --entrypoint= "$img" true 2>/dev/null; echo "host_pid=$?"
docker run --rm --cap-add NET_ADMIN --entrypoint= "$img" true 2>/dev/null; echo "cap_add=$?"
docker ps -a --format '{{.Names}}' | grep -c awf- ; echo "listed_done=1"
'''


@pytest.fixture(scope="module")
def results(wan: wanmod.Wan) -> dict[str, str]:
    done = awf(*POLICY, "--enable-docker", "--", SCRIPT.replace("V4", wanmod.V4), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert got.get("listed_done") == "1", done.stdout + done.stderr[-2000:]
    return got


def test_sibling_reaches_an_allowed_name_through_the_proxy(results: dict[str, str]) -> None:
    assert results["allowed"] == "hello allowed.test"


@pytest.mark.parametrize("name", ["denied", "literal"])
def test_sibling_is_denied_like_the_agent(results: dict[str, str], name: str) -> None:
    assert results[name] == "403"


def test_sibling_cannot_open_port_22(results: dict[str, str], wan: wanmod.Wan) -> None:
    assert results["tcp22"] != "0"
    assert wan.counts()["tcp22"] == 0


@pytest.mark.parametrize("name", ["host_net", "privileged", "root_bind", "host_pid", "cap_add"])
def test_escapes_through_the_socket_are_refused(results: dict[str, str], name: str) -> None:
    assert results[name] != "0"


def test_siblings_are_gone_after_the_run(results: dict[str, str]) -> None:
    assert_no_leftovers()


def test_without_the_flag_there_is_no_socket(wan: wanmod.Wan) -> None:
    done = awf(*POLICY, "--", "bash", "-c", "docker version >/dev/null 2>&1; echo rc=$?; "
               "ls /var/run/docker.sock /run/docker.sock 2>&1 | grep -c 'No such'")
    assert "rc=0" not in done.stdout
    assert done.stdout.split()[-1] == "2"
