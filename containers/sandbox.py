"""The netns backend's sandbox, as data: what the command sees, who it is, what it may call.

Pure: the host comes in as `HostFacts` and arguments; the result is the JSON-able spec that
`containers/sandbox_entry.py` applies with mount(2) in the command's private mount namespace
before it hands over to the Docker agent's own last steps (`containers/agent/entry.py`:
chroot, capabilities, no_new_privs, seccomp, exec). The view is the Docker backend's chroot
host mode (`containers/hostview.py`), laid out at ROOT instead of /host:

- the host's /usr, /opt, /bin, /sbin, /lib*, an /etc allowlist, toolchains in $HOME, all
  read-only; a private /tmp, an empty $HOME, the workspace read-write; credential files of
  the known names covered by /dev/null, credential directories by an empty tmpfs;
- nothing else: no /run or /var/run (Docker's and containerd's sockets, every other daemon's),
  no /var, /root, /home, no host /tmp (so no awf logs); the run's logs directory and any path
  in `hidden` is covered by an empty read-only tmpfs if it lies under something visible;
- a minimal /dev, a fresh read-only sysfs, a procfs with hidepid=2 and Docker's masks
  (/proc/sys read-only), and the root read-only (the entry's).

The command never runs as uid 0: the sudo caller's uid and gid, else SANDBOX_ID. As
SANDBOX_ID the workspace is an idmapped bind mount: its owner's uid and gid on disk are
SANDBOX_ID in the mount, so the command writes there as if it owned the directory, and what
it creates belongs on disk to the workspace's owner. Seccomp: the Docker agent's stage 1 and
stage 2, a filter that refuses setuid and setgid bits and one that refuses TIOCSTI and
TIOCLINUX (`containers/seccomp.py`).

A workspace that is root's home, or holds it, is never shared: as SANDBOX_ID the command would
own root's dotfiles through the idmapped mount (a line in /root/.bashrc is root on the host).
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from containers import agentenv, hostview, seccomp

ROOT = "/tmp"  # the tmpfs that becomes "/", mounted over /tmp in the private mount namespace
SANDBOX_ID = 2_000_000_000  # uid and gid of the command when awf runs as root without sudo
MASK_TMPFS = "ro,nosuid,nodev,noexec,size=4k,mode=0555"


def identity(environ: Mapping[str, str]) -> tuple[int, int, bool]:
    """(uid, gid, is_the_caller): the sudo caller (SUDO_UID/SUDO_GID), else SANDBOX_ID."""
    uid, gid = environ.get("SUDO_UID", ""), environ.get("SUDO_GID", "")
    if uid.isdigit() and gid.isdigit() and int(uid) != 0:
        return int(uid), int(gid), True
    return SANDBOX_ID, SANDBOX_ID, False


def usable_workspace(path: str, root_home: str) -> bool:
    """hostview's rule, and never root's home or a directory that holds it."""
    path = posixpath.normpath(path)
    return hostview.usable_workspace(path) and not (
        posixpath.normpath(root_home) + "/").startswith(path.rstrip("/") + "/")


def plan(*, command: Sequence[str], environ: Mapping[str, str], home: str,
         workspace: str | None, workspace_owner: tuple[int, int] | None,
         proxy_url: str | None, no_proxy: str, env_all: bool, exclude: Sequence[str],
         env_file: Sequence[tuple[str, str]], explicit: Sequence[tuple[str, str]],
         hidden: Sequence[str], facts: hostview.HostFacts,
         trust: tuple[str, str] | None = None) -> dict[str, Any]:
    """The spec for sandbox_entry. `workspace_owner` is the workspace's (uid, gid) on disk,
    mapped to the command's ids when the command is SANDBOX_ID; `hidden` are host paths the
    command must never see (the run's logs); `trust` (--ssl-bump) the host paths of the run's
    CA and bundle (hostview.trust_mounts)."""
    uid, gid, is_caller = identity(environ)
    view = hostview.host_view(
        root=ROOT, home=home, uid=uid, gid=gid, workspace=workspace, volumes=(),
        resolv_conf="/etc/resolv.conf", hosts="/etc/hosts", facts=facts,
        tool_cache=environ.get("RUNNER_TOOL_CACHE"))
    if trust is not None:
        view = dataclasses.replace(view, mounts=(*view.mounts, *hostview.trust_mounts(
            view, cert=trust[0], bundle=trust[1], facts=facts)))
    ws = posixpath.normpath(workspace) if workspace else None
    entries: list[tuple[str, dict[str, Any]]] = []
    for target, options in view.tmpfs:
        entries.append((target, {"type": "tmpfs", "target": target, "options": options,
                                 "mask": options == MASK_TMPFS}))
    for m in view.mounts:
        item: dict[str, Any] = {"type": "bind", "source": m.source, "target": m.target,
                                "read_only": m.read_only, "mask": m.source == "/dev/null"}
        if m.source == ws and not is_caller and workspace_owner is not None:
            item.update(type="idmap", uid_map=[workspace_owner[0], uid],
                        gid_map=[workspace_owner[1], gid])
        entries.append((m.target, item))
    for path in hidden:
        path = posixpath.normpath(path)
        for m in view.mounts:
            if m.source != "/dev/null" and (path + "/").startswith(m.source.rstrip("/") + "/"):
                target = m.target + path[len(m.source.rstrip("/")):]
                entries.append((target, {"type": "tmpfs", "target": target,
                                         "options": MASK_TMPFS, "mask": False}))
    # parents before children (the root first); a stable sort keeps hostview's order otherwise
    entries.sort(key=lambda e: (e[0] != ROOT, posixpath.normpath(e[0]).count("/")))
    env = agentenv.agent_env(environ, proxy_url=proxy_url, no_proxy=no_proxy, home=home,
                             env_all=env_all, exclude=exclude, env_file=env_file,
                             explicit=explicit)
    return {
        "root": ROOT, "mounts": [e for _, e in entries], "symlinks": list(view.symlinks),
        "masked": list(view.masked), "uid": uid, "gid": gid, "groups": [], "home": home,
        "workdir": ws or home, "env": list(env),
        "argv": list(agentenv.command_argv(command)),
        "seccomp_profiles": [seccomp.stage1_profile(), seccomp.no_setid_files_profile(),
                             seccomp.no_terminal_injection_profile()],
        "seccomp_stage2": list(seccomp.STAGE2_DENY),
    }

