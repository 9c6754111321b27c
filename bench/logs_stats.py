"""`awf logs stats` and `awf logs summary` on a big access log: wall time, CPU time and peak
memory (target: 1 GB in < 10 s).

    python -m bench.logs_stats [--size 1G] [--dir DIR] [--keep] [--json PATH]

(`taskset -c 0 python -m bench.logs_stats` measures one core: `awf logs` uses one process per
CPU it may run on.)

Writes `DIR/awf-logs-bench0001/access.jsonl` of about --size bytes (default 1 GiB; a temporary
directory on the same disk as $TMPDIR unless --dir) in the proxy's own line format: a mix of
tunnels and plain-HTTP requests over 300 hosts, answered, failed upstream (`connect_failed`,
`dns_failure`) and denied (`domain_not_allowed`, `ip_literal`, `port_denied`), a few self-test
records, plus a `dns.jsonl` and an `l3-drops.json`. Then it runs
`awf logs stats --source DIR --format json`, then `awf logs summary --source DIR`, each as a
child process, timing each on the wall clock (interpreter start included) and reading its CPU
time (the CLI and its worker processes: on a loaded machine, wall time is no measure; on an
idle one, wall is about CPU / workers) and the peak RSS of the largest process, and checks the
request count against what was written. The file is removed afterwards unless --keep. No
timing is asserted: the figures are printed (and written to --json).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BLOCK_LINES = 20_000
HOURS = 24  # blocks cycle through the hours of a day, so the time range is a real one


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def block(rng: random.Random) -> tuple[bytes, int, int]:
    """BLOCK_LINES lines with the hour written as `HH`: (text, requests, self-test records)."""
    hosts = [f"{p}.{d}" for d in ("github.com", "githubusercontent.com", "pypi.org",
                                  "npmjs.org", "example.com", "corp.example")
             for p in ("api", "www", "cdn", "objects", "uploads", "registry", "files",
                       "raw", "codeload", "static", *(f"n{i}" for i in range(40)))]
    lines = []
    selftest = 0
    for i in range(BLOCK_LINES):
        ts = f"2026-12-06THH:{(i // 600) % 60:02d}:{(i // 10) % 60:02d}.{i % 1000:03d}Z"
        client = f"10.213.0.20:{30000 + i % 30000}"
        roll = rng.random()
        host = rng.choice(hosts)
        port, method, url = 443, "CONNECT", None
        if roll < 0.3:
            method, port = "GET", 80
            url = f"http://{host}/simple/pkg-{i % 977}/?page={i % 13}"
        decision, reason, status = "allow", None, 200
        up, down = rng.randint(200, 4000), rng.randint(0, 2_000_000)
        if roll > 0.97:
            reason, status, down = rng.choice(["connect_failed", "dns_failure"]), 502, 0
        elif roll > 0.85:
            decision, status, up, down = "deny", 403, 0, 0
            reason = "domain_not_allowed"
            if roll > 0.95:
                host, reason = "169.254.169.254", "ip_literal"
            elif roll > 0.93:
                port, reason = 22, "port_denied"
        if i % 5000 == 0:
            host, decision, reason, status, up, down = ("awf-selftest.invalid", "deny",
                                                        "domain_not_allowed", 403, 0, 0)
            selftest += 1
        rec: dict[str, object] = {"ts": ts, "client": client, "mode": "explicit",
                                  "method": method, "host": host, "port": port}
        if url is not None:
            rec["url"] = url
        rec.update(decision=decision, reason=reason, status=status, bytes_up=up,
                   bytes_down=down, duration_ms=round(rng.random() * 900, 1))
        lines.append(json.dumps(rec, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode(), BLOCK_LINES - selftest, selftest


def write_logs(logs: Path, size: int) -> tuple[int, int]:
    """(requests written, bytes written)."""
    rng = random.Random(17)
    text, requests, _ = block(rng)
    written = blocks = 0
    with (logs / "access.jsonl").open("wb") as f:
        while written < size:
            hour = b"%02d" % (blocks % HOURS)
            data = text.replace(b"THH:", b"T" + hour + b":")
            f.write(data)
            written += len(data)
            blocks += 1
        f.flush()
        os.fsync(f.fileno())  # no writeback of the new file while it is timed
    with (logs / "dns.jsonl").open("w") as f:
        for i in range(10_000):
            denied = i % 10 == 0
            f.write(json.dumps({"ts": "2026-12-06T00:00:00.000Z", "client": "10.213.0.20:53",
                                "qname": f"n{i % 50}.{'evil.test' if denied else 'github.com'}",
                                "qtype": "A", "decision": "deny" if denied else "allow",
                                "reason": "domain_not_allowed" if denied else None,
                                "rcode": "NXDOMAIN" if denied else "NOERROR",
                                "answers": []}) + "\n")
    (logs / "l3-drops.json").write_text(json.dumps(
        [{"dst": "203.0.113.7", "proto": "tcp", "port": 22, "count": 3}]))
    (logs / "run.json").write_text(json.dumps({"id": "bench0001", "exit_code": 0}))
    return requests * blocks, written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.logs_stats", description=__doc__)
    p.add_argument("--size", default="1G", help="access.jsonl size: 1G, 200M, ... (1G)")
    p.add_argument("--dir", type=Path, help="where to write (default: a new temporary dir)")
    p.add_argument("--keep", action="store_true", help="keep the generated logs")
    p.add_argument("--json", type=Path, help="also write the result here")
    ns = p.parse_args(argv)
    top = ns.dir or Path(tempfile.mkdtemp(prefix="awf-bench-logs-"))
    logs = top / "awf-logs-bench0001"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        t = time.monotonic()
        requests, size = write_logs(logs, parse_size(ns.size))
        made = time.monotonic() - t
        print(f"wrote {size / 1e9:.2f} GB, {requests:,d} requests, in {made:.1f} s: {logs}",
              file=sys.stderr)
        env = {**os.environ, "AWF_LOGS_DOCKER": "0"}
        result: dict[str, object] = {"bytes": size, "requests_written": requests}
        for command in ("stats", "summary"):
            argv_ = [sys.executable, "-m", "awf.cli", "logs", command, "--source", str(logs)]
            if command == "stats":
                argv_ += ["--format", "json"]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.monotonic()
            proc = subprocess.run(argv_, capture_output=True, text=True, env=env, check=False)
            wall = time.monotonic() - t
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            # the CLI and its workers: what load cannot hide
            cpu = (usage.ru_utime - before.ru_utime) + (usage.ru_stime - before.ru_stime)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
            if command == "stats":
                counted = json.loads(proc.stdout)["requests"]
                result["requests_counted"] = counted
            result[command] = {
                "wall_s": round(wall, 2), "mb_per_s": round(size / 1e6 / wall, 1),
                "cpu_s": round(cpu, 2),
                # the largest child so far (ru_maxrss of children is a maximum, not a sum)
                "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            }
        result.update(cpus=len(os.sched_getaffinity(0)), loadavg=round(os.getloadavg()[0], 2))
        print(json.dumps(result, indent=1))
        if ns.json:
            ns.json.write_text(json.dumps(result, indent=1) + "\n")
        if result["requests_counted"] != requests:
            print(f"counted {result['requests_counted']} requests, wrote {requests}",
                  file=sys.stderr)
            return 1
        return 0
    finally:
        if not ns.keep:
            shutil.rmtree(logs, ignore_errors=True)
            if ns.dir is None:
                shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
