"""What hangs off one server: its metadata (`/servers/{id}/metadata`), its addresses
(`/servers/{id}/ips`, floating ones too: `server_addresses`) and its instance actions
(`/servers/{id}/os-instance-actions`), as Nova v2.1 serves them.

Metadata writes are members' (a locked server refuses non-admins with 409); the count is
held to the project's `metadata_items` quota. Instance actions list newest first; their
events (what the controller did) are shown to admins, as Nova's default policy does, and
from 2.51 to everyone (tracebacks stay the admins'). From 2.21 a deleted server's actions
are still listed; from 2.58 an action has `updated_at` and the list is paged (`limit`,
`marker`) and filtered (`changes-since`; 2.66 `changes-before`); from 2.62 an event says
its host (`hostId`; `host` for admins), from 2.84 its `details`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.compute import kinds
from unistack.iaas.compute.ports import Networking
from unistack.iaas.records import spec_of, status_of
from unistack.openstack.auth import AuthContext, may_see, require_member
from unistack.openstack.compute import quotas
from unistack.openstack.compute.server_addresses import ServerAddresses
from unistack.openstack.compute.server_requests import check_metadata
from unistack.openstack.compute.server_views import host_id, parse_time, plain_addresses
from unistack.openstack.compute.service import (
    ComputeService,
    microversion,
    next_link,
    page,
    require_unlocked,
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
_ACTION_FIELDS = (
    "action",
    "instance_uuid",
    "request_id",
    "user_id",
    "project_id",
    "start_time",
    "message",
)


class ServerDetails:
    def __init__(self, service: ComputeService) -> None:
        self.service = service
        self.records = service.records
        self.addresses = ServerAddresses(Networking(service.caller))

    def routes(self) -> list[Route]:
        meta = "/v2.1/servers/{server_id}/metadata"
        actions = "/v2.1/servers/{server_id}/os-instance-actions"
        password = "/v2.1/servers/{server_id}/os-server-password"
        return [
            Route(meta, self.list_metadata, methods=["GET"]),
            Route(meta, self.update_metadata, methods=["POST"]),
            Route(meta, self.replace_metadata, methods=["PUT"]),
            Route(f"{meta}/{{key}}", self.show_metadata_item, methods=["GET"]),
            Route(f"{meta}/{{key}}", self.set_metadata_item, methods=["PUT"]),
            Route(f"{meta}/{{key}}", self.delete_metadata_item, methods=["DELETE"]),
            Route("/v2.1/servers/{server_id}/ips", self.list_ips, methods=["GET"]),
            Route("/v2.1/servers/{server_id}/ips/{network}", self.show_ips, methods=["GET"]),
            Route(actions, self.list_actions, methods=["GET"]),
            Route(password, self.show_password, methods=["GET"]),
            Route(password, self.clear_password, methods=["DELETE"]),
            Route(f"{actions}/{{request_id}}", self.show_action, methods=["GET"]),
        ]

    # --- metadata ---------------------------------------------------------------------------

    def _writable(self, request: Request) -> tuple[AuthContext, Obj]:
        context, server = self.service.server_of(request)
        require_member(context, "os_compute_api:server-metadata:update")
        require_unlocked(context, server)
        return context, server

    async def _write(self, server: Obj, metadata: dict[str, str]) -> dict[str, str]:
        project_id = str(spec_of(server).get("project_id"))
        allowed = quotas.limits_of(self.records, project_id)["metadata_items"]
        if 0 <= allowed < len(metadata):
            raise OpenStackError(403, "Quota exceeded for metadata_items.")
        await self.service.set_spec(server, metadata=metadata)
        return metadata

    async def list_metadata(self, request: Request) -> Response:
        _, server = self.service.server_of(request)
        return json_response({"metadata": spec_of(server).get("metadata") or {}})

    async def update_metadata(self, request: Request) -> Response:
        _, server = self._writable(request)
        given = check_metadata((await read_json(request)).get("metadata"))
        merged = {**(spec_of(server).get("metadata") or {}), **given}
        return json_response({"metadata": await self._write(server, merged)})

    async def replace_metadata(self, request: Request) -> Response:
        _, server = self._writable(request)
        given = check_metadata((await read_json(request)).get("metadata"))
        return json_response({"metadata": await self._write(server, given)})

    async def show_metadata_item(self, request: Request) -> Response:
        _, server = self.service.server_of(request)
        key = request.path_params["key"]
        metadata = spec_of(server).get("metadata") or {}
        if key not in metadata:
            raise not_found("Metadata item was not found")
        return json_response({"meta": {key: metadata[key]}})

    async def set_metadata_item(self, request: Request) -> Response:
        _, server = self._writable(request)
        key = request.path_params["key"]
        meta = (await read_json(request)).get("meta")
        given = check_metadata(meta, "meta")
        if key not in given:
            raise bad_request("Request body and URI mismatch")
        if len(given) > 1:
            raise bad_request("Request body contains too many items")
        merged = {**(spec_of(server).get("metadata") or {}), **given}
        await self._write(server, merged)
        return json_response({"meta": given})

    async def delete_metadata_item(self, request: Request) -> Response:
        _, server = self._writable(request)
        key = request.path_params["key"]
        metadata = dict(spec_of(server).get("metadata") or {})
        if key not in metadata:
            raise not_found("Metadata item was not found")
        del metadata[key]
        await self._write(server, metadata)
        return empty(204)

    # --- addresses ----------------------------------------------------------------------------

    async def list_ips(self, request: Request) -> Response:
        _, server = self.service.server_of(request)
        server = await self.addresses.current(server)
        addresses = plain_addresses(status_of(server).get("addresses") or {})
        return json_response({"addresses": addresses})

    async def show_ips(self, request: Request) -> Response:
        _, server = self.service.server_of(request)
        network = request.path_params["network"]
        server = await self.addresses.current(server)
        addresses = plain_addresses(status_of(server).get("addresses") or {})
        if network not in addresses:
            raise not_found("Network could not be found")
        return json_response({network: addresses[network]})

    # --- password ---------------------------------------------------------------------------

    async def show_password(self, request: Request) -> Response:
        """The encrypted password a guest posted to the metadata service: the fake driver's
        guests post none, so it is empty, as Nova answers before one is set."""
        _, server = self.service.server_of(request)
        return json_response({"password": status_of(server).get("password") or ""})

    async def clear_password(self, request: Request) -> Response:
        _, server = self._writable(request)
        await self.service.set_status(server, password="")
        return empty(204)

    # --- instance actions -------------------------------------------------------------------

    def _actions(self, request: Request) -> tuple[AuthContext, str, list[Obj]]:
        """The caller, the server id and its actions, newest first; from 2.21 also for a
        deleted server (its actions outlive it)."""
        context = self.service.authenticate(request)
        server_id = request.path_params["server_id"]
        server = self.records.get(kinds.SERVERS, server_id)
        found = self.records.indexed(kinds.INSTANCE_ACTIONS, "instance", server_id)
        if server is not None:
            self.service.visible_server(context, server_id)
        elif not (microversion(request).at_least("2.21") and found and self._seen(context, found)):
            raise not_found(f"Instance {server_id} could not be found.")
        found = sorted(found, key=lambda o: float(spec_of(o).get("started") or 0), reverse=True)
        return context, server_id, found

    @staticmethod
    def _seen(context: AuthContext, found: list[Obj]) -> bool:
        return all(may_see(context, spec_of(obj).get("project_id")) for obj in found)

    async def list_actions(self, request: Request) -> Response:
        _, server_id, found = self._actions(request)
        version = microversion(request)
        body: Obj = {}
        if version.at_least("2.58"):
            found = _since(found, request.query_params, version)
            found, marker = page(found, request, key=lambda o: str(spec_of(o).get("request_id")))
            if marker is not None:
                body["links"] = next_link(
                    request, f"servers/{server_id}/os-instance-actions", marker
                )
        body["instanceActions"] = [_action_view(obj, version) for obj in found]
        return json_response(body)

    async def show_action(self, request: Request) -> Response:
        context, server_id, found = self._actions(request)
        wanted, version = request.path_params["request_id"], microversion(request)
        for obj in found:
            if spec_of(obj).get("request_id") == wanted:
                view = _action_view(obj, version)
                if context.is_admin or version.at_least("2.51"):
                    events = status_of(obj).get("events") or []
                    view["events"] = [_event_view(e, context.is_admin, version) for e in events]
                return json_response({"instanceAction": view})
        raise not_found(f"Action for request_id {wanted} on instance {server_id} not found")


def _updated(obj: Obj) -> str:
    events = status_of(obj).get("events") or []
    finished = [str(e.get("finish_time")) for e in events if e.get("finish_time")]
    return max(finished) if finished else str(spec_of(obj).get("start_time"))


def _since(found: list[Obj], query: Any, version: Version) -> list[Obj]:
    """`changes-since` (2.58) and `changes-before` (2.66) on each action's last change."""
    since, before = query.get("changes-since"), query.get("changes-before")
    if since:
        found = [o for o in found if parse_time(_updated(o)) >= parse_time(since)]
    if before and version.at_least("2.66"):
        found = [o for o in found if parse_time(_updated(o)) <= parse_time(before)]
    return found


def _action_view(obj: Obj, version: Version) -> Obj:
    spec, status = spec_of(obj), status_of(obj)
    view = {key: spec.get(key) for key in _ACTION_FIELDS}
    view["message"] = status.get("message") or spec.get("message")
    if version.at_least("2.58"):
        view["updated_at"] = _updated(obj)
    return view


def _event_view(event: Obj, is_admin: bool, version: Version) -> Obj:
    """An event: its traceback for admins only; from 2.62 the host's digest (`hostId`, and
    the host itself for admins); from 2.84 its `details` (admins)."""
    view = {k: event.get(k) for k in ("event", "start_time", "finish_time", "result")}
    if is_admin:
        view["traceback"] = event.get("traceback")
    if version.at_least("2.62"):
        host = str(event.get("host") or "")
        view["hostId"] = host_id(str(event.get("project_id") or ""), host) if host else ""
        if is_admin:
            view["host"] = host
    if version.at_least("2.84") and is_admin:
        view["details"] = event.get("details")
    return view
