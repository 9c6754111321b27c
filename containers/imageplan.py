"""What awf's images are, computed without building anything: the plan of `containers.images`.

Pure but for reading files (pyproject.toml, the Dockerfiles in containers/images/, the sources it
hashes, the host's apt sources): it runs no process, talks to no engine and writes nothing.

- which images: awf-base (a Debian root filesystem: suite, packages, dpkg options), awf-pydeps
  (awf-base plus a venv with our dependencies), awf-runtime (awf-pydeps plus our own wheel) and
  awf-agent, each with its Dockerfile text;
- their tags: a SHA-256 of that image's inputs (awf-base: suite, packages, dpkg options and
  BUILDER_VERSION; the others: Dockerfile, the files that go in, the wheel set, the base tag);
- where those files come from: the directory the running awf was imported from (issue 19: the
  wheel is the product). A source checkout and an installed distribution hold the same package
  files (the .py files and the package data), and the project's metadata (name, version,
  requirements, console scripts) comes from pyproject.toml in a checkout and from the installed
  distribution's metadata otherwise, so both give the same tags;
- the arguments of the tools that build them (the rootfs command, `pip download`), the mirrors
  from the host's apt sources, the wheel platforms for the image's Python and glibc;
- which outdated tags may go, and the telling lines of a failed tool's output.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from containers.driver import ImageInfo
from containers.errors import DockerError

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
DIST_NAME = "awf-egress-firewall"
# The files of the packages that the distribution carries (pyproject.toml's package-data): in a
# checkout anything else in those directories is not ours to ship, in an installed one there is
# nothing else.
PACKAGE_SUFFIXES = (".py", ".c", ".Dockerfile")
PACKAGE_NAMES = ("py.typed",)
AGENT_DIR = "containers/agent"  # the agent image's own files: entrypoint, one-shot library
ONE_SHOT_SOURCE, ONE_SHOT_LIBRARY = "one_shot_token.c", "one_shot_token.so"

BASE_REPO, PYDEPS_REPO = "awf-base", "awf-pydeps"
RUNTIME_REPO, AGENT_REPO = "awf-runtime", "awf-agent"
REPOS = (BASE_REPO, PYDEPS_REPO, RUNTIME_REPO, AGENT_REPO)
TAG_CHARS = 12
DOCKERFILES = Path(__file__).resolve().parent / "images"
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))

STALE_AFTER = 600  # seconds; an outdated image tag younger than this is kept


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


def wheel_platforms(arch: str, glibc_minor: int = GLIBC_MINOR) -> tuple[str, ...]:
    """pip --platform values the image's glibc accepts, newest first.

    pip expands only manylinux2014/2010 by itself, so each manylinux_2_N is listed.
    """
    machine = {"amd64": "x86_64", "arm64": "aarch64"}[arch]
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(glibc_minor, 16, -1)]
    return (*tags, f"manylinux2014_{machine}")


def runtime_requirements(pyproject: str) -> tuple[str, ...]:
    """The project's runtime dependencies, as pyproject.toml states them."""
    deps = tomllib.loads(pyproject).get("project", {}).get("dependencies", [])
    return tuple(_requirement(str(d)) for d in deps)


def project_name(pyproject: str) -> str:
    return str(tomllib.loads(pyproject)["project"]["name"])


@dataclass(frozen=True, slots=True)
class Project:
    """What the runtime image's wheel says about itself, from either source."""

    name: str
    version: str
    requirements: tuple[str, ...]
    scripts: tuple[tuple[str, str], ...]  # (command, module:function), sorted

    def key(self) -> str:
        return digest("project", self.name, self.version, self.requirements, self.scripts)


def _requirement(text: str) -> str:
    return re.sub(r"\s+", "", text)


def project_from_pyproject(pyproject: str, version: str) -> Project:
    data = tomllib.loads(pyproject)["project"]
    scripts = tuple(sorted((str(k), str(v)) for k, v in data.get("scripts", {}).items()))
    return Project(str(data["name"]), version, runtime_requirements(pyproject), scripts)


def project_from_metadata(requires: Sequence[str], name: str, version: str,
                          scripts: Iterable[tuple[str, str]]) -> Project:
    """An installed distribution's: its Requires-Dist without the extras' (test tools)."""
    runtime = tuple(_requirement(r) for r in requires if "extra" not in r.partition(";")[2])
    return Project(name, version, runtime, tuple(sorted(scripts)))


def source_version(root: Path) -> str:
    text = (root / "proxy" / "__init__.py").read_text()
    found = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", text, re.M)
    if found is None:
        raise DockerError(f"no __version__ in {str(root / 'proxy' / '__init__.py')!r}")
    return found.group(1)


def read_project(root: Path) -> Project:
    """pyproject.toml's in a checkout; the installed distribution's metadata otherwise."""
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        text = pyproject.read_text()
        static = tomllib.loads(text)["project"].get("version")
        return project_from_pyproject(text, str(static) if static else source_version(root))
    try:
        dist = importlib.metadata.distribution(DIST_NAME)
    except importlib.metadata.PackageNotFoundError as exc:
        raise DockerError(f"awf at {str(root)!r} is neither a source checkout (no "
                          f"pyproject.toml) nor an installed {DIST_NAME}; reinstall it: "
                          f"pip install {DIST_NAME}") from exc
    scripts = [(ep.name, ep.value) for ep in dist.entry_points
               if ep.group == "console_scripts"]
    return project_from_metadata(dist.requires or (), dist.metadata["Name"], dist.version,
                                 scripts)


def pip_download_args(dest: Path, requirements: Sequence[str], arch: str, *,
                      python: str = IMAGE_PYTHON, glibc_minor: int = GLIBC_MINOR) -> list[str]:
    args = ["download", "--only-binary", ":all:", "--dest", str(dest),
            "--python-version", python, "--implementation", "cp",
            "--abi", "cp" + python.replace(".", ""), "--abi", "abi3", "--abi", "none"]
    for tag in wheel_platforms(arch, glibc_minor):
        args += ["--platform", tag]
    return [*args, *requirements, *BUILD_BACKEND]


def wheelset_key(requirements: Sequence[str], arch: str, *, python: str = IMAGE_PYTHON,
                 glibc_minor: int = GLIBC_MINOR) -> str:
    if (python, glibc_minor) == (IMAGE_PYTHON, GLIBC_MINOR):  # awf-base's: the keys it always had
        return digest("wheels", BUILDER_VERSION, IMAGE_PYTHON, arch, wheel_platforms(arch),
                      sorted(requirements), BUILD_BACKEND)
    return digest("wheels", BUILDER_VERSION, python, arch, wheel_platforms(arch, glibc_minor),
                  sorted(requirements), BUILD_BACKEND)


# A base image of the user's (--base-image): what awf needs in it, and what it was found to hold.

MIN_PYTHON = (3, 11)
PIP_REQUIREMENT = "pip"  # a base without Debian's python3-venv wheels gets pip from the wheel set


@dataclass(frozen=True, slots=True)
class BaseFacts:
    """What `images.probe_base` found in a local image (its JSON line, parsed)."""

    ref: str  # as the user named it
    image_id: str  # its content: what the tags hash
    python: str  # "3.12"
    libc: str  # "glibc" or another
    glibc_minor: int
    has_venv: bool
    debian_pip: bool  # /usr/share/python-wheels/pip-*.whl (Debian's python3-venv)
    tools: tuple[str, ...]  # of NEEDED_TOOLS, those found
    libseccomp: bool


NEEDED_TOOLS = ("nft",)  # the proxy and the keeper apply their rules with it


def base_problems(facts: BaseFacts) -> tuple[str, ...]:
    """What the image lacks for awf, each named with its fix; empty when it will do."""
    problems: list[str] = []
    major, minor = (int(x) for x in facts.python.split(".")[:2])
    if (major, minor) < MIN_PYTHON:
        problems.append(f"Python {facts.python} (awf needs {'.'.join(map(str, MIN_PYTHON))} "
                        "or newer)")
    if facts.libc != "glibc":
        problems.append(f"glibc (its C library is {facts.libc or 'unknown'}; the wheels awf "
                        "installs are manylinux)")
    if not facts.has_venv:
        problems.append("Python's venv module (Debian: python3-venv)")
    problems += [f"the {tool!r} command (Debian: nftables)" for tool in NEEDED_TOOLS
                 if tool not in facts.tools]
    if not facts.libseccomp:
        problems.append("libseccomp.so.2 (Debian: libseccomp2)")
    return tuple(problems)


def base_requirements(requirements: Sequence[str], facts: BaseFacts | None) -> tuple[str, ...]:
    """The wheel set's requirements: pip too when the base has no Debian pip wheel."""
    if facts is None or facts.debian_pip:
        return tuple(requirements)
    return (*requirements, PIP_REQUIREMENT)


def base_mirrors(mirror: str | None, sources: Sequence[AptSource]) -> tuple[str, ...]:
    """mmdebstrap's sources.list lines: `--mirror` (or AWF_MIRROR) alone, else the host's."""
    if mirror:
        url = mirror.strip().rstrip("/")
        if not url.startswith(("http://", "https://", "file:/")):
            raise DockerError(f"--mirror {mirror!r} is not an http(s):// or file:/ URL of a "
                              "Debian mirror, like http://deb.debian.org/debian")
        return (f"deb {url} {SUITE} main",)
    return mirror_lines(sources)


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


def is_package_file(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.endswith(PACKAGE_SUFFIXES) or base in PACKAGE_NAMES


def source_files(root: Path) -> tuple[str, ...]:
    """Files our wheel is built from, relative to the package root, sorted: the packages' .py
    files and their package data, the same in a checkout and in an installed distribution."""
    names: list[str] = []
    for top in PACKAGE_DIRS:
        names += [n for n in _tree_files(root, top) if is_package_file(n)]
    return tuple(sorted(names))


def file_hashes(root: Path, names: Iterable[str]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (name, hashlib.sha256((root / name).read_bytes()).hexdigest()) for name in names
    )


def find_source_root() -> Path:
    """The directory awf's packages were imported from: a checkout or site-packages."""
    root = Path(__file__).resolve().parent.parent
    missing = [top for top in PACKAGE_DIRS if not (root / top / "__init__.py").is_file()]
    missing += [f"containers/images/{n}.Dockerfile" for n in ("pydeps", "runtime", "agent")
                if not (root / "containers" / "images" / f"{n}.Dockerfile").is_file()]
    missing += [f"{AGENT_DIR}/{ONE_SHOT_SOURCE}"] * (not (root / AGENT_DIR / ONE_SHOT_SOURCE)
                                                     .is_file())
    if missing:
        raise DockerError(f"this awf installation at {str(root)!r} lacks {', '.join(missing)}; "
                          f"reinstall it: pip install --force-reinstall {DIST_NAME}")
    return root


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
    meta: Project
    pydeps_dockerfile: str
    runtime_dockerfile: str
    agent_dockerfile: str
    agent_files: tuple[str, ...]
    base_image: BaseFacts | None = None  # --base-image: awf-base is the user's, not built
    python: str = IMAGE_PYTHON  # of the base: the wheels are downloaded for it
    glibc_minor: int = GLIBC_MINOR

    @property
    def tags(self) -> tuple[str, str, str, str]:
        """Every image, parents first."""
        return (self.base, self.pydeps, self.runtime, self.agent)

    @property
    def images(self) -> ImageSet:
        return ImageSet(base=self.base, runtime=self.runtime, agent=self.agent)


def make_plan(source_root: Path, *, arch: str, dockerfiles: Path = DOCKERFILES,
              base_image: BaseFacts | None = None) -> Plan:
    """The plan; with `base_image` (--base-image) awf-base is that image, not built, and the
    tags below it hash its image id, its Python and glibc (the wheels are for them)."""
    meta = read_project(source_root)
    requirements = base_requirements(meta.requirements, base_image)
    pydeps_df = (dockerfiles / "pydeps.Dockerfile").read_text()
    runtime_df = (dockerfiles / "runtime.Dockerfile").read_text()
    agent_df = (dockerfiles / "agent.Dockerfile").read_text()
    sources = source_files(source_root)
    agent_files = tuple(_tree_files(source_root, AGENT_DIR))
    if base_image is None:
        base, hashed_base, python, glibc = base_tag(arch=arch), "", IMAGE_PYTHON, GLIBC_MINOR
    else:
        base, hashed_base = base_image.ref, base_image.image_id
        python, glibc = base_image.python, base_image.glibc_minor
    wheels = wheelset_key(requirements, arch, python=python, glibc_minor=glibc)
    pydeps = stage_tag(
        PYDEPS_REPO, base=hashed_base or base, dockerfile=pydeps_df,
        inputs=(("wheels", wheels),),
    )
    runtime = stage_tag(
        RUNTIME_REPO, base=pydeps, dockerfile=runtime_df,
        inputs=(*file_hashes(source_root, sources), ("project", meta.key())),
    )
    agent = stage_tag(
        AGENT_REPO, base=hashed_base or base, dockerfile=agent_df,
        inputs=file_hashes(source_root, agent_files)
    )
    return Plan(
        base=base, pydeps=pydeps, runtime=runtime, agent=agent, arch=arch,
        source_root=source_root, sources=sources, requirements=requirements,
        project=meta.name, meta=meta, pydeps_dockerfile=pydeps_df,
        runtime_dockerfile=runtime_df, agent_dockerfile=agent_df, agent_files=agent_files,
        base_image=base_image, python=python, glibc_minor=glibc,
    )


# Reading results.


def failure_summary(lines: Sequence[str]) -> str:
    """The telling part of a failed tool's output: its first error lines (apt's "E:") and its
    last, else the last lines."""
    stripped = [line.strip() for line in lines if line.strip()]
    errors = [line for line in stripped if line.startswith(("E:", "ERROR"))]
    picked = errors[:2] + errors[-1:] if len(errors) > 2 else errors or stripped[-5:]
    return " | ".join(picked) or "no output"


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
