"""The volume pool's pure parts, `FakePool` and `DirectoryPool` in a temporary directory.

`DirectoryPool` runs on whatever filesystem holds the test's temporary directory: reflinks
where it has them, sparse copies elsewhere; either way copies must be independent and holes
must stay holes. The loop-mounted xfs pool is tested in
tests/integration/test_volumepool_linux.py.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from unistack.dataplane import loopdev, volumefiles, volumepool
from unistack.dataplane.volumepool import DirectoryPool, FakePool, VolumePool

MIB = 1 << 20


# -- pure parts -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["3f1c0e9a-8c4b-4a55-9d3f-0e5f1b2c3d4e", "vol_1", "a.b-c"])
def test_ids_that_are_plain_file_names_are_accepted(name: str) -> None:
    assert volumepool.check_id(name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../etc", "a/b", ".hidden", "x" * 300, "a\0b", "a\n"]
)
def test_ids_that_could_escape_the_pool_or_hide_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        volumepool.check_id(name)


def test_sizes_only_grow() -> None:
    volumepool.check_grow(10, 10)
    volumepool.check_grow(10, 11)
    with pytest.raises(volumepool.InvalidSize):
        volumepool.check_grow(10, 9)


def test_a_qcow2_header_gives_its_virtual_size_and_anything_else_is_raw() -> None:
    header = volumefiles.QCOW2_MAGIC + struct.pack(">I", 3) + bytes(16) + struct.pack(">Q", 5 << 30)
    assert volumefiles.image_format(header, 1234) == ("qcow2", 5 << 30)
    assert volumefiles.image_format(b"\x00" * 32, 1234) == ("raw", 1234)
    assert volumefiles.image_format(volumefiles.QCOW2_MAGIC, 4) == ("raw", 4)  # truncated


def test_loop_config_is_the_kernels_struct_with_only_the_read_only_flag_set() -> None:
    config = loopdev.loop_config(7, read_only=True)
    assert len(config) == 304  # fd, block size, loop_info64 (232), 8 reserved words
    assert struct.unpack_from("=II", config) == (7, 0)
    assert struct.unpack_from("=I", config, 8 + 52) == (loopdev.LO_FLAGS_READ_ONLY,)
    assert struct.unpack_from("=I", loopdev.loop_config(7, read_only=False), 60) == (0,)


def test_a_deleted_backing_file_keeps_its_name() -> None:
    assert loopdev.parse_backing("/s/unistack/pool.img\n") == Path("/s/unistack/pool.img")
    assert loopdev.parse_backing("/s/unistack/v (deleted)\n") == Path("/s/unistack/v")


def test_under_a_prefix_means_inside_it_not_a_longer_name() -> None:
    assert loopdev.is_under(Path("/s/unistack/pool/volumes/a"), Path("/s/unistack"))
    assert loopdev.is_under(Path("/s/unistack"), Path("/s/unistack"))
    assert not loopdev.is_under(Path("/s/unistack-other/pool.img"), Path("/s/unistack"))


def test_mountinfo_paths_are_unescaped() -> None:
    text = (
        "36 35 98:0 / /mnt/unistack\\040pool rw,noatime master:1 - xfs /dev/loop3 rw,attr2\n"
        "37 35 0:5 / /proc rw - proc proc rw\n"
    )
    first, second = loopdev.parse_mountinfo(text)
    assert first == loopdev.Mount(Path("/mnt/unistack pool"), "xfs", "/dev/loop3")
    assert second.target == Path("/proc")


def test_the_fake_loop_devices_attach_a_file_once() -> None:
    loops = loopdev.FakeLoopDevices()
    first = loops.attach(Path("/s/unistack/pool/volumes/a"))
    assert loops.attach(Path("/s/unistack/pool/volumes/a")) == first
    second = loops.attach(Path("/elsewhere/b"))
    assert loops.backed_by(Path("/s/unistack")) == [(first, Path("/s/unistack/pool/volumes/a"))]
    loops.detach(first)
    assert loops.backed_by(Path("/")) == [(second, Path("/elsewhere/b"))]


# -- FakePool ---------------------------------------------------------------------------


def test_the_fake_pool_keeps_sizes_and_data_and_records_calls() -> None:
    pool: VolumePool = FakePool()
    assert isinstance(pool, FakePool)
    pool.ensure()
    pool.create("a", 10 * MIB)
    pool.data["a"] = b"original"
    assert pool.create("a", 10 * MIB) == pool.path("a")  # repeated: same volume
    with pytest.raises(volumepool.AlreadyExists):
        pool.create("a", 20 * MIB)
    pool.snapshot("a", "s")
    pool.data["a"] = b"changed"
    pool.create_from_snapshot("s", "b", 12 * MIB)
    assert pool.open_read("b").read() == b"original"
    assert pool.size("b") == 12 * MIB
    with pytest.raises(volumepool.InvalidSize):
        pool.extend("b", MIB)
    pool.delete("a")
    pool.delete("a")
    with pytest.raises(volumepool.NotFound):
        pool.size("a")
    assert pool.usage().provisioned_bytes == 12 * MIB
    assert pool.calls[:3] == [
        ("ensure",),
        ("create", "a", str(10 * MIB)),
        ("create", "a", str(10 * MIB)),
    ]


# -- DirectoryPool ----------------------------------------------------------------------


@pytest.fixture
def pool(tmp_path: Path) -> DirectoryPool:
    directory = DirectoryPool(tmp_path / "unistack-pool")
    directory.ensure()
    return directory


def write(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(data)


def read(path: Path, offset: int, count: int) -> bytes:
    with open(path, "rb") as file:
        file.seek(offset)
        return file.read(count)


def test_a_new_volume_is_a_sparse_file_of_its_size(pool: DirectoryPool) -> None:
    path = pool.create("a", 64 * MIB)
    assert path == pool.path("a") and pool.exists("a")
    assert pool.size("a") == 64 * MIB
    assert path.stat().st_blocks == 0
    assert pool.create("a", 64 * MIB) == path
    with pytest.raises(volumepool.AlreadyExists):
        pool.create("a", 65 * MIB)


def test_snapshots_and_clones_are_independent_copies(pool: DirectoryPool) -> None:
    volume = pool.create("a", 8 * MIB)
    write(volume, 4096, b"first")
    snapshot = pool.snapshot("a", "s")
    clone = pool.clone("a", "b", 16 * MIB)
    write(volume, 4096, b"AFTER")
    write(clone, 4096, b"clone")
    assert read(snapshot, 4096, 5) == b"first"
    assert read(volume, 4096, 5) == b"AFTER"
    assert read(clone, 4096, 5) == b"clone"
    assert pool.size("b") == 16 * MIB
    restored = pool.create_from_snapshot("s", "c", 8 * MIB)
    assert read(restored, 4096, 5) == b"first"
    assert pool.snapshot_exists("s")
    pool.delete_snapshot("s")
    pool.delete_snapshot("s")
    assert not pool.snapshot_exists("s")
    assert read(restored, 4096, 5) == b"first"


def test_a_clone_cannot_be_smaller_than_its_source(pool: DirectoryPool) -> None:
    pool.create("a", 8 * MIB)
    with pytest.raises(volumepool.InvalidSize):
        pool.clone("a", "b", 4 * MIB)
    assert not pool.exists("b")


def test_copies_of_missing_volumes_or_snapshots_are_not_found(pool: DirectoryPool) -> None:
    with pytest.raises(volumepool.NotFound):
        pool.clone("missing", "b", MIB)
    with pytest.raises(volumepool.NotFound):
        pool.snapshot("missing", "s")
    with pytest.raises(volumepool.NotFound):
        pool.create_from_snapshot("missing", "b", MIB)
    with pytest.raises(volumepool.NotFound):
        pool.open_read("missing")


def test_extend_grows_and_never_shrinks(pool: DirectoryPool) -> None:
    volume = pool.create("a", MIB)
    write(volume, 0, b"kept")
    pool.extend("a", 3 * MIB)
    assert pool.size("a") == 3 * MIB
    assert read(volume, 0, 4) == b"kept"
    with pytest.raises(volumepool.InvalidSize):
        pool.extend("a", MIB)


def test_a_raw_image_is_copied_leaving_its_zeros_as_holes(
    pool: DirectoryPool, tmp_path: Path
) -> None:
    image = tmp_path / "unistack-image.raw"
    image.write_bytes(b"boot" + bytes(4 * MIB) + b"tail")
    volume = pool.create_from_image("a", image, 16 * MIB)
    assert pool.size("a") == 16 * MIB
    assert read(volume, 0, 4) == b"boot"
    assert read(volume, 4 + 4 * MIB, 4) == b"tail"
    assert read(volume, MIB, 16) == bytes(16)
    assert volume.stat().st_blocks * 512 <= 2 * MIB  # the first and last chunks only
    with pytest.raises(volumepool.InvalidSize):
        pool.create_from_image("b", image, MIB)


def test_a_qcow2_image_without_qemu_img_is_refused_with_the_reason(
    pool: DirectoryPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(volumefiles.shutil, "which", lambda name: None)
    image = tmp_path / "unistack-image.qcow2"
    image.write_bytes(volumefiles.QCOW2_MAGIC + bytes(20) + struct.pack(">Q", MIB) + bytes(64))
    with pytest.raises(volumepool.UnsupportedImage, match="qemu-img"):
        pool.create_from_image("a", image, MIB)
    assert not pool.exists("a")
    assert os.listdir(pool.data_dir / "volumes") == []  # no partial file left


def test_a_partial_copy_left_by_a_crash_is_replaced(pool: DirectoryPool) -> None:
    (pool.data_dir / "volumes" / ".a.partial").write_bytes(b"half")
    pool.create("a", MIB)
    assert sorted(os.listdir(pool.data_dir / "volumes")) == ["a"]


def test_delete_removes_the_file_and_repeats_quietly(pool: DirectoryPool) -> None:
    path = pool.create("a", MIB)
    pool.delete("a")
    pool.delete("a")
    assert not path.exists() and not pool.exists("a")


def test_open_read_streams_the_volume(pool: DirectoryPool) -> None:
    volume = pool.create("a", 2 * MIB)
    write(volume, MIB, b"data")
    with pool.open_read("a") as stream:
        content = stream.read()
    assert len(content) == 2 * MIB and content[MIB : MIB + 4] == b"data"


def test_usage_counts_sizes_and_allocated_blocks(pool: DirectoryPool) -> None:
    volume = pool.create("a", 32 * MIB)
    write(volume, 0, b"x" * MIB)
    usage = pool.usage()
    assert usage.provisioned_bytes == 32 * MIB
    assert MIB <= usage.allocated_bytes < 32 * MIB
    assert 0 < usage.free_bytes <= usage.capacity_bytes


def test_sparse_copy_keeps_holes_and_bytes(tmp_path: Path) -> None:
    source, target = tmp_path / "unistack-src", tmp_path / "unistack-dst"
    with open(source, "wb") as file:
        file.truncate(8 * MIB)
        file.seek(3 * MIB + 5)
        file.write(b"middle")
    volumefiles.sparse_copy(source, target)
    assert target.read_bytes() == source.read_bytes()
    assert target.stat().st_blocks * 512 <= MIB


def test_release_order_frees_a_mounted_volume_before_the_pool_that_holds_its_file() -> None:
    pool = loopdev.Mount(Path("/s/unistack/pool"), "xfs", "/dev/loop0")
    volume = loopdev.Mount(Path("/s/unistack/mnt"), "xfs", "/dev/loop1")
    devices = {
        "/dev/loop0": Path("/s/unistack/pool.img"),
        "/dev/loop1": Path("/s/unistack/pool/volumes/a"),
        "/dev/loop2": Path("/s/unistack/pool/volumes/b"),  # attached, mounted elsewhere
    }
    assert loopdev.release_order(devices, [pool, volume]) == [
        ("detach", "/dev/loop2"),
        ("unmount", "/s/unistack/mnt"),
        ("detach", "/dev/loop1"),
        ("unmount", "/s/unistack/pool"),
        ("detach", "/dev/loop0"),
    ]


def test_release_order_unmounts_nested_mounts_innermost_first() -> None:
    outer = loopdev.Mount(Path("/s/unistack"), "tmpfs", "tmpfs")
    inner = loopdev.Mount(Path("/s/unistack/pool"), "xfs", "/dev/loop0")
    steps = loopdev.release_order({"/dev/loop0": Path("/s/unistack/pool.img")}, [outer, inner])
    assert steps == [
        ("unmount", "/s/unistack/pool"),
        ("detach", "/dev/loop0"),
        ("unmount", "/s/unistack"),
    ]


def test_the_loop_pool_says_why_it_is_unavailable_without_mkfs_xfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(volumepool.shutil, "which", lambda name: None)
    with pytest.raises(volumepool.PoolUnavailable, match="xfsprogs"):
        volumepool.LoopXfsPool(tmp_path / "unistack-pool", 1 << 30).ensure()
    assert not (tmp_path / "unistack-pool" / "pool.img").exists()


def test_the_loop_pool_says_why_it_is_unavailable_when_loop_devices_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path: Path, read_only: bool = False) -> str:
        raise loopdev.LoopError(errno.EPERM, "/dev/loop-control: Operation not permitted")

    root = tmp_path / "unistack-pool"
    root.mkdir()
    (root / "pool.img").write_bytes(b"")  # made before: never made again
    monkeypatch.setattr(loopdev, "attach_loop", refuse)
    monkeypatch.setattr(loopdev, "mount_of", lambda target: None)
    with pytest.raises(volumepool.PoolUnavailable, match="not permitted"):
        volumepool.LoopXfsPool(root, 1 << 30).ensure()
    assert (root / "pool.img").read_bytes() == b""


@pytest.mark.skipif(not shutil.which("qemu-img"), reason="needs qemu-img (qemu-utils)")
def test_a_qcow2_image_is_converted_with_qemu_img(pool: DirectoryPool, tmp_path: Path) -> None:
    raw, qcow2 = tmp_path / "unistack-image.raw", tmp_path / "unistack-image.qcow2"
    raw.write_bytes(b"boot" + bytes(2 * MIB) + b"tail")
    argv = ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)]
    subprocess.run(argv, check=True, capture_output=True)
    volume = pool.create_from_image("a", qcow2, 8 * MIB)
    assert pool.size("a") == 8 * MIB
    assert read(volume, 0, raw.stat().st_size) == raw.read_bytes()
