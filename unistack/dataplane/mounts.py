"""Overlay mounts for container root filesystems, through libc's mount(2) and umount2(2).

A container's rootfs is an overlayfs: the image's unpacked layers as read-only lower dirs
(`unistack.images.unpack` makes them), and an upper and a work dir that belong to the
container. Pods (`unistack.agent.runc`) and container servers (`unistack.dataplane.containers`)
mount them here; `mounts_under` finds what is left under a state dir after a crash.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

MNT_DETACH = 2
_NOT_MOUNTED = (22, 2)  # EINVAL: not a mount point; ENOENT: gone


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def mount_overlay(target: Path, lower: list[Path], upper: Path, work: Path) -> None:
    """Mount an overlayfs: `lower` lowest layer first (overlayfs wants the top one first)."""
    lowerdir = ":".join(str(layer) for layer in reversed(lower))
    options = f"lowerdir={lowerdir},upperdir={upper},workdir={work}"
    if _libc().mount(b"overlay", str(target).encode(), b"overlay", 0, options.encode()) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount overlay on {target}: {os.strerror(errno)}")


def unmount(target: Path) -> None:
    """Lazily unmount `target` if it is a mount point; nothing when it is not."""
    if _libc().umount2(str(target).encode(), MNT_DETACH) != 0:
        errno = ctypes.get_errno()
        if errno not in _NOT_MOUNTED:
            raise OSError(errno, f"umount {target}: {os.strerror(errno)}")


def is_mount_point(target: Path) -> bool:
    """Whether `target` itself is in the mount table (/proc/self/mounts)."""
    return target in _mount_points()


def mounts_under(root: Path) -> list[Path]:
    """Mount points below `root`, deepest first (from /proc/self/mounts)."""
    prefix = str(root).rstrip("/") + "/"
    found = [point for point in _mount_points() if str(point).startswith(prefix)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _mount_points() -> list[Path]:
    with open("/proc/self/mounts", encoding="utf-8") as table:
        return [Path(line.split()[1].replace("\\040", " ")) for line in table]
