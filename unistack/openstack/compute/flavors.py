"""Flavors: `/flavors`, `/flavors/detail`, one flavor, create and delete (admin), their
`os-extra_specs` and `os-flavor-access` (private flavors), as Nova v2.1 serves them.

Flavors are shared (`Flavor`, cluster-scoped). A non-admin lists the public flavors and the
private ones their project was given; an admin filters with `is_public` (true by default,
`none` for all). `ensure_defaults` writes DevStack's flavors once (m1.tiny ... m1.xlarge,
and m1.nano / m1.micro that DevStack adds for Tempest). From 2.55 a flavor has a
`description`, set at creation or changed with `PUT /flavors/{id}`; from 2.61 its detail
shows its extra specs; from 2.75 an absent swap reads 0.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.compute import kinds
from unistack.iaas.records import Duplicate, spec_of
from unistack.openstack.auth import AuthContext, require_admin
from unistack.openstack.compute.service import (
    ComputeService,
    boolean,
    flavor_object_name,
    integer,
    links_for,
    microversion,
    next_link,
    now_text,
    page,
    require_version,
)
from unistack.openstack.microversion import Version
from unistack.openstack.web import (
    bad_request,
    conflict,
    json_response,
    not_found,
    read_json,
)

Obj = dict[str, Any]
_FLAVOR_ID = re.compile(r"^(?! )[a-zA-Z0-9. _-]+(?<! )$")

DEFAULT_FLAVORS = (
    ("1", "m1.tiny", 1, 512, 1),
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
    ("4", "m1.large", 4, 8192, 80),
    ("5", "m1.xlarge", 8, 16384, 160),
    ("42", "m1.nano", 1, 128, 1),
    ("84", "m1.micro", 1, 192, 1),
)


def flavor_spec(flavor_id: str, name: str, vcpus: int, ram: int, disk: int, **extra: Any) -> Obj:
    return {
        "id": flavor_id,
        "name": name,
        "vcpus": vcpus,
        "ram": ram,
        "disk": disk,
        "swap": extra.get("swap", 0),
        "ephemeral": extra.get("ephemeral", 0),
        "rxtx_factor": extra.get("rxtx_factor", 1.0),
        "is_public": extra.get("is_public", True),
        "disabled": False,
        "extra_specs": {},
        "projects": [],
        "created_at": now_text(),
    }


async def ensure_defaults(service: ComputeService) -> None:
    for flavor_id, name, vcpus, ram, disk in DEFAULT_FLAVORS:
        if service.records.get(kinds.FLAVORS, flavor_object_name(flavor_id)) is not None:
            continue
        try:
            spec = flavor_spec(flavor_id, name, vcpus, ram, disk)
            await service.records.create(kinds.FLAVORS, flavor_object_name(flavor_id), spec)
        except Duplicate:
            continue


def flavor_view(request: Request, spec: Obj, detail: bool = True) -> Obj:
    """A flavor at the request's microversion: its `description` from 2.55, its extra specs
    from 2.61 (detail), and `swap` 0 rather than "" when it has none from 2.75."""
    version = microversion(request)
    view: Obj = {
        "id": spec["id"],
        "name": spec["name"],
        "links": links_for(request, "flavors", spec["id"]),
    }
    if version.at_least("2.55"):
        view["description"] = spec.get("description")
    if detail:
        no_swap: int | str = 0 if version.at_least("2.75") else ""
        view |= {
            "ram": spec["ram"],
            "vcpus": spec["vcpus"],
            "disk": spec["disk"],
            "swap": spec.get("swap") or no_swap,
            "OS-FLV-EXT-DATA:ephemeral": spec.get("ephemeral", 0),
            "OS-FLV-DISABLED:disabled": bool(spec.get("disabled")),
            "os-flavor-access:is_public": bool(spec.get("is_public", True)),
            "rxtx_factor": spec.get("rxtx_factor", 1.0),
        }
        if version.at_least("2.61"):
            view["extra_specs"] = dict(spec.get("extra_specs") or {})
    return view


def _public_filter(context: AuthContext, request: Request) -> bool | None:
    if not context.is_admin:
        return True
    text = request.query_params.get("is_public")
    if text is None:
        return True
    if text.lower() == "none":
        return None
    if text.lower() in ("1", "t", "true", "on", "y", "yes"):
        return True
    if text.lower() in ("0", "f", "false", "off", "n", "no"):
        return False
    raise bad_request(f"Invalid is_public filter [{text}]")


def visible(context: AuthContext, spec: Obj, public: bool | None) -> bool:
    if public is None:
        return True
    if spec.get("is_public", True):
        return public
    if context.is_admin and public is False:
        return True
    return context.project_id in (spec.get("projects") or [])


def _sort_key(spec: Obj) -> tuple[int, str]:
    return (int(spec.get("ram", 0)), str(spec["id"]))


class Flavors:
    def __init__(self, service: ComputeService) -> None:
        self.service = service
        self.records = service.records

    def routes(self) -> list[Route]:
        return [
            Route("/v2.1/flavors", self.list_flavors, methods=["GET"]),
            Route("/v2.1/flavors", self.create_flavor, methods=["POST"]),
            Route("/v2.1/flavors/detail", self.list_flavors_detail, methods=["GET"]),
            Route("/v2.1/flavors/{flavor_id}", self.show_flavor, methods=["GET"]),
            Route("/v2.1/flavors/{flavor_id}", self.delete_flavor, methods=["DELETE"]),
            Route("/v2.1/flavors/{flavor_id}", self.update_flavor, methods=["PUT"]),
            Route("/v2.1/flavors/{flavor_id}/os-extra_specs", self.list_specs, methods=["GET"]),
            Route("/v2.1/flavors/{flavor_id}/os-extra_specs", self.add_specs, methods=["POST"]),
            Route(
                "/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", self.show_spec, methods=["GET"]
            ),
            Route("/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", self.put_spec, methods=["PUT"]),
            Route(
                "/v2.1/flavors/{flavor_id}/os-extra_specs/{key}",
                self.delete_spec,
                methods=["DELETE"],
            ),
            Route("/v2.1/flavors/{flavor_id}/os-flavor-access", self.list_access, methods=["GET"]),
            Route("/v2.1/flavors/{flavor_id}/action", self.flavor_action, methods=["POST"]),
        ]

    # --- reads --------------------------------------------------------------------------

    def _listed(self, request: Request) -> list[Obj]:
        context = self.service.authenticate(request)
        public = _public_filter(context, request)
        specs = [spec_of(obj) for obj in self.records.all(kinds.FLAVORS)]
        specs = [spec for spec in specs if visible(context, spec, public)]
        min_ram = request.query_params.get("minRam")
        if min_ram is not None:
            specs = [s for s in specs if s["ram"] >= integer(min_ram, "minRam")]
        min_disk = request.query_params.get("minDisk")
        if min_disk is not None:
            specs = [s for s in specs if s["disk"] >= integer(min_disk, "minDisk")]
        return sorted(specs, key=lambda spec: str(spec["id"]))

    def _answer(self, request: Request, detail: bool) -> Response:
        shown, marker = page(self._listed(request), request)
        body: Obj = {"flavors": [flavor_view(request, spec, detail) for spec in shown]}
        if marker is not None:
            suffix = "flavors/detail" if detail else "flavors"
            body["flavors_links"] = next_link(request, suffix, marker)
        return json_response(body)

    async def list_flavors(self, request: Request) -> Response:
        return self._answer(request, False)

    async def list_flavors_detail(self, request: Request) -> Response:
        return self._answer(request, True)

    async def show_flavor(self, request: Request) -> Response:
        self.service.authenticate(request)
        flavor = self.service.flavor(request.path_params["flavor_id"])
        return json_response({"flavor": flavor_view(request, spec_of(flavor))})

    # --- writes -------------------------------------------------------------------------

    async def create_flavor(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-flavor-manage:create")
        body = (await read_json(request)).get("flavor")
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute flavor.")
        spec = _validated(body, microversion(request))
        if any(spec_of(f).get("name") == spec["name"] for f in self.records.all(kinds.FLAVORS)):
            raise conflict(f"Flavor with name {spec['name']} already exists.")
        try:
            await self.records.create(kinds.FLAVORS, flavor_object_name(spec["id"]), spec)
        except Duplicate as exc:
            raise conflict(f"Flavor with ID {spec['id']} already exists.") from exc
        return json_response({"flavor": flavor_view(request, spec)})

    async def update_flavor(self, request: Request) -> Response:
        """Only the description changes (2.55)."""
        require_version(request, "2.55")
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-flavor-manage:update")
        body = (await read_json(request)).get("flavor")
        if not isinstance(body, dict) or set(body) != {"description"}:
            raise bad_request("Invalid input for field/attribute flavor.")
        description = _description(body["description"])
        spec = await self._change(
            request.path_params["flavor_id"], lambda s: s.update(description=description)
        )
        return json_response({"flavor": flavor_view(request, spec)})

    async def delete_flavor(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-flavor-manage:delete")
        flavor = self.service.flavor(request.path_params["flavor_id"])
        await self.records.delete(kinds.FLAVORS, flavor["metadata"]["name"])
        return Response(status_code=202)

    async def _change(self, flavor_id: str, change: Any) -> Obj:
        flavor = self.service.flavor(flavor_id)

        def apply(obj: Obj) -> None:
            obj["spec"].setdefault("extra_specs", {})
            obj["spec"].setdefault("projects", [])
            change(obj["spec"])

        written = await self.records.update(kinds.FLAVORS, flavor["metadata"]["name"], apply)
        return spec_of(written)

    # --- extra specs ----------------------------------------------------------------------

    async def list_specs(self, request: Request) -> Response:
        self.service.authenticate(request)
        flavor = self.service.flavor(request.path_params["flavor_id"])
        return json_response({"extra_specs": spec_of(flavor).get("extra_specs") or {}})

    async def add_specs(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-flavor-extra-specs:create")
        specs = (await read_json(request)).get("extra_specs")
        _check_specs(specs)
        assert isinstance(specs, dict)
        spec = await self._change(
            request.path_params["flavor_id"], lambda s: s["extra_specs"].update(specs)
        )
        return json_response({"extra_specs": spec["extra_specs"]})

    async def show_spec(self, request: Request) -> Response:
        self.service.authenticate(request)
        flavor_id, key = request.path_params["flavor_id"], request.path_params["key"]
        specs = spec_of(self.service.flavor(flavor_id)).get("extra_specs") or {}
        if key not in specs:
            raise not_found(f"Flavor {flavor_id} has no extra specs with key {key}.")
        return json_response({key: specs[key]})

    async def put_spec(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-flavor-extra-specs:update")
        key = request.path_params["key"]
        body = await read_json(request)
        if key not in body:
            raise bad_request("Request body and URI mismatch")
        if len(body) > 1:
            raise bad_request("Request body contains too many items")
        _check_specs(body)
        await self._change(
            request.path_params["flavor_id"], lambda s: s["extra_specs"].update(body)
        )
        return json_response({key: body[key]})

    async def delete_spec(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-flavor-extra-specs:delete")
        flavor_id, key = request.path_params["flavor_id"], request.path_params["key"]
        if key not in (spec_of(self.service.flavor(flavor_id)).get("extra_specs") or {}):
            raise not_found(f"Flavor {flavor_id} has no extra specs with key {key}.")
        await self._change(flavor_id, lambda s: s["extra_specs"].pop(key, None))
        return Response(status_code=200)

    # --- access -----------------------------------------------------------------------------

    async def list_access(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-flavor-access")
        spec = spec_of(self.service.flavor(request.path_params["flavor_id"]))
        if spec.get("is_public", True):
            raise not_found("Access list not available for public flavors.")
        return json_response({"flavor_access": _access(spec)})

    async def flavor_action(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        body = await read_json(request)
        flavor_id = request.path_params["flavor_id"]
        if "addTenantAccess" in body:
            require_admin(context, "os_compute_api:os-flavor-access:add_tenant_access")
            spec = await self._add_access(flavor_id, _tenant(body["addTenantAccess"]))
        elif "removeTenantAccess" in body:
            require_admin(context, "os_compute_api:os-flavor-access:remove_tenant_access")
            spec = await self._remove_access(flavor_id, _tenant(body["removeTenantAccess"]))
        else:
            raise bad_request("Invalid request body: no known flavor action.")
        return json_response({"flavor_access": _access(spec)})

    async def _add_access(self, flavor_id: str, project: str) -> Obj:
        spec = spec_of(self.service.flavor(flavor_id))
        if spec.get("is_public", True):
            raise conflict("Can not add access to a public flavor.")
        if project in (spec.get("projects") or []):
            raise conflict(
                f"Flavor access already exists for flavor {flavor_id} and project "
                f"{project} combination."
            )
        return await self._change(flavor_id, lambda s: s["projects"].append(project))

    async def _remove_access(self, flavor_id: str, project: str) -> Obj:
        spec = spec_of(self.service.flavor(flavor_id))
        if project not in (spec.get("projects") or []):
            raise not_found(f"Flavor access not found for {flavor_id} / {project} combination.")
        return await self._change(flavor_id, lambda s: s["projects"].remove(project))


def _access(spec: Obj) -> list[Obj]:
    return [{"flavor_id": spec["id"], "tenant_id": p} for p in spec.get("projects") or []]


def _tenant(body: Any) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("tenant"), str):
        raise bad_request("Invalid input for field/attribute tenant.")
    return str(body["tenant"])


def _check_specs(specs: Any) -> None:
    if not isinstance(specs, dict):
        raise bad_request("Invalid input for field/attribute extra_specs.")
    for key, value in specs.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 255:
            raise bad_request(f"Invalid input for field/attribute extra_specs. Key: {key}")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise bad_request(f"Invalid input for field/attribute {key}. Value: {value}.")
        if isinstance(value, str) and len(value) > 255:
            raise bad_request(f"Invalid input for field/attribute {key}.")


_CREATE_KEYS = {
    "name", "id", "ram", "vcpus", "disk", "swap", "OS-FLV-EXT-DATA:ephemeral",
    "os-flavor-access:is_public", "rxtx_factor",
}  # fmt: skip


def _description(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > 65535):
        raise bad_request(f"Invalid input for field/attribute description. Value: {value}.")
    return value


def _validated(body: Obj, version: Version) -> Obj:
    allowed = _CREATE_KEYS | ({"description"} if version.at_least("2.55") else set())
    for key in body:
        if key not in allowed:
            raise bad_request(
                "Invalid input for field/attribute flavor. Additional properties are not "
                f"allowed ('{key}' was unexpected)"
            )
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 255 or name != name.strip():
        raise bad_request(f"Invalid input for field/attribute name. Value: {name}.")
    flavor_id = body.get("id")
    if flavor_id is None or flavor_id == "auto":
        flavor_id = str(uuid.uuid4())
    if isinstance(flavor_id, int) and not isinstance(flavor_id, bool):
        flavor_id = str(flavor_id)
    if not isinstance(flavor_id, str) or len(flavor_id) > 255 or not _FLAVOR_ID.match(flavor_id):
        raise bad_request(f"Invalid input for field/attribute id. Value: {flavor_id}.")
    is_public = boolean(body.get("os-flavor-access:is_public", True), "os-flavor-access:is_public")
    rxtx = body.get("rxtx_factor", 1.0)
    if isinstance(rxtx, bool) or not isinstance(rxtx, (int, float)) or rxtx <= 0:
        raise bad_request(f"Invalid input for field/attribute rxtx_factor. Value: {rxtx}.")
    spec = flavor_spec(
        flavor_id,
        name,
        integer(body.get("vcpus"), "vcpus", 1),
        integer(body.get("ram"), "ram", 1),
        integer(body.get("disk"), "disk", 0),
        swap=integer(body.get("swap", 0) or 0, "swap", 0),
        ephemeral=integer(body.get("OS-FLV-EXT-DATA:ephemeral", 0), "OS-FLV-EXT-DATA:ephemeral"),
        rxtx_factor=float(rxtx),
        is_public=is_public,
    )
    spec["description"] = _description(body.get("description"))
    return spec
