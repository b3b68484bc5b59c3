"""Layer unpacking: overlayfs whiteouts, refusal of paths that escape, diff_id checks."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from unistack.images import digests, unpack

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mknod and trusted.* xattrs need root")


def make_tar(*members: tuple[str, str, bytes | str]) -> bytes:
    """A tar of (name, kind, payload) where kind is file, dir, symlink or hardlink."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.mode = 0o755 if kind == "dir" else 0o644
            data = payload.encode() if isinstance(payload, str) else payload
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, data.decode()
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, data.decode()
            else:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if kind == "file" else None)
    return buffer.getvalue()


def unpack_bytes(tmp_path: Path, blob: bytes, diff_id: str | None = None) -> Path:
    source, target = tmp_path / "layer.blob", tmp_path / "out"
    source.write_bytes(blob)
    target.mkdir()
    unpack.unpack_layer(source, target, diff_id=diff_id)
    return target


def test_gzip_and_plain_layers_unpack_and_report_the_diff_id(tmp_path: Path) -> None:
    tar = make_tar(("etc", "dir", ""), ("etc/motd", "file", "hi"), ("bin/sh", "symlink", "/x"))
    for index, blob in enumerate((tar, gzip.compress(tar))):
        source, target = tmp_path / f"{index}.blob", tmp_path / f"out{index}"
        source.write_bytes(blob)
        target.mkdir()
        assert unpack.unpack_layer(source, target) == digests.of_bytes(tar)
        assert (target / "etc/motd").read_text() == "hi"
        assert os.readlink(target / "bin/sh") == "/x"


def test_wrong_diff_id_is_refused(tmp_path: Path) -> None:
    tar = make_tar(("a", "file", "x"))
    with pytest.raises(unpack.DiffIdMismatch):
        unpack_bytes(tmp_path, tar, diff_id=digests.of_bytes(b"other"))


@needs_root
def test_whiteout_becomes_a_zero_zero_character_device(tmp_path: Path) -> None:
    target = unpack_bytes(tmp_path, make_tar(("etc", "dir", ""), ("etc/.wh.motd", "file", "")))
    status = os.lstat(target / "etc/motd")
    assert stat.S_ISCHR(status.st_mode)
    assert status.st_rdev == os.makedev(0, 0)
    assert not (target / "etc/.wh.motd").exists()


@needs_root
def test_opaque_marker_sets_the_overlay_xattr(tmp_path: Path) -> None:
    tar = make_tar(("var", "dir", ""), ("var/.wh..wh..opq", "file", ""), ("var/a", "file", "1"))
    target = unpack_bytes(tmp_path, tar)
    assert os.getxattr(target / "var", unpack.OPAQUE_XATTR) == b"y"
    assert sorted(os.listdir(target / "var")) == ["a"]


@pytest.mark.parametrize(
    "members",
    [
        [("/etc/passwd", "file", "x")],
        [("../outside", "file", "x")],
        [("a/../../outside", "file", "x")],
        [("link", "symlink", "/"), ("link/etc/passwd", "file", "x")],
        [("up", "symlink", ".."), ("up/outside", "file", "x")],
        [("escape", "hardlink", "../../etc/passwd")],
        [("escape", "hardlink", "/etc/passwd")],
        [("link", "symlink", "/etc"), ("escape", "hardlink", "link/passwd")],
        [("missing", "hardlink", "nothing-here")],
    ],
    ids=[
        "absolute",
        "dotdot",
        "nested-dotdot",
        "through-symlink",
        "through-relative-symlink",
        "hardlink-dotdot",
        "hardlink-absolute",
        "hardlink-through-symlink",
        "hardlink-missing",
    ],
)
def test_members_escaping_the_layer_are_refused(
    tmp_path: Path, members: list[tuple[str, str, str]]
) -> None:
    with pytest.raises(unpack.LayerError):
        unpack_bytes(tmp_path, make_tar(*members))
    assert not (tmp_path / "outside").exists()


def test_hardlink_inside_the_layer_shares_the_inode(tmp_path: Path) -> None:
    target = unpack_bytes(tmp_path, make_tar(("a", "file", "x"), ("b", "hardlink", "a")))
    assert os.stat(target / "a").st_ino == os.stat(target / "b").st_ino


def test_later_members_replace_earlier_ones(tmp_path: Path) -> None:
    tar = make_tar(("a", "file", "old"), ("a", "file", "new"), ("d", "file", "x"), ("d", "dir", ""))
    target = unpack_bytes(tmp_path, tar)
    assert (target / "a").read_text() == "new"
    assert (target / "d").is_dir()


def test_garbage_is_a_layer_error(tmp_path: Path) -> None:
    with pytest.raises(unpack.LayerError):
        unpack_bytes(tmp_path, gzip.compress(b"not a tar" * 100))
