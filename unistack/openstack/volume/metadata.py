"""The metadata sub-resource Cinder gives volumes and snapshots, one implementation for both:
`GET|POST|PUT {collection}/{id}/metadata` (show, merge, replace) and
`GET|PUT|DELETE {collection}/{id}/metadata/{key}`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.crds import Kind
from unistack.iaas.records import spec_of
from unistack.openstack.volume.service import VolumeService, check_metadata, now
from unistack.openstack.web import bad_request, empty, json_response, not_found, read_json

Obj = dict[str, Any]


class Metadata:
    def __init__(self, service: VolumeService, kind: Kind, collection: str, rule: str) -> None:
        self.service = service
        self.kind = kind
        self.collection = collection
        self.rule = rule  # "volume" or "snapshot"

    def routes(self) -> list[Route]:
        base = f"/{self.collection}/{{object_id}}/metadata"
        return [
            Route(base, self.show_metadata, methods=["GET"]),
            Route(base, self.merge_metadata, methods=["POST"]),
            Route(base, self.replace_metadata, methods=["PUT"]),
            Route(f"{base}/{{key}}", self.show_item, methods=["GET"]),
            Route(f"{base}/{{key}}", self.update_item, methods=["PUT"]),
            Route(f"{base}/{{key}}", self.delete_item, methods=["DELETE"]),
        ]

    def _read(self, request: Request) -> dict[str, str]:
        context = self.service.reader(request)
        obj = self.service.visible(self.kind, request.path_params["object_id"], context)
        return dict(spec_of(obj).get("metadata") or {})

    async def _write(self, request: Request, edit: Any) -> dict[str, str]:
        context = self.service.writer(request, f"{self.rule}:update_{self.rule}_metadata")
        object_id = request.path_params["object_id"]
        self.service.visible(self.kind, object_id, context)

        def change(obj: Obj) -> None:
            metadata = dict(obj["spec"].get("metadata") or {})
            edit(metadata)
            obj["spec"]["metadata"] = metadata
            obj["spec"]["updated_at"] = now()

        written = await self.service.records.update(self.kind, object_id, change)
        return dict(spec_of(written).get("metadata") or {})

    async def show_metadata(self, request: Request) -> Response:
        return json_response({"metadata": self._read(request)})

    async def _body(self, request: Request) -> dict[str, str]:
        body = await read_json(request)
        if "metadata" not in body:
            raise bad_request("Missing required element 'metadata' in request body.")
        return check_metadata(body["metadata"])

    async def merge_metadata(self, request: Request) -> Response:
        given = await self._body(request)
        return json_response({"metadata": await self._write(request, lambda m: m.update(given))})

    async def replace_metadata(self, request: Request) -> Response:
        given = await self._body(request)

        def replace(metadata: dict[str, str]) -> None:
            metadata.clear()
            metadata.update(given)

        return json_response({"metadata": await self._write(request, replace)})

    async def show_item(self, request: Request) -> Response:
        key = request.path_params["key"]
        metadata = self._read(request)
        if key not in metadata:
            raise not_found("Metadata item was not found")
        return json_response({"meta": {key: metadata[key]}})

    async def update_item(self, request: Request) -> Response:
        key = request.path_params["key"]
        body = await read_json(request)
        meta = check_metadata(body.get("meta"))
        if key not in meta:
            raise bad_request("Request body and URI mismatch")
        if len(meta) > 1:
            raise bad_request("Request body contains too many items")
        await self._write(request, lambda m: m.update(meta))
        return json_response({"meta": meta})

    async def delete_item(self, request: Request) -> Response:
        key = request.path_params["key"]
        if key not in self._read(request):
            raise not_found("Metadata item was not found")
        await self._write(request, lambda m: m.pop(key, None))
        return empty(200)
