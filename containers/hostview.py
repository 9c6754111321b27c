"""What the agent sees of the host: the mount table of chroot host mode (ARCHITECTURE §5.1).

Pure: the host's filesystem comes in as a `HostFacts` (what exists, what is a symlink), so the
table is computed and tested without touching the disk. In chroot host mode (the default) every
target is under /host and the command is chrooted there; with --agent-image the same table is
laid out at the image's root (`root=""`) and there is no chroot.

- read-only from the host: /usr, /opt and the /bin, /sbin, /lib* directories (on merged-/usr
  hosts these are symlinks, which the entrypoint recreates inside the root);
- read-only from /etc: a short allowlist (certificates, the loader's cache, users and groups,
  the time zone, alternatives), plus awf's own resolv.conf and hosts;
- read-only toolchains in $HOME (~/.cargo/bin, ~/.rustup, ~/.nvm, ~/.local/{bin,lib,pipx}) and
  $RUNNER_TOOL_CACHE;
- read-write: the workspace ($GITHUB_WORKSPACE, else the current directory), -v mounts, and a
  private /tmp and an empty $HOME made for the run;
- hidden: every credential file of CREDENTIAL_FILES under any mounted directory is covered by
  /dev/null (read-only), every directory of CREDENTIAL_DIRS by an empty read-only tmpfs.

/dev, /sys and a hidepid /proc are the entrypoint's (containers/agent/entry.py): Docker cannot
bind the container's own /dev, and the host's must never be seen.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from containers.agentenv import Volume
from containers.spec import Mount

SYSTEM_DIRS = ("usr", "opt", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
ETC_ALLOW = (
    "ssl", "ca-certificates", "pki/ca-trust/extracted", "pki/tls/certs", "alternatives",
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "nsswitch.conf", "passwd", "group",
    "localtime", "timezone",
)
TOOLCHAINS = (".cargo/bin", ".rustup", ".nvm", ".local/bin", ".local/lib", ".local/pipx")
CREDENTIAL_FILES = (
    ".docker/config.json", ".npmrc", ".composer/auth.json", ".ssh/id_rsa", ".ssh/id_ed25519",
    ".ssh/id_ecdsa", ".ssh/id_dsa", ".aws/credentials", ".aws/config", ".kube/config",
    ".azure/credentials", ".azure/msal_token_cache.bin", ".azure/msal_token_cache.json",
    ".azure/accessTokens.json", ".azure/service_principal_entries.json", ".cargo/credentials",
    ".cargo/credentials.toml", ".claude/.credentials.json", ".gemini/oauth_creds.json",
    ".gemini/google_accounts.json", ".gemini/access_tokens.json", ".config/gh/hosts.yml",
    ".config/gcloud/credentials.db", ".config/gcloud/access_tokens.db",
    ".config/gcloud/application_default_credentials.json", ".config/doctl/config.yaml",
    ".config/rclone/rclone.conf", ".config/containers/auth.json",
    ".config/pulumi/credentials.json", ".config/helm/repositories.yaml",
    ".netrc", ".git-credentials",
)
CREDENTIAL_DIRS = (".local/state/sandboxes", ".config/heroku", ".config/hub", ".config/op",
                   ".copilot/logs", ".cache/mcp-logs")
# Never mounted by -v at all: whole secret stores (ARCHITECTURE §5.1)
SECRET_STORES = (".ssh", ".aws", ".docker", ".kube", ".gnupg", ".netrc", ".gitconfig",
                 ".git-credentials")
# A workspace here would hand the sandbox the host itself
NOT_A_WORKSPACE = ("/", "/usr", "/etc", "/var", "/boot", "/opt", "/bin", "/sbin", "/lib",
                   "/lib64", "/home")
NOT_UNDER = ("/proc", "/sys", "/dev", "/run")


@dataclass(frozen=True, slots=True)
class HostFacts:
    """The host's filesystem as the table needs it; `HostFacts.live()` reads the real one."""

    exists: Callable[[str], bool]
    is_dir: Callable[[str], bool]
    readlink: Callable[[str], str | None]  # a symlink's target, None if not a symlink

    @staticmethod
    def live() -> HostFacts:
        import os

        def readlink(path: str) -> str | None:
            return os.readlink(path) if os.path.islink(path) else None

        return HostFacts(os.path.lexists, os.path.isdir, readlink)


@dataclass(frozen=True, slots=True)
class HostView:
    mounts: tuple[Mount, ...]
    tmpfs: tuple[tuple[str, str], ...]
    symlinks: tuple[tuple[str, str], ...]  # (path inside the root, link target)
    masked: tuple[str, ...]  # host paths covered, for the run's record


def usable_workspace(path: str) -> bool:
    path = posixpath.normpath(path)
    return path not in NOT_A_WORKSPACE and not any(
        path == bad or path.startswith(bad + "/") for bad in NOT_UNDER)


def host_view(*, root: str, home: str, uid: int, gid: int, workspace: str | None,
              volumes: Sequence[Volume], resolv_conf: str, hosts: str, facts: HostFacts,
              tool_cache: str | None = None) -> HostView:
    """The agent's mounts. `root` is "/host" (chroot host mode) or "" (an image's own root)."""
    mounts: list[Mount] = []
    tmpfs: list[tuple[str, str]] = []
    links: list[tuple[str, str]] = []
    shared: list[tuple[str, str]] = []  # (host dir, target) whose contents the agent sees

    def at(path: str) -> str:
        return root + path if root else path

    if root:
        # the chroot's own root: a small tmpfs for the mountpoints, links and dirs, made
        # read-only by the entrypoint once it is laid out
        tmpfs.append((root, "rw,nosuid,nodev,size=1m,mode=0755"))
        for name in SYSTEM_DIRS:
            path = "/" + name
            target = facts.readlink(path)
            if target is not None:
                links.append((path, target))
            elif facts.is_dir(path):
                mounts.append(Mount(path, at(path)))
        for name in ETC_ALLOW:
            path = "/etc/" + name
            if facts.exists(path):
                mounts.append(Mount(path, at(path)))
    tmpfs.append((at("/tmp"), "rw,nosuid,nodev,size=1g,mode=1777"))
    mounts.append(Mount(resolv_conf, at("/etc/resolv.conf")))
    mounts.append(Mount(hosts, at("/etc/hosts")))
    ws = posixpath.normpath(workspace) if workspace else None
    if ws != home:
        tmpfs.append((at(home), f"rw,nosuid,nodev,size=1g,mode=0700,uid={uid},gid={gid}"))
        for rel in TOOLCHAINS:
            path = posixpath.join(home, rel)
            if facts.is_dir(path) and path != ws:
                mounts.append(Mount(path, at(path)))
                shared.append((path, path))
        if tool_cache and facts.is_dir(tool_cache) and usable_workspace(tool_cache):
            mounts.append(Mount(tool_cache, at(tool_cache)))
            shared.append((tool_cache, tool_cache))
    if ws is not None:
        mounts.append(Mount(ws, at(ws), read_only=False))
        shared.append((ws, ws))
    for v in volumes:
        mounts.append(Mount(v.source, at(v.target), read_only=v.read_only))
        shared.append((v.source, v.target))
    masked: list[str] = []
    taken = {m.target for m in mounts} | {t for t, _ in tmpfs}
    for source, target in shared:
        for rel in CREDENTIAL_FILES:
            path, dest = posixpath.join(source, rel), at(posixpath.join(target, rel))
            if dest not in taken and facts.exists(path) and not facts.is_dir(path):
                mounts.append(Mount("/dev/null", dest))
                taken.add(dest)
                masked.append(path)
        for rel in CREDENTIAL_DIRS:
            path, dest = posixpath.join(source, rel), at(posixpath.join(target, rel))
            if dest not in taken and facts.is_dir(path):
                tmpfs.append((dest, "ro,nosuid,nodev,noexec,size=4k,mode=0555"))
                taken.add(dest)
                masked.append(path)
    return HostView(tuple(mounts), tuple(tmpfs), tuple(links), tuple(masked))


def secret_store(path: str) -> str | None:
    """The secret store `path` is or lies in (for -v's refusal), else None."""
    parts = posixpath.normpath(path).split("/")
    for name in SECRET_STORES:
        if name in parts:
            return name
    return None
