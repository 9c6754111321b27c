"""Issue 19, item 2: `awf images build --base-image IMAGE`, a real build on a local image.

The base is the project's own awf-base under another name (`docker tag`: nothing is pulled);
the images built on it hash its content, so they are awf-pydeps/awf-runtime/awf-agent tags of
their own, and :latest is left alone. An image without what awf needs is refused in one line
naming what is missing.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest

from containers import imageplan
from containers.driver import DockerDriver
from containers.images import ensure_images
from tests.support.needs import need_docker

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]


def awf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "awf.cli", *args], capture_output=True,
                          text=True, timeout=1500, check=False)


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    need_docker()
    driver = DockerDriver.from_env()
    default = ensure_images(driver, progress=lambda line: None)
    tag = f"awf-test-base-{secrets.token_hex(3)}:1"
    driver.tag(default.base, tag)
    try:
        yield tag
    finally:
        driver.remove_image(tag, force=False)  # only the name this test made
        driver.close()


def test_images_build_on_a_local_base_image(base: str) -> None:
    latest_before = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}",
                                    "awf-runtime:latest"], capture_output=True, text=True,
                                   check=False).stdout
    done = awf("images", "build", "--base-image", base)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    tags = done.stdout.split()
    assert tags[0] == base
    assert tags[1].startswith("awf-runtime:")
    assert tags[2].startswith("awf-agent:")
    default = imageplan.make_plan(imageplan.find_source_root(), arch="amd64")
    assert tags[1] != default.runtime  # built on the other base, tagged by its content
    ran = subprocess.run(["docker", "run", "--rm", "--network", "none", tags[1],
                          "awf-proxy", "--version"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert ran.returncode == 0, ran.stderr
    assert "awf" in (ran.stdout + ran.stderr).lower()
    again = awf("images", "build", "--base-image", base)  # nothing to build the second time
    assert again.stdout.split() == tags
    assert "building" not in again.stderr
    latest_after = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}",
                                   "awf-runtime:latest"], capture_output=True, text=True,
                                  check=False).stdout
    assert latest_after == latest_before


def test_a_base_image_without_python_is_one_line(base: str) -> None:
    done = awf("images", "build", "--base-image", "awf-no-such-image:0")
    assert done.returncode == 125
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "is not a local image" in done.stderr


def test_a_base_image_lacking_nft_names_it(base: str, tmp_path) -> None:
    """A base with Python but no nft: built from the test base by deleting the binary."""
    tag = f"awf-test-nonft-{secrets.token_hex(3)}:1"
    (tmp_path / "Dockerfile").write_text(f"FROM {base}\nRUN rm -f /usr/sbin/nft\n")
    subprocess.run(["docker", "build", "-q", "--network", "none", "-t", tag, str(tmp_path)],
                   check=True, capture_output=True, timeout=300)
    try:
        done = awf("images", "build", "--base-image", tag)
        assert done.returncode == 125, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert "'nft'" in lines[0]
        assert "Traceback" not in done.stderr
    finally:
        subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)
