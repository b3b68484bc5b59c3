"""The volume pool: Cinder's volumes and snapshots as files, clones and snapshots as reflinks.

This host has no device-mapper, LVM, NBD or iSCSI, so a volume is a sparse file
``volumes/<id>`` and a snapshot a reflink copy ``snapshots/<id>`` in one directory; a reflink
shares the extents until either copy is written, so snapshot and clone cost milliseconds
whatever the size, and each copy stays independent. The host agent attaches a volume to a
container server as a loop device (`unistack.dataplane.loopdev`) and to a VM as the file
itself (QEMU's virtio-blk, `unistack.dataplane.qemu`); `open_read` streams one for
upload-to-image and backup, and `usage` feeds the scheduler's capacity report.

Pools, one Protocol:

- `LoopXfsPool` — what the agent picks when it runs as root and loop devices and mounting
  work: an xfs made with reflink in a sparse ``<root>/pool.img``, loop-mounted on
  ``<root>/pool``. Its own filesystem gives reflinks whatever the host's root filesystem is,
  and a size the scheduler can count on.
- `DirectoryPool` — what the agent picks when `LoopXfsPool.ensure` raises `PoolUnavailable`
  (no root, no loop devices, no mkfs.xfs, mounting refused): a plain directory, reflinks where
  its filesystem has them (xfs, btrfs), sparse copies elsewhere.
- `FakePool` — in memory, records calls, for tests of callers.

`cleanup` undoes a pool's loop devices and mounts after a crash or for ``unistack down``.
Every call is idempotent where the agent may repeat it after a restart: creating what exists
with the same size returns it, deleting what is gone does nothing, and a copy is written under
a temporary name and renamed, so a crash never leaves a half-made volume under its real name.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from unistack.dataplane import loopdev, volumefiles

_VALID_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")


class PoolError(Exception):
    """A volume pool operation failed."""


class PoolUnavailable(PoolError):
    """The pool cannot be set up here (not root, no loop devices, no mkfs.xfs, no mount)."""


class NotFound(PoolError, KeyError):
    """No such volume or snapshot."""


class AlreadyExists(PoolError):
    """A volume or snapshot of that id exists with another size."""


class InvalidSize(PoolError, ValueError):
    """A size smaller than the data it must hold (volumes only grow)."""


class VolumeBusy(PoolError):
    """The volume is attached to a loop device."""


class UnsupportedImage(PoolError):
    """An image format this host cannot convert to raw."""


@dataclass(frozen=True)
class PoolUsage:
    """What the scheduler needs: total and free bytes of the pool's filesystem, bytes the
    volumes promise (their sizes), and bytes allocated to files (st_blocks; extents shared
    by reflinks count once per file, so this can exceed what the filesystem uses)."""

    capacity_bytes: int
    free_bytes: int
    provisioned_bytes: int
    allocated_bytes: int


class VolumePool(Protocol):
    """Volumes and snapshots by id, and the pool that holds them."""

    def ensure(self) -> None: ...
    def teardown(self) -> None: ...
    def create(self, volume_id: str, size_bytes: int) -> Path: ...
    def create_from_image(self, volume_id: str, source: Path, size_bytes: int) -> Path: ...
    def clone(self, source_id: str, new_id: str, size_bytes: int) -> Path: ...
    def extend(self, volume_id: str, size_bytes: int) -> None: ...
    def delete(self, volume_id: str) -> None: ...
    def path(self, volume_id: str) -> Path: ...
    def exists(self, volume_id: str) -> bool: ...
    def size(self, volume_id: str) -> int: ...
    def snapshot(self, volume_id: str, snapshot_id: str) -> Path: ...
    def create_from_snapshot(self, snapshot_id: str, new_id: str, size_bytes: int) -> Path: ...
    def delete_snapshot(self, snapshot_id: str) -> None: ...
    def snapshot_exists(self, snapshot_id: str) -> bool: ...
    def open_read(self, volume_id: str) -> BinaryIO: ...
    def usage(self) -> PoolUsage: ...


def check_id(name: str) -> str:
    """``name`` when it is safe as a file name in the pool, else ValueError."""
    if not _VALID_ID.fullmatch(name) or name in (".", ".."):
        raise ValueError(f"invalid volume or snapshot id {name!r}")
    return name


def check_grow(current: int, wanted: int) -> None:
    """InvalidSize unless ``wanted`` bytes hold ``current`` (so never negative)."""
    if wanted < current:
        raise InvalidSize(f"size {wanted} is smaller than the {current} bytes it must hold")


class _FilePool:
    """Volume and snapshot files under ``data_dir``; the pools below say where that is."""

    def __init__(self, data_dir: Path, require_reflink: bool) -> None:
        self.data_dir = data_dir
        self.require_reflink = require_reflink

    def _volume(self, volume_id: str) -> Path:
        return self.data_dir / "volumes" / check_id(volume_id)

    def _snapshot(self, snapshot_id: str) -> Path:
        return self.data_dir / "snapshots" / check_id(snapshot_id)

    def _make_dirs(self) -> None:
        for name in ("volumes", "snapshots"):
            (self.data_dir / name).mkdir(parents=True, exist_ok=True)

    def path(self, volume_id: str) -> Path:
        path = self._volume(volume_id)
        if not path.exists():
            raise NotFound(f"volume {volume_id} not found")
        return path

    def exists(self, volume_id: str) -> bool:
        return self._volume(volume_id).exists()

    def size(self, volume_id: str) -> int:
        return self.path(volume_id).stat().st_size

    def snapshot_exists(self, snapshot_id: str) -> bool:
        return self._snapshot(snapshot_id).exists()

    def create(self, volume_id: str, size_bytes: int) -> Path:
        """A sparse file of ``size_bytes``."""
        check_grow(0, size_bytes)
        target = self._volume(volume_id)
        if self._existing(target, size_bytes):
            return target
        with self._writing(target) as partial, open(partial, "xb") as file:
            os.ftruncate(file.fileno(), size_bytes)
        return target

    def create_from_image(self, volume_id: str, source: Path, size_bytes: int) -> Path:
        """The bytes of a raw (or, with qemu-img, qcow2) image, grown to ``size_bytes``."""
        target = self._volume(volume_id)
        if self._existing(target, size_bytes):
            return target
        with open(source, "rb") as file:
            header, file_size = file.read(volumefiles.HEADER_BYTES), os.fstat(file.fileno()).st_size
        kind, virtual_size = volumefiles.image_format(header, file_size)
        check_grow(virtual_size, size_bytes)
        with self._writing(target) as partial:
            if kind == "qcow2":
                _qcow2_to_raw(source, partial)
            else:  # images live outside the pool: a reflink is a bonus here, not a must
                self._copy(source, partial, require_reflink=False)
            os.truncate(partial, size_bytes)
        return target

    def clone(self, source_id: str, new_id: str, size_bytes: int) -> Path:
        """A copy of volume ``source_id`` sharing its extents, grown to ``size_bytes``."""
        return self._copy_to_volume(self.path(source_id), new_id, size_bytes)

    def create_from_snapshot(self, snapshot_id: str, new_id: str, size_bytes: int) -> Path:
        source = self._snapshot(snapshot_id)
        if not source.exists():
            raise NotFound(f"snapshot {snapshot_id} not found")
        return self._copy_to_volume(source, new_id, size_bytes)

    def snapshot(self, volume_id: str, snapshot_id: str) -> Path:
        """A point-in-time copy of the volume, independent of later writes to it."""
        source, target = self.path(volume_id), self._snapshot(snapshot_id)
        if target.exists():
            return target
        with self._writing(target) as partial:
            self._copy(source, partial)
        return target

    def extend(self, volume_id: str, size_bytes: int) -> None:
        """Grow the volume (never shrink); loop devices on it see the new size."""
        path = self.path(volume_id)
        check_grow(path.stat().st_size, size_bytes)
        os.truncate(path, size_bytes)
        for device, _ in loopdev.loops_backed_by(path):
            loopdev.refresh_capacity(device)

    def delete(self, volume_id: str) -> None:
        """Remove the volume; VolumeBusy while a loop device holds it."""
        path = self._volume(volume_id)
        if loopdev.loops_backed_by(path):
            raise VolumeBusy(f"volume {volume_id} is attached to a loop device")
        path.unlink(missing_ok=True)

    def delete_snapshot(self, snapshot_id: str) -> None:
        self._snapshot(snapshot_id).unlink(missing_ok=True)

    def open_read(self, volume_id: str) -> BinaryIO:
        return open(self.path(volume_id), "rb")

    def usage(self) -> PoolUsage:
        stats = os.statvfs(self.data_dir)
        files = [*self._files("volumes"), *self._files("snapshots")]
        volumes = self._files("volumes")
        return PoolUsage(
            capacity_bytes=stats.f_blocks * stats.f_frsize,
            free_bytes=stats.f_bavail * stats.f_frsize,
            provisioned_bytes=sum(stat.st_size for stat in volumes),
            allocated_bytes=sum(stat.st_blocks * 512 for stat in files),
        )

    def _files(self, kind: str) -> list[os.stat_result]:
        folder = self.data_dir / kind
        if not folder.is_dir():
            return []
        return [entry.stat() for entry in os.scandir(folder) if not entry.name.startswith(".")]

    def _copy_to_volume(self, source: Path, new_id: str, size_bytes: int) -> Path:
        target = self._volume(new_id)
        if self._existing(target, size_bytes):
            return target
        check_grow(source.stat().st_size, size_bytes)
        with self._writing(target) as partial:
            self._copy(source, partial)
            os.truncate(partial, size_bytes)
        return target

    def _copy(self, source: Path, target: Path, require_reflink: bool | None = None) -> None:
        """A reflink when the filesystem has them; else (unless required) a sparse copy."""
        required = self.require_reflink if require_reflink is None else require_reflink
        try:
            volumefiles.copy_volume_file(source, target, required)
        except OSError as error:
            raise PoolError(f"copy {source} -> {target}: {error}") from error

    @staticmethod
    def _existing(target: Path, size_bytes: int) -> bool:
        """True when ``target`` already has ``size_bytes`` (a repeated call), AlreadyExists
        when it has another size, False when it does not exist."""
        try:
            actual = target.stat().st_size
        except FileNotFoundError:
            return False
        if actual != size_bytes:
            raise AlreadyExists(f"{target.name} exists with {actual} bytes, not {size_bytes}")
        return True

    @staticmethod
    @contextlib.contextmanager
    def _writing(target: Path) -> Iterator[Path]:
        """A temporary name beside ``target``, renamed to it when the block succeeds."""
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        partial.unlink(missing_ok=True)  # left by a crash
        try:
            yield partial
            os.rename(partial, target)
        finally:
            partial.unlink(missing_ok=True)


def _qcow2_to_raw(source: Path, target: Path) -> None:
    try:
        volumefiles.qcow2_to_raw(source, target)
    except volumefiles.ConversionError as error:
        raise UnsupportedImage(str(error)) from error


class DirectoryPool(_FilePool):
    """A pool in a plain directory ``root``, on whatever filesystem holds it."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, require_reflink=False)

    def ensure(self) -> None:
        self._make_dirs()

    def teardown(self) -> None:
        """Nothing is mounted or attached: the files stay."""


class LoopXfsPool(_FilePool):
    """A pool on its own xfs (reflink=1) in ``<root>/pool.img``, mounted on ``<root>/pool``.

    ``size_bytes`` sizes the backing file when it is first made; later it only says what to
    make again if the file is gone. The file is sparse: the pool uses host disk as volumes
    are written, and writes fail (ENOSPC in the volume) when the host disk is full."""

    def __init__(self, root: Path, size_bytes: int) -> None:
        super().__init__(root / "pool", require_reflink=True)
        self.root = root
        self.size_bytes = size_bytes
        self.image = root / "pool.img"

    def ensure(self) -> None:
        """Make, attach and mount the pool as needed; an existing image is never re-made."""
        self.root.mkdir(parents=True, exist_ok=True)
        with _locked(self.root / ".pool.lock"):
            if not self.image.exists():
                self._make_image()
            mounted = loopdev.mount_of(self.data_dir)
            if mounted is None:
                self._mount()
            elif mounted.fstype != "xfs":
                raise PoolError(f"{self.data_dir} holds a {mounted.fstype} mount, not the pool")
            self._make_dirs()

    def teardown(self) -> None:
        """Unmount the pool and detach its loop device; the image stays."""
        with _locked(self.root / ".pool.lock"):
            if self.data_dir.exists() and loopdev.mount_of(self.data_dir) is not None:
                self._unmount()
            for device, _ in loopdev.loops_backed_by(self.image):
                loopdev.detach_loop(device)

    def _unmount(self) -> None:
        try:
            loopdev.unmount(self.data_dir)
        except loopdev.LoopError as error:
            if error.errno == errno.EBUSY:
                raise PoolError(f"pool {self.data_dir} is busy: volumes still attached") from error
            raise

    def _make_image(self) -> None:
        mkfs = shutil.which("mkfs.xfs")
        if mkfs is None:
            raise PoolUnavailable("mkfs.xfs not found: install xfsprogs")
        partial = self.root / ".pool.img.partial"
        with open(partial, "wb") as file:
            os.ftruncate(file.fileno(), self.size_bytes)
        argv = [mkfs, "-q", "-f", "-m", "reflink=1", "-L", "unistack", str(partial)]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            partial.unlink(missing_ok=True)
            raise PoolUnavailable(f"mkfs.xfs failed: {done.stderr.strip()}")
        os.rename(partial, self.image)

    def _mount(self) -> None:
        self.data_dir.mkdir(exist_ok=True)
        try:
            device = loopdev.attach_loop(self.image)
            loopdev.mount(device, self.data_dir, "xfs")
        except loopdev.LoopError as error:
            if error.errno in (errno.EPERM, errno.EACCES, errno.ENOENT, errno.ENODEV):
                raise PoolUnavailable(f"cannot loop-mount the pool here: {error}") from error
            raise PoolError(f"mounting the pool failed: {error}") from error


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock on ``path``: one process sets up or tears down a pool at a time."""
    with open(path, "a") as file:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        yield


def cleanup(root: Path) -> loopdev.Released:
    """Undo a pool after a crash or for ``unistack down``: detach every loop device whose
    file is under ``root`` and unmount every mount under it (the pool's last). Repeatable."""
    return loopdev.release_under(root)


class FakePool:
    """An in-memory VolumePool for tests of callers: sizes, data tests wrote, and calls."""

    def __init__(self, root: Path = Path("/nonexistent/unistack-fakepool")) -> None:
        self.root = root
        self.volumes: dict[str, int] = {}
        self.snapshots: dict[str, int] = {}
        self.data: dict[str, bytes] = {}
        self.calls: list[tuple[str, ...]] = []
        self.ensured = False
        self.capacity_bytes = 1 << 40

    def _record(self, *call: str) -> None:
        self.calls.append(call)

    def ensure(self) -> None:
        self._record("ensure")
        self.ensured = True

    def teardown(self) -> None:
        self._record("teardown")
        self.ensured = False

    def create(self, volume_id: str, size_bytes: int) -> Path:
        self._record("create", volume_id, str(size_bytes))
        return self._put(volume_id, size_bytes, b"")

    def create_from_image(self, volume_id: str, source: Path, size_bytes: int) -> Path:
        self._record("create_from_image", volume_id, str(source), str(size_bytes))
        return self._put(volume_id, size_bytes, b"")

    def clone(self, source_id: str, new_id: str, size_bytes: int) -> Path:
        self._record("clone", source_id, new_id, str(size_bytes))
        check_grow(self.size(source_id), size_bytes)
        return self._put(new_id, size_bytes, self.data.get(source_id, b""))

    def create_from_snapshot(self, snapshot_id: str, new_id: str, size_bytes: int) -> Path:
        self._record("create_from_snapshot", snapshot_id, new_id, str(size_bytes))
        if snapshot_id not in self.snapshots:
            raise NotFound(f"snapshot {snapshot_id} not found")
        check_grow(self.snapshots[snapshot_id], size_bytes)
        return self._put(new_id, size_bytes, self.data.get(f"snapshot:{snapshot_id}", b""))

    def extend(self, volume_id: str, size_bytes: int) -> None:
        self._record("extend", volume_id, str(size_bytes))
        check_grow(self.size(volume_id), size_bytes)
        self.volumes[volume_id] = size_bytes

    def delete(self, volume_id: str) -> None:
        self._record("delete", volume_id)
        self.volumes.pop(check_id(volume_id), None)
        self.data.pop(volume_id, None)

    def path(self, volume_id: str) -> Path:
        if volume_id not in self.volumes:
            raise NotFound(f"volume {volume_id} not found")
        return self.root / "volumes" / volume_id

    def exists(self, volume_id: str) -> bool:
        return volume_id in self.volumes

    def size(self, volume_id: str) -> int:
        if volume_id not in self.volumes:
            raise NotFound(f"volume {volume_id} not found")
        return self.volumes[volume_id]

    def snapshot(self, volume_id: str, snapshot_id: str) -> Path:
        self._record("snapshot", volume_id, snapshot_id)
        self.snapshots[check_id(snapshot_id)] = self.size(volume_id)
        self.data[f"snapshot:{snapshot_id}"] = self.data.get(volume_id, b"")
        return self.root / "snapshots" / snapshot_id

    def delete_snapshot(self, snapshot_id: str) -> None:
        self._record("delete_snapshot", snapshot_id)
        self.snapshots.pop(snapshot_id, None)
        self.data.pop(f"snapshot:{snapshot_id}", None)

    def snapshot_exists(self, snapshot_id: str) -> bool:
        return snapshot_id in self.snapshots

    def open_read(self, volume_id: str) -> BinaryIO:
        """The bytes tests stored in ``data`` (not the zeros up to the size)."""
        self.size(volume_id)
        return io.BytesIO(self.data.get(volume_id, b""))

    def usage(self) -> PoolUsage:
        provisioned = sum(self.volumes.values())
        allocated = sum(len(data) for data in self.data.values())
        free = self.capacity_bytes - allocated
        return PoolUsage(self.capacity_bytes, free, provisioned, allocated)

    def _put(self, volume_id: str, size_bytes: int, data: bytes) -> Path:
        check_grow(0, size_bytes)
        existing = self.volumes.get(check_id(volume_id))
        if existing is not None and existing != size_bytes:
            raise AlreadyExists(f"{volume_id} exists with {existing} bytes, not {size_bytes}")
        if existing is None:
            self.volumes[volume_id] = size_bytes
            self.data[volume_id] = data
        return self.root / "volumes" / volume_id
