"""Offline build of awf's images: awf-base, awf-runtime and awf-agent.

No registry is reachable, so nothing is pulled:

- awf-base: mmdebstrap (debootstrap as the fallback) builds a Debian bookworm root filesystem
  from the host's own apt mirror, read from its apt sources at build time; the tar streams into
  `docker import`. One base serves both images: the runtime needs python3, nftables and iproute2,
  the agent the tools users and tests run. mmdebstrap measured ~35 s against debootstrap's ~65 s
  here, and streams its tar without a 470 MB staging directory.
- wheels: `pip download --only-binary :all:` runs on the host for the image's CPython 3.11 and
  glibc, into a cache keyed by what was asked for; our own wheel is built from the source tree,
  offline, against a pinned build backend from that cache.
- awf-pydeps (awf-base plus the venv /opt/awf with our dependencies), awf-runtime (awf-pydeps
  plus our own wheel) and awf-agent: the Dockerfiles in containers/images/, built with
  network_mode none; pip installs with --no-index. A source edit rebuilds only awf-runtime.

Each tag is a SHA-256 of that image's inputs (awf-base: suite, packages, dpkg options and
BUILDER_VERSION; the others: Dockerfile, the files that go in, the wheel set, the base tag), so
an unchanged build costs four image inspections. Everything built carries io.awf.image=1.

awf-agent adds containers/agent/ (the entrypoint, PID 1 of the agent container) and the
one-shot-token library, compiled on the host with its gcc while the build context is filled
(the host is Debian 12 like the image, and chroot host mode loads the library into the host's own
userland anyway); no compiler reaches an image.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from containers import labels
from containers.driver import DockerDriver, ImageInfo
from containers.errors import DockerError
from containers.oneshot_build import compile_one_shot
from proxy import __version__ as AWF_VERSION
from proxy.errors import AwfError

Progress = Callable[[str], None]

# Bump when the build procedure changes in a way the hashed inputs do not show.
BUILDER_VERSION = "1"
SUITE = "bookworm"
VARIANT = "minbase"
IMAGE_PYTHON = "3.11"  # bookworm's CPython; the wheels are downloaded for it
GLIBC_MINOR = 36  # bookworm's glibc 2.36: the newest manylinux tag its wheels may carry
BASE_PACKAGES = (
    "bash", "ca-certificates", "coreutils", "curl", "dnsutils", "git", "iproute2",
    "libseccomp2", "netbase", "netcat-openbsd", "nftables", "procps", "python3",
    "python3-seccomp",
    "python3-venv", "socat", "util-linux",
)
# Documentation and translations are dead weight in a container (~75 MB); licences stay.
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)
# Our wheel is built offline (pip wheel --no-index) against this build backend from the wheel
# cache: pinned, so the build does not change under us when setuptools releases. It must
# satisfy pyproject.toml's [build-system] requires.
BUILD_BACKEND = ("setuptools==80.9.0",)
PACKAGE_DIRS = ("awf", "proxy", "netfilter", "containers")  # what the wheel is built from
PROJECT_FILES = ("pyproject.toml", "README.md", "LICENSE")  # copied if present
AGENT_DIR = "containers/agent"  # the agent image's own files: entrypoint, one-shot library
ONE_SHOT_SOURCE, ONE_SHOT_LIBRARY = "one_shot_token.c", "one_shot_token.so"

BASE_REPO, PYDEPS_REPO = "awf-base", "awf-pydeps"
RUNTIME_REPO, AGENT_REPO = "awf-runtime", "awf-agent"
REPOS = (BASE_REPO, PYDEPS_REPO, RUNTIME_REPO, AGENT_REPO)
TAG_CHARS = 12
DOCKERFILES = Path(__file__).resolve().parent / "images"
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))

STALE_AFTER = 600  # seconds; an outdated image tag younger than this is kept
ROOTFS_TIMEOUT = 1800  # seconds; mmdebstrap or debootstrap, and the import
PIP_TIMEOUT = 900
APT_TIMEOUT = 600
_GRACE = 30  # seconds between SIGTERM and SIGKILL for a child we stop
_TAIL_LINES = 15  # of a failed tool's output, quoted in the error


@dataclass(frozen=True, slots=True)
class ImageSet:
    base: str
    runtime: str
    agent: str


@dataclass(frozen=True, slots=True)
class AptSource:
    """One (URI, suite) of the host's apt configuration, binary packages only."""

    uri: str
    suite: str
    components: tuple[str, ...]


# Pure cores: hashing, apt sources, pip arguments.


def digest(*parts: object) -> str:
    """SHA-256 (hex) of JSON-encodable parts; the basis of every image tag."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def base_tag(
    packages: Sequence[str] = BASE_PACKAGES,
    *,
    suite: str = SUITE,
    arch: str = "amd64",
    repo: str = BASE_REPO,
) -> str:
    key = digest("base", BUILDER_VERSION, suite, VARIANT, sorted(packages), DPKG_OPTIONS, arch)
    return f"{repo}:{key[:TAG_CHARS]}"


def stage_tag(
    repo: str, *, base: str, dockerfile: str, inputs: Sequence[tuple[str, str]] = ()
) -> str:
    """Tag of an image built FROM `base`: `inputs` are (name, content hash) of what goes in."""
    key = digest("stage", BUILDER_VERSION, repo, base, dockerfile, sorted(inputs))
    return f"{repo}:{key[:TAG_CHARS]}"


def parse_deb822(text: str) -> tuple[AptSource, ...]:
    """The `deb` entries of a .sources file (RFC 822 style stanzas)."""
    found: list[AptSource] = []
    for stanza in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        last = ""
        for line in stanza.splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            if line[0] in " \t" and last:
                fields[last] += " " + line.strip()
                continue
            name, sep, value = line.partition(":")
            if sep:
                last = name.strip().lower()
                fields[last] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").strip().lower() in ("no", "false", "0"):
            continue
        components = tuple(fields.get("components", "").split())
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                found.append(AptSource(uri.rstrip("/"), suite, components))
    return tuple(found)


def parse_one_line(text: str) -> tuple[AptSource, ...]:
    """The `deb` lines of a sources.list: `deb [options] URI SUITE COMPONENT...`."""
    found: list[AptSource] = []
    for raw in text.splitlines():
        line = re.sub(r"\[[^\]]*\]", " ", raw.split("#", 1)[0])  # options may hold spaces
        words = line.split()
        if len(words) >= 3 and words[0] == "deb":
            found.append(AptSource(words[1].rstrip("/"), words[2], tuple(words[3:])))
    return tuple(found)


def apt_sources(files: Mapping[str, str]) -> tuple[AptSource, ...]:
    """Entries of apt source files given as {path: text}; like apt, only .list and .sources."""
    found: list[AptSource] = []
    for path, text in sorted(files.items()):
        if path.endswith(".sources"):
            found += parse_deb822(text)
        elif path.endswith(".list"):
            found += parse_one_line(text)
    return tuple(found)


def mirror_lines(sources: Sequence[AptSource], suite: str = SUITE) -> tuple[str, ...]:
    """sources.list lines for mmdebstrap: the suite's mirror, plus -updates and -security.

    A host on another Debian release still names a Debian mirror: its URI serves `suite` too.
    """
    def usable(s: AptSource) -> bool:
        return s.uri.startswith(("http://", "https://", "file:/")) and (
            not s.components or "main" in s.components
        )

    main = [s for s in sources if usable(s) and s.suite == suite] or [
        s for s in sources if usable(s) and "-" not in s.suite and s.uri.endswith("/debian")
    ]
    if not main:
        raise DockerError(
            f"no Debian mirror for {suite!r} in the host's apt sources; add one to "
            "/etc/apt/sources.list.d/ or pass a mirror (`--mirror URL`)"
        )
    lines = [f"deb {main[0].uri} {suite} main"]
    for extra in (f"{suite}-updates", f"{suite}-security"):
        match = next((s for s in sources if usable(s) and s.suite == extra), None)
        if match is not None:
            lines.append(f"deb {match.uri} {extra} main")
    return tuple(lines)


def debian_arch(machine: str) -> str:
    arches = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
    if machine.lower() not in arches:
        raise DockerError(f"no awf images for machine {machine!r}; use x86_64 or aarch64")
    return arches[machine.lower()]


def wheel_platforms(arch: str) -> tuple[str, ...]:
    """pip --platform values the image's glibc accepts, newest first.

    pip expands only manylinux2014/2010 by itself, so each manylinux_2_N is listed.
    """
    machine = {"amd64": "x86_64", "arm64": "aarch64"}[arch]
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(GLIBC_MINOR, 16, -1)]
    return (*tags, f"manylinux2014_{machine}")


def runtime_requirements(pyproject: str) -> tuple[str, ...]:
    """The project's runtime dependencies, as pyproject.toml states them."""
    deps = tomllib.loads(pyproject).get("project", {}).get("dependencies", [])
    return tuple(str(d) for d in deps)


def project_name(pyproject: str) -> str:
    return str(tomllib.loads(pyproject)["project"]["name"])


def pip_download_args(dest: Path, requirements: Sequence[str], arch: str) -> list[str]:
    args = ["download", "--only-binary", ":all:", "--dest", str(dest),
            "--python-version", IMAGE_PYTHON, "--implementation", "cp",
            "--abi", "cp" + IMAGE_PYTHON.replace(".", ""), "--abi", "abi3", "--abi", "none"]
    for tag in wheel_platforms(arch):
        args += ["--platform", tag]
    return [*args, *requirements, *BUILD_BACKEND]


def wheelset_key(requirements: Sequence[str], arch: str) -> str:
    return digest("wheels", BUILDER_VERSION, IMAGE_PYTHON, arch, wheel_platforms(arch),
                  sorted(requirements), BUILD_BACKEND)


# File inputs.


def _tree_files(root: Path, top: str) -> list[str]:
    names: list[str] = []
    base = root / top
    if not base.is_dir():
        return names
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(root)
        if any(p == "__pycache__" or p.startswith(".") for p in rel.parts):
            continue
        if path.is_file() and not path.name.endswith((".pyc", ".pyo")):
            names.append(rel.as_posix())
    return names


def source_files(root: Path) -> tuple[str, ...]:
    """Files our wheel is built from, relative to the source root, sorted."""
    names = [name for name in PROJECT_FILES if (root / name).is_file()]
    for top in PACKAGE_DIRS:
        names += _tree_files(root, top)
    return tuple(sorted(names))


def file_hashes(root: Path, names: Iterable[str]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (name, hashlib.sha256((root / name).read_bytes()).hexdigest()) for name in names
    )


def find_source_root() -> Path:
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise DockerError(
            f"no awf source tree (pyproject.toml) at {str(root)!r}; awf images are built "
            "from a source checkout: run `awf images build` from one"
        )
    return root


def default_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "awf"


def host_apt_files() -> dict[str, str]:
    files: dict[str, str] = {}
    for entry in APT_SOURCES:
        paths = sorted(entry.iterdir()) if entry.is_dir() else [entry]
        for path in paths:
            if path.is_file():
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    files[str(path)] = path.read_text()
    return files


# The plan: which tags, from which inputs. Computing it reads files but builds nothing.


@dataclass(frozen=True, slots=True)
class Plan:
    base: str
    pydeps: str  # awf-base plus a venv holding our dependencies: awf-runtime's parent
    runtime: str
    agent: str
    arch: str
    source_root: Path
    sources: tuple[str, ...]
    requirements: tuple[str, ...]
    project: str
    pydeps_dockerfile: str
    runtime_dockerfile: str
    agent_dockerfile: str
    agent_files: tuple[str, ...]

    @property
    def tags(self) -> tuple[str, str, str, str]:
        """Every image, parents first."""
        return (self.base, self.pydeps, self.runtime, self.agent)

    @property
    def images(self) -> ImageSet:
        return ImageSet(base=self.base, runtime=self.runtime, agent=self.agent)


def make_plan(source_root: Path, *, arch: str, dockerfiles: Path = DOCKERFILES) -> Plan:
    pyproject = (source_root / "pyproject.toml").read_text()
    requirements = runtime_requirements(pyproject)
    pydeps_df = (dockerfiles / "pydeps.Dockerfile").read_text()
    runtime_df = (dockerfiles / "runtime.Dockerfile").read_text()
    agent_df = (dockerfiles / "agent.Dockerfile").read_text()
    base = base_tag(arch=arch)
    sources = source_files(source_root)
    agent_files = tuple(_tree_files(source_root, AGENT_DIR))
    pydeps = stage_tag(
        PYDEPS_REPO, base=base, dockerfile=pydeps_df,
        inputs=(("wheels", wheelset_key(requirements, arch)),),
    )
    runtime = stage_tag(
        RUNTIME_REPO, base=pydeps, dockerfile=runtime_df, inputs=file_hashes(source_root, sources)
    )
    agent = stage_tag(
        AGENT_REPO, base=base, dockerfile=agent_df, inputs=file_hashes(source_root, agent_files)
    )
    return Plan(
        base=base, pydeps=pydeps, runtime=runtime, agent=agent, arch=arch,
        source_root=source_root, sources=sources, requirements=requirements,
        project=project_name(pyproject), pydeps_dockerfile=pydeps_df,
        runtime_dockerfile=runtime_df, agent_dockerfile=agent_df, agent_files=agent_files,
    )


# Processes: every one bounded by a watchdog, its output streamed to progress.


def failure_summary(lines: Sequence[str]) -> str:
    """The telling part of a failed tool's output: its first error lines (apt's "E:") and its
    last, else the last lines."""
    stripped = [line.strip() for line in lines if line.strip()]
    errors = [line for line in stripped if line.startswith(("E:", "ERROR"))]
    picked = errors[:2] + errors[-1:] if len(errors) > 2 else errors or stripped[-5:]
    return " | ".join(picked) or "no output"


class _Watched:
    """A child process whose stderr (or merged output) goes line by line to progress."""

    def __init__(self, cmd: Sequence[str], progress: Progress, *, timeout: float,
                 what: str, stdout_pipe: bool, env: Mapping[str, str] | None = None) -> None:
        self.what, self.timeout = what, timeout
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self.timed_out = False
        try:
            self.proc = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE if stdout_pipe else subprocess.STDOUT,
                env=None if env is None else {**os.environ, **env},
            )
        except OSError as exc:
            raise DockerError(f"cannot run {cmd[0]!r} ({what}): {exc}") from exc
        log = self.proc.stderr if stdout_pipe else self.proc.stdout
        self._reader = threading.Thread(target=self._read, args=(log, progress), daemon=True)
        self._reader.start()
        self._timer = threading.Timer(timeout, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _read(self, stream: Iterable[bytes] | None, progress: Progress) -> None:
        for raw in stream or ():
            line = raw.decode("utf-8", errors="replace").rstrip()
            if line:
                self.tail.append(line)
                progress("  " + line)

    def _expire(self) -> None:
        self.timed_out = True
        self._end()

    def _end(self) -> None:
        # SIGTERM first: mmdebstrap then unmounts /proc, /sys and /dev from its chroot and
        # removes it; SIGKILL would leave those mounts behind in /tmp.
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=_GRACE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def finish(self) -> None:
        """Wait for the exit; DockerError quoting the last lines unless it succeeded."""
        code = self.proc.wait()
        self._timer.cancel()
        self._reader.join(timeout=5)
        if self.timed_out:
            raise DockerError(f"{self.what} took over {self.timeout:.0f} s and was stopped")
        if code != 0:
            summary = failure_summary(list(self.tail))
            raise DockerError(f"{self.what} failed (exit {code}): {summary}")

    def stop(self) -> None:
        self._timer.cancel()
        self._end()
        self._reader.join(timeout=5)


def _run(cmd: Sequence[str], progress: Progress, *, timeout: float, what: str,
         env: Mapping[str, str] | None = None) -> None:
    job = _Watched(cmd, progress, timeout=timeout, what=what, stdout_pipe=False, env=env)
    try:
        job.finish()
    finally:
        job.stop()


def _chunks(job: _Watched, size: int = 1 << 20) -> Iterator[bytes]:
    """The job's stdout in chunks; raises at the end if the job failed, cutting the upload."""
    out = job.proc.stdout
    if out is None:
        raise DockerError(f"{job.what}: no output pipe")
    while chunk := out.read(size):
        yield chunk
    job.finish()


# Building.


def _rootfs_tool(progress: Progress) -> str:
    for tool in ("mmdebstrap", "debootstrap"):
        if shutil.which(tool):
            return tool
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise DockerError(
            "building awf-base needs mmdebstrap or debootstrap; install one: "
            "sudo apt-get install mmdebstrap"
        )
    progress("[awf] installing mmdebstrap with apt-get...")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "mmdebstrap"]
    try:
        _run(install, progress, timeout=APT_TIMEOUT, what="apt-get install mmdebstrap", env=env)
    except DockerError:
        _run(["apt-get", "update", "-q"], progress, timeout=APT_TIMEOUT, what="apt-get update")
        _run(install, progress, timeout=APT_TIMEOUT, what="apt-get install mmdebstrap", env=env)
    return "mmdebstrap"


def rootfs_command(tool: str, packages: Sequence[str], mirrors: Sequence[str],
                   target: str) -> list[str]:
    """The command that builds the root filesystem; mmdebstrap writes a tar to `target` "-"."""
    include = "--include=" + ",".join(sorted(packages))
    if tool == "mmdebstrap":
        opts = [f"--dpkgopt={o}" for o in DPKG_OPTIONS]
        return ["mmdebstrap", f"--variant={VARIANT}", "--format=tar", include, *opts,
                SUITE, target, *mirrors]
    mirror = mirrors[0].split()[1]  # debootstrap takes one mirror URI
    return ["debootstrap", f"--variant={VARIANT}", include, SUITE, target, mirror]


def build_rootfs_image(driver: DockerDriver, tag: str, packages: Sequence[str], *,
                       mirrors: Sequence[str], progress: Progress) -> str:
    """Build a Debian root filesystem and `docker import` it as `tag`; returns the image id."""
    tool = _rootfs_tool(progress)
    changes = [
        f"LABEL {labels.IMAGE}=1 {labels.VERSION}={AWF_VERSION}",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8",
        'CMD ["/bin/bash"]',
    ]
    before = driver.image_id(tag)
    with contextlib.ExitStack() as stack:
        if tool == "mmdebstrap":
            cmd = rootfs_command(tool, packages, mirrors, "-")
            job = _Watched(cmd, progress, timeout=ROOTFS_TIMEOUT, what="mmdebstrap",
                           stdout_pipe=True)
        else:
            root = tempfile.mkdtemp(prefix="awf-rootfs-")
            stack.callback(_remove_rootfs, Path(root), progress)
            _run(rootfs_command(tool, packages, mirrors, root), progress,
                 timeout=ROOTFS_TIMEOUT, what="debootstrap")
            tar = ["tar", "-C", root, "--numeric-owner",
                   "--exclude=./var/cache/apt/archives/*.deb", "--exclude=./var/lib/apt/lists/*",
                   "-c", "."]
            job = _Watched(tar, progress, timeout=ROOTFS_TIMEOUT, what="tar of the rootfs",
                           stdout_pipe=True)
        stack.callback(job.stop)
        try:
            return driver.import_rootfs(_chunks(job), tag, changes=changes)
        except DockerError:
            # The upload was cut short, so the engine should have made nothing; make sure.
            with contextlib.suppress(DockerError):
                after = driver.image_id(tag)
                if after is not None and after != before:
                    driver.remove_image(after)
            raise


def _mounts_under(root: Path) -> list[str]:
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1].replace("\\040", " ") for line in mounts if line.strip()]
    return [p for p in points if p == str(root) or p.startswith(f"{root}/")]


def _remove_rootfs(root: Path, progress: Progress) -> None:
    """Remove debootstrap's tree, unless something is still mounted in it (a killed run's
    /proc or /sys): deleting through a mount would reach the host's files."""
    if _mounts_under(root):
        progress(f"[awf] left {str(root)!r} in place: something is mounted inside; "
                 f"run `umount -R {root}/*` then remove it")
        return
    shutil.rmtree(root, ignore_errors=True)


def _pip(args: Sequence[str], progress: Progress, *, what: str) -> None:
    _run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], progress,
         timeout=PIP_TIMEOUT, what=what)


def ensure_wheels(cache_dir: Path, requirements: Sequence[str], arch: str,
                  progress: Progress) -> Path:
    """The directory of wheels for the image's Python, downloaded once per requirement set."""
    key = wheelset_key(requirements, arch)
    done = cache_dir / "wheels" / key[:16]
    if (done / ".complete").is_file():
        return done
    done.parent.mkdir(parents=True, exist_ok=True)
    progress(f"[awf] downloading wheels for Python {IMAGE_PYTHON} into {done}...")
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=done.parent))
    try:
        _pip(pip_download_args(tmp, requirements, arch), progress, what="pip download")
        (tmp / ".complete").write_text(key + "\n")
        shutil.rmtree(done, ignore_errors=True)
        os.rename(tmp, done)  # atomic: a wheel dir is complete or absent
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return done


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def build_own_wheel(plan: Plan, wheels: Path, out: Path, progress: Progress) -> Path:
    """Our package as a wheel, built offline from a copy of exactly the hashed sources."""
    with tempfile.TemporaryDirectory(prefix="awf-src-") as tmp:
        for name in plan.sources:
            _link_or_copy(plan.source_root / name, Path(tmp) / name)
        _pip(["wheel", "--no-deps", "--no-index", "--find-links", str(wheels),
              "--wheel-dir", str(out), tmp], progress, what="pip wheel (awf)")
    prefix = re.sub(r"[-_.]+", "_", plan.project).lower() + "-"
    built = sorted(w for w in out.glob("*.whl") if w.name.lower().startswith(prefix))
    if len(built) != 1:
        raise DockerError(f"pip wheel made {len(built)} {prefix}* wheels in {str(out)!r}")
    return built[0]


def _build_stage(driver: DockerDriver, tag: str, dockerfile: str, *, base: str,
                 fill: Callable[[Path], None], progress: Progress) -> None:
    """`docker build` of `dockerfile` FROM `base`, its context filled by `fill`."""
    progress(f"[awf] building image {tag}...")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="awf-ctx-") as ctx:
        (Path(ctx) / "Dockerfile").write_text(dockerfile)
        fill(Path(ctx))
        # No build labels: each one costs a step, and io.awf.* come from awf-base already.
        driver.build(Path(ctx), tag, buildargs={"BASE": base},
                     progress=lambda line: progress("  " + line))
    _timed(driver, tag, started, progress)


def _timed(driver: DockerDriver, tag: str, started: float, progress: Progress) -> None:
    took = time.monotonic() - started
    size = driver.image_size(tag) / 1e6
    progress(f"[awf] built {tag} in {took:.1f} s ({size:.0f} MB)")


@contextlib.contextmanager
def _build_lock(cache_dir: Path, progress: Progress) -> Iterator[None]:
    """One image build at a time per cache dir (concurrent `awf run`s would race)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / "images.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress("[awf] waiting for another awf image build to finish...")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_images(
    driver: DockerDriver,
    *,
    progress: Progress,
    force: bool = False,
    cache_dir: Path | None = None,
    source_root: Path | None = None,
    mirror: str | None = None,
) -> ImageSet:
    """Make sure awf-base, awf-runtime and awf-agent exist for this source tree; their tags.

    Builds only what is missing (or everything with `force`); awf-pydeps only when awf-runtime
    must be built. Raises DockerError.
    """
    arch = debian_arch(platform.machine())
    plan = make_plan(source_root or find_source_root(), arch=arch)
    wanted = (plan.base, plan.runtime, plan.agent)
    if not force and all(driver.image_exists(t) for t in wanted):
        return plan.images
    cache = cache_dir or default_cache_dir()
    with _build_lock(cache, progress):  # then look again: another awf may have built them
        missing = {t for t in wanted if force or not driver.image_exists(t)}
        if plan.runtime in missing and (force or not driver.image_exists(plan.pydeps)):
            missing.add(plan.pydeps)
        if plan.base in missing:
            _build_base(driver, plan, mirror, progress)
        if plan.runtime in missing:
            wheels = ensure_wheels(cache, plan.requirements, arch, progress)
            if plan.pydeps in missing:
                _build_stage(driver, plan.pydeps, plan.pydeps_dockerfile, base=plan.base,
                             fill=partial(_pydeps_context, plan, wheels), progress=progress)
            _build_stage(driver, plan.runtime, plan.runtime_dockerfile, base=plan.pydeps,
                         fill=partial(_runtime_context, plan, wheels, progress),
                         progress=progress)
        if plan.agent in missing:
            _build_stage(driver, plan.agent, plan.agent_dockerfile, base=plan.base,
                         fill=partial(_agent_context, plan), progress=progress)
        for tag in sorted(missing):
            driver.tag(tag, tag.split(":", 1)[0] + ":latest")
        untagged = remove_stale_tags(driver, plan.tags, now=time.time())
        freed = driver.prune_images(labels.IMAGE, "1")  # awf-pydeps' venv stage, mostly
        if untagged or freed:
            progress(f"[awf] removed {len(untagged)} outdated image tags and "
                     f"{freed / 1e6:.0f} MB of untagged build leftovers")
    return plan.images


def _build_base(driver: DockerDriver, plan: Plan, mirror: str | None, progress: Progress) -> None:
    mirrors = ((f"deb {mirror.rstrip('/')} {SUITE} main",) if mirror
               else mirror_lines(apt_sources(host_apt_files())))
    progress(f"[awf] building base image {plan.base} (Debian {SUITE} from "
             f"{mirrors[0].split()[1]}, ~1 min, first time only)...")
    started = time.monotonic()
    build_rootfs_image(driver, plan.base, BASE_PACKAGES, mirrors=mirrors, progress=progress)
    _timed(driver, plan.base, started, progress)


def _pydeps_context(plan: Plan, wheels: Path, ctx: Path) -> None:
    for wheel in wheels.glob("*.whl"):
        _link_or_copy(wheel, ctx / "wheels" / wheel.name)
    (ctx / "wheels" / "requirements.txt").write_text("".join(f"{r}\n" for r in plan.requirements))


def _runtime_context(plan: Plan, wheels: Path, progress: Progress, ctx: Path) -> None:
    build_own_wheel(plan, wheels, ctx / "awf", progress)


def _agent_context(plan: Plan, ctx: Path) -> None:
    for name in plan.agent_files:
        _link_or_copy(plan.source_root / name, ctx / "agent" / Path(name).relative_to(AGENT_DIR))
    # compiled here with the host's gcc: Debian 12 like the image (same glibc), and chroot
    # host mode loads it into the host's own userland
    compile_one_shot(ctx / "agent" / ONE_SHOT_SOURCE, ctx / "agent" / ONE_SHOT_LIBRARY)


def one_shot_library(cache_dir: Path | None = None) -> Path:
    """The compiled one-shot-token library for --agent-image runs, cached by source hash."""
    source = find_source_root() / AGENT_DIR / ONE_SHOT_SOURCE
    key = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    out = (cache_dir or default_cache_dir()) / f"one_shot_token-{key}.so"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        try:
            compile_one_shot(source, tmp)
        except RuntimeError as exc:
            raise DockerError(str(exc)) from exc
        os.replace(tmp, out)
    return out


def stale_tags(found: Iterable[ImageInfo], keep: Iterable[str], *,
               now: float) -> tuple[str, ...]:
    """Tags of our repositories other than `keep` and :latest, on images over STALE_AFTER old.

    The age margin spares a concurrent `awf run` that looked its tag up just before a rebuild.
    """
    wanted, repos = set(keep), set(REPOS)
    return tuple(sorted(
        tag
        for image in found
        if now - image.created > STALE_AFTER
        for tag in image.tags
        if tag.split(":", 1)[0] in repos and tag not in wanted and not tag.endswith(":latest")
    ))


def remove_stale_tags(driver: DockerDriver, keep: Iterable[str], *,
                      now: float) -> tuple[str, ...]:
    """Untag outdated builds; an image a container still uses keeps its tag. What went."""
    removed: list[str] = []
    for tag in stale_tags(driver.list_images(labels.IMAGE, "1"), keep, now=now):
        with contextlib.suppress(DockerError):
            driver.remove_image(tag, force=False)
            removed.append(tag)
    return tuple(removed)


def remove_images(driver: DockerDriver) -> tuple[str, ...]:
    """Remove every image awf built (label io.awf.image=1); their ids."""
    return driver.remove_images(labels.IMAGE, "1")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m containers.images build [--force] [--mirror URL] | remove`."""
    parser = argparse.ArgumentParser(prog="python -m containers.images")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the missing awf images (offline)")
    build.add_argument("--force", action="store_true", help="rebuild all three images")
    build.add_argument("--mirror", help="Debian mirror URL (default: the host's apt sources)")
    sub.add_parser("remove", help="remove every image awf built")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        driver = DockerDriver.from_env()
        if args.command == "remove":
            removed = remove_images(driver)
            say(f"[awf] removed {len(removed)} images")
            return 0
        started = time.monotonic()
        images = ensure_images(driver, progress=say, force=args.force, mirror=args.mirror)
        say(f"[awf] images ready in {time.monotonic() - started:.1f} s")
        print(f"{images.base}\n{images.runtime}\n{images.agent}")
        return 0
    except AwfError as exc:
        say(f"awf: {exc}")
        return 125


if __name__ == "__main__":
    sys.exit(main())
