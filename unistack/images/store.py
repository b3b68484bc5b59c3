"""The content-addressed store: blobs by digest, plus named references to manifests.

Layout under `root` (one filesystem, so every rename is atomic):

    blobs/sha256/<hex>                                   immutable content
    uploads/<uuid>                                       an upload in progress
    repositories/<name>/_manifests/tags/<tag>            file holding a manifest digest
    repositories/<name>/_manifests/revisions/sha256/<hex> file holding that manifest's media type

A manifest is stored as a blob like any other content; the revision file says which
repository holds it and with what media type, and tags point at revisions. Nothing else
about OCI is assumed here, so the Glance image API keeps VM images in the same store: the
disk image is a blob and a small manifest names it under a repository.

Blobs are global (not scoped per repository): a cross-repository mount is a no-op. Every
write goes to a temporary file, is fsynced and renamed into place, so a reader never sees a
partial file and a crash leaves at most an orphan in `uploads/`. Deleting a manifest removes
its references only; unreferenced blobs stay until a garbage collector (not written) removes
them. Calls are synchronous file I/O; the registry runs the slow ones (hashing) in a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from unistack.images import digests, reference

HASH_CHUNK = 1024 * 1024
_UPLOAD_ID = re.compile(r"^[a-f0-9]{32}$")


class StoreError(Exception):
    """Base of the store's errors; `detail` is safe to show a client."""


class BlobUnknown(StoreError):
    """No blob with that digest."""


class ManifestUnknown(StoreError):
    """No manifest by that tag or digest in that repository."""


class NameUnknown(StoreError):
    """No repository by that name."""


class UploadUnknown(StoreError):
    """No upload in progress with that id."""


class NameInvalid(StoreError):
    """A repository name, tag or upload id is malformed."""


class DigestMismatch(StoreError):
    """Content does not hash to the digest it was given under."""


@dataclass(frozen=True)
class StoredManifest:
    """A manifest as stored: its bytes, digest and media type."""

    digest: str
    media_type: str
    data: bytes


class ImageStore:
    """Blobs, uploads and named manifests under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "blobs" / digests.ALGORITHM
        self._uploads = root / "uploads"
        self._repositories = root / "repositories"
        for directory in (self._blobs, self._uploads, self._repositories):
            directory.mkdir(parents=True, exist_ok=True)

    # Blobs

    def blob_path(self, digest: str) -> Path:
        """Where the blob with this digest lives (whether or not it exists)."""
        try:
            return self._blobs / digests.hex_of(digest)
        except digests.DigestError as error:
            raise NameInvalid(str(error)) from None

    def blob_size(self, digest: str) -> int | None:
        """The size of a blob, or None when it is absent."""
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def open_blob(self, digest: str) -> BinaryIO:
        """Open a blob for reading; raise BlobUnknown when absent."""
        try:
            return self.blob_path(digest).open("rb")
        except FileNotFoundError:
            raise BlobUnknown(f"blob {digest} is unknown") from None

    def put_blob(self, data: bytes, digest: str | None = None) -> str:
        """Store `data`, checking it against `digest` when given; return its digest."""
        actual = digests.of_bytes(data)
        if digest is not None and digest != actual:
            raise DigestMismatch(f"content hashes to {actual}, not {digest}")
        path = self.blob_path(actual)
        if not path.exists():
            _write_atomic(path, data, scratch=self._uploads)
        return actual

    def link_blob(self, source: Path, digest: str) -> None:
        """Take a blob from another store's file: a hard link when both are on one
        filesystem, else a copy. The content is trusted to match `digest` (the other store
        checked it when it was written)."""
        path = self.blob_path(digest)
        if path.exists():
            return
        temporary = self._uploads / f".link-{uuid.uuid4().hex}"
        try:
            try:
                os.link(source, temporary)
            except OSError:
                shutil.copyfile(source, temporary)
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        _fsync_dir(path.parent)

    # Uploads

    def start_upload(self) -> str:
        """Begin an upload; return its id."""
        upload_id = uuid.uuid4().hex
        (self._uploads / upload_id).touch(exist_ok=False)
        return upload_id

    def upload_size(self, upload_id: str) -> int:
        """How many bytes an upload has received."""
        try:
            return self._upload_path(upload_id).stat().st_size
        except FileNotFoundError:
            raise UploadUnknown(f"upload {upload_id} is unknown") from None

    def open_upload(self, upload_id: str) -> BinaryIO:
        """Open an upload for appending (the registry streams request bodies into it)."""
        path = self._upload_path(upload_id)
        if not path.exists():
            raise UploadUnknown(f"upload {upload_id} is unknown")
        return path.open("ab")

    def append_upload(self, upload_id: str, data: bytes) -> int:
        """Append bytes to an upload; return its new size."""
        with self.open_upload(upload_id) as handle:
            handle.write(data)
            return handle.tell()

    def finish_upload(self, upload_id: str, digest: str) -> str:
        """Verify the upload hashes to `digest` and move it into the blobs; return the digest."""
        path = self._upload_path(upload_id)
        target = self.blob_path(digest)
        actual = _hash_file(path, upload_id)
        if actual != digest:
            path.unlink(missing_ok=True)
            raise DigestMismatch(f"uploaded content hashes to {actual}, not {digest}")
        if target.exists():
            path.unlink()
            return digest
        os.replace(path, target)
        _fsync_dir(target.parent)
        return digest

    def cancel_upload(self, upload_id: str) -> None:
        """Abandon an upload and free its space."""
        try:
            self._upload_path(upload_id).unlink()
        except FileNotFoundError:
            raise UploadUnknown(f"upload {upload_id} is unknown") from None

    # Manifests and references

    def put_manifest(self, repository: str, ref: str, data: bytes, media_type: str) -> str:
        """Store manifest bytes under a tag or its digest; return the manifest digest."""
        manifests = self._manifests(repository)
        digest = digests.of_bytes(data)
        if digests.is_digest(ref) and ref != digest:
            raise DigestMismatch(f"manifest hashes to {digest}, not {ref}")
        self.put_blob(data)
        revision = manifests / "revisions" / digests.ALGORITHM / digests.hex_of(digest)
        _write_atomic(revision, media_type.encode(), scratch=self._uploads)
        if not digests.is_digest(ref):
            _write_atomic(manifests / "tags" / _tag(ref), digest.encode(), scratch=self._uploads)
        return digest

    def resolve(self, repository: str, ref: str) -> str:
        """The manifest digest a tag or digest names in this repository."""
        manifests = self._manifests(repository)
        if digests.is_digest(ref):
            if not self._revision(manifests, ref).exists():
                raise ManifestUnknown(f"manifest {ref} is unknown in {repository}")
            return ref
        try:
            return (manifests / "tags" / _tag(ref)).read_text()
        except FileNotFoundError:
            raise ManifestUnknown(f"manifest tagged {ref!r} is unknown in {repository}") from None

    def get_manifest(self, repository: str, ref: str) -> StoredManifest:
        """Read a manifest by tag or digest."""
        digest = self.resolve(repository, ref)
        revision = self._revision(self._manifests(repository), digest)
        try:
            media_type = revision.read_text()
            data = self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise ManifestUnknown(f"manifest {digest} is unknown in {repository}") from None
        return StoredManifest(digest=digest, media_type=media_type, data=data)

    def has_manifest(self, repository: str, digest: str) -> bool:
        """Tell whether this repository holds a manifest with this digest."""
        return self._revision(self._manifests(repository), digest).exists()

    def delete_manifest(self, repository: str, ref: str) -> None:
        """Delete a tag, or a manifest by digest together with every tag pointing at it."""
        manifests = self._manifests(repository)
        digest = self.resolve(repository, ref)
        if not digests.is_digest(ref):
            (manifests / "tags" / _tag(ref)).unlink()
            return
        for tag in self._tag_dir_entries(manifests):
            if tag.read_text() == digest:
                tag.unlink(missing_ok=True)
        self._revision(manifests, digest).unlink(missing_ok=True)

    def list_tags(self, repository: str) -> list[str]:
        """The repository's tags, sorted; raise NameUnknown for an absent repository."""
        manifests = self._manifests(repository)
        if not manifests.is_dir():
            raise NameUnknown(f"repository {repository!r} is unknown")
        return sorted(entry.name for entry in self._tag_dir_entries(manifests))

    def list_repositories(self) -> list[str]:
        """Every repository holding at least one manifest revision, sorted."""
        found = []
        for directory, subdirectories, _ in os.walk(self._repositories):
            if "_manifests" in subdirectories:
                found.append(str(Path(directory).relative_to(self._repositories)))
            subdirectories[:] = [d for d in subdirectories if d != "_manifests"]
        return sorted(found)

    def _manifests(self, repository: str) -> Path:
        if not reference.is_repository_name(repository):
            raise NameInvalid(f"invalid repository name {repository!r}")
        return self._repositories / repository / "_manifests"

    def _revision(self, manifests: Path, digest: str) -> Path:
        try:
            return manifests / "revisions" / digests.ALGORITHM / digests.hex_of(digest)
        except digests.DigestError as error:
            raise NameInvalid(str(error)) from None

    def _tag_dir_entries(self, manifests: Path) -> list[Path]:
        tags = manifests / "tags"
        return [p for p in tags.iterdir() if not p.name.startswith(".")] if tags.is_dir() else []

    def _upload_path(self, upload_id: str) -> Path:
        if not _UPLOAD_ID.match(upload_id):
            raise UploadUnknown(f"upload {upload_id!r} is unknown")
        return self._uploads / upload_id


def _tag(tag: str) -> str:
    if not reference.TAG.match(tag):
        raise NameInvalid(f"invalid tag {tag!r}")
    return tag


def _hash_file(path: Path, upload_id: str) -> str:
    sha = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(HASH_CHUNK):
                sha.update(chunk)
            os.fsync(handle.fileno())
    except FileNotFoundError:
        raise UploadUnknown(f"upload {upload_id} is unknown") from None
    return digests.from_hex(sha.hexdigest())


def _write_atomic(path: Path, data: bytes, *, scratch: Path) -> None:
    """Write to a temporary file in `scratch`, fsync it, and rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = scratch / f".tmp-{uuid.uuid4().hex}"
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
