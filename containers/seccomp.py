"""The agent container's seccomp filters (docs/architecture.md §9.6): stage 1 here, stage 2's names.

Two stages, because the container's PID 1 needs a few privileged calls that the user's command
must never have:

- **Stage 1** is this module's Docker profile, passed as `security_opt=["seccomp=<json>"]`. It
  applies to the whole container from its first instruction, PID 1 included, so it allows what
  the entrypoint's setup needs: `mount`, `umount2`, `chroot`, `capset`, `prctl`, the
  `set*id`/`setgroups` family and `seccomp` itself. It never allows the namespace and kernel
  escape hatches (`DENIED`): `unshare`, `setns`, `clone` with a `CLONE_NEW*` flag, `ptrace`,
  module and kexec loading, keyrings, `bpf`, `io_uring`, handle-based opens, the new mount API.
- **Stage 2** (`STAGE2_DENY`) is added by the entrypoint through libseccomp in the forked child
  just before it execs the user's command; filters stack, so the command runs under both and
  also loses `mount`, `umount*` and `chroot`.

Both stages deny by default with `ERRNO(EPERM)` over an allowlist close to Docker's default
profile's unconditional list (moby profiles/seccomp), not a denylist: a syscall the kernel adds
next year is refused until someone reads what it does, where a denylist would let it through
(io_uring and the new mount API arrived exactly that way, each a fresh route around old rules).
EPERM rather than a kill keeps tools that probe for a feature working on their fallback path.

Pure data: no I/O. Syscall names unknown to the host's libseccomp, or to one architecture, are
skipped by runc, so the list may name calls of newer kernels and of both architectures.
"""

from __future__ import annotations

import errno
import json

EPERM = errno.EPERM  # 1
ENOSYS = errno.ENOSYS  # 38

# CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
# | CLONE_NEWCGROUP: clone is allowed only when (flags & CLONE_NS_FLAGS) == 0.
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x2000000, 0x4000000, 0x8000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
CLONE_NS_FLAGS = (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID
                  | CLONE_NEWNET | CLONE_NEWCGROUP)  # 0x7E020000

# The personality values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, PER_LINUX32|UNAME26,
# and 0xffffffff (a query).
PERSONALITY_VALUES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# Never allowed in stage 1, whatever capabilities the container holds.
DENIED: frozenset[str] = frozenset({
    # namespaces and root switching
    "unshare", "setns", "pivot_root",
    # other processes' memory and descriptors
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp", "process_madvise",
    # the kernel itself
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "acct", "syslog", "lookup_dcookie", "quotactl", "quotactl_fd",
    "iopl", "ioperm", "uselib", "sethostname", "setdomainname", "vhangup", "fanotify_init",
    "settimeofday", "stime", "clock_settime", "clock_settime64",
    # keyrings, eBPF, perf, userfaultfd, io_uring: large attack surfaces no agent needs
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # handle-based opens (the "shocker" escape) and the new mount API, which stage 2's
    # mount/umount denial would not cover
    "open_by_handle_at", "name_to_handle_at", "open_tree", "open_tree_attr", "move_mount",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
})

# Added by the agent's entrypoint (libseccomp) just before exec of the user's command.
STAGE2_DENY: tuple[str, ...] = ("mount", "umount", "umount2", "chroot", "pivot_root", "unshare",
                                "setns")

# Docker's unconditional allowlist, less what DENIED names (io_uring_*, name_to_handle_at),
# plus calls of newer kernels that later Docker releases allow.
_ALLOW: tuple[str, ...] = (
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget",
    "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64",
    "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range", "creat",
    "dup", "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old",
    "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2",
    "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64",
    "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2",
    "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr",
    "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs",
    "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex", "futex_requeue", "futex_time64",
    "futex_wait", "futex_waitv", "futex_wake", "futimesat", "getcpu", "getcwd", "getdents",
    "getdents64", "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32",
    "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid",
    "getppid", "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid",
    "getresuid32", "getrlimit", "get_robust_list", "getrusage", "getsid", "getsockname",
    "getsockopt", "get_thread_area", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr",
    "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel",
    "ioctl", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "ioprio_get",
    "ioprio_set", "io_setup", "io_submit", "ipc", "kill", "landlock_add_rule",
    "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32", "lgetxattr",
    "link", "linkat", "listen", "listxattr", "llistxattr", "_llseek", "lremovexattr", "lseek",
    "lsetxattr", "lstat", "lstat64", "madvise", "map_shadow_stack", "membarrier", "memfd_create",
    "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2",
    "mlockall", "mmap", "mmap2", "mprotect", "mq_getsetattr", "mq_notify", "mq_open",
    "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64",
    "mq_unlink", "mremap", "mseal", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock",
    "munlockall", "munmap", "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2",
    "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
    "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2",
    "prlimit64", "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev",
    "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom",
    "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "rename",
    "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction",
    "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity",
    "sched_getattr", "sched_getparam", "sched_get_priority_max", "sched_get_priority_min",
    "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
    "seccomp", "select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send",
    "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsgid32",
    "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setitimer",
    "setpgid", "setpriority", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid",
    "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid",
    "setsockopt", "set_thread_area", "set_tid_address", "setuid", "setuid32", "setxattr",
    "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4",
    "sigprocmask", "sigreturn", "socket", "socketcall", "socketpair", "splice", "stat", "stat64",
    "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs",
    "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun",
    "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create",
    "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times",
    "tkill", "truncate", "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat",
    "utime", "utimensat", "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid",
    "waitpid", "write", "writev",
)

# For PID 1's setup only: Docker grants these with CAP_SYS_ADMIN or CAP_SYS_CHROOT; stage 2
# takes them away from the user's command.
_SETUP: tuple[str, ...] = ("mount", "umount", "umount2", "chroot")

# Architecture-specific calls, as Docker's profile has them ("includes" by Go GOARCH names).
_ARCH_ALLOW: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("arch_prctl",), ("amd64", "x32")),
    (("modify_ldt",), ("amd64", "x32", "x86")),
    (("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush",
      "set_tls"), ("arm", "arm64")),
)


def _masked_eq(index: int, mask: int, value: int) -> dict[str, object]:
    return {"index": index, "value": mask, "valueTwo": value, "op": "SCMP_CMP_MASKED_EQ"}


def stage1_profile() -> dict[str, object]:
    """Stage 1 as a Docker seccomp profile (moby's profiles/seccomp/default.json format)."""
    syscalls: list[dict[str, object]] = [
        {"names": sorted(set(_ALLOW) | set(_SETUP)), "action": "SCMP_ACT_ALLOW"},
    ]
    for names, arches in _ARCH_ALLOW:
        syscalls.append({"names": list(names), "action": "SCMP_ACT_ALLOW",
                         "includes": {"arches": list(arches)}})
    # Docker's masked-equal: (arg & value) == valueTwo. Flags are arg 0 on x86_64 and aarch64
    # (s390x, which swaps the first two arguments, is not a target).
    syscalls.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                     "args": [_masked_eq(0, CLONE_NS_FLAGS, 0)]})
    # ENOSYS, not EPERM: glibc then falls back to clone, whose flags the rule above can see
    # (clone3 passes them in memory, out of a seccomp filter's reach).
    syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    for value in PERSONALITY_VALUES:
        syscalls.append({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                         "args": [{"index": 0, "value": value, "valueTwo": 0,
                                   "op": "SCMP_CMP_EQ"}]})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64",
             "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
        ],
        "syscalls": syscalls,
    }


def stage1_json() -> str:
    """Stage 1 as compact, stable JSON: the text of Docker's `seccomp=` security option."""
    return json.dumps(stage1_profile(), sort_keys=True, separators=(",", ":"))


# --- no setuid or setgid files (the netns sandbox) ----------------------------------------------

S_ISUID, S_ISGID = 0o4000, 0o2000
O_CREAT, O_TMPFILE_BIT = 0o100, 0o20000000  # x86_64 and aarch64 (asm-generic) values
# (syscall, index of its flags argument or None, index of its mode argument)
_MODE_CALLS: tuple[tuple[str, int | None, int], ...] = (
    ("chmod", None, 1), ("fchmod", None, 1), ("fchmodat", None, 2), ("fchmodat2", None, 2),
    ("creat", None, 1), ("mknod", None, 1), ("mknodat", None, 2),
    ("open", 1, 2), ("openat", 2, 3),
)


def no_setid_files_profile() -> dict[str, object]:
    """A filter stacked on stage 1 in the netns sandbox: no file may get a setuid or setgid bit.

    With an idmapped workspace the command owns, in the mount, files that are root's on disk;
    a setuid bit set through it would hand the host a setuid-root program. Refused with EPERM
    in chmod, fchmod, fchmodat(2), creat, mknod(at) and open(at) with O_CREAT or O_TMPFILE;
    openat2 (whose mode is out of a filter's reach, in memory) gets ENOSYS, so callers fall
    back to openat."""
    rules: list[dict[str, object]] = []
    for name, flags, mode in _MODE_CALLS:
        for bit in (S_ISUID, S_ISGID):
            if flags is None:
                rules.append({"names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
                              "args": [_masked_eq(mode, bit, bit)]})
                continue
            for create in (O_CREAT, O_TMPFILE_BIT):
                rules.append({"names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
                              "args": [_masked_eq(flags, create, create),
                                       _masked_eq(mode, bit, bit)]})
    rules.append({"names": ["openat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}


# --- no keystrokes pushed into the caller's terminal (the netns sandbox) ------------------------

TIOCSTI, TIOCLINUX = 0x5412, 0x541C


def no_terminal_injection_profile() -> dict[str, object]:
    """A filter stacked on stage 1 in the netns sandbox: no TIOCSTI or TIOCLINUX ioctl.

    The command shares awf's session, so its controlling terminal is the caller's: TIOCSTI
    would push keystrokes into the caller's shell, run as the caller (root, often) once awf
    exits. The Docker backend's command has a terminal of its own. The request is compared on
    its low 32 bits, the ones the kernel reads, so high bits cannot slip past the filter."""
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
         "args": [_masked_eq(1, 0xFFFFFFFF, request)]} for request in (TIOCSTI, TIOCLINUX)]}
