"""Servers (`/servers`): create, list, list with details, show, update, delete, as Nova v2.1.

The API records intent and returns: a new server is `building` with task `scheduling`, a
finalizer held by the compute controller (`unistack.iaas.compute.controller`), which
schedules, plugs and spawns it; a deleted server is marked and torn down by the controller.
Every create and delete is an instance action. Lists are newest first, filtered as Nova does
(`server_views.matches`), paged with `limit` / `marker` and `servers_links`, each entry
encoded once per server version (`view_cache`). A server's floating IPs are read from the
Networking API when it is shown, one call per page (`server_addresses`). An admin sees
every project with `all_tenants`. Another project's server is a 404. Later microversions
add to what a create and an update take (description 2.19, tags 2.52, trusted certificates
2.63, host 2.74, hostname 2.90) and to what a list checks (status 2.38, tags 2.26, no
unknown filters 2.75); from 2.75 an update answers the whole server. The server keeps its
image's properties, shown from 2.98 (`image_properties`).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.compute import kinds
from unistack.iaas.compute.ports import Networking
from unistack.iaas.records import spec_of, status_of
from unistack.openstack.auth import (
    AuthContext,
    require_member,
    require_project,
    wants_all_projects,
)
from unistack.openstack.compute import quotas
from unistack.openstack.compute.server_addresses import Floating, ServerAddresses, shown_server
from unistack.openstack.compute.server_requests import (
    CreateRequest,
    ServerRequests,
    access_ip,
    check_description,
    check_hostname,
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
    shown_view,
)
from unistack.openstack.compute.service import (
    ComputeService,
    links_for,
    microversion,
    next_link,
    now_text,
    page,
    require_unlocked,
)
from unistack.openstack.compute.view_cache import EncodedViews, list_body
from unistack.openstack.microversion import Version
from unistack.openstack.web import (
    OpenStackError,
    bad_request,
    base_url,
    json_response,
    read_json,
)

Obj = dict[str, Any]


class Servers:
    def __init__(self, service: ComputeService) -> None:
        self.service = service
        self.records = service.records
        self.requests = ServerRequests(service)
        self.brief_views = EncodedViews()
        self.detail_views = EncodedViews()
        self.addresses = ServerAddresses(Networking(service.caller))

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

    async def _answer(self, request: Request, detail: bool) -> Response:
        context = self.service.authenticate(request)
        version = microversion(request)
        check_list_query(request.query_params, version)
        servers = self._listed(request, context)
        shown, marker = page(servers, request)
        if detail:
            floating = await self.addresses.of_servers(shown)
            items = [self._detailed(request, s, context, version, floating) for s in shown]
        else:
            items = [self._brief(request, s) for s in shown]
        links = None
        if marker is not None:
            links = next_link(request, "servers/detail" if detail else "servers", marker)
        return Response(list_body("servers", items, links), media_type="application/json")

    def _brief(self, request: Request, server: Obj) -> bytes:
        """One entry of a list, encoded once per server version and base URL."""
        return self.brief_views.encoded(
            server, base_url(request), lambda: brief_view(request, server)
        )

    def _detailed(
        self,
        request: Request,
        server: Obj,
        context: AuthContext,
        version: Version,
        floating: dict[str, Floating],
    ) -> bytes:
        """One entry of a list with details, encoded once per server version and way of
        showing it (its floating IPs among them)."""
        status = self.service.hosts.host_status
        host = None
        if context.is_admin and version.at_least("2.16"):
            host = status(status_of(server).get("host"))
        own = floating.get(server["metadata"]["name"], ())
        shown_as = (str(version), context.is_admin, base_url(request), host, own)
        return self.detail_views.encoded(
            server,
            shown_as,
            lambda: detail_view(request, shown_server(server, own), context, status),
        )

    async def list_servers(self, request: Request) -> Response:
        return await self._answer(request, False)

    async def list_servers_detail(self, request: Request) -> Response:
        return await self._answer(request, True)

    async def show_server(self, request: Request) -> Response:
        context, server = self.service.server_of(request)
        server = await self.addresses.current(server)
        status = self.service.hosts.host_status
        return json_response({"server": shown_view(request, server, context, status)})

    # --- create -----------------------------------------------------------------------------

    async def create_server(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        project_id = require_project(context)
        require_member(context, "os_compute_api:servers:create")
        wanted = parse_create(await read_json(request), microversion(request))
        flavor = self.requests.flavor(context, wanted.flavor_ref)
        image = await self.requests.image(context, wanted.image_ref)
        if wanted.trusted_certs and image is None:
            raise bad_request(
                "Image certificate validation is not supported when booting from volume"
            )
        self.requests.check_fits(flavor, image)
        self.requests.key_name(context, wanted.key_name)
        self.requests.zone(context, wanted.zone, wanted.forced_host)
        self.requests.group(context, wanted.group_id)
        await self.requests.security_groups(context, wanted.security_groups)
        await self.requests.block_devices(context, wanted.block_devices, microversion(request))
        if len(wanted.metadata) > quotas.limits_of(self.records, project_id)["metadata_items"]:
            raise OpenStackError(403, "Quota exceeded for metadata_items.")
        quotas.check_servers(self.records, project_id, wanted.max_count, flavor)
        quotas.check_files(self.records, project_id, wanted.personality)
        reservation = f"r-{uuid.uuid4().hex[:8]}"
        created = []
        for number in range(wanted.max_count):
            spec = self._spec(context, wanted, flavor, number, reservation)
            spec["image_properties"] = image_properties(image)
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
            "launch_index": number,
            "locked": False,
            "description": wanted.description,
            "tags": wanted.tags,
            "trusted_image_certificates": wanted.trusted_certs,
            "hostname": wanted.hostname,
            "scheduler_hints": wanted.scheduler_hints,
            "personality": wanted.personality,
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
        written = await self.service.set_spec(server, **_updates(body, microversion(request)))
        written = await self.addresses.current(written)
        if microversion(request).at_least("2.75"):
            status = self.service.hosts.host_status
            return json_response({"server": shown_view(request, written, context, status)})
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
_UPDATABLE_SINCE = (("2.19", "description"), ("2.90", "hostname"))
# Glance's own attributes of an image; the rest are its properties (shown from 2.98)
_IMAGE_CORE = {
    "id", "name", "status", "visibility", "protected", "checksum", "owner", "size",
    "virtual_size", "min_ram", "min_disk", "created_at", "updated_at", "tags", "self",
    "file", "schema", "container_format", "disk_format", "direct_url", "locations",
    "os_hidden", "os_hash_algo", "os_hash_value", "stores",
}  # fmt: skip
_PROPERTY_KEY = re.compile(r"^[a-zA-Z0-9_:. ]{1,255}$")


def image_properties(image: Obj | None) -> dict[str, str]:
    """An image's own properties as the server keeps them (Nova's `image_*` system
    metadata): text up to 255 characters."""
    found: dict[str, str] = {}
    for key, value in (image or {}).items():
        if key in _IMAGE_CORE or key.startswith("os_glance") or not _PROPERTY_KEY.match(key):
            continue
        if value is not None:
            found[key] = (value if isinstance(value, str) else orjson.dumps(value).decode())[:255]
    return found


# the list filters Nova's schema takes from 2.75 (anything else is a 400); admins have more
_LIST_FILTERS = {
    "user_id", "project_id", "tenant_id", "launch_index", "image_ref", "image", "kernel_id",
    "ramdisk_id", "hostname", "key_name", "power_state", "vm_state", "task_state", "host",
    "node", "flavor", "reservation_id", "launched_at", "terminated_at", "availability_zone",
    "name", "display_name", "description", "display_description", "locked_by", "uuid",
    "root_device_name", "config_drive", "access_ip_v4", "access_ip_v6", "auto_disk_config",
    "progress", "sort_key", "sort_dir", "all_tenants", "soft_deleted", "deleted", "status",
    "changes-since", "changes-before", "ip", "ip6", "created_at", "block_device_mapping",
    "services", "metadata", "system_metadata", "info_cache", "security_groups", "pci_devices",
    "limit", "marker", "tags", "tags-any", "not-tags", "not-tags-any", "locked",
}  # fmt: skip


_STATUSES = {
    "ACTIVE", "BUILD", "DELETED", "ERROR", "HARD_REBOOT", "MIGRATING", "PASSWORD", "PAUSED",
    "REBOOT", "REBUILD", "RESCUE", "RESIZE", "REVERT_RESIZE", "SHELVED", "SHELVED_OFFLOADED",
    "SHUTOFF", "SOFT_DELETED", "SUSPENDED", "UNKNOWN", "VERIFY_RESIZE",
}  # fmt: skip


def check_list_query(query: Any, version: Version) -> None:
    """From 2.38 an unknown `status` filter is a 400 (before, it matched nothing); from 2.75
    a server list refuses query parameters Nova does not know."""
    status = query.get("status")
    if version.at_least("2.38") and status and status.upper() not in _STATUSES:
        raise bad_request(f"Invalid status value: {status}")
    if not version.at_least("2.75"):
        return
    for key in query:
        if key not in _LIST_FILTERS:
            raise bad_request(
                "Invalid input for query parameters "
                f"{key}. Value: {query[key]}. Additional properties are not allowed "
                f"('{key}' was unexpected)"
            )


def _updates(body: Obj, version: Version) -> Obj:
    changes: Obj = {}
    allowed = set(_UPDATABLE) | {key for at, key in _UPDATABLE_SINCE if version.at_least(at)}
    for key in body:
        if key not in allowed:
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
    if "description" in body:
        changes["description"] = check_description(body["description"])
    if "hostname" in body:
        changes["hostname"] = check_hostname(body["hostname"], version)
    return changes
