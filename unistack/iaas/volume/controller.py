"""The volume controller (Cinder's volume manager): provisions on the backend what the API
recorded as intent, and tears it down when the object is deleted.

Informers on volumes and snapshots queue keys; a worker reads the object from the cache,
asks `decisions.decide` what to do, and acts: place and provision (the `Placement` picks
the host, recorded in `status.host` before the backend is asked; from an image it reads the
image through the image API, as Cinder asks Glance), extend (and, for an attached volume,
tell the compute service, as Cinder tells Nova), upload to an image (a backend
that keeps data copies it into Glance), snapshot, or tear down and let go of the finalizer.
Backups (cinder-backup's part): a backend that keeps the volume's data copies it (or the
snapshot's) into the registry, then the volume (or snapshot) settles back from `backing-up`;
a backup of a volume on the fake backend is state only, `available` at once with nothing
stored. A restore into an existing volume has the backend write the backup over it; one into
a new volume is the volume's own creation from the backup, which the backup waits for.
Failures of the backend or a missing image put the object in `error`; other errors are
retried with backoff. It runs under the service's Lease (`Platform.lead`): one worker of the
cluster provisions at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from unistack.iaas.crds import Kind
from unistack.iaas.records import Duplicate, Missing, Records, spec_of, status_of
from unistack.iaas.volume import decisions
from unistack.iaas.volume.backend import (
    Backend,
    BackendError,
    DataBackend,
    FixedPlacement,
    Placement,
)
from unistack.iaas.volume.decisions import Action
from unistack.iaas.volume.kinds import (
    ATTACHMENTS,
    BACKUPS,
    FINALIZER,
    MESSAGES,
    SNAPSHOTS,
    TYPES,
    VOLUMES,
)
from unistack.runtime.controller import Controller
from unistack.runtime.informer import object_key, split_key
from unistack.runtime.workqueue import WorkQueue

Obj = dict[str, Any]
ImageReader = Callable[[str], Awaitable[tuple[int, Any]]]  # image id -> (status, image)
ImageDeleter = Callable[[str], Awaitable[Any]]
# (volume id, server ids): tell the compute service the attached volume grew (Cinder's call to
# Nova's `os-server-external-events`, event `volume-extended`)
ExtendNotifier = Callable[[str, list[str]], Awaitable[None]]

log = logging.getLogger(__name__)
RESTORE_POLL = 0.25  # seconds between looks at a volume being made from a backup


def stamp() -> float:
    return time.time()


def artifact_of(backup: Obj) -> str:
    """The id the backup's data is stored under: its own, or an exported backup's."""
    return str(spec_of(backup).get("artifact") or backup["metadata"]["name"])


class VolumeController:
    """Reconciles volumes and snapshots against a `Backend`."""

    def __init__(
        self,
        records: Records,
        backend: Backend,
        read_image: ImageReader,
        *,
        placement: Placement | None = None,
        data: DataBackend | None = None,
        delete_image: ImageDeleter | None = None,
        notify_extended: ExtendNotifier | None = None,
    ) -> None:
        self.records = records
        self.backend = backend
        self.read_image = read_image
        self.placement: Placement = placement or FixedPlacement()
        self.data = data
        self.delete_image = delete_image
        self.notify_extended = notify_extended
        self._queues: dict[Kind, WorkQueue | None] = {
            VOLUMES: None,
            SNAPSHOTS: None,
            BACKUPS: None,
        }
        for kind in self._queues:
            self._watch(kind)

    def _watch(self, kind: Kind) -> None:
        def enqueue(obj: Obj) -> None:
            queue = self._queues[kind]
            if queue is not None:
                queue.add(object_key(obj))

        self.records.informer(kind).add_handlers(
            on_add=enqueue, on_update=lambda old, new: enqueue(new), on_delete=enqueue
        )

    async def run(self) -> None:
        """Work both queues until cancelled (while this process leads)."""
        controllers = []
        for kind, reconcile in (
            (VOLUMES, self.reconcile_volume),
            (SNAPSHOTS, self.reconcile_snapshot),
            (BACKUPS, self.reconcile_backup),
        ):
            queue = self._queues[kind] = WorkQueue(kind.plural)
            for obj in self.records.all(kind):
                queue.add(object_key(obj))
            controllers.append(Controller(f"{kind.plural} controller", queue, reconcile, workers=2))
        try:
            async with asyncio.TaskGroup() as group:
                for controller in controllers:
                    group.create_task(controller.run())
        finally:
            self._queues = dict.fromkeys(self._queues)

    # --- volumes --------------------------------------------------------------------------

    async def reconcile_volume(self, key: str) -> float | None:
        volume = self.records.get(VOLUMES, split_key(key)[1])
        action = decisions.decide(volume)
        if volume is None or action is Action.NOTHING:
            return None
        if action is Action.TEAR_DOWN:
            await self._tear_down(VOLUMES, volume, self.backend.delete_volume)
        elif action is Action.CREATE:
            await self._provision(volume)
        elif action is Action.EXTEND:
            await self._extend(volume)
        elif action is Action.UPLOAD:
            await self._upload(volume)
        return None

    async def _provision(self, volume: Obj) -> None:
        volume_id = volume["metadata"]["name"]
        spec = spec_of(volume)
        found: Obj = {}
        if not await self._schedulable(volume):
            return
        if spec.get("imageRef"):
            status, image = await self.read_image(str(spec["imageRef"]))
            if status != 200 or not isinstance(image, dict):
                log.warning("volume %s: image %s answered %s", volume_id, spec["imageRef"], status)
                await self._set_status(volume_id, {"status": "error"})
                return
            found = {"volume_image_metadata": decisions.image_metadata(image), "bootable": True}
        try:
            await self.backend.create_volume(
                volume_id, int(spec.get("size") or 1), decisions.source_of(volume)
            )
        except BackendError as exc:
            log.warning("volume %s: %s", volume_id, exc)
            await self._set_status(volume_id, {"status": "error"})
            return
        await self._set_status(volume_id, {**found, "status": "available", "provisioned": True})

    async def _schedulable(self, volume: Obj) -> bool:
        """Place the volume (once: `status.host` keeps the choice) on a backend that
        satisfies the volume type's extra specs; if none does the volume goes to error with
        a user message, as when Cinder's scheduler finds no backend."""
        if status_of(volume).get("host"):
            return True
        vtype = self.records.get(TYPES, spec_of(volume).get("volume_type"))
        extra_specs = spec_of(vtype).get("extra_specs") or {}
        volume_id = volume["metadata"]["name"]
        placed = await self.placement.place(volume, extra_specs)
        if placed is not None:
            await self._set_status(volume_id, {"host": placed.host, "backend": placed.backend})
            return True
        log.warning("volume %s: no backend satisfies its type's extra specs", volume_id)
        message = decisions.no_backend_message(volume, stamp())
        with contextlib.suppress(Duplicate):
            await self.records.create(MESSAGES, message.pop("id"), message)
        await self._set_status(volume_id, {"status": "error"})
        return False

    async def _extend(self, volume: Obj) -> None:
        volume_id = volume["metadata"]["name"]
        try:
            await self.backend.extend_volume(volume_id, int(spec_of(volume).get("size") or 1))
        except BackendError as exc:
            log.warning("volume %s: %s", volume_id, exc)
            await self._set_status(volume_id, {"status": "error_extending"})
            return
        await self._set_status(volume_id, {"status": decisions.at_rest_status(volume)})
        servers = [
            str(spec_of(attachment).get("instance_uuid"))
            for attachment in self.records.indexed(ATTACHMENTS, "volume", volume_id)
            if spec_of(attachment).get("status") == "attached"
            and spec_of(attachment).get("instance_uuid")
        ]
        if servers and self.notify_extended is not None:
            await self.notify_extended(volume_id, servers)

    async def _upload(self, volume: Obj) -> None:
        """Copy the volume into the image the upload action made; the volume settles back
        either way, and a failed upload's image goes (Cinder deletes it too)."""
        volume_id = volume["metadata"]["name"]
        upload = status_of(volume).get("upload") or {}
        image_id = str(upload.get("image_id") or "")
        try:
            if self.data is None:
                raise BackendError("this backend keeps no volume data to upload")
            disk_format = str(upload.get("disk_format") or "raw")
            await self.data.upload_volume(volume_id, image_id, disk_format)
        except BackendError as exc:
            log.warning("volume %s: upload to image %s failed: %s", volume_id, image_id, exc)
            if self.delete_image is not None:
                await self.delete_image(image_id)
        values = {"status": decisions.at_rest_status(volume), "upload": None}
        await self._write_status(VOLUMES, volume_id, values, "uploading")

    async def _set_status(self, volume_id: str, values: Obj) -> None:
        await self._write_status(VOLUMES, volume_id, values, "creating", "extending")

    async def _tear_down(
        self, kind: Kind, obj: Obj, free: Callable[[str], Awaitable[None]]
    ) -> None:
        """Free the object on the backend, then let go of it (it disappears)."""
        object_id = obj["metadata"]["name"]
        await free(object_id)
        await self.records.remove_finalizer(kind, object_id, FINALIZER)

    async def _write_status(self, kind: Kind, object_id: str, values: Obj, *expected: str) -> None:
        """Write `values` into the status unless the object left the `expected` states
        meanwhile (an admin reset it, say)."""

        def change(obj: Obj) -> None:
            if obj["status"].get("status") in expected:
                obj["status"].update(values)

        with contextlib.suppress(Missing):
            await self.records.update(kind, object_id, change, status=True)

    # --- snapshots ------------------------------------------------------------------------

    async def reconcile_snapshot(self, key: str) -> float | None:
        snapshot = self.records.get(SNAPSHOTS, split_key(key)[1])
        action = decisions.decide(snapshot)
        if snapshot is None or action is Action.NOTHING:
            return None
        if action is Action.TEAR_DOWN:
            await self._tear_down(SNAPSHOTS, snapshot, self.backend.delete_snapshot)
            return None
        snapshot_id = snapshot["metadata"]["name"]
        try:
            await self.backend.create_snapshot(snapshot_id, str(spec_of(snapshot)["volume_id"]))
            values = {"status": "available", "progress": "100%", "provisioned": True}
        except BackendError as exc:
            log.warning("snapshot %s: %s", snapshot_id, exc)
            values = {"status": "error"}
        await self._write_status(SNAPSHOTS, snapshot_id, values, "creating")
        return None

    # --- backups --------------------------------------------------------------------------

    async def reconcile_backup(self, key: str) -> float | None:
        backup = self.records.get(BACKUPS, split_key(key)[1])
        action = decisions.decide_backup(backup)
        if backup is None or action is Action.NOTHING:
            return None
        if action is Action.TEAR_DOWN:

            async def forget(backup_id: str) -> None:
                if self.data is not None and self._last_holder(backup):
                    await self.data.delete_backup(
                        artifact_of(backup), spec_of(backup).get("volume_id")
                    )

            await self._tear_down(BACKUPS, backup, forget)
        elif action is Action.CREATE:
            await self._back_up(backup)
        elif action is Action.RESTORE:
            return await self._restore(backup)
        return None

    def _last_holder(self, backup: Obj) -> bool:
        """Whether the backup is stored and no other backup shares its data (an imported
        backup record points at the exported backup's artifact)."""
        if not status_of(backup).get("stored"):
            return False
        artifact, own = artifact_of(backup), backup["metadata"]["name"]
        return not any(
            artifact_of(other) == artifact and other["metadata"]["name"] != own
            for other in self.records.all(BACKUPS)
        )

    def _keeps_data(self, volume_id: str | None) -> bool:
        return self.data is not None and bool(volume_id) and self.data.holds_data(str(volume_id))

    async def _back_up(self, backup: Obj) -> None:
        """Copy the volume (or the snapshot) off the pool; state only on the fake backend."""
        backup_id, spec = backup["metadata"]["name"], spec_of(backup)
        volume_id, snapshot_id = str(spec["volume_id"]), spec.get("snapshot_id")
        values: Obj = {"status": "available", "provisioned": True, "stored": False}
        try:
            if self.data is not None and self._keeps_data(volume_id):
                stored_bytes = await self.data.create_backup(backup_id, volume_id, snapshot_id)
                values.update(stored=True, stored_bytes=stored_bytes, object_count=1)
        except BackendError as exc:
            log.warning("backup %s: %s", backup_id, exc)
            values = {"status": "error", "provisioned": True, "fail_reason": str(exc)}
        await self._write_status(BACKUPS, backup_id, values, "creating")
        if snapshot_id:
            await self._write_status(SNAPSHOTS, snapshot_id, {"status": "available"}, "backing-up")
        volume = self.records.get(VOLUMES, volume_id)
        if volume is not None:
            settled = {"status": decisions.at_rest_status(volume)}
            await self._write_status(VOLUMES, volume_id, settled, "backing-up")

    async def _restore(self, backup: Obj) -> float | None:
        """Finish a restore: wait for a new volume to be made from the backup, or write the
        backup over an existing volume; the backup is available again either way."""
        backup_id = backup["metadata"]["name"]
        restore = status_of(backup).get("restore") or {}
        volume_id = str(restore.get("volume_id") or "")
        if restore.get("new"):
            if decisions.restored_volume_status(self.records.get(VOLUMES, volume_id)) is None:
                return RESTORE_POLL
        else:
            outcome = await self._restore_into(backup, volume_id)
            await self._write_status(VOLUMES, volume_id, {"status": outcome}, "restoring-backup")
        values = {"status": "available", "restore": None}
        await self._write_status(BACKUPS, backup_id, values, "restoring")
        return None

    async def _restore_into(self, backup: Obj, volume_id: str) -> str:
        """The volume's status after writing the backup over it (state only when neither
        the backup nor the volume keeps data; an error when only one of them does)."""
        stored, keeps = bool(status_of(backup).get("stored")), self._keeps_data(volume_id)
        try:
            if stored != keeps:
                raise BackendError("the backup and the volume are not both on a data backend")
            if stored and self.data is not None:
                await self.data.restore_backup(artifact_of(backup), volume_id)
        except BackendError as exc:
            log.warning("restoring backup %s: %s", backup["metadata"]["name"], exc)
            return "error_restoring"
        return "available"
