"""DockerDriver against the real engine: lifecycle, logs, networks, imports and builds."""

from __future__ import annotations

import io
import random
import secrets
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from containers import labels
from containers.driver import DockerDriver
from containers.errors import DockerError
from containers.images import ensure_images
from containers.spec import ContainerSpec, NetworkAttachment
from tests.support.needs import need_docker

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

TEST_RUN = "driver-" + secrets.token_hex(4)
MARK = ((labels.TEST, TEST_RUN),)


@pytest.fixture(scope="module")
def driver() -> Iterator[DockerDriver]:
    need_docker()
    docker = DockerDriver.from_env()
    yield docker
    found = docker.list_by_label(labels.TEST, TEST_RUN)
    for container in found.containers:
        docker.remove(container.id)
    for network in found.networks:
        docker.remove_network(network.id)
    for image in docker.list_images(labels.TEST, TEST_RUN):
        docker.remove_image(image.id)
    docker.close()


@pytest.fixture(scope="module")
def image(driver: DockerDriver) -> str:
    """awf-agent, built if missing (minutes, the first time on a machine)."""
    return ensure_images(driver, progress=lambda _: None).agent


def _name(what: str = "c") -> str:
    return f"awf-test-{what}-{secrets.token_hex(4)}"


def _spec(image: str, *argv: str, **kw: object) -> ContainerSpec:
    kw.setdefault("network_mode", "none")
    return ContainerSpec(name=_name(), image=image, command=argv, labels=MARK,
                         **kw)  # type: ignore[arg-type]


def test_lifecycle_status_logs_and_idempotent_cleanup(driver, image):
    cid = driver.create_container(_spec(image, "sh", "-c", "echo one; echo two; exit 7"))
    listed = driver.list_by_label(labels.TEST, TEST_RUN).containers
    assert cid in {c.id for c in listed}
    assert next(c for c in listed if c.id == cid).label(labels.TEST) == TEST_RUN
    driver.start(cid)
    assert driver.wait(cid, timeout=60) == 7
    assert driver.logs(cid) == "one\ntwo\n"
    assert driver.logs(cid, tail=1) == "two\n"
    assert next(c for c in driver.list_by_label(labels.TEST, TEST_RUN).containers
                if c.id == cid).state == "exited"
    assert driver.kill(cid) is False  # not running
    driver.remove(cid)
    driver.remove(cid)  # already gone: fine
    assert driver.kill(cid) is False
    assert cid not in {c.id for c in driver.list_by_label(labels.TEST, TEST_RUN).containers}


def test_spec_settings_reach_the_container(driver, image):
    script = (
        'echo "$A|$B|$(id -u):$(id -g)|$(pwd)"'
        '"|$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)|$(grep CapEff /proc/self/status)"; '
        "touch /x 2>/dev/null || echo ro; touch /tmp/y && echo tmp"
    )
    spec = _spec(
        image, "sh", "-c", script,
        env=(("A", "1"), ("B", "x=y")),
        user="65534:65534",
        working_dir="/tmp",
        read_only=True,
        tmpfs=(("/tmp", "rw,size=1m"),),
        cap_drop=("ALL",),
        security_opt=("no-new-privileges",),
        sysctls=(("net.ipv4.ip_unprivileged_port_start", "0"),),
        network_mode=None,
    )
    cid = driver.create_container(spec)
    try:
        driver.start(cid)
        assert driver.wait(cid, timeout=60) == 0
        assert driver.logs(cid).splitlines() == [
            "1|x=y|65534:65534|/tmp|0|CapEff:\t0000000000000000", "ro", "tmp"]
    finally:
        driver.remove(cid)


def test_stream_logs_follows_until_the_container_stops(driver, image):
    script = "for i in 1 2 3; do echo line$i; done; echo err >&2"
    cid = driver.create_container(_spec(image, "sh", "-c", script))
    try:
        driver.start(cid)
        assert sorted(driver.stream_logs(cid)) == ["err", "line1", "line2", "line3"]
    finally:
        driver.remove(cid)


def test_stream_logs_can_stop_early_on_a_readiness_line(driver, image):
    cid = driver.create_container(_spec(image, "sh", "-c", "echo ready; exec sleep 60"))
    try:
        driver.start(cid)
        lines = driver.stream_logs(cid)
        assert next(lines) == "ready"
        lines.close()
        assert driver.kill(cid, "SIGKILL") is True
        assert driver.wait(cid, timeout=30) == 137
    finally:
        driver.remove(cid)


def test_wait_times_out_with_the_builtin_timeout_error(driver, image):
    cid = driver.create_container(_spec(image, "sleep", "60"))
    try:
        driver.start(cid)
        with pytest.raises(TimeoutError, match="still running"):
            driver.wait(cid, timeout=1)
        assert driver.kill(cid, "SIGKILL") is True  # PID 1 ignores SIGTERM: no handler
        assert driver.wait(cid, timeout=30) == 137
    finally:
        driver.remove(cid)


def test_missing_image_names_it(driver):
    with pytest.raises(DockerError, match=r"'awf-no-such:never'.*awf images build"):
        driver.create_container(_spec("awf-no-such:never", "true"))


def _network(driver: DockerDriver, *, internal: bool) -> tuple[str, str, str]:
    """A network on a free test subnet: (name, v4 prefix, v6 prefix)."""
    for _ in range(10):
        n = random.randrange(200, 255)
        v4, v6 = f"10.213.{n}.", f"fd61:7766:0:{n:x}::"
        name = _name("net")
        try:
            driver.create_network(name, internal=internal, subnet_v4=v4 + "0/24",
                                  subnet_v6=v6 + "/64", labels=dict(MARK))
        except DockerError as exc:
            if "overlap" in str(exc):
                continue
            raise
        return name, v4, v6
    pytest.fail("no free 10.213.200-254.0/24 test subnet after 10 tries")


def test_networks_with_fixed_addresses_and_a_second_network(driver, image):
    internal, v4, v6 = _network(driver, internal=True)
    external, ext4, _ = _network(driver, internal=False)
    found = {n.name for n in driver.list_by_label(labels.TEST, TEST_RUN).networks}
    assert {internal, external} <= found
    spec = _spec(
        image, "ip", "-o", "addr", network_mode=None, network=internal,
        ipv4_address=v4 + "10", ipv6_address=v6 + "10", aliases=("awf-proxy",),
        extra_networks=(NetworkAttachment(external, ipv4_address=ext4 + "10"),),
    )
    cid = driver.create_container(spec)
    try:
        driver.start(cid)
        assert driver.wait(cid, timeout=60) == 0
        out = driver.logs(cid)
        assert f"inet {v4}10/24" in out
        assert f"inet6 {v6}10/64" in out
        assert f"inet {ext4}10/24" in out
    finally:
        driver.remove(cid)
    with pytest.raises(DockerError, match=r"overlaps.*choose another subnet"):
        driver.create_network(_name("net"), internal=True, subnet_v4=v4 + "0/24",
                              subnet_v6=None, labels=dict(MARK))
    for name in (internal, external):
        driver.remove_network(name)
        driver.remove_network(name)  # already gone: fine
    found = {n.name for n in driver.list_by_label(labels.TEST, TEST_RUN).networks}
    assert not {internal, external} & found


def test_a_failed_attachment_leaves_no_container(driver, image):
    name = _name()
    spec = ContainerSpec(name=name, image=image, command=("true",), labels=MARK,
                         network="bridge", extra_networks=(NetworkAttachment("host"),))
    with pytest.raises(DockerError, match=rf"cannot attach container '{name}' to network 'host'"):
        driver.create_container(spec)
    assert name not in {c.name for c in driver.list_by_label(labels.TEST, TEST_RUN).containers}


def test_a_missing_network_fails_at_start_naming_it(driver, image):
    # Docker 20.10 accepts the attachment of a created container and checks at start.
    spec = ContainerSpec(name=_name(), image=image, command=("true",), labels=MARK,
                         network="bridge",
                         extra_networks=(NetworkAttachment("awf-test-no-such-network"),))
    cid = driver.create_container(spec)
    try:
        with pytest.raises(DockerError, match="network awf-test-no-such-network not found"):
            driver.start(cid)
    finally:
        driver.remove(cid)


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_import_rootfs_streams_a_tar_into_an_image(driver):
    tag = f"awf-test-import:{secrets.token_hex(4)}"
    data = _tar({"hello.txt": b"hi\n"})
    chunks = (data[i : i + 1000] for i in range(0, len(data), 1000))
    image_id = driver.import_rootfs(chunks, tag, changes=[f"LABEL {labels.TEST}={TEST_RUN}"])
    try:
        assert image_id.startswith("sha256:")
        assert driver.image_id(tag) == image_id
        assert image_id in {i.id for i in driver.list_images(labels.TEST, TEST_RUN)}
    finally:
        driver.remove_image(tag)
        driver.remove_image(tag)  # already gone: fine
    assert not driver.image_exists(tag)


def test_an_import_cut_short_makes_no_image(driver):
    tag = f"awf-test-import:{secrets.token_hex(4)}"
    data = _tar({"big.bin": bytes(200_000)})

    def failing() -> Iterator[bytes]:
        yield data[:50_000]
        raise DockerError("the rootfs builder failed")

    with pytest.raises(DockerError, match="rootfs builder failed"):
        driver.import_rootfs(failing(), tag, changes=[f"LABEL {labels.TEST}={TEST_RUN}"])
    assert not driver.image_exists(tag)
    assert driver.list_images(labels.TEST, TEST_RUN) == ()


def _context(tmp_path: Path, dockerfile: str) -> Path:
    (tmp_path / "Dockerfile").write_text(dockerfile)
    return tmp_path


def test_builds_stream_their_output_and_have_no_network(driver, image, tmp_path):
    tag = f"awf-test-build:{secrets.token_hex(4)}"
    lines: list[str] = []
    dockerfile = (
        "ARG BASE\nFROM ${BASE}\n"
        f"LABEL {labels.TEST}={TEST_RUN}\n"
        'RUN echo "interfaces: $(ls /sys/class/net | tr "\\n" " ")"\n'
        'RUN test "$(ls /sys/class/net)" = lo\n'
    )
    image_id = driver.build(_context(tmp_path, dockerfile), tag, buildargs={"BASE": image},
                            progress=lines.append)
    try:
        assert driver.image_id(tag) == image_id
        assert "interfaces: lo" in lines
        assert any(line.startswith("Step 1/") for line in lines)
    finally:
        driver.remove_image(tag)


def test_a_failed_build_names_the_image(driver, image, tmp_path):
    tag = f"awf-test-build:{secrets.token_hex(4)}"
    dockerfile = f"ARG BASE\nFROM ${{BASE}}\nLABEL {labels.TEST}={TEST_RUN}\nRUN exit 3\n"
    with pytest.raises(DockerError, match=rf"building image '{tag}' failed: .*code: 3"):
        driver.build(_context(tmp_path, dockerfile), tag, buildargs={"BASE": image},
                     progress=lambda _: None)
    assert not driver.image_exists(tag)


def test_remove_images_by_label_takes_children_first(driver, tmp_path):
    value = f"{TEST_RUN}-rm"
    parent = f"awf-test-parent:{secrets.token_hex(4)}"
    child = f"awf-test-child:{secrets.token_hex(4)}"
    data = _tar({"hello.txt": b"hi\n"})
    driver.import_rootfs(iter([data]), parent, changes=[f"LABEL {labels.TEST}={value}"])
    driver.build(_context(tmp_path, "ARG BASE\nFROM ${BASE}\nCOPY Dockerfile /copy\n"), child,
                 buildargs={"BASE": parent}, progress=lambda _: None)
    driver.tag(child, child.split(":")[0] + ":other")
    assert len(driver.list_images(labels.TEST, value)) >= 2
    removed = driver.remove_images(labels.TEST, value)
    assert len(removed) >= 2
    assert driver.list_images(labels.TEST, value) == ()
    assert not driver.image_exists(parent)
    assert not driver.image_exists(child)
    assert driver.remove_images(labels.TEST, value) == ()
