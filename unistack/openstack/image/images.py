"""`/v2/images`: create, list (filters, sorting, pagination), show, update (JSON patch),
delete, tags, deactivate and reactivate.

An image is created `queued` in its owner's namespace with the attributes the request sets
(checked by `attributes`); its data comes later (`transfer`). Lists are read from memory:
visibility as `service.listed_by_default` says unless a `visibility` filter asks otherwise,
hidden images only on request, then Glance's filters, sort keys and `limit`/`marker` with a
`next` link.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.image import kinds
from unistack.iaas.records import Duplicate, spec_of, status_of
from unistack.openstack.auth import AuthContext
from unistack.openstack.image import attributes
from unistack.openstack.image.service import (
    MAX_PROPERTIES,
    MAX_TAGS,
    ImageService,
    listed_by_default,
    may_show,
    member_status,
    new_image_id,
    now_iso,
    view,
)
from unistack.openstack.web import (
    OpenStackError,
    bad_request,
    conflict,
    empty,
    json_response,
    not_found,
    read_json,
    read_json_value,
)

Obj = dict[str, Any]
DEFAULT_LIMIT = 25  # Glance's limit_param_default
MAX_LIMIT = 1000  # api_limit_max
PATCH_TYPES = (
    "application/openstack-images-v2.0-json-patch",
    "application/openstack-images-v2.1-json-patch",
)
SORT_KEYS = (
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "id",
    "created_at",
    "updated_at",
    "visibility",
    "owner",
    "min_ram",
    "min_disk",
)
_NOT_FILTERS = frozenset({"limit", "marker", "sort_key", "sort_dir", "sort", "member_status"})


@dataclass
class Images:
    service: ImageService

    def routes(self) -> list[Route]:
        return [
            Route("/v2/images", self.list_images, methods=["GET"]),
            Route("/v2/images", self.create_image, methods=["POST"]),
            Route("/v2/images/{image_id}", self.show_image, methods=["GET"]),
            Route("/v2/images/{image_id}", self.update_image, methods=["PATCH"]),
            Route("/v2/images/{image_id}", self.delete_image, methods=["DELETE"]),
            Route("/v2/images/{image_id}/tags/{tag}", self.add_tag, methods=["PUT"]),
            Route("/v2/images/{image_id}/tags/{tag}", self.delete_tag, methods=["DELETE"]),
            Route("/v2/images/{image_id}/actions/deactivate", self.deactivate, methods=["POST"]),
            Route("/v2/images/{image_id}/actions/reactivate", self.reactivate, methods=["POST"]),
        ]

    # --- create -------------------------------------------------------------------------

    async def create_image(self, request: Request) -> Response:
        context = self.service.caller(request)
        body = await read_json(request)
        image_id = attributes.check_id(body.pop("id")) if "id" in body else new_image_id()
        spec = new_spec(context, body)
        try:
            created = await self.service.records.create(
                kinds.IMAGES, image_id, spec, {"status": "queued", "updated_at": now_iso()}
            )
        except Duplicate:
            raise conflict(f"Image with identifier {image_id} already exists!") from None
        return json_response(view(created), 201, {"Location": f"/v2/images/{image_id}"})

    # --- read ---------------------------------------------------------------------------

    async def show_image(self, request: Request) -> Response:
        context = self.service.caller(request)
        return json_response(view(self.service.visible_image(context, path_id(request))))

    async def list_images(self, request: Request) -> Response:
        context = self.service.caller(request)
        query = request.query_params
        limit = _limit(query.get("limit"))
        keys = sort_keys(query.getlist("sort_key"), query.getlist("sort_dir"), query.get("sort"))
        wanted = _visibility_rule(context, query.get("visibility"), query.get("member_status"))
        hidden = _as_bool(query.get("os_hidden", "false"), "os_hidden")
        filters = {k: v for k, v in query.items() if k not in _NOT_FILTERS}
        filters.pop("os_hidden", None)
        tags = query.getlist("tag")
        found = [
            image
            for image in self.service.records.all(kinds.IMAGES)
            if wanted(image)
            and bool(spec_of(image).get("os_hidden")) == hidden
            and matches(view(image), filters, tags)
        ]
        found = sort_images(found, keys)
        start = _after_marker(found, query.get("marker"))
        page = found[start : start + limit]
        body: Obj = {
            "images": [view(image) for image in page],
            "first": _link(request, {}),
            "schema": "/v2/schemas/images",
        }
        if start + limit < len(found) and page:
            body["next"] = _link(request, {"marker": page[-1]["metadata"]["name"]})
        return json_response(body)

    # --- update -------------------------------------------------------------------------

    async def update_image(self, request: Request) -> Response:
        context = self.service.caller(request)
        image_id = path_id(request)
        media = request.headers.get("content-type", "").split(";")[0].strip()
        if media not in PATCH_TYPES:
            raise OpenStackError(
                415,
                f"Unsupported Content-Type {media!r}: use {PATCH_TYPES[1]}.",
                {"Accept-Patch": ", ".join(PATCH_TYPES)},
            )
        operations = await _patch_operations(request)
        image = self.service.owned_image(context, image_id, "modify")
        changes = [_change(op, context) for op in operations]
        apply = _applier(changes, spec_of(image), status_of(image))
        apply(dict(spec_of(image)))  # validate on a copy before writing anything

        def change(obj: Obj) -> None:
            apply(obj["spec"])
            obj["spec"]["updated_at"] = now_iso()

        updated = await self.service.records.update(kinds.IMAGES, image_id, change)
        return json_response(view(updated))

    # --- delete -------------------------------------------------------------------------

    async def delete_image(self, request: Request) -> Response:
        context = self.service.caller(request)
        image_id = path_id(request)
        image = self.service.owned_image(context, image_id, "delete")
        if spec_of(image).get("protected"):
            raise OpenStackError(403, f"Image {image_id} is protected and cannot be deleted.")
        await self.service.records.delete(kinds.IMAGES, image_id)
        self.service.data.forget(image_id)
        return empty()

    # --- tags ---------------------------------------------------------------------------

    async def add_tag(self, request: Request) -> Response:
        context = self.service.caller(request)
        image_id, tag = path_id(request), request.path_params["tag"]
        attributes.check_tags([tag])
        image = self.service.owned_image(context, image_id, "modify")
        tags = list(spec_of(image).get("tags") or [])
        if tag in tags:
            return empty()
        if len(tags) >= MAX_TAGS:
            raise OpenStackError(413, f"Maximum number of tags ({MAX_TAGS}) exceeded.")

        def change(obj: Obj) -> None:
            current = obj["spec"].setdefault("tags", [])
            if tag not in current:
                current.append(tag)
            obj["spec"]["updated_at"] = now_iso()

        await self.service.records.update(kinds.IMAGES, image_id, change)
        return empty()

    async def delete_tag(self, request: Request) -> Response:
        context = self.service.caller(request)
        image_id, tag = path_id(request), request.path_params["tag"]
        image = self.service.owned_image(context, image_id, "modify")
        if tag not in (spec_of(image).get("tags") or []):
            raise not_found(f"Tag {tag} not found on image {image_id}.")

        def change(obj: Obj) -> None:
            obj["spec"]["tags"] = [t for t in obj["spec"].get("tags") or [] if t != tag]
            obj["spec"]["updated_at"] = now_iso()

        await self.service.records.update(kinds.IMAGES, image_id, change)
        return empty()

    # --- actions ------------------------------------------------------------------------

    async def deactivate(self, request: Request) -> Response:
        return await self._set_active(request, active=False)

    async def reactivate(self, request: Request) -> Response:
        return await self._set_active(request, active=True)

    async def _set_active(self, request: Request, active: bool) -> Response:
        context = self.service.caller(request)
        image_id = path_id(request)
        image = self.service.owned_image(context, image_id, "deactivate or reactivate")
        status = status_of(image).get("status")
        if status not in ("active", "deactivated"):
            verb = "reactivate" if active else "deactivate"
            raise bad_request(f"Not allowed to {verb} image in status '{status}'")
        target = "active" if active else "deactivated"
        if status != target:

            def change(obj: Obj) -> None:
                obj["status"].update(status=target, updated_at=now_iso())

            await self.service.records.update(kinds.IMAGES, image_id, change, status=True)
        return empty()


def path_id(request: Request) -> str:
    return str(request.path_params["image_id"])


def new_spec(context: AuthContext, body: Obj) -> Obj:
    """The spec of a new image from a create request (validated; 400 or 403 on bad input)."""
    spec: Obj = {
        "name": None,
        "visibility": "shared",
        "protected": False,
        "os_hidden": False,
        "min_ram": 0,
        "min_disk": 0,
        "disk_format": None,
        "container_format": None,
        "tags": [],
        "properties": {},
        "members": {},
    }
    for name, value in body.items():
        attributes.check_writable(name, context)
        checked = attributes.check_value(name, value, context)
        if name in attributes.BASE:
            spec[name] = checked
        else:
            spec["properties"][name] = checked
    if len(spec["properties"]) > MAX_PROPERTIES:
        raise OpenStackError(413, f"Maximum number of properties ({MAX_PROPERTIES}) exceeded.")
    if len(spec["tags"]) > MAX_TAGS:
        raise OpenStackError(413, f"Maximum number of tags ({MAX_TAGS}) exceeded.")
    spec["tags"] = attributes.check_tags(spec["tags"])
    spec.setdefault("owner", context.project_id)
    spec["project_id"] = spec.get("owner") or context.project_id
    spec["created_at"] = spec["updated_at"] = now_iso()
    return spec


# --- JSON patch ---------------------------------------------------------------------------

Change = tuple[str, str, Any]  # (op, attribute, value)


async def _patch_operations(request: Request) -> list[Obj]:
    operations = await read_json_value(request)
    if not isinstance(operations, list) or not all(isinstance(o, dict) for o in operations):
        raise bad_request("A JSON patch is a list of objects.")
    return operations


def _change(operation: Obj, context: AuthContext) -> Change:
    """One patch operation in either dialect: v2.1 `{"op": "add", "path": "/x"}` or v2.0
    `{"add": "/x"}`, checked against the schema."""
    if "op" in operation:
        op, path = operation.get("op"), operation.get("path")
    else:
        found = [key for key in ("add", "replace", "remove") if key in operation]
        if len(found) != 1:
            raise bad_request("Operation objects must contain exactly one of add, replace, remove.")
        op, path = found[0], operation[found[0]]
    if op not in ("add", "replace", "remove"):
        raise bad_request(f"Invalid operation: {op!r}.")
    name = attributes.pointer_name(path)
    attributes.check_writable(name, context)
    if op == "remove":
        if name in attributes.BASE:
            raise forbidden_remove(name)
        return op, name, None
    if "value" not in operation:
        raise bad_request(f"Operation {op} on {path} needs a value.")
    return op, name, attributes.check_value(name, operation["value"], context)


def forbidden_remove(name: str) -> OpenStackError:
    return OpenStackError(403, f"Attribute '{name}' is a base attribute and cannot be removed.")


def _applier(changes: list[Change], spec: Obj, status: Obj) -> Callable[[Obj], None]:
    def apply(target: Obj) -> None:
        properties = dict(target.get("properties") or {})
        for op, name, value in changes:
            if name in attributes.BASE:
                if name in ("disk_format", "container_format") and status.get(
                    "status", "queued"
                ) not in ("queued",):
                    raise OpenStackError(
                        403, f"Attribute {name} can be only replaced for a queued image."
                    )
                target[name] = attributes.check_tags(value) if name == "tags" else value
            elif op == "remove":
                if name not in properties:
                    raise conflict(f"Property {name} does not exist.")
                del properties[name]
            elif op == "replace" and name not in properties:
                raise conflict(f"Property {name} does not exist.")
            else:
                properties[name] = value
        if len(properties) > MAX_PROPERTIES:
            raise OpenStackError(413, f"Maximum number of properties ({MAX_PROPERTIES}) exceeded.")
        target["properties"] = properties

    return apply


# --- listing ------------------------------------------------------------------------------


def _visibility_rule(
    context: AuthContext, visibility: str | None, status: str | None
) -> Callable[[Obj], bool]:
    if status is not None and status not in ("pending", "accepted", "rejected", "all"):
        raise bad_request(f"Invalid status value: {status}")
    if visibility is None:
        if status is None:
            return lambda image: listed_by_default(context, image)
        return lambda image: listed_by_default(context, image) or _member_as(context, image, status)
    if visibility not in ("public", "private", "shared", "community", "all"):
        raise bad_request(f"Invalid visibility value: {visibility}")

    def rule(image: Obj) -> bool:
        spec = spec_of(image)
        if visibility != "all" and spec.get("visibility") != visibility:
            return False
        if not may_show(context, image):
            return False
        if spec.get("visibility") != "shared" or spec.get("owner") == context.project_id:
            return True
        return (context.is_admin and status is None) or _member_as(context, image, status)

    return rule


def _member_as(context: AuthContext, image: Obj, status: str | None) -> bool:
    if spec_of(image).get("visibility") != "shared":
        return False
    have = member_status(image, context.project_id)
    return have is not None and (status == "all" or have == (status or "accepted"))


def matches(shown: Obj, filters: dict[str, str], tags: list[str]) -> bool:
    if not all(tag in shown["tags"] for tag in tags):
        return False
    for key, wanted in filters.items():
        if key == "tag":
            continue
        if key in ("size_min", "size_max"):
            size = shown.get("size")
            bound = _as_int(wanted, key)
            if size is None or (size < bound if key == "size_min" else size > bound):
                return False
            continue
        value = shown.get(key)
        if isinstance(value, bool):
            if value != _as_bool(wanted, key):
                return False
        elif key == "id" and wanted.startswith("in:"):
            if value not in wanted[3:].split(","):
                return False
        elif str(value) != wanted and not (value is None and wanted == "None"):
            return False
    return True


def sort_keys(keys: list[str], dirs: list[str], sort: str | None) -> list[tuple[str, bool]]:
    """[(key, descending)]: from `sort=name:asc,size` or `sort_key`/`sort_dir` pairs;
    Glance's default is newest first."""
    pairs: list[tuple[str, str]] = []
    if sort:
        if keys or dirs:
            raise bad_request("The 'sort' parameter cannot be combined with sort_key/sort_dir.")
        for part in sort.split(","):
            key, _, direction = part.strip().partition(":")
            pairs.append((key, direction or "desc"))
    else:
        if len(dirs) > 1 and len(dirs) != len(keys):
            raise bad_request("Number of sort dirs does not match the number of sort keys")
        for index, key in enumerate(keys or ["created_at"]):
            direction = dirs[index] if len(dirs) > 1 else (dirs[0] if dirs else "desc")
            pairs.append((key, direction))
    result = []
    for key, direction in pairs:
        if key not in SORT_KEYS:
            raise bad_request(
                f"Invalid sort key: {key}. It must be one of: {', '.join(SORT_KEYS)}."
            )
        if direction not in ("asc", "desc"):
            raise bad_request(f"Invalid sort direction: {direction}")
        result.append((key, direction == "desc"))
    if not any(key == "id" for key, _ in result):
        result.append(("id", result[-1][1]))
    return result


def sort_images(images: list[Obj], keys: list[tuple[str, bool]]) -> list[Obj]:
    shown = [(view(image), image) for image in images]
    for key, descending in reversed(keys):
        shown.sort(key=lambda pair: _sortable(pair[0].get(key)), reverse=descending)
    return [image for _, image in shown]


def _sortable(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    return (1, value if isinstance(value, int | float) else str(value))


def _after_marker(images: list[Obj], marker: str | None) -> int:
    if marker is None:
        return 0
    for index, image in enumerate(images):
        if image["metadata"]["name"] == marker:
            return index + 1
    raise bad_request(f"Invalid marker. Image {marker} could not be found.")


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    value = _as_int(text, "limit")
    if value < 0:
        raise bad_request("limit param must be positive")
    return min(value, MAX_LIMIT)


def _as_int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise bad_request(f"{name} param must be an integer") from None


def _as_bool(text: str, name: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise bad_request(f"Invalid value for {name}: {text}")


def _link(request: Request, extra: dict[str, str]) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "marker"]
    params += list(extra.items())
    query = urlencode(params)
    return "/v2/images" + (f"?{query}" if query else "")
