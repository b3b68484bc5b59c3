"""Volumes and their snapshots through the compute API (`/os-volumes`, `/os-snapshots`,
Nova's Cinder proxy up to 2.35): list, detail, show, create and delete, answered by the
Block Storage API with the caller's token.

Cinder's volume reads in Nova's camelCase shape (`displayName`, `availabilityZone`,
`createdAt`, `attachments` with `serverId` / `volumeId` / `device`). Cinder's refusals keep
their status; a missing volume is Nova's 404 "Volume X could not be found.".
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.openstack.compute.server_requests import check_metadata
from unistack.openstack.compute.service import ComputeService, integer, is_uuid
from unistack.openstack.web import (
    OpenStackError,
    bad_request,
    empty,
    json_response,
    not_found,
    read_json,
)

Obj = dict[str, Any]
V3 = "/volume/v3"
VERSION = {"OpenStack-API-Version": "volume 3.0"}
SNAPSHOTS = "/v2.1/os-snapshots"


def volume_view(volume: Obj) -> Obj:
    attachments = [
        {
            "id": volume["id"],
            "volumeId": volume["id"],
            "serverId": a.get("server_id") or "",
            "device": a.get("device") or "",
        }
        for a in volume.get("attachments") or []
    ]
    return {
        "id": volume["id"],
        "status": volume.get("status"),
        "displayName": volume.get("name"),
        "displayDescription": volume.get("description"),
        "availabilityZone": volume.get("availability_zone") or "nova",
        "createdAt": volume.get("created_at"),
        "volumeType": volume.get("volume_type"),
        "snapshotId": volume.get("snapshot_id"),
        "metadata": volume.get("metadata") or {},
        "size": int(volume.get("size") or 0),
        "attachments": attachments,
    }


def snapshot_view(snapshot: Obj) -> Obj:
    return {
        "id": snapshot["id"],
        "volumeId": snapshot.get("volume_id"),
        "status": snapshot.get("status"),
        "size": int(snapshot.get("size") or 0),
        "createdAt": snapshot.get("created_at"),
        "displayName": snapshot.get("name"),
        "displayDescription": snapshot.get("description"),
    }


def _message(answer: Any) -> str:
    if isinstance(answer, dict):
        for value in answer.values():
            if isinstance(value, dict) and "message" in value:
                return str(value["message"])
    return "The volume request failed."


def _refused(status: int, answer: Any) -> OpenStackError:
    """Cinder's refusal passed on: its status (a 5xx as 500) and its message."""
    return OpenStackError(min(status, 500), _message(answer))


class Volumes:
    def __init__(self, service: ComputeService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        base = "/v2.1/os-volumes"
        return [
            Route(base, self.list_volumes, methods=["GET"]),
            Route(base, self.create_volume, methods=["POST"]),
            Route(f"{base}/detail", self.list_volumes_detail, methods=["GET"]),
            Route(f"{base}/{{volume_id}}", self.show_volume, methods=["GET"]),
            Route(f"{base}/{{volume_id}}", self.delete_volume, methods=["DELETE"]),
            Route(SNAPSHOTS, self.list_snapshots, methods=["GET"]),
            Route(SNAPSHOTS, self.create_snapshot, methods=["POST"]),
            Route(f"{SNAPSHOTS}/detail", self.list_snapshots, methods=["GET"]),
            Route(f"{SNAPSHOTS}/{{snapshot_id}}", self.show_snapshot, methods=["GET"]),
            Route(f"{SNAPSHOTS}/{{snapshot_id}}", self.delete_snapshot, methods=["DELETE"]),
        ]

    async def cinder(
        self, request: Request, method: str, path: str, body: Any = None, **params: str
    ) -> tuple[int, Any]:
        self.service.authenticate(request)
        return await self.service.call_as(
            request, method, f"{V3}{path}", body, VERSION, params or None
        )

    async def _listed(self, request: Request) -> list[Obj]:
        params = {k: v for k, v in request.query_params.items() if k in ("limit", "offset")}
        status, body = await self.cinder(request, "GET", "/volumes/detail", **params)
        if status != 200:
            raise _refused(status, body)
        return [volume_view(v) for v in body.get("volumes", [])]

    async def list_volumes(self, request: Request) -> Response:
        return json_response({"volumes": await self._listed(request)})

    async def list_volumes_detail(self, request: Request) -> Response:
        return json_response({"volumes": await self._listed(request)})

    async def show_volume(self, request: Request) -> Response:
        volume_id = request.path_params["volume_id"]
        status, body = await self.cinder(request, "GET", f"/volumes/{volume_id}")
        if status != 200:
            raise not_found(f"Volume {volume_id} could not be found.")
        return json_response({"volume": volume_view(body["volume"])})

    async def create_volume(self, request: Request) -> Response:
        body = (await read_json(request)).get("volume")
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute volume.")
        wanted: Obj = {"size": integer(body.get("size"), "size", 1)}
        for ours, theirs in (
            ("display_name", "name"),
            ("display_description", "description"),
            ("volume_type", "volume_type"),
            ("availability_zone", "availability_zone"),
            ("snapshot_id", "snapshot_id"),
        ):
            if body.get(ours) is not None:
                wanted[theirs] = body[ours]
        if "metadata" in body:
            wanted["metadata"] = check_metadata(body["metadata"])
        status, answer = await self.cinder(request, "POST", "/volumes", {"volume": wanted})
        if status != 202:
            raise _refused(status, answer)
        return json_response({"volume": volume_view(answer["volume"])})

    async def delete_volume(self, request: Request) -> Response:
        volume_id = request.path_params["volume_id"]
        if not is_uuid(volume_id):
            raise not_found(f"Volume {volume_id} could not be found.")
        status, answer = await self.cinder(request, "DELETE", f"/volumes/{volume_id}")
        if status == 404:
            raise not_found(f"Volume {volume_id} could not be found.")
        if status != 202:
            raise _refused(status, answer)
        return empty(202)

    # --- snapshots ------------------------------------------------------------------------

    async def list_snapshots(self, request: Request) -> Response:
        status, body = await self.cinder(request, "GET", "/snapshots/detail")
        if status != 200:
            raise _refused(status, body)
        return json_response({"snapshots": [snapshot_view(s) for s in body.get("snapshots", [])]})

    async def show_snapshot(self, request: Request) -> Response:
        snapshot_id = request.path_params["snapshot_id"]
        status, body = await self.cinder(request, "GET", f"/snapshots/{snapshot_id}")
        if status != 200:
            raise not_found(f"Snapshot {snapshot_id} could not be found.")
        return json_response({"snapshot": snapshot_view(body["snapshot"])})

    async def create_snapshot(self, request: Request) -> Response:
        body = (await read_json(request)).get("snapshot")
        if not isinstance(body, dict) or not body.get("volume_id"):
            raise bad_request("Invalid input for field/attribute snapshot.")
        wanted: Obj = {"volume_id": body["volume_id"], "force": bool(body.get("force"))}
        for ours, theirs in (("display_name", "name"), ("display_description", "description")):
            if body.get(ours) is not None:
                wanted[theirs] = body[ours]
        status, answer = await self.cinder(request, "POST", "/snapshots", {"snapshot": wanted})
        if status not in (200, 202):
            raise _refused(status, answer)
        return json_response({"snapshot": snapshot_view(answer["snapshot"])})

    async def delete_snapshot(self, request: Request) -> Response:
        snapshot_id = request.path_params["snapshot_id"]
        status, answer = await self.cinder(request, "DELETE", f"/snapshots/{snapshot_id}")
        if status == 404:
            raise not_found(f"Snapshot {snapshot_id} could not be found.")
        if status != 202:
            raise _refused(status, answer)
        return empty(202)
