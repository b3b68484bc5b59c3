"""Group types (3.11): create, list, show, update, delete (admins write) and `group_specs`,
as volume types are for volumes. Groups (`groups.py`) name one.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.records import spec_of
from unistack.iaas.volume import kinds
from unistack.openstack.auth import AuthContext
from unistack.openstack.volume.service import (
    VolumeService,
    as_bool,
    check_text,
    new_id,
    page,
    read_member,
)
from unistack.openstack.web import bad_request, conflict, empty, json_response, not_found, read_json

Obj = dict[str, Any]
RULE = "group:group_types_manage"


def _specs(body: Any) -> dict[str, str]:
    if not isinstance(body, dict):
        raise bad_request("Invalid input received: group_specs must be an object.")
    if any(not k or len(k) > 255 or not isinstance(v, str) for k, v in body.items()):
        raise bad_request("Invalid input received: group specs are strings, keys 1-255 long.")
    return dict(body)


def _sort_value(obj: Obj, key: str) -> Any:
    return obj["metadata"]["name"] if key == "id" else spec_of(obj).get(key)


class GroupTypes:
    def __init__(self, service: VolumeService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        one, specs = "/group_types/{type_id}", "/group_types/{type_id}/group_specs"
        return [
            Route("/group_types", self.create_group_type, methods=["POST"]),
            Route("/group_types", self.list_group_types, methods=["GET"]),
            Route("/group_types/default", self.show_default_group_type, methods=["GET"]),
            Route(one, self.show_group_type, methods=["GET"]),
            Route(one, self.update_group_type, methods=["PUT"]),
            Route(one, self.delete_group_type, methods=["DELETE"]),
            Route(specs, self.list_group_specs, methods=["GET"]),
            Route(specs, self.create_group_specs, methods=["POST"]),
            Route(f"{specs}/{{key}}", self.show_group_spec, methods=["GET"]),
            Route(f"{specs}/{{key}}", self.update_group_spec, methods=["PUT"]),
            Route(f"{specs}/{{key}}", self.delete_group_spec, methods=["DELETE"]),
        ]

    def find(self, type_id: str, context: AuthContext) -> Obj:
        found = self.service.records.get(kinds.GROUP_TYPES, type_id)
        if found is None:
            named = self.service.records.indexed(kinds.GROUP_TYPES, "name", type_id)
            found = named[0] if named else None
        if found is None or not (context.is_admin or spec_of(found).get("is_public", True)):
            raise not_found(f"Group type {type_id} could not be found.")
        return found

    @staticmethod
    def view(gtype: Obj) -> Obj:
        spec = spec_of(gtype)
        return {
            "id": gtype["metadata"]["name"],
            "name": spec.get("name"),
            "description": spec.get("description"),
            "is_public": bool(spec.get("is_public", True)),
            "group_specs": spec.get("group_specs") or {},
        }

    async def create_group_type(self, request: Request) -> Response:
        self.service.admin(request, RULE)
        body = await read_member(request, "group_type")
        name = check_text(body, "name")
        if not name or not name.strip():
            raise bad_request("Invalid input for field/attribute name.")
        if self.service.records.indexed(kinds.GROUP_TYPES, "name", name):
            raise conflict(f"Group Type {name} already exists.")
        spec = {
            "name": name,
            "description": check_text(body, "description"),
            "is_public": as_bool(body.get("is_public", True), "is_public"),
            "group_specs": _specs(body.get("group_specs") or {}),
        }
        created = await self.service.records.create(kinds.GROUP_TYPES, new_id(), spec)
        return json_response({"group_type": self.view(created)}, 202)

    async def list_group_types(self, request: Request) -> Response:
        context = self.service.reader(request)
        wanted = request.query_params.get("is_public")
        public: bool | None = True  # Cinder's default: public ones; `None` asks for all
        if context.is_admin and wanted is not None:
            public = None if wanted.lower() == "none" else as_bool(wanted, "is_public")
        found = [
            t
            for t in self.service.records.all(kinds.GROUP_TYPES)
            if public is None or bool(spec_of(t).get("is_public", True)) is public
        ]
        ordered = page(found, request, _sort_value)
        return json_response({"group_types": [self.view(t) for t in ordered]})

    async def show_default_group_type(self, request: Request) -> Response:
        self.service.reader(request)
        raise not_found("Default group type could not be found.")

    async def show_group_type(self, request: Request) -> Response:
        context = self.service.reader(request)
        found = self.find(request.path_params["type_id"], context)
        return json_response({"group_type": self.view(found)})

    async def update_group_type(self, request: Request) -> Response:
        context = self.service.admin(request, RULE)
        type_id = self.find(request.path_params["type_id"], context)["metadata"]["name"]
        body = await read_member(request, "group_type", filled=True)
        changes: Obj = {}
        for key in ("name", "description"):
            if key in body:
                changes[key] = check_text(body, key)
        if "is_public" in body:
            changes["is_public"] = as_bool(body["is_public"], "is_public")
        updated = await self._change(type_id, lambda spec: spec.update(changes))
        return json_response({"group_type": self.view(updated)})

    async def delete_group_type(self, request: Request) -> Response:
        context = self.service.admin(request, RULE)
        type_id = self.find(request.path_params["type_id"], context)["metadata"]["name"]
        if any(
            spec_of(g).get("group_type") == type_id for g in self.service.records.all(kinds.GROUPS)
        ):
            raise bad_request(f"Group Type {type_id} deletion is not allowed with groups using it.")
        await self.service.records.delete(kinds.GROUP_TYPES, type_id)
        return empty(202)

    async def _change(self, type_id: str, edit: Any) -> Obj:
        def change(obj: Obj) -> None:
            edit(obj["spec"])

        return await self.service.records.update(kinds.GROUP_TYPES, type_id, change)

    async def list_group_specs(self, request: Request) -> Response:
        context = self.service.reader(request)
        found = self.find(request.path_params["type_id"], context)
        return json_response({"group_specs": spec_of(found).get("group_specs") or {}})

    async def create_group_specs(self, request: Request) -> Response:
        context = self.service.admin(request, RULE)
        type_id = self.find(request.path_params["type_id"], context)["metadata"]["name"]
        given = _specs((await read_json(request)).get("group_specs"))
        await self._change(type_id, lambda spec: spec.setdefault("group_specs", {}).update(given))
        return json_response({"group_specs": given}, 202)

    async def show_group_spec(self, request: Request) -> Response:
        context = self.service.reader(request)
        found = self.find(request.path_params["type_id"], context)
        key = request.path_params["key"]
        specs = spec_of(found).get("group_specs") or {}
        if key not in specs:
            raise not_found(f"Group Type {found['metadata']['name']} has no specs with key {key}.")
        return json_response({key: specs[key]})

    async def update_group_spec(self, request: Request) -> Response:
        context = self.service.admin(request, RULE)
        type_id = self.find(request.path_params["type_id"], context)["metadata"]["name"]
        key = request.path_params["key"]
        given = _specs(await read_json(request))
        if list(given) != [key]:
            raise bad_request("Request body and URI mismatch")
        await self._change(type_id, lambda spec: spec.setdefault("group_specs", {}).update(given))
        return json_response(given)

    async def delete_group_spec(self, request: Request) -> Response:
        context = self.service.admin(request, RULE)
        found = self.find(request.path_params["type_id"], context)
        key = request.path_params["key"]
        if key not in (spec_of(found).get("group_specs") or {}):
            raise not_found(f"Group Type {found['metadata']['name']} has no specs with key {key}.")
        await self._change(found["metadata"]["name"], lambda spec: spec["group_specs"].pop(key))
        return empty(202)
