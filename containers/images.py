"""Offline build of awf's images: awf-base, awf-runtime and awf-agent. What to build, the tags
and the Dockerfile text are `containers.imageplan`'s (pure); this module runs the tools (mmdebstrap
or debootstrap, pip, gcc) and the engine's builds, and holds the build lock and the caches.

No registry is reachable, so nothing is pulled:

- awf-base: mmdebstrap (debootstrap as the fallback) builds a Debian bookworm root filesystem
  from the host's own apt mirror, read from its apt sources at build time; the tar streams into
  `docker import`. One base serves both images: the runtime needs python3, nftables and iproute2,
  the agent the tools users and tests run. mmdebstrap measured ~35 s against debootstrap's ~65 s
  here, and streams its tar without a 470 MB staging directory.
- wheels: `pip download --only-binary :all:` runs on the host for the image's CPython 3.11 and
  glibc, into a cache keyed by what was asked for; our own wheel is written directly from the
  package files awf runs from (a checkout or an installed distribution: issue 19), no build
  backend needed.
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
import base64
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
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path

from containers import labels
from containers.driver import DockerDriver
from containers.errors import DockerError
from containers.imageplan import (
    AGENT_DIR,
    BASE_PACKAGES,
    GLIBC_MINOR,
    IMAGE_PYTHON,
    NEEDED_TOOLS,
    ONE_SHOT_LIBRARY,
    ONE_SHOT_SOURCE,
    SUITE,
    BaseFacts,
    ImageSet,
    Plan,
    apt_sources,
    base_mirrors,
    base_problems,
    debian_arch,
    failure_summary,
    find_source_root,
    host_apt_files,
    make_plan,
    pip_download_args,
    rootfs_command,
    stale_tags,
    wheelset_key,
)
from containers.oneshot_build import compile_one_shot
from containers.spec import ContainerSpec
from proxy import __version__ as AWF_VERSION
from proxy.errors import AwfError

Progress = Callable[[str], None]

ROOTFS_TIMEOUT = 1800  # seconds; mmdebstrap or debootstrap, and the import
PIP_TIMEOUT = 900
APT_TIMEOUT = 600
_GRACE = 30  # seconds between SIGTERM and SIGKILL for a child we stop
_TAIL_LINES = 15  # of a failed tool's output, quoted in the error


def default_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "awf"


# Processes: every one bounded by a watchdog, its output streamed to progress.


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
                  progress: Progress, *, python: str = IMAGE_PYTHON,
                  glibc_minor: int = GLIBC_MINOR) -> Path:
    """The directory of wheels for the image's Python, downloaded once per requirement set."""
    key = wheelset_key(requirements, arch, python=python, glibc_minor=glibc_minor)
    done = cache_dir / "wheels" / key[:16]
    if (done / ".complete").is_file():
        return done
    done.parent.mkdir(parents=True, exist_ok=True)
    progress(f"[awf] downloading wheels for Python {python} into {done}...")
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=done.parent))
    try:
        _pip(pip_download_args(tmp, requirements, arch, python=python, glibc_minor=glibc_minor),
             progress, what="pip download")
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


_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # a fixed timestamp: the same files make the same wheel


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def build_own_wheel(plan: Plan, out: Path) -> Path:
    """Our package as a pure-Python wheel of exactly the hashed files, written directly (no
    build backend, no pyproject.toml): the same from a checkout and from an installed awf."""
    meta = plan.meta
    stem = re.sub(r"[-_.]+", "_", meta.name).lower() + f"-{meta.version}"
    info = f"{stem}.dist-info"
    metadata = "".join([
        "Metadata-Version: 2.1\n", f"Name: {meta.name}\n", f"Version: {meta.version}\n",
        *(f"Requires-Dist: {r}\n" for r in meta.requirements)])
    wheel = "Wheel-Version: 1.0\nGenerator: awf\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    scripts = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in meta.scripts)
    files: list[tuple[str, bytes]] = [(n, (plan.source_root / n).read_bytes())
                                      for n in plan.sources]
    files += [(f"{info}/METADATA", metadata.encode()), (f"{info}/WHEEL", wheel.encode()),
              (f"{info}/entry_points.txt", scripts.encode())]
    record = "".join(f"{n},{_record_hash(d)},{len(d)}\n" for n, d in files)
    files.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode()))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            entry = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(entry, data)
    return path


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


PROBE_SCRIPT = r"""
import ctypes, ctypes.util, glob, importlib.util, json, platform, shutil, sys
libc, ver = platform.libc_ver()
try:
    ctypes.CDLL("libseccomp.so.2"); seccomp = True
except OSError:
    seccomp = False
print(json.dumps({"python": "{}.{}".format(*sys.version_info[:2]), "libc": libc,
    "libc_version": ver,
    "venv": importlib.util.find_spec("venv") is not None,
    "debian_pip": bool(glob.glob("/usr/share/python-wheels/pip-*.whl")),
    "tools": [t for t in TOOLS if shutil.which(t)], "libseccomp": seccomp}))
"""


def probe_base(driver: DockerDriver, ref: str) -> BaseFacts:
    """What a local image holds for awf (--base-image): its python3 runs a short script in a
    container with no network. DockerError if it is not a local image or has no python3."""
    image_id = driver.image_id(ref)
    if image_id is None:
        raise DockerError(f"--base-image {ref!r} is not a local image; build, load or tag one "
                          "first (nothing can be pulled)")
    name = f"awf-probe-{os.getpid()}-{int(time.time() * 1000) % 100000}"
    script = f"TOOLS = {list(NEEDED_TOOLS)!r}\n" + PROBE_SCRIPT
    spec = ContainerSpec(name=name, image=image_id, entrypoint=("python3", "-c", script),
                         network_mode="none", labels=((labels.IMAGE, "probe"),),
                         cap_drop=("ALL",), security_opt=("no-new-privileges",))
    try:
        driver.create_container(spec)
        driver.start(name)
        code = driver.wait(name, timeout=60)
        out = driver.logs(name)
    except DockerError as exc:
        raise DockerError(f"--base-image {ref!r}: cannot run python3 in it ({exc}); awf needs "
                          "an image with Python 3.11 or newer") from exc
    finally:
        with contextlib.suppress(DockerError):
            driver.remove(name)
    line = next((ln for ln in reversed(out.splitlines()) if ln.startswith("{")), "")
    if code != 0 or not line:
        tail = " | ".join(out.strip().splitlines()[-2:]) or f"exit {code}"
        raise DockerError(f"--base-image {ref!r} has no working python3 ({tail}); awf needs "
                          "an image with Python 3.11 or newer")
    found = json.loads(line)
    minor = 0
    with contextlib.suppress(ValueError, IndexError):
        minor = int(str(found.get("libc_version", "")).split(".")[1])
    return BaseFacts(ref=ref, image_id=image_id, python=str(found["python"]),
                     libc=str(found.get("libc") or ""), glibc_minor=minor,
                     has_venv=bool(found.get("venv")), debian_pip=bool(found.get("debian_pip")),
                     tools=tuple(str(t) for t in found.get("tools", [])),
                     libseccomp=bool(found.get("libseccomp")))


def checked_base(driver: DockerDriver, ref: str) -> BaseFacts:
    facts = probe_base(driver, ref)
    problems = base_problems(facts)
    if problems:
        raise DockerError(f"--base-image {ref!r} lacks what awf needs: {'; '.join(problems)}")
    return facts


def ensure_images(
    driver: DockerDriver,
    *,
    progress: Progress,
    force: bool = False,
    cache_dir: Path | None = None,
    source_root: Path | None = None,
    mirror: str | None = None,
    base_image: str | None = None,
) -> ImageSet:
    """Make sure awf-base, awf-runtime and awf-agent exist for this source tree; their tags.

    Builds only what is missing (or everything with `force`); awf-pydeps only when awf-runtime
    must be built. `mirror` (else $AWF_MIRROR, else the host's apt sources) is the Debian mirror
    of awf-base; `base_image` (else $AWF_BASE_IMAGE) a local image used instead of awf-base.
    Raises DockerError.
    """
    arch = debian_arch(platform.machine())
    mirror = mirror or os.environ.get("AWF_MIRROR") or None
    base_image = base_image or os.environ.get("AWF_BASE_IMAGE") or None
    facts = checked_base(driver, base_image) if base_image else None
    plan = make_plan(source_root or find_source_root(), arch=arch, base_image=facts)
    wanted = (plan.base, plan.runtime, plan.agent)
    if not force and all(driver.image_exists(t) for t in wanted):
        return plan.images
    cache = cache_dir or default_cache_dir()
    with _build_lock(cache, progress):  # then look again: another awf may have built them
        missing = {t for t in wanted if force or not driver.image_exists(t)}
        if facts is not None:
            missing.discard(plan.base)  # the user's image: never built, never retagged
        if plan.runtime in missing and (force or not driver.image_exists(plan.pydeps)):
            missing.add(plan.pydeps)
        if plan.base in missing:
            _build_base(driver, plan, mirror, progress)
        if plan.runtime in missing:
            wheels = ensure_wheels(cache, plan.requirements, arch, progress,
                                   python=plan.python, glibc_minor=plan.glibc_minor)
            if plan.pydeps in missing:
                _build_stage(driver, plan.pydeps, plan.pydeps_dockerfile, base=plan.base,
                             fill=partial(_pydeps_context, plan, wheels), progress=progress)
            _build_stage(driver, plan.runtime, plan.runtime_dockerfile, base=plan.pydeps,
                         fill=partial(_runtime_context, plan),
                         progress=progress)
        if plan.agent in missing:
            _build_stage(driver, plan.agent, plan.agent_dockerfile, base=plan.base,
                         fill=partial(_agent_context, plan), progress=progress)
        if facts is not None:  # a build on the user's base: :latest and the rest stay
            return plan.images
        for tag in sorted(missing):
            driver.tag(tag, tag.split(":", 1)[0] + ":latest")
        untagged = remove_stale_tags(driver, plan.tags, now=time.time())
        freed = driver.prune_images(labels.IMAGE, "1")  # awf-pydeps' venv stage, mostly
        if untagged or freed:
            progress(f"[awf] removed {len(untagged)} outdated image tags and "
                     f"{freed / 1e6:.0f} MB of untagged build leftovers")
    return plan.images


def _build_base(driver: DockerDriver, plan: Plan, mirror: str | None, progress: Progress) -> None:
    mirrors = base_mirrors(mirror, () if mirror else apt_sources(host_apt_files()))
    progress(f"[awf] building base image {plan.base} (Debian {SUITE} from "
             f"{mirrors[0].split()[1]}, ~1 min, first time only)...")
    started = time.monotonic()
    build_rootfs_image(driver, plan.base, BASE_PACKAGES, mirrors=mirrors, progress=progress)
    _timed(driver, plan.base, started, progress)


def _pydeps_context(plan: Plan, wheels: Path, ctx: Path) -> None:
    for wheel in wheels.glob("*.whl"):
        _link_or_copy(wheel, ctx / "wheels" / wheel.name)
    (ctx / "wheels" / "requirements.txt").write_text("".join(f"{r}\n" for r in plan.requirements))


def _runtime_context(plan: Plan, ctx: Path) -> None:
    build_own_wheel(plan, ctx / "awf")


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
    build.add_argument("--base-image", help="a local image with Python 3.11+ instead of awf-base")
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
        images = ensure_images(driver, progress=say, force=args.force, mirror=args.mirror,
                               base_image=args.base_image)
        say(f"[awf] images ready in {time.monotonic() - started:.1f} s")
        print(f"{images.base}\n{images.runtime}\n{images.agent}")
        return 0
    except AwfError as exc:
        say(f"awf: {exc}")
        return 125


if __name__ == "__main__":
    sys.exit(main())
