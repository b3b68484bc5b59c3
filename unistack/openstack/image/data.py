"""Image data in the OCI image store the registry serves (`unistack.images.store`).

Glance's bits are a blob like any layer: the upload streams into the store's upload area
while MD5 (Glance's `checksum`), SHA-512 (its `os_hash_value`) and SHA-256 (the blob digest)
are computed in one pass, then the blob moves into place. `publish` names it with a small OCI
manifest in repository `openstack/images`, tagged with the image id — an artifact whose one
layer is the disk (media type `application/vnd.unistack.disk.<format>`), so
`<registry>/openstack/images:<id>` pulls the same bytes `GET /v2/images/<id>/file` serves.
Hashing and writing run in a thread, a megabyte at a time, so a large upload never stalls
the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from unistack.images import store as storage

REPOSITORY = "openstack/images"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.openstack.image.v2"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
FLUSH_BYTES = 1024 * 1024
READ_BYTES = 256 * 1024
HASH_ALGO = "sha512"


class TooLarge(Exception):
    """The data went past the size limit."""


@dataclass(frozen=True)
class StoredData:
    digest: str  # sha256:<hex> of the blob
    size: int
    checksum: str  # MD5 hex
    multihash: str  # SHA-512 hex


class _Digester:
    def __init__(self) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha512 = hashlib.sha512()
        self.sha256 = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes) -> None:
        for digest in (self.md5, self.sha512, self.sha256):
            digest.update(data)
        self.size += len(data)


class ImageData:
    """Receives, publishes, reads and forgets image data in one image store."""

    def __init__(self, root: Path) -> None:
        self.store = storage.ImageStore(root)

    async def receive(self, chunks: AsyncIterator[bytes], limit: int) -> StoredData:
        """Stream `chunks` into a new blob; TooLarge past `limit` bytes (nothing is kept)."""
        upload_id = await asyncio.to_thread(self.store.start_upload)
        digester = _Digester()
        pending = bytearray()
        try:
            async for chunk in chunks:
                pending += chunk
                if digester.size + len(pending) > limit:
                    raise TooLarge(f"image data is larger than {limit} bytes")
                if len(pending) >= FLUSH_BYTES:
                    await asyncio.to_thread(self._write, upload_id, bytes(pending), digester)
                    pending.clear()
            await asyncio.to_thread(self._write, upload_id, bytes(pending), digester)
            digest = f"sha256:{digester.sha256.hexdigest()}"
            await asyncio.to_thread(self.store.finish_upload, upload_id, digest)
        except BaseException:
            with contextlib.suppress(storage.UploadUnknown):
                self.store.cancel_upload(upload_id)
            raise
        return StoredData(
            digest, digester.size, digester.md5.hexdigest(), digester.sha512.hexdigest()
        )

    def _write(self, upload_id: str, data: bytes, digester: _Digester) -> None:
        if data:
            self.store.append_upload(upload_id, data)
            digester.update(data)

    def publish(self, image_id: str, data: StoredData, disk_format: str | None) -> None:
        """Name the blob in the registry: a manifest tagged with the image id."""
        config = self.store.put_blob(EMPTY_CONFIG)
        layer = {
            "mediaType": f"application/vnd.unistack.disk.{disk_format or 'raw'}",
            "digest": data.digest,
            "size": data.size,
            "annotations": {"org.openstack.image.id": image_id},
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "artifactType": ARTIFACT_TYPE,
            "config": {"mediaType": EMPTY_TYPE, "digest": config, "size": len(EMPTY_CONFIG)},
            "layers": [layer],
        }
        self.store.put_manifest(REPOSITORY, image_id, orjson.dumps(manifest), MANIFEST_TYPE)

    def forget(self, image_id: str) -> None:
        """Drop the image's manifest; the blob stays for the store's garbage collector."""
        with contextlib.suppress(storage.StoreError):
            self.store.delete_manifest(REPOSITORY, image_id)

    def read(self, digest: str) -> Iterator[bytes]:
        """The blob's bytes in chunks (a synchronous iterator: Starlette runs it in a thread)."""
        with self.store.open_blob(digest) as handle:
            while chunk := handle.read(READ_BYTES):
                yield chunk

    def describe(self, digest: str) -> StoredData:
        """Size and Glance's hashes of a blob already in the store."""
        digester = _Digester()
        with self.store.open_blob(digest) as handle:
            while chunk := handle.read(FLUSH_BYTES):
                digester.update(chunk)
        return StoredData(
            digest, digester.size, digester.md5.hexdigest(), digester.sha512.hexdigest()
        )

    def head(self, digest: str, size: int) -> bytes:
        """The first `size` bytes of a blob (a disk header)."""
        with self.store.open_blob(digest) as handle:
            return handle.read(size)

    def exists(self, digest: str) -> bool:
        return self.store.blob_size(digest) is not None
