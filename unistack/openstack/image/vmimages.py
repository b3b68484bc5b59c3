"""The built-in tiny VM, offered as three public images, the way a cloud image with its own
kernel and ramdisk is (Glance's `aki`/`ari`/`ami` formats, whose `kernel_id` and `ramdisk_id`
Nova boots directly): `unistack-vm-kernel`, `unistack-vm-ramdisk`, and `unistack-vm`, the
qcow2 root disk that names the other two and its kernel command line (`os_command_line`).

`make` builds the files from Debian's packages into the machine's cache
(`unistack.images.vmimage`); at start the gateway stores each once in the image store, as an
upload would. The ids derive from the names, so every gateway worker, and a restart, makes the
same images. Without the files no VM image is offered, and the log says why.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

from unistack.iaas.image import kinds
from unistack.iaas.records import Records
from unistack.openstack.image.builtin import NAMESPACE, Formats, offer
from unistack.openstack.image.data import ImageData

log = logging.getLogger(__name__)
CHUNK = 1024 * 1024
LIMIT = 1 << 40
NAME = "unistack-vm"


def image_id(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"vm/{name}"))


def wanted(manifest: dict[str, Any]) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """(name, file, disk format, container format, properties) of the three images."""
    kernel, ramdisk = image_id(f"{NAME}-kernel"), image_id(f"{NAME}-ramdisk")
    release = str((manifest.get("kernel") or {}).get("release") or "")
    common = {"os_distro": "unistack-busybox", "hypervisor_type": "qemu", "kernel": release}
    return [
        (f"{NAME}-kernel", "vmlinux", "aki", "aki", common),
        (f"{NAME}-ramdisk", "initrd.cpio", "ari", "ari", common),
        (
            NAME,
            "disk.qcow2",
            "qcow2",
            "bare",
            {
                **common,
                "kernel_id": kernel,
                "ramdisk_id": ramdisk,
                "os_command_line": str(manifest.get("kernel_args") or ""),
                "hw_disk_bus": "virtio",
            },
        ),
    ]


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            yield chunk


async def register(records: Records, data: ImageData, folder: Path, owner: str) -> int:
    """Store and record each image not there yet; how many were made."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        log.info("no VM image in %s (make builds it): no VM image offered", folder)
        return 0
    manifest = orjson.loads(manifest_path.read_bytes())
    made = 0
    for name, filename, disk_format, container_format, properties in wanted(manifest):
        identifier = image_id(name)
        if records.get(kinds.IMAGES, identifier) is not None:
            continue
        stored = await data.receive(_chunks(folder / filename), LIMIT)
        formats = Formats(name, disk_format, container_format)
        made += await offer(records, data, identifier, stored, formats, properties, owner)
    return made
