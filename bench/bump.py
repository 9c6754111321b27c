"""Cases (h1)/(h2): SSL bump, awf-proxy `--ssl-bump` against Squid `ssl_bump bump all`.

Both proxies are started for these cases only, beside the harness's plain ones, on CPU 1, with
the same per-run CA: `awf-proxy --make-ca` writes it (ECDSA P-256, name-constrained to
origin.test), awf-proxy signs a cached P-256 leaf with it, and Squid (Debian's squid-openssl,
`generate-host-certificates=on`, certificates from `security_file_certgen` kept in its memory
cache) signs leaves that reuse the CA's P-256 key. The origin is the harness's nginx TLS port,
whose self-signed certificate both proxies trust for the upstream leg (awf-proxy
`--extra-ca-certs`, Squid `tls_outgoing_options cafile=`), verified, hostname checked.

(h1) bench/loadgen.c `tunnel-tls-ka`: each of 64 connections does CONNECT once and one TLS
handshake with the proxy's leaf, then keep-alive GETs on it; the unit is one request.
(h2) `tunnel-tls`: CONNECT + a full TLS handshake with the leaf (no resumption) + one GET
(Connection: close) + close; the unit is one connection. A pre-flight checks that each proxy
really bumps (the client verifies the leaf against the run's CA) and still denies denied.test.
"""

from __future__ import annotations

import pwd
import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench import cases, report, squid
from bench.cases import CaseError, Env, Sample
from bench.origin import DENIED_NAME, ORIGIN_NAME
from bench.report import AWF, SQUID
from bench.services import Service, ServiceError, free_port
from bench.stats import BenchParseError

CASES = ("h1", "h2")
CERTGEN = Path("/usr/lib/squid/security_file_certgen")  # shipped by squid-openssl only
CERT_DB_MB = 4
CERT_CACHE_MB = 4
READY_PATTERN = r"Accepting SSL bumped HTTP Socket connections"
MEASURE_ERRORS = (CaseError, ServiceError, BenchParseError, OSError, subprocess.TimeoutExpired)


@dataclass(frozen=True, slots=True)
class Params:
    env: Env
    awf_bin: Path
    proxy_cpu: int
    reps: int
    duration: float
    warmup: float
    conns: int
    max_fds: int
    log: Callable[[str], None]
    proxies: tuple[str, ...] = (SQUID, AWF)


# ---------------------------------------------------------------------------------------------
# Squid with ssl_bump (pure text)


def squid_bump_conf(root: Path, port: int, allowed_ports: Sequence[int], max_fds: int) -> str:
    """squid.conf for the bump cases: bench/squid.py's policy and logging, plus ssl-bump on the
    listener, leaves generated from the run's CA and cached in memory, every allowed CONNECT
    bumped at step 1, and the origin's certificate trusted (and verified) upstream (pure)."""
    plain = squid.squid_conf(squid.SquidLayout(root, port), allowed_ports, max_fds)
    listener = f"http_port 127.0.0.1:{port}\n"
    if listener not in plain:
        raise ValueError("bench/squid.py's config has no plain http_port line to extend")
    bump_listener = (
        f"http_port 127.0.0.1:{port} ssl-bump tls-cert={root}/ca.pem tls-key={root}/ca-key.pem "
        f"generate-host-certificates=on dynamic_cert_mem_cache_size={CERT_CACHE_MB}MB\n"
    )
    return plain.replace(listener, bump_listener) + (
        f"sslcrtd_program {CERTGEN} -s {root}/ssl_db -M {CERT_DB_MB}MB\n"
        "sslcrtd_children 1 startup=1 idle=1\n"
        f"tls_outgoing_options cafile={root}/origin-ca.pem min-version=1.2\n"
        "ssl_bump bump all\n"
    )


def prepare_squid(
    root: Path, port: int, allowed_ports: Sequence[int], max_fds: int, ca_dir: Path,
    origin_cert: Path,
) -> None:  # fmt: skip
    """Write the config, copy the CA and the origin's certificate, initialise the certificate
    database (`security_file_certgen -c`), and hand it all to Squid's user."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "hosts").write_text(f"127.0.0.1 {ORIGIN_NAME}\n")
    shutil.copyfile(ca_dir / "ca.pem", root / "ca.pem")
    shutil.copyfile(ca_dir / "ca-key.pem", root / "ca-key.pem")
    (root / "ca-key.pem").chmod(0o600)
    shutil.copyfile(origin_cert, root / "origin-ca.pem")
    (root / "squid.conf").write_text(squid_bump_conf(root, port, allowed_ports, max_fds))
    res = subprocess.run(
        [str(CERTGEN), "-c", "-s", str(root / "ssl_db"), "-M", f"{CERT_DB_MB}MB"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if res.returncode != 0:
        raise ServiceError(f"security_file_certgen -c failed: {res.stderr.strip()[-300:]}")
    try:
        pw = pwd.getpwnam(squid.SQUID_USER)
    except KeyError:
        return
    for path in (root, *root.rglob("*")):
        shutil.chown(path, pw.pw_uid, pw.pw_gid)


def skip_reason(awf_bin: Path) -> str | None:
    """Why the bump cases cannot run here, or None."""
    if not CERTGEN.exists():
        return (
            f"skipped: {CERTGEN} is missing: Squid's ssl_bump needs Debian's squid-openssl "
            "(bench/run.sh installs it; the `squid` package is the GnuTLS build without it)"
        )
    if not awf_bin.exists():
        return f"skipped: no awf-proxy at {str(awf_bin)!r}"
    return None


# ---------------------------------------------------------------------------------------------
# pre-flight: a bumped GET whose leaf verifies against the run's CA, and a denied CONNECT


def bumped_get(port: int, target: str, ca_pem: Path | None, timeout: float = 10.0) -> int:
    """CONNECT target through 127.0.0.1:port, a TLS handshake that must verify against the run's
    CA (so the proxy bumped it), one GET /small; returns the inner response's status, or the
    CONNECT's if that is not 200. Without ca_pem nothing is verified (a denied host: Squid
    answers 200, bumps, then denies the inner request, with a leaf outside the CA's
    name constraints)."""
    host = target.rsplit(":", 1)[0]
    if ca_pem is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=str(ca_pem))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = _read_head(raw)
        if cases.status_of(head) != 200:
            return cases.status_of(head)
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(
                f"GET /small HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n".encode()
            )
            return cases.status_of(_read_head(tls))


def _read_head(sock: socket.socket) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(1) if len(buf) < 65536 else b""  # byte by byte: no TLS read-ahead
        if not chunk:
            raise CaseError(f"connection closed before a response head: {buf[:200]!r}")
        buf += chunk
    return buf


def preflight(port: int, tls_port: int, ca_pem: Path) -> list[dict[str, Any]]:
    checks: list[tuple[str, Callable[[], int], int]] = [
        (
            f"CONNECT {ORIGIN_NAME}:{tls_port} + TLS verified by the run's CA + GET /small",
            partial(bumped_get, port, f"{ORIGIN_NAME}:{tls_port}", ca_pem),
            200,
        ),
        (
            f"CONNECT {DENIED_NAME}:{tls_port} (refused, or bumped and its GET refused)",
            partial(bumped_get, port, f"{DENIED_NAME}:{tls_port}", None),
            403,
        ),
    ]  # fmt: skip
    out = []
    for label, fn, expect in checks:
        try:
            got: int | str = fn()
        except (OSError, CaseError, ssl.SSLError) as exc:
            got = f"error: {exc}"
        out.append({"probe": label, "expect": expect, "got": got, "ok": got == expect})
    return out


# ---------------------------------------------------------------------------------------------
# the cases


def loadgen_argv(
    env: Env, mode: str, port: int, conns: int, duration: float, lat: Path
) -> list[str]:
    return [
        "taskset", "-c", "0", str(env.loadgen), mode,
        "--proxy", f"127.0.0.1:{port}", "--target", f"{ORIGIN_NAME}:{env.tls_port}",
        "--path", "/small", "-c", str(conns), "-d", f"{duration:g}", "--lat-out", str(lat),
    ]  # fmt: skip


MODES = {"h1": "tunnel-tls-ka", "h2": "tunnel-tls"}


def measure(env: Env, proxy: Service, port: int, cid: str, conns: int, duration: float) -> Sample:
    lat = env.tmp / f"latencies-{cid}.bin"
    argv = loadgen_argv(env, MODES[cid], port, conns, duration, lat)
    return cases.loadgen_units(env, proxy, argv, lat, duration + 60)


def awf_argv(p: Params, port: int, ca_dir: Path, origin_cert: Path, log_dir: Path) -> list[str]:
    env = p.env
    return [
        "taskset", "-c", str(p.proxy_cpu), str(p.awf_bin),
        "--listen", f"127.0.0.1:{port}",
        "--allow-domains", ORIGIN_NAME,
        "--resolve", f"{ORIGIN_NAME}=127.0.0.1",
        "--allow-range", "127.0.0.1/32",
        "--allow-ports", f"{env.http_port},{env.tls_port}",
        "--log-dir", str(log_dir),
        "--max-connections", str(max(4096, p.conns * 4)),
        "--ssl-bump", "--ca-cert", str(ca_dir / "ca.pem"), "--ca-key", str(ca_dir / "ca-key.pem"),
        "--extra-ca-certs", str(origin_cert),
    ]  # fmt: skip


def make_ca(p: Params, ca_dir: Path) -> None:
    argv = [str(p.awf_bin), "--make-ca", str(ca_dir), "--allow-domains", ORIGIN_NAME]
    p.env.record(argv)
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if res.returncode != 0:
        raise ServiceError(f"awf-proxy --make-ca failed: {res.stderr.strip()[-300:]}")


def run(p: Params) -> dict[str, Any]:
    """Measure h1 and h2 on both proxies. Returns {"cases": {"h1": ..., "h2": ...}, "setup":
    {...}}; a set-up failure becomes the status of both cases."""
    env = p.env
    why = skip_reason(p.awf_bin)
    if why is not None:
        return {"cases": {cid: _failed(cid, why) for cid in CASES}, "setup": {}}
    root = env.tmp / "bump"
    root.mkdir()
    ca_dir = root / "ca"
    origin_cert = env.tmp / "origin" / "origin.crt"  # the harness's origin (bench/origin.py)
    running: dict[str, Service] = {}
    ports: dict[str, int] = {}
    setup: dict[str, Any] = {"preflight": {}, "status": {}}
    try:
        make_ca(p, ca_dir)
        starters: dict[str, Callable[[], Service]] = {}
        if SQUID in p.proxies:
            ports[SQUID] = free_port()
            sq_root = root / "squid"
            prepare_squid(sq_root, ports[SQUID], [env.http_port, env.tls_port], p.max_fds,
                          ca_dir, origin_cert)  # fmt: skip
            sq_argv = squid.squid_argv(squid.SquidLayout(sq_root, ports[SQUID]))
            env.record(sq_argv)
            starters[SQUID] = partial(
                Service, "squid-bump", sq_argv, env.tmp / "squid-bump.stderr",
                ready_pattern=READY_PATTERN, nice=env.nice,
            )  # fmt: skip
        if AWF in p.proxies:
            ports[AWF] = free_port()
            log_dir = root / "awf-log"
            log_dir.mkdir()
            a_argv = awf_argv(p, ports[AWF], ca_dir, origin_cert, log_dir)
            env.record(a_argv)
            starters[AWF] = partial(
                Service, "awf-proxy-bump", a_argv, env.tmp / "awf-proxy-bump.stderr",
                ready_pattern=rf"awf-proxy listening on 127\.0\.0\.1:{ports[AWF]}\b",
                nice=env.nice,
            )  # fmt: skip
        for name, start in starters.items():
            for attempt in (1, 2):  # once more: a shared machine once stopped a fresh Squid
                svc = start()
                try:
                    svc.start(timeout=30.0)
                except ServiceError as exc:
                    setup["status"][name] = f"unavailable: {str(exc).splitlines()[0]}"
                    p.log(f"bump {name} (attempt {attempt}): {exc}")
                    continue
                running[name] = svc
                checks = preflight(ports[name], env.tls_port, ca_dir / "ca.pem")
                setup["preflight"][name] = checks
                bad = [c for c in checks if not c["ok"]]
                if not bad:
                    setup["status"][name] = "ok"
                    p.log(f"bump {name} on 127.0.0.1:{ports[name]}: ok")
                    break
                setup["status"][name] = "excluded: pre-flight checks failed: " + "; ".join(
                    f"{c['probe']} expected {c['expect']} got {c['got']}" for c in bad
                )
                p.log(f"bump {name} (attempt {attempt}): {setup['status'][name]}")
                running.pop(name).stop()
        names = [n for n in (SQUID, AWF) if n in running]
        out = {cid: _measure_case(p, running, ports, names, cid) for cid in CASES}
        for cid in CASES:
            for name, st in setup["status"].items():
                if st != "ok":
                    out[cid]["per_proxy"][name] = {"status": st, "samples": [], "metrics": {}}
        return {"cases": out, "setup": setup}
    except (ServiceError, OSError, subprocess.TimeoutExpired) as exc:
        why = f"failed: could not set up the bump proxies: {exc}"
        p.log(f"cases (h1)/(h2): {why}")
        return {"cases": {cid: _failed(cid, why) for cid in CASES}, "setup": setup}
    finally:
        for svc in running.values():
            svc.stop()
        for log in (root / "squid" / "cache.log",):
            if log.exists():
                shutil.copyfile(log, env.tmp / "squid-bump-cache.log.stderr")


def _spec(cid: str) -> report.CaseSpec:
    return next(s for s in report.case_specs(()) if s.case_id == cid)


def _failed(cid: str, why: str) -> dict[str, Any]:
    return {"title": _spec(cid).title, "status": why}


def _measure_case(
    p: Params, running: dict[str, Service], ports: dict[str, int], names: list[str], cid: str
) -> dict[str, Any]:
    per: dict[str, Any] = {n: {"status": "ok", "samples": []} for n in names}
    for name in names:
        try:
            measure(p.env, running[name], ports[name], cid, p.conns, p.warmup)
        except MEASURE_ERRORS as exc:
            per[name]["status"] = f"failed in warm-up: {exc}"
    for rep in range(p.reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            if per[name]["status"] != "ok":
                continue
            try:
                s = measure(p.env, running[name], ports[name], cid, p.conns, p.duration)
            except MEASURE_ERRORS as exc:
                per[name]["status"] = f"failed: {exc}"
                p.log(f"{cid} {name}: FAILED {exc}")
                continue
            per[name]["samples"].append(s.as_dict())
            rate = s.units / s.elapsed_s if s.elapsed_s else 0.0
            cpu_us = s.cpu_s * 1e6 / s.units if s.units else 0.0
            p.log(
                f"{cid} rep {rep + 1} {name}: units={s.units} rate={rate:,.0f}/s "
                f"cpu/unit={cpu_us:.1f}us errors={s.errors}"
            )
    spec = _spec(cid)
    for v in per.values():
        v["metrics"] = report.summarise(spec, v["samples"])
    return {"title": spec.title, "status": "ok", "per_proxy": per}
