"""A server's ephemeral disk: the flavor's `OS-FLV-EXT-DATA:ephemeral` GiB as a blank ext4
file in the instance's directory, labelled `ephemeral0` as Nova formats them (cloud-init
mounts that label on /mnt). The guest sees it as `DEVICE`, after its root disk (vda), as Nova
names it; the compute API gives volumes the names after it. It is made once, at the first
boot, sparse (it costs what the guest writes), kept across stop, start and reboot, and goes
with the instance's directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from unistack.dataplane.instances import InstanceError

DEVICE = "vdb"
LABEL = "ephemeral0"
FILE_NAME = "disk.eph0"
GIB = 1024**3


def path_in(directory: Path) -> Path:
    return directory / FILE_NAME


def ensure(directory: Path, size_gb: int) -> Path:
    """The ephemeral disk file of the instance in `directory`, made (sparse, ext4) if it is
    not there yet; an existing one is kept as it is, with what the guest wrote."""
    path = path_in(directory)
    if path.exists():
        return path
    mkfs = shutil.which("mkfs.ext4")
    if mkfs is None:
        raise InstanceError("cannot make the ephemeral disk: mkfs.ext4 not found (e2fsprogs)")
    temporary = path.with_name(f".{FILE_NAME}.new")
    with open(temporary, "wb") as handle:
        handle.truncate(size_gb * GIB)
    made = subprocess.run(
        [mkfs, "-q", "-F", "-L", LABEL, str(temporary)], capture_output=True, text=True
    )
    if made.returncode != 0:
        temporary.unlink(missing_ok=True)
        raise InstanceError(f"cannot make the ephemeral disk: {made.stderr.strip()}")
    os.replace(temporary, path)
    return path
