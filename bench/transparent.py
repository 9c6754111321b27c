"""Case (e): awf-proxy's transparent listener, fed by a real nftables redirect (needs root).

A client network namespace `awf-bench-<id>` is joined to the host by a veth (netfilter.netns, the
same plumbing as `awf run --backend netns`). In the HOST namespace, table `inet awf_bench_<id>`
(netfilter.ruleset.ProxySideRuleset, the netns backend's own host table) redirects the client's
TCP 80/443 to the proxy's `--transparent-listen` port on the host end of the veth, so the proxy
reads the original destination with SO_ORIGINAL_DST exactly as in a real run. The load generator
runs inside the namespace (`ip netns exec`) and dials 192.0.2.1:80/443 (TEST-NET-1, RFC 5737:
never routed; the table's forward chain drops anything the redirect does not take). The proxy
finds origin.test through `--resolve` at ORIGIN_ADDR, a loopback address where a second nginx
(the harness's origin config) listens on 80 and 443, since a transparent proxy dials the original
port.

Each case is measured against the same proxy, over the same veth, twice: as a redirected
connection, and as the explicit-proxy request that makes the proxy do the same work through its
`--listen` port (the baseline on this path). Case e sends a small plain GET (named by Host; as
an explicit proxy: an absolute-URI GET, a new connection each), case e1 a TLS handshake and the
GET (named by SNI, the tunnel path; as an explicit proxy: CONNECT + TLS). The harness also shows
its loopback cases (b) and (b1) beside them. Everything made here (namespace, veth,
table, the two processes) is removed on every path, Ctrl-C included, and is registered in
/run/awf/runs while alive so that `awf cleanup` leaves it alone (and removes it after a crash).
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from awf import leftovers
from bench import cases, origin, report
from bench.cases import CaseError, Env, Sample
from bench.origin import DENIED_NAME, ORIGIN_NAME
from bench.services import Service, ServiceError
from bench.stats import BenchParseError
from netfilter import apply as nft
from netfilter import netns
from netfilter.errors import SandboxError
from netfilter.ruleset import ProxySideRuleset
from proxy.errors import AwfError

T = TypeVar("T")

ORIGINAL_DST = "192.0.2.1"  # TEST-NET-1: reachable only through the redirect
ORIGIN_ADDR = "127.0.80.1"  # the case's origin: nginx on :80 and :443 (loopback, not 127.0.0.1)
REDIRECTED_PORTS = (80, 443)
PROBE_TIMEOUT = 5.0
MEASURE_ERRORS = (CaseError, ServiceError, BenchParseError, OSError, subprocess.TimeoutExpired)



@dataclass(frozen=True, slots=True)
class Params:
    env: Env
    awf_bin: Path
    proxy_cpu: int
    load_cpu: int
    reps: int
    duration: float
    warmup: float
    conns: int
    log: Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Variant:
    key: str  # "explicit" | "transparent"
    mode: str  # loadgen mode
    label: str


# Each transparent variant beside the explicit-proxy request that makes the proxy do the same
# work: a plain GET is forwarded as HTTP (upstream connections pooled) either way, a TLS
# connection is relayed byte for byte to a fresh upstream connection either way.
CASE_VARIANTS: dict[str, tuple[Variant, ...]] = {
    "e": (
        Variant("explicit", "get", "explicit absolute-URI GET, new connection, via the veth"),
        Variant("transparent", "transparent", "transparent: nft redirect, named by Host"),
    ),
    "e1": (
        Variant("explicit", "tunnel-tls", "explicit CONNECT + TLS via the veth"),
        Variant("transparent", "transparent-tls", "transparent: nft redirect, named by SNI"),
    ),
}


def skip_reason(awf_bin: Path) -> str | None:
    """Why case (e) cannot run here, or None."""
    if os.geteuid() != 0:
        return (
            "skipped: needs root (it makes a network namespace, a veth and an nft table in the "
            "host namespace); run the bench as root"
        )
    for tool in ("nft", "ip"):
        if shutil.which(tool) is None:
            return f"skipped: {tool!r} is not installed (make sysdeps installs it)"
    if not awf_bin.exists():
        return f"skipped: no awf-proxy at {str(awf_bin)!r}"
    return None


# ---------------------------------------------------------------------------------------------
# running code inside the client namespace


def in_netns(name: str, fn: Callable[[], T], timeout: float = 30.0) -> T:
    """Run fn in a short-lived thread that has joined network namespace `name`."""
    try:
        return netns.run_in(name, fn, timeout=timeout, what=f"a probe in namespace {name!r}")
    except SandboxError as exc:
        raise CaseError(str(exc)) from exc


def _read_status(sock: socket.socket | ssl.SSLSocket) -> int:
    buf = b""
    deadline = time.monotonic() + PROBE_TIMEOUT
    while b"\r\n\r\n" not in buf:
        if time.monotonic() > deadline or len(buf) > 65536:
            raise CaseError(f"no complete response head: {buf[:200]!r}")
        chunk = sock.recv(65536)
        if not chunk:
            raise CaseError(f"connection closed before a response head: {buf[:200]!r}")
        buf += chunk
    return cases.status_of(buf)


def _get(host: str) -> bytes:
    return f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()


def probe_plain(dst: str, host: str) -> int:
    with socket.create_connection((dst, 80), timeout=PROBE_TIMEOUT) as s:
        s.sendall(_get(host))
        return _read_status(s)


def probe_tls(dst: str, sni: str) -> int | str:
    """Status of a GET after a TLS handshake with this SNI, or "closed" if the proxy hung up."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((dst, 443), timeout=PROBE_TIMEOUT) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname=sni) as s:
                s.sendall(_get(sni))
                return _read_status(s)
        except (ssl.SSLError, ConnectionError, CaseError):
            return "closed"


def probe_connect(proxy: str, port: int, target: str) -> int:
    with socket.create_connection((proxy, port), timeout=PROBE_TIMEOUT) as s:
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        return _read_status(s)


def preflight(ns: str, host: str, explicit_port: int) -> list[dict[str, Any]]:
    """From inside the client namespace: the redirect reaches the proxy and its policy holds."""
    checks: list[tuple[str, Callable[[], int | str], int | str]] = [
        (f"GET {ORIGINAL_DST}:80 Host {ORIGIN_NAME}",
         lambda: probe_plain(ORIGINAL_DST, ORIGIN_NAME), 200),
        (f"GET {ORIGINAL_DST}:80 Host {DENIED_NAME}",
         lambda: probe_plain(ORIGINAL_DST, DENIED_NAME), 403),
        (f"TLS {ORIGINAL_DST}:443 SNI {ORIGIN_NAME}, GET",
         lambda: probe_tls(ORIGINAL_DST, ORIGIN_NAME), 200),
        (f"TLS {ORIGINAL_DST}:443 SNI {DENIED_NAME}",
         lambda: probe_tls(ORIGINAL_DST, DENIED_NAME), "closed"),
        (f"CONNECT {ORIGIN_NAME}:80 via {host}:{explicit_port}",
         lambda: probe_connect(host, explicit_port, f"{ORIGIN_NAME}:80"), 200),
    ]  # fmt: skip
    out = []
    for label, fn, expect in checks:
        try:
            got: int | str = in_netns(ns, fn)
        except (OSError, CaseError) as exc:
            got = f"error: {exc}"
        out.append({"probe": label, "expect": expect, "got": got, "ok": got == expect})
    return out


# ---------------------------------------------------------------------------------------------
# set-up and tear-down


def free_port_on(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """Let a clean-up finish even if Ctrl-C is pressed again (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def side_ruleset(
    table: str, link: netns.AgentLink, explicit_port: int, transparent_port: int, dns_port: int
) -> ProxySideRuleset:
    return ProxySideRuleset(
        table=table,
        agent_ifname=link.host_if,
        agent_net_v4=link.host_v4.network,
        agent_net_v6=None,
        redirect_tcp_ports=frozenset(REDIRECTED_PORTS),
        transparent_port=transparent_port,
        dns_port=dns_port,
        listen_ports=frozenset({explicit_port, transparent_port, dns_port}),
    )


def proxy_argv(
    p: Params, host: str, explicit_port: int, transparent_port: int, log_dir: Path
) -> list[str]:
    return [
        "taskset", "-c", str(p.proxy_cpu), str(p.awf_bin),
        "--listen", f"{host}:{explicit_port}",
        "--transparent-listen", f"{host}:{transparent_port}",
        "--allow-domains", ORIGIN_NAME,
        "--resolve", f"{ORIGIN_NAME}={ORIGIN_ADDR}",
        "--allow-range", f"{ORIGIN_ADDR}/32",
        "--log-dir", str(log_dir),
        "--max-connections", "4096",
    ]  # fmt: skip


def loadgen_argv(
    p: Params, ns: str, variant: Variant, host: str, explicit_port: int, port: int,
    duration: float, lat: Path,
) -> list[str]:
    """`port` is the origin port the client aims at: 80 (plain) or 443 (TLS)."""
    if variant.key == "transparent":  # straight at TEST-NET-1: only the redirect takes it
        dial, target = f"{ORIGINAL_DST}:{port}", ORIGIN_NAME
    else:
        dial, target = f"{host}:{explicit_port}", f"{ORIGIN_NAME}:{port}"
    return [
        "ip", "netns", "exec", ns, "taskset", "-c", str(p.load_cpu), str(p.env.loadgen),
        variant.mode, "--proxy", dial, "--target", target, "--path", "/small",
        "-c", str(p.conns), "-d", f"{duration:g}", "--lat-out", str(lat),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# the case


def run(p: Params) -> dict[str, Any]:
    """Measure cases e and e1. Returns {"cases": {"e": ..., "e1": ...}, "setup": {...}}; a
    set-up failure becomes the status of both cases."""
    env = p.env
    run_id = f"bench-{secrets.token_hex(2)}"  # netns awf-bench-XXXX, veth awf-bench-XXXXh
    table = f"awf_{run_id.replace('-', '_')}"  # inet awf_bench_XXXX
    setup: dict[str, Any] = {"netns": f"{netns.PREFIX}{run_id}", "table": f"inet {table}"}
    stack = ExitStack()
    try:
        for owner in (run_id, table.removeprefix("awf_")):  # how `awf cleanup` names them
            leftovers.register(owner)
            stack.callback(leftovers.unregister, owner)
        net4, _ = netns.choose_subnet(run_id)
        link = netns.AgentLink.for_run(run_id, net4, None)
        stack.callback(netns.destroy, link)
        netns.create(link)
        host = str(link.host_v4.ip)
        ports = [free_port_on(host) for _ in range(3)]
        while len(set(ports)) < 3:  # bounded in practice: the kernel hands out distinct ports
            ports = [free_port_on(host) for _ in range(3)]
        explicit_port, transparent_port, dns_port = ports
        rules = side_ruleset(table, link, explicit_port, transparent_port, dns_port)
        stack.callback(nft.remove, table)
        nft.apply(rules)
        nft.verify(rules)
        setup.update(
            veth=f"{link.host_if} {link.host_v4} <-> {link.agent_if} {link.agent_v4}",
            redirect=[r.render() for c in rules.model().chains if c.name == "prerouting"
                      for r in c.rules],
            ruleset=rules.render(),
        )  # fmt: skip
        p.log(f"case (e): {setup['netns']} ({setup['veth']}), table {setup['table']}")

        layout = origin.OriginLayout(env.tmp / "origin-e", 80, 443, ORIGIN_ADDR)
        layout.root.mkdir()
        origin.prepare(layout, max_conns=4096)
        ng_argv = origin.nginx_argv(layout)
        env.record(ng_argv)
        ng = Service(
            "nginx-e", ng_argv, env.tmp / "nginx-e.stderr", ready_port=443,
            ready_host=ORIGIN_ADDR, nice=env.nice,
        )  # fmt: skip
        ng.start()
        stack.callback(ng.stop)
        log_dir = env.tmp / "awf-log-e"
        log_dir.mkdir()
        argv = proxy_argv(p, host, explicit_port, transparent_port, log_dir)
        env.record(argv)
        proxy = Service(
            "awf-proxy-e", argv, env.tmp / "awf-proxy-e.stderr",
            ready_pattern=rf"awf-proxy listening on {re.escape(host)}:{transparent_port}\b",
            nice=env.nice,
        )  # fmt: skip
        proxy.start(timeout=30.0)
        stack.callback(proxy.stop)

        checks = preflight(link.netns, host, explicit_port)
        setup["preflight"] = checks
        bad = [c for c in checks if not c["ok"]]
        if bad:
            why = "failed: pre-flight checks from the client namespace failed: " + "; ".join(
                f"{c['probe']} expected {c['expect']} got {c['got']}" for c in bad
            )
            return {"cases": {cid: _failed(cid, why) for cid in CASE_VARIANTS}, "setup": setup}
        case_env = dataclasses.replace(env, origin=ng)
        out = {
            cid: _measure_case(p, case_env, proxy, link.netns, cid, host, explicit_port)
            for cid in CASE_VARIANTS
        }
        return {"cases": out, "setup": setup}
    except (AwfError, ServiceError, OSError) as exc:
        why = f"failed: could not set up the namespace, table or processes: {exc}"
        p.log(f"case (e): {why}")
        return {"cases": {cid: _failed(cid, why) for cid in CASE_VARIANTS}, "setup": setup}
    finally:
        with sigint_ignored():
            stack.close()


def _spec(cid: str) -> report.CaseSpec:
    return next(s for s in report.case_specs(()) if s.case_id == cid)


def _failed(cid: str, why: str) -> dict[str, Any]:
    return {"title": _spec(cid).title, "status": why}


def _measure_case(
    p: Params, env: Env, proxy: Service, ns: str, cid: str, host: str, explicit_port: int
) -> dict[str, Any]:
    variants = CASE_VARIANTS[cid]
    port = 443 if cid == "e1" else 80
    lat = env.tmp / "latencies-e.bin"
    per: dict[str, Any] = {
        v.key: {"label": v.label, "status": "ok", "samples": []} for v in variants
    }

    def one(v: Variant, duration: float) -> Sample:
        argv = loadgen_argv(p, ns, v, host, explicit_port, port, duration, lat)
        return cases.loadgen_units(env, proxy, argv, lat, duration + 60)

    for v in variants:
        try:
            one(v, p.warmup)
        except MEASURE_ERRORS as exc:
            per[v.key]["status"] = f"failed in warm-up: {exc}"
    for rep in range(p.reps):
        for v in variants if rep % 2 == 0 else variants[::-1]:
            if per[v.key]["status"] != "ok":
                continue
            try:
                s = one(v, p.duration)
            except MEASURE_ERRORS as exc:
                per[v.key]["status"] = f"failed: {exc}"
                p.log(f"{cid} {v.key}: FAILED {exc}")
                continue
            per[v.key]["samples"].append(s.as_dict())
            rate = s.units / s.elapsed_s if s.elapsed_s else 0.0
            cpu_us = s.cpu_s * 1e6 / s.units if s.units else 0.0
            p.log(
                f"{cid} rep {rep + 1} {v.key}: units={s.units} rate={rate:,.0f}/s "
                f"cpu/tunnel={cpu_us:.1f}us errors={s.errors}"
            )
    spec = _spec(cid)
    for v in per.values():
        v["metrics"] = report.summarise(spec, v["samples"])
    return {"title": spec.title, "status": "ok", "variants": per}
