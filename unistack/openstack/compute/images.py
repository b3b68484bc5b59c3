"""Images through the compute API (`/images`, Nova's image proxy up to 2.35): list, detail,
show, delete and metadata, answered by the Image API with the caller's own token, so Glance
decides what the caller may see and change.

Glance's image reads in Nova's shape: status ACTIVE / SAVING / ERROR / DELETED with a
progress, `minRam`, `minDisk`, the custom properties as `metadata`, the size as
`OS-EXT-IMG-SIZE:size`, and the server a snapshot was taken of (`instance_uuid`). Metadata
writes are JSON patches on the image.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.openstack.compute import quotas
from unistack.openstack.compute.server_requests import check_metadata
from unistack.openstack.compute.service import ComputeService, links_for, next_link, page
from unistack.openstack.web import (
    OpenStackError,
    bad_request,
    empty,
    forbidden,
    json_response,
    not_found,
    read_json,
)

Obj = dict[str, Any]
IMAGES = "/image/v2/images"
PATCH = {"content-type": "application/openstack-images-v2.1-json-patch"}
CORE = frozenset(
    {
        "id", "name", "status", "visibility", "protected", "checksum", "os_hash_algo",
        "os_hash_value", "owner", "size", "virtual_size", "min_ram", "min_disk", "created_at",
        "updated_at", "tags", "disk_format", "container_format", "self", "file", "schema",
        "direct_url", "locations", "os_hidden", "stores",
    }
)  # fmt: skip
_STATUS = {
    "active": ("ACTIVE", 100),
    "queued": ("SAVING", 25),
    "saving": ("SAVING", 50),
    "uploading": ("SAVING", 50),
    "importing": ("SAVING", 50),
    "killed": ("ERROR", 0),
    "deleted": ("DELETED", 0),
    "pending_delete": ("DELETED", 0),
}


def properties(image: Obj) -> dict[str, str]:
    return {k: str(v) for k, v in image.items() if k not in CORE and v is not None}


def image_view(request: Request, image: Obj, detail: bool = True) -> Obj:
    image_id = str(image["id"])
    links = links_for(request, "images", image_id)
    links.append({"rel": "alternate", "type": "application/vnd.openstack.image", "href": ""})
    links[-1]["href"] = f"{request.url.scheme}://{request.url.netloc}/image/v2/images/{image_id}"
    view: Obj = {"id": image_id, "name": image.get("name"), "links": links}
    if not detail:
        return view
    status, progress = _STATUS.get(str(image.get("status")), ("UNKNOWN", 0))
    view |= {
        "status": status,
        "progress": progress,
        "created": image.get("created_at"),
        "updated": image.get("updated_at"),
        "minDisk": int(image.get("min_disk") or 0),
        "minRam": int(image.get("min_ram") or 0),
        "metadata": properties(image),
        "OS-EXT-IMG-SIZE:size": image.get("size"),
    }
    server_id = image.get("instance_uuid")
    if server_id:
        view["server"] = {"id": server_id, "links": links_for(request, "servers", server_id)}
    return view


def _matches(image: Obj, query: Any) -> bool:
    checks = (
        ("name", lambda v: image.get("name") == v),
        ("status", lambda v: _STATUS.get(str(image.get("status")), ("UNKNOWN", 0))[0] == v.upper()),
        ("server", lambda v: str(image.get("instance_uuid", "")) == v.rsplit("/", 1)[-1]),
        ("type", lambda v: image.get("image_type", "") == v),
        ("minRam", lambda v: int(image.get("min_ram") or 0) >= int(v)),
        ("minDisk", lambda v: int(image.get("min_disk") or 0) >= int(v)),
        ("changes-since", lambda v: str(image.get("updated_at", "")) >= v),
    )
    try:
        return all(test(query[key]) for key, test in checks if query.get(key))
    except ValueError as exc:
        raise bad_request(f"Invalid filter: {exc}") from exc


class Images:
    def __init__(self, service: ComputeService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        one, meta = "/v2.1/images/{image_id}", "/v2.1/images/{image_id}/metadata"
        return [
            Route("/v2.1/images", self.list_images, methods=["GET"]),
            Route("/v2.1/images/detail", self.list_images_detail, methods=["GET"]),
            Route(one, self.show_image, methods=["GET"]),
            Route(one, self.delete_image, methods=["DELETE"]),
            Route(meta, self.list_metadata, methods=["GET"]),
            Route(meta, self.update_metadata, methods=["POST"]),
            Route(meta, self.replace_metadata, methods=["PUT"]),
            Route(f"{meta}/{{key}}", self.show_metadata_item, methods=["GET"]),
            Route(f"{meta}/{{key}}", self.set_metadata_item, methods=["PUT"]),
            Route(f"{meta}/{{key}}", self.delete_metadata_item, methods=["DELETE"]),
        ]

    async def _glance(self, request: Request, method: str, path: str, body: Any = None) -> Any:
        self.service.authenticate(request)
        headers = PATCH if method == "PATCH" else None
        path, _, query = path.partition("?")
        params = dict(urllib.parse.parse_qsl(query)) or None
        status, answer = await self.service.call_as(request, method, path, body, headers, params)
        if status == 404:
            raise not_found("Image not found.")
        if status == 403:
            raise forbidden(str((answer or {}).get("message") or "Forbidden"))
        if status >= 400:
            raise OpenStackError(status if status < 500 else 500, "The image request failed.")
        return answer

    async def _all(self, request: Request) -> list[Obj]:
        images: list[Obj] = []
        path = f"{IMAGES}?limit=1000"
        while path:
            answer = await self._glance(request, "GET", path)
            images += answer.get("images", [])
            following = answer.get("next")
            path = f"/image{following}" if following else ""
        return images

    async def _answer(self, request: Request, detail: bool) -> Response:
        images = [i for i in await self._all(request) if _matches(i, request.query_params)]
        images.sort(key=lambda i: str(i.get("created_at")), reverse=True)
        shown, marker = page(images, request)
        body: Obj = {"images": [image_view(request, i, detail) for i in shown]}
        if marker is not None:
            body["images_links"] = next_link(
                request, "images/detail" if detail else "images", marker
            )
        return json_response(body)

    async def list_images(self, request: Request) -> Response:
        return await self._answer(request, False)

    async def list_images_detail(self, request: Request) -> Response:
        return await self._answer(request, True)

    async def _image(self, request: Request) -> Obj:
        image: Obj = await self._glance(
            request, "GET", f"{IMAGES}/{request.path_params['image_id']}"
        )
        return image

    async def show_image(self, request: Request) -> Response:
        return json_response({"image": image_view(request, await self._image(request))})

    async def delete_image(self, request: Request) -> Response:
        await self._glance(request, "DELETE", f"{IMAGES}/{request.path_params['image_id']}")
        return empty(204)

    # --- metadata ---------------------------------------------------------------------------

    async def _set(self, request: Request, image: Obj, wanted: dict[str, str]) -> dict[str, str]:
        context = self.service.authenticate(request)
        limit = quotas.limits_of(self.service.records, context.project_id or "")["metadata_items"]
        if 0 <= limit < len(wanted):
            raise OpenStackError(403, "Quota exceeded for metadata_items.")
        have = properties(image)
        ops: list[Obj] = [{"op": "remove", "path": f"/{k}"} for k in have if k not in wanted]
        ops += [
            {"op": "replace" if k in have else "add", "path": f"/{k}", "value": v}
            for k, v in wanted.items()
            if have.get(k) != v
        ]
        if ops:
            image = await self._glance(request, "PATCH", f"{IMAGES}/{image['id']}", ops)
        return properties(image)

    async def list_metadata(self, request: Request) -> Response:
        return json_response({"metadata": properties(await self._image(request))})

    async def update_metadata(self, request: Request) -> Response:
        given = check_metadata((await read_json(request)).get("metadata"))
        image = await self._image(request)
        merged = {**properties(image), **given}
        return json_response({"metadata": await self._set(request, image, merged)})

    async def replace_metadata(self, request: Request) -> Response:
        given = check_metadata((await read_json(request)).get("metadata"))
        image = await self._image(request)
        return json_response({"metadata": await self._set(request, image, given)})

    async def show_metadata_item(self, request: Request) -> Response:
        key = request.path_params["key"]
        metadata = properties(await self._image(request))
        if key not in metadata:
            raise not_found("Image not found.")
        return json_response({"meta": {key: metadata[key]}})

    async def set_metadata_item(self, request: Request) -> Response:
        key = request.path_params["key"]
        given = check_metadata((await read_json(request)).get("meta"), "meta")
        if key not in given:
            raise bad_request("Request body and URI mismatch")
        if len(given) > 1:
            raise bad_request("Request body contains too many items")
        image = await self._image(request)
        await self._set(request, image, {**properties(image), **given})
        return json_response({"meta": given})

    async def delete_metadata_item(self, request: Request) -> Response:
        key = request.path_params["key"]
        image = await self._image(request)
        metadata = properties(image)
        if key not in metadata:
            raise not_found("Image not found.")
        del metadata[key]
        await self._set(request, image, metadata)
        return empty(204)
