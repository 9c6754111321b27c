"""Local stand-ins for the registries and forges agents use, in the wan's namespace.

`start(wan, workdir)` builds, offline, what they serve and starts tests/support/forge_server.py
inside the wan namespace (tests/support/wan.py) on new TEST-NET addresses:

* 198.51.100.20, ports 80 and 443 (a leaf from the wan's CA, so clients trust the wan's
  `ca.pem`), serving by Host: `pypi.test` (a PEP 503 simple index with a wheel built here by
  `pip wheel`), `git.test` (`git http-backend`: `repo.git` to clone and push to), `npm.test` (a
  static registry document and tarball), `crates.test` (a sparse index and a `.crate`);
* 198.51.100.21, the same servers under the name `elsewhere.test`: the "foreign address" a
  client may try to send an allowed name to; `/whoami` on either says which address answered;
* 198.51.100.54:53, UDP and TCP, a DNS server answering A queries for those names, so a run can
  resolve them by DNS (`--dns-servers 198.51.100.54`) instead of `--resolve`.

The addresses go with the wan's namespace; `close()` stops the servers.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import wan as wanmod

V4, V4_ELSEWHERE, V4_DNS = "198.51.100.20", "198.51.100.21", "198.51.100.54"
NAMES = ("pypi.test", "git.test", "npm.test", "crates.test")
PIP_PACKAGE, PIP_VERSION = "awftiny", "1.0"
NPM_PACKAGE, NPM_VERSION = "awf-tiny", "1.0.0"
CRATE, CRATE_VERSION = "awftiny", "0.1.0"

DNS_POLICY = ("--dns-servers", V4_DNS)
RESOLVE_POLICY = tuple(a for n in NAMES for a in ("--resolve", f"{n}={V4}"))


@dataclass
class Forge:
    root: Path
    status_path: Path
    proc: subprocess.Popen[bytes]

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.status_path.read_text())
        return data

    def hits(self, addr: str) -> int:
        return int(self.status()["by_addr"].get(addr, 0))

    def requests(self, host: str) -> list[dict[str, str]]:
        return [r for r in self.status()["requests"] if r["host"] == host]

    def git_log(self) -> str:
        return subprocess.run(["git", "--git-dir", str(self.root / "git" / "repo.git"), "log",
                               "--format=%s", "main"], capture_output=True, text=True,
                              check=True, timeout=30).stdout

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def _run(*args: str, cwd: Path | None = None) -> None:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr[-1000:]}")


def build_wheel(root: Path) -> dict[str, str]:
    """`pip wheel` of a one-module package, offline (the system Python has setuptools and wheel)."""
    src = root / "src" / PIP_PACKAGE
    src.mkdir(parents=True)
    (src / "setup.py").write_text("from setuptools import setup\n"
                                  f"setup(name={PIP_PACKAGE!r}, version={PIP_VERSION!r}, "
                                  f"py_modules=[{PIP_PACKAGE!r}])\n")
    (src / f"{PIP_PACKAGE}.py").write_text('VALUE = "tiny from pypi.test"\n')
    out = root / "pypi"
    out.mkdir()
    _run("/usr/bin/python3", "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "-w", str(out), str(src))
    wheel = next(out.glob("*.whl"))
    return {"file": wheel.name, "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()}


def build_git(root: Path) -> None:
    work, bare = root / "src" / "repo", root / "git" / "repo.git"
    work.mkdir(parents=True)
    git = ("git", "-c", "user.name=forge", "-c", "user.email=forge@forge.test")
    _run(*git, "init", "-q", "-b", "main", str(work))
    (work / "README").write_text("a repository on git.test\n")
    _run(*git, "-C", str(work), "add", "README")
    _run(*git, "-C", str(work), "commit", "-q", "-m", "first")
    _run(*git, "clone", "-q", "--bare", str(work), str(bare))
    _run("git", "--git-dir", str(bare), "config", "http.receivepack", "true")


def _tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build_npm(root: Path) -> None:
    out = root / "npm"
    out.mkdir()
    manifest = {"name": NPM_PACKAGE, "version": NPM_VERSION, "main": "index.js"}
    tgz = _tgz({"package/package.json": json.dumps(manifest).encode(),
                "package/index.js": b'module.exports = "tiny from npm.test";\n'})
    tarball = f"{NPM_PACKAGE}-{NPM_VERSION}.tgz"
    (out / tarball).write_bytes(tgz)
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode()
    doc = {"name": NPM_PACKAGE, "dist-tags": {"latest": NPM_VERSION}, "versions": {
        NPM_VERSION: {**manifest, "dist": {
            "tarball": f"https://npm.test/{NPM_PACKAGE}/-/{tarball}",
            "shasum": hashlib.sha1(tgz).hexdigest(), "integrity": integrity}}}}
    (out / f"{NPM_PACKAGE}.json").write_text(json.dumps(doc))


def build_crates(root: Path) -> None:
    out = root / "crates"
    index = out / "index"
    prefix = f"{CRATE}-{CRATE_VERSION}"
    crate = _tgz({f"{prefix}/Cargo.toml":
                  f'[package]\nname = "{CRATE}"\nversion = "{CRATE_VERSION}"\n'
                  'edition = "2021"\n'.encode(),
                  f"{prefix}/src/lib.rs": b'pub const VALUE: &str = "tiny from crates.test";\n'})
    (out / "index" / CRATE[:2] / CRATE[2:4]).mkdir(parents=True)
    (out / f"{prefix}.crate").write_bytes(crate)
    (index / "config.json").write_text(json.dumps(
        {"dl": "https://crates.test/api/v1/crates", "api": "https://crates.test"}))
    entry = {"name": CRATE, "vers": CRATE_VERSION, "deps": [], "features": {},
             "cksum": hashlib.sha256(crate).hexdigest(), "yanked": False}
    (index / CRATE[:2] / CRATE[2:4] / CRATE).write_text(json.dumps(entry) + "\n")


def _http_backend() -> str:
    exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True,
                               check=True, timeout=30).stdout.strip()
    return str(Path(exec_path) / "git-http-backend")


def _die_with_parent() -> None:
    """In the child before exec (`ip netns exec` execs the server): a test run killed outright
    takes its servers with it, instead of leaving them in a deleted namespace."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def start(wan: wanmod.Wan, workdir: Path) -> Forge:
    assert wan.ca is not None, "the wan keeps its CA for the stand-ins' certificates"
    root = workdir / "forge"
    root.mkdir()
    wheel = build_wheel(root)
    build_git(root)
    build_npm(root)
    build_crates(root)
    leaf = wan.ca.issue_cert(*NAMES, "elsewhere.test", V4, V4_ELSEWHERE)
    cert, key = root / "cert.pem", root / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    inside = ("ip", "netns", "exec", wan.netns)
    for addr in (V4, V4_ELSEWHERE, V4_DNS):
        _run(*inside, "ip", "addr", "add", f"{addr}/24", "dev", "eth0")
    status = root / "status.json"
    conf = {
        "root": str(root), "status": str(status), "cert": str(cert), "key": str(key),
        "http_addrs": [V4, V4_ELSEWHERE], "dns_addr": V4_DNS,
        "dns": {**{n: [V4] for n in NAMES}, "elsewhere.test": [V4_ELSEWHERE]},
        "pypi_projects": {PIP_PACKAGE: [wheel]}, "http_backend": _http_backend(),
    }
    (root / "conf.json").write_text(json.dumps(conf))
    server = Path(__file__).with_name("forge_server.py")
    with open(root / "server.log", "wb") as log:  # the servers' tracebacks, if any
        proc = subprocess.Popen([*inside, sys.executable, str(server), str(root / "conf.json")],
                                stdout=subprocess.PIPE, stderr=log, preexec_fn=_die_with_parent)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        proc.kill()
        raise RuntimeError("the forge's servers did not start")
    return Forge(root, status, proc)


def has(tool: str) -> bool:
    return shutil.which(tool) is not None
