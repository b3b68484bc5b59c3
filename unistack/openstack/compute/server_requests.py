"""Checking a server create request (`POST /servers`) in Nova v2.1's terms, before anything
is stored.

`parse_create` validates the body's shape (name, imageRef, flavorRef, networks, key name,
user data, metadata, security groups, zone, block devices, min/max count, scheduler hints)
and answers a `CreateRequest`; `ServerRequests` then resolves what it names against the
other services and the records: the image through the Image API (a 400 "Image ... could not
be found." for one the project cannot see), the flavor, the key pair, the zone and the
server group.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from unistack.iaas.compute import kinds
from unistack.iaas.records import spec_of
from unistack.openstack.auth import AuthContext
from unistack.openstack.compute.service import (
    ComputeService,
    flavor_object_name,
    integer,
    is_uuid,
)
from unistack.openstack.web import bad_request

Obj = dict[str, Any]
MAX_USER_DATA = 65535
SOURCE_TYPES = ("image", "volume", "snapshot", "blank")
_NAME_LIMIT = 255


@dataclass
class CreateRequest:
    name: str
    image_ref: str
    flavor_ref: str
    networks: Any = None
    key_name: str | None = None
    user_data: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    security_groups: list[str] = field(default_factory=list)
    zone: str | None = None
    forced_host: str | None = None
    block_devices: list[Obj] = field(default_factory=list)
    min_count: int = 1
    max_count: int = 1
    group_id: str | None = None
    access_ipv4: str = ""
    access_ipv6: str = ""
    return_reservation_id: bool = False
    config_drive: bool = False
    disk_config: str = "MANUAL"


def _invalid(name: str, value: Any, why: str = "") -> Exception:
    return bad_request(f"Invalid input for field/attribute {name}. Value: {value}. {why}".strip())


def check_name(value: Any, attribute: str = "name") -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= _NAME_LIMIT:
        raise _invalid(attribute, value)
    if value.strip() != value or not value.strip():
        raise _invalid(attribute, value, "Leading or trailing whitespace is not allowed")
    return value


def check_metadata(value: Any, attribute: str = "metadata") -> dict[str, str]:
    if not isinstance(value, dict):
        raise _invalid(attribute, value, f"{value!r} is not of type 'object'")
    for key, item in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 255:
            raise _invalid(attribute, value, "Metadata keys must be 1 to 255 characters")
        if not isinstance(item, str) or len(item) > 255:
            raise _invalid(attribute, value, "Metadata values must be strings up to 255")
    return dict(value)


def _networks(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _invalid("networks", value)
    checked = []
    for item in value:
        if not isinstance(item, dict) or set(item) - {"uuid", "port", "fixed_ip", "tag"}:
            raise _invalid("networks", value)
        if "uuid" in item and not is_uuid(str(item["uuid"])):
            raise bad_request(
                f"Bad networks format: network uuid is not in proper format ({item['uuid']})"
            )
        if "port" in item and item["port"] is not None and not is_uuid(str(item["port"])):
            raise _invalid("port", item["port"])
        if not item.get("uuid") and not item.get("port"):
            raise bad_request("Bad network format: missing 'uuid'")
        checked.append({k: item[k] for k in ("uuid", "port", "fixed_ip") if item.get(k)})
    return checked


def _user_data(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_USER_DATA:
        raise bad_request("User data too large or invalid.")
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _invalid("user_data", value, "User data needs to be valid base 64.") from exc
    return value


def _count(body: Obj, key: str) -> int:
    return integer(body.get(key, 1), key, 1)


def _zone(value: Any) -> tuple[str | None, str | None]:
    if value is None or value == "":
        return None, None
    if not isinstance(value, str) or len(value) > 255:
        raise _invalid("availability_zone", value)
    zone, _, host = value.partition(":")
    return zone or None, host or None


def _flavor_ref(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise bad_request("Invalid flavorRef provided.")
    return value.rstrip("/").rsplit("/", 1)[-1]


def _image_ref(value: Any, devices: list[Obj]) -> str:
    if value in (None, "") and devices:
        return ""
    if not isinstance(value, str) or not value:
        raise bad_request("Invalid imageRef provided.")
    ref = value.rstrip("/").rsplit("/", 1)[-1]
    if not is_uuid(ref):
        raise bad_request("Invalid imageRef provided.")
    return ref


def _devices(body: Obj) -> list[Obj]:
    devices = body.get("block_device_mapping_v2") or []
    if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
        raise _invalid("block_device_mapping_v2", devices)
    return [dict(d) for d in devices]


def _security_groups(value: Any) -> list[str]:
    if value is None:
        return ["default"]
    if not isinstance(value, list):
        raise _invalid("security_groups", value)
    names = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise _invalid("security_groups", value)
        names.append(item["name"])
    return names or ["default"]


def _group_hint(hints: Any) -> str | None:
    if not isinstance(hints, dict) or hints.get("group") is None:
        return None
    group = hints["group"]
    if not isinstance(group, str) or not is_uuid(group):
        raise _invalid("group", group)
    return group


def access_ip(body: Obj, key: str) -> str:
    value = body.get(key) or ""
    if not isinstance(value, str):
        raise _invalid(key, value)
    kind = ipaddress.IPv4Address if key == "accessIPv4" else ipaddress.IPv6Address
    try:
        return str(kind(value)) if value else ""
    except ValueError as exc:
        raise _invalid(key, value) from exc


def disk_config(body: Obj) -> str | None:
    value = body.get("OS-DCF:diskConfig")
    if value is not None and value not in ("AUTO", "MANUAL"):
        raise _invalid("OS-DCF:diskConfig", value)
    return value


def parse_create(body: Obj) -> CreateRequest:
    server = body.get("server")
    if not isinstance(server, dict):
        raise bad_request("Invalid input for field/attribute server.")
    devices = _devices(server)
    zone, host = _zone(server.get("availability_zone"))
    request = CreateRequest(
        name=check_name(server.get("name")),
        image_ref=_image_ref(server.get("imageRef"), devices),
        flavor_ref=_flavor_ref(server.get("flavorRef")),
        networks=_networks(server.get("networks")),
        key_name=server.get("key_name"),
        user_data=_user_data(server.get("user_data")),
        metadata=check_metadata(server.get("metadata", {})),
        security_groups=_security_groups(server.get("security_groups")),
        zone=zone,
        forced_host=host,
        block_devices=devices,
        min_count=_count(server, "min_count"),
        max_count=_count(server, "max_count" if "max_count" in server else "min_count"),
        group_id=_group_hint(
            body.get("os:scheduler_hints") or body.get("OS-SCH-HNT:scheduler_hints")
        ),
        access_ipv4=access_ip(server, "accessIPv4"),
        access_ipv6=access_ip(server, "accessIPv6"),
        return_reservation_id=bool(server.get("return_reservation_id")),
        config_drive=bool(server.get("config_drive")),
        disk_config=disk_config(server) or "MANUAL",
    )
    if request.min_count > request.max_count:
        raise bad_request("min_count must be <= max_count")
    return request


class ServerRequests:
    """Resolves a `CreateRequest` against the image service and the records."""

    def __init__(self, service: ComputeService) -> None:
        self.service = service

    async def image(self, context: AuthContext, image_ref: str) -> Obj | None:
        if not image_ref:
            return None
        status, body = await self.service.caller.call("GET", f"/image/v2/images/{image_ref}")
        if status != 200 or not isinstance(body, dict) or not self._may_use(context, body):
            raise bad_request(f"Image {image_ref} could not be found.")
        if body.get("status") != "active":
            raise bad_request(f"Image {image_ref} is not active.")
        return body

    def _may_use(self, context: AuthContext, image: Obj) -> bool:
        if context.is_admin or image.get("visibility") in ("public", "community", "shared"):
            return True
        return image.get("owner") == context.project_id

    def flavor(self, context: AuthContext, flavor_ref: str) -> Obj:
        found = self.service.records.get(kinds.FLAVORS, flavor_object_name(flavor_ref))
        spec = spec_of(found)
        if found is None or not (
            spec.get("is_public", True)
            or context.is_admin
            or context.project_id in (spec.get("projects") or [])
        ):
            raise bad_request("Invalid flavorRef provided.")
        return spec

    def key_name(self, context: AuthContext, name: str | None) -> Obj | None:
        if name is None:
            return None
        found = self.service.records.indexed(kinds.KEYPAIRS, "owner", f"{context.user_id}/{name}")
        if not found:
            raise bad_request("Invalid key_name provided.")
        return spec_of(found[0])

    def zone(self, context: AuthContext, zone: str | None, host: str | None) -> None:
        if zone is not None and zone not in self.service.hosts.zones():
            raise bad_request("The requested availability zone is not available")
        if host is not None and not context.is_admin:
            raise bad_request("Only an administrator may choose a host.")

    def group(self, context: AuthContext, group_id: str | None) -> Obj | None:
        if group_id is None:
            return None
        group = self.service.records.get(kinds.SERVER_GROUPS, group_id)
        if group is None or spec_of(group).get("project_id") != context.project_id:
            raise bad_request(f"Invalid server group {group_id}.")
        return group

    async def security_groups(self, context: AuthContext, names: list[str]) -> None:
        """400 for a named group the project does not have (when Networking answers)."""
        for name in names:
            if name == "default":
                continue
            query = {"name": name, "project_id": context.project_id or ""}
            status, body = await self.service.caller.call(
                "GET", "/network/v2.0/security-groups", params=query
            )
            if status == 200 and not body.get("security_groups"):
                raise bad_request(
                    f"Security group {name} not found for project {context.project_id}."
                )

    async def block_devices(self, context: AuthContext, devices: list[Obj]) -> None:
        """Nova's checks of block_device_mapping_v2: known source and destination types, and
        volumes that exist, are the caller's, are available, and (to boot) are bootable."""
        for device in devices:
            source, destination = device.get("source_type"), device.get("destination_type")
            if source not in SOURCE_TYPES or destination not in (None, "local", "volume"):
                raise bad_request("Block Device Mapping is Invalid: Invalid source or destination.")
            if source == "volume":
                await self._check_volume(context, device)

    async def _check_volume(self, context: AuthContext, device: Obj) -> None:
        volume_id = str(device.get("uuid") or "")
        status, body = await self.service.caller.call(
            "GET", f"/volume/v3/volumes/{volume_id}", headers={"x-auth-token": context.token}
        )
        if status != 200:
            raise bad_request(f"Block Device Mapping is Invalid: failed to get volume {volume_id}.")
        volume = body["volume"]
        if volume.get("status") != "available":
            raise bad_request(
                f"Invalid volume: volume {volume_id} status must be available, "
                f"but is {volume.get('status')}."
            )
        boot = str(device.get("boot_index", "")) == "0"
        if boot and str(volume.get("bootable")).lower() != "true":
            raise bad_request(f"Block Device {volume_id} is not bootable.")

    @staticmethod
    def check_fits(flavor: Obj, image: Obj | None) -> None:
        if image is None:
            return
        if int(image.get("min_ram") or 0) > int(flavor.get("ram", 0)):
            raise bad_request("Flavor's memory is too small for requested image.")
        min_disk = int(image.get("min_disk") or 0)
        size_gb = -(-int(image.get("size") or 0) // 2**30)
        disk = int(flavor.get("disk", 0))
        if disk and max(min_disk, size_gb) > disk:
            raise bad_request("Flavor's disk is too small for requested image.")
