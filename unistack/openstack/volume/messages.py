"""User messages (3.3): what went wrong with a request that failed after it was accepted, as
the controller records it (a volume no backend could take). List, show, delete; a project
sees its own, an admin all.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.records import spec_of
from unistack.iaas.volume import kinds
from unistack.openstack.auth import AuthContext
from unistack.openstack.volume.service import VolumeService, link, page, require_version
from unistack.openstack.web import empty, json_response

Obj = dict[str, Any]
SHOWN = (
    "request_id",
    "message_level",
    "event_id",
    "created_at",
    "guaranteed_until",
    "resource_uuid",
    "resource_type",
    "user_message",
)


class Messages:
    def __init__(self, service: VolumeService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        return [
            Route("/messages", self.list_messages, methods=["GET"]),
            Route("/messages/{message_id}", self.show_message, methods=["GET"]),
            Route("/messages/{message_id}", self.delete_message, methods=["DELETE"]),
        ]

    def view(self, message: Obj, request: Request) -> Obj:
        spec, message_id = spec_of(message), message["metadata"]["name"]
        shown = {key: spec.get(key) for key in SHOWN if spec.get(key) is not None}
        return {"id": message_id, **shown, "links": link(request, "messages", message_id)}

    def _visible(self, request: Request, context: AuthContext) -> Obj:
        return self.service.visible(kinds.MESSAGES, request.path_params["message_id"], context)

    async def list_messages(self, request: Request) -> Response:
        require_version(request, "3.3")
        context = self.service.reader(request)
        found = self.service.listed(kinds.MESSAGES, request, context)
        if context.is_admin and not request.query_params.get("all_tenants"):
            found = self.service.records.all(kinds.MESSAGES)
        ordered = page(found, request, lambda obj, key: spec_of(obj).get(key))
        return json_response({"messages": [self.view(m, request) for m in ordered]})

    async def show_message(self, request: Request) -> Response:
        require_version(request, "3.3")
        context = self.service.reader(request)
        return json_response({"message": self.view(self._visible(request, context), request)})

    async def delete_message(self, request: Request) -> Response:
        require_version(request, "3.3")
        context = self.service.writer(request, "message:delete")
        message = self._visible(request, context)
        await self.service.records.delete(kinds.MESSAGES, message["metadata"]["name"])
        return empty(204)
