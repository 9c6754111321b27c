"""Seccomp stage 1 under a real Docker engine, on the awf-agent image (docs/architecture.md §9.6).

Each check is one `docker run --rm` of the agent image with the entrypoint replaced, the
profile passed as `--security-opt seccomp=<file>`, every capability dropped (or only the one a
check needs) and no network. Ordinary workloads must run; the escape hatches must get EPERM,
clone3 ENOSYS. Mount works under stage 1 with CAP_SYS_ADMIN: stage 2 is what takes it away.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from containers.seccomp import stage1_json
from tests.support.needs import need_docker

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

TIMEOUT = 60

# Prints one JSON line: each probed syscall's outcome, "ok" or the errno's name.
SYSCALL_PROBE = r"""
import ctypes, errno, json, platform
libc = ctypes.CDLL(None, use_errno=True)
NR = {"x86_64": {"unshare": 272, "setns": 308, "keyctl": 250, "add_key": 248, "bpf": 321,
                 "pivot_root": 155},
      "aarch64": {"unshare": 97, "setns": 268, "keyctl": 219, "add_key": 217, "bpf": 280,
                  "pivot_root": 41}}[platform.machine()]
CLONE3, CLONE_NEWNET, CLONE_NEWUSER, PTRACE_TRACEME = 435, 0x40000000, 0x10000000, 0
L = ctypes.c_long
def outcome(ret):
    return "ok" if ret >= 0 else errno.errorcode[ctypes.get_errno()]
def sys(nr, *args):
    ctypes.set_errno(0)
    return outcome(libc.syscall(L(nr), *(L(a) for a in args)))
ctypes.set_errno(0)
got = {"ptrace_traceme": outcome(libc.ptrace(L(PTRACE_TRACEME), L(0), L(0), L(0)))}
got["unshare_net"] = sys(NR["unshare"], CLONE_NEWNET)
got["unshare_user"] = sys(NR["unshare"], CLONE_NEWUSER)
got["setns"] = sys(NR["setns"], 0, 0)
got["keyctl"] = sys(NR["keyctl"], 0, -3, 0)  # KEYCTL_GET_KEYRING_ID, session keyring
got["add_key"] = sys(NR["add_key"], 0, 0, 0, 0, -3)
got["bpf"] = sys(NR["bpf"], 0, 0, 0)
got["pivot_root"] = sys(NR["pivot_root"], 0, 0)
got["clone3"] = sys(CLONE3, 0, 0)
got["getpid"] = sys(39 if platform.machine() == "x86_64" else 172)
print(json.dumps(got))
"""

WORKLOAD = r"""
import concurrent.futures, os, socket, subprocess, threading
srv = socket.create_server(("127.0.0.1", 0))
def serve():
    conn, _ = srv.accept()
    conn.sendall(conn.recv(64).upper())
    conn.close()
t = threading.Thread(target=serve)
t.start()
with socket.create_connection(srv.getsockname()) as cl:
    cl.sendall(b"ping")
    assert cl.recv(64) == b"PING"
t.join()
a, b = socket.socketpair()
a.sendall(b"x")
assert b.recv(1) == b"x"
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    assert sum(pool.map(lambda n: n * n, range(100))) == 328350
out = subprocess.run(["sh", "-c", "echo sub | cat"], capture_output=True, text=True, check=True)
assert out.stdout == "sub\n", out
pid = os.fork()
if pid == 0:
    os._exit(7)
assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7
print("workload ok")
"""

# PID 1's setup under stage 1 with containers/agent/entry.py's own functions (in the image at
# /usr/local/lib/awf), then stage 2 and exec.
SETUP = r"""
import os, sys
sys.path.insert(0, "/usr/local/lib/awf")
import entry
lib = entry.load_seccomp()
entry.mount("none", "/mnt", "tmpfs", 0, "size=1m")
assert entry._libc.umount2(b"/mnt", entry.MNT_DETACH) == 0
os.chroot("/")
os.chdir("/")
entry.drop_bounding_set()
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
entry.set_caps(None)
assert entry._libc.prctl(entry.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
entry.install_stage2(lib, ["mount", "umount", "umount2", "chroot", "pivot_root", "unshare",
                           "setns"])
os.execvp("sh", ["sh", "-c", "echo setup ok"])
"""


@pytest.fixture(scope="module")
def image() -> str:
    need_docker()
    from containers.driver import DockerDriver
    from containers.images import ensure_images

    return ensure_images(DockerDriver.from_env(), progress=lambda _: None).agent


@pytest.fixture(scope="module")
def profile_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("seccomp") / "stage1.json"
    path.write_text(stage1_json())
    yield path
    path.unlink()


def run(image: str, profile: Path, *argv: str,
        caps: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    cmd = ["docker", "run", "--rm", "--label", "io.awf.test=1", "--network", "none",
           "--security-opt", f"seccomp={profile}", "--cap-drop", "ALL"]
    for cap in caps:
        cmd += ["--cap-add", cap]
    cmd += ["--entrypoint", argv[0], image, *argv[1:]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, check=False)


@pytest.fixture(scope="module")
def probes(image: str, profile_file: Path) -> dict[str, str]:
    done = run(image, profile_file, "python3", "-c", SYSCALL_PROBE)
    assert done.returncode == 0, done.stderr
    got: dict[str, str] = json.loads(done.stdout)
    return got


def test_true(image: str, profile_file: Path) -> None:
    done = run(image, profile_file, "true")
    assert done.returncode == 0, done.stderr


def test_python_socket_thread_subprocess_workload(image: str, profile_file: Path) -> None:
    done = run(image, profile_file, "python3", "-c", WORKLOAD)
    assert (done.returncode, done.stdout) == (0, "workload ok\n"), done.stderr


@pytest.mark.parametrize(("argv", "want"), [
    (("bash", "-c", "echo ok | cat"), "ok"),
    (("curl", "--version"), "curl "),
    (("git", "--version"), "git version"),
])
def test_everyday_tools(image: str, profile_file: Path, argv: tuple[str, ...], want: str) -> None:
    done = run(image, profile_file, *argv)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(want), done.stdout


@pytest.mark.parametrize("flag", ["-n", "-U", "-m", "-p"])
def test_unshare_command_fails(image: str, profile_file: Path, flag: str) -> None:
    done = run(image, profile_file, "unshare", flag, "true")
    assert done.returncode != 0
    assert "Operation not permitted" in done.stderr, done.stderr


@pytest.mark.parametrize("name", ["ptrace_traceme", "unshare_net", "unshare_user", "setns",
                                  "keyctl", "add_key", "bpf", "pivot_root"])
def test_denied_syscall_gets_eperm(probes: dict[str, str], name: str) -> None:
    assert probes[name] == "EPERM", probes


def test_clone3_gets_enosys(probes: dict[str, str]) -> None:
    assert probes["clone3"] == "ENOSYS", probes


def test_probe_itself_works(probes: dict[str, str]) -> None:
    assert probes["getpid"] == "ok", probes


def test_mount_allowed_with_sys_admin_but_unshare_not(image: str, profile_file: Path) -> None:
    done = run(image, profile_file, "sh", "-c",
               "mount -t tmpfs none /mnt && echo mounted; unshare -m true; echo unshare=$?",
               caps=("SYS_ADMIN",))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["mounted", "unshare=1"], (done.stdout, done.stderr)
    assert "Operation not permitted" in done.stderr, done.stderr


def test_entrypoint_setup_sequence_allowed(image: str, profile_file: Path) -> None:
    done = run(image, profile_file, "python3", "-c", SETUP,
               caps=("SYS_ADMIN", "SYS_CHROOT", "SETUID", "SETGID", "SETPCAP"))
    assert (done.returncode, done.stdout) == (0, "setup ok\n"), done.stderr
