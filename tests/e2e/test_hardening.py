"""The agent container's hardening, end to end (issue 6, docs/architecture.md §9): real `awf run`s.

Chroot host mode, hidden credential files at both views, secrets kept out of the container's
environment and served once by the one-shot library, no capabilities, seccomp stages 1 and 2,
hidepid, limits that contain a fork bomb and a memory hog, and argv passed without re-quoting.
Each `awf run` batches several probes; each probe is asserted in its own test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from containers.hostview import CREDENTIAL_DIRS, CREDENTIAL_FILES
from tests.support.needs import need_docker, need_root

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

TOKEN = "ghp_awfTestToken0123456789"
POLICY = ("--allow-domains", "allowed.test")


def awf(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "awf.cli", "run", *POLICY, *args],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          cwd=cwd, env=env)


def probe_output(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("PROBES ")), None)
    assert line, f"no probe output; exit {done.returncode}; stderr: {done.stderr[-3000:]}"
    result: dict[str, object] = json.loads(line[len("PROBES "):])
    return result


@pytest.fixture(scope="module")
def docker_ready() -> None:
    need_docker()
    need_root()


# a file's text, or the error's name, as the probe scripts below report it
READ = '''
def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError as e:
        return "ERR " + type(e).__name__
'''

# --- hidden credentials ------------------------------------------------------------------------

HIDDEN = READ + r'''
import json, os, sys
home = os.environ["HOME"]
files, dirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError as e:
        return "ERR " + type(e).__name__
r = {"home": home, "cwd": os.getcwd()}
os.symlink(os.path.join(home, ".npmrc"), "/tmp/npmrc-link")
r["symlink"] = read("/tmp/npmrc-link")
r["mcp_logs"] = listing("/tmp/gh-aw/mcp-logs")
for base in sys.argv[3:]:
    r[base] = {"files": {f: read(os.path.join(base, f)) for f in files},
               "dirs": {d: listing(os.path.join(base, d)) for d in dirs},
               "plain": read(os.path.join(base, "plain.txt"))}
print("PROBES " + json.dumps(r))
'''


@pytest.fixture(scope="module")
def fake_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home holding every credential file and directory, each with a secret in it."""
    home = tmp_path_factory.mktemp("home")
    for rel in CREDENTIAL_FILES:
        path = home / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"SECRET {rel}\n")
    for rel in CREDENTIAL_DIRS:
        (home / rel).mkdir(parents=True, exist_ok=True)
        (home / rel / "token").write_text("SECRET dir\n")
    (home / "plain.txt").write_text("visible\n")
    (home / "hidden.py").write_text(HIDDEN)
    for path in [home, *home.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return home


def _hidden_run(home: Path, *extra: str) -> dict[str, object]:
    mcp = Path("/tmp/gh-aw/mcp-logs")  # the host's own /tmp, as upstream's test uses
    made = not mcp.exists()
    mcp.mkdir(parents=True, exist_ok=True)
    (mcp / f"awf-test-{os.getpid()}.log").write_text("SECRET mcp\n")
    try:
        return _hidden_run_once(home, *extra)
    finally:
        (mcp / f"awf-test-{os.getpid()}.log").unlink()
        if made:
            mcp.rmdir()
            mcp.parent.rmdir()


def _hidden_run_once(home: Path, *extra: str) -> dict[str, object]:
    env = {**os.environ, "HOME": str(home)}
    env.pop("GITHUB_WORKSPACE", None)
    done = awf("-v", f"{home}:/data:ro", *extra, "--", "python3", f"{home}/hidden.py",
               json.dumps(CREDENTIAL_FILES), json.dumps(CREDENTIAL_DIRS), str(home), "/data",
               cwd=home, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return probe_output(done)


@pytest.fixture(scope="module")
def hidden_chroot(docker_ready: None, fake_home: Path) -> dict[str, object]:
    return _hidden_run(fake_home)


@pytest.fixture(scope="module")
def hidden_image(docker_ready: None, fake_home: Path) -> dict[str, object]:
    """--agent-image: no chroot, the same table laid out at the image's root."""
    from containers.driver import DockerDriver
    from containers.images import ensure_images

    driver = DockerDriver.from_env()
    try:
        image = ensure_images(driver, progress=lambda _: None).runtime
    finally:
        driver.close()
    return _hidden_run(fake_home, "--agent-image", image)


@pytest.mark.parametrize("view", ["hidden_chroot", "hidden_image"])
@pytest.mark.parametrize("rel", CREDENTIAL_FILES)
def test_credential_files_read_empty_at_home_and_in_a_mount(
        request: pytest.FixtureRequest, fake_home: Path, view: str, rel: str) -> None:
    got = request.getfixturevalue(view)
    assert got["home"] == str(fake_home)
    assert got["cwd"] == str(fake_home)
    for base in (str(fake_home), "/data"):
        seen = got[base]["files"][rel]
        assert seen == "", f"{base}/{rel} reads {seen!r}"


@pytest.mark.parametrize("view", ["hidden_chroot", "hidden_image"])
def test_credential_dirs_are_empty_and_other_files_stay_visible(
        request: pytest.FixtureRequest, fake_home: Path, view: str) -> None:
    got = request.getfixturevalue(view)
    for base in (str(fake_home), "/data"):
        assert got[base]["plain"] == "visible\n"
        for rel in CREDENTIAL_DIRS:
            assert got[base]["dirs"][rel] == [], (base, rel)


@pytest.mark.parametrize("view", ["hidden_chroot", "hidden_image"])
def test_symlinks_and_host_tmp_reveal_nothing(request: pytest.FixtureRequest, view: str
                                              ) -> None:
    got = request.getfixturevalue(view)
    assert got["symlink"] == ""  # a link to a masked file reads the mask
    # issue 16: /tmp/gh-aw is shared now, its mcp-logs covered by an empty read-only tmpfs
    assert got["mcp_logs"] == []


def test_volumes_of_secret_stores_are_refused(docker_ready: None, fake_home: Path) -> None:
    for spec in (f"{fake_home}/.ssh:/keys", f"{fake_home}/.aws:/aws:ro"):
        done = awf("-v", spec, "--", "true")
        assert done.returncode == 2, done.stderr
        assert "credentials" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


# --- tokens, privileges, seccomp ---------------------------------------------------------------

INSIDE = READ + r'''
import ctypes, ctypes.util, errno, json, os, subprocess, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.getenv.restype = ctypes.c_char_p
libc.syscall.restype = ctypes.c_long
def run(*cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    return {"rc": p.returncode, "out": p.stdout[-300:], "err": p.stderr[-300:]}
def sys_errno(*args):
    r = libc.syscall(*args)
    return "ok" if r >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")
first, second = libc.getenv(b"GITHUB_TOKEN"), libc.getenv(b"GITHUB_TOKEN")
time.sleep(1)
r = {
 "first": (first or b"").decode(), "second": (second or b"").decode(),
 "self_environ_after": read("/proc/self/environ"),
 "child": run(sys.executable, "-c",
              "import ctypes; g = ctypes.CDLL(None).getenv; g.restype = ctypes.c_char_p; "
              "print(g(b'GITHUB_TOKEN'))"),
 "pid1_environ": read("/proc/1/environ"),
 "pid1_visible": os.path.exists("/proc/1"),
 "status": run("grep", "-E", "^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):",
               "/proc/self/status"),
 "unshare_net": run("unshare", "-n", "true"),
 "unshare_user": run("unshare", "-U", "-r", "true"),
 "mount": run("mount", "-t", "tmpfs", "none", "/tmp"),
 "nsenter": run("nsenter", "-t", "1", "-n", "true"),
 "chroot": sys_errno(161 if os.uname().machine == "x86_64" else 51, b"/"),
 "ptrace_traceme": sys_errno(101 if os.uname().machine == "x86_64" else 117, 0, 0, 0, 0),
 "strace": run("strace", "-f", "true"),
 "keyctl": sys_errno(250 if os.uname().machine == "x86_64" else 219, 0, 0, 0, 0),
 "bpf": sys_errno(321 if os.uname().machine == "x86_64" else 280, 0, 0, 0),
 "perf_event_open": sys_errno(298 if os.uname().machine == "x86_64" else 241, 0, 0, 0, 0, 0),
 "sysrq": read("/proc/sysrq-trigger"),
 "root_writable": os.access("/", os.W_OK),
 "usr_writable": run("touch", "/usr/awf-probe"),
 "tmp_writable": run("touch", "/tmp/awf-probe"),
 "uid": os.getuid(),
}
print("PROBES " + json.dumps(r))
'''


@pytest.fixture(scope="module")
def inside(docker_ready: None, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[dict[str, object], subprocess.CompletedProcess[str], Path]:
    d = tmp_path_factory.mktemp("inside")
    (d / "inside.py").write_text(INSIDE)
    os.chmod(d, 0o755)
    os.chmod(d / "inside.py", 0o644)
    logs = tmp_path_factory.mktemp("logs")
    env = {**os.environ, "GITHUB_TOKEN": TOKEN, "GH_TOKEN": "gho_notForwarded"}
    done = awf("-e", "GITHUB_TOKEN", "--env-all", "--proxy-logs-dir", str(logs), "-v",
               f"{d}:/probe:ro", "--", "python3", "/probe/inside.py", env=env)
    return probe_output(done), done, logs


def test_forwarded_token_is_served_once_then_cached(inside: tuple[dict[str, object], object,
                                                                  Path]) -> None:
    got = inside[0]
    assert got["first"] == TOKEN
    assert got["second"] == TOKEN
    assert TOKEN not in str(got["self_environ_after"])


def test_a_later_process_gets_no_token(inside: tuple[dict[str, object], object, Path]) -> None:
    child = inside[0]["child"]
    assert child["rc"] == 0, child  # type: ignore[index]
    assert child["out"].strip() == "None", child  # type: ignore[index]


def test_pid1_environment_holds_no_token(inside: tuple[dict[str, object], object, Path]
                                         ) -> None:
    got = inside[0]
    assert got["pid1_environ"] == "ERR PermissionError"  # fewer caps than PID 1: no ptrace read
    if got["uid"] != 0:
        assert got["pid1_visible"] is False  # hidepid: not even listed for another user


def test_tokens_not_asked_for_are_not_forwarded(inside: tuple[dict[str, object], object, Path]
                                                ) -> None:
    done = inside[1]
    assert "gho_notForwarded" not in json.dumps(inside[0])
    assert "forwarding GITHUB_TOKEN" in done.stderr  # type: ignore[attr-defined]


def test_token_is_in_no_log_or_record(inside: tuple[dict[str, object], object, Path]) -> None:
    logs = inside[2]
    for path in logs.rglob("*"):
        if path.is_file():
            assert TOKEN not in path.read_text(errors="replace"), path


def test_no_capabilities_and_seccomp_on(inside: tuple[dict[str, object], object, Path]) -> None:
    out = str(inside[0]["status"]["out"])  # type: ignore[index]
    status = dict(line.split(":\t", 1) for line in out.splitlines())
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[cap], 16) == 0, status
    assert status["NoNewPrivs"] == "1", status
    assert status["Seccomp"] == "2", status


@pytest.mark.parametrize("name", ["unshare_net", "unshare_user", "mount", "nsenter", "strace",
                                  "usr_writable"])
def test_escape_tools_fail(inside: tuple[dict[str, object], object, Path], name: str) -> None:
    got = inside[0][name]
    assert got["rc"] != 0, got  # type: ignore[index]


@pytest.mark.parametrize("name", ["chroot", "ptrace_traceme", "keyctl", "bpf",
                                  "perf_event_open"])
def test_denied_syscalls_get_eperm(inside: tuple[dict[str, object], object, Path],
                                   name: str) -> None:
    assert inside[0][name] == "EPERM", inside[0][name]


def test_proc_is_masked_and_root_read_only(inside: tuple[dict[str, object], object, Path]
                                           ) -> None:
    got = inside[0]
    assert got["sysrq"] in ("", "ERR PermissionError", "ERR FileNotFoundError"), got["sysrq"]
    assert got["root_writable"] is False
    assert got["tmp_writable"]["rc"] == 0  # type: ignore[index]


def test_run_exit_code_is_the_commands(inside: tuple[dict[str, object],
                                                     subprocess.CompletedProcess[str], Path]
                                       ) -> None:
    assert inside[1].returncode == 0, inside[1].stderr[-2000:]


# --- limits --------------------------------------------------------------------------------------

FORK_BOMB = r'''
import os, signal, time
pids = []
for _ in range(400):  # bounded: at most 400 tries
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    pids.append(pid)
for pid in pids:
    os.kill(pid, signal.SIGKILL)
for pid in pids:
    os.waitpid(pid, 0)
print("FORKED", len(pids))
'''


def test_pids_limit_contains_a_fork_bomb(docker_ready: None) -> None:
    done = awf("--pids-limit", "64", "--", "python3", "-c", FORK_BOMB)
    assert done.returncode == 0, done.stderr[-2000:]
    forked = int(done.stdout.split("FORKED")[1])
    assert 0 < forked < 64


def test_memory_limit_kills_a_memory_hog_with_137(docker_ready: None) -> None:
    hog = "x = []\nfor _ in range(64):\n    x.append(bytearray(16 << 20))\nprint('SURVIVED')"
    done = awf("--memory-limit", "96m", "--", "python3", "-c", hog)
    assert done.returncode == 137, (done.returncode, done.stderr[-2000:])
    assert "SURVIVED" not in done.stdout


def test_bad_limits_are_exit_2(docker_ready: None) -> None:
    for args in (("--memory-limit", "lots"), ("--pids-limit", "0"), ("--cpus", "-2")):
        done = awf(*args, "--", "true")
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


# --- the command as given ------------------------------------------------------------------------


def test_argv_is_passed_as_a_list_without_requoting(docker_ready: None) -> None:
    args = ["a b", "$HOME", "it's", '"q"', "`id`", "$(id)", "*", "\\n"]
    done = awf("--", "printf", "%s\\n", *args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == args


def test_one_string_runs_under_a_shell(docker_ready: None) -> None:
    done = awf("--", "echo $((6 * 7)) | tr 4 X")
    assert done.stdout.strip() == "X2", done.stderr[-2000:]


@pytest.fixture
def cleanup_kept() -> Iterator[list[str]]:
    runs: list[str] = []
    yield runs
    for run in runs:
        subprocess.run([sys.executable, "-m", "awf.cli", "cleanup", "--run", run],
                       capture_output=True, timeout=120, check=False)


def test_docker_inspect_shows_no_token(docker_ready: None, tmp_path: Path,
                                       cleanup_kept: list[str]) -> None:
    env = {**os.environ, "MY_API_TOKEN": TOKEN}
    done = awf("--keep-containers", "--proxy-logs-dir", str(tmp_path), "-e", "MY_API_TOKEN",
               "--", "python3", "-c", "import os; print(len(os.environ['MY_API_TOKEN']))",
               env=env)
    run = json.loads((tmp_path / "run.json").read_text())["id"]
    cleanup_kept.append(run)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(len(TOKEN))  # it reached the command
    inspect = subprocess.run(["docker", "inspect", f"awf-{run}-agent"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
    assert TOKEN not in inspect
    assert "MY_API_TOKEN" not in inspect


def test_pid1_is_invisible_to_the_sudo_caller(docker_ready: None) -> None:
    env = {**os.environ, "SUDO_UID": "4321", "SUDO_GID": "4321"}
    done = awf("--", "bash", "-c", "id -u; test -e /proc/1 && echo visible || echo hidden; "
               "ls /proc | grep -cx 1", env=env)
    assert done.stdout.split()[:3] == ["4321", "hidden", "0"], done.stdout + done.stderr
