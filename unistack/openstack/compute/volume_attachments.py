"""Volume attachments (`/servers/{id}/os-volume_attachments`), through the Block Storage
attachments API (`unistack.iaas.compute.volumes`), as Nova v2.1.

Attaching needs a server that is running or stopped with no task under way (else 409), and
a volume the server's project can see (else 404); Cinder refusing (a volume in use) is a
400. The attachment is recorded on the server's status, so the server's details list it
and deleting the server detaches it. An attachment has a device `tag` (asked from 2.49,
shown from 2.70) and `delete_on_termination` (2.79); from 2.89 it shows the Cinder
attachment id and its block device mapping's id instead of the old `id`. From 2.20 a
shelved (or offloaded) server takes and gives up volumes too.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.compute import kinds
from unistack.iaas.compute.volumes import VolumeError, Volumes, next_device
from unistack.iaas.records import spec_of, status_of
from unistack.openstack.auth import AuthContext, require_admin, require_member
from unistack.openstack.compute.server_requests import check_multiattach, check_tag
from unistack.openstack.compute.service import (
    ComputeService,
    boolean,
    is_uuid,
    microversion,
    now_text,
    require_attachable,
)
from unistack.openstack.microversion import Version
from unistack.openstack.web import (
    OpenStackError,
    bad_request,
    empty,
    json_response,
    not_found,
    read_json,
)

Obj = dict[str, Any]
ASSISTED = "/v2.1/os-assisted-volume-snapshots"


def attachment_view(server_id: str, item: Obj, version: Version) -> Obj:
    """An attachment at the request's version: its `tag` from 2.70, whether the volume goes
    with the server (`delete_on_termination`) from 2.79, and from 2.89 the Cinder
    attachment and block device mapping ids instead of the old `id`."""
    volume_id = item["volume_id"]
    view: Obj = {"serverId": server_id, "volumeId": volume_id, "device": item["device"]}
    if not version.at_least("2.89"):
        view["id"] = volume_id
    if version.at_least("2.70"):
        view["tag"] = item.get("tag")
    if version.at_least("2.79"):
        view["delete_on_termination"] = bool(item.get("delete_on_termination"))
    if version.at_least("2.89"):
        view["attachment_id"] = item.get("attachment_id")
        view["bdm_uuid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bdm:{server_id}/{volume_id}"))
    return view


def _attach_request(body: Any, version: Version) -> Obj:
    allowed = {"volumeId", "device"}
    allowed |= {"tag"} if version.at_least("2.49") else set()
    allowed |= {"delete_on_termination"} if version.at_least("2.79") else set()
    if not isinstance(body, dict) or not is_uuid(str(body.get("volumeId", ""))):
        raise bad_request("Invalid input for field/attribute volumeId.")
    for key in body:
        if key not in allowed:
            raise bad_request(
                "Invalid input for field/attribute volumeAttachment. Additional properties "
                f"are not allowed ('{key}' was unexpected)"
            )
    if "tag" in body:
        check_tag(body["tag"])
    if "delete_on_termination" in body:
        boolean(body["delete_on_termination"], "delete_on_termination")
    return body


class VolumeAttachments:
    def __init__(self, service: ComputeService) -> None:
        self.service = service
        self.records = service.records
        self.volumes = Volumes(service.caller, service.guest_disks)

    def routes(self) -> list[Route]:
        base = "/v2.1/servers/{server_id}/os-volume_attachments"
        return [
            Route(base, self.list_attachments, methods=["GET"]),
            Route(base, self.attach_volume, methods=["POST"]),
            Route(f"{base}/{{volume_id}}", self.show_attachment, methods=["GET"]),
            Route(f"{base}/{{volume_id}}", self.detach_volume, methods=["DELETE"]),
            Route(f"{base}/{{volume_id}}", self.swap_volume, methods=["PUT"]),
            Route(ASSISTED, self.create_assisted_snapshot, methods=["POST"]),
            Route(f"{ASSISTED}/{{snapshot_id}}", self.delete_assisted_snapshot, methods=["DELETE"]),
        ]

    def _attached(self, server: Obj, volume_id: str) -> Obj:
        for item in status_of(server).get("volumes_attached") or []:
            if isinstance(item, dict) and item.get("volume_id") == volume_id:
                return item
        raise not_found(f"Volume {volume_id} is not attached to the server.")

    async def list_attachments(self, request: Request) -> Response:
        _, server = self.service.server_of(request)
        server_id = server["metadata"]["name"]
        version = microversion(request)
        items = [attachment_view(server_id, i, version) for i in _items(status_of(server))]
        return json_response({"volumeAttachments": items})

    async def show_attachment(self, request: Request) -> Response:
        _, server = self.service.server_of(request)
        item = self._attached(server, request.path_params["volume_id"])
        view = attachment_view(server["metadata"]["name"], item, microversion(request))
        return json_response({"volumeAttachment": view})

    async def _volume(self, context: AuthContext, server: Obj, volume_id: str) -> Obj:
        try:
            volume = await self.volumes.show(volume_id)
        except VolumeError as exc:
            raise not_found(exc.message) from exc
        owner = volume.get("os-vol-tenant-attr:tenant_id") or volume.get("project_id")
        if owner and owner != spec_of(server).get("project_id") and not context.is_admin:
            raise not_found(f"Volume {volume_id} could not be found.")
        return volume

    async def attach_volume(self, request: Request) -> Response:
        context, server = self.service.server_of(request)
        require_member(context, "os_compute_api:os-volumes-attachments:create")
        version = microversion(request)
        body = _attach_request((await read_json(request)).get("volumeAttachment"), version)
        volume_id = str(body["volumeId"])
        require_attachable(context, server, "attach_volume", version.at_least("2.20"))
        check_multiattach(await self._volume(context, server, volume_id), version)
        attached = [
            i for i in status_of(server).get("volumes_attached") or [] if isinstance(i, dict)
        ]
        if any(item.get("volume_id") == volume_id for item in attached):
            raise bad_request(f"Invalid volume: volume {volume_id} is already attached.")
        device = str(body.get("device") or next_device(attached, server))
        try:
            item = await self.volumes.attach(
                server["metadata"]["name"],
                volume_id,
                str(status_of(server).get("host") or ""),
                device,
            )
        except VolumeError as exc:
            raise OpenStackError(400 if exc.status < 500 else 500, exc.message) from exc
        item["tag"] = body.get("tag")
        item["delete_on_termination"] = boolean(
            body.get("delete_on_termination", False), "delete_on_termination"
        )
        await self.service.record_action(request, context, server, "attach_volume", done=True)
        await self._change(server, lambda items: [*items, item])
        answer = attachment_view(server["metadata"]["name"], item, version)
        answer.pop("attachment_id", None)  # the attach answer keeps the old shape at 2.89
        answer.pop("bdm_uuid", None)
        answer["id"] = volume_id
        return json_response({"volumeAttachment": answer})

    def _holder(self, volume_id: str) -> Obj:
        for server in self.records.all(kinds.SERVERS):
            if any(i.get("volume_id") == volume_id for i in _items(status_of(server))):
                return server
        raise not_found(f"Volume {volume_id} is not attached to any server.")

    async def create_assisted_snapshot(self, request: Request) -> Response:
        """What Cinder's file-based drivers ask of Nova (admin): the fake driver keeps no
        disk files, so the snapshot is acknowledged for the attached volume."""
        require_admin(
            self.service.authenticate(request), "os_compute_api:os-assisted-volume-snapshots:create"
        )
        body = (await read_json(request)).get("snapshot")
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute snapshot.")
        info = body.get("create_info")
        if not isinstance(info, dict) or not info.get("snapshot_id") or not body.get("volume_id"):
            raise bad_request("Invalid input for field/attribute snapshot.")
        self._holder(str(body["volume_id"]))
        answer = {"id": info["snapshot_id"], "volumeId": body["volume_id"]}
        return json_response({"snapshot": answer})

    async def delete_assisted_snapshot(self, request: Request) -> Response:
        require_admin(
            self.service.authenticate(request), "os_compute_api:os-assisted-volume-snapshots:delete"
        )
        text = request.query_params.get("delete_info")
        try:
            info = json.loads(text) if text else None
        except ValueError:
            info = None
        if not isinstance(info, dict) or not info.get("volume_id"):
            raise bad_request("Missing or malformed delete_info.")
        self._holder(str(info["volume_id"]))
        return empty(204)

    async def swap_volume(self, request: Request) -> Response:
        """Swapping a volume's backing (admin): the fake driver cannot copy data, so an
        attached volume is refused as Nova's drivers without swap support do."""
        context, server = self.service.server_of(request)
        require_admin(context, "os_compute_api:os-volumes-attachments:swap")
        self._attached(server, request.path_params["volume_id"])
        raise OpenStackError(400, "Swap volume is not supported by the virt driver.")

    async def detach_volume(self, request: Request) -> Response:
        context, server = self.service.server_of(request)
        require_member(context, "os_compute_api:os-volumes-attachments:delete")
        volume_id = request.path_params["volume_id"]
        item = self._attached(server, volume_id)
        shelved_too = microversion(request).at_least("2.20")
        require_attachable(context, server, "detach_volume", shelved_too)
        try:
            await self.volumes.detach(str(item["attachment_id"]))
        except VolumeError as exc:
            raise OpenStackError(400, exc.message) from exc
        await self.service.record_action(request, context, server, "detach_volume", done=True)
        await self._change(
            server, lambda items: [i for i in items if i.get("volume_id") != volume_id]
        )
        return empty(202)

    async def _change(self, server: Obj, edit: Any) -> None:
        def change(obj: Obj) -> None:
            obj["status"]["volumes_attached"] = edit(_items(obj["status"]))
            obj["status"]["updated_at"] = now_text()

        await self.records.update(kinds.SERVERS, server["metadata"]["name"], change, status=True)


def _items(status: Obj) -> list[Obj]:
    return [i for i in status.get("volumes_attached") or [] if isinstance(i, dict)]
