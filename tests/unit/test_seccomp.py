"""Stage 1 of the agent's seccomp filter, as a table (docs/architecture.md §9.6)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from containers import seccomp

ALLOW = "SCMP_ACT_ALLOW"

EVERYDAY = (
    "read", "write", "openat", "close", "execve", "mmap", "munmap", "mprotect", "brk", "futex",
    "epoll_wait", "epoll_pwait", "epoll_ctl", "poll", "ppoll", "socket", "connect", "bind",
    "listen", "accept4", "sendto", "recvfrom", "sendmsg", "recvmsg", "getsockopt", "setsockopt",
    "wait4", "waitid", "exit", "exit_group", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
    "getrandom", "statx", "newfstatat", "fstat", "lseek", "pipe2", "dup3", "dup2", "fcntl",
    "ioctl", "getdents64", "readlink", "getcwd", "chdir", "rename", "unlinkat", "mkdirat",
    "fchmodat", "clock_gettime", "clock_nanosleep", "nanosleep", "set_robust_list",
    "set_tid_address", "rseq", "prlimit64", "sched_getaffinity", "sched_yield", "getpid",
    "gettid", "kill", "tgkill", "vfork", "fork", "uname", "umask", "madvise", "eventfd2",
    "memfd_create", "copy_file_range", "sendfile", "pread64", "pwrite64", "arch_prctl",
)
# PID 1's setup: allowed here, taken away by stage 2.
SETUP = ("mount", "umount2", "chroot", "capset", "capget", "prctl", "setuid", "setgid",
         "setgroups", "setresuid", "setresgid", "setreuid", "setregid", "setfsuid", "setfsgid",
         "seccomp")


@pytest.fixture(scope="module")
def profile() -> dict[str, Any]:
    return seccomp.stage1_profile()


def rules(profile: dict[str, Any]) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = profile["syscalls"]
    return got


def rules_for(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in rules(profile) if name in r["names"]]


def allowed_unconditionally(profile: dict[str, Any], name: str) -> bool:
    return any(r["action"] == ALLOW and not r.get("args") for r in rules_for(profile, name))


@pytest.mark.parametrize("name", sorted(seccomp.DENIED))
def test_denied_in_no_allow_rule(profile: dict[str, Any], name: str) -> None:
    assert [r for r in rules_for(profile, name) if r["action"] == ALLOW] == []


@pytest.mark.parametrize("name", EVERYDAY + SETUP)
def test_everyday_and_setup_calls_allowed(profile: dict[str, Any], name: str) -> None:
    assert allowed_unconditionally(profile, name), name


def test_stage2_names_are_denied_or_allowed_for_setup_only() -> None:
    assert set(seccomp.STAGE2_DENY) == {"mount", "umount", "umount2", "chroot", "pivot_root",
                                        "unshare", "setns"}
    assert {"pivot_root", "unshare", "setns"} <= seccomp.DENIED


def test_clone_only_without_namespace_flags(profile: dict[str, Any]) -> None:
    assert seccomp.CLONE_NS_FLAGS == 0x7E020000
    (rule,) = rules_for(profile, "clone")
    assert rule["action"] == ALLOW
    assert rule["args"] == [{"index": 0, "value": 0x7E020000, "valueTwo": 0,
                             "op": "SCMP_CMP_MASKED_EQ"}]


def test_clone3_is_enosys(profile: dict[str, Any]) -> None:
    (rule,) = rules_for(profile, "clone3")
    assert rule["action"] == "SCMP_ACT_ERRNO"
    assert rule["errnoRet"] == 38


def test_personality_only_docker_values(profile: dict[str, Any]) -> None:
    got = rules_for(profile, "personality")
    assert all(r["action"] == ALLOW and len(r["args"]) == 1 for r in got)
    assert all(r["args"][0]["index"] == 0 and r["args"][0]["op"] == "SCMP_CMP_EQ" for r in got)
    assert sorted(r["args"][0]["value"] for r in got) == [0x0, 0x8, 0x20000, 0x20008,
                                                          0xFFFFFFFF]


def test_default_is_eperm(profile: dict[str, Any]) -> None:
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["defaultErrnoRet"] == 1


def test_arch_map(profile: dict[str, Any]) -> None:
    arches = {a["architecture"]: set(a["subArchitectures"]) for a in profile["archMap"]}
    assert arches == {"SCMP_ARCH_X86_64": {"SCMP_ARCH_X86", "SCMP_ARCH_X32"},
                      "SCMP_ARCH_AARCH64": {"SCMP_ARCH_ARM"}}


def test_rule_shape(profile: dict[str, Any]) -> None:
    known = {"names", "action", "args", "errnoRet", "includes"}
    for rule in rules(profile):
        assert set(rule) <= known, rule
        assert rule["names"], rule
        assert all(isinstance(n, str) and n for n in rule["names"]), rule
        assert rule["action"] in {ALLOW, "SCMP_ACT_ERRNO"}, rule
        assert ("errnoRet" in rule) == (rule["action"] == "SCMP_ACT_ERRNO"), rule


def test_no_name_twice_with_conflicting_actions(profile: dict[str, Any]) -> None:
    actions: dict[str, set[tuple[str, int | None]]] = {}
    for rule in rules(profile):
        for name in rule["names"]:
            actions.setdefault(name, set()).add((rule["action"], rule.get("errnoRet")))
    assert {n: a for n, a in actions.items() if len(a) > 1} == {}
    unconditional = [n for r in rules(profile) if not r.get("args") for n in r["names"]]
    assert len(unconditional) == len(set(unconditional))


def test_json_round_trips(profile: dict[str, Any]) -> None:
    text = seccomp.stage1_json()
    assert json.loads(text) == profile
    assert text == seccomp.stage1_json()  # stable: the same text every time
    assert " " not in text
    assert "\n" not in text
