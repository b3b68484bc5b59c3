"""Checking a server create request (`POST /servers`) in Nova v2.1's terms, before anything
is stored.

`parse_create` validates the body's shape at the request's microversion (name, imageRef,
flavorRef, networks — required, or "auto"/"none", from 2.37 —, key name, user data,
metadata, security groups, zone, block devices, min/max count, scheduler hints; device tags
at 2.32 and from 2.42, description 2.19, tags 2.52, trusted certificates 2.63, host 2.74,
hostname 2.90 — an FQDN from 2.94; anything else is a 400) and answers a `CreateRequest`;
`ServerRequests` then resolves what it names against the other services and the records:
the image through the Image API (a 400 "Image ... could not be found." for one the project
cannot see), the flavor, the key pair, the zone and the server group.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
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
from unistack.openstack.microversion import Version
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
    description: str | None = None  # 2.19
    tags: list[str] = field(default_factory=list)  # 2.52
    trusted_certs: list[str] | None = None  # 2.63
    hostname: str | None = None  # 2.90
    scheduler_hints: Obj = field(default_factory=dict)
    personality: list[Obj] = field(default_factory=list)  # before 2.57


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


def tags_allowed(version: Version) -> bool:
    """Device tags came with 2.32, were lost from 2.33 to 2.36 and came back with 2.37
    for networks... and 2.42 for both networks and block devices (Nova's history)."""
    return version == Version(2, 32) or version.at_least("2.42")


def _networks(value: Any, version: Version) -> Any:
    if version.at_least("2.37"):
        if value is None:
            raise _invalid("networks", value, "'networks' is a required property")
        if value in ("auto", "none"):
            return value
    if value is None:
        return None
    if not isinstance(value, list):
        raise _invalid("networks", value)
    keys = (
        {"uuid", "port", "fixed_ip", "tag"}
        if tags_allowed(version)
        else {"uuid", "port", "fixed_ip"}
    )
    checked = []
    for item in value:
        if not isinstance(item, dict) or set(item) - keys:
            raise _invalid("networks", value)
        if "tag" in item:
            check_tag(item["tag"], "tag")
        if "uuid" in item and not is_uuid(str(item["uuid"])):
            raise bad_request(
                f"Bad networks format: network uuid is not in proper format ({item['uuid']})"
            )
        if "port" in item and item["port"] is not None and not is_uuid(str(item["port"])):
            raise _invalid("port", item["port"])
        if not item.get("uuid") and not item.get("port"):
            raise bad_request("Bad network format: missing 'uuid'")
        checked.append({k: item[k] for k in ("uuid", "port", "fixed_ip", "tag") if item.get(k)})
    return checked


def user_data(value: Any) -> str | None:
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


def _devices(body: Obj, version: Version) -> list[Obj]:
    devices = body.get("block_device_mapping_v2") or []
    if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
        raise _invalid("block_device_mapping_v2", devices)
    for device in devices:
        if "tag" in device and not tags_allowed(version):
            raise _invalid("block_device_mapping_v2", devices, "'tag' was unexpected")
        if "tag" in device:
            check_tag(device["tag"], "tag")
    return [dict(d) for d in devices]


_TAG = re.compile(r"^[^,/]*$")
MAX_TAGS = 50


def check_tag(value: Any, attribute: str = "tag") -> str:
    """A server or device tag: a string of 1 to 60 characters without ',' or '/'."""
    if not isinstance(value, str) or not 1 <= len(value) <= 60 or not _TAG.match(value):
        raise _invalid(attribute, value)
    return value


def check_tags(value: Any, attribute: str = "tags") -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise _invalid(attribute, value)
    return list(dict.fromkeys(check_tag(tag, attribute) for tag in value))


def check_description(value: Any) -> str | None:
    """A server description (2.19): printable text up to 255 characters, or null."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 255 or not value.isprintable():
        raise _invalid("description", value)
    return value


_HOSTNAME = re.compile(r"^[a-zA-Z0-9-._]*$")


def check_hostname(value: Any, version: Version) -> str:
    """A guest hostname (2.90): up to 63 characters of a DNS label, from 2.94 an FQDN of
    up to 255."""
    limit = 255 if version.at_least("2.94") else 63
    if not isinstance(value, str) or not 1 <= len(value) <= limit or not _HOSTNAME.match(value):
        raise _invalid("hostname", value)
    return value


def trusted_certs(value: Any) -> list[str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= 50
        or not all(isinstance(item, str) and item for item in value)
        or len(set(value)) != len(value)
    ):
        raise _invalid("trusted_image_certificates", value)
    return list(value)


_CREATE_KEYS = {
    "name", "imageRef", "flavorRef", "adminPass", "metadata", "networks", "personality",
    "availability_zone", "block_device_mapping", "block_device_mapping_v2", "config_drive",
    "key_name", "min_count", "max_count", "return_reservation_id", "security_groups",
    "user_data", "accessIPv4", "accessIPv6", "OS-DCF:diskConfig",
}  # fmt: skip
_CREATE_KEYS_SINCE = (
    ("2.19", "description"),
    ("2.52", "tags"),
    ("2.63", "trusted_image_certificates"),
    ("2.74", "host"),
    ("2.74", "hypervisor_hostname"),
    ("2.90", "hostname"),
)


def personality(value: Any) -> list[Obj]:
    """Files to inject (`[{"path", "contents"}]`, contents base64), as Nova's schema checks
    them; their count and sizes are the project's quotas (`quotas.check_files`)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _invalid("personality", value)
    files = []
    for item in value:
        if (
            not isinstance(item, dict)
            or set(item) - {"path", "contents"}
            or not isinstance(item.get("path"), str)
            or not isinstance(item.get("contents", ""), str)
        ):
            raise _invalid("personality", value)
        contents = str(item.get("contents", ""))
        try:
            base64.b64decode(contents, validate=True)
        except binascii.Error:
            raise bad_request(
                f"Invalid input for field/attribute contents. Value: {contents}. "
                f"'{contents}' is not a 'base64'"
            ) from None
        files.append({"path": item["path"], "contents": contents})
    return files


MULTIATTACH_VERSION = "2.60"


def check_multiattach(volume: Obj, version: Version | None) -> None:
    """400 for a multiattach volume asked for before 2.60, in Nova's words."""
    if volume.get("multiattach") and (version is None or not version.at_least(MULTIATTACH_VERSION)):
        raise bad_request(
            "Multiattach volumes are only supported starting with compute API version 2.60."
        )


def _check_create_keys(server: Obj, version: Version) -> None:
    allowed = set(_CREATE_KEYS)
    if version.at_least("2.57"):
        allowed.discard("personality")
    allowed |= {key for minimum, key in _CREATE_KEYS_SINCE if version.at_least(minimum)}
    for key in server:
        if key not in allowed:
            raise bad_request(
                "Invalid input for field/attribute server. Additional properties are not "
                f"allowed ('{key}' was unexpected)"
            )


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


def _hints(body: Obj) -> Obj:
    hints = body.get("os:scheduler_hints") or body.get("OS-SCH-HNT:scheduler_hints") or {}
    if not isinstance(hints, dict):
        raise _invalid("os:scheduler_hints", hints)
    for name in ("same_host", "different_host"):  # a server's uuid, or a list of them
        value = hints.get(name)
        listed = [value] if isinstance(value, str) else value
        if value is not None and not (
            isinstance(listed, list) and all(isinstance(v, str) and is_uuid(v) for v in listed)
        ):
            raise _invalid(name, value)
    return dict(hints)


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


def parse_create(body: Obj, version: Version) -> CreateRequest:
    server = body.get("server")
    if not isinstance(server, dict):
        raise bad_request("Invalid input for field/attribute server.")
    _check_create_keys(server, version)
    devices = _devices(server, version)
    zone, host = _zone(server.get("availability_zone"))
    hints = _hints(body)
    request = CreateRequest(
        name=check_name(server.get("name")),
        image_ref=_image_ref(server.get("imageRef"), devices),
        flavor_ref=_flavor_ref(server.get("flavorRef")),
        networks=_networks(server.get("networks"), version),
        key_name=server.get("key_name"),
        user_data=user_data(server.get("user_data")),
        metadata=check_metadata(server.get("metadata", {})),
        security_groups=_security_groups(server.get("security_groups")),
        zone=zone,
        forced_host=host,
        block_devices=devices,
        min_count=_count(server, "min_count"),
        max_count=_count(server, "max_count" if "max_count" in server else "min_count"),
        group_id=_group_hint(hints),
        scheduler_hints=hints,
        personality=personality(server.get("personality")),
        description=check_description(server.get("description")),
        tags=check_tags(server.get("tags", [])),
        trusted_certs=trusted_certs(server.get("trusted_image_certificates")),
        hostname=check_hostname(server["hostname"], version) if "hostname" in server else None,
        access_ipv4=access_ip(server, "accessIPv4"),
        access_ipv6=access_ip(server, "accessIPv6"),
        return_reservation_id=bool(server.get("return_reservation_id")),
        config_drive=bool(server.get("config_drive")),
        disk_config=disk_config(server) or "MANUAL",
    )
    if request.min_count > request.max_count:
        raise bad_request("min_count must be <= max_count")
    if request.hostname and request.max_count > 1:
        raise bad_request("Cannot request a hostname when creating more than one server.")
    if request.forced_host is None and server.get("host"):
        request.forced_host = check_name(server["host"], "host")
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
            found = False
            for key in ("name", "id"):  # Nova takes a group's name or its id
                query = {key: name, "project_id": context.project_id or ""}
                status, body = await self.service.caller.call(
                    "GET", "/network/v2.0/security-groups", params=query
                )
                found = found or status != 200 or bool(body.get("security_groups"))
            if not found:
                raise bad_request(
                    f"Security group {name} not found for project {context.project_id}."
                )

    async def block_devices(
        self, context: AuthContext, devices: list[Obj], version: Version | None = None
    ) -> None:
        """Nova's checks of block_device_mapping_v2: known source and destination types, and
        volumes that exist, are the caller's, are available (or multiattach, from 2.60),
        and (to boot) are bootable."""
        for device in devices:
            source, destination = device.get("source_type"), device.get("destination_type")
            if source not in SOURCE_TYPES or destination not in (None, "local", "volume"):
                raise bad_request("Block Device Mapping is Invalid: Invalid source or destination.")
            if source == "volume":
                await self._check_volume(context, device, version)

    async def _check_volume(
        self, context: AuthContext, device: Obj, version: Version | None = None
    ) -> None:
        volume_id = str(device.get("uuid") or "")
        status, body = await self.service.caller.call(
            "GET", f"/volume/v3/volumes/{volume_id}", headers={"x-auth-token": context.token}
        )
        if status != 200:
            raise bad_request(f"Block Device Mapping is Invalid: failed to get volume {volume_id}.")
        volume = body["volume"]
        check_multiattach(volume, version)
        shared = bool(volume.get("multiattach")) and volume.get("status") == "in-use"
        if volume.get("status") != "available" and not shared:
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
