"""Servers (`/servers`): create, list, list with details, show, update, delete, as Nova v2.1.

The API records intent and returns: a new server is `building` with task `scheduling`, a
finalizer held by the compute controller (`unistack.iaas.compute.controller`), which
schedules, plugs and spawns it; a deleted server is marked and torn down by the controller.
Every create and delete is an instance action. Lists are newest first, filtered as Nova does
(`server_views.matches`), paged with `limit` / `marker` and `servers_links`; an admin sees
every project with `all_tenants`. Another project's server is a 404.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.compute import kinds
from unistack.iaas.records import spec_of
from unistack.openstack.auth import (
    AuthContext,
    require_member,
    require_project,
    wants_all_projects,
)
from unistack.openstack.compute import quotas
from unistack.openstack.compute.server_requests import (
    CreateRequest,
    ServerRequests,
    access_ip,
    check_name,
    disk_config,
    parse_create,
)
from unistack.openstack.compute.server_views import (
    basic_view,
    brief_view,
    detail_view,
    matches,
    parse_time,
)
from unistack.openstack.compute.service import (
    ComputeService,
    links_for,
    next_link,
    now_text,
    page,
    require_unlocked,
)
from unistack.openstack.web import (
    OpenStackError,
    bad_request,
    json_response,
    read_json,
)

Obj = dict[str, Any]


class Servers:
    def __init__(self, service: ComputeService) -> None:
        self.service = service
        self.records = service.records
        self.requests = ServerRequests(service)

    def routes(self) -> list[Route]:
        return [
            Route("/v2.1/servers", self.list_servers, methods=["GET"]),
            Route("/v2.1/servers", self.create_server, methods=["POST"]),
            Route("/v2.1/servers/detail", self.list_servers_detail, methods=["GET"]),
            Route("/v2.1/servers/{server_id}", self.show_server, methods=["GET"]),
            Route("/v2.1/servers/{server_id}", self.update_server, methods=["PUT"]),
            Route("/v2.1/servers/{server_id}", self.delete_server, methods=["DELETE"]),
        ]

    # --- reads ------------------------------------------------------------------------------

    def _listed(self, request: Request, context: AuthContext) -> list[Obj]:
        query = request.query_params
        if query.get("changes-since"):
            parse_time(query["changes-since"])
        flag = query.get("all_tenants")
        if flag is None and "all_tenants" in query:
            flag = "1"
        if wants_all_projects(context, flag if "all_tenants" in query else None):
            servers = self.records.all(kinds.SERVERS)
            project = query.get("tenant_id") or query.get("project_id")
            if project:
                servers = [s for s in servers if spec_of(s).get("project_id") == project]
        else:
            servers = self.records.of_project(kinds.SERVERS, context.project_id or "")
        servers = [s for s in servers if matches(s, query)]
        servers.sort(
            key=lambda s: (s["metadata"].get("creationTimestamp", ""), s["metadata"]["name"]),
            reverse=True,
        )
        return servers

    def _answer(self, request: Request, detail: bool) -> Response:
        context = self.service.authenticate(request)
        servers = self._listed(request, context)
        shown, marker = page(servers, request)
        if detail:
            items = [detail_view(request, s, context) for s in shown]
        else:
            items = [brief_view(request, s) for s in shown]
        body: Obj = {"servers": items}
        if marker is not None:
            body["servers_links"] = next_link(
                request, "servers/detail" if detail else "servers", marker
            )
        return json_response(body)

    async def list_servers(self, request: Request) -> Response:
        return self._answer(request, False)

    async def list_servers_detail(self, request: Request) -> Response:
        return self._answer(request, True)

    async def show_server(self, request: Request) -> Response:
        context, server = self.service.server_of(request)
        return json_response({"server": detail_view(request, server, context)})

    # --- create -----------------------------------------------------------------------------

    async def create_server(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        project_id = require_project(context)
        require_member(context, "os_compute_api:servers:create")
        wanted = parse_create(await read_json(request))
        flavor = self.requests.flavor(context, wanted.flavor_ref)
        image = await self.requests.image(context, wanted.image_ref)
        self.requests.check_fits(flavor, image)
        self.requests.key_name(context, wanted.key_name)
        self.requests.zone(context, wanted.zone, wanted.forced_host)
        self.requests.group(context, wanted.group_id)
        await self.requests.security_groups(context, wanted.security_groups)
        await self.requests.block_devices(context, wanted.block_devices)
        if len(wanted.metadata) > quotas.limits_of(self.records, project_id)["metadata_items"]:
            raise OpenStackError(403, "Quota exceeded for metadata_items.")
        quotas.check_servers(self.records, project_id, wanted.max_count, flavor)
        reservation = f"r-{uuid.uuid4().hex[:8]}"
        created = []
        for number in range(wanted.max_count):
            spec = self._spec(context, wanted, flavor, number, reservation)
            created.append(await self._create_one(request, context, spec))
        if wanted.return_reservation_id:
            return json_response({"reservation_id": reservation}, 202)
        first = created[0]
        answer = {
            "id": first,
            "links": links_for(request, "servers", first),
            "OS-DCF:diskConfig": wanted.disk_config,
            "security_groups": [{"name": name} for name in wanted.security_groups],
        }
        headers = {"Location": links_for(request, "servers", first)[0]["href"]}
        return json_response({"server": answer}, 202, headers)

    def _spec(
        self,
        context: AuthContext,
        wanted: CreateRequest,
        flavor: Obj,
        number: int,
        reservation: str,
    ) -> Obj:
        name = wanted.name
        if wanted.max_count > 1:
            name = f"{name}-{number + 1}"
        return {
            "name": name,
            "project_id": context.project_id,
            "user_id": context.user_id,
            "image_ref": wanted.image_ref,
            "flavor": {k: flavor.get(k) for k in _FLAVOR_FIELDS},
            "networks": wanted.networks,
            "key_name": wanted.key_name,
            "user_data": wanted.user_data,
            "metadata": wanted.metadata,
            "security_groups": wanted.security_groups,
            "availability_zone": wanted.zone,
            "forced_host": wanted.forced_host,
            "block_device_mapping_v2": wanted.block_devices,
            "group_id": wanted.group_id,
            "access_ipv4": wanted.access_ipv4,
            "access_ipv6": wanted.access_ipv6,
            "config_drive": wanted.config_drive,
            "disk_config": wanted.disk_config,
            "reservation_id": reservation,
            "locked": False,
        }

    async def _create_one(self, request: Request, context: AuthContext, spec: Obj) -> str:
        server_id = str(uuid.uuid4())
        status = {
            "vm_state": kinds.BUILDING,
            "task_state": "scheduling",
            "power_state": kinds.NOSTATE,
            "updated_at": now_text(),
        }
        server = await self.records.create(
            kinds.SERVERS, server_id, spec, status, finalizers=(kinds.FINALIZER,)
        )
        await self.service.record_action(request, context, server, "create")
        return server_id

    # --- update and delete ----------------------------------------------------------------

    async def update_server(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_member(context, "os_compute_api:servers:update")
        server = self.service.visible_server(context, request.path_params["server_id"])
        body = (await read_json(request)).get("server")
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute server.")
        written = await self.service.set_spec(server, **_updates(body))
        return json_response({"server": basic_view(request, written)})

    async def delete_server(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_member(context, "os_compute_api:servers:delete")
        server = self.service.visible_server(context, request.path_params["server_id"])
        server_id = server["metadata"]["name"]
        require_unlocked(context, server)
        if not server["metadata"].get("deletionTimestamp"):
            await self.service.record_action(request, context, server, "delete")
            await self.records.delete(kinds.SERVERS, server_id)
        return Response(status_code=204)


_FLAVOR_FIELDS = ("id", "name", "vcpus", "ram", "disk", "swap", "ephemeral", "extra_specs")
_UPDATABLE = {
    "name": "name",
    "accessIPv4": "access_ipv4",
    "accessIPv6": "access_ipv6",
    "OS-DCF:diskConfig": "disk_config",
}


def _updates(body: Obj) -> Obj:
    changes: Obj = {}
    for key in body:
        if key not in _UPDATABLE:
            raise bad_request(
                "Invalid input for field/attribute server. Additional properties are not "
                f"allowed ('{key}' was unexpected)"
            )
    if "name" in body:
        changes["name"] = check_name(body["name"])
    for key in ("accessIPv4", "accessIPv6"):
        if key in body:
            changes[_UPDATABLE[key]] = access_ip(body, key)
    if "OS-DCF:diskConfig" in body:
        changes["disk_config"] = disk_config(body)
    return changes
