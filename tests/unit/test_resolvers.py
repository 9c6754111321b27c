"""containers.resolvers (issue 19): which resolvers the Docker proxy asks, and the probe."""

from __future__ import annotations

import socket
import threading
from ipaddress import ip_address

import pytest

from containers import resolvers
from containers.errors import DockerError
from proxy.errors import ConfigError

IP = ip_address


@pytest.mark.parametrize(("text", "want"), [
    ("nameserver 10.255.255.53\n", ["10.255.255.53"]),  # a cloud VPC resolver: private
    ("nameserver 168.63.129.16\n", ["168.63.129.16"]),
    ("nameserver 169.254.169.253\n", ["169.254.169.253"]),
    ("# c\nsearch x\nnameserver 10.0.0.2 # x\nnameserver 10.0.0.2\nnameserver 1.1.1.1\n",
     ["10.0.0.2", "1.1.1.1"]),
    ("nameserver 127.0.0.1\nnameserver 10.0.0.2\n", ["10.0.0.2"]),
    ("nameserver fe80::1%eth0\n", ["fe80::1"]),
])
def test_host_resolvers(text: str, want: list[str]) -> None:
    assert resolvers.host_resolvers(text) == tuple(IP(w) for w in want)


def test_systemd_stub_uses_its_upstreams() -> None:
    got = resolvers.host_resolvers("nameserver 127.0.0.53\noptions edns0\n",
                                   "nameserver 10.0.0.2\nnameserver 127.0.0.1\n")
    assert got == (IP("10.0.0.2"),)


@pytest.mark.parametrize(("text", "systemd"), [
    ("nameserver 127.0.0.53\n", None), ("nameserver 127.0.0.53\n", "nameserver 127.0.0.1\n"),
    ("search x\n", None)])
def test_no_reachable_resolver_is_one_clear_error(text: str, systemd: str | None) -> None:
    with pytest.raises(DockerError, match="--dns-servers"):
        resolvers.host_resolvers(text, systemd)


def test_for_proxy() -> None:
    host = (IP("10.0.0.2"), IP("fd00::53"))
    assert resolvers.for_proxy(None, host=host) == ((IP("10.0.0.2"),),
                                                    ("--dns-servers", "10.0.0.2"))
    assert resolvers.for_proxy(None, host=host, ipv6_egress=True)[0] == host
    assert resolvers.for_proxy([("10.9.9.9", 53), ("[fd00::1]", 53)], host=host) == (
        (IP("10.9.9.9"), IP("fd00::1")), ())
    with pytest.raises(ConfigError, match="port 53 only"):
        resolvers.for_proxy([("10.9.9.9", 5353)], host=host)
    with pytest.raises(DockerError, match="IPv6"):
        resolvers.for_proxy(None, host=(IP("fd00::53"),))
    assert resolvers.probe_entries(host) == ["10.0.0.2:53", "[fd00::53]:53"]


def test_probe_names_the_dead_one() -> None:
    live = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    live.bind(("127.0.0.1", 0))
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    dead.bind(("127.0.0.1", 0))

    def answer() -> None:
        data, addr = live.recvfrom(512)
        live.sendto(data[:2] + b"\x81\x05" + data[4:], addr)  # REFUSED is still an answer

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    servers = [(IP("127.0.0.1"), live.getsockname()[1]), (IP("127.0.0.1"), dead.getsockname()[1])]
    try:
        assert resolvers.probe(servers, timeout=1.0) == (servers[1],)
    finally:
        live.close()
        dead.close()
    msg = resolvers.dead_resolvers_message([(IP("10.0.0.2"), 53)])
    assert "10.0.0.2" in msg
    assert "--dns-servers" in msg
    assert "\n" not in msg


def test_hosts_file_for_proxy(tmp_path, monkeypatch) -> None:
    from pathlib import Path

    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.7 box.test\n")
    assert resolvers.hosts_file_for_proxy(Path("/etc/hosts"), named=False) == (
        str(Path("/etc/hosts").resolve()), ("--hosts-file", resolvers.PROXY_HOSTS))
    assert resolvers.hosts_file_for_proxy(hosts, named=True) == (
        str(hosts), ("--hosts-file", resolvers.PROXY_HOSTS))
    monkeypatch.chdir(tmp_path)
    assert resolvers.hosts_file_for_proxy(Path("hosts"), named=True)[0] == str(hosts)
    assert resolvers.hosts_file_for_proxy(None, named=True) == (None, ("--hosts-file", ""))
    assert resolvers.hosts_file_for_proxy(tmp_path / "no", named=False) == (
        None, ("--hosts-file", ""))
    with pytest.raises(ConfigError, match="--hosts-file"):
        resolvers.hosts_file_for_proxy(tmp_path / "no", named=True)
