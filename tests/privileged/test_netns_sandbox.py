"""`awf run --backend netns`: the command is sandboxed, not only cut off from the network.

Each test is a reproduction of issue 20 (item 1), run with awf as plain root and as sudo
leaves it (SUDO_UID/SUDO_GID/SUDO_USER of a throwaway user this module creates and removes).
One awf run per mode executes the probes below inside the sandbox and reports JSON; each
probe is asserted in its own test. The probes that would change the host on a build without
the sandbox only open for writing and write nothing (core_pattern, /etc/passwd), or write
inside this test's own directories.
"""

from __future__ import annotations

import json
import os
import platform
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from containers.sandbox import SANDBOX_ID
from tests.support.needs import need, need_root

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(300)]

MODES = ("root", "sudo")
PYTHON = "/usr/bin/python3"  # the host's, which the sandbox sees (not a venv's or pyenv's)
SECRETS = {"GITHUB_TOKEN": "ghp_probe_secret", "OPENAI_API_KEY": "sk-probe-secret",
           "AWS_SECRET_ACCESS_KEY": "aws-probe-secret"}
PLACEHOLDER = "placeholder-token-for-credential-isolation"
_SYSCALLS = {  # (ptrace, bpf, perf_event_open, io_uring_setup)
    "x86_64": (101, 321, 298, 425),
    "aarch64": (117, 280, 241, 425),
}

PROBES = r'''
import ctypes, errno, glob, json, os, socket, subprocess, sys
host_tmp, logs_in_ws, other_logs = sys.argv[1:4]
ptrace_nr, bpf_nr, perf_nr, uring_nr = map(int, sys.argv[4:8])
libc = ctypes.CDLL(None, use_errno=True)

def err(exc):
    return errno.errorcode.get(exc.errno, type(exc).__name__) if exc.errno else type(exc).__name__

def syscall(nr, *args):
    rc = libc.syscall(ctypes.c_long(nr), *args)
    return "ok" if rc >= 0 else errno.errorcode[ctypes.get_errno()]

def unix(path):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    try:
        s.connect(path)
        s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
        return "connected: " + s.recv(100).decode(errors="replace")
    except OSError as e:
        return err(e)
    finally:
        s.close()

def writable(path, create=False):
    """Open for writing and write nothing: harmless where it succeeds."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | (os.O_CREAT if create else 0), 0o644))
        return "writable"
    except OSError as e:
        return err(e)

def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        return err(e)

def listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError as e:
        return err(e)

def run(*cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    return {"rc": p.returncode, "out": p.stdout[-300:], "err": p.stderr[-300:]}

def ptrace_traceme():
    """In a child, which exits at once: a traced process would stop at its next exec."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, syscall(ptrace_nr, 0, 0, 0, 0).encode())
        os._exit(0)
    os.close(w)
    out = os.read(r, 100).decode()
    os.waitpid(pid, 0)
    return out

def perf_event_open():
    attr = (ctypes.c_uint64 * 16)()  # struct perf_event_attr, 128 bytes
    attr[0] = 1 | (128 << 32)  # type PERF_TYPE_SOFTWARE, size 128
    attr[1] = 1  # PERF_COUNT_SW_TASK_CLOCK
    attr[5] = 1 | (1 << 5) | (1 << 6)  # disabled, exclude_kernel, exclude_hv
    return syscall(perf_nr, ctypes.byref(attr), 0, -1, -1, 0)

def io_uring_setup():
    params = (ctypes.c_uint8 * 120)()
    return syscall(uring_nr, 1, ctypes.byref(params))

def bpf():
    attr = (ctypes.c_uint8 * 32)()  # BPF_MAP_LOOKUP_ELEM on fd 0: EINVAL/EBADF from the kernel
    return syscall(bpf_nr, 1, ctypes.byref(attr), 32)

def setuid_bit():
    with open("setuid-probe", "w") as f:
        f.write("#!/bin/sh\n")
    try:
        os.chmod("setuid-probe", 0o4755)
        return "set"
    except OSError as e:
        return err(e)

def setuid_create():
    try:
        os.close(os.open("setuid-created", os.O_WRONLY | os.O_CREAT, 0o4755))
        return oct(os.stat("setuid-created").st_mode & 0o7777)
    except OSError as e:
        return err(e)

def tiocsti():
    """In a child that makes a pty its controlling terminal, as the caller's terminal is the
    command's: push one byte into its input."""
    import fcntl, termios
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            master, slave = os.openpty()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            fcntl.ioctl(slave, termios.TIOCSTI, b"x")
            os.write(w, b"pushed")
        except OSError as e:
            os.write(w, err(e).encode())
        os._exit(0)
    os.close(w)
    out = os.read(r, 100).decode()
    os.waitpid(pid, 0)
    return out

def write_workspace():
    with open("made-in-sandbox", "w") as f:
        f.write("hello\n")
    return "written"

own_logs = glob.glob(host_tmp + "/awf-logs-*")
r = {
    "uid": os.getuid(), "gid": os.getgid(), "euid": os.geteuid(), "groups": os.getgroups(),
    "id_u": run("id", "-u")["out"].strip(),
    "status": {k: v.strip() for k, v in (line.split(":", 1) for line in open("/proc/self/status"))
               if k in ("CapEff", "CapBnd", "CapPrm", "NoNewPrivs", "Seccomp")},
    "docker_sock": unix("/var/run/docker.sock"),
    "docker_sock_run": unix("/run/docker.sock"),
    "containerd_sock": unix("/run/containerd/containerd.sock"),
    "run_listing": listing("/run"),
    "var_run_listing": listing("/var/run"),
    "core_pattern": writable("/proc/sys/kernel/core_pattern"),
    "sysrq": writable("/proc/sysrq-trigger"),
    "etc_passwd": writable("/etc/passwd"),
    "usr_bin": writable("/usr/bin/env"),
    "root_dir": writable("/root/.bashrc"),
    "host_tmp": listing(host_tmp),
    "own_logs_found": own_logs,
    "own_logs_forged": [writable(d + "/access.jsonl", create=True) for d in own_logs],
    "logs_in_ws": listing(logs_in_ws),
    "logs_in_ws_forged": writable(logs_in_ws + "/access.jsonl", create=True),
    "other_logs": writable(other_logs),
    "env": {k: v for k, v in os.environ.items()},
    "pid1_environ": read("/proc/1/environ"),
    "proc_pids": [p for p in os.listdir("/proc") if p.isdigit()],
    "npmrc": read(".npmrc"),
    "gh_hosts": read(".config/gh/hosts.yml"),
    "workspace_write": write_workspace(),
    "setuid_chmod": setuid_bit(),
    "setuid_create": setuid_create(),
    "unshare_Ur": run("unshare", "-Ur", "true"),
    "unshare_U": run("unshare", "-U", "true"),
    "ptrace": ptrace_traceme(),
    "bpf": bpf(),
    "perf_event_open": perf_event_open(),
    "io_uring_setup": io_uring_setup(),
    "tiocsti": tiocsti(),
    "passwd_lines": len(read("/etc/passwd").splitlines()),
    "usr_bin_count": len(listing("/usr/bin")),
    "heroku_link": listing(".config/heroku")[:3],
    "sys_firmware": listing("/sys/firmware"),
    "sys_writable": writable("/sys/kernel/mm/transparent_hugepage/enabled"),
}
print("PROBES " + json.dumps(r))
'''


@dataclass
class Box:
    """One mode's run: who awf runs as, its workspace, the probes' results."""

    mode: str
    env: dict[str, str]
    workspace: Path
    host_tmp: Path
    uid: int
    gid: int
    probes: dict[str, object]
    stderr: str


@pytest.fixture(scope="module")
def user() -> Iterator[tuple[str, int, int]]:
    """A throwaway login for the sudo mode, removed at the end."""
    need_root()
    need(shutil.which("useradd") is not None, "useradd (apt-get install passwd)")
    name = f"awfsbx{secrets.token_hex(3)}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True, timeout=30)
    try:
        entry = pwd.getpwnam(name)
        yield name, entry.pw_uid, entry.pw_gid
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True, timeout=30)


def awf_env(mode: str, user: tuple[str, int, int], workspace: Path,
            host_tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SUDO_", "GITHUB_", "AWF_")) and k.upper() not in (
               "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")}
    env.update(SECRETS, GITHUB_WORKSPACE=str(workspace), TMPDIR=str(host_tmp))
    if mode == "sudo":
        name, uid, gid = user
        env.update(SUDO_USER=name, SUDO_UID=str(uid), SUDO_GID=str(gid),
                   SUDO_COMMAND="/usr/bin/awf run")
    return env


def awf(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "awf.cli", "run", "--backend", "netns",
                           "--allow-domains", "allowed.test", *args],
                          capture_output=True, text=True, timeout=120, check=False, env=env,
                          cwd=cwd)


def make_workspace(base: Path, owner: tuple[int, int] | None) -> Path:
    ws = base / "ws"
    ws.mkdir()
    (ws / "probes.py").write_text(PROBES)
    (ws / ".npmrc").write_text("//registry.npmjs.org/:_authToken=npm-probe-secret\n")
    (ws / ".config" / "gh").mkdir(parents=True)
    (ws / ".config" / "gh" / "hosts.yml").write_text("github.com:\n  oauth_token: gh-secret\n")
    (ws / "awf-logs").mkdir()
    # links planted where credential masks go (a previous run could): never followed by a mount
    (ws / ".git-credentials").symlink_to("/etc/passwd")
    (ws / ".config" / "heroku").symlink_to("/usr")
    for p in [ws, *ws.rglob("*")]:
        if owner is not None:
            os.chown(p, *owner, follow_symlinks=False)
    os.chmod(base, 0o755)
    return ws


@pytest.fixture(scope="module", params=MODES)
def box(request: pytest.FixtureRequest, user: tuple[str, int, int]) -> Iterator[Box]:
    mode: str = request.param
    machine = platform.machine()
    need(machine in _SYSCALLS, f"x86_64 or aarch64 (this is {machine})")
    # not under pytest's 0700 /tmp/pytest-of-root: without the sandbox the sudo caller could
    # not reach its own workspace there, and the reproductions would not run at all
    base = Path(tempfile.mkdtemp(prefix=f"awf-sbx-{mode}-", dir="/var/tmp"))
    try:
        yield _run_probes(mode, user, base, machine)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run_probes(mode: str, user: tuple[str, int, int], base: Path, machine: str) -> Box:
    ws = make_workspace(base, (user[1], user[2]) if mode == "sudo" else None)
    host_tmp = base / "host-tmp"
    host_tmp.mkdir()
    other = host_tmp / "awf-logs-0ther0ne"  # another run's logs, root's
    other.mkdir()
    (other / "access.jsonl").write_text("")
    env = awf_env(mode, user, ws, host_tmp)
    done = awf(env, ws, "--proxy-logs-dir", str(ws / "awf-logs"), "--",
               PYTHON, "probes.py", str(host_tmp), str(ws / "awf-logs"),
               str(other / "access.jsonl"), *map(str, _SYSCALLS[machine]))
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("PROBES ")), None)
    assert line, f"no probe output; exit {done.returncode}; stderr: {done.stderr[-3000:]}"
    uid, gid = (user[1], user[2]) if mode == "sudo" else (SANDBOX_ID, SANDBOX_ID)
    return Box(mode, env, ws, host_tmp, uid, gid, json.loads(line[len("PROBES "):]),
               done.stderr)


# -- who the command is ----------------------------------------------------------------------


def test_command_is_never_uid_0(box: Box) -> None:
    p = box.probes
    assert p["id_u"] != "0"
    assert (p["uid"], p["euid"], p["gid"]) == (box.uid, box.uid, box.gid)
    assert p["groups"] in ([], [box.gid])


def test_command_has_no_capabilities_and_seccomp(box: Box) -> None:
    status = box.probes["status"]
    assert isinstance(status, dict)
    assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == 0
    assert int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"


def test_workspace_is_writable_and_files_belong_to_its_owner(box: Box) -> None:
    assert box.probes["workspace_write"] == "written"
    made = box.workspace / "made-in-sandbox"
    assert made.read_text() == "hello\n"
    st, ws = made.stat(), box.workspace.stat()
    assert (st.st_uid, st.st_gid) == (ws.st_uid, ws.st_gid)


# -- the host's sockets, /proc, root's files ------------------------------------------------


@pytest.mark.parametrize("name", ["docker_sock", "docker_sock_run", "containerd_sock"])
def test_docker_and_containerd_sockets_are_unreachable(box: Box, name: str) -> None:
    assert not str(box.probes[name]).startswith("connected"), box.probes[name]
    assert box.probes[name] == "ENOENT"


def test_run_and_var_run_are_empty(box: Box) -> None:
    assert box.probes["run_listing"] == []
    assert box.probes["var_run_listing"] == []


@pytest.mark.parametrize("name", ["core_pattern", "sysrq"])
def test_proc_sys_and_sysrq_are_not_writable(box: Box, name: str) -> None:
    assert box.probes[name] in ("EROFS", "EACCES", "EPERM", "ENOENT"), box.probes[name]


@pytest.mark.parametrize("name", ["etc_passwd", "usr_bin", "root_dir"])
def test_host_root_files_are_not_writable(box: Box, name: str) -> None:
    assert box.probes[name] != "writable"


def test_host_tmp_and_other_runs_logs_are_invisible(box: Box) -> None:
    assert box.probes["host_tmp"] == "ENOENT"
    assert box.probes["own_logs_found"] == []
    assert box.probes["other_logs"] == "ENOENT"
    assert (box.host_tmp / "awf-logs-0ther0ne" / "access.jsonl").read_text() == ""


def test_own_logs_under_the_workspace_are_hidden_and_read_only(box: Box) -> None:
    assert box.probes["logs_in_ws"] == []
    assert box.probes["logs_in_ws_forged"] in ("EROFS", "EACCES")
    assert "0 requests" in box.stderr  # the summary counted no forged record


def test_sys_is_read_only_and_firmware_masked(box: Box) -> None:
    assert box.probes["sys_firmware"] in ([], "ENOENT")
    assert box.probes["sys_writable"] in ("EROFS", "EACCES", "ENOENT")


def test_processes_outside_the_command_are_invisible(box: Box) -> None:
    assert box.probes["pid1_environ"] == "ENOENT"
    assert "1" not in box.probes["proc_pids"]  # type: ignore[operator]


@pytest.mark.parametrize("name", ["npmrc", "gh_hosts"])
def test_credential_files_in_the_workspace_are_masked(box: Box, name: str) -> None:
    assert box.probes[name] == ""


def test_no_setuid_or_setgid_files(box: Box) -> None:
    assert box.probes["setuid_chmod"] == "EPERM"
    assert box.probes["setuid_create"] == "EPERM"
    assert not (box.workspace / "setuid-probe").stat().st_mode & 0o6000


# -- secrets ----------------------------------------------------------------------------------


def test_secrets_are_not_in_the_environment_without_e(box: Box) -> None:
    env = box.probes["env"]
    assert isinstance(env, dict)
    # OPENAI_API_KEY in awf's environment starts the API proxy sidecar: the command gets its
    # placeholder under that name, never the key
    assert set(SECRETS) & set(env) <= {"OPENAI_API_KEY"}
    assert env.get("OPENAI_API_KEY", PLACEHOLDER) == PLACEHOLDER
    assert not any(v in str(env) for v in SECRETS.values())


def test_secret_is_there_with_e(box: Box) -> None:
    done = awf(box.env, box.workspace, "-e", "GITHUB_TOKEN", "--",
               PYTHON, "-c", "import os, json; print(json.dumps(dict(os.environ)))")
    assert done.returncode == 0, done.stderr[-2000:]
    env = json.loads(done.stdout.splitlines()[-1])
    assert env["GITHUB_TOKEN"] == SECRETS["GITHUB_TOKEN"]
    assert env.get("OPENAI_API_KEY", PLACEHOLDER) == PLACEHOLDER  # the API sidecar's
    assert "AWS_SECRET_ACCESS_KEY" not in env


# -- escape hatches ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["unshare_Ur", "unshare_U"])
def test_unshare_user_namespace_is_refused(box: Box, name: str) -> None:
    probe = box.probes[name]
    assert isinstance(probe, dict)
    assert probe["rc"] != 0, probe
    assert "Operation not permitted" in str(probe["err"]), probe


@pytest.mark.parametrize("name", ["ptrace", "bpf", "perf_event_open", "io_uring_setup"])
def test_kernel_attack_surface_is_refused(box: Box, name: str) -> None:
    assert box.probes[name] == "EPERM", box.probes[name]



def test_stdin_and_exit_status_pass_through(box: Box) -> None:
    done = subprocess.run([sys.executable, "-m", "awf.cli", "run", "--backend", "netns",
                           "--allow-domains", "allowed.test", "--", "bash", "-c",
                           "read line; echo got:$line; exit 3"],
                          input="hello\n", capture_output=True, text=True, timeout=120,
                          check=False, env=box.env, cwd=box.workspace)
    assert done.returncode == 3, done.stderr[-2000:]
    assert done.stdout == "got:hello\n"


def test_keystrokes_cannot_be_pushed_into_the_terminal(box: Box) -> None:
    assert box.probes["tiocsti"] == "EPERM"


def test_roots_home_is_never_the_workspace(box: Box) -> None:
    """Run from /root: as the sandbox uid the command would own root's dotfiles through the
    idmapped workspace; it gets an empty home instead, and the host's /root is untouched."""
    probe = Path("/root") / f".awf-sbx-probe-{secrets.token_hex(4)}"
    env = {k: v for k, v in box.env.items() if k != "GITHUB_WORKSPACE"}
    try:
        done = subprocess.run([sys.executable, "-m", "awf.cli", "run", "--backend", "netns",
                               "--allow-domains", "allowed.test", "--", "bash", "-c",
                               f"echo planted >> {probe}; ls -A /root 2>/dev/null | wc -l"],
                              capture_output=True, text=True, timeout=120, check=False,
                              env=env, cwd="/root")
        assert not probe.exists(), done.stdout + done.stderr[-2000:]
        assert "root's home" in done.stderr
    finally:
        probe.unlink(missing_ok=True)


def test_links_planted_at_mask_paths_do_not_steer_mounts(box: Box) -> None:
    """The setup skips a mask whose path is a symlink (it would mount wherever the link
    points); the link then leads inside the sandbox's own tree, and the run goes on."""
    assert box.probes["passwd_lines"] > 0  # type: ignore[operator]
    assert box.probes["usr_bin_count"] > 10  # type: ignore[operator]
    assert box.probes["heroku_link"] == sorted(os.listdir("/usr"))[:3]


@pytest.mark.parametrize(("mask", "code"), [(False, 125), (True, 127)])
def test_a_mount_through_a_symlink_fails_closed(tmp_path: Path, mask: bool, code: int) -> None:
    """sandbox_entry itself, in a throwaway PID and mount namespace: a target that runs through
    a link is exit 125 before the command exists; a credential mask there is skipped instead
    (the setup goes on, and exec finds no `true` in this bare root: 127)."""
    need_root()
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "link").symlink_to("/etc")
    spec = {
        "root": "/tmp", "symlinks": [], "uid": SANDBOX_ID, "gid": SANDBOX_ID, "groups": [],
        "home": "/", "workdir": "/", "env": [["PATH", "/usr/bin:/bin"]],
        "argv": ["true"], "seccomp_profiles": [], "seccomp_stage2": [],
        "mounts": [
            {"type": "tmpfs", "target": "/tmp", "options": "rw,size=1m", "mask": False},
            {"type": "bind", "source": str(ws), "target": f"/tmp{ws}", "read_only": False,
             "mask": False},
            {"type": "tmpfs", "target": f"/tmp{ws}/link/x", "options": "ro,size=4k",
             "mask": mask},
        ],
    }
    root = str(Path(__file__).resolve().parents[2])
    boot = (f"import os, sys; sys.path.insert(0, {root!r}); fd = os.memfd_create('s'); "
            "os.write(fd, sys.argv[1].encode()); "
            "from containers.sandbox_entry import main; sys.exit(main(fd))")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
                           sys.executable, "-I", "-c", boot, json.dumps(spec)],
                          capture_output=True, text=True, timeout=60, check=False, cwd="/")
    assert done.returncode == code, done.stderr
    assert ("reached through a symlink" in done.stderr) is not mask
    assert not os.path.exists("/etc/x")


def test_the_setup_never_mounts_in_the_namespace_that_started_it(tmp_path: Path) -> None:
    """sandbox_entry started with no namespace of its own (not as awf starts it): it makes a
    private mount namespace itself before its first mount, so the caller's mount table (here
    the test's, the host's) is the same after it as before."""
    need_root()
    root = tmp_path / "root"
    root.mkdir()
    spec = {
        "root": str(root), "symlinks": [], "uid": SANDBOX_ID, "gid": SANDBOX_ID, "groups": [],
        "home": "/", "workdir": "/", "env": [["PATH", "/usr/bin:/bin"]],
        "argv": ["true"], "seccomp_profiles": [], "seccomp_stage2": [],
        "mounts": [{"type": "tmpfs", "target": str(root), "options": "rw,size=1m",
                    "mask": False}],
    }
    repo = str(Path(__file__).resolve().parents[2])
    boot = (f"import os, sys; sys.path.insert(0, {repo!r}); fd = os.memfd_create('s'); "
            "os.write(fd, sys.argv[1].encode()); "
            "from containers.sandbox_entry import main; sys.exit(main(fd))")
    before = Path("/proc/self/mountinfo").read_text()
    done = subprocess.run([sys.executable, "-I", "-c", boot, json.dumps(spec)],
                          capture_output=True, text=True, timeout=60, check=False, cwd="/")
    assert done.returncode == 127, done.stderr  # laid out, then no `true` in the bare root
    assert Path("/proc/self/mountinfo").read_text() == before
    assert os.listdir(root) == []  # its tmpfs and /dev were never on this side


@pytest.mark.parametrize("go", [False, True])
def test_the_command_waits_for_the_go(go: bool) -> None:
    """sandbox_entry with a gate, in a throwaway PID and mount namespace: its setup done, it
    goes on to the command only after the go (here the bare root has no `true`: 127, the
    exec was tried); a gate closed without one (awf stopping the run, or its self-test
    failing) is exit 125 and no exec was tried."""
    need_root()
    spec = {
        "root": "/tmp", "symlinks": [], "uid": SANDBOX_ID, "gid": SANDBOX_ID, "groups": [],
        "home": "/", "workdir": "/", "env": [["PATH", "/usr/bin:/bin"]],
        "argv": ["true"], "seccomp_profiles": [], "seccomp_stage2": [],
        "mounts": [{"type": "tmpfs", "target": "/tmp", "options": "rw,size=1m", "mask": False}],
    }
    root = str(Path(__file__).resolve().parents[2])
    boot = (f"import os, sys; sys.path.insert(0, {root!r}); fd = os.memfd_create('s'); "
            "os.write(fd, sys.argv[1].encode()); "
            "from containers.sandbox_entry import main; sys.exit(main(fd, int(sys.argv[2])))")
    gate_r, gate_w = os.pipe()
    try:
        proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--pid",
                                 "--fork", sys.executable, "-I", "-c", boot, json.dumps(spec),
                                 str(gate_r)], pass_fds=(gate_r,), stderr=subprocess.PIPE,
                                text=True, cwd="/")
    finally:
        os.close(gate_r)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(1)  # set up, and waiting: nothing goes on without the go
        if go:
            os.write(gate_w, b"g")
    finally:
        os.close(gate_w)
    assert proc.wait(30) == (127 if go else 125)
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert ("cannot run 'true'" in err) is go, err
    assert "setup failed" not in err
