"""A container server's /proc/partitions: its own disks, not the host's.

A guest's /proc is a procfs of the host's kernel, whose /proc/partitions lists the host's
block devices, and tools in the guest count disks there (Tempest greps `[vs]d.$` in it to
count a server's volumes). LXCFS answers such files through FUSE; this one is small and
changes only when the driver plugs or unplugs a disk, so the driver writes it: `render` lists
the guest's root file system as `vda` (as a VM's root disk is named: the overlay's device
numbers, sized as the flavor's root disk) and every block device node in the guest's /dev,
sized from the host's sysfs; `publish` writes it into the guest's /dev (a tmpfs of its own,
`FILE`) and bind-mounts it over /proc/partitions in the guest's mount namespace. runc allows
such mounts only over a fixed list of /proc files (LXCFS's), which has not this one, so the
mount is made from a child process that joins the namespace (setns into a mount namespace
needs a single-threaded process) with our interpreter, never a binary of the guest. Later
updates rewrite the file in place, and the mount shows them.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

FILE = "/dev/.unistack-partitions"
TARGET = "/proc/partitions"
HEADER = "major minor  #blocks  name\n\n"
_SYS_DEV_BLOCK = Path("/sys/dev/block")

# Run as `python -c BIND PID SOURCE TARGET`: join PID's mount namespace (which also moves
# this process to its root), then bind SOURCE over TARGET there.
BIND = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
pid, source, target = sys.argv[1:]
namespace = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
if libc.setns(namespace, 0x00020000) != 0:
    sys.exit(f"setns: {os.strerror(ctypes.get_errno())}")
if libc.mount(source.encode(), target.encode(), None, 4096, None) != 0:
    sys.exit(f"mount {source} on {target}: {os.strerror(ctypes.get_errno())}")
"""


def line(major: int, minor: int, kib: int, name: str) -> str:
    """One row, in the kernel's own widths."""
    return f"{major:4d}  {minor:7d} {kib:10d} {name}\n"


def render(guest_root: Path, root_gb: int) -> str:
    """The guest's /proc/partitions: `vda` for its root file system, then its /dev block
    devices by name."""
    root = os.stat(guest_root).st_dev
    text = HEADER + line(os.major(root), os.minor(root), root_gb * 1024 * 1024, "vda")
    devices = guest_root / "dev"
    for entry in sorted(os.scandir(devices), key=lambda e: e.name):
        status = entry.stat(follow_symlinks=False)
        if not stat.S_ISBLK(status.st_mode) or entry.name == "vda":
            continue
        major, minor = os.major(status.st_rdev), os.minor(status.st_rdev)
        text += line(major, minor, _kib(major, minor), entry.name)
    return text


def _kib(major: int, minor: int) -> int:
    try:
        sectors = int((_SYS_DEV_BLOCK / f"{major}:{minor}" / "size").read_text())
    except (OSError, ValueError):
        return 0
    return sectors // 2


def publish(pid: int, root_gb: int) -> None:
    """Write the guest's partitions into its /dev and make them its /proc/partitions (the
    first time; later the rewrite is enough). OSError when the guest is gone or the mount
    is refused."""
    guest_root = Path(f"/proc/{pid}/root")
    text = render(guest_root, root_gb)
    path = guest_root / FILE.lstrip("/")
    with open(path, "a+") as handle:  # in place: the mount holds this inode
        handle.seek(0)
        handle.truncate()
        handle.write(text)
    shown, ours = os.stat(guest_root / TARGET.lstrip("/")), os.stat(path)
    if (shown.st_dev, shown.st_ino) == (ours.st_dev, ours.st_ino):  # bound already
        return
    done = subprocess.run(
        [sys.executable, "-c", BIND, str(pid), FILE, TARGET],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if done.returncode != 0:
        raise OSError(f"cannot show the guest its partitions: {done.stderr.strip()}")
