"""What every block-storage handler shares: the caller, the records, Cinder's messages and
list conventions.

`VolumeService` holds the `Records` of the volume kinds and the token validator. Handlers ask
it who is calling (`caller`), for an object the caller may see (`visible`, a 404 in Cinder's
words otherwise, also for another project's object), to write values into an object's spec
or status (`merge`; `put` creates it if missing), and for a list page (`page`: Cinder's
`limit`, `marker`, `sort`/`sort_key`/`sort_dir`, `offset`). `require_version` hides what came
with a later microversion; `described` and `renamed` read the name and description of a
request body. Policy is OpenStack's default: readers read their project, members write in
it, admins act everywhere.
"""

from __future__ import annotations

import contextlib
import datetime
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from unistack.iaas.crds import Kind
from unistack.iaas.records import Duplicate, Records, spec_of
from unistack.iaas.volume import kinds
from unistack.iaas.volume.backend import BACKEND_NAME, POOL_NAME
from unistack.openstack import auth
from unistack.openstack.auth import AuthContext, TokenValidator
from unistack.openstack.microversion import Version, version_of
from unistack.openstack.web import bad_request, not_found, read_json

Obj = dict[str, Any]
Internal = Callable[..., Any]
HOST = "volnode"
BACKEND_HOST = f"{HOST}@{BACKEND_NAME}"
POOL_HOST = f"{BACKEND_HOST}#{POOL_NAME}"
ZONE = "nova"
DEFAULT_TYPE = "__DEFAULT__"
DEFAULT_TYPE_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "unistack/volume-type/__DEFAULT__"))
NAMES = {
    kinds.VOLUMES: "Volume",
    kinds.SNAPSHOTS: "Snapshot",
    kinds.TYPES: "Volume type",
    kinds.ATTACHMENTS: "Attachment",
    kinds.GROUPS: "Group",
    kinds.GROUP_SNAPSHOTS: "GroupSnapshot",
    kinds.MESSAGES: "Message",
    kinds.BACKUPS: "Backup",
}
SORT_KEYS = frozenset(
    {
        "created_at",
        "updated_at",
        "id",
        "name",
        "size",
        "status",
        "display_name",
        "availability_zone",
        "bootable",
        "volume_id",
        "project_id",
    }
)


def now() -> str:
    """Cinder's timestamps: ISO 8601, microseconds, no zone."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def new_id() -> str:
    return str(uuid.uuid4())


def as_bool(value: Any, name: str) -> bool:
    """Cinder's boolean parsing (strutils.bool_from_string, strict)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on", "y", "t"):
        return True
    if text in ("false", "0", "no", "off", "n", "f"):
        return False
    raise bad_request(f"Invalid value '{value}' for {name}: must be a boolean.")


def as_size(value: Any, name: str = "size") -> int:
    """A size in GiB: a positive integer (or a string of one)."""
    if isinstance(value, bool):
        raise bad_request(f"Invalid input for field/attribute {name}. Value: {value}.")
    try:
        size = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError as exc:
        raise bad_request(f"Invalid input for field/attribute {name}. Value: {value}.") from exc
    if size <= 0:
        raise bad_request(
            f"Invalid input for field/attribute {name}. Value: {value}. "
            f"{value} is less than the minimum of 1"
        )
    return size


def check_metadata(metadata: Any) -> dict[str, str]:
    """Metadata: an object of strings, keys 1-255 characters."""
    if not isinstance(metadata, dict):
        raise bad_request("Invalid input for field/attribute metadata. Value must be an object.")
    for key, value in metadata.items():
        if not key or len(key) > 255:
            raise bad_request("Invalid input for field/attribute metadata: key length 1-255.")
        if not isinstance(value, str) or len(value) > 255:
            raise bad_request(f"Invalid input for field/attribute metadata. Value: {value}.")
    return dict(metadata)


def check_text(body: Obj, name: str, limit: int = 255) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise bad_request(f"Invalid input for field/attribute {name}. Value: {value}.")
    return value


async def read_member(request: Request, name: str, *, filled: bool = False) -> Obj:
    """The object `name` of the request body (`{"volume": {...}}`); 400 in Cinder's words when
    it is missing, not an object, or (with `filled`) empty."""
    body = (await read_json(request)).get(name)
    if not isinstance(body, dict) or (filled and not body):
        raise bad_request(f"Missing required element '{name}' in request body.")
    return body


def described(body: Obj) -> Obj:
    """The name and description of a new volume or snapshot (or their v1 `display_` names)."""
    return {
        "name": check_text(body, "name") or check_text(body, "display_name"),
        "description": check_text(body, "description", 65535)
        or check_text(body, "display_description", 65535),
    }


def renamed(body: Obj) -> Obj:
    """The name and description an update changes (the v1 `display_` names too)."""
    changes: Obj = {}
    for ours, theirs in (("name", "display_name"), ("description", "display_description")):
        for key in (ours, theirs):
            if key in body:
                changes[ours] = check_text(body, key, 255 if ours == "name" else 65535)
    return changes


@dataclass
class VolumeService:
    records: Records
    validator: TokenValidator
    internal: Internal  # Platform.internal.call: other services' APIs with a service token

    def caller(self, request: Request) -> AuthContext:
        return self.validator.authenticate(request.headers.get("x-auth-token"))

    def reader(self, request: Request) -> AuthContext:
        context = self.caller(request)
        if not context.is_admin:
            auth.require_project(context)
        return context

    def writer(self, request: Request, rule: str) -> AuthContext:
        context = self.reader(request)
        auth.require_member(context, rule)
        return context

    def admin(self, request: Request, rule: str) -> AuthContext:
        context = self.caller(request)
        auth.require_admin(context, rule)
        return context

    def visible(self, kind: Kind, object_id: str, context: AuthContext) -> Obj:
        """The object if the caller may see it, else Cinder's 404."""
        obj = self.records.get(kind, object_id)
        if obj is None or not auth.may_see(context, spec_of(obj).get("project_id")):
            raise not_found(f"{NAMES[kind]} {object_id} could not be found.")
        return obj

    async def merge(self, kind: Kind, object_id: str, values: Obj, *, status: bool = False) -> Obj:
        """Write `values` over the object's spec (with `status`, its status)."""

        def change(obj: Obj) -> None:
            obj["status" if status else "spec"].update(values)

        return await self.records.update(kind, object_id, change, status=status)

    async def put(self, kind: Kind, object_id: str, values: Obj, base: Obj | None = None) -> None:
        """Merge `values` into the object's spec, creating it (spec `base` and `values`) if
        there is none yet."""
        if self.records.get(kind, object_id) is None:
            with contextlib.suppress(Duplicate):
                await self.records.create(kind, object_id, {**(base or {}), **values})
                return
        await self.merge(kind, object_id, values)

    def listed(self, kind: Kind, request: Request, context: AuthContext) -> list[Obj]:
        """The caller's project's objects, or every project's for an admin who asks."""
        query = request.query_params
        flag = query.get("all_tenants") or query.get("all_projects")
        if auth.wants_all_projects(context, flag):
            found = self.records.all(kind)
            if query.get("project_id"):
                found = [o for o in found if spec_of(o).get("project_id") == query["project_id"]]
            return found
        return self.records.of_project(kind, context.project_id or "")


def microversion(request: Request) -> Version:
    return version_of(request)


def require_version(request: Request, minimum: str) -> None:
    """A resource that came with microversion `minimum` does not exist before it (404)."""
    if not microversion(request).at_least(minimum):
        raise not_found("The resource could not be found.")


def page(objects: list[Obj], request: Request, sort_value: Callable[[Obj, str], Any]) -> list[Obj]:
    """Sort, then skip to after `marker` (or `offset`), then cut at `limit` (Cinder's order:
    newest first by default)."""
    query = request.query_params
    keys, directions = _sort_of(query.get("sort"), query.get("sort_key"), query.get("sort_dir"))
    ordered = list(objects)
    for key, direction in reversed(list(zip(keys, directions, strict=True))):
        ordered.sort(key=_sort_key(sort_value, key), reverse=direction == "desc")
    marker = query.get("marker")
    if marker:
        ids = [obj["metadata"]["name"] for obj in ordered]
        if marker not in ids:
            raise not_found(f"Marker {marker} could not be found.")
        ordered = ordered[ids.index(marker) + 1 :]
    if query.get("offset"):
        ordered = ordered[_non_negative(query["offset"], "offset") :]
    if query.get("limit") is not None:
        ordered = ordered[: _non_negative(query["limit"], "limit")]
    return ordered


def _sort_key(sort_value: Callable[[Obj, str], Any], key: str) -> Callable[[Obj], tuple[int, Any]]:
    def sort_key(obj: Obj) -> tuple[int, Any]:
        return _sortable(sort_value(obj, key))

    return sort_key


def _sortable(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    return (1, value) if isinstance(value, int | float) else (2, str(value))


def _sort_of(
    sort: str | None, key: str | None, direction: str | None
) -> tuple[list[str], list[str]]:
    keys, directions = [], []
    if sort:
        for part in sort.split(","):
            name, _, way = part.strip().partition(":")
            keys.append(name)
            directions.append(way or "desc")
    elif key:
        keys, directions = [key], [direction or "desc"]
    else:
        keys, directions = ["created_at", "id"], ["desc", "desc"]
    for name, way in zip(keys, directions, strict=True):
        if name not in SORT_KEYS:
            raise bad_request(f"Invalid input received: Invalid sort key {name}.")
        if way not in ("asc", "desc"):
            raise bad_request(f"Invalid input received: Invalid sort direction {way}.")
    return keys, directions


def _non_negative(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise bad_request(f"{name} param must be an integer") from exc
    if value < 0:
        raise bad_request(f"{name} param must be positive")
    return value


def next_links(request: Request, shown: list[Obj]) -> list[Obj]:
    """`<collection>_links` of a list page: a `next` link (same query, `marker` the last id)
    when the page is as long as the `limit` asked for, as Cinder pages."""
    limit = request.query_params.get("limit")
    if not shown or limit is None or len(shown) < int(limit):
        return []
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "marker"]
    query.append(("marker", str(shown[-1]["id"])))
    path = request.scope.get("state", {}).get("original_path") or request.url.path
    href = f"{request.url.scheme}://{request.url.netloc}{path}?{urlencode(query)}"
    return [{"href": href, "rel": "next"}]


def link(request: Request, collection: str, object_id: str) -> list[Obj]:
    root = request.scope.get("root_path", "")
    base = f"{request.url.scheme}://{request.url.netloc}{root}"
    project = request.scope.get("state", {}).get("path_project", "")
    project_part = f"/{project}" if project else ""
    return [
        {"href": f"{base}/v3{project_part}/{collection}/{object_id}", "rel": "self"},
        {"href": f"{base}{project_part}/{collection}/{object_id}", "rel": "bookmark"},
    ]
