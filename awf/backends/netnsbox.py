"""Start the netns backend's command in its sandbox (containers/sandbox.py says what it is).

    ip netns exec awf-<run>            the run's network namespace (its resolv.conf bound)
      setpriv --pdeathsig KILL         dies with awf
        unshare --pid --fork --mount   its own PID namespace (nothing outlives the run), a
          --ipc --propagation private    private mount namespace (nothing leaks to the host)
                                         and its own System V IPC
          tini -g -s                   PID 1: signals to the group, zombies reaped, the status
            python -I containers/sandbox_entry.py <fd> <gate>   the mounts, then the command

The spec goes in a memfd, so -e secrets never touch a disk. `start` returns as soon as the
sandbox process exists: it lays out its mounts while awf waits for the proxy and runs the
self-test, then waits on the gate (a pipe) for `Sandbox.go`; the command is exec'd only then.
Closing the gate without the go (`Sandbox.close`) ends it with exit 125, the command never run.
The setup runs under `python -I -S` from awf's own install (stdlib and containers/ only) with /
as its working directory: nothing in the workspace, the environment or a site-packages .pth file
can put code on its path.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import containers
from awf.config import RunConfig
from awf.run import say
from containers import agentenv, hostview, sandbox

_PACKAGE_ROOT = str(Path(containers.__file__).resolve().parent.parent)
_BOOT = ("import sys; sys.path.insert(0, {root!r}); "
         "from containers.sandbox_entry import main; "
         "sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))")
GO = b"g"  # containers/sandbox_entry.py's (not imported here: awf itself needs none of it)
SETUP_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def workspace(environ: dict[str, str]) -> str | None:
    """$GITHUB_WORKSPACE, else the current directory; None (with a warning) if it is a system
    directory or root's home."""
    path = os.path.realpath(environ.get("GITHUB_WORKSPACE") or os.getcwd())
    try:
        root_home = os.path.realpath(pwd.getpwuid(0).pw_dir)
    except KeyError:
        root_home = "/root"
    if sandbox.usable_workspace(path, root_home):
        return path
    say(f"the workspace {path} is a system directory or root's home; it is not shared with the "
        "command (run awf from your project's directory, or set GITHUB_WORKSPACE)")
    return None


def home(environ: dict[str, str]) -> str:
    """The sudo caller's home, else $HOME (an empty tmpfs in the sandbox either way)."""
    uid, _gid, is_caller = sandbox.identity(environ)
    found = None
    if is_caller:
        try:
            found = pwd.getpwuid(uid).pw_dir
        except KeyError:
            pass
    path = os.path.normpath(found or environ.get("HOME") or "/root")
    return path if path != "/" else "/tmp/home"


def spec(cfg: RunConfig, *, proxy_url: str | None, no_proxy: str, logs: Path,
         environ: dict[str, str], trust: tuple[str, str] | None = None) -> dict[str, object]:
    ws = workspace(environ)
    owner = None
    if ws is not None:
        st = os.stat(ws)
        owner = (st.st_uid, st.st_gid)
    env_file = agentenv.read_env_file(cfg.env_file)
    return sandbox.plan(
        command=cfg.command, environ=environ, home=home(environ), workspace=ws,
        workspace_owner=owner, proxy_url=proxy_url, no_proxy=no_proxy, env_all=cfg.env_all,
        exclude=cfg.exclude_env, env_file=env_file, explicit=cfg.env,
        hidden=[str(logs.resolve())], facts=hostview.HostFacts.live(), trust=trust)


class Sandbox:
    """The sandbox process, set up or setting up, and its gate (see the module docstring)."""

    def __init__(self, proc: subprocess.Popen[bytes], gate: int) -> None:
        self.proc = proc
        self._gate = gate

    def go(self) -> None:
        """Let the command run (once the self-test has passed)."""
        if self._gate < 0:
            raise RuntimeError("the sandbox's gate is closed")
        try:
            os.write(self._gate, GO)
        except BrokenPipeError:
            pass  # the setup failed and it exited: its status says so
        finally:
            self.close()

    def close(self) -> None:
        """Without a go first: the sandbox exits 125 and the command never runs."""
        if self._gate >= 0:
            os.close(self._gate)
            self._gate = -1


def start(cfg: RunConfig, *, netns: str, proxy_url: str | None, no_proxy: str,
          logs: Path, trust: tuple[str, str] | None = None) -> Sandbox:
    doc = json.dumps(spec(cfg, proxy_url=proxy_url, no_proxy=no_proxy, logs=logs,
                          environ=dict(os.environ), trust=trust)).encode()
    fd = os.memfd_create("awf-sandbox", os.MFD_CLOEXEC)
    gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
    try:
        view = memoryview(doc)
        while view:
            view = view[os.write(fd, view):]
        argv = [
            "ip", "netns", "exec", netns,
            "setpriv", "--pdeathsig", "KILL", "--",
            "unshare", "--pid", "--fork", "--kill-child=KILL", "--mount", "--ipc",
            "--propagation", "private", "--",
            "tini", "-g", "-s", "--",
            sys.executable, "-I", "-S", "-c", _BOOT.format(root=_PACKAGE_ROOT), str(fd),
            str(gate_r),
        ]
        proc = subprocess.Popen(argv, env={"PATH": SETUP_PATH}, cwd="/",
                                pass_fds=(fd, gate_r))
    except BaseException:
        os.close(gate_w)
        raise
    finally:
        os.close(fd)
        os.close(gate_r)
    return Sandbox(proc, gate_w)
