"""What an image's attributes may hold, and which a user may set: the rules of Glance's image
schema (`/v2/schemas/image`), checked before anything is stored.

Base attributes have types and enums; the rest are free-form properties, which must be
strings. Some attributes are Glance's own (read-only: status, checksum, size...; a 403 if set),
`os_glance_*` names are reserved (403), and a few need an admin (`owner`; visibility
`public`).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from unistack.openstack.auth import AuthContext
from unistack.openstack.web import OpenStackError, bad_request, forbidden

DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")
CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed")
VISIBILITIES = ("public", "private", "shared", "community")
READ_ONLY = frozenset(
    {
        "status",
        "checksum",
        "os_hash_algo",
        "os_hash_value",
        "size",
        "virtual_size",
        "created_at",
        "updated_at",
        "self",
        "file",
        "schema",
        "direct_url",
        "locations",
        "stores",
    }
)
RESERVED_PREFIX = "os_glance_"
BASE = frozenset(
    {
        "id",
        "name",
        "visibility",
        "protected",
        "os_hidden",
        "owner",
        "min_ram",
        "min_disk",
        "disk_format",
        "container_format",
        "tags",
    }
)
MAX_NAME = 255
_INT_ATTRIBUTES = ("min_ram", "min_disk")
_BOOL_ATTRIBUTES = ("protected", "os_hidden")


def check_writable(name: str, context: AuthContext) -> None:
    if name in READ_ONLY or name == "id":
        raise forbidden(f"Attribute '{name}' is read-only.")
    if name.startswith(RESERVED_PREFIX):
        raise forbidden(f"Attribute '{name}' is reserved.")
    if name == "owner" and not context.is_admin:
        raise forbidden("You are not permitted to change the owner of an image.")


def check_value(name: str, value: Any, context: AuthContext) -> Any:
    """The value, checked against the schema for `name`; 400 when it does not fit."""
    if name == "name":
        if value is not None and (not isinstance(value, str) or len(value) > MAX_NAME):
            raise bad_request(f"Invalid value for name: at most {MAX_NAME} characters.")
    elif name == "disk_format":
        _enum(name, value, DISK_FORMATS, nullable=True)
    elif name == "container_format":
        _enum(name, value, CONTAINER_FORMATS, nullable=True)
    elif name == "visibility":
        _enum(name, value, VISIBILITIES)
        if value == "public" and not context.is_admin:
            raise forbidden("You are not authorized to complete publicize_image action.")
    elif name in _BOOL_ATTRIBUTES:
        if not isinstance(value, bool):
            raise bad_request(f"Invalid value for {name}: {value!r} is not of type 'boolean'.")
    elif name in _INT_ATTRIBUTES:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad_request(f"Invalid value for {name}: it must be an integer >= 0.")
    elif name == "tags":
        check_tags(value)
    elif name == "owner":
        if value is not None and (not isinstance(value, str) or len(value) > 255):
            raise bad_request("Invalid value for owner.")
    elif not isinstance(value, str):
        raise bad_request(f"Additional property {name!r}: {value!r} is not of type 'string'.")
    elif len(name) > 255 or len(value) > 65535:
        raise bad_request(f"Property {name!r} is too long.")
    return value


def check_tags(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(
        isinstance(tag, str) and 0 < len(tag) <= 255 for tag in value
    ):
        raise bad_request("Invalid value for tags: a list of strings of 1-255 characters.")
    return list(dict.fromkeys(value))


def check_id(value: Any) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise bad_request(f"Invalid image id {value!r}: it must be a UUID.") from None


def _enum(name: str, value: Any, allowed: tuple[str, ...], nullable: bool = False) -> None:
    if value is None and nullable:
        return
    if value not in allowed:
        choices = ", ".join(allowed)
        raise bad_request(f"Invalid value '{value}' for {name}: it must be one of {choices}.")


_POINTER = re.compile(r"^/([^/]+)$")


def pointer_name(path: Any) -> str:
    """The attribute a JSON-patch path names (`/name`, `/os_distro`); 400 for others."""
    if not isinstance(path, str):
        raise bad_request("Unable to find '/' in JSON Schema change")
    match = _POINTER.match(path)
    if match is None:
        raise OpenStackError(400, f"Invalid JSON pointer for this resource: '{path}'")
    return match[1].replace("~1", "/").replace("~0", "~")
