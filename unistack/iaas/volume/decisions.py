"""What the volume controller should do with a volume or a snapshot: pure functions of the
object as cached (no I/O), so tests can assert them directly.

A marked object that still holds our finalizer is torn down; a volume `creating` is
provisioned (once: `status.provisioned` records it), one `extending` is grown, one
`uploading` is copied into the image `status.upload` names; a snapshot `creating` is taken;
a backup `creating` is copied off the pool, one `restoring` (with `status.restore`) is
restored into its volume. Anything else is at rest. Also here: what a volume made from an image
records of it, and whether a backend satisfies a volume type's extra specs.
"""

from __future__ import annotations

import datetime
import enum
import math
import uuid
from typing import Any

from unistack.iaas.records import spec_of, status_of
from unistack.iaas.volume.kinds import FINALIZER

Obj = dict[str, Any]
GIB = 1024**3
IMAGE_FIELDS = ("container_format", "disk_format", "min_disk", "min_ram", "checksum", "size")
IMAGE_SKIPPED = frozenset(
    {
        "id",
        "name",
        "status",
        "visibility",
        "owner",
        "protected",
        "file",
        "self",
        "schema",
        "tags",
        "created_at",
        "updated_at",
        "locations",
        "direct_url",
        "virtual_size",
        "os_hash_algo",
        "os_hash_value",
        "os_hidden",
        "stores",
    }
)


class Action(enum.Enum):
    NOTHING = "nothing"
    CREATE = "create"
    EXTEND = "extend"
    UPLOAD = "upload"
    RESTORE = "restore"
    TEAR_DOWN = "tear_down"


def decide(obj: Obj | None) -> Action:
    """The action for a volume or a snapshot."""
    if obj is None:
        return Action.NOTHING
    metadata = obj["metadata"]
    if metadata.get("deletionTimestamp"):
        held = FINALIZER in (metadata.get("finalizers") or [])
        return Action.TEAR_DOWN if held else Action.NOTHING
    status = status_of(obj).get("status")
    if status == "creating" and not status_of(obj).get("provisioned"):
        return Action.CREATE  # once: an admin resetting the status to creating is not intent
    if status == "extending":
        return Action.EXTEND
    if status == "uploading" and status_of(obj).get("upload"):
        return Action.UPLOAD
    return Action.NOTHING


def decide_backup(backup: Obj | None) -> Action:
    """The action for a backup: take it once, restore it while a restore is pending."""
    if backup is None:
        return Action.NOTHING
    metadata = backup["metadata"]
    if metadata.get("deletionTimestamp"):
        held = FINALIZER in (metadata.get("finalizers") or [])
        return Action.TEAR_DOWN if held else Action.NOTHING
    status = status_of(backup)
    if status.get("status") == "creating" and not status.get("provisioned"):
        return Action.CREATE
    if status.get("status") == "restoring" and status.get("restore"):
        return Action.RESTORE
    return Action.NOTHING


def restored_volume_status(volume: Obj | None) -> str | None:
    """How a restore into a new volume ended, by that volume's status: None while the
    volume is still being made from the backup."""
    if volume is None or volume["metadata"].get("deletionTimestamp"):
        return "error"
    status = status_of(volume).get("status")
    if status in ("creating", "restoring-backup"):
        return None
    return "available" if status == "available" else "error"


def unmatched_specs(extra_specs: dict[str, str], capabilities: dict[str, str]) -> list[str]:
    """The extra specs of a volume type a backend does not satisfy (Cinder's capabilities
    filter: a spec names a capability, bare or as `capabilities:<name>`; `<is> x` and plain
    values must equal it). Scoped specs of other filters (`hw:`, `RESKEY:`...) are not ours."""
    unmatched = []
    for key, wanted in extra_specs.items():
        name = key.removeprefix("capabilities:")
        if ":" in name or (name not in capabilities and not key.startswith("capabilities:")):
            continue
        value = wanted.removeprefix("<is>").strip() if isinstance(wanted, str) else wanted
        if str(capabilities.get(name)) != str(value):
            unmatched.append(key)
    return unmatched


def no_backend_message(volume: Obj, now: float) -> Obj:
    """The user message of a volume no backend could take (Cinder's VOLUME_VOLUME_001_002),
    with an id derived from the volume so that a retried reconcile writes it once."""
    volume_id = volume["metadata"]["name"]

    def iso(epoch: float) -> str:
        return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")

    return {
        "id": str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"unistack/volume-message/{volume_id}/no-backend")
        ),
        "project_id": spec_of(volume).get("project_id"),
        "request_id": f"req-{uuid.uuid5(uuid.NAMESPACE_URL, volume_id)}",
        "message_level": "ERROR",
        "event_id": "VOLUME_VOLUME_001_002",
        "user_message": "schedule allocate volume: Could not find any available weighted backend.",
        "resource_type": "VOLUME",
        "resource_uuid": volume_id,
        "created_at": iso(now),
        "guaranteed_until": iso(now + 30 * 86400),
    }


def source_of(volume: Obj) -> str | None:
    """What a volume is made from, as the backend names it."""
    spec = spec_of(volume)
    if spec.get("snapshot_id"):
        return str(spec["snapshot_id"])
    if spec.get("source_volid"):
        return str(spec["source_volid"])
    if spec.get("imageRef"):
        return f"image:{spec['imageRef']}"
    return None


def size_gb(size_bytes: int | None) -> int:
    """Bytes rounded up to whole GiB (at least 1)."""
    return max(1, math.ceil((size_bytes or 0) / GIB))


def image_metadata(image: Obj) -> dict[str, str]:
    """`volume_image_metadata` of a volume made from `image` (Glance's v2 view): Cinder's
    core fields, then the image's own properties, all as strings."""
    found = {"image_id": str(image.get("id", "")), "image_name": str(image.get("name") or "")}
    for key in IMAGE_FIELDS:
        if image.get(key) is not None:
            found[key] = str(image[key])
    for key, value in image.items():
        if key not in IMAGE_SKIPPED and key not in found and value is not None:
            found[key] = value if isinstance(value, str) else str(value)
    return found


def at_rest_status(volume: Obj) -> str:
    """Where a volume settles after an operation: in use while attached."""
    return "in-use" if status_of(volume).get("attach_status") == "attached" else "available"
