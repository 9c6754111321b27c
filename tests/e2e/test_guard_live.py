"""The Docker guard against the real engine, driven by the real docker CLI.

See docs/architecture.md §10.

The guard runs as `python -m containers.guard` on a socket in a tmp dir, in front of
/var/run/docker.sock; a keeper container made directly (network none) plays awf-<run>-net.
Siblings made through the guard must run, attach and exit as usual, land in the keeper's
network namespace with the forced hardening, and everything that could escape is refused with a
message naming awf. Every object made here carries io.awf.test=1 and this module's own label,
and is removed by that label.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from containers import seccomp
from containers.driver import DockerDriver
from containers.images import ensure_images
from tests.support.needs import need_docker

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
TOKEN = secrets.token_hex(4)
MINE = f"io.awf.guard-test={TOKEN}"  # this module's objects, whatever else runs at once
LABELS = (("io.awf.test", "1"), ("io.awf.guard-test", TOKEN))
MEMORY, PIDS = 256 << 20, 128
REPO = Path(__file__).resolve().parents[2]
# Docker's default capabilities without NET_RAW (bit 13): 0xa80425fb & ~0x2000
CAP_EFF = "00000000a80405fb"


@dataclass(frozen=True)
class Live:
    image: str
    keeper: str  # full ID
    keeper_name: str
    sock: str
    work: Path  # the allowed bind root
    log: Path


def docker(*args: str, sock: str | None = None, stdin: str | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The docker CLI, through the guard when sock is given, else straight to the engine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    host = ["-H", f"unix://{sock}"] if sock else ["-H", "unix:///var/run/docker.sock"]
    return subprocess.run([DOCKER, *host, *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, check=False, env=env)


def _remove_mine() -> None:
    found = docker("ps", "-aq", "--filter", f"label={MINE}").stdout.split()
    if found:
        docker("rm", "-f", *found)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    need_docker()
    driver = DockerDriver.from_env()
    try:
        image = ensure_images(driver, progress=lambda _: None).agent
    finally:
        driver.close()
    base = tmp_path_factory.mktemp("guard")
    work = base / "work"
    work.mkdir()
    keeper_name = f"awf-test-guard-{TOKEN}-net"
    made = docker("run", "-d", "--name", keeper_name, *(f"--label={k}={v}" for k, v in LABELS),
                  "--network", "none", "--entrypoint", "sleep", image, "600")
    assert made.returncode == 0, made.stderr
    keeper = made.stdout.strip()
    sock, log = str(base / "docker.sock"), base / "guard.log"
    config = {"run": TOKEN, "network_container": keeper_name,
              "allowed_bind_roots": [str(work)], "labels": [list(kv) for kv in LABELS],
              "seccomp_json": seccomp.stage1_json(), "memory": MEMORY, "pids": PIDS}
    with open(log, "w") as err:
        guard = subprocess.Popen(
            [sys.executable, "-m", "containers.guard", "--listen", sock,
             "--upstream", "/var/run/docker.sock", "--config", json.dumps(config)],
            stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO)
    try:
        assert guard.stdout is not None
        ready, _, _ = select.select([guard.stdout], [], [], 30)
        line = guard.stdout.readline() if ready else ""
        assert line.strip() == f"awf-guard listening on {sock}", log.read_text()
        assert os.stat(sock).st_mode & 0o777 == 0o666
        yield Live(image, keeper, keeper_name, sock, work, log)
        guard.terminate()
        assert guard.wait(timeout=15) == 0, log.read_text()[-2000:]
        assert not os.path.exists(sock)
    finally:
        if guard.poll() is None:
            guard.kill()
            guard.wait(timeout=15)
        _remove_mine()


def run(live: Live, *opts: str, cmd: str = "true",
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`docker run --rm OPTS IMAGE sh -c CMD` through the guard (the image's entrypoint, awf's
    agent PID 1, set aside)."""
    return docker("run", "--rm", *opts, "--entrypoint=", live.image, "sh", "-c", cmd,
                  sock=live.sock, stdin=stdin)


def inspect(ref: str) -> dict[str, object]:
    done = docker("inspect", ref)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert isinstance(found, list)
    result: dict[str, object] = found[0]
    return result


# -- siblings work ---------------------------------------------------------------------------


def test_run_exit_codes_and_attach(live: Live) -> None:
    ok = docker("run", "--rm", "--entrypoint=", live.image, "true", sock=live.sock)
    assert ok.returncode == 0, ok.stderr
    three = run(live, cmd="exit 3")
    assert three.returncode == 3, three.stderr
    hi = docker("run", "--rm", "--entrypoint=", live.image, "echo", "hi", sock=live.sock)
    assert (hi.returncode, hi.stdout) == (0, "hi\n"), hi.stderr
    both = run(live, cmd="echo out; echo err >&2")
    assert (both.stdout, both.stderr) == ("out\n", "err\n")


def test_stdin_is_forwarded_through_the_hijacked_stream(live: Live) -> None:
    done = run(live, "-i", cmd="tr a-z A-Z", stdin="hello guard\n")
    assert (done.returncode, done.stdout) == (0, "HELLO GUARD\n"), done.stderr


def test_sibling_is_forced_into_the_keeper_netns_with_the_hardening(live: Live) -> None:
    name = f"awf-test-guard-{TOKEN}-sib"
    made = docker("run", "-d", "--name", name, "-m", "1g", "--pids-limit", "100000",
                  "--network", "bridge", "--entrypoint=", live.image, "sleep", "300",
                  sock=live.sock)
    assert made.returncode == 0, made.stderr
    hc = inspect(made.stdout.strip())["HostConfig"]
    assert isinstance(hc, dict)
    assert hc["NetworkMode"] in (f"container:{live.keeper}", f"container:{live.keeper_name}")
    assert hc["CapDrop"] == ["ALL"]
    assert "NET_RAW" not in hc["CapAdd"]
    assert hc["SecurityOpt"] == ["no-new-privileges", "seccomp=" + seccomp.stage1_json()]
    assert (hc["Memory"], hc["PidsLimit"], hc["CgroupnsMode"]) == (MEMORY, PIDS, "private")
    labels = inspect(name)["Config"]
    assert isinstance(labels, dict)
    assert labels["Labels"]["io.awf.guard-test"] == TOKEN

    probe = "readlink /proc/self/ns/net; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status"
    inside = docker("exec", name, "sh", "-c", probe, sock=live.sock)  # exec through the guard
    assert inside.returncode == 0, inside.stderr
    keeper_ns = docker("exec", live.keeper, "readlink", "/proc/self/ns/net").stdout.strip()
    lines = inside.stdout.split("\n")
    assert lines[0] == keeper_ns
    status = {key: value for key, _, value in (ln.partition(":\t") for ln in lines[1:] if ln)}
    assert status == {"CapEff": CAP_EFF, "NoNewPrivs": "1", "Seccomp": "2"}
    links = docker("exec", name, "ls", "/sys/class/net", sock=live.sock)
    assert links.stdout.split() == ["lo"]  # the keeper's (network none) and nothing else

    listed = docker("ps", "-a", "--format", "{{.Names}}", sock=live.sock)
    assert listed.returncode == 0, listed.stderr
    assert name in listed.stdout.split()
    assert live.keeper_name not in listed.stdout.split()  # filtered to owned containers
    gone = docker("rm", "-f", name, sock=live.sock)
    assert gone.returncode == 0, gone.stderr
    again = docker("inspect", name, sock=live.sock)  # the name is forgotten with the container
    assert again.returncode != 0
    assert "awf docker guard" in again.stderr


def test_copy_in_and_out_and_binds_under_the_root(live: Live) -> None:
    name = f"awf-test-guard-{TOKEN}-cp"
    made = docker("run", "-d", "--name", name, "-v", f"{live.work}:/w", "--entrypoint=",
                  live.image, "sleep", "300", sock=live.sock)
    assert made.returncode == 0, made.stderr
    src = live.work / "in.txt"
    src.write_text("payload\n" * 10_000)
    put = docker("cp", str(src), f"{name}:/tmp/in.txt", sock=live.sock)
    assert put.returncode == 0, put.stderr
    copied = docker("exec", name, "sh", "-c", "cp /tmp/in.txt /w/out.txt", sock=live.sock)
    assert copied.returncode == 0, copied.stderr
    assert (live.work / "out.txt").read_text() == src.read_text()
    got = docker("cp", f"{name}:/tmp/in.txt", str(live.work / "back.txt"), sock=live.sock)
    assert got.returncode == 0, got.stderr
    assert (live.work / "back.txt").read_text() == src.read_text()
    logs = docker("logs", name, sock=live.sock)
    assert logs.returncode == 0, logs.stderr
    assert docker("rm", "-f", name, sock=live.sock).returncode == 0


def test_info_is_redacted(live: Live) -> None:
    done = docker("info", "--format", "{{json .}}", sock=live.sock)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["ServerVersion"]
    assert not info.get("DockerRootDir")
    assert not info.get("Containers")


# -- escapes are refused -------------------------------------------------------------------------


@pytest.mark.parametrize("opts", [
    ("--network", "host"),
    ("--network", "none"),
    ("--privileged",),
    ("--cap-add", "NET_ADMIN"),
    ("--cap-add", "SYS_ADMIN"),
    ("-v", "/:/h"),
    ("-v", "/var/run/docker.sock:/s"),
    ("-v", "/etc:/e:ro"),
    ("--mount", "type=bind,src=/var/run,dst=/r"),
    ("--mount", "type=volume,dst=/v,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/"),
    ("-v", "awf-test-named-volume:/v"),
    ("--mount", "type=volume,src=awf-test-named-volume,dst=/v"),
    ("--pid", "host"),
    ("--ipc", "host"),
    ("--uts", "host"),
    ("--userns", "host"),
    ("--cgroupns", "host"),
    ("--security-opt", "seccomp=unconfined"),
    ("--security-opt", "apparmor=unconfined"),
    ("--security-opt", "systempaths=unconfined"),
    ("--device", "/dev/sda"),
    ("--gpus", "all"),
    ("--sysctl", "net.ipv4.ip_forward=1"),
    ("-p", "8080:80"),
    ("-P",),
    ("--dns", "203.0.113.53"),
    ("--add-host", "evil.test:203.0.113.7"),
    ("--runtime", "io.containerd.runc.v2"),
    ("--log-driver", "syslog"),
    ("--cgroup-parent", "/"),
])
def test_escapes_are_refused(live: Live, opts: tuple[str, ...]) -> None:
    done = run(live, *opts, cmd="echo escaped")
    assert done.returncode != 0
    assert "escaped" not in done.stdout
    assert "awf docker guard" in done.stderr, done.stderr


def test_other_containers_cannot_be_touched(live: Live) -> None:
    for args in (("inspect", live.keeper_name), ("exec", live.keeper_name, "true"),
                 ("exec", live.keeper, "true"), ("logs", live.keeper[:12]),
                 ("stop", live.keeper_name), ("kill", live.keeper_name),
                 ("rm", "-f", live.keeper_name), ("cp", f"{live.keeper_name}:/etc/hostname", "-"),
                 ("run", "--rm", "--network", f"container:{live.keeper_name}", "--entrypoint=",
                  live.image, "true"),
                 ("run", "--rm", "--volumes-from", live.keeper_name, "--entrypoint=",
                  live.image, "true")):
        done = docker(*args, sock=live.sock)
        assert done.returncode != 0, args
        assert "awf docker guard" in done.stderr, (args, done.stderr)
    assert inspect(live.keeper)["State"]["Running"] is True  # type: ignore[index]


def test_images_cannot_be_pulled_or_built_and_the_rest_is_closed(live: Live) -> None:
    for args in (("pull", "busybox:latest"),
                 ("run", "--rm", f"awf-test-missing-{TOKEN}:latest", "true"),
                 ("network", "ls"), ("volume", "create"), ("system", "df"),
                 ("events", "--since", "0", "--until", "1")):
        done = docker(*args, sock=live.sock, timeout=60)
        assert done.returncode != 0, args
        assert "awf docker guard" in done.stderr, (args, done.stderr)
    listed = docker("images", "--format", "{{.Repository}}:{{.Tag}}", sock=live.sock)
    assert listed.returncode == 0, listed.stderr
    assert live.image in listed.stdout.split()


def test_every_decision_is_logged(live: Live) -> None:
    assert run(live).returncode == 0
    assert run(live, "--privileged").returncode != 0
    text = live.log.read_text()  # written before each answer, so complete by now
    assert "awf-guard allow POST /v1.41/containers/create\n" in text
    assert ("awf-guard refuse POST /v1.41/containers/create HostConfig.Privileged is refused"
            in text)
