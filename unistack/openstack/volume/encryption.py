"""Volume type encryption (`/types/{id}/encryption`, admin writes): which provider, cipher,
key size and control location encrypt the volumes of a type. Cinder only records it (the
front end, os-brick under Nova, encrypts); a volume of such a type shows `encrypted: true`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.records import spec_of
from unistack.iaas.volume import kinds
from unistack.openstack.volume.service import VolumeService, new_id, now
from unistack.openstack.volume.types import VolumeTypes
from unistack.openstack.web import bad_request, empty, json_response, not_found, read_json

Obj = dict[str, Any]
FIELDS = ("provider", "cipher", "key_size", "control_location")
RULE = "volume_extension:volume_type_encryption"


def encrypted(vtype: Obj | None) -> bool:
    return bool(spec_of(vtype).get("encryption"))


def _checked(body: Any, creating: bool) -> Obj:
    if not isinstance(body, dict):
        raise bad_request("Missing required element 'encryption' in request body.")
    values = {k: body[k] for k in FIELDS if k in body}
    if creating and not values.get("provider"):
        raise bad_request("Invalid input received: provider must be specified.")
    location = values.setdefault("control_location", "front-end") if creating else None
    location = values.get("control_location", location)
    if location is not None and location not in ("front-end", "back-end"):
        raise bad_request(f"Invalid input received: invalid control_location {location}.")
    size = values.get("key_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise bad_request(f"Invalid input received: invalid key_size {size}.")
    return values


class Encryption:
    def __init__(self, service: VolumeService, types: VolumeTypes) -> None:
        self.service = service
        self.types = types

    def routes(self) -> list[Route]:
        base = "/types/{type_id}/encryption"
        return [
            Route(base, self.show_encryption, methods=["GET"]),
            Route(base, self.create_encryption, methods=["POST"]),
            Route(f"{base}/{{item}}", self.show_encryption_item, methods=["GET"]),
            Route(f"{base}/{{item}}", self.update_encryption, methods=["PUT"]),
            Route(f"{base}/{{item}}", self.delete_encryption, methods=["DELETE"]),
        ]

    def _type(self, request: Request) -> Obj:
        context = self.service.admin(request, RULE)
        return self.types.find(request.path_params["type_id"], context)

    @staticmethod
    def view(vtype: Obj) -> Obj:
        held = dict(spec_of(vtype).get("encryption") or {})
        return {"volume_type_id": vtype["metadata"]["name"], **held} if held else {}

    async def show_encryption(self, request: Request) -> Response:
        shown = self.view(self._type(request))
        if shown:
            shown.setdefault("deleted", False)
            shown.setdefault("deleted_at", None)
        return json_response(shown)

    async def show_encryption_item(self, request: Request) -> Response:
        shown = self.view(self._type(request))
        item = request.path_params["item"]
        if item not in shown:
            raise not_found(
                f"Volume type encryption for type {shown.get('volume_type_id')} does not exist."
            )
        return json_response({item: shown[item]})

    def _in_use(self, vtype: Obj) -> bool:
        type_id = vtype["metadata"]["name"]
        return any(
            spec_of(v).get("volume_type") == type_id
            for v in self.service.records.all(kinds.VOLUMES)
        )

    async def create_encryption(self, request: Request) -> Response:
        vtype = self._type(request)
        if encrypted(vtype):
            raise bad_request(
                f"Volume type encryption for type {vtype['metadata']['name']} already exists."
            )
        if self._in_use(vtype):
            raise bad_request("Cannot create encryption specs. Volume type in use.")
        values = _checked((await read_json(request)).get("encryption"), creating=True)
        held = {"encryption_id": new_id(), "cipher": None, "key_size": None, **values}
        await self._write(vtype, {**held, "created_at": now(), "updated_at": None})
        return json_response({"encryption": {"volume_type_id": vtype["metadata"]["name"], **held}})

    async def update_encryption(self, request: Request) -> Response:
        vtype = self._type(request)
        held = dict(spec_of(vtype).get("encryption") or {})
        if held.get("encryption_id") != request.path_params["item"]:
            raise not_found(f"Volume type encryption {request.path_params['item']} not found.")
        if self._in_use(vtype):
            raise bad_request("Cannot update encryption specs. Volume type in use.")
        values = _checked((await read_json(request)).get("encryption"), creating=False)
        await self._write(vtype, {**held, **values, "updated_at": now()})
        return json_response({"encryption": values})

    async def delete_encryption(self, request: Request) -> Response:
        vtype = self._type(request)
        held = spec_of(vtype).get("encryption") or {}
        if held.get("encryption_id") != request.path_params["item"]:
            raise not_found(f"Volume type encryption {request.path_params['item']} not found.")
        if self._in_use(vtype):
            raise bad_request("Cannot delete encryption specs. Volume type in use.")
        await self._write(vtype, None)
        return empty(202)

    async def _write(self, vtype: Obj, encryption: Obj | None) -> None:
        changes = {"encryption": encryption}
        await self.service.merge(kinds.TYPES, vtype["metadata"]["name"], changes)
