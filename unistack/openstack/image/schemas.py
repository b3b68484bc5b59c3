"""`/v2/schemas/*`: the JSON schemas Glance publishes (images, members, tasks, and the
metadata definitions under `metadefs/`) and glanceclient reads to know an
image's base attributes (anything else is a free-form string property). They describe what
`attributes` enforces; keep the two in step."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from unistack.openstack.image import attributes
from unistack.openstack.web import json_response, not_found

Obj = dict[str, Any]
_UUID_PATTERN = (
    "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"
)
_DATE = {"type": "string", "readOnly": True}
_READ_ONLY_TEXT = {"type": ["null", "string"], "readOnly": True}


def image_schema() -> Obj:
    properties: Obj = {
        "id": {
            "type": "string",
            "pattern": _UUID_PATTERN,
            "description": "An identifier for the image",
        },
        "name": {
            "type": ["null", "string"],
            "maxLength": attributes.MAX_NAME,
            "description": "Descriptive name for the image",
        },
        "status": {
            "type": "string",
            "readOnly": True,
            "enum": [
                "queued",
                "saving",
                "active",
                "killed",
                "deleted",
                "uploading",
                "importing",
                "pending_delete",
                "deactivated",
            ],
            "description": "Status of the image",
        },
        "visibility": {
            "type": "string",
            "enum": list(attributes.VISIBILITIES),
            "description": "Scope of image accessibility",
        },
        "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
        "os_hidden": {
            "type": "boolean",
            "description": "If true, image will not appear in default image list response.",
        },
        "checksum": {
            **_READ_ONLY_TEXT,
            "maxLength": 32,
            "description": "md5 hash of image contents.",
        },
        "os_hash_algo": {
            **_READ_ONLY_TEXT,
            "maxLength": 64,
            "description": "Algorithm to calculate the os_hash_value",
        },
        "os_hash_value": {
            **_READ_ONLY_TEXT,
            "maxLength": 128,
            "description": (
                "Hexdigest of the image contents using the algorithm specified by the os_hash_algo"
            ),
        },
        "owner": {
            "type": ["null", "string"],
            "maxLength": 255,
            "description": "Owner of the image",
        },
        "size": {
            "type": ["null", "integer"],
            "readOnly": True,
            "description": "Size of image file in bytes",
        },
        "virtual_size": {
            "type": ["null", "integer"],
            "readOnly": True,
            "description": "Virtual size of image in bytes",
        },
        "container_format": {
            "type": ["null", "string"],
            "enum": [None, *attributes.CONTAINER_FORMATS],
            "description": "Format of the container",
        },
        "disk_format": {
            "type": ["null", "string"],
            "enum": [None, *attributes.DISK_FORMATS],
            "description": "Format of the disk",
        },
        "created_at": {**_DATE, "description": "Date and time of image registration"},
        "updated_at": {**_DATE, "description": "Date and time of the last image modification"},
        "tags": {
            "type": "array",
            "items": {"type": "string", "maxLength": 255},
            "description": "List of strings related to the image",
        },
        "direct_url": {
            "type": "string",
            "readOnly": True,
            "description": "URL to access the image file kept in external store",
        },
        "min_ram": {
            "type": "integer",
            "description": "Amount of ram (in MB) required to boot image.",
        },
        "min_disk": {
            "type": "integer",
            "description": "Amount of disk space (in GB) required to boot image.",
        },
        "self": {"type": "string", "readOnly": True, "description": "An image self url"},
        "file": {"type": "string", "readOnly": True, "description": "An image file url"},
        "stores": {
            "type": "string",
            "readOnly": True,
            "description": "Store in which image data resides.",
        },
        "schema": {"type": "string", "readOnly": True, "description": "An image schema url"},
        "locations": {
            "type": "array",
            "items": {"type": "object"},
            "description": "A set of URLs to access the image file kept in external store",
        },
    }
    return {
        "name": "image",
        "properties": properties,
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def collection_schema(name: str, item: Obj) -> Obj:
    """A paged list's schema (`images`, `tasks`): the items, and the links to page on."""
    return {
        "name": name,
        "properties": {
            name: {"type": "array", "items": item},
            "schema": {"type": "string"},
            "first": {"type": "string"},
            "next": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def images_schema() -> Obj:
    return collection_schema("images", image_schema())


def member_schema() -> Obj:
    return {
        "name": "member",
        "properties": {
            "created_at": {
                "type": "string",
                "description": "Date and time of image member creation",
            },
            "image_id": {"type": "string", "description": "An identifier for the image"},
            "member_id": {
                "type": "string",
                "description": "An identifier for the image member (tenantId)",
            },
            "status": {
                "type": "string",
                "enum": ["pending", "accepted", "rejected"],
                "description": "The status of this image member",
            },
            "updated_at": {
                "type": "string",
                "description": "Date and time of last modification of image member",
            },
            "schema": {"type": "string", "readOnly": True},
        },
    }


def members_schema() -> Obj:
    return {
        "name": "members",
        "properties": {
            "members": {"type": "array", "items": member_schema()},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
    }


def _metadef(name: str, properties: Obj, required: tuple[str, ...] = ()) -> Obj:
    return {
        "name": name,
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _plural(name: str, item: Obj, key: str) -> Obj:
    return {
        "name": name,
        "properties": {
            key: {"type": "array", "items": item},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


_STAMPS = {
    "created_at": {"type": "string", "readOnly": True, "format": "date-time"},
    "updated_at": {"type": "string", "readOnly": True, "format": "date-time"},
}
_PROPERTY_FIELDS: Obj = {
    "name": {"type": "string", "maxLength": 80},
    "title": {"type": "string"},
    "description": {"type": "string"},
    "type": {
        "type": "string",
        "enum": ["array", "boolean", "integer", "number", "object", "string", None],
    },
    "enum": {"type": "array"},
    "default": {},
    "readonly": {"type": "boolean"},
    "operators": {"type": "array", "items": {"type": "string"}},
}


def metadef_namespace_schema() -> Obj:
    return _metadef(
        "namespace",
        {
            "namespace": {"type": "string", "maxLength": 80},
            "display_name": {"type": "string", "maxLength": 80},
            "description": {"type": "string", "maxLength": 500},
            "visibility": {"type": "string", "enum": ["public", "private"]},
            "protected": {"type": "boolean"},
            "owner": {"type": "string", "maxLength": 255},
            "resource_type_associations": {"type": "array", "items": metadef_association()},
            "properties": {"type": "object"},
            "objects": {"type": "array", "items": metadef_object_schema()},
            "tags": {"type": "array", "items": metadef_tag_schema()},
            "self": {"type": "string"},
            "schema": {"type": "string"},
            **_STAMPS,
        },
        ("namespace",),
    )


def metadef_association() -> Obj:
    return _metadef(
        "resource_type_association",
        {
            "name": {"type": "string", "maxLength": 80},
            "prefix": {"type": "string", "maxLength": 80},
            "properties_target": {"type": "string", "maxLength": 80},
            **_STAMPS,
        },
        ("name",),
    )


def metadef_object_schema() -> Obj:
    return _metadef(
        "object",
        {
            "name": {"type": "string", "maxLength": 80},
            "description": {"type": "string"},
            "required": {"type": "array", "items": {"type": "string"}},
            "properties": {"type": "object"},
            "schema": {"type": "string"},
            "self": {"type": "string"},
            **_STAMPS,
        },
        ("name",),
    )


def metadef_property_schema() -> Obj:
    return _metadef("property", dict(_PROPERTY_FIELDS), ("name", "title", "type"))


def metadef_tag_schema() -> Obj:
    return _metadef("tag", {"name": {"type": "string", "maxLength": 255}, **_STAMPS}, ("name",))


METADEF_SCHEMAS = {
    "namespace": metadef_namespace_schema,
    "namespaces": lambda: _plural("namespaces", metadef_namespace_schema(), "namespaces"),
    "resource_type": metadef_association,
    "resource_types": lambda: _plural(
        "resource_type_associations", metadef_association(), "resource_type_associations"
    ),
    "object": metadef_object_schema,
    "objects": lambda: _plural("objects", metadef_object_schema(), "objects"),
    "property": metadef_property_schema,
    "properties": lambda: {
        "name": "properties",
        "properties": {"properties": {"type": "object"}, "schema": {"type": "string"}},
    },
    "tag": metadef_tag_schema,
    "tags": lambda: _plural("tags", metadef_tag_schema(), "tags"),
}


def task_schema() -> Obj:
    text = {"type": "string"}
    properties: Obj = {
        "id": {"type": "string", "pattern": _UUID_PATTERN},
        "type": {"type": "string", "enum": ["import", "api_image_import", "location_import"]},
        "status": {"type": "string", "enum": ["pending", "processing", "success", "failure"]},
        "input": {"type": "object"},
        "result": {"type": ["null", "object"]},
        "owner": text,
        "message": text,
        "image_id": {"type": ["null", "string"]},
        "request_id": {"type": ["null", "string"]},
        "user_id": {"type": ["null", "string"]},
        "expires_at": {"type": ["null", "string"]},
        "created_at": text,
        "updated_at": text,
        "self": text,
        "schema": text,
    }
    return {"name": "task", "properties": properties, "additionalProperties": False}


def tasks_schema() -> Obj:
    item = task_schema()
    for hidden in ("input", "result", "message"):
        del item["properties"][hidden]
    return collection_schema("tasks", item)


SCHEMAS = {
    "image": image_schema,
    "images": images_schema,
    "member": member_schema,
    "members": members_schema,
    "task": task_schema,
    "tasks": tasks_schema,
}


async def show_schema(request: Request) -> Response:
    name = request.path_params["name"]
    build = METADEF_SCHEMAS.get(name[9:]) if name.startswith("metadefs/") else SCHEMAS.get(name)
    if build is None:
        raise not_found(f"No schema named {request.path_params['name']}.")
    return json_response(build())
