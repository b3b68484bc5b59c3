"""Copying volume files: reflinks, sparse copies, and raw bytes out of an image.

The volume pool (`unistack.dataplane.volumepool`) makes every snapshot and clone with
`copy_volume_file`: a reflink (the FICLONE ioctl: the new file shares the old one's extents
until either is written) where the filesystem has them, else — when the caller allows — a copy
that leaves holes where the source has holes or zero-filled chunks, so a 10 GB volume with
100 MB written costs 100 MB. Images come in as raw bytes, or as qcow2 converted by qemu-img
when the host has it; `image_format` tells them apart from the first 32 bytes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

FICLONE = 0x40049409
CHUNK = 1 << 20
QCOW2_MAGIC = b"QFI\xfb"
HEADER_BYTES = 32
# What FICLONE answers when the filesystem, or the pair of files, cannot share extents.
NO_REFLINK = frozenset(
    {errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.ENOSYS, errno.EPERM}
)


class ConversionError(Exception):
    """An image could not be turned into raw bytes here."""


def image_format(header: bytes, file_size: int) -> tuple[str, int]:
    """("qcow2", virtual size) for a qcow2 header, else ("raw", file size)."""
    if header[:4] == QCOW2_MAGIC and len(header) >= HEADER_BYTES:
        return "qcow2", int(struct.unpack(">Q", header[24:32])[0])
    return "raw", file_size


def reflink(source: Path, target: Path) -> None:
    """Make ``target`` (new) share ``source``'s extents; OSError with one of `NO_REFLINK`
    when the filesystem cannot."""
    with open(source, "rb") as src, open(target, "xb") as dst:
        fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())


def copy_volume_file(source: Path, target: Path, require_reflink: bool) -> None:
    """``target`` (new) as a reflink of ``source``, or a sparse copy when reflinks are not
    to be had and not required (OSError then)."""
    try:
        reflink(source, target)
    except OSError as error:
        target.unlink(missing_ok=True)
        if require_reflink or error.errno not in NO_REFLINK:
            raise
        sparse_copy(source, target)


def sparse_copy(source: Path, target: Path) -> None:
    """Copy ``source`` to the new ``target`` leaving holes where the source has holes or
    zero-filled chunks; ``target`` ends with the source's size."""
    zeros = bytes(CHUNK)
    view = memoryview(bytearray(CHUNK))
    with open(source, "rb", buffering=0) as src, open(target, "xb", buffering=0) as dst:
        size = os.fstat(src.fileno()).st_size
        for start, end in data_extents(src.fileno(), size):
            offset = start
            while offset < end:
                count = os.preadv(src.fileno(), [view[: min(CHUNK, end - offset)]], offset)
                if count == 0:
                    break
                if view[:count] != zeros[:count]:
                    os.pwrite(dst.fileno(), view[:count], offset)
                offset += count
        os.ftruncate(dst.fileno(), size)


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of the parts of a file that hold data (SEEK_DATA/SEEK_HOLE)."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as error:
            if error.errno == errno.ENXIO:  # only a hole remains
                return
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end
        offset = end


def qcow2_to_raw(source: Path, target: Path) -> None:
    """qemu-img's conversion (it writes holes for zeros); ConversionError without it."""
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        raise ConversionError("qcow2 images need qemu-img (qemu-utils); this host takes raw")
    argv = [qemu_img, "convert", "-q", "-f", "qcow2", "-O", "raw", str(source), str(target)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ConversionError(f"qemu-img convert failed: {done.stderr.strip()}")
