"""Unpack one OCI layer (gzip or plain tar) into a directory usable as an overlayfs lowerdir.

OCI whiteouts become overlayfs ones: `.wh.<name>` turns into a 0/0 character device
`<name>`, and `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory. Members are
written one at a time, never with `extractall`, and each is refused if it could land
outside the layer: absolute names, `..` components, a path through a symlink, or a hardlink
to something outside. Device nodes other than whiteouts are skipped, so an image cannot
hand a container a host device. The uncompressed stream is hashed on the way through and
checked against the layer's diff_id. Callers unpack into a fresh private directory and
rename it into place (see `pull`), so nothing here needs to be atomic.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import os
import shutil
import stat
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Protocol

from unistack.images import digests

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
XATTR_PAX_PREFIX = "SCHILY.xattr."
COPY_CHUNK = 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class LayerError(Exception):
    """The layer is malformed, unsupported, or tries to write outside its directory."""


class DiffIdMismatch(LayerError):
    """The uncompressed layer does not hash to the diff_id its image config names."""


def unpack_layer(blob: Path, target: Path, *, diff_id: str | None = None) -> str:
    """Unpack `blob` into the empty directory `target`; return the layer's diff_id."""
    with blob.open("rb") as raw:
        magic = raw.read(4)
        raw.seek(0)
        if magic.startswith(_ZSTD_MAGIC):
            raise LayerError("zstd-compressed layers are not supported")
        source: _Readable = gzip.GzipFile(fileobj=raw) if magic.startswith(_GZIP_MAGIC) else raw
        hashing = _HashingReader(source)
        try:
            _extract(hashing, target)
            hashing.drain()
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise LayerError(f"layer is not a valid tar stream: {error}") from None
    actual = digests.from_hex(hashing.sha.hexdigest())
    if diff_id is not None and actual != diff_id:
        raise DiffIdMismatch(f"layer content hashes to {actual}, config says {diff_id}")
    return actual


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _HashingReader:
    """A read-only file that hashes every byte read through it."""

    def __init__(self, source: _Readable) -> None:
        self.source = source
        self.sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.sha.update(data)
        return data

    def drain(self) -> None:
        while self.read(COPY_CHUNK):
            pass


def _extract(stream: _HashingReader, target: Path) -> None:
    directories: list[tuple[Path, tarfile.TarInfo]] = []
    with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
        for member in tar:
            parts = safe_parts(member.name)
            if not parts:
                continue
            parent = _ensure_parent(target, parts[:-1])
            path = _write_member(tar, member, parent, parts[-1], target)
            if path is not None and member.isdir():
                directories.append((path, member))
    for path, member in reversed(directories):
        _apply_metadata(path, member)


def safe_parts(name: str) -> tuple[str, ...]:
    """The components of a member name; raise LayerError if it is absolute or climbs out."""
    if name.startswith("/"):
        raise LayerError(f"refusing absolute path {name!r} in layer")
    parts = tuple(p for p in PurePosixPath(name).parts if p != ".")
    if ".." in parts:
        raise LayerError(f"refusing path {name!r} in layer: it contains '..'")
    return parts


def _ensure_parent(target: Path, parts: tuple[str, ...]) -> Path:
    """Create the parent directories, refusing to pass through a symlink or a non-directory."""
    current = target
    for part in parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            os.mkdir(current, 0o755)
            continue
        if not stat.S_ISDIR(mode):
            raise LayerError(
                f"refusing to write through non-directory {current.relative_to(target)}"
            )
    return current


def _write_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, parent: Path, name: str, target: Path
) -> Path | None:
    if name == OPAQUE_MARKER:
        _set_opaque(parent)
        return None
    if name.startswith(WHITEOUT_PREFIX):
        _make_whiteout(parent, name.removeprefix(WHITEOUT_PREFIX))
        return None
    path = parent / name
    if member.isdir():
        _clear(path, keep_directory=True)
        if not path.is_dir():
            os.mkdir(path, 0o700)
        return path
    _clear(path, keep_directory=False)
    if member.isreg():
        _write_file(tar, member, path)
    elif member.issym():
        os.symlink(member.linkname, path)
    elif member.islnk():
        _link(member, path, target)
    elif member.isfifo():
        os.mkfifo(path)
    else:
        log.debug("skipping device or special member %s", member.name)
        return None
    _apply_metadata(path, member)
    return path


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
    source = tar.extractfile(member)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(path, flags, 0o600), "wb") as handle:
        if source is not None:
            shutil.copyfileobj(source, handle, COPY_CHUNK)


def _link(member: tarfile.TarInfo, path: Path, target: Path) -> None:
    parts = safe_parts(member.linkname)
    if not parts:
        raise LayerError(f"hardlink {member.name!r} has an empty target")
    _check_no_symlinks(target, parts[:-1])
    source = target.joinpath(*parts)
    if not os.path.lexists(source):
        raise LayerError(f"hardlink {member.name!r} points at missing {member.linkname!r}")
    os.link(source, path, follow_symlinks=False)


def _check_no_symlinks(target: Path, parts: tuple[str, ...]) -> None:
    current = target
    for part in parts:
        current = current / part
        if not os.path.isdir(current) or os.path.islink(current):
            raise LayerError(f"hardlink target passes through non-directory {part!r}")


def _make_whiteout(parent: Path, name: str) -> None:
    if name in ("", ".", "..") or "/" in name:
        raise LayerError(f"malformed whiteout for {name!r}")
    path = parent / name
    _clear(path, keep_directory=False)
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def _set_opaque(directory: Path) -> None:
    try:
        os.setxattr(directory, OPAQUE_XATTR, b"y", follow_symlinks=False)
    except OSError as error:
        raise LayerError(f"cannot mark {directory.name!r} opaque: {error}") from None


def _clear(path: Path, *, keep_directory: bool) -> None:
    """Remove what a later member replaces (a directory survives when replaced by one)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        if not keep_directory:
            shutil.rmtree(path)
        return
    path.unlink()


def _apply_metadata(path: Path, member: tarfile.TarInfo) -> None:
    os.lchown(path, member.uid, member.gid)
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)
    for key, value in member.pax_headers.items():
        if key.startswith(XATTR_PAX_PREFIX):
            with contextlib.suppress(OSError):
                raw = value.encode("utf-8", "surrogateescape")
                os.setxattr(path, key.removeprefix(XATTR_PAX_PREFIX), raw, follow_symlinks=False)
    os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
