"""What hangs off one server: its metadata (`/servers/{id}/metadata`), its addresses
(`/servers/{id}/ips`) and its instance actions (`/servers/{id}/os-instance-actions`), as
Nova v2.1 serves them.

Metadata writes are members' (a locked server refuses non-admins with 409); the count is
held to the project's `metadata_items` quota. Instance actions list newest first; their
events (what the controller did) are shown to admins, as Nova's default policy does.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.compute import kinds
from unistack.iaas.records import spec_of, status_of
from unistack.openstack.auth import AuthContext, require_member
from unistack.openstack.compute import quotas
from unistack.openstack.compute.server_requests import check_metadata
from unistack.openstack.compute.server_views import plain_addresses
from unistack.openstack.compute.service import ComputeService, require_unlocked
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
        addresses = plain_addresses(status_of(server).get("addresses") or {})
        return json_response({"addresses": addresses})

    async def show_ips(self, request: Request) -> Response:
        _, server = self.service.server_of(request)
        network = request.path_params["network"]
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

    def _actions(self, server: Obj) -> list[Obj]:
        found = self.records.indexed(kinds.INSTANCE_ACTIONS, "instance", server["metadata"]["name"])
        return sorted(found, key=lambda obj: float(spec_of(obj).get("started") or 0), reverse=True)

    async def list_actions(self, request: Request) -> Response:
        _, server = self.service.server_of(request)
        items = [_action_view(obj) for obj in self._actions(server)]
        return json_response({"instanceActions": items})

    async def show_action(self, request: Request) -> Response:
        context, server = self.service.server_of(request)
        wanted = request.path_params["request_id"]
        for obj in self._actions(server):
            if spec_of(obj).get("request_id") == wanted:
                view = _action_view(obj)
                if context.is_admin:
                    view["events"] = status_of(obj).get("events") or []
                return json_response({"instanceAction": view})
        raise not_found(
            f"Action for request_id {wanted} on instance {server['metadata']['name']} not found"
        )


def _action_view(obj: Obj) -> Obj:
    spec, status = spec_of(obj), status_of(obj)
    view = {key: spec.get(key) for key in _ACTION_FIELDS}
    view["message"] = status.get("message") or spec.get("message")
    return view
