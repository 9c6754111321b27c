"""Image tags are hashes of their inputs; the host's apt sources name the Debian mirror."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from containers import imageplan, images
from containers.driver import ImageInfo, parse_import_result
from containers.errors import DockerError
from containers.imageplan import AptSource

HOST_SOURCES = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

TAG = re.compile(r"[a-z-]+:[0-9a-f]{12}")


# Tags


def test_base_tag_is_stable_and_ignores_package_order():
    tag = imageplan.base_tag()
    assert TAG.fullmatch(tag)
    assert tag.startswith("awf-base:")
    assert imageplan.base_tag() == tag
    assert imageplan.base_tag(tuple(reversed(imageplan.BASE_PACKAGES))) == tag


@pytest.mark.parametrize(
    "changed",
    [
        {"packages": (*imageplan.BASE_PACKAGES, "strace")},
        {"packages": imageplan.BASE_PACKAGES[1:]},
        {"suite": "trixie"},
        {"arch": "arm64"},
    ],
)
def test_base_tag_changes_with_its_inputs(changed):
    assert imageplan.base_tag(**changed) != imageplan.base_tag()


def test_base_tag_changes_with_the_builder_version(monkeypatch):
    before = imageplan.base_tag()
    monkeypatch.setattr(imageplan, "BUILDER_VERSION", imageplan.BUILDER_VERSION + "-next")
    assert imageplan.base_tag() != before


def test_stage_tag_depends_on_every_input_but_not_their_order():
    inputs = (("a.py", "1" * 64), ("b.py", "2" * 64))
    tag = imageplan.stage_tag("awf-runtime", base="awf-base:1", dockerfile="FROM x", inputs=inputs)
    assert TAG.fullmatch(tag)
    same = imageplan.stage_tag(
        "awf-runtime", base="awf-base:1", dockerfile="FROM x", inputs=inputs[::-1]
    )
    assert same == tag
    others = {
        imageplan.stage_tag("awf-runtime", base="awf-base:2", dockerfile="FROM x", inputs=inputs),
        imageplan.stage_tag("awf-runtime", base="awf-base:1", dockerfile="FROM y", inputs=inputs),
        imageplan.stage_tag("awf-runtime", base="awf-base:1", dockerfile="FROM x",
                            inputs=inputs[:1]),
        imageplan.stage_tag(
            "awf-runtime", base="awf-base:1", dockerfile="FROM x",
            inputs=(("a.py", "3" * 64), ("b.py", "2" * 64)),
        ),
        imageplan.stage_tag("awf-agent", base="awf-base:1", dockerfile="FROM x", inputs=inputs),
    }
    assert tag not in others
    assert len(others) == 5


def _tree(root: Path) -> Path:
    """A small source tree shaped like ours, with its own Dockerfiles."""
    (root / "pyproject.toml").write_text(
        '[project]\nname = "awf-egress-firewall"\nversion = "0.1.0"\n'
        'dependencies = ["idna>=3.6", "PyYAML>=6.0"]\n'
    )
    for package in imageplan.PACKAGE_DIRS:
        (root / package).mkdir()
        (root / package / "__init__.py").write_text(f'"""{package}."""\n')
    (root / "proxy" / "__pycache__").mkdir()
    (root / "proxy" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (root / "tests").mkdir()
    (root / "tests" / "test_x.py").write_text("")
    dockerfiles = root / "dockerfiles"
    dockerfiles.mkdir()
    (dockerfiles / "pydeps.Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nRUN deps\n")
    (dockerfiles / "runtime.Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nRUN true\n")
    (dockerfiles / "agent.Dockerfile").write_text("ARG BASE\nFROM ${BASE}\n")
    return dockerfiles


def _plan(root: Path, dockerfiles: Path) -> imageplan.Plan:
    return imageplan.make_plan(root, arch="amd64", dockerfiles=dockerfiles)


def test_plan_is_stable_for_an_unchanged_tree(tmp_path):
    dockerfiles = _tree(tmp_path)
    first, second = _plan(tmp_path, dockerfiles), _plan(tmp_path, dockerfiles)
    assert first.tags == second.tags
    assert first.images == imageplan.ImageSet(first.base, first.runtime, first.agent)
    assert first.base == imageplan.base_tag()
    assert [t.split(":")[0] for t in first.tags] == list(imageplan.REPOS)
    assert first.requirements == ("idna>=3.6", "PyYAML>=6.0")
    assert first.project == "awf-egress-firewall"


def test_plan_sources_are_the_packages_only(tmp_path):
    plan = _plan(tmp_path, _tree(tmp_path))
    assert plan.sources == (
        "awf/__init__.py", "containers/__init__.py", "netfilter/__init__.py",
        "proxy/__init__.py",
    )


def test_the_plan_is_the_same_from_a_checkout_and_from_the_installed_metadata(tmp_path):
    """Issue 19: a wheel install has no pyproject.toml; its metadata gives the same tags."""
    root = imageplan.find_source_root()
    checkout = imageplan.make_plan(root, arch="amd64")
    for name in checkout.sources:  # the package files alone, as site-packages holds them
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes((root / name).read_bytes())
    installed = imageplan.make_plan(tmp_path, arch="amd64")
    assert installed.meta == checkout.meta
    assert installed.tags == checkout.tags
    assert ("awf", "awf.cli:main") in checkout.meta.scripts


def test_metadata_requirements_drop_the_extras():
    meta = imageplan.project_from_metadata(
        ["idna>=3.6", 'pytest>=8; extra == "test"', "PyYAML >= 6.0"], "awf-egress-firewall",
        "1.0", [("awf", "awf.cli:main")])
    assert meta.requirements == ("idna>=3.6", "PyYAML>=6.0")


def test_the_own_wheel_is_written_from_the_package_files(tmp_path):
    import zipfile

    plan = _plan(tmp_path, _tree(tmp_path))
    first = images.build_own_wheel(plan, tmp_path / "a")
    second = images.build_own_wheel(plan, tmp_path / "b")
    assert first.name == "awf_egress_firewall-0.1.0-py3-none-any.whl"
    assert first.read_bytes() == second.read_bytes()  # reproducible
    with zipfile.ZipFile(first) as z:
        names = z.namelist()
        meta = z.read("awf_egress_firewall-0.1.0.dist-info/METADATA").decode()
    assert "proxy/__init__.py" in names
    assert "tests/test_x.py" not in names
    assert "Requires-Dist: idna>=3.6" in meta


def test_a_source_edit_changes_the_runtime_tag_only(tmp_path):
    dockerfiles = _tree(tmp_path)
    before = _plan(tmp_path, dockerfiles)
    (tmp_path / "proxy" / "main.py").write_text("print('x')\n")
    after = _plan(tmp_path, dockerfiles)
    assert after.runtime != before.runtime
    assert (after.base, after.pydeps, after.agent) == (before.base, before.pydeps, before.agent)


def test_bytecode_and_tests_do_not_change_any_tag(tmp_path):
    dockerfiles = _tree(tmp_path)
    before = _plan(tmp_path, dockerfiles)
    (tmp_path / "proxy" / "__pycache__" / "y.cpython-311.pyc").write_bytes(b"\1")
    (tmp_path / "tests" / "test_y.py").write_text("")
    (tmp_path / "awf" / ".hidden").write_text("")
    assert _plan(tmp_path, dockerfiles).tags == before.tags


def test_a_requirement_change_changes_the_runtime_tag(tmp_path):
    dockerfiles = _tree(tmp_path)
    before = _plan(tmp_path, dockerfiles)
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("idna>=3.6", "idna>=3.7"))
    after = _plan(tmp_path, dockerfiles)
    assert after.requirements == ("idna>=3.7", "PyYAML>=6.0")
    assert after.pydeps != before.pydeps
    assert after.runtime != before.runtime  # its parent changed
    assert (after.base, after.agent) == (before.base, before.agent)


@pytest.mark.parametrize(
    ("dockerfile", "changes"),
    [("pydeps", {"pydeps", "runtime"}), ("runtime", {"runtime"}), ("agent", {"agent"})],
)
def test_a_dockerfile_edit_changes_its_image_and_children_only(tmp_path, dockerfile, changes):
    dockerfiles = _tree(tmp_path)
    before = _plan(tmp_path, dockerfiles)
    path = dockerfiles / f"{dockerfile}.Dockerfile"
    path.write_text(path.read_text() + "LABEL x=1\n")
    after = _plan(tmp_path, dockerfiles)
    for name in ("base", "pydeps", "runtime", "agent"):
        assert (getattr(after, name) != getattr(before, name)) == (name in changes), name


def test_agent_files_change_the_agent_tag(tmp_path):
    dockerfiles = _tree(tmp_path)
    before = _plan(tmp_path, dockerfiles)
    (tmp_path / "containers" / "agent").mkdir()
    (tmp_path / "containers" / "agent" / "entrypoint.py").write_text("")
    after = _plan(tmp_path, dockerfiles)
    assert after.agent_files == ("containers/agent/entrypoint.py",)
    assert after.agent != before.agent


def test_the_real_plan_reads_our_tree():
    root = imageplan.find_source_root()
    plan = imageplan.make_plan(root, arch="amd64")
    assert plan.project == "awf-egress-firewall"
    assert "containers/images/runtime.Dockerfile" in plan.sources
    assert "containers/images.py" in plan.sources
    assert any(r.startswith("cryptography") for r in plan.requirements)
    assert "requirements.txt" in plan.pydeps_dockerfile
    assert "--no-deps" in plan.runtime_dockerfile


# Apt sources and the mirror


def test_deb822_like_this_host():
    assert imageplan.parse_deb822(HOST_SOURCES) == (
        AptSource("http://deb.debian.org/debian", "bookworm", ("main",)),
        AptSource("http://deb.debian.org/debian", "bookworm-updates", ("main",)),
        AptSource("http://deb.debian.org/debian-security", "bookworm-security", ("main",)),
    )


def test_deb822_fields_case_uris_continuations_and_disabled_stanzas():
    text = (
        "types: deb deb-src\nuris: http://a.test/debian/\n  https://b.test/debian\n"
        "suites: bookworm\ncomponents: main contrib\n\n"
        "Types: deb-src\nURIs: http://src.test/debian\nSuites: bookworm\nComponents: main\n\n"
        "Types: deb\nEnabled: no\nURIs: http://off.test/debian\nSuites: bookworm\n"
        "Components: main\n"
    )
    assert imageplan.parse_deb822(text) == (
        AptSource("http://a.test/debian", "bookworm", ("main", "contrib")),
        AptSource("https://b.test/debian", "bookworm", ("main", "contrib")),
    )


def test_one_line_format():
    text = (
        "# deb http://commented.test/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://a.test/debian/ bookworm main"
        " contrib # trailing comment\n"
        "deb-src http://a.test/debian bookworm main\n"
        "deb http://security.test/debian-security bookworm-security main\n"
        "\n   \nnonsense\n"
    )
    assert imageplan.parse_one_line(text) == (
        AptSource("http://a.test/debian", "bookworm", ("main", "contrib")),
        AptSource("http://security.test/debian-security", "bookworm-security", ("main",)),
    )


def test_apt_sources_reads_only_list_and_sources_files():
    files = {
        "/etc/apt/sources.list.d/debian.sources": HOST_SOURCES,
        "/etc/apt/sources.list.d/google.list.disabled-by-farm": "deb http://g.test/apt stable main",
        "/etc/apt/sources.list.d/nodesource.sources.disabled": HOST_SOURCES.replace("deb.", "x."),
        "/etc/apt/sources.list": "deb http://list.test/debian bookworm main\n",
    }
    found = imageplan.apt_sources(files)
    assert {s.uri for s in found} == {
        "http://list.test/debian", "http://deb.debian.org/debian",
        "http://deb.debian.org/debian-security",
    }


def test_mirror_lines_from_this_host():
    sources = imageplan.apt_sources({"/etc/apt/sources.list.d/debian.sources": HOST_SOURCES})
    assert imageplan.mirror_lines(sources) == (
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    )


def test_mirror_lines_on_a_host_of_another_debian_release():
    sources = imageplan.parse_one_line(
        "deb http://mirror.test/debian trixie main\n"
        "deb http://mirror.test/debian-security trixie-security main\n"
    )
    assert imageplan.mirror_lines(sources) == ("deb http://mirror.test/debian bookworm main",)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "deb http://archive.ubuntu.test/ubuntu noble main\n",
        "deb http://deb.debian.org/debian-security bookworm-security main\n",
        "deb cdrom:[Debian]/ bookworm main\n",
        "deb http://deb.debian.org/debian bookworm contrib\n",
    ],
)
def test_no_usable_mirror_is_an_error_naming_the_fix(text):
    with pytest.raises(DockerError, match="--mirror"):
        imageplan.mirror_lines(imageplan.parse_one_line(text))


# Commands and pip


def test_mmdebstrap_streams_a_tar_with_our_packages():
    mirrors = (
        "deb http://m.test/debian bookworm main",
        "deb http://s.test/debian-security bookworm-security main",
    )
    cmd = imageplan.rootfs_command("mmdebstrap", ("python3", "bash"), mirrors, "-")
    assert cmd[:3] == ["mmdebstrap", "--variant=minbase", "--format=tar"]
    assert "--include=bash,python3" in cmd
    assert cmd[-4:] == ["bookworm", "-", *mirrors]
    assert "--dpkgopt=path-exclude=/usr/share/doc/*" in cmd


def test_debootstrap_takes_the_main_mirror_uri():
    cmd = imageplan.rootfs_command(
        "debootstrap", ("bash",), ("deb http://m.test/debian bookworm main",), "/tmp/r"
    )
    assert cmd == ["debootstrap", "--variant=minbase", "--include=bash", "bookworm", "/tmp/r",
                   "http://m.test/debian"]


def test_wheel_platforms_match_bookworm_glibc():
    tags = imageplan.wheel_platforms("amd64")
    assert tags[0] == "manylinux_2_36_x86_64"
    assert "manylinux_2_17_x86_64" in tags
    assert tags[-1] == "manylinux2014_x86_64"
    assert "manylinux_2_37_x86_64" not in tags
    assert imageplan.wheel_platforms("arm64")[0] == "manylinux_2_36_aarch64"


def test_pip_download_is_binary_only_for_the_image_python(tmp_path):
    args = imageplan.pip_download_args(tmp_path, ("idna>=3.6",), "amd64")
    assert args[:4] == ["download", "--only-binary", ":all:", "--dest"]
    joined = " ".join(args)
    assert "--python-version 3.11" in joined
    assert "--abi cp311" in joined
    assert "--platform manylinux_2_36_x86_64" in joined
    assert args[-1 - len(imageplan.BUILD_BACKEND)] == "idna>=3.6"
    assert args[-1] == imageplan.BUILD_BACKEND[-1]


def test_wheelset_key_follows_requirements():
    key = imageplan.wheelset_key(("a>=1", "b"), "amd64")
    assert key == imageplan.wheelset_key(("b", "a>=1"), "amd64")
    assert key != imageplan.wheelset_key(("a>=2", "b"), "amd64")
    assert key != imageplan.wheelset_key(("a>=1", "b"), "arm64")


def test_debian_arch():
    assert imageplan.debian_arch("x86_64") == "amd64"
    assert imageplan.debian_arch("aarch64") == "arm64"
    with pytest.raises(DockerError, match="riscv64"):
        imageplan.debian_arch("riscv64")


# docker import's answer


def test_import_result_gives_the_image_id():
    text = '{"status":"sha256:' + "a" * 64 + '"}\r\n'
    assert parse_import_result(text) == "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "text",
    ['{"error":"unexpected EOF","errorDetail":{"message":"unexpected EOF"}}\n', "", "\n",
     "<html>502 Bad Gateway</html>\n"],
)
def test_import_result_errors(text):
    with pytest.raises(DockerError, match="import"):
        parse_import_result(text)


# Outdated tags


def test_stale_tags_spare_current_latest_young_and_foreign_tags():
    keep = ("awf-base:b1", "awf-pydeps:p1", "awf-runtime:r2", "awf-agent:a1")
    now = 10_000.0
    old, young = int(now - imageplan.STALE_AFTER - 1), int(now - 5)
    found = [
        ImageInfo("sha256:1", ("awf-base:b1", "awf-base:latest", "awf-agent:a1"), (), old),
        ImageInfo("sha256:2", ("awf-runtime:r1",), (), old),
        ImageInfo("sha256:3", ("awf-runtime:r2", "awf-runtime:latest"), (), young),
        ImageInfo("sha256:4", ("awf-runtime:r0", "awf-agent:a0"), (), old),
        ImageInfo("sha256:5", ("awf-runtime:r9",), (), young),
        ImageInfo("sha256:6", ("someone/else:1", "awf-test-build:x"), (), old),
        ImageInfo("sha256:7", (), (), old),
        ImageInfo("sha256:8", ("awf-pydeps:p0",), (), old),
        ImageInfo("sha256:9", ("awf-pydeps:p1",), (), old),
    ]
    assert imageplan.stale_tags(found, keep, now=now) == (
        "awf-agent:a0", "awf-pydeps:p0", "awf-runtime:r0", "awf-runtime:r1",
    )


# Failures of the tools


def test_failure_summary_prefers_apt_errors():
    lines = [
        "I: running apt-get update...",
        "Err:1 http://127.0.0.1:9/debian bookworm InRelease",
        "  Could not connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)",
        "E: Failed to fetch http://127.0.0.1:9/debian/dists/bookworm/InRelease  Could not connect",
        "E: Some index files failed to download.",
        "E: apt-get update failed",
        "I: removing tempdir /tmp/mmdebstrap.x...",
        "E: mmdebstrap failed to run",
    ]
    assert imageplan.failure_summary(lines) == (
        "E: Failed to fetch http://127.0.0.1:9/debian/dists/bookworm/InRelease  Could not connect"
        " | E: Some index files failed to download. | E: mmdebstrap failed to run"
    )


def test_failure_summary_without_error_lines_keeps_the_end():
    assert imageplan.failure_summary([f"line {i}" for i in range(9)]) == (
        "line 4 | line 5 | line 6 | line 7 | line 8"
    )
    assert imageplan.failure_summary([]) == "no output"
    assert imageplan.failure_summary(["E: one"]) == "E: one"


def test_mounts_under_finds_mount_points_inside_a_tree(tmp_path):
    assert images._mounts_under(tmp_path) == []
    assert "/proc" in images._mounts_under(Path("/proc"))


def test_a_rootfs_without_mounts_is_removed(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    said: list[str] = []
    images._remove_rootfs(root, said.append)
    assert not root.exists()
    assert said == []


def test_the_pinned_build_backend_satisfies_pyproject():
    requires = tomllib.loads((imageplan.find_source_root() / "pyproject.toml").read_text())[
        "build-system"]["requires"]
    pins = {Requirement(p).name: Requirement(p) for p in imageplan.BUILD_BACKEND}
    for wanted in map(Requirement, requires):
        pinned = pins[wanted.name]
        (version,) = [s.version for s in pinned.specifier]
        assert wanted.specifier.contains(version), (wanted, pinned)


# --mirror and --base-image (issue 19, item 2): the plan, pure


def test_mirror_option_is_the_only_source():
    host = imageplan.apt_sources({"/etc/apt/sources.list": "deb http://h.example/debian "
                                  "bookworm main\n"})
    assert imageplan.base_mirrors("http://m.example/debian/", host) == (
        "deb http://m.example/debian bookworm main",)
    assert imageplan.base_mirrors(None, host)[0] == "deb http://h.example/debian bookworm main"
    with pytest.raises(DockerError, match="--mirror"):
        imageplan.base_mirrors("m.example/debian", host)
    with pytest.raises(DockerError, match="--mirror URL"):
        imageplan.base_mirrors(None, ())


def _facts(**over: Any) -> imageplan.BaseFacts:
    args: dict[str, Any] = dict(
        ref="my/base:1", image_id="sha256:" + "ab" * 32, python="3.11", libc="glibc",
        glibc_minor=36, has_venv=True, debian_pip=True, tools=("nft",), libseccomp=True)
    args.update(over)
    return imageplan.BaseFacts(**args)


def test_base_problems_name_what_is_missing():
    assert imageplan.base_problems(_facts()) == ()
    problems = imageplan.base_problems(_facts(python="3.9", libc="musl", has_venv=False,
                                              tools=(), libseccomp=False))
    text = "; ".join(problems)
    for piece in ("Python 3.9", "glibc", "venv", "'nft'", "libseccomp"):
        assert piece in text, piece
    assert imageplan.base_problems(_facts(python="3.13")) == ()


def test_a_base_image_plan(tmp_path):
    dockerfiles = _tree(tmp_path)
    default = _plan(tmp_path, dockerfiles)
    facts = _facts()
    on_base = imageplan.make_plan(tmp_path, arch="amd64", dockerfiles=dockerfiles,
                                  base_image=facts)
    assert on_base.base == "my/base:1"
    assert len({default.pydeps, default.runtime, default.agent} & set(on_base.tags)) == 0
    # the tags follow the image's content, not its name
    renamed = imageplan.make_plan(tmp_path, arch="amd64", dockerfiles=dockerfiles,
                                  base_image=_facts(ref="other:2"))
    assert renamed.tags[1:] == on_base.tags[1:]
    other = imageplan.make_plan(tmp_path, arch="amd64", dockerfiles=dockerfiles,
                                base_image=_facts(image_id="sha256:" + "cd" * 32))
    assert other.pydeps != on_base.pydeps
    # a newer Python: wheels for it; no Debian pip wheel: pip joins the set
    py312 = imageplan.make_plan(tmp_path, arch="amd64", dockerfiles=dockerfiles,
                                base_image=_facts(python="3.12", debian_pip=False))
    assert (py312.python, py312.requirements[-1]) == ("3.12", "pip")
    assert py312.pydeps != on_base.pydeps
    args = imageplan.pip_download_args(tmp_path, py312.requirements, "amd64", python="3.12",
                                       glibc_minor=31)
    assert args[args.index("--python-version") + 1] == "3.12"
    assert "cp312" in args
    assert "manylinux_2_31_x86_64" in args
    assert "manylinux_2_32_x86_64" not in args


def test_the_default_wheelset_key_is_unchanged():
    reqs = ("idna>=3.6",)
    assert imageplan.wheelset_key(reqs, "amd64") == imageplan.digest(
        "wheels", imageplan.BUILDER_VERSION, imageplan.IMAGE_PYTHON, "amd64",
        imageplan.wheel_platforms("amd64"), sorted(reqs), imageplan.BUILD_BACKEND)
