"""A server's tags (`/servers/{id}/tags`), from microversion 2.26, as Nova serves them.

Tags are short strings (1 to 60 characters, no ',' or '/') kept on the server's spec, at
most 50 per server; the server list filters on them (`server_views.matches`). Reading is
for whoever sees the server; changing is for its project's members, while the server is not
building or being deleted (409 then, as Nova's state check). Adding one answers 201 with its
Location, or 204 when the server already has it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.compute import kinds
from unistack.iaas.records import spec_of, status_of
from unistack.openstack.auth import AuthContext, require_member
from unistack.openstack.compute.server_requests import MAX_TAGS, check_tag, check_tags
from unistack.openstack.compute.service import (
    ComputeService,
    conflict_state,
    links_for,
    require_version,
)
from unistack.openstack.web import (
    OpenStackError,
    bad_request,
    empty,
    json_response,
    not_found,
    read_json,
)

Obj = dict[str, Any]


def _too_many() -> OpenStackError:
    return bad_request(f"The number of tags exceeded the per-server limit {MAX_TAGS}")


class ServerTags:
    def __init__(self, service: ComputeService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        base = "/v2.1/servers/{server_id}/tags"
        return [
            Route(base, self.list_tags, methods=["GET"]),
            Route(base, self.replace_tags, methods=["PUT"]),
            Route(base, self.delete_tags, methods=["DELETE"]),
            Route(f"{base}/{{tag}}", self.check_tag, methods=["GET"]),
            Route(f"{base}/{{tag}}", self.add_tag, methods=["PUT"]),
            Route(f"{base}/{{tag}}", self.delete_tag, methods=["DELETE"]),
        ]

    def _readable(self, request: Request) -> tuple[AuthContext, Obj]:
        require_version(request, "2.26")
        return self.service.server_of(request)

    def _writable(self, request: Request, action: str) -> Obj:
        context, server = self._readable(request)
        require_member(context, f"os_compute_api:os-server-tags:{action}")
        server_id, state = server["metadata"]["name"], status_of(server).get("vm_state")
        if server["metadata"].get("deletionTimestamp"):
            raise conflict_state(server_id, action, "task_state", "deleting")
        if state == kinds.BUILDING:
            raise conflict_state(server_id, action, "vm_state", state)
        return server

    async def _store(self, server: Obj, tags: list[str]) -> None:
        await self.service.set_spec(server, tags=tags)

    async def list_tags(self, request: Request) -> Response:
        _, server = self._readable(request)
        return json_response({"tags": list(spec_of(server).get("tags") or [])})

    async def replace_tags(self, request: Request) -> Response:
        server = self._writable(request, "update_all")
        body = await read_json(request)
        if not isinstance(body, dict) or set(body) != {"tags"}:
            raise bad_request("Invalid input for field/attribute tags.")
        if isinstance(body["tags"], list) and len(body["tags"]) > MAX_TAGS:
            raise _too_many()
        tags = check_tags(body["tags"])
        await self._store(server, tags)
        return json_response({"tags": tags})

    async def delete_tags(self, request: Request) -> Response:
        server = self._writable(request, "delete_all")
        await self._store(server, [])
        return empty(204)

    async def check_tag(self, request: Request) -> Response:
        _, server = self._readable(request)
        tag = request.path_params["tag"]
        if tag not in (spec_of(server).get("tags") or []):
            raise not_found(f"Tag {tag} could not be found.")
        return empty(204)

    async def add_tag(self, request: Request) -> Response:
        server = self._writable(request, "update")
        tag = check_tag(request.path_params["tag"])
        tags = list(spec_of(server).get("tags") or [])
        if tag in tags:
            return empty(204)
        if len(tags) >= MAX_TAGS:
            raise _too_many()
        await self._store(server, [*tags, tag])
        server_id = server["metadata"]["name"]
        location = f"{links_for(request, 'servers', server_id)[0]['href']}/tags/{tag}"
        return empty(201, {"Location": location})

    async def delete_tag(self, request: Request) -> Response:
        server = self._writable(request, "delete")
        tag = request.path_params["tag"]
        tags = list(spec_of(server).get("tags") or [])
        if tag not in tags:
            raise not_found(f"Tag {tag} could not be found.")
        await self._store(server, [t for t in tags if t != tag])
        return empty(204)
