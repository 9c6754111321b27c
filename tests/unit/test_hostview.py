"""The agent's mount table (containers/hostview.py) from a described host filesystem."""

from __future__ import annotations

import posixpath
from pathlib import Path

import pytest

from containers.agentenv import Volume
from containers.hostview import (
    CREDENTIAL_DIRS,
    CREDENTIAL_FILES,
    CREDENTIALS,
    SECRET_STORES,
    Credential,
    HostFacts,
    HostView,
    Kind,
    host_view,
    secret_store,
    usable_workspace,
)
from containers.spec import Mount


def facts(files: set[str], dirs: set[str], links: dict[str, str] | None = None) -> HostFacts:
    links = links or {}
    return HostFacts(exists=lambda p: p in files or p in dirs or p in links,
                     is_dir=lambda p: p in dirs, readlink=links.get)


MERGED_USR = {"/bin": "usr/bin", "/sbin": "usr/sbin", "/lib": "usr/lib", "/lib64": "usr/lib64"}


def view(root: str = "/host", *, files: set[str] | None = None, dirs: set[str] | None = None,
         workspace: str | None = "/src/proj", volumes: tuple[Volume, ...] = ()) -> HostView:
    return host_view(root=root, home="/home/u", uid=1000, gid=1000, workspace=workspace,
                     volumes=volumes, resolv_conf="/w/resolv.conf", hosts="/w/hosts",
                     facts=facts(files or set(), {"/usr", "/etc/ssl", *(dirs or set())},
                                 MERGED_USR))


def by_target(v: HostView) -> dict[str, Mount]:
    return {m.target: m for m in v.mounts}


def test_system_dirs_read_only_and_merged_usr_links_recreated() -> None:
    v = view()
    m = by_target(v)
    assert m["/host/usr"].read_only
    assert m["/host/usr"].source == "/usr"
    assert m["/host/etc/ssl"].read_only
    assert ("/bin", "usr/bin") in v.symlinks
    assert "/host/bin" not in m
    assert "/host/etc/shadow" not in m
    assert "/host/root" not in m


def test_workspace_rw_home_private_tmp_private() -> None:
    v = view()
    m = by_target(v)
    assert not m["/host/src/proj"].read_only
    tmpfs = dict(v.tmpfs)
    assert "uid=1000" in tmpfs["/host/home/u"]
    assert "mode=0700" in tmpfs["/host/home/u"]
    assert "/host/tmp" in tmpfs
    assert m["/host/etc/resolv.conf"].source == "/w/resolv.conf"


def test_toolchains_shared_read_only() -> None:
    v = view(dirs={"/home/u/.cargo", "/home/u/.rustup"})
    m = by_target(v)
    assert m["/host/home/u/.cargo"].read_only
    assert m["/host/home/u/.rustup"].read_only


@pytest.mark.parametrize("rel", CREDENTIAL_FILES)
def test_each_credential_file_masked_in_workspace_home_and_volume(rel: str) -> None:
    files = {f"/home/u/{rel}", f"/data/{rel}"}
    v = view(files=files, dirs={"/data"}, workspace="/home/u",
             volumes=(Volume("/data", "/mnt/data", False),))
    m = by_target(v)
    for target in (f"/host/home/u/{rel}", f"/host/mnt/data/{rel}"):
        assert m[target].source == "/dev/null", target
        assert m[target].read_only, target
    assert f"/home/u/{rel}" in v.masked


@pytest.mark.parametrize("rel", CREDENTIAL_DIRS)
def test_each_credential_dir_covered_by_empty_read_only_tmpfs(rel: str) -> None:
    v = view(dirs={f"/src/proj/{rel}"})
    assert dict(v.tmpfs)[f"/host/src/proj/{rel}"].startswith("ro,")


def test_only_existing_files_are_masked() -> None:
    v = view()
    assert not any(m.source == "/dev/null" for m in v.mounts)


def test_image_mode_lays_the_same_table_at_the_root() -> None:
    v = view("", files={"/home/u/.npmrc"}, workspace="/home/u")
    m = by_target(v)
    assert m["/home/u/.npmrc"].source == "/dev/null"
    assert "/usr" not in m
    assert v.symlinks == ()


@pytest.mark.parametrize(("path", "ok"), [("/", False), ("/usr", False), ("/etc", False),
                                     ("/proc/1", False), ("/run/user/1", False),
                                     ("/dev", False), ("/home", False), ("/home/u", True),
                                     ("/work/proj", True), ("/tmp/x", True)])
def test_usable_workspace(path: str, ok: bool) -> None:
    assert usable_workspace(path) is ok


@pytest.mark.parametrize(("path", "store"), [("/home/u/.ssh", ".ssh"), ("/h/.aws/x", ".aws"),
                                        ("/h/.gnupg", ".gnupg"), ("/h/.netrc", ".netrc"),
                                        ("/h/proj", None), ("/h/.sshx", None)])
def test_secret_store(path: str, store: str | None) -> None:
    assert secret_store(path) == store


def test_live_facts_read_this_host(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "l").symlink_to("f")
    live = HostFacts.live()
    assert live.exists(str(tmp_path / "f"))
    assert live.is_dir(str(tmp_path))
    assert live.readlink(str(tmp_path / "l")) == "f"
    assert live.readlink(str(tmp_path)) is None


# -- issue 20: every entry masked under a -v of any of its parent directories -------------------

IDS = [c.path for c in CREDENTIALS]


def _placed(cred: Credential, base: str) -> tuple[set[str], set[str]]:
    """(files, dirs) of a host with `cred` below `base`, and a sibling file next to it."""
    path = f"{base}/{cred.path}"
    parent = posixpath.dirname(path)
    files = {f"{parent}/awf-sibling.txt"}
    dirs = {parent}
    if cred.kind is Kind.FILE:
        files.add(path)
    else:
        dirs.add(path)
    return files, dirs


def _masked_at(v: HostView, target: str) -> bool:
    m = by_target(v).get(target)
    return (m is not None and m.source == "/dev/null") or any(
        t == target and opts.startswith("ro,") for t, opts in v.tmpfs)


def test_the_table_has_no_duplicates_and_names_the_agents_and_clouds() -> None:
    assert len(IDS) == len(set(IDS))
    for must in (".claude/.credentials.json", ".codex/auth.json", ".gemini/oauth_creds.json",
                 ".config/gcloud/credentials.db", ".azure/msal_token_cache.json",
                 ".kube/config", ".pypirc", ".cargo/credentials.toml", ".m2/settings.xml",
                 ".gradle/gradle.properties", ".terraform.d/credentials.tfrc.json",
                 ".config/gh/hosts.yml"):
        assert must in IDS, must
    assert set(CREDENTIAL_FILES) | set(CREDENTIAL_DIRS) == set(IDS)


@pytest.mark.parametrize("cred", CREDENTIALS, ids=IDS)
def test_each_credential_masked_under_a_volume_of_each_parent(cred: Credential) -> None:
    parts = cred.path.split("/")
    files, dirs = _placed(cred, "/home/u")
    for k in range(1, len(parts)):  # -v ~/.config, then -v ~/.config/gh, ...
        parent = "/home/u/" + "/".join(parts[:k])
        if any(name in SECRET_STORES for name in parts[:k]):
            continue  # -v of those is refused outright (test_secret_store)
        rest = "/".join(parts[k:])
        v = view(files=files, dirs=dirs | {parent}, workspace="/src/proj",
                 volumes=(Volume(parent, "/mnt/p", True),))
        assert _masked_at(v, f"/host/mnt/p/{rest}"), (parent, rest)
        assert f"/home/u/{cred.path}" in v.masked
        sibling = f"/host/mnt/p/{posixpath.dirname(rest)}/awf-sibling.txt".replace("//", "/")
        assert sibling not in by_target(v)  # the file next to it stays readable
        assert not any(t == posixpath.dirname(f"/host/mnt/p/{rest}") for t, _ in v.tmpfs)


@pytest.mark.parametrize("cred", CREDENTIALS, ids=IDS)
def test_each_credential_masked_in_the_home_below_a_volume(cred: Credential) -> None:
    files, dirs = _placed(cred, "/home/u")
    v = view(files=files, dirs=dirs | {"/home"}, volumes=(Volume("/home", "/h", True),))
    assert _masked_at(v, f"/host/h/u/{cred.path}")


@pytest.mark.parametrize("cred", CREDENTIALS, ids=IDS)
def test_a_volume_of_the_credential_itself_is_refused(cred: Credential) -> None:
    assert secret_store(f"/home/u/{cred.path}") is not None
    if cred.kind is Kind.DIR:
        assert secret_store(f"/home/u/{cred.path}/sub") is not None


def test_a_volume_of_a_claude_dir_masks_only_the_credentials() -> None:
    files = {"/home/u/.claude/.credentials.json", "/home/u/.claude/settings.json"}
    v = view(files=files, dirs={"/home/u/.claude"},
             volumes=(Volume("/home/u/.claude", "/home/u/.claude", True),))
    m = by_target(v)
    assert m["/host/home/u/.claude/.credentials.json"].source == "/dev/null"
    assert "/host/home/u/.claude/settings.json" not in m
    assert secret_store("/home/u/.claude") is None
    assert secret_store("/home/u/.config") is None


# -- issue 16 item 4: the host as tools expect it ------------------------------------------------

ETC_HOST = {"/etc/java-17-openjdk", "/etc/java-21-openjdk", "/etc/apt", "/etc/maven",
            "/etc/ssl", "/etc/ssl/private", "/etc/apt/auth.conf.d", "/etc/alternatives",
            "/etc/ca-certificates", "/etc/xdg/pip"}
ETC_FILES = {"/etc/pip.conf", "/etc/npmrc", "/etc/gitconfig", "/etc/apt/auth.conf",
             "/etc/maven/settings-security.xml", "/etc/shadow", "/etc/gshadow",
             "/etc/sudoers", "/etc/machine-id"}


def etc_view() -> HostView:
    names = sorted({p.split("/")[2] for p in ETC_HOST | ETC_FILES})
    f = facts(ETC_FILES, {"/usr", *ETC_HOST}, MERGED_USR)
    f = HostFacts(f.exists, f.is_dir, f.readlink, lambda p: names if p == "/etc" else ())
    return host_view(root="/host", home="/home/u", uid=1000, gid=1000, workspace="/src/proj",
                     volumes=(), resolv_conf="/w/resolv.conf", hosts="/w/hosts", facts=f)


def test_etc_allowlist_shows_toolchain_and_package_manager_config() -> None:
    m = by_target(etc_view())
    for path in ("/etc/java-17-openjdk", "/etc/java-21-openjdk", "/etc/apt", "/etc/maven",
                 "/etc/pip.conf", "/etc/xdg/pip", "/etc/npmrc", "/etc/gitconfig",
                 "/etc/ssl", "/etc/ca-certificates", "/etc/alternatives"):
        assert m[f"/host{path}"].source == path, path
        assert m[f"/host{path}"].read_only, path
    for path in ("/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/machine-id"):
        assert f"/host{path}" not in m, path


def test_etc_secrets_stay_masked() -> None:
    v = etc_view()
    m, tmpfs = by_target(v), dict(v.tmpfs)
    assert m["/host/etc/apt/auth.conf"].source == "/dev/null"
    assert m["/host/etc/maven/settings-security.xml"].source == "/dev/null"
    assert tmpfs["/host/etc/ssl/private"].startswith("ro,")
    assert tmpfs["/host/etc/apt/auth.conf.d"].startswith("ro,")
    assert "/etc/ssl/private" in v.masked


def test_toolchain_homes_read_only_with_their_credentials_masked() -> None:
    homes = {f"/home/u/{d}" for d in (".pyenv", ".cargo", ".rustup", ".nvm", ".local",
                                      ".sdkman", ".local/share/keyrings")}
    v = view(files={"/home/u/.cargo/credentials.toml", "/home/u/.cargo/config.toml"},
             dirs=homes)
    m = by_target(v)
    for d in (".pyenv", ".cargo", ".rustup", ".nvm", ".local", ".sdkman"):
        assert m[f"/host/home/u/{d}"].read_only, d
    assert m["/host/home/u/.cargo/credentials.toml"].source == "/dev/null"
    assert "/host/home/u/.cargo/config.toml" not in m  # readable through ~/.cargo
    assert dict(v.tmpfs)["/host/home/u/.local/share/keyrings"].startswith("ro,")


def test_cache_homes_are_not_shared_read_only() -> None:
    m = by_target(view(dirs={"/home/u/.m2", "/home/u/.gradle"}))
    assert "/host/home/u/.m2" not in m
    assert "/host/home/u/.gradle" not in m


def test_engine_state_and_share_home_read_write_credentials_masked() -> None:
    from containers.hostview import engine_homes

    dirs = {*engine_homes("/home/u"), "/home/u/.m2"}
    v = view(files={"/home/u/.claude/.credentials.json", "/home/u/.codex/auth.json",
                    "/home/u/.m2/settings.xml"}, dirs=dirs)
    assert by_target(v) == by_target(view(files={"/home/u/.claude/.credentials.json"},
                                          dirs=dirs))  # nothing shared unless asked
    v = host_view(root="/host", home="/home/u", uid=1000, gid=1000, workspace="/src/proj",
                  volumes=(), resolv_conf="/w/r", hosts="/w/h",
                  facts=facts({"/home/u/.claude/.credentials.json", "/home/u/.codex/auth.json",
                               "/home/u/.m2/settings.xml"}, dirs | {"/usr"}),
                  share_rw=(*engine_homes("/home/u"), "/home/u/.m2"))
    m = by_target(v)
    for d in (".copilot", ".claude", ".codex", ".gemini", ".m2"):
        assert not m[f"/host/home/u/{d}"].read_only, d
    for f in (".claude/.credentials.json", ".codex/auth.json", ".m2/settings.xml"):
        assert m[f"/host/home/u/{f}"].source == "/dev/null", f


def test_a_symlinked_or_missing_state_dir_is_not_shared() -> None:
    v = host_view(root="/host", home="/home/u", uid=1000, gid=1000, workspace="/src/proj",
                  volumes=(), resolv_conf="/w/r", hosts="/w/h",
                  facts=facts(set(), {"/usr", "/home/u/.ssh", "/home/u/.claude"},
                              {"/home/u/.claude": ".ssh"}),
                  share_rw=("/home/u/.claude", "/home/u/.codex"))
    assert "/host/home/u/.claude" not in by_target(v)
    assert "/host/home/u/.codex" not in by_target(v)


@pytest.mark.parametrize(("path", "why"), [
    ("/home/u/.m2", None), ("/home/u/proj/x", None), ("/home/u", "not a directory under"),
    ("/etc", "not a directory under"), ("/home/u/.ssh", ".ssh"), ("/home/u/nope", "create it"),
    ("/home/u/.aws/sso/cache", ".aws"), ("/home/u/link", "symlink")])
def test_share_home_checks(path: str, why: str | None) -> None:
    from containers.hostview import share_home_error

    f = facts(set(), {"/home/u/.m2", "/home/u/proj/x", "/home/u/.ssh", "/home/u/.aws/sso/cache",
                      "/home/u/link"}, {"/home/u/link": "/etc"})
    err = share_home_error(path, "/home/u", f)
    assert (err is None) if why is None else (err is not None and why in err), err


def test_gh_aw_shared_read_write_its_mcp_logs_hidden() -> None:
    kw: dict[str, object] = dict(root="/host", home="/home/u", uid=1000, gid=1000,
                                 workspace="/src/proj", volumes=(), resolv_conf="/w/r",
                                 hosts="/w/h",
                                 facts=facts(set(), {"/usr", "/tmp/gh-aw",
                                                     "/tmp/gh-aw/mcp-logs"}))
    v = host_view(**kw, gh_aw=True)  # type: ignore[arg-type]
    assert not by_target(v)["/host/tmp/gh-aw"].read_only
    assert dict(v.tmpfs)["/host/tmp/gh-aw/mcp-logs"].startswith("ro,")
    v = host_view(**kw)  # type: ignore[arg-type]
    assert "/host/tmp/gh-aw" not in by_target(v)


def path_view(path_dirs: list[str], dirs: set[str], **kw: object) -> HostView:
    return host_view(root="/host", home="/home/u", uid=1000, gid=1000, workspace="/src/proj",
                     volumes=(), resolv_conf="/w/r", hosts="/w/h",
                     facts=facts(set(), {"/usr", "/usr/bin", "/bin", "/opt", *dirs}, MERGED_USR),
                     path_dirs=path_dirs, **kw)  # type: ignore[arg-type]


def test_host_path_dirs_visible_in_order_extra_ones_mounted_read_only() -> None:
    dirs = {"/home/u/.cargo", "/home/u/.cargo/bin", "/home/u/tools/bin", "/opt/go/bin",
            "/srv/bin", "/src/proj/bin"}
    v = path_view(["/home/u/tools/bin", "/home/u/.cargo/bin", "/opt/go/bin", "/usr/bin",
                   "/bin", "/srv/bin", "/src/proj/bin", "/usr/bin", "relative/bin",
                   "/missing/bin"], dirs)
    assert v.path == ("/home/u/tools/bin", "/home/u/.cargo/bin", "/opt/go/bin", "/usr/bin",
                      "/bin", "/srv/bin", "/src/proj/bin")
    m = by_target(v)
    assert m["/host/home/u/tools/bin"].read_only
    assert m["/host/srv/bin"].read_only
    for shown in ("/home/u/.cargo/bin", "/opt/go/bin", "/usr/bin", "/bin", "/src/proj/bin"):
        assert f"/host{shown}" not in m, shown  # already seen through another mount


def test_path_dirs_never_credentials_system_home_or_awf_private() -> None:
    dirs = {"/home/u/.ssh", "/home/u/.aws/bin", "/etc/x", "/proc/1", "/run/bin", "/home",
            "/home/u", "/", "/tmp/awf-1/bin", "/tmp", "/var"}
    v = path_view(["/home/u/.ssh", "/home/u/.aws/bin", "/etc/x", "/proc/1", "/run/bin",
                   "/home", "/home/u", "/", "/tmp/awf-1/bin", "/tmp", "/var"], dirs,
                  private=("/tmp/awf-1",))
    assert v.path == ()
    assert {m.target for m in v.mounts} == {m.target for m in path_view([], dirs).mounts}


def test_path_dirs_are_the_images_own_with_agent_image() -> None:
    v = host_view(root="", home="/home/u", uid=1000, gid=1000, workspace="/src/proj",
                  volumes=(), resolv_conf="/w/r", hosts="/w/h",
                  facts=facts(set(), {"/srv/bin"}), path_dirs=["/srv/bin"])
    assert v.path == ()
    assert "/srv/bin" not in by_target(v)


def test_sees() -> None:
    v = view(files={"/home/u/.npmrc", "/src/proj/ca.pem"}, dirs={"/home/u/.local"},
             workspace="/src/proj")
    assert v.sees("/etc/ssl/certs/ca.pem")
    assert v.sees("/src/proj/ca.pem")
    assert v.sees("/bin/sh")  # through the merged-/usr link
    assert v.sees("/home/u/.local/share/ca.pem")
    assert not v.sees("/home/u/ca.pem")  # the private home
    assert not v.sees("/tmp/ca.pem")  # the private /tmp
    assert not v.sees("/srv/ca.pem")
    assert not v.sees("relative.pem")


def test_a_volume_at_a_shared_dir_wins() -> None:
    v = host_view(root="/host", home="/home/u", uid=1000, gid=1000, workspace="/src/proj",
                  volumes=(Volume("/home/u/.claude", "/home/u/.claude", True),),
                  resolv_conf="/w/r", hosts="/w/h",
                  facts=facts(set(), {"/usr", "/home/u/.claude"}),
                  share_rw=("/home/u/.claude",))
    targets = [m.target for m in v.mounts]
    assert targets.count("/host/home/u/.claude") == 1
    assert by_target(v)["/host/home/u/.claude"].read_only


def test_a_path_dir_inside_another_homes_toolchain_brings_the_toolchain() -> None:
    dirs = {"/root/.pyenv", "/root/.pyenv/shims", "/root/.pyenv/libexec", "/root/.local",
            "/root/.local/bin", "/root/.cargo", "/root/.cargo/bin"}
    v = path_view(["/root/.pyenv/shims", "/root/.local/bin", "/root/.cargo/bin"], dirs)
    m = by_target(v)
    assert m["/host/root/.pyenv"].read_only
    assert "/host/root/.pyenv/shims" not in m
    assert m["/host/root/.local/bin"].read_only  # ~/.local as a whole is not a toolchain
    assert "/host/root/.local" not in m
    assert m["/host/root/.cargo"].read_only
    assert v.path == ("/root/.pyenv/shims", "/root/.local/bin", "/root/.cargo/bin")


def test_toolchain_parts_when_the_parent_is_not_a_directory() -> None:
    m = by_target(view(dirs={"/home/u/.cargo/bin", "/home/u/.local/bin"}))
    assert m["/host/home/u/.cargo/bin"].read_only
    assert m["/host/home/u/.local/bin"].read_only
    m = by_target(view(dirs={"/home/u/.cargo", "/home/u/.cargo/bin"}))
    assert "/host/home/u/.cargo/bin" not in m  # seen through ~/.cargo
