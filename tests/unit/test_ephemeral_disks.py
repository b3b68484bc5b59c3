"""The flavor's ephemeral disk: the file the drivers give the guest, and the device names
the compute API leaves it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from unistack.dataplane import ephemeral
from unistack.iaas.compute.volumes import next_device


def server(ephemeral_gb: int) -> dict:
    return {"spec": {"flavor": {"disk": 1, "ephemeral": ephemeral_gb}}}


def test_volumes_are_named_after_the_ephemeral_disk() -> None:
    assert next_device([], server(0)) == "/dev/vdb"
    assert next_device([], server(1)) == "/dev/vdc"  # vdb is the ephemeral disk, as in Nova
    assert next_device([{"device": "/dev/vdc"}], server(1)) == "/dev/vdd"
    assert next_device([{"device": "/dev/vdb"}]) == "/dev/vdc"


@pytest.mark.skipif(not shutil.which("mkfs.ext4"), reason="needs mkfs.ext4 (e2fsprogs)")
def test_the_disk_is_a_sparse_ext4_file_made_once(tmp_path: Path) -> None:
    made = ephemeral.ensure(tmp_path, 1)
    assert made == ephemeral.path_in(tmp_path) and made.stat().st_size == 1024**3
    assert made.stat().st_blocks * 512 < 64 * 1024**2  # sparse: what mkfs wrote, no more
    header = subprocess.run(["dumpe2fs", "-h", str(made)], capture_output=True, text=True)
    assert f"Filesystem volume name:   {ephemeral.LABEL}" in header.stdout
    with open(made, "r+b") as disk:  # what the guest wrote is kept at the next boot
        disk.seek(4096 * 1024)
        disk.write(b"guest data")
    assert ephemeral.ensure(tmp_path, 5) == made and made.stat().st_size == 1024**3
    with open(made, "rb") as disk:
        disk.seek(4096 * 1024)
        assert disk.read(10) == b"guest data"
    assert [p.name for p in tmp_path.iterdir()] == [ephemeral.FILE_NAME]  # no leftovers
