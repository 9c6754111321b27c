"""The agent container's PID 1: set up the sandbox, then run the user's command without privilege.

Runs on the image's own Python (stdlib; libseccomp through ctypes), as root holding only SYS_ADMIN,
SYS_CHROOT, SETUID, SETGID, SETPCAP and KILL, under awf's stage-1 seccomp profile and
no-new-privileges (docs/architecture.md §9.5):

1. Read /run/awf/agent.json and the secrets file, then unmount the secrets.
2. Lay out the root: the merged-/usr symlinks, the container's /dev, a read-only /sys, a fresh
   /proc with hidepid=2 (other users' processes, PID 1 among them, are invisible) and Docker's
   masks over its dangerous files, the one-shot-token library; then make the root read-only.
3. Fork. The child chroots, changes to the working directory (falling back to $HOME, then /),
   empties its bounding and ambient capability sets, becomes the caller's uid/gid, drops every
   capability, sets no-new-privileges, adds seccomp stage 2 through libseccomp (no mount,
   umount, chroot, unshare, setns, pivot_root) and execs the command, secrets in its
   environment only.
4. PID 1 keeps CAP_KILL alone, forwards signals, reaps, and exits with the command's status.
   It also waits on awf's lease (/run/awf-lease): when awf is gone, even SIGKILLed, PID 1
   exits and the kernel ends every process of the container with it.

Any failure before exec is exit 125 with one line `awf-agent: ...` on stderr: the command never
runs half-protected.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from typing import Any

SPEC = "/run/awf/agent.json"
LEASE = "/run/awf-lease"  # awf holds an exclusive flock on it for as long as it lives
SECRETS = "/run/awf/secrets.json"
CHROOT_LIBRARY = "/run/awf/one_shot_token.so"  # the one-shot library's copy inside the chroot
SETUP_FAILED = 125
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 1, 24, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_KILL = 5
CAP_VERSION_3 = 0x20080522
# Docker's masked and read-only /proc paths, applied again to our fresh procfs
PROC_MASKED_FILES = ("kcore", "keys", "latency_stats", "timer_list", "timer_stats",
                     "sched_debug", "sysrq-trigger")
PROC_MASKED_DIRS = ("acpi", "scsi")
PROC_READ_ONLY = ("bus", "fs", "irq", "sys")
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGWINCH)

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    pass


def check(result: int, what: str) -> None:
    """A libc call's result: 0, or SetupError naming `what` and errno."""
    if result != 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    enc = [None if s is None else s.encode() for s in (source, target, fstype, data)]
    check(_libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]),
           f"mount {target}")


def bind(source: str, target: str, *, read_only: bool, recursive: bool = False) -> None:
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    if read_only:
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def set_caps(keep: int | None) -> None:
    """Effective and permitted = {keep} (or nothing), inheritable empty."""
    header = _CapHeader(CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    if keep is not None:
        data[keep // 32].effective = data[keep // 32].permitted = 1 << (keep % 32)
    check(_libc.capset(ctypes.byref(header), data), "capset")


def drop_bounding_set() -> None:
    check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient caps")
    last = 40
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except OSError:
        pass
    for cap in range(last + 1):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:
            raise SetupError(f"drop capability {cap}: {os.strerror(ctypes.get_errno())}")


# --- setup (PID 1, root, before the fork) ---------------------------------------------------


def read_inputs() -> tuple[dict[str, Any], dict[str, str]]:
    with open(SPEC) as f:
        spec: dict[str, Any] = json.load(f)
    secrets: dict[str, str] = {}
    if os.path.exists(SECRETS) and os.path.getsize(SECRETS) > 0:
        with open(SECRETS) as f:
            secrets = json.load(f)
    if spec.get("secrets_mounted"):
        # gone from this mount namespace: nothing in the sandbox can open it again
        check(_libc.umount2(SECRETS.encode(), MNT_DETACH), f"unmount {SECRETS}")
    return spec, secrets


def lay_out(spec: dict[str, Any]) -> None:
    root = spec["root"]
    for path, target in spec.get("symlinks", []):
        os.symlink(target, root + path)
    if root != "/":
        for name in ("dev", "sys", "proc", "run", "var"):
            os.makedirs(f"{root}/{name}", exist_ok=True)
        os.symlink("/run", f"{root}/var/run")
        os.symlink("/tmp", f"{root}/var/tmp")
        bind("/dev", f"{root}/dev", read_only=False, recursive=True)
        bind("/sys", f"{root}/sys", read_only=True, recursive=True)
    mount_proc(f"{root.rstrip('/')}/proc")
    library = spec.get("one_shot_library")
    if library and root != "/":
        os.makedirs(f"{root}/run/awf", exist_ok=True)
        shutil.copy(library, root + CHROOT_LIBRARY)
        os.chmod(root + CHROOT_LIBRARY, 0o755)
    sock = spec.get("docker_socket")
    if sock and root != "/":
        os.symlink(sock, f"{root}/run/docker.sock")
    if root != "/":
        mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def mount_proc(proc: str) -> None:
    """A fresh procfs at `proc` with hidepid=2, then Docker's masks and read-only paths."""
    mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
    for name in PROC_MASKED_FILES:
        if os.path.exists(f"{proc}/{name}"):
            bind("/dev/null", f"{proc}/{name}", read_only=True)
    for name in PROC_MASKED_DIRS:
        if os.path.isdir(f"{proc}/{name}"):
            mount("tmpfs", f"{proc}/{name}", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=0")
    for name in PROC_READ_ONLY:
        if os.path.isdir(f"{proc}/{name}"):
            bind(f"{proc}/{name}", f"{proc}/{name}", read_only=True, recursive=True)


def preload_path(spec: dict[str, Any]) -> str:
    return CHROOT_LIBRARY if spec["root"] != "/" else spec["one_shot_library"]


def check_preload(spec: dict[str, Any]) -> None:
    """The one-shot library must load in the command's world, or tokens would leak: exit 125."""
    root = spec["root"]
    env = {"LD_PRELOAD": preload_path(spec), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(["true"], env=env, capture_output=True, text=True, timeout=30,
                          preexec_fn=(lambda: os.chroot(root)) if root != "/" else None)
    if done.returncode != 0 or "preload" in done.stderr.lower():
        raise SetupError(f"the one-shot-token library does not load in the sandbox: "
                         f"{done.stderr.strip()[:300] or done.returncode}")


# --- the command (child) --------------------------------------------------------------------


def become_command(spec: dict[str, Any], secrets: dict[str, str], seccomp: ctypes.CDLL
                   ) -> None:
    """Runs in the child; never returns (exec) or raises SetupError."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    root, home = spec["root"], spec["home"]
    if root != "/":
        os.chroot(root)
    workdir = spec.get("workdir") or home
    missing = not _enter(workdir)
    if missing and workdir == home:  # the default: $HOME, else /
        print(f"awf-agent: working directory {home} is not there; using /", file=sys.stderr)
        os.chdir("/")
        missing = False
    drop_bounding_set()
    uid, gid = spec["uid"], spec["gid"]
    os.setgroups(spec.get("groups", []))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    set_caps(None)
    check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if missing:  # --container-workdir: made if it is not there, as `docker run -w` does, by
        try:     # the command's user; never a silent run somewhere else
            os.makedirs(workdir, exist_ok=True)
            os.chdir(workdir)
        except OSError as exc:
            raise SetupError(f"the working directory {workdir} does not exist and cannot be "
                             f"created: {exc.strerror}") from None
    env = dict(spec["env"])
    if secrets:
        env.update(secrets)
        env["LD_PRELOAD"] = preload_path(spec)
        env["AWF_ONE_SHOT_TOKENS"] = ",".join(sorted({*secrets, *spec.get("one_shot", [])}))
    for profile in spec.get("seccomp_profiles", []):  # the netns sandbox's stage 1, and more
        install_profile(seccomp, profile)
    install_stage2(seccomp, spec.get("seccomp_stage2", []))
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        print(f"awf-agent: cannot run {argv[0]!r}: {exc.strerror}", file=sys.stderr)
        os._exit(127 if exc.errno == errno.ENOENT else 126)


def _enter(where: str) -> bool:
    try:
        os.chdir(where)
        return True
    except OSError:
        return False


SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_ERRNO_EPERM = 0x00050000 | errno.EPERM


def load_seccomp() -> ctypes.CDLL:
    """libseccomp, loaded before the chroot (the host's userland need not have it)."""
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as exc:
        raise SetupError("libseccomp2 is missing from the image; seccomp stage 2 cannot be "
                         "installed") from exc
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                     ctypes.c_uint]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.c_void_p]
    return lib


class _ArgCmp(ctypes.Structure):  # libseccomp's struct scmp_arg_cmp
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


# libseccomp's enum scmp_compare, by the names Docker's profiles use
_SCMP_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
             "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "armv7l": "arm"}


def _action(name: str, errno_ret: int) -> int:
    if name == "SCMP_ACT_ALLOW":
        return SCMP_ACT_ALLOW
    if name == "SCMP_ACT_ERRNO":
        return 0x00050000 | (errno_ret & 0xFFFF)
    raise SetupError(f"seccomp action {name} is not supported here")


def install_profile(lib: ctypes.CDLL, profile: dict[str, Any]) -> None:
    """A seccomp filter from a Docker-format profile (containers/seccomp.py), for this process
    and its children: what Docker does with `seccomp=<json>`, where no Docker is involved (the
    netns backend). Native architecture only: a 32-bit syscall kills the process. Names this
    kernel or architecture does not know are skipped, as runc does."""
    default_errno = int(profile.get("defaultErrnoRet", errno.EPERM))
    default = _action(profile["defaultAction"], default_errno)
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise SetupError("seccomp_init failed")
    arch = _GOARCH.get(os.uname().machine, os.uname().machine)
    for rule in profile["syscalls"]:
        arches = rule.get("includes", {}).get("arches")
        if arches is not None and arch not in arches:
            continue
        action = _action(rule["action"], int(rule.get("errnoRet", default_errno)))
        args = rule.get("args") or []
        cmps = (_ArgCmp * max(1, len(args)))()
        for i, a in enumerate(args):
            cmps[i] = _ArgCmp(a["index"], _SCMP_OPS[a["op"]], a["value"], a.get("valueTwo", 0))
        for name in rule["names"]:
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr < 0:
                continue
            rc = lib.seccomp_rule_add_array(ctx, action, nr, len(args), cmps)
            if rc != 0 and not (action == default and rc == -errno.EACCES):
                raise SetupError(f"seccomp rule for {name} failed: {os.strerror(-rc)}")
    if lib.seccomp_load(ctx) != 0:
        raise SetupError("seccomp_load failed")


def install_stage2(lib: ctypes.CDLL, names: list[str]) -> None:
    """Stage 2: ERRNO(EPERM) for `names` on top of stage 1, for this process and its children."""
    if not names:
        return
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise SetupError("seccomp_init failed")
    for name in names:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            continue  # not a syscall of this architecture (umount on x86_64)
        if lib.seccomp_rule_add(ctx, SCMP_ACT_ERRNO_EPERM, nr, 0) != 0:
            raise SetupError(f"seccomp rule for {name} failed")
    if lib.seccomp_load(ctx) != 0:
        raise SetupError("seccomp_load failed")


# --- PID 1 after the fork -------------------------------------------------------------------


def supervise(child: int) -> int:
    for sig in FORWARDED:
        signal.signal(sig, lambda s, _f: _forward(child, s))
    status = 0
    while True:
        try:
            pid, wstatus = os.wait()
        except ChildProcessError:
            return status
        except InterruptedError:
            continue
        if pid == child:
            status = os.waitstatus_to_exitcode(wstatus)
            return 128 - status if status < 0 else status


def open_lease(path: str = LEASE) -> int | None:
    """The lease, opened while PID 1 may still read it (before its capabilities go)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def watch_lease(fd: int) -> None:
    """When awf is gone its flock is released and a shared one is granted: PID 1 exits, and the
    kernel kills every other process of the container's PID namespace with it."""

    def wait() -> None:
        fcntl.flock(fd, fcntl.LOCK_SH)
        print("awf-agent: awf is gone (its lease was released); stopping the command",
              file=sys.stderr, flush=True)
        os._exit(137)

    threading.Thread(target=wait, name="awf-lease", daemon=True).start()


def _forward(child: int, sig: int) -> None:
    try:
        os.kill(child, sig)
    except ProcessLookupError:
        pass


def main() -> int:
    lease = open_lease()
    try:
        spec, secrets = read_inputs()
        seccomp = load_seccomp()
        lay_out(spec)
        if secrets:
            check_preload(spec)
    except (OSError, SetupError, ValueError, KeyError, subprocess.SubprocessError) as exc:
        print(f"awf-agent: setup failed: {exc}", file=sys.stderr, flush=True)
        return SETUP_FAILED
    sys.stdout.flush()
    child = os.fork()
    if child == 0:
        try:
            become_command(spec, secrets, seccomp)
        except (OSError, SetupError) as exc:
            print(f"awf-agent: setup failed: {exc}", file=sys.stderr, flush=True)
        os._exit(SETUP_FAILED)
    secrets.clear()
    try:
        drop_bounding_set()
        set_caps(CAP_KILL)
    except SetupError as exc:
        print(f"awf-agent: {exc}; stopping the command", file=sys.stderr, flush=True)
        os.kill(child, signal.SIGKILL)
        return SETUP_FAILED
    if lease is not None:
        watch_lease(lease)
    return supervise(child)


if __name__ == "__main__":
    sys.exit(main())
