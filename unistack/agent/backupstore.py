"""Volume backups as artifacts in the registry, beside Glance's images.

A backup is a qcow2 of the volume (qemu-img writes no clusters for zeros, so a 1 GiB volume
with a few megabytes written makes a backup of a few megabytes) pushed to the registry as an
OCI artifact `openstack/backups:<backup id>` with the same shape as Glance's
(`unistack.openstack.image.data`): an empty config and one layer, the disk. The registry is
the cloud's object store, so a backup outlives the volume, its pool and its host, as Cinder's
backups live in Swift; restoring pulls the artifact (`ImageCache.pull_artifact`) and makes a
volume from it as from an image. `unistack.agent.blockstorage` calls this module.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson

REPOSITORY = "openstack/backups"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.openstack.volume.backup.v1"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
READ_BYTES = 1 << 20
TIMEOUT = aiohttp.ClientTimeout(total=3600, sock_connect=10)


class BackupStoreError(Exception):
    """The registry refused or could not be reached."""


def artifact(registry: str, backup_id: str) -> str:
    """The reference `ImageCache.pull_artifact` takes for a backup."""
    return f"{registry}/{REPOSITORY}:{backup_id}"


def manifest(backup_id: str, volume_id: str, digest: str, size: int, config: str) -> bytes:
    layer = {
        "mediaType": "application/vnd.unistack.disk.qcow2",
        "digest": digest,
        "size": size,
        "annotations": {"org.openstack.backup.id": backup_id, "org.openstack.volume.id": volume_id},
    }
    return orjson.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "artifactType": ARTIFACT_TYPE,
            "config": {"mediaType": EMPTY_TYPE, "digest": config, "size": len(EMPTY_CONFIG)},
            "layers": [layer],
        }
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(READ_BYTES):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    """A file's bytes, a megabyte at a time, read in a thread."""
    with open(path, "rb") as file:
        while chunk := await asyncio.to_thread(file.read, READ_BYTES):
            yield chunk


class BackupStore:
    """Pushes and forgets backup artifacts in the registry at `registry` (host:port)."""

    def __init__(self, registry: str) -> None:
        self.base = f"http://{registry}/v2/{REPOSITORY}"

    async def push(self, backup_id: str, volume_id: str, disk: Path) -> int:
        """Upload the qcow2 `disk` and tag it `backup_id`; its size in bytes."""
        digest = await asyncio.to_thread(sha256_of, disk)
        size = disk.stat().st_size
        config = f"sha256:{hashlib.sha256(EMPTY_CONFIG).hexdigest()}"
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            await self._blob(session, config, EMPTY_CONFIG)
            await self._blob(session, digest, file_chunks(disk), size)
            document = manifest(backup_id, volume_id, digest, size, config)
            headers = {"Content-Type": MANIFEST_TYPE}
            url = f"{self.base}/manifests/{backup_id}"
            await self._send(session, "PUT", url, data=document, headers=headers)
        return size

    async def forget(self, backup_id: str) -> None:
        """Drop the backup's tag (the blob stays for the store's garbage collector)."""
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            url = f"{self.base}/manifests/{backup_id}"
            await self._send(session, "DELETE", url, missing_ok=True)

    async def _blob(
        self,
        session: aiohttp.ClientSession,
        digest: str,
        data: bytes | AsyncIterator[bytes],
        size: int | None = None,
    ) -> None:
        headers = {"Content-Type": "application/octet-stream"}
        if size is not None:
            headers["Content-Length"] = str(size)
        url = f"{self.base}/blobs/uploads/?digest={digest}"
        await self._send(session, "POST", url, data=data, headers=headers)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        *,
        data: bytes | AsyncIterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
        missing_ok: bool = False,
    ) -> None:
        try:
            async with session.request(method, url, data=data, headers=headers) as answer:
                if answer.status == 404 and missing_ok:
                    return
                if answer.status >= 300:
                    text = (await answer.text())[:300]
                    raise BackupStoreError(f"registry {method} answered {answer.status}: {text}")
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise BackupStoreError(f"registry {method} failed: {error}") from None
