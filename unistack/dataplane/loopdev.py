"""Loop block devices: a file in the volume pool seen as /dev/loopN, and the mounts on them.

The volume pool (`unistack.dataplane.volumepool`) keeps its filesystem in a file attached
here, and the host agent attaches a volume's file here to hand a container server a block
device (a VM gets the file itself, through QEMU's virtio-blk). Devices are made with the
kernel's own ioctls (LOOP_CTL_GET_FREE on /dev/loop-control, then LOOP_CONFIGURE) rather than
by exec'ing losetup, which costs a process per attach and hides the errno; mount(2) and
umount2(2) are called through libc for the same reasons. The kernel's record of what backs
each device, /sys/block/loop*/loop/backing_file, is the only state: attaching a file already
attached returns its device, `loops_backed_by` finds every device under a state dir, and
`release_under` frees them and the mounts there, in the order `release_order` decides
without I/O, for `unistack down` and crash cleanup. `FakeLoopDevices` stands in for tests.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

LOOP_CONTROL = "/dev/loop-control"
SYS_BLOCK = Path("/sys/block")
LOOP_MAJOR = 7

LOOP_CLR_FD = 0x4C01
LOOP_SET_CAPACITY = 0x4C07
LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_GET_FREE = 0x4C82
LO_FLAGS_READ_ONLY = 1

MNT_DETACH = 2
_OCTAL = re.compile(r"\\([0-7]{3})")
_CONFIGURE_ATTEMPTS = 16  # another process may take the free device between the two ioctls


class LoopError(OSError):
    """A loop or mount operation failed; ``errno`` says why (EPERM: not permitted here)."""


def _failed(error: OSError, what: str) -> LoopError:
    code = error.errno or errno.EIO
    return LoopError(code, f"{what}: {os.strerror(code)}")


class LoopDevices(Protocol):
    """Attach files as block devices, detach them, and find those under a directory."""

    def attach(self, path: Path, read_only: bool = False) -> str: ...
    def detach(self, device: str) -> None: ...
    def backed_by(self, prefix: Path) -> list[tuple[str, Path]]: ...


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo that matters here."""

    target: Path
    fstype: str
    source: str


def loop_config(fd: int, read_only: bool) -> bytes:
    """The ``struct loop_config`` LOOP_CONFIGURE takes: fd, block size (0: the default), a
    ``struct loop_info64`` of which only ``lo_flags`` is set, and reserved words."""
    flags = LO_FLAGS_READ_ONLY if read_only else 0
    info = struct.pack("=5Q4I64s64s32s2Q", 0, 0, 0, 0, 0, 0, 0, 0, flags, b"", b"", b"", 0, 0)
    return struct.pack("=II", fd, 0) + info + bytes(64)


def parse_backing(text: str) -> Path:
    """A sysfs backing_file line as a path; a deleted file keeps its old name."""
    name = text.rstrip("\n")
    return Path(name.removesuffix(" (deleted)"))


def is_under(path: Path, prefix: Path) -> bool:
    """Whether ``path`` is ``prefix`` or inside it (by name, no filesystem access)."""
    return path == prefix or prefix in path.parents


def loops() -> Iterator[tuple[str, Path]]:
    """Every configured loop device with its backing file, as the kernel reports them."""
    for entry in sorted(SYS_BLOCK.glob("loop*")):
        try:
            backing = (entry / "loop" / "backing_file").read_text()
        except OSError:  # not configured, or detached meanwhile
            continue
        yield f"/dev/{entry.name}", parse_backing(backing)


def loops_backed_by(prefix: Path) -> list[tuple[str, Path]]:
    """(device, backing file) of each loop device whose file is ``prefix`` or under it."""
    resolved = Path(os.path.realpath(prefix))
    return [(dev, backing) for dev, backing in loops() if is_under(backing, resolved)]


def attach_loop(path: Path, read_only: bool = False) -> str:
    """Attach ``path`` to a free loop device and return it; a file already attached keeps
    its device (the first, when someone attached it twice) and its read-only flag."""
    resolved = Path(os.path.realpath(path))
    with _exclusive(resolved):
        existing = loops_backed_by(resolved)
        for dev, backing in existing:
            if backing == resolved:
                return dev
        return _configure_free(resolved, read_only)


def detach_loop(device: str) -> None:
    """Detach ``device``; one already free is detached. A device still open (mounted) is
    freed by the kernel at its last close."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.ioctl(fd, LOOP_CLR_FD)
    except OSError as error:
        if error.errno != errno.ENXIO:  # ENXIO: not configured
            raise _failed(error, f"detach {device}") from None
    finally:
        os.close(fd)


def refresh_capacity(device: str) -> None:
    """Make ``device`` see its backing file's new size after the file grew."""
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, LOOP_SET_CAPACITY)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Serialise find-or-attach of one file between processes: flock on a separate open
    of the file, which is released on close whatever the loop device holds."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _configure_free(path: Path, read_only: bool) -> str:
    """Ask loop-control for a free device and configure it; retry when another process
    configured it first (EBUSY)."""
    flags = (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC
    backing = os.open(path, flags)
    try:
        for _ in range(_CONFIGURE_ATTEMPTS):
            device = _device_node(_free_number())
            try:
                _configure(device, backing, read_only)
            except LoopError as error:
                if error.errno == errno.EBUSY:
                    continue
                raise
            return device
        raise LoopError(errno.EBUSY, f"no free loop device for {path} after retries")
    finally:
        os.close(backing)


def _free_number() -> int:
    try:
        control = os.open(LOOP_CONTROL, os.O_RDWR | os.O_CLOEXEC)
    except OSError as error:
        raise _failed(error, LOOP_CONTROL) from None
    try:
        return fcntl.ioctl(control, LOOP_CTL_GET_FREE)
    except OSError as error:
        raise _failed(error, "LOOP_CTL_GET_FREE") from None
    finally:
        os.close(control)


def _device_node(number: int) -> str:
    """/dev/loopN, made when /dev is not a devtmpfs that made it already."""
    device = f"/dev/loop{number}"
    if not os.path.exists(device):
        with contextlib.suppress(FileExistsError):
            os.mknod(device, 0o600 | 0o060000, os.makedev(LOOP_MAJOR, number))
    return device


def _configure(device: str, backing: int, read_only: bool) -> None:
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as error:
        raise _failed(error, f"{device}") from None
    try:
        fcntl.ioctl(fd, LOOP_CONFIGURE, loop_config(backing, read_only))
    except OSError as error:
        raise _failed(error, f"configure {device}") from None
    finally:
        os.close(fd)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a /proc/<pid>/mountinfo text (octal escapes in paths undone)."""
    mounts = []
    for line in text.splitlines():
        fields, _, tail = line.partition(" - ")
        parts, rest = fields.split(), tail.split()
        if len(parts) >= 5 and len(rest) >= 2:
            mounts.append(Mount(Path(_unescape(parts[4])), rest[0], _unescape(rest[1])))
    return mounts


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as ``\\ooo``."""
    return _OCTAL.sub(lambda match: chr(int(match.group(1), 8)), field)


def mounts() -> list[Mount]:
    """The mounts this process sees."""
    return parse_mountinfo(Path("/proc/self/mountinfo").read_text())


def mount_of(target: Path) -> Mount | None:
    """The topmost mount on ``target``, if any."""
    resolved = Path(os.path.realpath(target))
    found = [m for m in mounts() if m.target == resolved]
    return found[-1] if found else None


def mount(source: str, target: Path, fstype: str, options: str = "") -> None:
    """mount(2) ``source`` of type ``fstype`` on ``target``."""
    libc = ctypes.CDLL(None, use_errno=True)
    data = options.encode() or None
    if libc.mount(source.encode(), str(target).encode(), fstype.encode(), 0, data) != 0:
        code = ctypes.get_errno()
        raise LoopError(code, f"mount {source} on {target}: {os.strerror(code)}")


def unmount(target: Path, lazy: bool = False) -> None:
    """umount2(2) ``target``; ``lazy`` detaches it from the tree even while busy."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(str(target).encode(), MNT_DETACH if lazy else 0) != 0:
        code = ctypes.get_errno()
        raise LoopError(code, f"unmount {target}: {os.strerror(code)}")


@dataclass
class Released:
    """What `release_under` undid."""

    unmounted: list[Path] = field(default_factory=list)
    detached: list[str] = field(default_factory=list)


def release_order(devices: dict[str, Path], inside: list[Mount]) -> list[tuple[str, str]]:
    """The steps that free ``devices`` (loop device -> backing file) and ``inside`` (mounts,
    in mountinfo order): ("detach", device) once nothing is mounted from it, ("unmount",
    target) once no other mount or backing file is inside it. So a volume mounted from its
    loop device goes first, then that device, then the pool's filesystem and its device.
    When everything left depends on something, the innermost mount goes (lazily, if busy)."""
    devices, inside, steps = dict(devices), list(inside), []
    while devices or inside:
        free = [d for d in devices if all(m.source != d for m in inside)]
        idle = [m for m in reversed(inside) if not _holds(m, inside, devices.values())]
        for device in free:
            steps.append(("detach", device))
            del devices[device]
        for found in idle or ([] if free else inside[-1:]):
            steps.append(("unmount", str(found.target)))
            inside.remove(found)
    return steps


def release_under(prefix: Path) -> Released:
    """Detach every loop device backed by a file under ``prefix`` and unmount every mount
    under it, in `release_order`. Backing files are read once, before an unmount can hide
    their paths; what stays busy (used outside this mount namespace) is unmounted lazily
    and detached by the kernel when last closed. Repeatable; the files stay."""
    resolved = Path(os.path.realpath(prefix))
    inside = [m for m in mounts() if is_under(m.target, resolved)]
    released = Released()
    for action, name in release_order(dict(loops_backed_by(resolved)), inside):
        if action == "detach":
            detach_loop(name)
            released.detached.append(name)
        else:
            _unmount_now_or_lazily(Path(name))
            released.unmounted.append(Path(name))
    return released


def _holds(mount: Mount, others: list[Mount], files: Iterable[Path]) -> bool:
    """Whether another mount or a loop device's file is inside ``mount``."""
    nested = any(o is not mount and is_under(o.target, mount.target) for o in others)
    return nested or any(is_under(file, mount.target) for file in files)


def _unmount_now_or_lazily(target: Path) -> None:
    try:
        unmount(target)
    except LoopError as error:
        if error.errno == errno.EBUSY:
            unmount(target, lazy=True)
        elif error.errno != errno.EINVAL:  # EINVAL: no longer a mount point
            raise


class KernelLoopDevices:
    """The LoopDevices the agent uses on Linux: the functions above."""

    def attach(self, path: Path, read_only: bool = False) -> str:
        return attach_loop(path, read_only)

    def detach(self, device: str) -> None:
        detach_loop(device)

    def backed_by(self, prefix: Path) -> list[tuple[str, Path]]:
        return loops_backed_by(prefix)


class FakeLoopDevices:
    """An in-memory LoopDevices for tests of callers: devices numbered in attach order."""

    def __init__(self) -> None:
        self.devices: dict[str, Path] = {}
        self.calls: list[tuple[str, str]] = []
        self._next = 0

    def attach(self, path: Path, read_only: bool = False) -> str:
        self.calls.append(("attach", str(path)))
        for device, backing in self.devices.items():
            if backing == path:
                return device
        device = f"/dev/loop{self._next}"
        self._next += 1
        self.devices[device] = path
        return device

    def detach(self, device: str) -> None:
        self.calls.append(("detach", device))
        self.devices.pop(device, None)

    def backed_by(self, prefix: Path) -> list[tuple[str, Path]]:
        return [(d, p) for d, p in sorted(self.devices.items()) if is_under(p, prefix)]
