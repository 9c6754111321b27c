"""The netns sandbox's setup: lay out containers/sandbox.py's spec, then become the command.

Runs as root with every capability, as the first child of tini in the run's network, PID and
(private) mount namespaces, started by awf with the spec in an inherited memfd (`main(fd)`;
the secrets forwarded with -e never touch a disk). Then, in this order:

1. Read the spec and close the memfd; load libseccomp.
2. A mount namespace of its own, all private (`private_mounts`): no mount below can reach
   another namespace, whoever started this. Open every bind source (O_PATH) before anything
   is mounted: the root is a tmpfs over /tmp, which may hide a source (a workspace under /tmp).
3. Mount the spec's table in order. A target is reached one component at a time from the
   root with O_NOFOLLOW (missing parts made with mkdirat/openat on the way), must contain no
   symlink (a planted link must neither steer a mount nor make this process create anything
   on the host) and is pinned by an O_PATH descriptor that the mount goes onto: a credential
   mask on a symlink is skipped (the link then leads into the sandbox's own tree, where its
   target is masked or absent), any other is a setup failure.
   Binds are made with open_tree/mount_setattr/move_mount, their flags set before they are
   attached; the workspace is an idmapped bind when the spec says so.
4. The merged-/usr links, a minimal /dev (null, zero, full, random, urandom, tty, a new
   devpts instance, a private /dev/shm), a fresh read-only sysfs (/sys/firmware masked), the
   hidepid procfs with Docker's masks (entry.mount_proc), empty /run and /var; the root
   read-only.
5. With a gate (`main(fd, gate)`, a pipe's read end): wait for awf's go, one byte `g`, which
   awf writes once the proxy is up and the self-test has passed. The setup above runs while
   awf waits for those; the command does not exist before the go. End of file or anything
   else (awf failed or is stopping the run): exit 125, nothing run.
6. entry.become_command: chroot, working directory, bounding and ambient sets emptied, the
   caller's or SANDBOX_ID's uid and gid, no capabilities, no_new_privs, the seccomp profiles
   (stage 1, no setuid files) and stage 2, exec.

Any failure before exec is exit 125 with one line `awf-sandbox: ...` on stderr: the command
never runs half-protected.
"""

from __future__ import annotations

import ctypes
import json
import os
import stat
import sys
from typing import Any

from containers.agent import entry
from containers.agent.entry import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    SetupError,
)

SETUP_FAILED = 125
CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
MS_PRIVATE = 1 << 18
AT_FDCWD, AT_EMPTY_PATH, AT_RECURSIVE = -100, 0x1000, 0x8000
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 1, os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH, MOVE_MOUNT_T_EMPTY_PATH = 0x4, 0x40
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_IDMAP = 1, 2, 4, 0x100000
# the same numbers on x86_64 and aarch64 (new calls share one table)
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "rw": 0}

_libc = ctypes.CDLL(None, use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def read_spec(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    spec: dict[str, Any] = json.loads(b"".join(chunks))
    return spec


def _tmpfs(target: str, options: str) -> None:
    flags, data = 0, []
    for opt in options.split(","):
        if opt in _FLAGS:
            flags |= _FLAGS[opt]
        else:
            data.append(opt)
    entry.mount("tmpfs", target, "tmpfs", flags, ",".join(data))


def _mountpoint(root: str, target: str, *, is_dir: bool) -> int | None:
    """`target` pinned by an O_PATH descriptor, its missing parts made on the way; None if a
    symlink lies on the way or it is outside the root. The walk goes one component at a time
    from the root, each opened with O_NOFOLLOW relative to the last and each missing one made
    there (mkdirat, openat): a link planted in the workspace can neither steer a mount nor make
    this process, root outside any chroot, create a file or directory elsewhere on the host.
    The mount then goes onto the descriptor, not the path, leaving no window between the
    check and the mount."""
    if target != root and not target.startswith(root + "/"):
        return None
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    parts = [p for p in target[len(root):].split("/") if p]
    for i, name in enumerate(parts):
        try:
            try:
                step = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                if i < len(parts) - 1 or is_dir:
                    os.mkdir(name, 0o755, dir_fd=fd)
                else:
                    os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                     | os.O_CLOEXEC, 0o644, dir_fd=fd))
                step = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        finally:
            os.close(fd)
        fd = step
        if stat.S_ISLNK(os.fstat(fd).st_mode):
            os.close(fd)
            return None
    return fd


def _userns(uid_map: list[int], gid_map: list[int]) -> int:
    """A user namespace mapping on-disk uid_map[0] to uid_map[1] (and the gids alike), for
    an idmapped mount; its descriptor. A forked child unshares it and waits; /proc here is the
    host's (this process is in a new PID namespace), so the child names itself by /proc/self."""
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(hold_w)
        ok = _libc.unshare(CLONE_NEWUSER) == 0
        os.write(ready_w, (os.readlink("/proc/self") if ok else "-").encode())
        os.read(hold_r, 1)
        os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    try:
        host_pid = os.read(ready_r, 64).decode()
        if not host_pid.isdigit():
            raise SetupError("cannot make the user namespace for the idmapped workspace")
        with open(f"/proc/{host_pid}/uid_map", "w") as f:
            f.write(f"{uid_map[0]} {uid_map[1]} 1\n")
        with open(f"/proc/{host_pid}/gid_map", "w") as f:
            f.write(f"{gid_map[0]} {gid_map[1]} 1\n")
        return os.open(f"/proc/{host_pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(hold_w)
        os.close(ready_r)
        os.waitpid(pid, 0)


def _syscall(nr: int, *args: Any) -> int:
    rc: int = _libc.syscall(ctypes.c_long(nr), *args)
    if rc < 0:
        raise SetupError(f"syscall {nr}: {os.strerror(ctypes.get_errno())}")
    return rc


def _bind(source_fd: int, target_fd: int, what: str, *, read_only: bool, nodev: bool,
          idmap: tuple[list[int], list[int]] | None = None) -> None:
    """A bind of `source_fd` onto `target_fd`, its flags (and idmapping) set on the detached
    copy before it is attached: never a remount by path."""
    attrs = MOUNT_ATTR_NOSUID | (MOUNT_ATTR_NODEV if nodev else 0)
    attrs |= MOUNT_ATTR_RDONLY if read_only else 0
    userns = -1
    try:
        if idmap is not None:
            userns = _userns(*idmap)
            attrs |= MOUNT_ATTR_IDMAP
        tree = _syscall(SYS_OPEN_TREE, ctypes.c_int(source_fd), b"",
                        ctypes.c_uint(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH))
        try:
            attr = _MountAttr(attrs, 0, 0, max(userns, 0))
            _syscall(SYS_MOUNT_SETATTR, ctypes.c_int(tree), b"", ctypes.c_uint(AT_EMPTY_PATH),
                     ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
            _syscall(SYS_MOVE_MOUNT, ctypes.c_int(tree), b"", ctypes.c_int(target_fd), b"",
                     ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH))
        finally:
            os.close(tree)
    except SetupError as exc:
        raise SetupError(f"bind {what}: {exc}") from exc
    finally:
        if userns >= 0:
            os.close(userns)


def private_mounts() -> None:
    """A mount namespace of this process's own, every mount in it private, before anything is
    mounted: whatever started the setup (awf puts it in a private namespace already), no mount
    made here can reach another namespace, the host's least of all."""
    entry.check(_libc.unshare(CLONE_NEWNS), "unshare a mount namespace")
    entry.mount(None, "/", None, MS_REC | MS_PRIVATE)


def lay_out(spec: dict[str, Any]) -> None:
    root = spec["root"]
    if not os.path.isabs(root) or os.path.normpath(root) == "/":
        raise SetupError(f"the sandbox's root must be a directory of its own, not {root!r}")
    private_mounts()
    if os.path.realpath(root) != root:
        raise SetupError(f"{root} is a symlink; the sandbox's root cannot be laid out there")
    mounts: list[dict[str, Any]] = spec["mounts"]
    sources = {i: os.open(m["source"], os.O_PATH | os.O_CLOEXEC)
               for i, m in enumerate(mounts) if m["type"] in ("bind", "idmap")}
    try:
        for i, m in enumerate(mounts):
            target = m["target"]
            is_dir = m["type"] == "tmpfs" or stat.S_ISDIR(os.fstat(sources[i]).st_mode)
            pinned = _mountpoint(root, target, is_dir=is_dir)
            if pinned is None:
                if m["mask"]:
                    continue
                raise SetupError(f"mount target {target} is reached through a symlink")
            try:
                if m["type"] == "tmpfs":
                    _tmpfs(f"/proc/self/fd/{pinned}", m["options"])
                else:
                    _bind(sources[i], pinned, target, read_only=m["read_only"],
                          nodev=m["source"] != "/dev/null",  # a mask reads empty
                          idmap=(m["uid_map"], m["gid_map"]) if m["type"] == "idmap" else None)
            finally:
                os.close(pinned)
    finally:
        for fd in sources.values():
            os.close(fd)
    for path, link in spec["symlinks"]:
        os.symlink(link, root + path)
    for name in ("dev", "sys", "proc", "run", "var"):
        os.makedirs(f"{root}/{name}", mode=0o755, exist_ok=True)
    for name, link in (("run", "/run"), ("tmp", "/tmp")):
        if not os.path.lexists(f"{root}/var/{name}"):  # a workspace under /var/tmp made it
            os.symlink(link, f"{root}/var/{name}")
    _dev(f"{root}/dev")
    entry.mount("sysfs", f"{root}/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if os.path.isdir(f"{root}/sys/firmware"):  # Docker's mask (ACPI tables, EFI variables)
        entry.mount("tmpfs", f"{root}/sys/firmware", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV,
                    "size=0")
    entry.mount_proc(f"{root}/proc")
    entry.mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _dev(dev: str) -> None:
    entry.mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
    for name in DEVICES:
        os.close(os.open(f"{dev}/{name}", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666))
        entry.mount(f"/dev/{name}", f"{dev}/{name}", None, MS_BIND)
        entry.mount(None, f"{dev}/{name}", None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NOEXEC)
    os.mkdir(f"{dev}/pts")
    entry.mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620")
    os.symlink("pts/ptmx", f"{dev}/ptmx")
    os.mkdir(f"{dev}/shm")
    entry.mount("tmpfs", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                "mode=1777,size=64m")
    for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                       ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(link, f"{dev}/{name}")
    entry.mount(None, dev, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC)


GO = b"g"


def wait_for_go(gate: int) -> bool:
    """Block until awf writes GO on the gate (True) or closes it without (False)."""
    try:
        while True:
            try:
                got = os.read(gate, 1)
            except InterruptedError:
                continue
            return got == GO
    finally:
        os.close(gate)


def main(fd: int, gate: int | None = None) -> int:
    try:
        spec = read_spec(fd)
        seccomp = entry.load_seccomp()
        lay_out(spec)
    except (OSError, SetupError, ValueError, KeyError) as exc:
        print(f"awf-sandbox: setup failed: {exc}", file=sys.stderr, flush=True)
        return SETUP_FAILED
    if gate is not None and not wait_for_go(gate):
        return SETUP_FAILED  # awf stopped the run before the command: it says why
    try:
        entry.become_command(spec, {}, seccomp)
    except (OSError, SetupError) as exc:
        print(f"awf-sandbox: setup failed: {exc}", file=sys.stderr, flush=True)
    return SETUP_FAILED


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None))
