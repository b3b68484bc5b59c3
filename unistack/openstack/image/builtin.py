"""The built-in images, offered as public Glance images without copying a byte.

The registry builds its built-in OCI images (`unistack.images.build`) at start; each one's
filesystem layer is already a blob in the store Glance uses, so registering it is writing an
active Image whose data is that blob (container format `docker`: a container filesystem
archive). The id is derived from the image's name, so every gateway worker registering at
once, or a restart, makes one image. The registry may still be building when the gateway
starts: `keep_registering` retries until each is there or the deadline passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from unistack.iaas.image import kinds
from unistack.iaas.records import Duplicate, Records
from unistack.images import store as storage
from unistack.openstack.image.data import ImageData, StoredData
from unistack.openstack.image.service import now_iso

NAMESPACE = uuid.UUID("5f1d1c64-3a0e-4d5c-9a43-7f3f8e2b6c11")
RETRY_SECONDS = 2.0
DEADLINE_SECONDS = 120.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltinImage:
    name: str
    repository: str
    tag: str

    @property
    def image_id(self) -> str:
        return str(uuid.uuid5(NAMESPACE, f"{self.repository}:{self.tag}"))


BUILTIN = (BuiltinImage("busybox", "library/busybox", "latest"),)


def filesystem_layer(data: ImageData, image: BuiltinImage) -> str | None:
    """The digest of the OCI image's last layer, or None while it is not built."""
    try:
        manifest = data.store.get_manifest(image.repository, image.tag)
    except storage.StoreError:
        return None
    layers = orjson.loads(manifest.data).get("layers") or []
    return str(layers[-1]["digest"]) if layers else None


@dataclass(frozen=True)
class Formats:
    name: str
    disk_format: str
    container_format: str


async def offer(
    records: Records,
    data: ImageData,
    image_id: str,
    stored: StoredData,
    formats: Formats,
    properties: dict[str, Any],
    owner: str,
) -> bool:
    """Record a public, active built-in image over data already in the store, and name the
    data in the registry; True when this call made the record."""
    stamp = now_iso()
    spec = {
        "name": formats.name,
        "visibility": "public",
        "protected": False,
        "os_hidden": False,
        "min_ram": 0,
        "min_disk": 0,
        "disk_format": formats.disk_format,
        "container_format": formats.container_format,
        "tags": ["unistack-builtin"],
        "properties": properties,
        "members": {},
        "owner": owner,
        "project_id": owner,
        "created_at": stamp,
        "updated_at": stamp,
    }
    status = {
        "status": "active",
        "size": stored.size,
        "virtual_size": None,
        "checksum": stored.checksum,
        "os_hash_value": stored.multihash,
        "digest": stored.digest,
        "updated_at": stamp,
    }
    made = False
    with contextlib.suppress(Duplicate):
        await records.create(kinds.IMAGES, image_id, spec, status)
        made = True
    await asyncio.to_thread(data.publish, image_id, stored, formats.disk_format)
    return made


async def register(records: Records, data: ImageData, image: BuiltinImage, owner: str) -> bool:
    """Make the public image if its layer is there; True once it exists."""
    if records.get(kinds.IMAGES, image.image_id) is not None:
        return True
    digest = await asyncio.to_thread(filesystem_layer, data, image)
    if digest is None:
        return False
    stored: StoredData = await asyncio.to_thread(data.describe, digest)
    properties = {"source": f"oci://{image.repository}:{image.tag}"}
    formats = Formats(image.name, "raw", "docker")
    await offer(records, data, image.image_id, stored, formats, properties, owner)
    return True


async def keep_registering(records: Records, data: ImageData, owner: str) -> None:
    pending = list(BUILTIN)
    deadline = asyncio.get_running_loop().time() + DEADLINE_SECONDS
    while pending and asyncio.get_running_loop().time() < deadline:
        pending = [image for image in pending if not await register(records, data, image, owner)]
        if pending:
            await asyncio.sleep(RETRY_SECONDS)
    for image in pending:
        log.warning("built-in image %s is not in the image store; not offered", image.name)
