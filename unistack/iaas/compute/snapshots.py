"""Server snapshots (`createImage`) through the Image API, as Nova's snapshot does it.

The API creates the image record at once (queued, owned by the caller's project, with
`instance_uuid`, `image_type: snapshot` and `base_image_ref`); the controller then writes
its data: the fake driver's disk is the image the server booted from, so the snapshot's
bytes are that image's, read and written through the `Caller` as raw bytes.
"""

from __future__ import annotations

from typing import Any

from unistack.iaas.compute.ports import Caller

Obj = dict[str, Any]
IMAGES = "/image/v2/images"
OCTETS = {"content-type": "application/octet-stream"}


class SnapshotError(Exception):
    pass


def snapshot_image(server: Obj, name: str, metadata: dict[str, str], source: Obj | None) -> Obj:
    """The Glance create body of a server's snapshot."""
    spec = server.get("spec") or {}
    flavor = spec.get("flavor") or {}
    body: Obj = {
        "name": name,
        "container_format": (source or {}).get("container_format") or "bare",
        "disk_format": (source or {}).get("disk_format") or "raw",
        "visibility": "private",
        "min_disk": int(flavor.get("disk") or 0),
        "min_ram": int((source or {}).get("min_ram") or 0),
        "instance_uuid": server["metadata"]["name"],
        "image_type": "snapshot",
        "user_id": str(spec.get("user_id") or ""),
        **metadata,
    }
    if spec.get("image_ref"):
        body["base_image_ref"] = spec["image_ref"]
    return body


async def write_snapshot(caller: Caller, source_id: str | None, image_id: str) -> None:
    """Copy the source image's bytes into the snapshot (empty when booted from a volume)."""
    data = b""
    if source_id:
        status, body = await caller.call("GET", f"{IMAGES}/{source_id}/file")
        if status == 200 and isinstance(body, bytes):
            data = body
    status, _ = await caller.call("PUT", f"{IMAGES}/{image_id}/file", data, headers=OCTETS)
    if status != 204:
        raise SnapshotError(f"Uploading the snapshot {image_id} failed: {status}")
