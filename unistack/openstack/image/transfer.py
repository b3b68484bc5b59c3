"""Image data in and out: `PUT /v2/images/{id}/file` (upload), `GET .../file` (download),
and interoperable import — `PUT .../stage` then `POST .../import` with `glance-direct`.

Status moves as Glance's does: queued → saving → active on upload (back to queued if the
upload fails, so it can be retried), queued → uploading (staged) → importing → active on
import. The transition is claimed with a compare-and-swap write before any data is
accepted, so two uploads to one image cannot both win (409). `virtual_size` is the data's size
for raw images and read from the header of a qcow2 one.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from unistack.iaas.image import kinds
from unistack.iaas.records import spec_of, status_of
from unistack.openstack.image.data import ImageData, StoredData, TooLarge
from unistack.openstack.image.images import path_id
from unistack.openstack.image.service import IMAGE_SIZE_CAP, ImageService, now_iso
from unistack.openstack.web import (
    OpenStackError,
    bad_request,
    conflict,
    empty,
    json_response,
    read_json,
)

Obj = dict[str, Any]
IMPORT_METHODS = ("glance-direct",)
QCOW2_MAGIC = b"QFI\xfb"


@dataclass
class Transfer:
    service: ImageService

    def routes(self) -> list[Route]:
        return [
            Route("/v2/images/{image_id}/file", self.upload, methods=["PUT"]),
            Route("/v2/images/{image_id}/file", self.download, methods=["GET"]),
            Route("/v2/images/{image_id}/stage", self.stage, methods=["PUT"]),
            Route("/v2/images/{image_id}/import", self.import_image, methods=["POST"]),
            Route("/v2/images/{image_id}/tasks", self.list_tasks, methods=["GET"]),
            Route("/v2/info/import", self.import_info, methods=["GET"]),
        ]

    async def upload(self, request: Request) -> Response:
        image_id = await self._claim(request, "saving", "upload")
        stored = await self._receive(request, image_id)
        self._publish(image_id, stored)
        await self._finish(image_id, "active", stored)
        return empty()

    async def stage(self, request: Request) -> Response:
        image_id = await self._claim(request, "uploading", "stage")
        stored = await self._receive(request, image_id)
        await self._finish(image_id, "uploading", stored)
        return empty()

    async def import_image(self, request: Request) -> Response:
        context = self.service.caller(request)
        image_id = path_id(request)
        body = await read_json(request)
        method = (
            (body.get("method") or {}).get("name") if isinstance(body.get("method"), dict) else None
        )
        if method not in IMPORT_METHODS:
            raise bad_request(
                f"Import method {method!r} is not available: {', '.join(IMPORT_METHODS)}."
            )
        image = self.service.owned_image(context, image_id, "import")
        status = status_of(image)
        if status.get("status") != "uploading" or not status.get("digest"):
            state = status.get("status")
            raise conflict(f"Image {image_id} is not in a valid state for import ({state}).")
        staged = StoredData(
            status["digest"], int(status["size"]), status["checksum"], status["os_hash_value"]
        )
        await self._set_status(image_id, "importing")
        self._publish(image_id, staged)
        await self._finish(image_id, "active", staged)
        await self._record_task(request, context.user_id, image, body)
        return empty(202)

    async def list_tasks(self, request: Request) -> Response:
        """The image's import tasks (each import finishes before it answers, so each
        task shows `success`)."""
        context = self.service.caller(request)
        image = self.service.visible_image(context, path_id(request))
        return json_response({"tasks": list(status_of(image).get("tasks") or [])})

    async def _record_task(self, request: Request, user_id: str, image: Obj, body: Obj) -> None:
        image_id, stamp = path_id(request), now_iso()
        task = {
            "id": str(uuid.uuid4()),
            "type": "api_image_import",
            "status": "success",
            "owner": spec_of(image).get("owner"),
            "input": {"image_id": image_id, "import_req": body, "backend": None},
            "result": {},
            "message": "",
            "image_id": image_id,
            "request_id": request.scope.get("state", {}).get("request_id", ""),
            "user_id": user_id,
            "created_at": stamp,
            "updated_at": stamp,
            "expires_at": None,
            "schema": "/v2/schemas/task",
        }
        task["self"] = f"/v2/tasks/{task['id']}"

        def change(obj: Obj) -> None:
            obj["status"]["tasks"] = [*(obj["status"].get("tasks") or []), task]

        await self.service.records.update(kinds.IMAGES, image_id, change, status=True)

    async def import_info(self, request: Request) -> Response:
        self.service.caller(request)
        methods = {
            "description": "Import methods available.",
            "type": "array",
            "value": list(IMPORT_METHODS),
        }
        return json_response({"import-methods": methods})

    async def download(self, request: Request) -> Response:
        context = self.service.caller(request)
        image = self.service.visible_image(context, path_id(request))
        status = status_of(image)
        if status.get("status") == "deactivated" and not context.is_admin:
            raise OpenStackError(
                403, "The requested image has been deactivated. Image data download is forbidden."
            )
        if status.get("status") != "active" or not status.get("digest"):
            return empty(204)
        if not self.service.data.exists(status["digest"]):
            raise OpenStackError(503, "The image data is unavailable.")
        headers = {"Content-Length": str(status["size"]), "Content-MD5": str(status["checksum"])}
        return StreamingResponse(
            self.service.data.read(status["digest"]), 200, headers, "application/octet-stream"
        )

    # --- steps ----------------------------------------------------------------------------

    async def _claim(self, request: Request, target: str, verb: str) -> str:
        """Check the caller and the body's type, then move queued → `target` atomically."""
        context = self.service.caller(request)
        image_id = path_id(request)
        media = request.headers.get("content-type", "application/octet-stream").split(";")[0]
        if media.strip() != "application/octet-stream":
            raise OpenStackError(
                415, f"Unsupported Content-Type {media!r}: use application/octet-stream."
            )
        image = self.service.owned_image(context, image_id, verb)
        if not spec_of(image).get("disk_format") or not spec_of(image).get("container_format"):
            raise bad_request(
                "Properties disk_format, container_format must be set prior to saving data."
            )

        def claim(obj: Obj) -> None:
            current = obj["status"].get("status", "queued")
            if current != "queued":
                raise conflict(f"Image status transition from {current} to {target} is not allowed")
            obj["status"].update(status=target, updated_at=now_iso())

        await self.service.records.update(kinds.IMAGES, image_id, claim, status=True)
        return image_id

    async def _receive(self, request: Request, image_id: str) -> StoredData:
        try:
            return await self.service.data.receive(request.stream(), IMAGE_SIZE_CAP)
        except TooLarge as exc:
            await self._set_status(image_id, "queued")
            raise OpenStackError(413, str(exc)) from exc
        except BaseException:
            await self._set_status(image_id, "queued")
            raise

    def _publish(self, image_id: str, stored: StoredData) -> None:
        image = self.service.records.require(kinds.IMAGES, image_id)
        self.service.data.publish(image_id, stored, spec_of(image).get("disk_format"))

    async def _set_status(self, image_id: str, value: str) -> None:
        def change(obj: Obj) -> None:
            obj["status"].update(status=value, updated_at=now_iso())

        await self.service.records.update(kinds.IMAGES, image_id, change, status=True)

    async def _finish(self, image_id: str, value: str, stored: StoredData) -> None:
        change = with_data(value, stored, self._virtual_size(image_id, stored))
        await self.service.records.update(kinds.IMAGES, image_id, change, status=True)

    def _virtual_size(self, image_id: str, stored: StoredData) -> int | None:
        disk_format = spec_of(self.service.records.require(kinds.IMAGES, image_id)).get(
            "disk_format"
        )
        return virtual_size(self.service.data, stored, disk_format)


def with_data(value: str, stored: StoredData, virtual: int | None) -> Callable[[Obj], None]:
    """The status change of an image whose data is in: `value`, the data's size, checksums and
    digest, and the size a guest sees."""

    def change(obj: Obj) -> None:
        obj["status"].update(
            status=value,
            size=stored.size,
            virtual_size=virtual,
            checksum=stored.checksum,
            os_hash_value=stored.multihash,
            digest=stored.digest,
            updated_at=now_iso(),
        )

    return change


def virtual_size(data: ImageData, stored: StoredData, disk_format: str | None) -> int | None:
    """The disk's size as a guest sees it: the data's for raw, a qcow2 header's, else unknown."""
    if disk_format == "raw":
        return stored.size
    if disk_format != "qcow2":
        return None
    header = data.head(stored.digest, 32)
    if len(header) >= 32 and header[:4] == QCOW2_MAGIC:
        return int(struct.unpack(">Q", header[24:32])[0])
    return None
