"""Generic volume groups (3.13) and group snapshots (3.14): a group holds volumes of the
volume types it names; a group snapshot snapshots every volume of a group at once.

Groups: create, list, detail, show, update (name, description, `add_volumes`,
`remove_volumes`), the `delete` action (with `delete-volumes`), `reset_status` (3.20, admin),
and `POST /groups/action` `create-from-src` (a source group or a group snapshot). Group
snapshots: create, list, detail, show, delete, `reset_status` (3.19, admin). A group's state
needs no backend work on the fake backend, so a group is available once recorded; a group
snapshot is as far along as its snapshots (unless an admin reset its status).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.records import spec_of, status_of
from unistack.iaas.volume import kinds
from unistack.openstack.auth import AuthContext
from unistack.openstack.volume.group_types import GroupTypes
from unistack.openstack.volume.service import (
    VolumeService,
    as_bool,
    check_text,
    new_id,
    now,
    page,
    read_member,
    require_version,
)
from unistack.openstack.volume.snapshots import Snapshots
from unistack.openstack.volume.types import VolumeTypes
from unistack.openstack.volume.volumes import Volumes
from unistack.openstack.web import bad_request, empty, json_response, read_json

Obj = dict[str, Any]
GROUP_STATUSES = frozenset({"available", "creating", "deleting", "error", "updating"})


def by_group(obj: Obj) -> list[str]:
    return [str(spec_of(obj).get("group_id") or "")]


def by_group_snapshot(obj: Obj) -> list[str]:
    return [str(spec_of(obj).get("group_snapshot_id") or "")]


def _ids(text: Any) -> list[str]:
    return [part.strip() for part in str(text or "").split(",") if part.strip()]


class Groups:
    def __init__(
        self,
        service: VolumeService,
        group_types: GroupTypes,
        types: VolumeTypes,
        volumes: Volumes,
        snapshots: Snapshots,
    ) -> None:
        self.service = service
        self.group_types = group_types
        self.types = types
        self.volumes = volumes
        self.snapshots = snapshots

    def routes(self) -> list[Route]:
        return [
            Route("/groups", self.create_group, methods=["POST"]),
            Route("/groups", self.list_groups, methods=["GET"]),
            Route("/groups/detail", self.list_groups_detail, methods=["GET"]),
            Route("/groups/action", self.create_group_from_source, methods=["POST"]),
            Route("/groups/{group_id}", self.show_group, methods=["GET"]),
            Route("/groups/{group_id}", self.update_group, methods=["PUT"]),
            Route("/groups/{group_id}/action", self.group_action, methods=["POST"]),
            Route("/group_snapshots", self.create_group_snapshot, methods=["POST"]),
            Route("/group_snapshots", self.list_group_snapshots, methods=["GET"]),
            Route("/group_snapshots/detail", self.list_group_snapshots_detail, methods=["GET"]),
            Route("/group_snapshots/{snapshot_id}", self.show_group_snapshot, methods=["GET"]),
            Route("/group_snapshots/{snapshot_id}", self.delete_group_snapshot, methods=["DELETE"]),
            Route(
                "/group_snapshots/{snapshot_id}/action",
                self.group_snapshot_action,
                methods=["POST"],
            ),
        ]

    # --- views ----------------------------------------------------------------------------

    def group_view(self, group: Obj, request: Request) -> Obj:
        spec, group_id = spec_of(group), group["metadata"]["name"]
        shown = {
            "id": group_id,
            "name": spec.get("name"),
            "description": spec.get("description"),
            "status": status_of(group).get("status", "available"),
            "availability_zone": spec.get("availability_zone"),
            "created_at": spec.get("created_at"),
            "group_type": spec.get("group_type"),
            "volume_types": spec.get("volume_types") or [],
            "group_snapshot_id": spec.get("group_snapshot_id"),
            "source_group_id": spec.get("source_group_id"),
        }
        if as_bool(request.query_params.get("list_volume", "false"), "list_volume"):
            held = self.service.records.indexed(kinds.VOLUMES, "group", group_id)
            shown["volumes"] = [v["metadata"]["name"] for v in held]
        return shown

    def group_snapshot_status(self, snapshot: Obj) -> str:
        held = status_of(snapshot)
        if held.get("pinned"):
            return str(held.get("status"))
        members = self.service.records.indexed(
            kinds.SNAPSHOTS, "group_snapshot", snapshot["metadata"]["name"]
        )
        states = {status_of(s).get("status") for s in members}
        for state in ("error", "creating", "deleting"):
            if state in states:
                return state
        return str(held.get("status") or "available")

    def group_snapshot_view(self, snapshot: Obj, detail: bool = True) -> Obj:
        spec = spec_of(snapshot)
        shown = {"id": snapshot["metadata"]["name"], "name": spec.get("name")}
        if detail:
            shown |= {
                "group_id": spec.get("group_id"),
                "group_type_id": spec.get("group_type_id"),
                "status": self.group_snapshot_status(snapshot),
                "description": spec.get("description"),
                "created_at": spec.get("created_at"),
            }
        return shown

    # --- groups ---------------------------------------------------------------------------

    async def create_group(self, request: Request) -> Response:
        require_version(request, "3.13")
        context = self.service.writer(request, "group:create")
        body = await read_member(request, "group")
        gtype = self.group_types.find(str(body.get("group_type") or ""), context)
        wanted = body.get("volume_types")
        if not isinstance(wanted, list) or not wanted:
            raise bad_request("Missing required element 'volume_types' in request body.")
        type_ids = [self.types.type_for_volume(t, context)["metadata"]["name"] for t in wanted]
        group = await self._record(body, context, gtype["metadata"]["name"], type_ids)
        return json_response({"group": _brief(group)}, 202)

    async def _record(
        self, body: Obj, context: AuthContext, group_type: str, type_ids: list[str], **extra: Any
    ) -> Obj:
        spec = {
            "project_id": context.project_id,
            "user_id": context.user_id,
            "name": check_text(body, "name") or "",
            "description": check_text(body, "description"),
            "availability_zone": body.get("availability_zone") or "nova",
            "group_type": group_type,
            "volume_types": type_ids,
            "created_at": now(),
            **extra,
        }
        status = {"status": "available"}
        return await self.service.records.create(kinds.GROUPS, new_id(), spec, status)

    def _listed(self, request: Request) -> list[Obj]:
        require_version(request, "3.13")
        context = self.service.reader(request)
        found = self.service.listed(kinds.GROUPS, request, context)
        return page(found, request, lambda obj, key: spec_of(obj).get(key))

    async def list_groups(self, request: Request) -> Response:
        return json_response({"groups": [_brief(g) for g in self._listed(request)]})

    async def list_groups_detail(self, request: Request) -> Response:
        shown = [self.group_view(g, request) for g in self._listed(request)]
        return json_response({"groups": shown})

    async def show_group(self, request: Request) -> Response:
        require_version(request, "3.13")
        context = self.service.reader(request)
        group = self.service.visible(kinds.GROUPS, request.path_params["group_id"], context)
        return json_response({"group": self.group_view(group, request)})

    async def update_group(self, request: Request) -> Response:
        require_version(request, "3.13")
        context = self.service.writer(request, "group:update")
        group = self.service.visible(kinds.GROUPS, request.path_params["group_id"], context)
        body = await read_member(request, "group", filled=True)
        group_id = group["metadata"]["name"]
        for volume_id in _ids(body.get("add_volumes")):
            volume = self.service.visible(kinds.VOLUMES, volume_id, context)
            self._may_join(group, volume)
            await self._set_volume_group(volume_id, group_id)
        for volume_id in _ids(body.get("remove_volumes")):
            volume = self.service.visible(kinds.VOLUMES, volume_id, context)
            if spec_of(volume).get("group_id") != group_id:
                raise bad_request(f"Invalid volume: Volume {volume_id} is not in the group.")
            await self._set_volume_group(volume_id, None)
        changes: Obj = {k: check_text(body, k) for k in ("name", "description") if k in body}
        if changes:
            await self.service.merge(kinds.GROUPS, group_id, changes)
        return empty(202)

    @staticmethod
    def _may_join(group: Obj, volume: Obj) -> None:
        volume_id = volume["metadata"]["name"]
        if spec_of(volume).get("volume_type") not in (spec_of(group).get("volume_types") or []):
            raise bad_request(f"Invalid volume: Volume {volume_id}'s type is not in the group.")
        if spec_of(volume).get("group_id"):
            raise bad_request(f"Invalid volume: Volume {volume_id} is already in a group.")
        if status_of(volume).get("status") not in ("available", "in-use"):
            raise bad_request(f"Invalid volume: Volume {volume_id} is not available.")

    async def _set_volume_group(self, volume_id: str, group_id: str | None) -> None:
        await self.service.merge(kinds.VOLUMES, volume_id, {"group_id": group_id})

    async def group_action(self, request: Request) -> Response:
        require_version(request, "3.13")
        body = await read_json(request)
        group_id = request.path_params["group_id"]
        if "reset_status" in body:
            require_version(request, "3.20")
            context = self.service.admin(request, "group:reset_status")
            self.service.visible(kinds.GROUPS, group_id, context)
            status = (body["reset_status"] or {}).get("status")
            if status not in GROUP_STATUSES:
                raise bad_request(f"Invalid input received: invalid group status {status}.")
            await self.service.merge(kinds.GROUPS, group_id, {"status": status}, status=True)
            return empty(202)
        if "delete" not in body:
            raise bad_request("Invalid request body: no recognised group action.")
        context = self.service.writer(request, "group:delete")
        group = self.service.visible(kinds.GROUPS, group_id, context)
        wanted = (body["delete"] or {}).get("delete-volumes", False)
        await self._delete_group(group, as_bool(wanted, "delete-volumes"))
        return empty(202)

    async def _delete_group(self, group: Obj, with_volumes: bool) -> None:
        group_id = group["metadata"]["name"]
        records = self.service.records
        held = records.indexed(kinds.VOLUMES, "group", group_id)
        if held and not with_volumes:
            raise bad_request(f"Invalid group: Group {group_id} still contains volumes.")
        if records.indexed(kinds.GROUP_SNAPSHOTS, "group", group_id):
            raise bad_request(f"Invalid group: Group {group_id} has group snapshots.")
        for volume in held:
            await self.volumes.delete(volume, cascade=True, with_group=True)
        await records.delete(kinds.GROUPS, group_id)

    async def create_group_from_source(self, request: Request) -> Response:
        require_version(request, "3.14")
        context = self.service.writer(request, "group:create_group_from_src")
        body = await read_member(request, "create-from-src")
        if body.get("group_snapshot_id"):
            group_snapshot = self.service.visible(
                kinds.GROUP_SNAPSHOTS, str(body["group_snapshot_id"]), context
            )
            source = self.service.visible(
                kinds.GROUPS, str(spec_of(group_snapshot).get("group_id")), context
            )
            origin = {"group_snapshot_id": group_snapshot["metadata"]["name"]}
        elif body.get("source_group_id"):
            source = self.service.visible(kinds.GROUPS, str(body["source_group_id"]), context)
            origin = {"source_group_id": source["metadata"]["name"]}
        else:
            raise bad_request("Either group_snapshot_id or source_group_id must be given.")
        spec = spec_of(source)
        group = await self._record(
            body, context, str(spec["group_type"]), list(spec["volume_types"]), **origin
        )
        await self._fill(group, origin, context)
        return json_response({"group": _brief(group)}, 202)

    async def _fill(self, group: Obj, origin: Obj, context: AuthContext) -> None:
        """The new group's volumes: one per volume of the source group, or per snapshot of
        the source group snapshot, made from it."""
        records, group_id = self.service.records, group["metadata"]["name"]
        if "group_snapshot_id" in origin:
            for snapshot in records.indexed(
                kinds.SNAPSHOTS, "group_snapshot", origin["group_snapshot_id"]
            ):
                volume = records.get(kinds.VOLUMES, spec_of(snapshot).get("volume_id"))
                body = {"snapshot_id": snapshot["metadata"]["name"], "group_id": group_id}
                await self.volumes.create(body | _typed(volume), context)
            return
        for volume in records.indexed(kinds.VOLUMES, "group", origin["source_group_id"]):
            body = {"source_volid": volume["metadata"]["name"], "group_id": group_id}
            await self.volumes.create(body | _typed(volume), context)

    # --- group snapshots ------------------------------------------------------------------

    async def create_group_snapshot(self, request: Request) -> Response:
        require_version(request, "3.14")
        context = self.service.writer(request, "group:create_group_snapshot")
        body = (await read_json(request)).get("group_snapshot")
        if not isinstance(body, dict) or not body.get("group_id"):
            raise bad_request("Missing required element 'group_id' in request body.")
        group = self.service.visible(kinds.GROUPS, str(body["group_id"]), context)
        group_id = group["metadata"]["name"]
        held = self.service.records.indexed(kinds.VOLUMES, "group", group_id)
        spec = {
            "project_id": spec_of(group).get("project_id"),
            "group_id": group_id,
            "group_type_id": spec_of(group).get("group_type"),
            "name": check_text(body, "name") or "",
            "description": check_text(body, "description"),
            "created_at": now(),
        }
        created = await self.service.records.create(
            kinds.GROUP_SNAPSHOTS, new_id(), spec, {"status": "creating"}
        )
        snapshot_id = created["metadata"]["name"]
        for volume in held:
            await self.snapshots.take(
                volume, {"force": True}, context, group_snapshot_id=snapshot_id
            )
        available = {"status": "available"}
        await self.service.merge(kinds.GROUP_SNAPSHOTS, snapshot_id, available, status=True)
        shown = {**_brief(created), "group_type_id": spec_of(created).get("group_type_id")}
        return json_response({"group_snapshot": shown}, 202)

    def _snapshots(self, request: Request) -> list[Obj]:
        require_version(request, "3.14")
        context = self.service.reader(request)
        found = self.service.listed(kinds.GROUP_SNAPSHOTS, request, context)
        return page(found, request, lambda obj, key: spec_of(obj).get(key))

    async def list_group_snapshots(self, request: Request) -> Response:
        shown = [self.group_snapshot_view(s, False) for s in self._snapshots(request)]
        return json_response({"group_snapshots": shown})

    async def list_group_snapshots_detail(self, request: Request) -> Response:
        shown = [self.group_snapshot_view(s) for s in self._snapshots(request)]
        return json_response({"group_snapshots": shown})

    async def show_group_snapshot(self, request: Request) -> Response:
        require_version(request, "3.14")
        context = self.service.reader(request)
        snapshot_id = request.path_params["snapshot_id"]
        snapshot = self.service.visible(kinds.GROUP_SNAPSHOTS, snapshot_id, context)
        return json_response({"group_snapshot": self.group_snapshot_view(snapshot)})

    async def delete_group_snapshot(self, request: Request) -> Response:
        require_version(request, "3.14")
        context = self.service.writer(request, "group:delete_group_snapshot")
        snapshot_id = request.path_params["snapshot_id"]
        snapshot = self.service.visible(kinds.GROUP_SNAPSHOTS, snapshot_id, context)
        if self.group_snapshot_status(snapshot) not in ("available", "error"):
            raise bad_request("Invalid group snapshot: must be available or error to delete.")
        records = self.service.records
        for member in records.indexed(kinds.SNAPSHOTS, "group_snapshot", snapshot_id):
            await self.snapshots.delete(member["metadata"]["name"])
        await records.delete(kinds.GROUP_SNAPSHOTS, snapshot_id)
        return empty(202)

    async def group_snapshot_action(self, request: Request) -> Response:
        require_version(request, "3.19")
        context = self.service.admin(request, "group:reset_group_snapshot_status")
        snapshot_id = request.path_params["snapshot_id"]
        self.service.visible(kinds.GROUP_SNAPSHOTS, snapshot_id, context)
        body = await read_json(request)
        status = (body.get("reset_status") or {}).get("status")
        if status not in ("available", "creating", "deleting", "error"):
            raise bad_request(f"Invalid input received: invalid group snapshot status {status}.")
        values = {"status": status, "pinned": True}
        await self.service.merge(kinds.GROUP_SNAPSHOTS, snapshot_id, values, status=True)
        return empty(202)


def _brief(obj: Obj) -> Obj:
    return {"id": obj["metadata"]["name"], "name": spec_of(obj).get("name")}


def _typed(volume: Obj | None) -> Obj:
    return {"volume_type": spec_of(volume).get("volume_type")} if volume else {}
