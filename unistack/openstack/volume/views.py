"""How Cinder shows volumes, snapshots and backups, by microversion and by who asks.

The create answer carries the plain attributes only; show and detail add the extension
attributes (`os-vol-tenant-attr:tenant_id`, `os-vol-host-attr:host` for admins, migration
status, `volume_image_metadata` when the volume came from an image). `group_id` appears from
3.13, `provider_id` from 3.21, `service_uuid` and `shared_targets` from 3.48, as Cinder adds
them. A backup shows its project (`os-backup-project-attr:project_id`) from 3.18 to admins,
its metadata from 3.43. Tempest validates these with `additionalProperties: false`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from unistack.iaas.records import Records, spec_of, status_of
from unistack.iaas.volume import kinds
from unistack.openstack.auth import AuthContext
from unistack.openstack.microversion import Version, version_of
from unistack.openstack.volume.service import POOL_HOST, link

Obj = dict[str, Any]
SERVICE_UUID = "2f0ab4c1-5c0d-5c59-9b1e-6b0a3c0ab0a1"


def type_name(records: Records, type_id: str | None) -> str | None:
    found = records.get(kinds.TYPES, type_id)
    return spec_of(found).get("name") if found else type_id


def attachments_of(records: Records, volume_id: str) -> list[Obj]:
    """The volume's attachments as a volume shows them (attached ones only)."""
    shown = []
    for attachment in records.indexed(kinds.ATTACHMENTS, "volume", volume_id):
        spec = spec_of(attachment)
        if spec.get("status") != "attached":
            continue
        shown.append(
            {
                "server_id": spec.get("instance_uuid"),
                "attachment_id": attachment["metadata"]["name"],
                "attached_at": spec.get("attached_at"),
                "host_name": spec.get("host_name"),
                "volume_id": volume_id,
                "device": spec.get("mountpoint"),
                "id": volume_id,
            }
        )
    return shown


def image_metadata(volume: Obj) -> dict[str, str] | None:
    return status_of(volume).get("volume_image_metadata") or spec_of(volume).get(
        "volume_image_metadata"
    )


def bootable(volume: Obj) -> bool:
    spec = spec_of(volume)
    if "bootable" in spec:
        return bool(spec["bootable"])
    return bool(status_of(volume).get("bootable"))


def volume_view(records: Records, volume: Obj, request: Request, version: Version) -> Obj:
    """The attributes of a created (or updated) volume."""
    spec, volume_id = spec_of(volume), volume["metadata"]["name"]
    shown: Obj = {
        "id": volume_id,
        "name": spec.get("name"),
        "description": spec.get("description"),
        "size": int(spec.get("size") or 0),
        "status": status_of(volume).get("status", "creating"),
        "availability_zone": spec.get("availability_zone"),
        "created_at": spec.get("created_at"),
        "updated_at": spec.get("updated_at"),
        "attachments": attachments_of(records, volume_id),
        "links": link(request, "volumes", volume_id),
        "encrypted": bool(
            spec_of(records.get(kinds.TYPES, spec.get("volume_type"))).get("encryption")
        ),
        "replication_status": None,
        "migration_status": None,
        "snapshot_id": spec.get("snapshot_id"),
        "source_volid": spec.get("source_volid"),
        "user_id": spec.get("user_id"),
        "metadata": spec.get("metadata") or {},
        "multiattach": bool(spec.get("multiattach")),
        "consistencygroup_id": None,
        "bootable": "true" if bootable(volume) else "false",
        "volume_type": type_name(records, spec.get("volume_type")),
    }
    if version.at_least("3.13"):
        shown["group_id"] = spec.get("group_id")
    if version.at_least("3.21"):
        shown["provider_id"] = None
    if version.at_least("3.48"):
        shown["service_uuid"] = SERVICE_UUID
        shown["shared_targets"] = False
    return shown


def volume_detail(
    records: Records, volume: Obj, request: Request, version: Version, context: AuthContext
) -> Obj:
    """A volume as show and list-detail give it."""
    shown = volume_view(records, volume, request, version)
    shown["os-vol-tenant-attr:tenant_id"] = spec_of(volume).get("project_id")
    if context.is_admin:
        shown["os-vol-host-attr:host"] = status_of(volume).get("host") or POOL_HOST
        shown["os-vol-mig-status-attr:migstat"] = None
        shown["os-vol-mig-status-attr:name_id"] = None
    found = image_metadata(volume)
    if found:
        shown["volume_image_metadata"] = found
    return shown


def snapshot_view(snapshot: Obj) -> Obj:
    spec = spec_of(snapshot)
    return {
        "id": snapshot["metadata"]["name"],
        "name": spec.get("name"),
        "description": spec.get("description"),
        "volume_id": spec.get("volume_id"),
        "size": int(spec.get("size") or 0),
        "status": status_of(snapshot).get("status", "creating"),
        "metadata": spec.get("metadata") or {},
        "created_at": spec.get("created_at"),
        "updated_at": spec.get("updated_at"),
    }


def snapshot_detail(snapshot: Obj) -> Obj:
    shown = snapshot_view(snapshot)
    shown["os-extended-snapshot-attributes:progress"] = status_of(snapshot).get("progress", "0%")
    shown["os-extended-snapshot-attributes:project_id"] = spec_of(snapshot).get("project_id")
    return shown


def backup_view(backup: Obj, request: Request) -> Obj:
    """The attributes of a created, updated or listed backup."""
    backup_id = backup["metadata"]["name"]
    shown: Obj = {
        "id": backup_id,
        "name": spec_of(backup).get("name"),
        "links": link(request, "backups", backup_id),
    }
    if version_of(request).at_least("3.43"):
        shown["metadata"] = spec_of(backup).get("metadata") or {}
    return shown


def backup_detail(
    backup: Obj, request: Request, context: AuthContext, *, has_dependents: bool
) -> Obj:
    """A backup as show and list-detail give it."""
    spec, status = spec_of(backup), status_of(backup)
    shown = backup_view(backup, request)
    shown.update(
        description=spec.get("description"),
        status=status.get("status", "creating"),
        size=int(spec.get("size") or 0),
        object_count=int(status.get("object_count") or 0),
        container=spec.get("container"),
        availability_zone=spec.get("availability_zone"),
        created_at=spec.get("created_at"),
        updated_at=spec.get("updated_at"),
        fail_reason=status.get("fail_reason"),
        volume_id=spec.get("volume_id"),
        snapshot_id=spec.get("snapshot_id"),
        is_incremental=bool(spec.get("is_incremental")),
        has_dependent_backups=has_dependents,
        data_timestamp=spec.get("data_timestamp"),
    )
    if version_of(request).at_least("3.18") and context.is_admin:
        shown["os-backup-project-attr:project_id"] = spec.get("project_id")
    return shown
