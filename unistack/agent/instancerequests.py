"""What the compute controller sends a host to boot a server (`InstanceRequest`), and its
checking: a malformed request is a `RequestError` (400) before anything is touched.

`unistack.iaas.compute.agentdriver` builds the request; `unistack.agent.instanceroutes`
parses it here, and `unistack.agent.instances` keeps it on disk, so a restarted agent or a
host coming back boots the same server.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from unistack.agent.instancevolumes import VolumeRequest, parse_volume
from unistack.dataplane.instances import RESCUE_BUSES, RESCUE_DEVICES

Obj = dict[str, Any]


_IFNAME = re.compile(r"^[a-z][a-z0-9]{0,14}$")


class RequestError(ValueError):
    """The instance request is malformed (400)."""


@dataclass(frozen=True)
class NicRequest:
    port_id: str
    mac: str
    network_id: str
    fixed_ips: tuple[str, ...] = ()  # CIDR notation: "10.0.0.5/24"
    gateway: str | None = None
    mtu: int = 1500
    dns_nameservers: tuple[str, ...] = ()
    # a container's interface name, kept once an interface is attached or detached while
    # the server lives (so a later boot names each as the guest knew it); "": eth<index>
    device: str = ""


@dataclass(frozen=True)
class InstanceRequest:
    """What the compute controller sends to boot a server here."""

    server_id: str
    driver: str
    hostname: str
    vcpus: int
    memory_mb: int
    image_id: str
    image_kind: str = "filesystem"  # "filesystem" (a container's root) or "disk" (a VM's)
    root_gb: int = 0
    ephemeral_gb: int = 0  # the flavor's ephemeral disk, blank, after the root disk
    kernel_id: str | None = None
    ramdisk_id: str | None = None
    kernel_args: str = ""
    nics: tuple[NicRequest, ...] = ()
    public_keys: tuple[str, ...] = ()
    user_data: str = ""  # base64, as the compute API took it
    metadata: dict[str, str] = field(default_factory=dict)
    volumes: tuple[VolumeRequest, ...] = ()  # attached at boot (block device mapping)
    config_drive: dict[str, str] = field(default_factory=dict)  # path → base64; none: no drive
    personality: dict[str, str] = field(default_factory=dict)  # guest path → base64

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))


@dataclass(frozen=True)
class RescueImage:
    """The image a rescue boots (`POST /instances/{id}/action` `{"action": "rescue",
    "image": {...}}`), as the request names a server's own."""

    image_id: str
    image_kind: str = "filesystem"
    kernel_id: str | None = None
    ramdisk_id: str | None = None
    kernel_args: str = ""
    device: str = ""  # a stable device rescue's (`instances.RescueBoot`)
    bus: str = ""


def rescue_image(body: Any) -> RescueImage:
    if not isinstance(body, dict):
        raise RequestError("image must be an object naming the rescue image")
    device, bus = _text(body, "device", ""), _text(body, "bus", "")
    if device not in ("", *RESCUE_DEVICES) or bus not in ("", *RESCUE_BUSES):
        raise RequestError(
            f"device must be one of {', '.join(RESCUE_DEVICES)} and bus one of "
            f"{', '.join(RESCUE_BUSES)}"
        )
    return RescueImage(
        image_id=_text(body, "image_id"),
        image_kind=_image_kind(body),
        kernel_id=body.get("kernel_id") or None,
        ramdisk_id=body.get("ramdisk_id") or None,
        kernel_args=_text(body, "kernel_args", ""),
        device=device,
        bus=bus,
    )


def _image_kind(body: Obj) -> str:
    kind = _text(body, "image_kind", "filesystem")
    if kind not in ("filesystem", "disk"):
        raise RequestError("image_kind must be filesystem or disk")
    return kind


def _text(body: Obj, name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or (default is None and not value):
        raise RequestError(f"{name} must be a non-empty string")
    return value


def _count(body: Obj, name: str, default: int | None = None) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RequestError(f"{name} must be a non-negative integer")
    return value


def _nic(body: Any) -> NicRequest:
    if not isinstance(body, dict):
        raise RequestError("each nic must be an object")
    ips, dns = body.get("fixed_ips") or [], body.get("dns_nameservers") or []
    if not isinstance(ips, list) or not all(isinstance(ip, str) for ip in ips):
        raise RequestError("fixed_ips must be a list of CIDR strings")
    if not isinstance(dns, list) or not all(isinstance(server, str) for server in dns):
        raise RequestError("dns_nameservers must be a list of addresses")
    return NicRequest(
        _text(body, "port_id"),
        _text(body, "mac"),
        _text(body, "network_id"),
        tuple(ips),
        body.get("gateway") or None,
        _count(body, "mtu", 1500),
        tuple(dns),
        _interface_name(body.get("device")),
    )


def _interface_name(value: Any) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not _IFNAME.match(value):
        raise RequestError("device must be an interface name (letters and digits, at most 15)")
    return value


def nic_request(body: Any) -> NicRequest:
    """One NIC to attach to a running server (`POST /instances/{id}/interfaces`)."""
    nic = _nic(body)
    if nic.device:
        raise RequestError("the agent names an attached interface; device must not be given")
    return nic


def parse_request(server_id: str, body: Any) -> InstanceRequest:
    """An `InstanceRequest` from its JSON, or `RequestError` saying what is wrong."""
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    kind = _image_kind(body)
    nics, keys = body.get("nics") or [], body.get("public_keys") or []
    if not isinstance(nics, list) or not isinstance(keys, list):
        raise RequestError("nics and public_keys must be lists")
    metadata, volumes = body.get("metadata") or {}, body.get("volumes") or []
    if not isinstance(metadata, dict) or not isinstance(volumes, list):
        raise RequestError("metadata must be an object and volumes a list")
    user_data = _text(body, "user_data", "")
    try:
        base64.b64decode(user_data, validate=True)
    except binascii.Error:
        raise RequestError("user_data must be base64") from None
    return InstanceRequest(
        config_drive=_drive_files(body.get("config_drive") or {}),
        personality=_personality(body.get("personality") or {}),
        server_id=server_id,
        driver=_text(body, "driver"),
        hostname=_text(body, "hostname"),
        vcpus=_count(body, "vcpus"),
        memory_mb=_count(body, "memory_mb"),
        image_id=_text(body, "image_id"),
        image_kind=kind,
        root_gb=_count(body, "root_gb", 0),
        ephemeral_gb=_count(body, "ephemeral_gb", 0),
        kernel_id=body.get("kernel_id") or None,
        ramdisk_id=body.get("ramdisk_id") or None,
        kernel_args=_text(body, "kernel_args", ""),
        nics=tuple(_nic(nic) for nic in nics),
        public_keys=tuple(str(key) for key in keys),
        user_data=user_data,
        metadata={str(k): str(v) for k, v in metadata.items()},
        volumes=tuple(volume_request(volume) for volume in volumes),
    )


def _drive_files(files: Any) -> dict[str, str]:
    """A config drive's files: relative paths without `..`, each with base64 content."""

    def relative(path: str) -> bool:
        parts = path.split("/")
        return bool(path) and not path.startswith("/") and ".." not in parts and "" not in parts

    return _files(files, "config_drive", relative, "must be relative, without '..'")


def _personality(files: Any) -> dict[str, str]:
    """Personality files: guest paths (absolute or from /, without `..`), base64 content."""

    def names_a_file(path: str) -> bool:
        parts = [part for part in path.split("/") if part]
        return bool(parts) and ".." not in parts and "\0" not in path

    return _files(files, "personality", names_a_file, "must name a file, without '..'")


def _files(files: Any, field: str, path_ok: Callable[[str], bool], rule: str) -> dict[str, str]:
    """`{path: base64}` checked: an object, each path passing `path_ok`, each content base64."""
    if not isinstance(files, dict):
        raise RequestError(f"{field} must be an object of path to base64 content")
    for path, content in files.items():
        if not path_ok(str(path)):
            raise RequestError(f"{field} path {path!r} {rule}")
        try:
            base64.b64decode(str(content), validate=True)
        except binascii.Error:
            raise RequestError(f"{field} file {path!r} must be base64") from None
    return {str(path): str(content) for path, content in files.items()}


def volume_request(body: Any) -> VolumeRequest:
    try:
        return parse_volume(body)
    except ValueError as error:
        raise RequestError(str(error)) from None
