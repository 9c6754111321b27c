"""Issue 19, item 5: one line, never a traceback.

A table of the failures a user can cause or meet: each runs the real `awf`, and the test asserts
one `awf:` line on stderr, the documented exit status (2 for what they typed, 125 for what the
host lacks, 0 where awf can safely go on) and that nothing is left behind. At the end every
captured output is written to one directory and `grep -r Traceback` over it must find nothing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.needs import need_docker, need_root

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
POLICY = ("--allow-domains", "example.com")
OUTPUTS: list[tuple[str, str]] = []  # (case, stdout + stderr) of every run


@dataclass
class Ctx:
    tmp: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path | None = None
    prefix: list[str] = field(default_factory=list)  # e.g. setpriv ...
    python: str = sys.executable
    cleanups: list[Callable[[], None]] = field(default_factory=list)


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    code: int
    says: str  # a piece of the one line (for 0: of the warning line, or "")
    setup: Callable[[Ctx], None] = lambda ctx: None
    needs_docker: bool = True


def dead_docker(ctx: Ctx) -> None:
    ctx.env["DOCKER_HOST"] = f"unix://{ctx.tmp}/no-dockerd.sock"


def socket_without_permission(ctx: Ctx) -> None:
    """A socket root cannot open: owned by nobody, 0600, and awf runs without DAC override."""
    path = ctx.tmp / "docker.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    os.chown(path, 65534, 65534)
    os.chmod(path, 0o600)
    ctx.cleanups.append(server.close)
    ctx.env["DOCKER_HOST"] = f"unix://{path}"
    ctx.prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                  "--inh-caps=-dac_override,-dac_read_search"]


def malformed_docker_config(ctx: Ctx) -> None:
    home = ctx.tmp / "home"
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text(
        '{"auths": {"registry.example": {"auth": "!!!not-base64"}}, '
        '"proxies": {"default": {"httpProxy": "http://10.9.9.9:3128"}}}')
    ctx.env["HOME"] = str(home)
    ctx.env.setdefault("XDG_CACHE_HOME", str(Path.home() / ".cache"))  # the shared wheel cache


def no_nft(ctx: Ctx) -> None:
    bindir = ctx.tmp / "bin"
    bindir.mkdir()
    for tool in ("ip", "setpriv", "unshare", "nsenter", "tini", "true", "sh", "curl"):
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    ctx.env["PATH"] = str(bindir)


def not_root(ctx: Ctx) -> None:
    """As nobody: the system's python3 with the checkout and the venv's packages on the path
    (the venv's own interpreter may live under root's home, which nobody cannot enter)."""
    system = shutil.which("python3", path="/usr/bin:/bin")
    if system is None:
        pytest.skip("no system python3 to run awf as another user")
    site = next(Path(sys.prefix).glob("lib/python3*/site-packages"))
    ctx.python = system
    ctx.env["PYTHONPATH"] = f"{ROOT}:{site}"
    ctx.env["HOME"] = str(ctx.tmp)
    os.chmod(ctx.tmp, 0o777)
    ctx.prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def work_dir_is_a_file(ctx: Ctx) -> None:
    (ctx.tmp / "file").write_text("")


def full_disk(ctx: Ctx) -> None:
    mnt = ctx.tmp / "full"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "awf-test-full", str(mnt)],
                   check=True, timeout=30)
    def unmount() -> None:
        subprocess.run(["umount", "-l", str(mnt)], check=False, timeout=30)

    ctx.cleanups.append(unmount)
    fd = os.open(mnt / "fill", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def in_dir(path: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        ctx.cwd = Path(os.path.expanduser(path))
    return setup


def run_(backend: str, *more: str) -> tuple[str, ...]:
    return ("run", "--backend", backend, *POLICY, *more)


CASES = [
    Case("no-docker-daemon", run_("docker", "--", "true"), 125, "no Docker engine", dead_docker),
    Case("docker-socket-without-permission", run_("docker", "--", "true"), 125,
         "no permission", socket_without_permission),
    Case("images-no-docker-daemon", ("images", "build"), 125, "no Docker engine", dead_docker),
    Case("malformed-docker-config", run_("docker", "--", "sh", "-c",
                                         'test -z "$HTTP_PROXY$http_proxy" || '
                                         'case "$HTTP_PROXY" in *10.9.9.9*) exit 7;; esac'),
         0, "", malformed_docker_config),
    Case("no-nft", run_("netns", "--", "true"), 125, "'nft' is missing", no_nft, False),
    Case("not-root-netns", run_("netns", "--", "true"), 125, "needs root", not_root, False),
    Case("work-dir-is-a-file", run_("docker", "--work-dir", "{tmp}/file", "--", "true"), 2,
         "--work-dir", work_dir_is_a_file),
    Case("logs-on-a-full-disk-docker", run_("docker", "--proxy-logs-dir", "{tmp}/full/logs",
                                            "--", "true"), 125, "full disk", full_disk),
    Case("logs-on-a-full-disk-netns", run_("netns", "--proxy-logs-dir", "{tmp}/full/logs",
                                           "--", "true"), 125, "full disk", full_disk, False),
    Case("workspace-tmp", run_("docker", "--", "true"), 0, "run awf from your project's",
         in_dir("/tmp")),
    Case("workspace-root", run_("docker", "--", "true"), 0, "run awf from your project's",
         in_dir("/")),
    Case("workspace-usr", run_("docker", "--", "true"), 0, "run awf from your project's",
         in_dir("/usr")),
    Case("workspace-home", run_("docker", "--", "sh", "-c", 'test "$(pwd)" = "$HOME"'), 0, "",
         in_dir("~")),
]


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Ctx]:
    c = Ctx(tmp_path)
    c.env.pop("DOCKER_HOST", None)
    yield c
    for cleanup in reversed(c.cleanups):
        cleanup()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_one_line(case: Case, ctx: Ctx) -> None:
    need_root()
    if case.needs_docker:
        need_docker()
    case.setup(ctx)
    argv = [*ctx.prefix, ctx.python, "-m", "awf.cli",
            *(a.replace("{tmp}", str(ctx.tmp)) for a in case.argv)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False,
                          env=ctx.env, cwd=ctx.cwd or ctx.tmp)
    OUTPUTS.append((case.name, done.stdout + done.stderr))
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-3000:]
    assert done.returncode == case.code, done.stderr[-3000:]
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    if case.code != 0:
        assert lines == [lines[0]], lines  # one line
        assert lines[0].startswith("awf: "), lines
        assert case.says in lines[0], lines
    elif case.says:
        assert len([ln for ln in lines if case.says in ln]) == 1, lines
    if case.needs_docker:
        assert_nothing_left(ctx.tmp)


def assert_nothing_left(tmp: Path) -> None:
    """No container or network of a run made here (their work dirs are under the test's
    $TMPDIR), and no run's work dir either; other runs on the machine are not ours to judge."""
    for kind, name in ((["ps", "-a"], "{{.Names}}"), (["network", "ls"], "{{.Name}}")):
        out = subprocess.run(["docker", *kind, "--filter", "label=io.awf.run", "--format",
                              name + ' {{.Label "io.awf.work-dir"}}'],
                             capture_output=True, text=True, check=True, timeout=30).stdout
        mine = [ln for ln in out.splitlines() if str(tmp) in ln]
        assert mine == [], f"left behind: {mine}"
    assert not list(tmp.glob("tmpdir/awf-*-*/lease")), "a run's work dir was left"


def test_no_traceback_in_any_output(tmp_path: Path) -> None:
    """`grep -r Traceback` over every captured output (run after the table)."""
    if not OUTPUTS:
        pytest.skip("the table did not run in this session")
    for name, text in OUTPUTS:
        (tmp_path / f"{name}.txt").write_text(text)
    found = subprocess.run(["grep", "-r", "Traceback", str(tmp_path)], capture_output=True,
                           text=True, check=False)
    assert found.stdout == ""
