"""Issue 19, item 1: the wheel is the product.

Users `pip install` awf and run it anywhere; awf used to build its images only from a source
checkout ("no awf source tree (pyproject.toml)", exit 125). Here the project is built as a wheel
(`pip wheel . --no-deps`), installed into a fresh venv in a temporary directory outside the
checkout (once per session), and run from there, cwd outside the checkout and no PYTHONPATH:
`awf images build` (the same content-hash tags as the checkout's), `awf run` on both backends
against the shared fake internet, and `awf-proxy` against a local origin.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from containers import imageplan
from tests.support import wan as wanmod
from tests.support.needs import need_docker, need_root

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Installed:
    home: Path  # the temporary directory: the venv, the wheel, the cwd of every command
    bin: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env["PATH"] = f"{self.bin}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        return env

    def run(self, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / argv[0]), *argv[1:]], cwd=self.home,
                              env=self.env(), capture_output=True, text=True, timeout=timeout,
                              check=False)


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    home = tmp_path_factory.mktemp("wheel-install")
    assert not home.resolve().is_relative_to(ROOT), "the venv must be outside the checkout"
    # `pip wheel . --no-deps` on a copy of the checkout's files (tracked, and new ones not
    # ignored): an in-tree build reuses setuptools' build/ directory, whose stale files (a
    # module deleted since) would go into the wheel, and it leaves build/ and *.egg-info behind
    src = home / "src"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True, check=True,
                            timeout=60).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    dist = home / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "-q",
                    "--no-deps", "-w", str(dist), "."], check=True, timeout=600, cwd=src)
    (wheel,) = dist.glob("awf_egress_firewall-*.whl")
    venv = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "-q",
                    str(wheel)], check=True, timeout=600, cwd=home)
    return Installed(home, venv / "bin")


def test_the_installed_awf_runs_from_site_packages(installed: Installed) -> None:
    done = installed.run("python", "-c", "import containers, awf; print(containers.__file__)")
    assert done.returncode == 0, done.stderr
    assert str(installed.home) in done.stdout
    assert str(ROOT) not in done.stdout


def test_images_build_from_the_wheel_gives_the_checkouts_tags(installed: Installed) -> None:
    need_docker()
    done = installed.run("awf", "images", "build", timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    plan = imageplan.make_plan(ROOT, arch=imageplan.debian_arch(os.uname().machine))
    assert done.stdout.split() == [plan.base, plan.runtime, plan.agent]
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def wan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[wanmod.Wan]:
    need_root()
    wanmod.reap()
    w = wanmod.start(tmp_path_factory.mktemp("wan"))
    try:
        yield w
    finally:
        w.close()


@pytest.mark.parametrize("backend", ["docker", "netns"])
def test_awf_run_from_the_wheel(installed: Installed, wan: wanmod.Wan, backend: str) -> None:
    if backend == "docker":
        need_docker()
    done = installed.run("awf", "run", "--backend", backend, "--allow-domains", "allowed.test",
                         "--resolve", f"allowed.test={wanmod.V4}", "--",
                         "sh", "-c", "curl -sS -m 10 http://allowed.test/ && "
                                     "curl -sS -m 10 --noproxy '*' http://allowed.test/")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("hello allowed.test") == 2, (done.stdout, done.stderr[-2000:])
    assert "Traceback" not in done.stderr


class _Origin(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"origin says hi\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_awf_proxy_from_the_wheel(installed: Installed) -> None:
    origin = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proxy = subprocess.Popen(
        [str(installed.bin / "awf-proxy"), "--listen", f"127.0.0.1:{port}",
         "--allow-domains", "origin.test", "--resolve", "origin.test=127.0.0.1",
         "--allow-range", "127.0.0.1/32", "--allow-ports", str(origin.server_address[1]),
         "--log-dir", str(installed.home / "proxy-logs")],
        cwd=installed.home, env=installed.env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert proxy.stderr is not None
        deadline = time.monotonic() + 30
        while not proxy.stderr.readline().startswith("awf-proxy listening on "):
            assert time.monotonic() < deadline
            assert proxy.poll() is None
        url = f"http://origin.test:{origin.server_address[1]}/"
        got = subprocess.run(["curl", "-sS", "-m", "10", "-x", f"http://127.0.0.1:{port}", url],
                             capture_output=True, text=True, timeout=30, check=False)
        assert got.stdout == "origin says hi\n", got.stderr
        denied = subprocess.run(["curl", "-sS", "-m", "10", "-o", "/dev/null", "-w",
                                 "%{http_code}", "-x", f"http://127.0.0.1:{port}",
                                 "http://other.test/"],
                                capture_output=True, text=True, timeout=30, check=False)
        assert denied.stdout == "403"
    finally:
        proxy.terminate()
        proxy.wait(30)
        origin.shutdown()
