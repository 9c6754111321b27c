"""`awf run`'s API proxy sidecar (docs/api-proxy.md §6): what both backends start,
the keys file, the command's environment, and the summary lines.

The sidecar starts when a provider key is in awf's environment and --no-api-proxy is not given.
It is `containers.api_entry` (awf-api-proxy), whose egress goes through the run's one awf-proxy:
the proxy gets a loopback listener (`proxy_client_args`) and a client `api-proxy` from
127.0.0.1 whose only allowed entries are the providers' targets (docs/proxy.md §12). The
agent's own allowlist does not get the targets, so the agent cannot reach a provider itself; it
reaches the sidecar's ports 10000-10003 on the proxy's address (Docker: the sidecar container
shares the proxy container's network namespace; netns: a host process on the veth's host
address), with placeholder keys and base URLs. The keys go into a 0400 file owned by the
sidecar's uid, in a 0700 directory under /dev/shm, wiped at the end: never an environment, argv
or log.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from awf.config import RunConfig
from containers import github_host
from proxy.api.providers import PLACEHOLDER, PROVIDERS, Target
from proxy.errors import ConfigError

if TYPE_CHECKING:
    from containers.spec import ContainerSpec

KEY_NAMES = ("OPENAI_API_KEY", "CODEX_API_KEY", "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN",
             "COPILOT_GITHUB_TOKEN", "GEMINI_API_KEY")
PORT_BASE = 10000
PORTS = frozenset(p.port for p in PROVIDERS)  # 10000-10003
CLIENT = "api-proxy"  # the awf-proxy client the sidecar is (its records' client_name)
CLIENT_FROM = "127.0.0.1/32"  # where the sidecar connects from: loopback, out of the agent's reach
EGRESS_LISTEN_DOCKER = "127.0.0.1:3130"  # in the proxy container's namespace
READY = "awf-api-proxy ready"
FAILED = "awf-api-proxy failed:"
LOG_SUBDIR = "api-proxy"  # <logs>/api-proxy/: api-proxy.jsonl and the egress access.jsonl
KEYS_ROOT = Path("/dev/shm")

# (variable, value template) per provider; {url} is http://HOST:PORT of its listener
_AGENT_VARS: dict[str, tuple[tuple[str, str], ...]] = {
    "openai": (("OPENAI_BASE_URL", "{url}/v1"), ("OPENAI_API_KEY", PLACEHOLDER),
               ("CODEX_API_KEY", PLACEHOLDER)),
    "anthropic": (("ANTHROPIC_BASE_URL", "{url}"), ("ANTHROPIC_AUTH_TOKEN", PLACEHOLDER)),
    "copilot": (("COPILOT_API_URL", "{url}"), ("COPILOT_TOKEN", PLACEHOLDER),
                ("COPILOT_GITHUB_TOKEN", PLACEHOLDER)),
    "gemini": (("GOOGLE_GEMINI_BASE_URL", "{url}"), ("GEMINI_API_BASE_URL", "{url}"),
               ("GEMINI_API_KEY", PLACEHOLDER)),
}


@dataclass(frozen=True, slots=True)
class Sidecar:
    """What this run's sidecar gets; `keys` never shows in a repr."""

    keys: tuple[tuple[str, str], ...] = field(repr=False)
    providers: tuple[str, ...]  # the configured ones, in PROVIDERS order
    targets: tuple[tuple[str, Target], ...]  # every provider's, defaults included
    extra_ca_certs: Path | None
    rate_limits: tuple[tuple[str, int], ...] = ()  # --rate-limit-*: (flag, N), passed on

    def key_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.keys)


def plan(cfg: RunConfig, environ: Mapping[str, str]) -> Sidecar | None:
    """The sidecar for this run, or None (no key, or --no-api-proxy). Bad flags: ConfigError."""
    targets = dict(cfg.api_targets)
    parsed: list[tuple[str, Target]] = []
    derived = {"copilot": github_host.copilot_target(environ.get("GITHUB_SERVER_URL"))}
    for prov in PROVIDERS:  # the flag, else (Copilot) from GITHUB_SERVER_URL, else the default
        text = targets.get(prov.name) or derived.get(prov.name) or prov.default_target
        parsed.append((prov.name, Target.parse(text, flag=f"--{prov.name}-api-target")))
    ca = cfg.extra_ca_certs
    if ca is not None and not ca.is_file():
        raise ConfigError(f"--extra-ca-certs: {str(ca)!r} is not a readable file")
    if not cfg.api_proxy:
        return None
    keys = tuple((n, environ[n]) for n in KEY_NAMES if environ.get(n))
    if not keys:
        return None
    for name, value in keys:
        if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ConfigError(f"{name} holds whitespace or a control character; the API proxy "
                              "cannot send it (fix the variable, or pass --no-api-proxy)")
    have = {n for n, _ in keys}
    providers = tuple(p.name for p in PROVIDERS if have & set(p.key_names))
    return Sidecar(keys, providers, tuple(parsed), ca, cfg.api_rate_limits)


def agent_env(sc: Sidecar, host: str) -> list[tuple[str, str]]:
    """The command's variables: base URLs and placeholders for the configured providers, and
    every key name awf saw set to the placeholder (a real key never reaches the command)."""
    netloc = f"[{host}]" if ":" in host else host
    out: dict[str, str] = {name: PLACEHOLDER for name in sc.key_names()}
    for prov in PROVIDERS:
        if prov.name in sc.providers:
            url = f"http://{netloc}:{prov.port}"
            for name, template in _AGENT_VARS[prov.name]:
                out[name] = template.format(url=url)
    return sorted(out.items())


def with_no_proxy(value: str, host: str) -> str:
    items = [i for i in value.split(",") if i]
    return ",".join(items if host in items else [*items, host])


def proxy_client_args(sc: Sidecar, listen: str) -> list[str]:
    """The run's awf-proxy flags for the sidecar's egress: a listener on loopback (`listen`,
    HOST:PORT), and the client `api-proxy` from 127.0.0.1 allowed each target on its port only
    (docs/proxy.md §12). The agent's allowlist is left alone: it never holds the targets."""
    targets = sorted({(t.host, t.port) for _, t in sc.targets})
    entries = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in targets)
    return ["--listen", listen, "--client", f"{CLIENT}={CLIENT_FROM}",
            "--client-allow-domains", f"{CLIENT}={entries}"]


def egress_url(listen: str) -> str:
    return f"http://{listen}"


def free_loopback(host: str = "127.0.0.1") -> str:
    """netns backend: HOST:PORT of a free loopback port of the host, for the proxy's sidecar
    listener (picked, then bound by awf-proxy a moment later)."""
    import socket

    with socket.socket(socket.AF_INET) as s:
        s.bind((host, 0))
        return f"{host}:{s.getsockname()[1]}"


def sidecar_argv(sc: Sidecar, *, listen_host: str, keys_file: str, log_dir: str,
                 extra_ca_certs: str | None) -> list[str]:
    """awf-api-proxy's flags (besides --egress-proxy, which api_entry adds)."""
    args = ["--listen-host", listen_host, "--port-base", str(PORT_BASE),
            "--keys-file", keys_file, "--log-dir", log_dir]
    for name, target in sc.targets:
        args += [f"--{name}-api-target", target.netloc]
    if extra_ca_certs is not None:
        args += ["--extra-ca-certs", extra_ca_certs]
    for flag, n in sc.rate_limits:
        args += [flag, str(n)]
    return args


def entry_spec(sidecar: Sequence[str], *, egress_listen: str, lease: str | None) -> str:
    """containers.api_entry's SPEC_JSON (no key in it: the sidecar reads its keys file)."""
    return json.dumps({"sidecar": list(sidecar), "egress_proxy": egress_url(egress_listen),
                       "lease": lease})


# --- the keys file ----------------------------------------------------------------------------


def keys_dir(run: str) -> Path:
    return KEYS_ROOT / f"awf-{run}"


def write_keys(sc: Sidecar, run: str, uid: int, gid: int) -> Path:
    """/dev/shm/awf-<run>/api-keys: 0400 in a 0700 directory, both owned by uid:gid (the
    sidecar's user; awf-api-proxy refuses a file it does not own)."""
    d = keys_dir(run)
    d.mkdir(mode=0o700)
    path = d / "api-keys"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o400)
    try:
        os.write(fd, "".join(f"{k}={v}\n" for k, v in sc.keys).encode())
        if os.geteuid() == 0:
            os.fchown(fd, uid, gid)
    finally:
        os.close(fd)
    (d / "owner").write_text(f"{os.getpid()}\n")  # for `awf cleanup` (dead_keys)
    if os.geteuid() == 0:
        os.chown(d, uid, gid)
    return path


def dead_keys(*, everything: bool = False) -> list[str]:
    """Runs whose keys directory is left and whose awf (its `owner` pid) is gone: a killed
    awf; `awf cleanup` wipes them."""
    out = []
    for d in sorted(KEYS_ROOT.glob("awf-*")):
        if not (d / "api-keys").exists():
            continue
        if not everything:
            try:
                os.kill(int((d / "owner").read_text()), 0)
                continue
            except (OSError, ValueError):
                pass
        out.append(d.name[len("awf-"):])
    return out


def wipe_keys(run: str) -> None:
    """Overwrite the keys file with zeros, then remove it and its directory; idempotent."""
    d = keys_dir(run)
    path = d / "api-keys"
    with contextlib.suppress(OSError):
        size = path.stat().st_size
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.write(fd, b"\0" * size)
        finally:
            os.close(fd)
    shutil.rmtree(d, ignore_errors=True)


# --- the summary ------------------------------------------------------------------------------


def summary_lines(logs: Path) -> list[str]:
    """`api-proxy: openai 2 requests (1 failed), 16 in / 10 out tokens`, one line per provider
    seen in api-proxy.jsonl; nothing when there is no such log."""
    path = logs / LOG_SUBDIR / "api-proxy.jsonl"
    per: dict[str, list[int]] = {}
    try:
        text = path.read_text()
    except OSError:
        return []
    for raw in text.splitlines():
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        row = per.setdefault(str(rec.get("provider")), [0, 0, 0, 0])
        row[0] += 1
        status = rec.get("status")
        if not isinstance(status, int) or not 200 <= status < 400:
            row[1] += 1
        for i, key in ((2, "input_tokens"), (3, "output_tokens")):
            value = rec.get(key)
            if isinstance(value, int):
                row[i] += value
    lines = []
    for provider, (n, failed, tin, tout) in sorted(per.items()):
        bad = f" ({failed} failed)" if failed else ""
        lines.append(f"api-proxy: {provider} {n} request{'s' if n != 1 else ''}{bad}, "
                     f"{tin} in / {tout} out tokens")
    return lines


# --- the netns backend: host processes ----------------------------------------------------------

HOST_USER = (65534, 65534)  # nobody: neither the command's user nor root, so the command
# cannot read the keys file (0400, in a 0700 directory) whoever it runs as


def _others_can_run(paths: Sequence[str]) -> bool:
    """Whether a user with no rights of its own can run this Python: every directory up to
    each path searchable (o+x), each path readable (o+r). Not so for a pyenv under /root."""
    import stat

    for path in paths:
        p = Path(os.path.realpath(path))
        for d in [p, *p.parents]:
            try:
                mode = d.stat().st_mode
            except OSError:
                return False
            need = stat.S_IXOTH if d != p or stat.S_ISDIR(mode) else stat.S_IROTH
            if not mode & need:
                return False
    return True


def host_user() -> tuple[int, int]:
    """nobody when awf is root and its Python is usable by anyone (a system install); else
    awf's own user (as root: still no capabilities; see docs/decisions.md)."""
    import sys

    if os.geteuid() == 0 and _others_can_run([sys.executable, sys.prefix, sys.base_prefix]):
        return HOST_USER
    return os.geteuid(), os.getegid()


class HostSidecar:
    """containers.api_entry as a host process (netns backend), listening on the veth's host
    address; run as nobody with no capabilities, dying with awf (pdeathsig)."""

    def __init__(self, sc: Sidecar, *, run: str, listen_host: str, egress_listen: str,
                 logs: Path) -> None:
        import subprocess
        import sys

        uid, gid = host_user()
        self.run = run
        log_dir = logs / LOG_SUBDIR
        log_dir.mkdir(mode=0o755, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(log_dir, uid, gid)
        keys = write_keys(sc, run, uid, gid)
        ca = None
        if sc.extra_ca_certs is not None:  # a copy nobody can read, next to the keys
            ca_path = keys_dir(run) / "extra-ca.pem"
            shutil.copyfile(sc.extra_ca_certs, ca_path)
            if os.geteuid() == 0:
                os.chown(ca_path, uid, gid)
            ca = str(ca_path)
        spec = entry_spec(sidecar_argv(sc, listen_host=listen_host, keys_file=str(keys),
                                       log_dir=str(log_dir), extra_ca_certs=ca),
                          egress_listen=egress_listen, lease=None)
        drop = ["--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all",
                "--no-new-privs", "--pdeathsig", "KILL"]
        if (uid, gid) != (os.geteuid(), os.getegid()):
            drop = ["--reuid", str(uid), "--regid", str(gid), "--clear-groups", *drop]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        self.proc = subprocess.Popen(
            ["setpriv", *drop, "--", sys.executable, "-m", "containers.api_entry", spec],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, cwd="/")
        self.lines: list[str] = []

    def wait_ready(self, timeout: float) -> None:
        """Until `awf-api-proxy ready`; SandboxError (exit 125) with its last lines otherwise.
        Its later lines keep being read (and kept, the last 50) so it never blocks on stderr."""
        import select
        import threading
        import time

        from netfilter.errors import SandboxError

        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        deadline = time.monotonic() + timeout
        buf = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SandboxError(f"the API proxy sidecar was not ready within {timeout:g} s; "
                                   f"its last lines: {self.tail()}")
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self.proc.wait(5)
                raise SandboxError(f"the API proxy sidecar failed to start (status "
                                   f"{self.proc.returncode}); its last lines: {self.tail()}")
            buf += chunk
            *done, buf = buf.split(b"\n")
            self.lines += [ln.decode(errors="replace") for ln in done]
            if any(ln.startswith(FAILED) for ln in self.lines):
                continue  # it exits next; the EOF above reports it
            if any(ln == READY for ln in self.lines):
                break

        def drain() -> None:
            assert self.proc.stderr is not None
            for raw in self.proc.stderr:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                del self.lines[:-50]

        threading.Thread(target=drain, name="api-sidecar-stderr", daemon=True).start()

    def tail(self) -> str:
        return " | ".join(ln for ln in self.lines[-8:] if ln.strip()) or "no output"

    def poll(self) -> int | None:
        return self.proc.poll()

    def stop(self, grace: float) -> None:
        import signal
        import subprocess

        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(grace)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        finally:
            wipe_keys(self.run)


# --- the Docker backend: a container in the proxy container's network namespace ---------------

CONTAINER_KEYS = "/run/awf/api-keys"
CONTAINER_CA = "/run/awf/extra-ca.pem"
CONTAINER_LEASE = "/run/awf-lease"


def docker_spec(sc: Sidecar, *, name: str, image: str, proxy_container: str,
                listen_host: str, run: str, logs: Path, lease: Path, uid: int, gid: int,
                labels: tuple[tuple[str, str], ...]) -> ContainerSpec:
    """awf-<run>-api: containers.api_entry as uid:gid with no capabilities, sharing the proxy
    container's network namespace (so it listens on the proxy's address, reaches the run's
    awf-proxy on that namespace's loopback, EGRESS_LISTEN_DOCKER, as the client `api-proxy`,
    and the proxy container's `awf_proxy` output rules bind it too). The keys file (and
    --extra-ca-certs) are bind-mounted read-only; its Env holds no key."""
    from containers.spec import ContainerSpec, Limits, Mount

    keys = write_keys(sc, run, uid, gid)
    mounts = [Mount(str(keys), CONTAINER_KEYS), Mount(str(logs), "/logs", read_only=False),
              Mount(str(lease), CONTAINER_LEASE)]
    ca = None
    if sc.extra_ca_certs is not None:
        copy = keys_dir(run) / "extra-ca.pem"
        shutil.copyfile(sc.extra_ca_certs, copy)
        if os.geteuid() == 0:
            os.chown(copy, uid, gid)
        mounts.append(Mount(str(copy), CONTAINER_CA))
        ca = CONTAINER_CA
    log_dir = f"/logs/{LOG_SUBDIR}"
    spec = entry_spec(sidecar_argv(sc, listen_host=listen_host, keys_file=CONTAINER_KEYS,
                                   log_dir=log_dir, extra_ca_certs=ca),
                      egress_listen=EGRESS_LISTEN_DOCKER, lease=CONTAINER_LEASE)
    mib = 1024 * 1024
    return ContainerSpec(
        name=name, image=image, entrypoint=("python", "-m", "containers.api_entry"),
        command=(spec,), labels=labels, network_mode=f"container:{proxy_container}",
        mounts=tuple(mounts), tmpfs=(("/tmp", "rw,size=16m,mode=1777"),),
        cap_drop=("ALL",), security_opt=("no-new-privileges",), read_only=True,
        user=f"{uid}:{gid}", limits=Limits(memory=512 * mib, memory_swap=512 * mib, pids=128),
    )
