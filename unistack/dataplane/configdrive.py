"""A server's config drive: the metadata service's documents on a disk of their own, for
guests that cannot or will not ask 169.254.169.254 (Nova's `--config-drive true`).

The compute controller renders the files (`unistack.agent.instancemetadata.drive_files`, Nova's
layout: `openstack/<version>/meta_data.json`, `network_data.json`, `user_data`, …, and
`ec2/<version>/meta-data.json`); this module puts them where each kind of guest looks:

- a VM gets what Nova's libvirt driver gives it by default: an ISO 9660 image labelled
  `config-2` with Rock Ridge and Joliet names (`build_iso`, Debian's `genisoimage`, the tool
  Nova runs), on an IDE CD-ROM (`unistack.dataplane.qemuargs`), which cloud-init's
  ConfigDrive source and `blkid -L config-2` find;
- a system container cannot mount a disk (it has no CAP_SYS_ADMIN, see `containerbundle`)
  and this host's kernel cannot read ISO 9660 at all (no `iso9660` in /proc/filesystems, no
  modules), so it gets the same tree as a directory (`write_tree`), bind-mounted read-only
  at `SEED_DIR`, where cloud-init's ConfigDrive source reads a seeded drive.

Both are written to a temporary name and renamed, so a failed build leaves nothing half made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from unistack.dataplane.instances import InstanceError

LABEL = "config-2"
SEED_DIR = "/var/lib/cloud/seed/config_drive"  # cloud-init's seed for its ConfigDrive source
GENISOIMAGE = "genisoimage"


def write_tree(files: Mapping[str, bytes], directory: Path) -> None:
    """The files under `directory` (replacing what was there), read-only."""
    parent = directory.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=parent))
    try:
        _fill(staging, files)
        old = directory.with_name(f".{directory.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if directory.exists():
            directory.rename(old)
        staging.rename(directory)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def build_iso(files: Mapping[str, bytes], image: Path, tool: str = GENISOIMAGE) -> None:
    """An ISO 9660 image of the files at `image`, labelled `config-2`, as Nova makes it."""
    program = shutil.which(tool)
    if program is None:
        raise InstanceError(f"config drive: {tool} is not installed (apt-get install genisoimage)")
    image.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".config-drive.", dir=image.parent) as scratch:
        tree = Path(scratch) / "tree"
        _fill(tree, files)
        temporary = Path(scratch) / "disk.config"
        argv = [
            program, "-o", str(temporary), "-ldots", "-allow-lowercase", "-allow-multidot",
            "-l", "-publisher", "unistack", "-quiet", "-J", "-r", "-V", LABEL, str(tree),
        ]  # fmt: skip
        try:
            subprocess.run(argv, check=True, capture_output=True, timeout=60)
        except subprocess.CalledProcessError as error:
            message = error.stderr.decode(errors="replace").strip()
            raise InstanceError(f"config drive: {tool} failed: {message}") from None
        except subprocess.TimeoutExpired:
            raise InstanceError(f"config drive: {tool} took over 60 s") from None
        os.replace(temporary, image)


def _fill(root: Path, files: Mapping[str, bytes]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        path = root / name
        if root.resolve() not in path.resolve().parents:
            raise InstanceError(f"config drive: {name!r} is outside the drive")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        path.chmod(0o444)
