"""`LoopXfsPool` on a real kernel: an xfs with reflink in a loop-mounted file, and volumes
attached as loop devices.

Each test makes its pool in a fresh `/tmp/unistack-volpool-*` directory and, even when it
fails, undoes it with `volumepool.cleanup` (every loop device backed by a file there, every
mount there) before removing the directory. Needs root, /dev/loop-control and mkfs.xfs
(xfsprogs); skipped with the reason otherwise, or when `ensure` reports that loop-mounting is
not permitted here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from unistack.dataplane import loopdev, volumepool
from unistack.dataplane.volumepool import LoopXfsPool

MIB = 1 << 20
GIB = 1 << 30
POOL_BYTES = 4 * GIB

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        os.geteuid() != 0
        or not os.path.exists(loopdev.LOOP_CONTROL)
        or not shutil.which("mkfs.xfs"),
        reason="needs root, /dev/loop-control and mkfs.xfs (xfsprogs)",
    ),
]


@pytest.fixture
def root() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="unistack-volpool-"))
    try:
        yield directory
    finally:
        volumepool.cleanup(directory)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def pool(root: Path) -> LoopXfsPool:
    made = LoopXfsPool(root, POOL_BYTES)
    try:
        made.ensure()
    except volumepool.PoolUnavailable as error:
        pytest.skip(f"loop-mounted xfs not available here: {error}")
    return made


def write(path: Path | str, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: Path | str, offset: int, count: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, count, offset)
    finally:
        os.close(fd)


def test_the_pool_is_an_xfs_mounted_from_a_loop_device_on_its_image(
    pool: LoopXfsPool, root: Path
) -> None:
    mounted = loopdev.mount_of(root / "pool")
    assert mounted is not None and mounted.fstype == "xfs"
    assert loopdev.loops_backed_by(root / "pool.img") == [(mounted.source, root / "pool.img")]
    assert (root / "pool.img").stat().st_size == POOL_BYTES
    pool.ensure()  # repeated: nothing new
    assert len(loopdev.loops_backed_by(root)) == 1
    usage = pool.usage()
    assert 0.9 * POOL_BYTES < usage.capacity_bytes <= POOL_BYTES
    assert usage.provisioned_bytes == 0


def test_snapshot_and_clone_are_reflinks_independent_of_the_volume(pool: LoopXfsPool) -> None:
    volume = pool.create("a", GIB)
    data = os.urandom(MIB) * 32
    write(volume, 0, data)
    free_before = pool.usage().free_bytes
    snapshot = pool.snapshot("a", "s")
    clone = pool.clone("a", "b", 2 * GIB)
    # shared extents: two 32 MiB copies took (almost) no space
    assert free_before - pool.usage().free_bytes < 4 * MIB
    write(volume, 0, b"volume")
    write(clone, MIB, b"clone")
    assert read(snapshot, 0, MIB * 2) == data[: MIB * 2]
    assert read(clone, 0, 6) == data[:6]
    assert read(volume, MIB, 5) == data[MIB : MIB + 5]
    assert read(clone, MIB, 5) == b"clone"
    assert pool.size("b") == 2 * GIB
    restored = pool.create_from_snapshot("s", "c", GIB)
    pool.delete_snapshot("s")
    assert read(restored, 0, 32 * MIB) == data


def test_extend_and_a_raw_image(pool: LoopXfsPool, root: Path) -> None:
    image = root / "image.raw"  # outside the pool's filesystem: copied, not reflinked
    image.write_bytes(b"boot" + bytes(8 * MIB) + b"tail")
    volume = pool.create_from_image("a", image, 64 * MIB)
    assert read(volume, 0, 4) == b"boot" and read(volume, 4 + 8 * MIB, 4) == b"tail"
    assert volume.stat().st_blocks * 512 <= 2 * MIB
    pool.extend("a", 128 * MIB)
    assert pool.size("a") == 128 * MIB and read(volume, 0, 4) == b"boot"
    with pytest.raises(volumepool.InvalidSize):
        pool.extend("a", MIB)


def test_a_volume_attached_as_a_loop_device_is_written_through_the_device(
    pool: LoopXfsPool, root: Path
) -> None:
    volume = pool.create("a", 64 * MIB)
    device = loopdev.attach_loop(volume)
    try:
        assert loopdev.attach_loop(volume) == device  # idempotent
        write(device, 5 * MIB, b"through the block device")
        assert read(volume, 5 * MIB, 24) == b"through the block device"
        pool.extend("a", 96 * MIB)  # the device sees the new size
        name = device.removeprefix("/dev/")
        assert int(Path(f"/sys/block/{name}/size").read_text()) * 512 == 96 * MIB
        with pytest.raises(volumepool.VolumeBusy):
            pool.delete("a")
    finally:
        loopdev.detach_loop(device)
    loopdev.detach_loop(device)  # repeated: nothing to do
    assert [b for _, b in loopdev.loops_backed_by(root)] == [root / "pool.img"]
    pool.delete("a")
    assert not pool.exists("a")


def test_teardown_then_ensure_keeps_the_data(pool: LoopXfsPool, root: Path) -> None:
    write(pool.create("a", 16 * MIB), 0, b"survives")
    image_inode = (root / "pool.img").stat().st_ino
    pool.teardown()
    pool.teardown()
    assert loopdev.mount_of(root / "pool") is None
    assert loopdev.loops_backed_by(root) == []
    LoopXfsPool(root, POOL_BYTES).ensure()  # as after a reboot: a new process, same root
    assert (root / "pool.img").stat().st_ino == image_inode  # not made again
    assert read(pool.path("a"), 0, 8) == b"survives"


def test_ensure_reuses_a_loop_device_left_attached_by_a_crash(
    pool: LoopXfsPool, root: Path
) -> None:
    write(pool.create("a", 16 * MIB), 0, b"crash")
    loopdev.unmount(root / "pool")  # the device stays attached, as after a crash
    pool.ensure()
    assert len(loopdev.loops_backed_by(root / "pool.img")) == 1
    assert read(pool.path("a"), 0, 5) == b"crash"


def test_cleanup_leaves_no_loop_device_and_no_mount(pool: LoopXfsPool, root: Path) -> None:
    volume = pool.create("a", 512 * MIB)  # xfs needs 300 MB at least
    device = loopdev.attach_loop(volume)
    subprocess.run(["mkfs.xfs", "-q", device], check=True, capture_output=True)
    inside = root / "mnt"  # as a container server would mount its volume
    inside.mkdir()
    loopdev.mount(device, inside, "xfs")
    released = volumepool.cleanup(root)
    assert set(released.unmounted) == {inside, root / "pool"}
    assert device in released.detached
    assert loopdev.loops_backed_by(root) == []
    assert [m for m in loopdev.mounts() if loopdev.is_under(m.target, root)] == []
    assert volumepool.cleanup(root) == loopdev.Released()
