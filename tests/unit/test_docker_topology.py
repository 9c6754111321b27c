"""The Docker backend's pure parts: subnet choice, addresses, rulesets, env, mounts, argv."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

import pytest

from awf.config import parse_run
from awf.run import proxy_argv, resolv_conf
from containers import agentenv, topology
from netfilter import netns
from netfilter.errors import SandboxError
from proxy.errors import ConfigError


def test_default_subnets_and_fixed_addresses() -> None:
    s = topology.choose_subnets([])
    assert s.v4 == IPv4Network("172.30.0.0/24")
    assert s.v6 == IPv6Network("fd61:7766::/64")
    assert str(s.proxy_v4) == "172.30.0.10"
    assert str(s.keeper_v4) == "172.30.0.20"
    assert str(s.proxy_v6) == "fd61:7766::10"
    assert str(s.keeper_v6) == "fd61:7766::20"
    assert not s.ext_v4.overlaps(s.v4)


def test_a_taken_subnet_falls_back_to_the_pool() -> None:
    s = topology.choose_subnets([IPv4Network("172.30.0.0/16")])
    assert s.v4 == IPv4Network("10.213.0.0/24")
    assert s.v6 == IPv6Network("fd61:7766:0:0::/64")
    assert s.ext_v4 == IPv4Network("10.213.1.0/24")


def test_pool_entries_pair_v4_and_v6() -> None:
    pairs = list(topology.pool_candidates())
    assert pairs[5] == (IPv4Network("10.213.5.0/24"), IPv6Network("fd61:7766:0:5::/64"))
    assert len(pairs) == 256


def test_taken_pool_entries_are_skipped() -> None:
    taken = [IPv4Network("172.30.0.0/24"), IPv4Network("10.213.0.0/23")]
    s = topology.choose_subnets(taken)
    assert s.v4 == IPv4Network("10.213.2.0/24")
    assert s.v6 == IPv6Network("fd61:7766:0:2::/64")
    assert s.ext_v4 == IPv4Network("10.213.3.0/24")


def test_a_retry_skips_free_candidates_but_never_past_the_last_pair() -> None:
    s = topology.choose_subnets([], skip=4)
    assert s.v4 == IPv4Network("10.213.3.0/24")  # 172.30.0.0/24, then 10.213.0-2 skipped
    assert not s.ext_v4.overlaps(s.v4)
    taken = [IPv4Network("10.213.0.0/17"), IPv4Network("10.213.128.0/18"),
             IPv4Network("10.213.192.0/19"), IPv4Network("10.213.224.0/20")]
    s = topology.choose_subnets(taken, skip=20)  # 17 free: clamped to the last two
    assert s.v4 == IPv4Network("10.213.254.0/24")
    assert s.ext_v4 == IPv4Network("10.213.255.0/24")


def test_a_taken_v6_moves_both() -> None:
    s = topology.choose_subnets([IPv6Network("fd61:7766::/64")])
    assert s.v4 == IPv4Network("10.213.1.0/24")
    assert s.v6 == IPv6Network("fd61:7766:0:1::/64")


def test_nothing_free_is_a_firewall_error() -> None:
    with pytest.raises(SandboxError, match="no free subnet"):
        topology.choose_subnets([IPv4Network("0.0.0.0/1"), IPv4Network("128.0.0.0/1")])


def test_ipv6_off() -> None:
    s = topology.choose_subnets([], ipv6=False)
    assert s.v6 is None
    assert s.proxy_v6 is None
    rs = topology.agent_ruleset(s, frozenset({80, 443}))
    assert rs.proxy_v6 is None


def test_explicit_subnet() -> None:
    want = topology.parse_subnet("--subnet", "192.168.77.0/24", topology.DEFAULT_V4, 24)
    s = topology.choose_subnets([], want_v4=want)  # type: ignore[arg-type]
    assert str(s.proxy_v4) == "192.168.77.10"


@pytest.mark.parametrize("text", ["nope", "10.0.0.0/25", "10.0.0.1/24"])
def test_bad_subnet_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="--subnet"):
        topology.parse_subnet("--subnet", text, topology.DEFAULT_V4, 24)


def test_rulesets_and_listeners() -> None:
    s = topology.choose_subnets([])
    ports = topology.tcp_ports([8080])
    proxy = topology.proxy_ruleset(s, ports)
    assert proxy.table == "awf_proxy"
    assert proxy.restrict_output
    assert proxy.agent_ifname is None
    assert proxy.agent_net_v4 == s.v4
    agent = topology.agent_ruleset(s, ports)
    assert agent.docker_dns
    assert agent.tcp_ports == frozenset({80, 443, 8080})
    args = proxy_argv(s.proxy_addrs, parse_run(["--", "true"]), "/logs")
    assert args[:4] == ["--listen", "172.30.0.10:3128", "--listen", "[fd61:7766::10]:3128"]
    assert "0.0.0.0" not in " ".join(args)
    assert resolv_conf(s.proxy_addrs).startswith("nameserver 172.30.0.10\nnameserver fd61:7766::10")


def test_env_layers_and_never_passed() -> None:
    caller = {"LANG": "C", "MY": "x", "GITHUB_TOKEN": "t", "HTTP_PROXY": "evil", "LD_PRELOAD": "a",
              "LC_ALL": "C", "SUDO_USER": "me", "OTEL_EXPORTER_OTLP_HEADERS": "secret"}
    env = dict(agentenv.agent_env(caller, proxy_url="http://p:3128", no_proxy="localhost",
                                  home="/root", env_all=False, exclude=(), env_file=(),
                                  explicit=(("MY", "flag"),)))
    assert env["LANG"] == "C"
    assert env["LC_ALL"] == "C"
    assert env["MY"] == "flag"
    assert env["HTTP_PROXY"] == env["https_proxy"] == "http://p:3128"
    assert "GITHUB_TOKEN" not in env
    assert "LD_PRELOAD" not in env
    assert "SUDO_USER" not in env
    every = dict(agentenv.agent_env(caller, proxy_url=None, no_proxy="", home="/root",
                                    env_all=True, exclude=("MY",), env_file=(), explicit=()))
    assert "MY" not in every
    assert "GITHUB_TOKEN" not in every
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in every
    assert "HTTP_PROXY" not in every


def test_env_file() -> None:
    assert agentenv.parse_env_file("# c\n\nA=1\nB= two = 2\n", "f") == [("A", "1"),
                                                                       ("B", " two = 2")]
    with pytest.raises(ConfigError, match="line 1"):
        agentenv.parse_env_file("not a pair\n", "f")


def test_volumes(tmp_path: Path) -> None:
    v = agentenv.parse_volume(f"{tmp_path}:/work", environ={})
    assert (v.source, v.target, v.read_only) == (str(tmp_path.resolve()), "/work", False)
    v = agentenv.parse_volume("$D:/data:ro", environ={"D": str(tmp_path)})
    assert v.read_only
    for bad in (f"{tmp_path}:/proc/x", f"{tmp_path}:relative", "/:/host", f"{tmp_path}/no:/x",
                "$UNSET:/x", "a", f"{tmp_path}:/x:rx"):
        with pytest.raises(ConfigError):
            agentenv.parse_volume(bad, environ={})
    with pytest.raises(ConfigError, match="awf's own"):
        agentenv.parse_volume(f"{tmp_path}:/x", environ={}, forbidden=[str(tmp_path / "w")])


def test_command_argv() -> None:
    assert agentenv.command_argv(["echo $HOME"]) == ("bash", "-c", "echo $HOME")
    assert agentenv.command_argv(["echo", "$HOME"]) == ("echo", "$HOME")


def test_docker_flags_parse() -> None:
    cfg = parse_run(["--subnet", "10.9.9.0/24", "-v", "/tmp:/t", "--keep-containers",
                     "--exclude-env", "X", "--env-all", "--", "true"])
    assert cfg.backend == "docker"
    assert cfg.subnet == "10.9.9.0/24"
    assert cfg.volumes == ("/tmp:/t",)
    assert cfg.keep_containers
    assert cfg.env_all
    assert cfg.exclude_env == ("X",)
    with pytest.raises(ConfigError):
        parse_run(["--exclude-env", "1bad", "--", "true"])


def test_command_path_github_path_first_latest_first_then_host_then_default() -> None:
    got = agentenv.command_path("/usr/bin:/h/bin::rel:/usr/bin", "/a/bin\n\n /b/bin \n")
    assert got[:3] == ["/b/bin", "/a/bin", "/usr/bin"]
    assert got[3] == "/h/bin"
    assert "rel" not in got
    assert got[-1] == "/bin"
    assert len(got) == len(set(got))


def test_ca_variables_pass_only_when_their_file_is_visible() -> None:
    caller = {n: f"/seen/{n}" for n in agentenv.CA_VARS} | {"SSL_CERT_FILE": "/tmp/hidden.pem"}
    env = dict(agentenv.agent_env(caller, proxy_url=None, no_proxy="", home="/h",
                                  env_all=False, exclude=[], env_file=[], explicit=[],
                                  path="/x/bin:/usr/bin",
                                  visible=lambda p: p.startswith("/seen/")))
    assert env["PATH"] == "/x/bin:/usr/bin"
    assert env["NODE_EXTRA_CA_CERTS"] == "/seen/NODE_EXTRA_CA_CERTS"
    assert "SSL_CERT_FILE" not in env
    env = dict(agentenv.agent_env(caller, proxy_url=None, no_proxy="", home="/h",
                                  env_all=False, exclude=["PIP_CERT"], env_file=[],
                                  explicit=[], visible=lambda p: True))
    assert "PIP_CERT" not in env
    assert env["PATH"] == agentenv.with_home_tools(agentenv.AGENT_PATH, "/h")


def test_topology_attach_ranges_are_the_subnet_less_its_gateway() -> None:
    from ipaddress import ip_address, ip_network

    from containers.runspecs import attach_ranges
    from proxy.errors import ConfigError

    info: dict[str, object] = {"Name": "mcpg", "Driver": "bridge", "Labels": {},
            "IPAM": {"Config": [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"},
                                {"Subnet": "fd00:1::/64"}]}}
    got = attach_ranges("mcpg", info)
    assert not any(ip_address("172.18.0.1") in n for n in got)
    assert any(ip_address("172.18.0.2") in n for n in got)
    assert any(ip_address("172.18.255.254") in n for n in got)
    assert ip_network("fd00:1::/64") in got
    for bad in ({**info, "Driver": "host"}, {**info, "Driver": "null"},
                {**info, "Labels": {"io.awf.run": "ab12cd34"}},
                {**info, "IPAM": {"Config": []}},
                {**info, "IPAM": {"Config": [{"Subnet": "8.8.8.0/24"}]}}):
        with pytest.raises(ConfigError):
            attach_ranges("mcpg", bad)


def test_share_home_resolved_under_the_home_or_exit_2(tmp_path: Path) -> None:
    from awf.backends.docker import _share_home

    home = tmp_path / "home"
    (home / ".m2").mkdir(parents=True)
    (home / ".ssh").mkdir()
    (home / "link").symlink_to("/etc")
    environ = {"HOME": str(home)}
    cfg = parse_run(["--share-home", str(home / ".m2"), "--share-home", ".m2", "--", "true"])
    assert _share_home(cfg, environ) == (str(home / ".m2"), str(home / ".m2"))
    for bad in (str(home / ".ssh"), str(home / "link"), str(home / "missing"), str(home), "/etc"):
        with pytest.raises(ConfigError) as exc:
            _share_home(parse_run(["--share-home", bad, "--", "true"]), environ)
        assert exc.value.exit_code == 2


# -- IPv6 egress (issue 19, item 4) ---------------------------------------------------------------


def test_ext_is_dual_stack_when_the_host_has_ipv6_egress() -> None:
    s = topology.choose_subnets([], ext_ipv6=True)
    assert s.ext_v4 == IPv4Network("10.213.0.0/24")
    assert s.ext_v6 == IPv6Network("fd61:7766:2:0::/64")  # pool /24 N pairs with 2:N::/64
    assert str(s.ext_gateway_v6) == "fd61:7766:2::1"
    assert not s.ext_v6.overlaps(s.v6)  # type: ignore[arg-type]
    s = topology.choose_subnets([IPv4Network("172.30.0.0/16")], ext_ipv6=True)
    assert (s.v4, s.ext_v4) == (IPv4Network("10.213.0.0/24"), IPv4Network("10.213.1.0/24"))
    assert s.ext_v6 == IPv6Network("fd61:7766:2:1::/64")


def test_ext_without_host_ipv6_is_ipv4_only() -> None:
    s = topology.choose_subnets([])
    assert s.ext_v6 is None
    assert s.ext_gateway_v6 is None
    s = topology.choose_subnets([], ipv6=False, ext_ipv6=True)  # --ipv6 off inside, host has
    assert s.v6 is None
    assert s.ext_v6 == IPv6Network("fd61:7766:2:0::/64")


def test_a_taken_ext_v6_moves_ext_to_the_next_free_pair() -> None:
    taken = [IPv6Network("fd61:7766:2:0::/64"), IPv6Network("fd61:7766:2:1::/64")]
    s = topology.choose_subnets(taken, ext_ipv6=True)
    assert s.v4 == IPv4Network("172.30.0.0/24")  # -int does not care about -ext's /64s
    assert s.ext_v4 == IPv4Network("10.213.2.0/24")
    assert s.ext_v6 == IPv6Network("fd61:7766:2:2::/64")
    s = topology.choose_subnets(taken, ext_ipv6=False)
    assert s.ext_v4 == IPv4Network("10.213.0.0/24")


def test_ext_v6_twin_of_a_non_pool_subnet_is_never_a_pool_twin() -> None:
    assert topology.ext_v6_for(IPv4Network("10.213.255.0/24")) == IPv6Network(
        "fd61:7766:2:ff::/64")
    other = topology.ext_v6_for(IPv4Network("172.30.0.0/24"))
    assert other == IPv6Network("fd61:7766:2:100::/64")
    assert all(not other.overlaps(topology.ext_v6_for(v4))
               for v4, _ in topology.pool_candidates())
    s = topology.choose_subnets([], want_v6=IPv6Network("fd61:7766::/46"),  # every twin
                                ext_ipv6=True)
    assert s.ext_v6 is None  # IPv4-only egress rather than no run
    assert s.ext_v4 == IPv4Network("10.213.0.0/24")
    s = topology.choose_subnets([IPv4Network("172.30.0.0/24")], skip=2, ext_ipv6=True)
    assert s.v4 == IPv4Network("10.213.2.0/24")  # a retry: -ext may take any later /24
    assert s.ext_v6 == topology.ext_v6_for(s.ext_v4)


@pytest.mark.parametrize(("routes", "has"), [
    (["fd00::/64", "fe80::/64", "::/0"], True),  # a ULA default route (this machine's)
    (["2001:db8:100::/64", "fe80::/64"], True),  # a global route, no default (a test wan)
    (["fe80::/64"], False),  # link-local only
    (["fd00::/64", "fe80::/64", "fd61:7766::/64"], False),  # ULA only: denied anyway
    ([], False),  # IPv6 off
])
def test_host_has_ipv6(routes: list[str], has: bool) -> None:
    assert topology.host_has_ipv6([IPv6Network(r) for r in routes]) is has


def test_the_proxy_egress_allows_public_ipv6_and_refuses_ext_v6() -> None:
    """The proxy's `output` chain (netfilter/ruleset.py) treats IPv6 as IPv4: public addresses
    on the allowed ports, never a denied range, so not -ext's own ULA /64 (the host's address
    on it included: --enable-host-access opens the IPv4 gateway only)."""
    from netfilter.ruleset import denied_egress

    s = topology.choose_subnets([], ext_ipv6=True)
    rules = topology.proxy_ruleset(s, topology.tcp_ports([])).render()
    _, denied6 = denied_egress(())
    assert any(s.ext_v6.subnet_of(n) for n in denied6)  # type: ignore[union-attr]
    assert not any(IPv6Network("2001:db8:100::10/128").subnet_of(n) for n in denied6)
    assert "meta l4proto tcp th dport { 80, 443 } accept" in rules  # no family: v4 and v6


def test_ext_v6_stays_out_of_the_netns_backends_pool() -> None:
    """A Docker run's -ext /64 inside the netns pool's first /64 blocked every netns run."""
    netns_pool = IPv6Network(netns.POOL_V6)
    for n in (0, 1, 255):
        assert not topology.ext_v6_for(IPv4Network(f"10.213.{n}.0/24")).overlaps(netns_pool)
    assert not topology.ext_v6_for(IPv4Network("192.168.7.0/24")).overlaps(netns_pool)
