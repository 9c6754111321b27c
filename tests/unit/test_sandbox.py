"""The netns sandbox's spec (containers/sandbox.py) and its extra seccomp filter."""

from __future__ import annotations

from typing import Any

import pytest

from containers import seccomp
from containers.hostview import HostFacts
from containers.sandbox import MASK_TMPFS, ROOT, SANDBOX_ID, identity, plan, usable_workspace

MERGED_USR = {"/bin": "usr/bin", "/sbin": "usr/sbin", "/lib": "usr/lib", "/lib64": "usr/lib64"}
DIRS = {"/usr", "/etc/ssl", "/src/proj", "/src/proj/.config/heroku", "/root/.cargo/bin"}
FILES = {"/etc/passwd", "/src/proj/.npmrc"}


def facts() -> HostFacts:
    return HostFacts(exists=lambda p: p in FILES or p in DIRS or p in MERGED_USR,
                     is_dir=lambda p: p in DIRS, readlink=MERGED_USR.get)


def make(environ: dict[str, str] | None = None, *, workspace: str | None = "/src/proj",
         hidden: tuple[str, ...] = (), explicit: tuple[tuple[str, str], ...] = ()
         ) -> dict[str, Any]:
    return plan(command=("echo hi",), environ=environ or {}, home="/root", workspace=workspace,
                workspace_owner=(0, 0), proxy_url="http://10.0.0.1:3128", no_proxy="localhost",
                env_all=False, exclude=(), env_file=(), explicit=explicit, hidden=hidden,
                facts=facts())


def by_target(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["target"]: m for m in spec["mounts"]}


@pytest.mark.parametrize(("environ", "want"), [
    ({}, (SANDBOX_ID, SANDBOX_ID, False)),
    ({"SUDO_UID": "1000", "SUDO_GID": "1001"}, (1000, 1001, True)),
    ({"SUDO_UID": "0", "SUDO_GID": "0"}, (SANDBOX_ID, SANDBOX_ID, False)),  # sudo from root
    ({"SUDO_UID": "x", "SUDO_GID": "1"}, (SANDBOX_ID, SANDBOX_ID, False)),
    ({"SUDO_UID": "1000"}, (SANDBOX_ID, SANDBOX_ID, False)),
])
def test_identity_is_never_root(environ: dict[str, str], want: tuple[int, int, bool]) -> None:
    assert identity(environ) == want
    assert identity(environ)[0] != 0


def test_root_first_then_parents_before_children() -> None:
    mounts = make()["mounts"]
    assert mounts[0] == {"type": "tmpfs", "target": ROOT, "options": mounts[0]["options"],
                         "mask": False}
    targets = [m["target"] for m in mounts]
    for i, t in enumerate(targets):
        for later in targets[i + 1:]:
            assert not (t + "/").startswith(later + "/"), (t, later)


def test_the_host_view_is_the_docker_backends_at_root() -> None:
    m = by_target(make())
    assert m[ROOT + "/usr"] == {"type": "bind", "source": "/usr", "target": ROOT + "/usr",
                                "read_only": True, "mask": False}
    assert m[ROOT + "/etc/resolv.conf"]["source"] == "/etc/resolv.conf"
    assert m[ROOT + "/tmp"]["type"] == "tmpfs"
    assert "uid=2000000000" in m[ROOT + "/root"]["options"]
    assert m[ROOT + "/root/.cargo/bin"]["read_only"] is True
    assert not any(t.startswith((ROOT + "/run", ROOT + "/var", ROOT + "/home")) for t in m)
    assert make()["symlinks"] == list(MERGED_USR.items())


def test_workspace_is_idmapped_for_the_sandbox_uid_only() -> None:
    ws = by_target(make())[ROOT + "/src/proj"]
    assert ws["type"] == "idmap"
    assert (ws["uid_map"], ws["gid_map"]) == ([0, SANDBOX_ID], [0, SANDBOX_ID])
    assert ws["read_only"] is False
    sudo = by_target(make({"SUDO_UID": "1000", "SUDO_GID": "1000"}))[ROOT + "/src/proj"]
    assert sudo["type"] == "bind"
    assert sudo["read_only"] is False


def test_credentials_in_the_workspace_are_masked() -> None:
    m = by_target(make())
    assert m[ROOT + "/src/proj/.npmrc"]["source"] == "/dev/null"
    assert m[ROOT + "/src/proj/.npmrc"]["mask"] is True
    assert m[ROOT + "/src/proj/.config/heroku"]["options"] == MASK_TMPFS


@pytest.mark.parametrize(("hidden", "target"), [
    ("/src/proj/logs", ROOT + "/src/proj/logs"),
    ("/src/proj/a/../logs", ROOT + "/src/proj/logs"),
    ("/root/.cargo/bin/x", ROOT + "/root/.cargo/bin/x"),
])
def test_hidden_paths_under_something_visible_are_covered(hidden: str, target: str) -> None:
    assert by_target(make(hidden=(hidden,)))[target]["options"] == MASK_TMPFS


@pytest.mark.parametrize("hidden", ["/tmp/awf-logs-1", "/src/project2/logs", "/src"])
def test_hidden_paths_outside_the_view_need_no_mask(hidden: str) -> None:
    assert len(make(hidden=(hidden,))["mounts"]) == len(make()["mounts"])


def test_ids_env_and_seccomp() -> None:
    spec = make({"GITHUB_TOKEN": "t", "OPENAI_API_KEY": "k", "AWS_SECRET_ACCESS_KEY": "a",
                 "LANG": "C.UTF-8", "SUDO_USER": "u"})
    env = dict(spec["env"])
    assert {"GITHUB_TOKEN", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "SUDO_USER"} & set(env) \
        == set()
    assert env["LANG"] == "C.UTF-8"
    assert env["HTTP_PROXY"] == "http://10.0.0.1:3128"
    assert env["HOME"] == "/root"
    assert (spec["uid"], spec["gid"], spec["groups"]) == (SANDBOX_ID, SANDBOX_ID, [])
    assert spec["argv"] == ["bash", "-c", "echo hi"]
    assert spec["workdir"] == "/src/proj"
    assert spec["seccomp_profiles"] == [seccomp.stage1_profile(),
                                        seccomp.no_setid_files_profile(),
                                        seccomp.no_terminal_injection_profile()]
    assert spec["seccomp_stage2"] == list(seccomp.STAGE2_DENY)


def test_secret_only_with_e() -> None:
    env = dict(make({"GITHUB_TOKEN": "t"}, explicit=(("GITHUB_TOKEN", "t"),))["env"])
    assert env["GITHUB_TOKEN"] == "t"


def test_no_workspace_means_home_is_the_workdir() -> None:
    spec = make(workspace=None)
    assert spec["workdir"] == "/root"
    assert not any(m["type"] == "idmap" for m in spec["mounts"])


def _rules(name: str) -> list[dict[str, Any]]:
    profile: dict[str, Any] = seccomp.no_setid_files_profile()
    return [r for r in profile["syscalls"] if name in r["names"]]


def test_setid_profile_allows_by_default() -> None:
    assert seccomp.no_setid_files_profile()["defaultAction"] == "SCMP_ACT_ALLOW"


@pytest.mark.parametrize(("name", "mode_index"), [
    ("chmod", 1), ("fchmod", 1), ("fchmodat", 2), ("fchmodat2", 2), ("creat", 1), ("mknod", 1),
    ("mknodat", 2),
])
def test_setid_mode_refused(name: str, mode_index: int) -> None:
    args = [r["args"] for r in _rules(name)]
    for bit in (0o4000, 0o2000):
        assert [{"index": mode_index, "value": bit, "valueTwo": bit,
                 "op": "SCMP_CMP_MASKED_EQ"}] in args
    assert all(r["action"] == "SCMP_ACT_ERRNO" and r["errnoRet"] == 1 for r in _rules(name))


@pytest.mark.parametrize(("name", "flags", "mode"), [("open", 1, 2), ("openat", 2, 3)])
def test_setid_mode_refused_only_when_creating(name: str, flags: int, mode: int) -> None:
    rules = _rules(name)
    assert len(rules) == 4
    for r in rules:
        flag_cmp, mode_cmp = r["args"]
        assert flag_cmp["index"] == flags
        assert flag_cmp["value"] in (0o100, 0o20000000)
        assert mode_cmp["index"] == mode
        assert mode_cmp["value"] in (0o4000, 0o2000)


def test_openat2_is_enosys() -> None:
    assert _rules("openat2") == [{"names": ["openat2"], "action": "SCMP_ACT_ERRNO",
                                  "errnoRet": 38}]


@pytest.mark.parametrize(("path", "ok"), [
    ("/root", False), ("/root/", False), ("/", False), ("/usr", False), ("/run/x", False),
    ("/root/proj", True), ("/rootx", True), ("/home/u/proj", True), ("/srv", True),
])
def test_usable_workspace_never_roots_home(path: str, ok: bool) -> None:
    assert usable_workspace(path, "/root") is ok


def test_roots_home_elsewhere_and_its_parents_are_refused() -> None:
    assert usable_workspace("/var/lib/root", "/var/lib/root") is False
    assert usable_workspace("/var/lib", "/var/lib/root") is False
    assert usable_workspace("/var/lib/rootfs", "/var/lib/root") is True


def test_terminal_injection_ioctls_refused_on_the_low_32_bits() -> None:
    profile: dict[str, Any] = seccomp.no_terminal_injection_profile()
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert [r["args"] for r in profile["syscalls"]] == [
        [{"index": 1, "value": 0xFFFFFFFF, "valueTwo": req, "op": "SCMP_CMP_MASKED_EQ"}]
        for req in (0x5412, 0x541C)]
