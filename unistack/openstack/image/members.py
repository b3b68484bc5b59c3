"""`/v2/images/{id}/members`: sharing an image with other projects.

Only a `shared` image has members. Its owner (or an admin) adds and removes them; a member
starts `pending` and only the member itself accepts or rejects (the owner cannot, 403). The
owner lists every member; a member sees only itself. Members live in the image's spec, keyed
by project id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.image import kinds
from unistack.iaas.records import object_id, spec_of
from unistack.openstack.image.images import path_id
from unistack.openstack.image.service import MAX_MEMBERS, ImageService, may_modify, now_iso
from unistack.openstack.web import (
    OpenStackError,
    bad_request,
    conflict,
    empty,
    forbidden,
    json_response,
    not_found,
    read_json,
)

Obj = dict[str, Any]
STATUSES = ("pending", "accepted", "rejected")


def member_view(image: Obj, member_id: str, entry: Obj) -> Obj:
    return {
        "created_at": entry.get("created_at"),
        "image_id": object_id(image),
        "member_id": member_id,
        "schema": "/v2/schemas/member",
        "status": entry.get("status", "pending"),
        "updated_at": entry.get("updated_at"),
    }


@dataclass
class Members:
    service: ImageService

    def routes(self) -> list[Route]:
        base = "/v2/images/{image_id}/members"
        return [
            Route(base, self.list_members, methods=["GET"]),
            Route(base, self.create_member, methods=["POST"]),
            Route(base + "/{member_id}", self.show_member, methods=["GET"]),
            Route(base + "/{member_id}", self.update_member, methods=["PUT"]),
            Route(base + "/{member_id}", self.delete_member, methods=["DELETE"]),
        ]

    async def list_members(self, request: Request) -> Response:
        context = self.service.caller(request)
        image = self.service.visible_image(context, path_id(request))
        members = spec_of(image).get("members") or {}
        if not may_modify(context, image):
            members = {k: v for k, v in members.items() if k == context.project_id}
        shown = [member_view(image, k, v) for k, v in sorted(members.items())]
        return json_response({"members": shown, "schema": "/v2/schemas/members"})

    async def show_member(self, request: Request) -> Response:
        context = self.service.caller(request)
        image = self.service.visible_image(context, path_id(request))
        member_id = request.path_params["member_id"]
        entry = (spec_of(image).get("members") or {}).get(member_id)
        if entry is None or not (may_modify(context, image) or member_id == context.project_id):
            raise not_found(f"{member_id} is not a member of image {object_id(image)}")
        return json_response(member_view(image, member_id, entry))

    async def create_member(self, request: Request) -> Response:
        context = self.service.caller(request)
        image_id = path_id(request)
        body = await read_json(request)
        member_id = body.get("member")
        if not isinstance(member_id, str) or not member_id or len(member_id) > 255:
            raise bad_request('The request body must name a member: {"member": PROJECT_ID}.')
        image = self.service.owned_image(context, image_id, "share")
        if spec_of(image).get("visibility") != "shared":
            raise forbidden(
                f"Only shared images have members; image {image_id} is "
                f"{spec_of(image).get('visibility')}."
            )
        members = spec_of(image).get("members") or {}
        if member_id in members:
            raise conflict(f"Member {member_id} already exists on image {image_id}.")
        if len(members) >= MAX_MEMBERS:
            raise OpenStackError(413, f"Maximum number of members ({MAX_MEMBERS}) exceeded.")
        stamp = now_iso()
        entry = {"status": "pending", "created_at": stamp, "updated_at": stamp}

        def change(obj: Obj) -> None:
            current = obj["spec"].setdefault("members", {})
            if member_id in current:
                raise conflict(f"Member {member_id} already exists on image {image_id}.")
            current[member_id] = entry

        updated = await self.service.records.update(kinds.IMAGES, image_id, change)
        return json_response(member_view(updated, member_id, entry))

    async def update_member(self, request: Request) -> Response:
        context = self.service.caller(request)
        image_id, member_id = path_id(request), request.path_params["member_id"]
        body = await read_json(request)
        status = body.get("status")
        image = self.service.visible_image(context, image_id)
        if member_id not in (spec_of(image).get("members") or {}):
            raise not_found(f"{member_id} is not a member of image {image_id}")
        if member_id != context.project_id:
            raise forbidden("Only the member itself may accept or reject a shared image.")
        if status not in STATUSES:
            raise bad_request(
                f"Invalid status: {status!r}; it must be one of {', '.join(STATUSES)}."
            )

        def change(obj: Obj) -> None:
            entry = obj["spec"]["members"][member_id]
            entry.update(status=status, updated_at=now_iso())

        updated = await self.service.records.update(kinds.IMAGES, image_id, change)
        entry = spec_of(updated)["members"][member_id]
        return json_response(member_view(updated, member_id, entry))

    async def delete_member(self, request: Request) -> Response:
        context = self.service.caller(request)
        image_id, member_id = path_id(request), request.path_params["member_id"]
        image = self.service.owned_image(context, image_id, "unshare")
        if member_id not in (spec_of(image).get("members") or {}):
            raise not_found(f"{member_id} is not a member of image {image_id}")

        def change(obj: Obj) -> None:
            obj["spec"].get("members", {}).pop(member_id, None)

        await self.service.records.update(kinds.IMAGES, image_id, change)
        return empty()
