"""What the Glance handlers share: the image records, the data store, the caller, who may see
and change an image, and how an image reads in Glance's JSON.

Glance's default policy, as Glance 2023+ ships it: an admin sees and changes everything; a
project sees public images, its own, community images when it asks for them (and shows any
community image by id), and shared images it is a member of; only the owner (or an admin)
changes an image; only an admin makes an image public; another project's private image is a
404, never a 403.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from unistack.iaas.image import kinds
from unistack.iaas.records import Records, object_id, spec_of, status_of
from unistack.openstack.auth import AuthContext, TokenValidator
from unistack.openstack.image.data import HASH_ALGO, ImageData
from unistack.openstack.web import OpenStackError, not_found

Obj = dict[str, Any]
IMAGE_SIZE_CAP = 1 << 40  # Glance's image_size_cap default: 1 TiB
MAX_TAGS = 128  # image_tag_quota
MAX_MEMBERS = 128  # image_member_quota
MAX_PROPERTIES = 128  # image_property_quota


def now_iso() -> str:
    """Glance's timestamps: seconds and a Z."""
    return datetime.fromtimestamp(time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_image_id() -> str:
    return str(uuid.uuid4())


@dataclass
class ImageService:
    records: Records
    data: ImageData
    validator: TokenValidator

    def caller(self, request: Request) -> AuthContext:
        return self.validator.authenticate(request.headers.get("x-auth-token"))

    def visible_image(self, context: AuthContext, image_id: str) -> Obj:
        """The image if the caller may see it, else Glance's 404."""
        image = self.records.get(kinds.IMAGES, image_id)
        if image is None or not may_show(context, image):
            raise not_found(f"No image found with ID {image_id}")
        return image

    def owned_image(self, context: AuthContext, image_id: str, action: str) -> Obj:
        """The image if the caller may change it: the owner or an admin; others get a 403
        when they can see it (a public image), a 404 when they cannot."""
        image = self.visible_image(context, image_id)
        if not may_modify(context, image):
            raise OpenStackError(403, f"You are not authorized to {action} this image.")
        return image


def owner_of(image: Obj) -> str | None:
    return spec_of(image).get("owner")


def member_status(image: Obj, project_id: str | None) -> str | None:
    members = spec_of(image).get("members") or {}
    entry = members.get(project_id or "")
    return entry.get("status") if entry else None


def may_show(context: AuthContext, image: Obj) -> bool:
    if context.is_admin:
        return True
    visibility = spec_of(image).get("visibility")
    if visibility in ("public", "community") or owner_of(image) == context.project_id:
        return True
    return visibility == "shared" and member_status(image, context.project_id) is not None


def may_modify(context: AuthContext, image: Obj) -> bool:
    return context.is_admin or (
        context.project_id is not None and owner_of(image) == context.project_id
    )


def listed_by_default(context: AuthContext, image: Obj) -> bool:
    """What `GET /v2/images` shows without a visibility filter: public, own, and shared
    images the project accepted; an admin sees everything; hidden images are left out by
    the caller."""
    if context.is_admin:
        return True
    visibility = spec_of(image).get("visibility")
    if visibility == "public" or owner_of(image) == context.project_id:
        return True
    return visibility == "shared" and member_status(image, context.project_id) == "accepted"


def view(image: Obj) -> Obj:
    """The image as Glance shows it: base attributes, then the free-form properties."""
    spec, status = spec_of(image), status_of(image)
    image_id = object_id(image)
    shown: Obj = {
        "id": image_id,
        "name": spec.get("name"),
        "status": status.get("status", "queued"),
        "visibility": spec.get("visibility", "shared"),
        "protected": bool(spec.get("protected", False)),
        "os_hidden": bool(spec.get("os_hidden", False)),
        "checksum": status.get("checksum"),
        "os_hash_algo": HASH_ALGO if status.get("os_hash_value") else None,
        "os_hash_value": status.get("os_hash_value"),
        "owner": spec.get("owner"),
        "size": status.get("size"),
        "virtual_size": status.get("virtual_size"),
        "min_ram": int(spec.get("min_ram") or 0),
        "min_disk": int(spec.get("min_disk") or 0),
        "disk_format": spec.get("disk_format"),
        "container_format": spec.get("container_format"),
        "created_at": spec.get("created_at"),
        "updated_at": status.get("updated_at") or spec.get("updated_at"),
        "tags": list(spec.get("tags") or []),
        "self": f"/v2/images/{image_id}",
        "file": f"/v2/images/{image_id}/file",
        "schema": "/v2/schemas/image",
    }
    for key, value in (spec.get("properties") or {}).items():
        shown.setdefault(key, value)
    return shown
