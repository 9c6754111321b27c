"""`awf run`'s shared part: what both backends do the same way, written once.

Each backend (`awf.backends.netns`, `awf.backends.docker`) is a script of steps over this:

- the run record (`Record`: id, logs, timings with `mark`, the error that ended the run) and
  `conduct`, which says what the run enforces (`policy_lines`: the allowed and blocked entries,
  or a warning that nothing is allowed), runs the backend's body under `supervise` and then, on
  every path, writes `run.json` (with the redacted configuration and the policy: `enforced`)
  and prints the summary;
- `supervise`: SIGINT/SIGTERM raise `Interrupted` (the first one only); the teardown runs with
  both ignored, so cleanup is never cut short. The exit code follows docs/architecture.md §7: the
  command's own, 128+N after signal N reached awf, or the AwfError's code;
- `wait_agent`: waiting for the command, stopping it when the proxy dies (fail closed) or
  `--agent-timeout` expires (124);
- what the proxy is told (`proxy_argv`: its ports, listeners, log directory and policy flags) and
  what the command's resolver is (`resolv_conf`);
- the user's side: `say` and `progress` (every line `awf run` itself prints goes to stderr
  through them; the command's own output passes through its backend), `caller` (the sudo
  caller), the logs directory and its ownership, `run.json` and the summary.

Logs are kept after the run, mode 0644 in a 0755 directory, owned by the sudo caller, so
reading them never needs sudo (finding L4).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from types import FrameType
from typing import ClassVar

from awf import signals
from awf.config import RunConfig
from awf.signals import Interrupted
from netfilter.errors import SandboxError
from netfilter.ruleset import DNS_PORT, EXPLICIT_PORT, TRANSPARENT_PORT
from proxy import __version__
from proxy.access_log import DROPPED_LINE
from proxy.errors import AwfError

# --- the user's side ------------------------------------------------------------------------


def say(msg: str) -> None:
    print(f"[awf] {msg}", file=sys.stderr, flush=True)


def progress(line: str) -> None:
    """A line of a long step's own output (an image build), as it comes."""
    print(line, file=sys.stderr, flush=True)


def caller() -> tuple[int, int] | None:
    """The sudo caller (uid, gid), or None when awf runs as a plain user or root."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if uid and gid and uid.isdigit() and gid.isdigit() and int(uid) != 0:
        return int(uid), int(gid)
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    return None


def logs_dir(chosen: Path | None, run: str) -> Path:
    """--proxy-logs-dir, or $TMPDIR/awf-logs-<run>; kept after the run."""
    logs = chosen or Path(tempfile.gettempdir()) / f"awf-logs-{run}"
    logs.mkdir(parents=True, exist_ok=True)
    os.chmod(logs, 0o755)
    return logs


def finish_logs(logs: Path) -> None:
    """Files 0644, the directory 0755, owned by the invoking user."""
    who = caller()
    owner = who if who is not None else (0, 0)
    for p in [logs, *logs.rglob("*")] if logs.is_dir() else []:  # api-proxy/ too
        try:
            if os.geteuid() == 0:
                os.chown(p, *owner)
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        except OSError:
            pass


def summary_lines(logs: Path, allow_domains: Sequence[str] | None = None) -> list[str]:
    """The post-run summary (docs/architecture.md §7): outcomes, not decisions (`6 requests:
    6 allowed (6 failed upstream), 0 denied`), DNS refusals and network-layer drops beside
    them, one line per denied or failed host:port, and the `--allow-domains` that would have
    let the denied names through (`allow_domains`: the run's own allowlist). The self-test's
    records are left out (`awf.logs.stats`)."""
    from awf.logs.read import Reader, count_dir
    from awf.logs.suggest import denied_names, suggest
    from awf.logs.summary import stderr_lines

    counts = count_dir(logs, Reader(warn=lambda msg: None))  # a torn line is not news here
    # the hint only when a name was denied: it loads the Public Suffix List (0.1-0.2 s)
    hint = suggest(counts, allow_domains) if denied_names(counts) else None
    return stderr_lines(counts, hint)


def learn_lines(logs: Path, *, start: bool) -> list[str]:
    """Learn mode's loud warning, at the start of the run and at its end."""
    if start:
        return ["WARNING: learn mode: every domain is let through (IP literals, ports, denied "
                "address ranges and --block-domains still hold); what the allowlist would deny "
                "is logged as would_deny"]
    from awf.logs.read import Reader, count_dir

    c = count_dir(logs, Reader(warn=lambda msg: None))
    n, names = c.would_deny, len(c.would_deny_names | c.dns_would_deny_names)
    return [f"WARNING: learn mode: nothing was blocked by name; {n} request"
            f"{'' if n == 1 else 's'} would have been denied ({names} name"
            f"{'' if names == 1 else 's'}, {c.dns_would_deny} DNS answer"
            f"{'' if c.dns_would_deny == 1 else 's'}); run `awf logs suggest --source {logs}` "
            "for the allowlist (`--format yaml` for a --config file)"]


def allowlist(cfg: RunConfig) -> list[str]:
    """The run's --allow-domains, with the entries of its --allow-domains-file (read into them
    by `parse_run`)."""
    return list(cfg.proxy.allow_domains)


# --- what the run enforces, said at its start and kept in run.json (issue 21) ---
SHOWN = 30  # entries named on a line; the rest are counted
NOTHING_ALLOWED = "WARNING: no domain is allowed: every request will be denied"


def listed(label: str, entries: Sequence[str], limit: int = SHOWN) -> str:
    """`label: a, b, … (+N more)`: the first `limit` entries, the rest counted."""
    more = len(entries) - limit
    return f"{label}: {', '.join(entries[:limit])}" + (f", … (+{more} more)" if more > 0 else "")


def policy_lines(cfg: RunConfig) -> list[str]:
    """The lines a run starts with: the allowed entries (--allow-domains and its files,
    --allow-urls and its files, the host with host access), or a warning when there are none
    (not in learn mode, which says its own); then the blocked entries, if any."""
    # the list files were read into the entries by parse_run
    urls, blocked = list(cfg.proxy.allow_urls), list(cfg.proxy.block_domains)
    allowed = [*allowlist(cfg), *urls]
    if cfg.enable_host_access:
        allowed.append("host.docker.internal")
    lines = []
    if allowed:
        lines.append(listed("allowed", allowed))
    elif not cfg.learn:
        lines.append(NOTHING_ALLOWED)
    if blocked:
        lines.append(listed("blocked", blocked))
    return lines


def enforced(cfg: RunConfig) -> dict[str, object]:
    """run.json's `config` (the effective configuration, each value's source, redacted) and
    `policy` (the proxy's rules in order), as `--audit-dir` writes them (awf/audit.py)."""
    from awf.audit import config_record, policy_rules

    try:
        policy: object = policy_rules(cfg)
    except AwfError as exc:  # a list file unreadable by now: the run itself says so
        policy = {"error": str(exc)}
    return {"config": config_record(cfg), "policy": policy}


def dropped_records(lines: Iterable[str]) -> int:
    """The count in the proxy's last `awf-proxy: log records dropped: N` line, else 0."""
    count = 0
    for line in lines:
        if line.startswith(DROPPED_LINE):
            with contextlib.suppress(ValueError):
                count = int(line[len(DROPPED_LINE):].strip())
    return count


def print_summary(logs: Path, cfg: RunConfig | None = None, dropped: int = 0) -> None:
    for line in summary_messages(logs, cfg, dropped):
        say(line)


def summary_messages(logs: Path, cfg: RunConfig | None = None, dropped: int = 0) -> list[str]:
    """What `print_summary` says, without the `[awf] ` prefix. A backend whose teardown waits
    on the kernel may work it out meanwhile (`Record.summary`), once the logs are complete."""
    out: list[str] = []
    try:
        first, *rest = summary_lines(logs, allowlist(cfg) if cfg is not None else None)
    except (AwfError, OSError) as exc:
        out.append(f"no summary: {exc} · logs: {logs}")
        first, rest = "", []
    if first:
        out.append(f"{first} · logs: {logs}")
    out += rest
    from awf.apisidecar import summary_lines as api_lines  # --- API proxy sidecar ---

    out += api_lines(logs)
    if dropped:
        out.append(f"{dropped} log record{'s' if dropped != 1 else ''} dropped by the proxy "
                   "(could not be written: is the logs directory's disk full?); the counts "
                   "above miss them")
    if cfg is not None and cfg.learn:  # --- learn mode ---
        out += learn_lines(logs, start=False)
    return out


def write_log(logs: Path, name: str, text: str) -> None:
    """A file of the run's own in the logs directory; a full or broken disk loses it with a
    warning, never the run's cleanup or exit code."""
    try:
        (logs / name).write_text(text)
    except OSError as exc:
        say(f"could not write {logs / name}: {exc.strerror or exc}")


# --- what the proxy and the command are told --------------------------------------------------


def proxy_argv(addrs: Sequence[IPv4Address | IPv6Address], cfg: RunConfig,
               log_dir: str) -> list[str]:
    """awf-proxy's flags: its three listeners on each of `addrs` (never on any other address),
    its log directory, and the run's policy flags unchanged."""
    hosts = [str(a) if a.version == 4 else f"[{a}]" for a in addrs]
    args: list[str] = []
    for flag, port in (("--listen", EXPLICIT_PORT), ("--transparent-listen", TRANSPARENT_PORT),
                       ("--dns-listen", DNS_PORT)):
        for host in hosts:
            args += [flag, f"{host}:{port}"]
    return [*args, "--log-dir", log_dir, "--drain-timeout", "1", "--log-level", cfg.log_level,
            *cfg.proxy_args]


def listening(lines: Sequence[str], addrs: int) -> bool:
    """Whether the proxy's output says every listener of `proxy_argv` is up."""
    return sum(ln.startswith("awf-proxy listening on ") for ln in lines) >= 3 * addrs


def resolv_conf(servers: Sequence[IPv4Address | IPv6Address]) -> str:
    """The command's resolv.conf: the proxy's DNS forwarder alone."""
    return ("".join(f"nameserver {s}\n" for s in servers)
            + "options timeout:2 attempts:2\n")


def proxy_url(proxy: IPv4Address) -> str:
    return f"http://{proxy}:{EXPLICIT_PORT}"


# --- the run record ---------------------------------------------------------------------------


@dataclass(kw_only=True)
class Record:
    """One run, as both backends keep it; each backend's Run adds its own objects."""

    BACKEND: ClassVar[str]
    cfg: RunConfig
    run: str
    logs: Path
    t0: float
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    dropped: int = 0  # log records the proxy could not write (it says so at exit)
    enforced: dict[str, object] = field(default_factory=dict)  # `enforced`, at the start
    summary: list[str] | None = None  # `summary_messages`, if the teardown worked them out

    def mark(self, what: str) -> None:
        self.timings[what] = round(time.monotonic() - self.t0, 4)

    def run_json(self, code: int) -> dict[str, object]:
        """run.json's fields; a backend adds its own after these."""
        return {
            "id": self.run, "version": __version__, "backend": self.BACKEND, "exit_code": code,
            "awf_error": self.error, "command": list(self.cfg.command),
            "timings": self.timings, "logs": str(self.logs),
            "log_records_dropped": self.dropped,
            # the allowlist `awf logs suggest` starts from, and whether the run was learning
            "allow_domains": allowlist(self.cfg), "learn": self.cfg.learn,
            **self.enforced,  # config and policy
        }


def write_run_json(logs: Path, doc: Mapping[str, object]) -> None:
    write_log(logs, "run.json", json.dumps(doc, indent=1) + "\n")
    finish_logs(logs)


def conduct(record: Record, body: Callable[[], int], teardown: Callable[[bool], None]) -> int:
    """`body` under `supervise`, `teardown(interrupted)` on every path, then run.json and the
    summary; the run's exit code."""
    record.enforced = enforced(record.cfg)
    for line in policy_lines(record.cfg):
        say(line)
    if record.cfg.learn:  # --- learn mode ---
        for line in learn_lines(record.logs, start=True):
            say(line)
    outcome = supervise(body, teardown)
    record.error = outcome.error
    record.mark("end")
    write_run_json(record.logs, record.run_json(outcome.exit_code))
    if record.summary is None:
        record.summary = summary_messages(record.logs, record.cfg, record.dropped)
    for line in record.summary:
        say(line)
    return outcome.exit_code


# --- signals ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    exit_code: int
    error: str | None  # the AwfError that ended the run, if one did
    interrupted: bool


def supervise(body: Callable[[], int], teardown: Callable[[bool], None]) -> Outcome:
    """Run `body`, then `teardown(interrupted)` on every path."""
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        signals.note(signum)
        if len(received) == 1:
            raise Interrupted(signum)

    old = {s: signal.signal(s, on_signal) for s in signals.CAUGHT}
    code: int | None = None
    error: str | None = None
    try:
        signals.check()  # a signal taken before, whose exception a finalizer swallowed
        code = body()
    except Interrupted as exc:
        signals.delivered()
        if not received:
            received.append(exc.signum)
        say(f"{signal.Signals(exc.signum).name}: stopping the command and cleaning up")
        code = 128 + exc.signum
    except AwfError as exc:
        error = str(exc)
        code = exc.exit_code
        say(f"error: {exc}")
    finally:
        signals.ignore()
        try:
            teardown(bool(received))
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    if received and code is not None and code <= 128:
        code = 128 + received[0]  # a signal that arrived while the command was ending
    return Outcome(125 if code is None else code, error, bool(received))


# --- waiting for the command ------------------------------------------------------------------


def wait_agent(cfg: RunConfig, *, agent: Callable[[float], int | None],
               proxy: Callable[[], int | None], stop: Callable[[float], None],
               sidecar: Callable[[], int | None] | None = None) -> int:
    """The command's exit code. `agent(t)` waits up to t seconds for it (None: still running),
    `proxy()` is the proxy's exit status if it is gone, `stop(grace)` stops the command. If the
    proxy dies, egress is gone: the command is stopped and the run fails closed. So too if the
    API proxy sidecar (`sidecar()`, its status if it is gone) dies."""
    deadline = (time.monotonic() + cfg.agent_timeout) if cfg.agent_timeout else None
    while True:
        signals.check()  # a signal whose exception was lost in a finalizer stops the run too
        left = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
        code = agent(left)
        if code is not None:
            return code
        status = proxy()
        if status is not None:
            stop(2)
            raise SandboxError(f"awf-proxy died (status {status}); the command was stopped")
        status = sidecar() if sidecar is not None else None
        if status is not None:
            stop(2)
            raise SandboxError(f"the API proxy sidecar died (status {status}); the command "
                               "was stopped")
        if deadline is not None and time.monotonic() >= deadline:
            say(f"--agent-timeout expired after {cfg.agent_timeout:g} s; stopping the command")
            stop(10)
            return 124
