"""Backups (cinder-backup's API): create (of an available volume, an in-use one with `force`,
or one of its snapshots), list and detail, show, update (3.9), delete, restore (into a new
volume, or over an available one at least as big), the admin actions (`os-reset_status`,
`os-force_delete`) and the backup records an admin exports and imports.

Create records intent (status `creating`, our finalizer) and puts the volume (or the
snapshot) in `backing-up`; the controller copies the data off the pool (a backup of a
volume on the fake backend is state only) and settles both. A backup remembers the volume's
metadata and bootability, which a restore gives the volume back, as Cinder's backup of the
volume's database record does. `incremental` needs an earlier backup of the volume and is
recorded (`is_incremental`, the parent's `has_dependent_backups`), but the data is a full
copy each time. Restoring into a new volume creates it from the backup (the controller's
volume path pulls the data); restoring over an existing one marks it `restoring-backup` and
the controller writes the data over it.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.records import spec_of, status_of
from unistack.iaas.volume import kinds
from unistack.iaas.volume.kinds import FINALIZER
from unistack.openstack.auth import AuthContext
from unistack.openstack.volume import views
from unistack.openstack.volume.quotas import Quotas
from unistack.openstack.volume.service import (
    ZONE,
    VolumeService,
    as_bool,
    check_metadata,
    check_text,
    described,
    microversion,
    new_id,
    next_links,
    now,
    page,
    read_member,
    renamed,
    require_version,
)
from unistack.openstack.volume.volumes import Volumes
from unistack.openstack.web import bad_request, empty, json_response, read_json

Obj = dict[str, Any]
STATUSES = frozenset({"available", "error"})  # what an admin may reset a backup to
FILTERS = ("name", "status", "volume_id")
BACKUP_SERVICE = "cinder.backup.drivers.unistack.RegistryBackupDriver"
RECORD_FIELDS = (
    "volume_id",
    "snapshot_id",
    "name",
    "description",
    "container",
    "metadata",
    "size",
    "is_incremental",
    "parent_id",
    "data_timestamp",
    "volume_metadata",
    "bootable",
    "volume_image_metadata",
    "artifact",
)


class Backups:
    def __init__(self, service: VolumeService, quotas: Quotas, volumes: Volumes) -> None:
        self.service = service
        self.quotas = quotas
        self.volumes = volumes

    def routes(self) -> list[Route]:
        return [
            Route("/backups", self.create_backup, methods=["POST"]),
            Route("/backups", self.list_backups, methods=["GET"]),
            Route("/backups/detail", self.list_backups_detail, methods=["GET"]),
            Route("/backups/import_record", self.import_record, methods=["POST"]),
            Route("/backups/{backup_id}", self.show_backup, methods=["GET"]),
            Route("/backups/{backup_id}", self.update_backup, methods=["PUT"]),
            Route("/backups/{backup_id}", self.delete_backup, methods=["DELETE"]),
            Route("/backups/{backup_id}/restore", self.restore_backup, methods=["POST"]),
            Route("/backups/{backup_id}/action", self.backup_action, methods=["POST"]),
            Route("/backups/{backup_id}/export_record", self.export_record, methods=["GET"]),
        ]

    # --- create ---------------------------------------------------------------------------

    async def create_backup(self, request: Request) -> Response:
        context = self.service.writer(request, "backup:create")
        body = await read_member(request, "backup")
        volume_id = body.get("volume_id")
        if not isinstance(volume_id, str) or not volume_id:
            raise bad_request(f"Invalid input for field/attribute volume_id. Value: {volume_id}.")
        volume = self.service.visible(kinds.VOLUMES, volume_id, context)
        snapshot = self._snapshot_of(body, volume, context)
        if snapshot is None:
            _check_volume(volume, as_bool(body.get("force", False), "force"))
        spec = self._new_spec(body, volume, snapshot, context)
        self.quotas.check_backup(spec["project_id"], spec["size"])
        source_kind, source_id = (
            (kinds.SNAPSHOTS, snapshot["metadata"]["name"])
            if snapshot is not None
            else (kinds.VOLUMES, volume_id)
        )
        await self.service.merge(source_kind, source_id, {"status": "backing-up"}, status=True)
        created = await self.service.records.create(
            kinds.BACKUPS,
            new_id(),
            spec,
            {"status": "creating", "object_count": 0, "fail_reason": None},
            finalizers=(FINALIZER,),
        )
        return json_response({"backup": views.backup_view(created, request)}, 202)

    def _snapshot_of(self, body: Obj, volume: Obj, context: AuthContext) -> Obj | None:
        """The snapshot to back up instead of the volume, if the body names one."""
        if not body.get("snapshot_id"):
            return None
        snapshot = self.service.visible(kinds.SNAPSHOTS, str(body["snapshot_id"]), context)
        if spec_of(snapshot).get("volume_id") != volume["metadata"]["name"]:
            raise bad_request(
                f"Invalid snapshot: Snapshot {snapshot['metadata']['name']} is not a snapshot "
                f"of volume {volume['metadata']['name']}."
            )
        status = status_of(snapshot).get("status")
        if status != "available":
            raise bad_request(
                "Invalid snapshot: Snapshot to be backed up must be available, but the current "
                f'status is "{status}".'
            )
        return snapshot

    def _new_spec(self, body: Obj, volume: Obj, snapshot: Obj | None, context: AuthContext) -> Obj:
        volume_id, volume_spec = volume["metadata"]["name"], spec_of(volume)
        incremental = as_bool(body.get("incremental", False), "incremental")
        stamp = now()
        return {
            "project_id": context.project_id or volume_spec.get("project_id"),
            "user_id": context.user_id,
            "volume_id": volume_id,
            "snapshot_id": snapshot["metadata"]["name"] if snapshot is not None else None,
            **described(body),
            "container": check_text(body, "container"),
            "metadata": check_metadata(body.get("metadata") or {}),
            "size": int(volume_spec.get("size") or 0),
            "is_incremental": incremental,
            "parent_id": self._parent(volume_id) if incremental else None,
            "availability_zone": ZONE,
            "created_at": stamp,
            "updated_at": None,
            "data_timestamp": spec_of(snapshot).get("created_at") if snapshot else stamp,
            "volume_metadata": dict(volume_spec.get("metadata") or {}),
            "bootable": views.bootable(volume),
            "volume_image_metadata": views.image_metadata(volume),
        }

    def _parent(self, volume_id: str) -> str:
        """The latest available backup of the volume, which an incremental one follows."""
        found = [
            b
            for b in self.service.records.indexed(kinds.BACKUPS, "volume", volume_id)
            if status_of(b).get("status") == "available"
            and not b["metadata"].get("deletionTimestamp")
        ]
        if not found:
            raise bad_request("Invalid backup: No backups available to do an incremental backup.")
        latest = max(found, key=lambda b: str(spec_of(b).get("created_at")))
        return str(latest["metadata"]["name"])

    # --- reads ----------------------------------------------------------------------------

    def _filtered(self, request: Request, context: AuthContext) -> list[Obj]:
        wanted = {k: request.query_params[k] for k in FILTERS if k in request.query_params}
        found = []
        for backup in self.service.listed(kinds.BACKUPS, request, context):
            values = {**spec_of(backup), "status": status_of(backup).get("status")}
            if all(values.get(k) == v for k, v in wanted.items()):
                found.append(backup)
        return page(found, request, _sort_value)

    async def list_backups(self, request: Request) -> Response:
        context = self.service.reader(request)
        shown = [views.backup_view(b, request) for b in self._filtered(request, context)]
        return json_response(_listing(request, shown))

    async def list_backups_detail(self, request: Request) -> Response:
        context = self.service.reader(request)
        shown = [self._detail(b, request, context) for b in self._filtered(request, context)]
        return json_response(_listing(request, shown))

    async def show_backup(self, request: Request) -> Response:
        context = self.service.reader(request)
        backup = self.service.visible(kinds.BACKUPS, request.path_params["backup_id"], context)
        return json_response({"backup": self._detail(backup, request, context)})

    def _detail(self, backup: Obj, request: Request, context: AuthContext) -> Obj:
        dependent = any(
            not child["metadata"].get("deletionTimestamp")
            for child in self.service.records.indexed(
                kinds.BACKUPS, "parent", backup["metadata"]["name"]
            )
        )
        return views.backup_detail(backup, request, context, has_dependents=dependent)

    # --- update and delete ----------------------------------------------------------------

    async def update_backup(self, request: Request) -> Response:
        require_version(request, "3.9")
        context = self.service.writer(request, "backup:update")
        backup_id = request.path_params["backup_id"]
        self.service.visible(kinds.BACKUPS, backup_id, context)
        body = await read_member(request, "backup", filled=True)
        changes = {**renamed(body), "updated_at": now()}
        if "metadata" in body and microversion(request).at_least("3.43"):
            changes["metadata"] = check_metadata(body["metadata"])
        updated = await self.service.merge(kinds.BACKUPS, backup_id, changes)
        return json_response({"backup": views.backup_view(updated, request)})

    async def delete_backup(self, request: Request) -> Response:
        context = self.service.writer(request, "backup:delete")
        backup = self.service.visible(kinds.BACKUPS, request.path_params["backup_id"], context)
        if status_of(backup).get("status") not in ("available", "error"):
            raise bad_request("Invalid backup: Backup status must be available or error")
        if self._detail(backup, request, context)["has_dependent_backups"]:
            raise bad_request("Invalid backup: Incremental backups exist for this backup.")
        await self.delete(backup["metadata"]["name"])
        return empty(202)

    async def delete(self, backup_id: str) -> None:
        """Mark the backup deleting and delete it; the controller lets go once the data is
        gone."""
        deleting = {"status": "deleting"}
        await self.service.merge(kinds.BACKUPS, backup_id, deleting, status=True)
        await self.service.records.delete(kinds.BACKUPS, backup_id)

    async def backup_action(self, request: Request) -> Response:
        backup_id = request.path_params["backup_id"]
        body = await read_json(request)
        if "os-force_delete" in body:
            context = self.service.admin(request, "backup:force_delete")
            self.service.visible(kinds.BACKUPS, backup_id, context)
            await self.delete(backup_id)
            return empty(202)
        if "os-reset_status" in body:
            context = self.service.admin(request, "backup:reset_status")
            self.service.visible(kinds.BACKUPS, backup_id, context)
            given = body["os-reset_status"]
            status = given.get("status") if isinstance(given, dict) else None
            if status not in STATUSES:
                raise bad_request(f"Invalid input received: invalid backup status {status}.")
            values = {"status": status, "restore": None}
            await self.service.merge(kinds.BACKUPS, backup_id, values, status=True)
            return empty(202)
        raise bad_request("Invalid request body: no recognised backup action.")

    # --- restore --------------------------------------------------------------------------

    async def restore_backup(self, request: Request) -> Response:
        context = self.service.writer(request, "backup:restore")
        backup = self.service.visible(kinds.BACKUPS, request.path_params["backup_id"], context)
        body = await read_member(request, "restore")
        if status_of(backup).get("status") != "available":
            raise bad_request("Invalid backup: Backup status must be available")
        if body.get("volume_id"):
            volume = await self._restore_over(backup, str(body["volume_id"]), context)
        else:
            volume = await self._restore_new(backup, check_text(body, "name"), context)
        restore = {"volume_id": volume["metadata"]["name"], "new": not body.get("volume_id")}
        values = {"status": "restoring", "restore": restore}
        await self.service.merge(kinds.BACKUPS, backup["metadata"]["name"], values, status=True)
        answer = {
            "backup_id": backup["metadata"]["name"],
            "volume_id": volume["metadata"]["name"],
            "volume_name": spec_of(volume).get("name") or "",
        }
        return json_response({"restore": answer}, 202)

    async def _restore_over(self, backup: Obj, volume_id: str, context: AuthContext) -> Obj:
        """Check the existing volume and mark it `restoring-backup`, with the backed-up
        volume's metadata."""
        volume = self.service.visible(kinds.VOLUMES, volume_id, context)
        if status_of(volume).get("status") != "available":
            raise bad_request("Invalid volume: Volume to be restored to must be available")
        size, needed = int(spec_of(volume).get("size") or 0), int(spec_of(backup).get("size") or 0)
        if size < needed:
            raise bad_request(
                f"Invalid volume: volume size {size} is too small to restore backup of size "
                f"{needed}."
            )
        metadata = {**(spec_of(volume).get("metadata") or {}), **_volume_metadata(backup)}
        await self.service.merge(kinds.VOLUMES, volume_id, {"metadata": metadata})
        return await self.service.merge(
            kinds.VOLUMES, volume_id, {"status": "restoring-backup"}, status=True
        )

    async def _restore_new(self, backup: Obj, name: str | None, context: AuthContext) -> Obj:
        """A new volume made from the backup (an empty one when the backup holds no data:
        a backup of a volume on the fake backend)."""
        backup_id, spec = backup["metadata"]["name"], spec_of(backup)
        body = {
            "size": int(spec.get("size") or 1),
            "name": name or f"restore_backup_{backup_id}",
            "description": "auto-created_from_restore_from_backup",
            "metadata": _volume_metadata(backup),
        }
        extra: Obj = {}
        if status_of(backup).get("stored"):
            extra["backup_id"] = spec.get("artifact") or backup_id
        if spec.get("bootable"):
            extra["bootable"] = True
        if spec.get("volume_image_metadata"):
            extra["volume_image_metadata"] = spec["volume_image_metadata"]
        return await self.volumes.create(body, context, extra=extra)

    # --- backup records (admin) -----------------------------------------------------------

    async def export_record(self, request: Request) -> Response:
        context = self.service.admin(request, "backup:export-import")
        backup = self.service.visible(kinds.BACKUPS, request.path_params["backup_id"], context)
        if status_of(backup).get("status") != "available":
            raise bad_request("Invalid backup: Backup status must be available")
        spec = spec_of(backup)
        record = {key: spec.get(key) for key in RECORD_FIELDS}
        record.update(
            id=backup["metadata"]["name"],
            artifact=spec.get("artifact") or backup["metadata"]["name"],
            stored=bool(status_of(backup).get("stored")),
        )
        url = base64.b64encode(json.dumps(record).encode()).decode()
        shown = {"backup_service": BACKUP_SERVICE, "backup_url": url}
        return json_response({"backup-record": shown})

    async def import_record(self, request: Request) -> Response:
        context = self.service.admin(request, "backup:export-import")
        body = await read_member(request, "backup-record")
        if body.get("backup_service") != BACKUP_SERVICE:
            raise bad_request(
                f"Invalid input received: unknown backup service {body.get('backup_service')}."
            )
        record = _decoded(body.get("backup_url"))
        backup_id = str(record.get("id") or "")
        if not backup_id or self.service.records.get(kinds.BACKUPS, backup_id) is not None:
            raise bad_request("Invalid backup: Backup already exists in database.")
        spec = {key: record.get(key) for key in RECORD_FIELDS}
        spec.update(
            project_id=context.project_id,
            user_id=context.user_id,
            availability_zone=ZONE,
            created_at=now(),
            updated_at=None,
            parent_id=None,
        )
        status = {
            "status": "available",
            "provisioned": True,
            "stored": bool(record.get("stored")),
            "object_count": 1 if record.get("stored") else 0,
            "fail_reason": None,
        }
        created = await self.service.records.create(
            kinds.BACKUPS, backup_id, spec, status, finalizers=(FINALIZER,)
        )
        return json_response({"backup": views.backup_view(created, request)}, 201)


def _check_volume(volume: Obj, force: bool) -> None:
    """Cinder's rule: available, or in-use with `force`."""
    status = status_of(volume).get("status")
    if status == "in-use" and not force:
        raise bad_request("Invalid volume: Backing up an in-use volume must use the force flag.")
    if status not in ("available", "in-use"):
        raise bad_request(
            "Invalid volume: Volume to be backed up must be available or in-use, but the "
            f'current status is "{status}".'
        )


def _volume_metadata(backup: Obj) -> dict[str, str]:
    return dict(spec_of(backup).get("volume_metadata") or {})


def _decoded(url: Any) -> Obj:
    """The backup record inside an exported `backup_url` (base64 of JSON)."""
    try:
        record = json.loads(base64.b64decode(str(url), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise bad_request("Invalid input received: the backup_url is not a backup record.") from exc
    if not isinstance(record, dict):
        raise bad_request("Invalid input received: the backup_url is not a backup record.")
    return record


def _listing(request: Request, shown: list[Obj]) -> Obj:
    answer: Obj = {"backups": shown}
    links = next_links(request, shown)
    if links:
        answer["backups_links"] = links
    if microversion(request).at_least("3.45") and request.query_params.get("with_count"):
        answer["count"] = len(shown)
    return answer


def _sort_value(backup: Obj, key: str) -> Any:
    if key == "display_name":
        key = "name"
    if key == "id":
        return backup["metadata"]["name"]
    if key == "status":
        return status_of(backup).get("status")
    return spec_of(backup).get(key)
