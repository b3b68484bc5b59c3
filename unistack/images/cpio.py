"""The `newc` cpio format, the one the Linux kernel unpacks as an initramfs.

`unistack.images.vmimage` packs the tiny VM's initramfs with this writer rather than with
Debian's `cpio` tool: the archive must hold a device node (`/dev/console`, which the kernel
opens for init before any devtmpfs exists) and root-owned files, which `cpio` can only copy
from a tree made as root with `mknod`; here every field is set explicitly, so the build needs
no root, no staging directory, and gives the same bytes every time (entries sorted, inode
numbers by position, mtime 0, owner 0:0).

Format (Documentation/driver-api/early-userspace/buffer-format.rst): per entry a 110-byte
ASCII header `070701` + 13 eight-digit hex fields, the NUL-terminated name, padding to 4
bytes, the data, padding to 4 bytes; the archive ends with an entry named `TRAILER!!!`.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass

MAGIC = b"070701"
TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Member:
    """One archive entry. `mode` holds the permission bits; the kind sets the type bits."""

    path: str  # relative, no leading slash: "bin/busybox"
    kind: str = "file"  # file | dir | symlink | chardev
    mode: int = 0o644
    data: bytes = b""  # file contents, or a symlink's target
    rdev: tuple[int, int] = (0, 0)  # chardev major, minor

    @property
    def type_bits(self) -> int:
        return {
            "file": stat.S_IFREG,
            "dir": stat.S_IFDIR,
            "symlink": stat.S_IFLNK,
            "chardev": stat.S_IFCHR,
        }[self.kind]


def directory(path: str, mode: int = 0o755) -> Member:
    return Member(path, "dir", mode)


def symlink(path: str, target: str) -> Member:
    return Member(path, "symlink", 0o777, target.encode())


def archive(members: Iterable[Member]) -> bytes:
    """The newc archive of `members`, sorted by path (so parents come before children),
    missing parent directories added; a later member with the same path wins."""
    by_path = {member.path.strip("/"): member for member in members}
    for path in list(by_path):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            by_path.setdefault("/".join(parts[:depth]), directory("/".join(parts[:depth])))
    chunks = [
        _entry(path, member, inode)
        for inode, (path, member) in enumerate(sorted(by_path.items()), start=1)
    ]
    chunks.append(_entry(TRAILER, Member(TRAILER, mode=0), 0))
    return b"".join(chunks)


def _entry(path: str, member: Member, inode: int) -> bytes:
    name = path.encode() + b"\0"
    data = member.data if member.kind in ("file", "symlink") else b""
    fields = (
        inode,
        member.type_bits | member.mode if path != TRAILER else 0,
        0,  # uid
        0,  # gid
        2 if member.kind == "dir" else 1,  # nlink
        0,  # mtime
        len(data),
        0,  # dev major
        0,  # dev minor
        member.rdev[0],
        member.rdev[1],
        len(name),
        0,  # check (unused by newc)
    )
    header = MAGIC + b"".join(b"%08X" % value for value in fields)
    return _padded(header + name) + _padded(data)


def _padded(chunk: bytes) -> bytes:
    return chunk + b"\0" * (-len(chunk) % 4)
