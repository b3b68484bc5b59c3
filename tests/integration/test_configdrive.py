"""Config drives as guests find them: an ISO 9660 image labelled `config-2` (what Nova gives a
VM, made with Debian's genisoimage), read back with blkid and isoinfo, and the directory tree
a system container gets, replaced whole."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from unistack.dataplane import configdrive
from unistack.dataplane.instances import InstanceError

FILES = {
    "openstack/latest/meta_data.json": b'{"uuid": "5e1f"}',
    "openstack/latest/user_data": b"#!/bin/sh\n\xff",
    "ec2/2009-04-04/meta-data.json": b'{"instance-id": "5e1f"}',
}
needs_genisoimage = pytest.mark.skipif(
    shutil.which("genisoimage") is None or shutil.which("isoinfo") is None,
    reason="needs genisoimage and isoinfo (Debian's genisoimage package)",
)


def probe(image: Path) -> dict[str, str]:
    exported = subprocess.run(
        ["blkid", "-p", "-o", "export", str(image)], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in exported.splitlines() if "=" in line)


def extract(image: Path, path: str) -> bytes:
    return subprocess.run(
        ["isoinfo", "-R", "-i", str(image), "-x", f"/{path}"], capture_output=True, check=True
    ).stdout


@needs_genisoimage
def test_a_vms_drive_is_iso9660_labelled_config_2_with_every_file(tmp_path: Path) -> None:
    image = tmp_path / "disk.config"
    configdrive.build_iso(FILES, image)
    found = probe(image)
    assert (found["TYPE"], found["LABEL"]) == ("iso9660", "config-2")
    for path, body in FILES.items():  # Rock Ridge keeps the long, lower-case names
        assert extract(image, path) == body
    assert [p.name for p in tmp_path.iterdir()] == ["disk.config"]  # no scratch left


def test_without_the_tool_the_drive_fails_with_a_reason_and_nothing_is_made(
    tmp_path: Path,
) -> None:
    image = tmp_path / "disk.config"
    with pytest.raises(InstanceError, match="not installed"):
        configdrive.build_iso(FILES, image, tool="unistack-no-such-genisoimage")
    assert not image.exists()


def test_a_containers_drive_is_a_read_only_tree_replaced_whole(tmp_path: Path) -> None:
    tree = tmp_path / "config-drive"
    configdrive.write_tree(FILES, tree)
    for path, body in FILES.items():
        assert (tree / path).read_bytes() == body
        assert (tree / path).stat().st_mode & 0o777 == 0o444
    configdrive.write_tree({"openstack/latest/meta_data.json": b"{}"}, tree)
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file()) == [
        "openstack/latest/meta_data.json"
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["config-drive"]
    with pytest.raises(InstanceError, match="outside"):
        configdrive.write_tree({"../escape": b"x"}, tree)
    assert not (tmp_path / "escape").exists()
    assert (tree / "openstack/latest/meta_data.json").read_bytes() == b"{}"
