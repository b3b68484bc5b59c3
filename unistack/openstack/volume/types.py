"""Volume types: create, list, show, update, delete (admins write), `extra_specs`, and
`os-volume-type-access` (project access to a private type).

Types belong to no project (shared namespace). `__DEFAULT__` is created when the service
starts and is what a volume gets when it names no type. Others see public types and the
private ones their project was given; any other type is a 404 to them, as in Cinder.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.records import Records, spec_of
from unistack.iaas.volume import kinds
from unistack.openstack.auth import AuthContext
from unistack.openstack.volume.service import (
    DEFAULT_TYPE,
    DEFAULT_TYPE_ID,
    VolumeService,
    as_bool,
    check_text,
    new_id,
    page,
    read_member,
)
from unistack.openstack.web import bad_request, conflict, empty, json_response, not_found, read_json

Obj = dict[str, Any]


def by_name(obj: Obj) -> list[str]:
    return [str(spec_of(obj).get("name") or "")]


async def ensure_default_type(records: Records) -> None:
    if records.get(kinds.TYPES, DEFAULT_TYPE_ID) is None:
        spec = {"name": DEFAULT_TYPE, "description": "Default Volume Type", "is_public": True}
        await records.create(kinds.TYPES, DEFAULT_TYPE_ID, {**spec, "extra_specs": {}})


def _specs(body: Any) -> dict[str, str]:
    if not isinstance(body, dict):
        raise bad_request("Invalid input received: extra_specs must be an object.")
    for key, value in body.items():
        if not key or len(key) > 255 or not isinstance(value, str | int | float | bool):
            raise bad_request(f"Invalid input received: invalid extra spec {key}.")
    return {k: v if isinstance(v, str) else str(v) for k, v in body.items()}


def _sort_value(obj: Obj, key: str) -> Any:
    return obj["metadata"]["name"] if key == "id" else spec_of(obj).get(key)


class VolumeTypes:
    def __init__(self, service: VolumeService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        return [
            Route("/types", self.list_types, methods=["GET"]),
            Route("/types", self.create_type, methods=["POST"]),
            Route("/types/default", self.show_default_type, methods=["GET"]),
            Route("/types/{type_id}", self.show_type, methods=["GET"]),
            Route("/types/{type_id}", self.update_type, methods=["PUT"]),
            Route("/types/{type_id}", self.delete_type, methods=["DELETE"]),
            Route("/types/{type_id}/extra_specs", self.list_extra_specs, methods=["GET"]),
            Route("/types/{type_id}/extra_specs", self.create_extra_specs, methods=["POST"]),
            Route("/types/{type_id}/extra_specs/{key}", self.show_extra_spec, methods=["GET"]),
            Route("/types/{type_id}/extra_specs/{key}", self.update_extra_spec, methods=["PUT"]),
            Route("/types/{type_id}/extra_specs/{key}", self.delete_extra_spec, methods=["DELETE"]),
            Route("/types/{type_id}/os-volume-type-access", self.list_access, methods=["GET"]),
            Route("/types/{type_id}/action", self.type_action, methods=["POST"]),
        ]

    # --- lookups --------------------------------------------------------------------------

    def may_use(self, vtype: Obj, context: AuthContext) -> bool:
        spec = spec_of(vtype)
        return (
            context.is_admin
            or spec.get("is_public", True)
            or context.project_id in (spec.get("access") or [])
        )

    def find(self, type_id: str, context: AuthContext) -> Obj:
        found = self.service.records.get(kinds.TYPES, type_id)
        if found is None or not self.may_use(found, context):
            raise not_found(f"Volume type {type_id} could not be found.")
        return found

    def type_for_volume(self, wanted: Any, context: AuthContext) -> Obj:
        """The type a new volume names (by id or name), or the default one."""
        records = self.service.records
        if wanted is None or wanted == "":
            return records.require(kinds.TYPES, DEFAULT_TYPE_ID)
        named = records.indexed(kinds.TYPES, "name", str(wanted))
        candidates = [records.get(kinds.TYPES, str(wanted)), *named]
        for vtype in candidates:
            if vtype is not None and self.may_use(vtype, context):
                return vtype
        raise not_found(f"Volume type with name {wanted} could not be found.")

    # --- views ----------------------------------------------------------------------------

    @staticmethod
    def view(vtype: Obj, *, access: bool = True, qos: bool = True) -> Obj:
        spec = spec_of(vtype)
        shown: Obj = {
            "id": vtype["metadata"]["name"],
            "name": spec.get("name"),
            "description": spec.get("description"),
            "is_public": bool(spec.get("is_public", True)),
            "extra_specs": spec.get("extra_specs") or {},
        }
        if access:
            shown["os-volume-type-access:is_public"] = shown["is_public"]
        if qos:
            shown["qos_specs_id"] = spec.get("qos_specs_id")
        return shown

    # --- handlers -------------------------------------------------------------------------

    async def list_types(self, request: Request) -> Response:
        context = self.service.reader(request)
        wanted = request.query_params.get("is_public")
        if wanted is not None and wanted.lower() == "none":
            wanted = "None"
        found = []
        for vtype in self.service.records.all(kinds.TYPES):
            public = bool(spec_of(vtype).get("is_public", True))
            if not self.may_use(vtype, context):
                continue
            if (
                context.is_admin
                and wanted not in (None, "None")
                and public != as_bool(wanted, "is_public")
            ):
                continue
            if context.is_admin and wanted is None and not public:
                continue
            found.append(vtype)
        if {"sort", "sort_key"} & set(request.query_params):
            ordered = page(found, request, _sort_value)
        else:  # by name, as before Cinder sorted them
            ordered = sorted(found, key=lambda vtype: str(spec_of(vtype).get("name")))
        return json_response({"volume_types": [self.view(t) for t in ordered]})

    async def show_default_type(self, request: Request) -> Response:
        context = self.service.reader(request)
        return json_response({"volume_type": self.view(self.find(DEFAULT_TYPE_ID, context))})

    async def show_type(self, request: Request) -> Response:
        context = self.service.reader(request)
        return json_response(
            {"volume_type": self.view(self.find(request.path_params["type_id"], context))}
        )

    async def create_type(self, request: Request) -> Response:
        self.service.admin(request, "volume_extension:types_manage")
        body = await read_member(request, "volume_type")
        name = check_text(body, "name")
        if not name or not name.strip():
            raise bad_request("Invalid input for field/attribute name. Value: None.")
        if self.service.records.indexed(kinds.TYPES, "name", name):
            raise conflict(f"Volume Type {name} already exists.")
        public = body.get("os-volume-type-access:is_public", body.get("is_public", True))
        spec: Obj = {
            "name": name,
            "description": check_text(body, "description"),
            "is_public": as_bool(public, "is_public"),
            "extra_specs": _specs(body.get("extra_specs") or {}),
            "access": [],
        }
        created = await self.service.records.create(kinds.TYPES, new_id(), spec)
        return json_response({"volume_type": self.view(created, qos=False)})

    async def update_type(self, request: Request) -> Response:
        context = self.service.admin(request, "volume_extension:types_manage")
        type_id = request.path_params["type_id"]
        self.find(type_id, context)
        body = await read_member(request, "volume_type", filled=True)
        updated = await self.service.merge(kinds.TYPES, type_id, self._changes(type_id, body))
        return json_response({"volume_type": self.view(updated, access=False, qos=False)})

    def _changes(self, type_id: str, body: Obj) -> Obj:
        changes: Obj = {}
        if "name" in body:
            name = check_text(body, "name")
            if not name or not name.strip():
                raise bad_request("Invalid input received: volume type name cannot be empty.")
            if type_id == DEFAULT_TYPE_ID:
                raise bad_request("Invalid input received: the default type cannot be renamed.")
            if any(
                t["metadata"]["name"] != type_id
                for t in self.service.records.indexed(kinds.TYPES, "name", name)
            ):
                raise conflict(f"Volume Type {name} already exists.")
            changes["name"] = name
        if "description" in body:
            changes["description"] = check_text(body, "description")
        if "is_public" in body:
            changes["is_public"] = as_bool(body["is_public"], "is_public")
        return changes

    async def delete_type(self, request: Request) -> Response:
        context = self.service.admin(request, "volume_extension:types_manage")
        type_id = request.path_params["type_id"]
        self.find(type_id, context)
        if type_id == DEFAULT_TYPE_ID:
            raise bad_request("Invalid volume type: The default volume type cannot be deleted.")
        in_use = [
            v
            for v in self.service.records.all(kinds.VOLUMES)
            if spec_of(v).get("volume_type") == type_id
        ]
        if in_use:
            raise bad_request("Target volume type is still in use.")
        await self.service.records.delete(kinds.TYPES, type_id)
        return empty(202)

    # --- extra specs ----------------------------------------------------------------------

    async def list_extra_specs(self, request: Request) -> Response:
        context = self.service.reader(request)
        vtype = self.find(request.path_params["type_id"], context)
        return json_response({"extra_specs": spec_of(vtype).get("extra_specs") or {}})

    async def show_extra_spec(self, request: Request) -> Response:
        context = self.service.reader(request)
        vtype = self.find(request.path_params["type_id"], context)
        key = request.path_params["key"]
        specs = spec_of(vtype).get("extra_specs") or {}
        if key not in specs:
            raise not_found(
                f"Volume Type {vtype['metadata']['name']} has no extra specs with key {key}."
            )
        return json_response({key: specs[key]})

    async def create_extra_specs(self, request: Request) -> Response:
        context = self.service.admin(request, "volume_extension:types_extra_specs:create")
        type_id = request.path_params["type_id"]
        self.find(type_id, context)
        body = await read_json(request)
        if "extra_specs" not in body:
            raise bad_request("Missing required element 'extra_specs' in request body.")
        added = _specs(body["extra_specs"])
        await self._write_specs(type_id, lambda specs: specs.update(added))
        return json_response({"extra_specs": added})

    async def update_extra_spec(self, request: Request) -> Response:
        context = self.service.admin(request, "volume_extension:types_extra_specs:update")
        type_id, key = request.path_params["type_id"], request.path_params["key"]
        self.find(type_id, context)
        body = _specs(await read_json(request))
        if key not in body:
            raise bad_request("Request body and URI mismatch")
        if len(body) > 1:
            raise bad_request("Request body contains too many items")
        await self._write_specs(type_id, lambda specs: specs.update(body))
        return json_response(body)

    async def delete_extra_spec(self, request: Request) -> Response:
        context = self.service.admin(request, "volume_extension:types_extra_specs:delete")
        type_id, key = request.path_params["type_id"], request.path_params["key"]
        vtype = self.find(type_id, context)
        if key not in (spec_of(vtype).get("extra_specs") or {}):
            raise not_found(f"Volume Type {type_id} has no extra specs with key {key}.")
        await self._write_specs(type_id, lambda specs: specs.pop(key, None))
        return empty(202)

    async def _write_specs(self, type_id: str, edit: Any) -> None:
        def change(obj: Obj) -> None:
            specs = obj["spec"].setdefault("extra_specs", {})
            edit(specs)

        await self.service.records.update(kinds.TYPES, type_id, change)

    # --- access ---------------------------------------------------------------------------

    async def list_access(self, request: Request) -> Response:
        context = self.service.admin(request, "volume_extension:volume_type_access")
        vtype = self.find(request.path_params["type_id"], context)
        if spec_of(vtype).get("is_public", True):
            raise not_found("Access list not available for public volume types.")
        shown = [
            {"volume_type_id": vtype["metadata"]["name"], "project_id": project}
            for project in spec_of(vtype).get("access") or []
        ]
        return json_response({"volume_type_access": shown})

    async def type_action(self, request: Request) -> Response:
        context = self.service.admin(request, "volume_extension:volume_type_access")
        type_id = request.path_params["type_id"]
        vtype = self.find(type_id, context)
        body = await read_json(request)
        for name, adding in (("addProjectAccess", True), ("removeProjectAccess", False)):
            if name in body:
                project = (body[name] or {}).get("project")
                if not project:
                    raise bad_request(f"Missing required element 'project' in {name}.")
                await self._set_access(vtype, str(project), adding)
                return empty(202)
        raise bad_request("Invalid request body: no recognised action.")

    async def _set_access(self, vtype: Obj, project: str, adding: bool) -> None:
        type_id = vtype["metadata"]["name"]
        if spec_of(vtype).get("is_public", True):
            raise bad_request(
                "Invalid volume type: Type access modification is not applicable to public "
                "volume type."
            )
        held = list(spec_of(vtype).get("access") or [])
        if adding and project in held:
            raise conflict(
                f"Volume type access for {type_id} / {project} combination already exists."
            )
        if not adding and project not in held:
            raise not_found(f"Volume type access not found for {type_id} / {project} combination.")

        def change(obj: Obj) -> None:
            access = [p for p in obj["spec"].get("access") or [] if p != project]
            obj["spec"]["access"] = [*access, project] if adding else access

        await self.service.records.update(kinds.TYPES, type_id, change)
