"""Snapshots: create (of an available volume, or an in-use one with `force`), list and
detail, show, update, delete, and the admin actions (`os-reset_status`,
`os-update_snapshot_status`, `os-force_delete`). The controller takes and frees them.
"""

from __future__ import annotations

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
    VolumeService,
    as_bool,
    check_metadata,
    described,
    new_id,
    next_links,
    now,
    page,
    read_member,
    renamed,
)
from unistack.openstack.web import bad_request, empty, json_response, read_json

Obj = dict[str, Any]
STATUSES = frozenset({"creating", "available", "deleting", "error", "error_deleting"})
FILTERS = ("name", "status", "volume_id")


class Snapshots:
    def __init__(self, service: VolumeService, quotas: Quotas) -> None:
        self.service = service
        self.quotas = quotas

    def routes(self) -> list[Route]:
        return [
            Route("/snapshots", self.create_snapshot, methods=["POST"]),
            Route("/snapshots", self.list_snapshots, methods=["GET"]),
            Route("/snapshots/detail", self.list_snapshots_detail, methods=["GET"]),
            Route("/snapshots/{snapshot_id}", self.show_snapshot, methods=["GET"]),
            Route("/snapshots/{snapshot_id}", self.update_snapshot, methods=["PUT"]),
            Route("/snapshots/{snapshot_id}", self.delete_snapshot, methods=["DELETE"]),
            Route("/snapshots/{snapshot_id}/action", self.snapshot_action, methods=["POST"]),
        ]

    async def create_snapshot(self, request: Request) -> Response:
        context = self.service.writer(request, "volume:create_snapshot")
        body = await read_member(request, "snapshot")
        if "volume_id" not in body:
            raise bad_request("Missing required element 'snapshot' in request body.")
        volume = self.service.visible(kinds.VOLUMES, str(body["volume_id"]), context)
        created = await self.take(volume, body, context)
        return json_response({"snapshot": views.snapshot_view(created)}, 202)

    async def take(self, volume: Obj, body: Obj, context: AuthContext, **extra: Any) -> Obj:
        """Check and record a snapshot of `volume` (the `snapshot` of a request body)."""
        force = as_bool(body.get("force", False), "force")
        status = status_of(volume).get("status")
        if status != "available" and not (force and status == "in-use"):
            raise bad_request(
                f"Invalid volume: Volume {volume['metadata']['name']} status must be "
                f"available, but current status is: {status}."
            )
        size = int(spec_of(volume).get("size") or 0)
        self.quotas.check_snapshot(str(spec_of(volume).get("project_id")), size)
        spec = {
            "project_id": spec_of(volume).get("project_id"),
            "user_id": context.user_id,
            "volume_id": volume["metadata"]["name"],
            **described(body),
            "metadata": check_metadata(body.get("metadata") or {}),
            "size": size,
            "created_at": now(),
            "updated_at": None,
            **extra,
        }
        return await self.service.records.create(
            kinds.SNAPSHOTS,
            new_id(),
            spec,
            {"status": "creating", "progress": "0%"},
            finalizers=(FINALIZER,),
        )

    def _filtered(self, request: Request) -> list[Obj]:
        context = self.service.reader(request)
        wanted = {k: request.query_params[k] for k in FILTERS if k in request.query_params}
        found = []
        for snapshot in self.service.listed(kinds.SNAPSHOTS, request, context):
            values = {**spec_of(snapshot), "status": status_of(snapshot).get("status")}
            if all(values.get(k) == v for k, v in wanted.items()):
                found.append(snapshot)
        return page(found, request, _sort_value)

    async def list_snapshots(self, request: Request) -> Response:
        shown = [views.snapshot_view(s) for s in self._filtered(request)]
        return json_response(_listing(request, shown))

    async def list_snapshots_detail(self, request: Request) -> Response:
        shown = [views.snapshot_detail(s) for s in self._filtered(request)]
        return json_response(_listing(request, shown))

    async def show_snapshot(self, request: Request) -> Response:
        context = self.service.reader(request)
        snapshot = self.service.visible(
            kinds.SNAPSHOTS, request.path_params["snapshot_id"], context
        )
        return json_response({"snapshot": views.snapshot_detail(snapshot)})

    async def update_snapshot(self, request: Request) -> Response:
        context = self.service.writer(request, "volume:update_snapshot")
        snapshot_id = request.path_params["snapshot_id"]
        self.service.visible(kinds.SNAPSHOTS, snapshot_id, context)
        body = await read_member(request, "snapshot", filled=True)
        changes = {**renamed(body), "updated_at": now()}
        updated = await self.service.merge(kinds.SNAPSHOTS, snapshot_id, changes)
        return json_response({"snapshot": views.snapshot_view(updated)})

    async def delete_snapshot(self, request: Request) -> Response:
        context = self.service.writer(request, "volume:delete_snapshot")
        snapshot = self.service.visible(
            kinds.SNAPSHOTS, request.path_params["snapshot_id"], context
        )
        if status_of(snapshot).get("status") not in ("available", "error", "error_deleting"):
            raise bad_request(
                "Invalid snapshot: Volume Snapshot status must be available or error or "
                "error_deleting."
            )
        await self.delete(snapshot["metadata"]["name"])
        return empty(202)

    async def delete(self, snapshot_id: str) -> None:
        """Mark the snapshot deleting and delete it; the controller lets go once the backend
        freed it."""
        deleting = {"status": "deleting"}
        await self.service.merge(kinds.SNAPSHOTS, snapshot_id, deleting, status=True)
        await self.service.records.delete(kinds.SNAPSHOTS, snapshot_id)

    async def snapshot_action(self, request: Request) -> Response:
        snapshot_id = request.path_params["snapshot_id"]
        body = await read_json(request)
        if "os-force_delete" in body:
            context = self.service.admin(
                request, "volume_extension:snapshot_admin_actions:force_delete"
            )
            self.service.visible(kinds.SNAPSHOTS, snapshot_id, context)
            await self.delete(snapshot_id)
            return empty(202)
        for name in ("os-reset_status", "os-update_snapshot_status"):
            if name in body:
                if name == "os-reset_status":
                    rule = "volume_extension:snapshot_admin_actions:reset_status"
                    context = self.service.admin(request, rule)
                else:  # Nova reports the progress of the snapshots it assists with
                    rule = "snapshot_extension:snapshot_actions:update_snapshot_status"
                    context = self.service.writer(request, rule)
                self.service.visible(kinds.SNAPSHOTS, snapshot_id, context)
                await self._set_status(snapshot_id, body[name])
                return empty(202)
        raise bad_request("Invalid request body: no recognised snapshot action.")

    async def _set_status(self, snapshot_id: str, given: Any) -> None:
        status = (given or {}).get("status") if isinstance(given, dict) else None
        if status not in STATUSES:
            raise bad_request(f"Invalid input received: invalid snapshot status {status}.")
        values: Obj = {"status": status}
        if isinstance(given, dict) and given.get("progress"):
            values["progress"] = str(given["progress"])
        await self.service.merge(kinds.SNAPSHOTS, snapshot_id, values, status=True)


def _listing(request: Request, shown: list[Obj]) -> Obj:
    links = next_links(request, shown)
    return {"snapshots": shown, "snapshots_links": links} if links else {"snapshots": shown}


def _sort_value(snapshot: Obj, key: str) -> Any:
    if key == "display_name":
        key = "name"
    if key == "id":
        return snapshot["metadata"]["name"]
    if key == "status":
        return status_of(snapshot).get("status")
    return spec_of(snapshot).get(key)
