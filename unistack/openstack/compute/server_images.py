"""Images of a server: the `createImage` and `createBackup` actions, through the Image API.

Both make the image record at once with the caller's token (so it belongs to the caller's
project), with the properties Nova sets (`instance_uuid`, `image_type`, `base_image_ref`),
then leave a pending snapshot for the controller, which writes the data
(`unistack.iaas.compute.snapshots`). The answer's Location names the new image (from 2.45
the body's `image_id` does). A backup
also carries its `backup_type`, and the oldest backups of that type beyond `rotation` are
deleted, as Nova rotates them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from unistack.iaas.compute.snapshots import IMAGES, snapshot_image
from unistack.iaas.records import spec_of
from unistack.openstack.auth import AuthContext
from unistack.openstack.compute.server_requests import check_metadata, check_name
from unistack.openstack.compute.service import ComputeService, integer, microversion
from unistack.openstack.web import OpenStackError, bad_request, base_url, empty, json_response

Obj = dict[str, Any]
Pending = Callable[..., Awaitable[None]]


class ServerImages:
    def __init__(self, service: ComputeService, pending: Pending) -> None:
        self.service = service
        self.pending = pending  # ServerActions._pending: the task state and pending action

    async def _source(self, server: Obj) -> Obj | None:
        source_id = spec_of(server).get("image_ref")
        if not source_id:
            return None
        status, found = await self.service.caller.call("GET", f"{IMAGES}/{source_id}")
        return found if status == 200 and isinstance(found, dict) else None

    async def _snapshot(
        self, request: Request, context: AuthContext, server: Obj, wanted: Obj, action: str
    ) -> str:
        status, image = await self.service.call_as(request, "POST", IMAGES, wanted)
        if status != 201:
            message = image.get("message") if isinstance(image, dict) else None
            raise OpenStackError(status if 400 <= status < 500 else 500, str(message or image))
        image_id = str(image["id"])
        task = "image_snapshot" if action == "createImage" else "image_backup"
        await self.pending(request, context, server, "createImage", task, image_id=image_id)
        return image_id

    def _located(self, request: Request, image_id: str) -> Response:
        """The new image: in a Location header, or from 2.45 as the body's `image_id`."""
        if microversion(request).at_least("2.45"):
            return json_response({"image_id": image_id}, 202)
        return empty(202, {"Location": f"{base_url(request)}v2.1/images/{image_id}"})

    async def create_image(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute createImage.")
        name = check_name(body.get("name"))
        metadata = check_metadata(body.get("metadata", {}))
        wanted = snapshot_image(server, name, metadata, await self._source(server))
        image_id = await self._snapshot(request, context, server, wanted, "createImage")
        return self._located(request, image_id)

    async def shelve(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        """Shelving keeps the disk as an image `<name>-shelved` (image-backed servers), then
        the controller offloads the server from its host at once (offload time 0)."""
        image_id = ""
        if spec_of(server).get("image_ref"):
            name = f"{spec_of(server).get('name', '')}-shelved"
            wanted = snapshot_image(server, name, {}, await self._source(server))
            status, image = await self.service.call_as(request, "POST", IMAGES, wanted)
            if status != 201:
                raise OpenStackError(500, "Shelving could not keep the server's disk.")
            image_id = str(image["id"])
        await self.pending(request, context, server, "shelve", "shelving", image_id=image_id)
        return empty(202)

    async def create_backup(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute createBackup.")
        name = check_name(body.get("name"))
        backup_type = body.get("backup_type")
        if not isinstance(backup_type, str) or not backup_type:
            raise bad_request("Invalid input for field/attribute backup_type.")
        rotation = integer(body.get("rotation"), "rotation", 0)
        metadata = check_metadata(body.get("metadata", {}))
        wanted = snapshot_image(server, name, metadata, await self._source(server))
        wanted |= {"image_type": "backup", "backup_type": backup_type}
        image_id = await self._snapshot(request, context, server, wanted, "createBackup")
        await self._rotate(request, server, backup_type, rotation, image_id)
        return self._located(request, image_id)

    async def _rotate(
        self, request: Request, server: Obj, backup_type: str, rotation: int, newest: str
    ) -> None:
        query = {"instance_uuid": server["metadata"]["name"], "limit": "1000"}
        status, body = await self.service.call_as(request, "GET", IMAGES, params=query)
        images = body.get("images", []) if status == 200 else []
        backups = [
            i
            for i in images
            if i.get("image_type") == "backup"
            and i.get("backup_type") == backup_type
            and i.get("instance_uuid") == server["metadata"]["name"]
        ]
        backups.sort(key=lambda i: (i["id"] == newest, str(i.get("created_at"))))
        for old in backups[: max(0, len(backups) - rotation)]:
            await self.service.call_as(request, "DELETE", f"{IMAGES}/{old['id']}")
