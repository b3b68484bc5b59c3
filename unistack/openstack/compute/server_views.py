"""How a server reads in Nova, at the request's microversion: the brief entry, the core
view, the basic view (update and rebuild answer with it before 2.75), the detail view with
the extension attributes, the shown view (show; update and rebuild from 2.75), and the list
filters.

The core view has Nova's core attributes (addresses with `version` and `addr` only) and
what later versions added to them: `locked` (2.9), `description` (2.19), `tags` (2.26),
the embedded flavor (2.47), `trusted_image_certificates` (2.63), `locked_reason` (2.73),
`pinned_availability_zone` (2.96), the image's properties (2.98) and `scheduler_hints`
(2.100). The detail view adds key name, security groups, `OS-EXT-STS:*` (task, vm and
power state), `OS-EXT-AZ`, `OS-SRV-USG`, attached volumes (with `delete_on_termination`
from 2.3), the MAC and type of each address, for an admin `OS-EXT-SRV-ATTR:*` (host,
hypervisor, instance name; from 2.3 reservation, launch index, hostname, user data...) and
`host_status` (2.16); from 2.90 everyone sees the hostname. `hostId` is Nova's digest of
the project and the host, so a project sees which of its servers share a host and nothing
else.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Callable
from typing import Any

from starlette.requests import Request

from unistack.iaas.compute import kinds
from unistack.iaas.records import spec_of, status_of
from unistack.openstack.auth import AuthContext
from unistack.openstack.compute.service import links_for, microversion
from unistack.openstack.microversion import Version
from unistack.openstack.web import bad_request

Obj = dict[str, Any]
HostStatus = Callable[[str | None], str] | None
_FLAVOR_SIZES = ("vcpus", "ram", "disk", "ephemeral", "swap")
_PROGRESS = ("ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING")


def server_status(server: Obj) -> str:
    status = status_of(server)
    return kinds.display_status(str(status.get("vm_state") or kinds.BUILDING), task_state(server))


def task_state(server: Obj) -> str | None:
    if server["metadata"].get("deletionTimestamp"):
        return "deleting"
    state = status_of(server).get("task_state")
    return str(state) if state else None


def host_id(project_id: str, host: str | None) -> str:
    if not host:
        return ""
    return hashlib.sha224(f"{project_id}{host}".encode()).hexdigest()


def brief_view(request: Request, server: Obj) -> Obj:
    server_id = server["metadata"]["name"]
    return {
        "id": server_id,
        "name": spec_of(server).get("name", ""),
        "links": links_for(request, "servers", server_id),
    }


def plain_addresses(addresses: Obj) -> Obj:
    """Addresses with their version and address only (`/ips`, the basic view)."""
    return {
        network: [{"version": a["version"], "addr": a["addr"]} for a in entries]
        for network, entries in addresses.items()
    }


def core_view(request: Request, server: Obj) -> Obj:
    """Nova's core attributes at the request's microversion: what every server answer has
    (show, list with details, and update and rebuild before 2.75)."""
    spec, status = spec_of(server), status_of(server)
    version = microversion(request)
    view: Obj = {
        **brief_view(request, server),
        "status": server_status(server),
        "tenant_id": spec.get("project_id"),
        "user_id": spec.get("user_id"),
        "metadata": spec.get("metadata") or {},
        "hostId": host_id(str(spec.get("project_id")), status.get("host")),
        "image": _image(request, spec, version),
        "flavor": _flavor(request, spec, version),
        "created": server["metadata"].get("creationTimestamp"),
        "updated": status.get("updated_at") or server["metadata"].get("creationTimestamp"),
        "addresses": plain_addresses(status.get("addresses") or {}),
        "accessIPv4": spec.get("access_ipv4") or "",
        "accessIPv6": spec.get("access_ipv6") or "",
        "OS-DCF:diskConfig": spec.get("disk_config") or "MANUAL",
    }
    if view["status"] in _PROGRESS:
        view["progress"] = 100 if view["status"] == "ACTIVE" else 0
    if view["status"] in ("ERROR", "DELETED") and status.get("fault"):
        fault = status["fault"]
        view["fault"] = {k: fault[k] for k in ("code", "created", "message") if k in fault}
    for minimum, name, value in _core_fields(spec):
        if version.at_least(minimum):
            view[name] = value
    return view


def _core_fields(spec: Obj) -> list[tuple[str, str, Any]]:
    """(microversion, attribute, value) of the core attributes later versions added."""
    return [
        ("2.9", "locked", bool(spec.get("locked"))),
        ("2.19", "description", spec.get("description")),
        ("2.26", "tags", list(spec.get("tags") or [])),
        ("2.63", "trusted_image_certificates", spec.get("trusted_image_certificates")),
        ("2.73", "locked_reason", spec.get("locked_reason")),
        ("2.96", "pinned_availability_zone", spec.get("availability_zone") or None),
        ("2.100", "scheduler_hints", dict(spec.get("scheduler_hints") or {})),
    ]


def _image(request: Request, spec: Obj, version: Version) -> Obj | str:
    image_id = spec.get("image_ref")
    if not image_id:
        return ""
    image: Obj = {"id": image_id, "links": links_for(request, "images", image_id)[1:]}
    if version.at_least("2.98"):
        image["properties"] = dict(spec.get("image_properties") or {})
    return image


def _flavor(request: Request, spec: Obj, version: Version) -> Obj:
    """A link to the flavor; from 2.47 the flavor itself as the server was given it."""
    flavor = spec.get("flavor") or {}
    if version.at_least("2.47"):
        embedded: Obj = {"original_name": str(flavor.get("name") or "")}
        embedded |= {key: int(flavor.get(key) or 0) for key in _FLAVOR_SIZES}
        embedded["extra_specs"] = dict(flavor.get("extra_specs") or {})
        return embedded
    flavor_id = str(flavor.get("id") or spec.get("flavor_id") or "")
    return {"id": flavor_id, "links": links_for(request, "flavors", flavor_id)[1:]}


def basic_view(request: Request, server: Obj, rebuilt: bool = False) -> Obj:
    """What update and rebuild answer before 2.75: the core view, and on rebuild the key
    name (2.54) and user data (2.57) and, from 2.71, the server's groups."""
    view = core_view(request, server)
    version, spec = microversion(request), spec_of(server)
    if rebuilt and version.at_least("2.54"):
        view["key_name"] = spec.get("key_name")
    if rebuilt and version.at_least("2.57"):
        view["user_data"] = spec.get("user_data")
    if version.at_least("2.71"):
        view["server_groups"] = server_groups(spec)
    return view


def server_groups(spec: Obj) -> list[str]:
    return [str(spec["group_id"])] if spec.get("group_id") else []


def detail_view(
    request: Request, server: Obj, context: AuthContext, host_status: HostStatus = None
) -> Obj:
    """The detail view (list with details and show): the core view and the extension
    attributes; `host_status` (2.16, admins) says how the server's host is."""
    spec, status = spec_of(server), status_of(server)
    version = microversion(request)
    view = core_view(request, server)
    view["addresses"] = status.get("addresses") or {}
    view |= {
        "key_name": spec.get("key_name"),
        "OS-SRV-USG:launched_at": _usg_time(status.get("launched_at")),
        "OS-SRV-USG:terminated_at": None,
        "OS-EXT-AZ:availability_zone": status.get("zone") or spec.get("availability_zone") or "",
        "OS-EXT-STS:task_state": task_state(server),
        "OS-EXT-STS:vm_state": status.get("vm_state") or kinds.BUILDING,
        "OS-EXT-STS:power_state": int(status.get("power_state") or 0),
        "os-extended-volumes:volumes_attached": _volumes(status, version),
        "config_drive": "True" if spec.get("config_drive") else "",
    }
    if spec.get("security_groups"):  # Nova leaves the key out when a server has none
        view["security_groups"] = [{"name": name} for name in spec["security_groups"]]
    if context.is_admin:
        view |= _server_attributes(server, view["id"], version)
    elif version.at_least("2.90"):
        view["OS-EXT-SRV-ATTR:hostname"] = hostname_of(spec)
    if context.is_admin and version.at_least("2.16") and host_status is not None:
        view["host_status"] = host_status(status.get("host"))
    return view


def shown_view(
    request: Request, server: Obj, context: AuthContext, host_status: HostStatus = None
) -> Obj:
    """One server (show; update and rebuild from 2.75): the detail view, with its server
    groups from 2.71."""
    view = detail_view(request, server, context, host_status)
    if microversion(request).at_least("2.71"):
        view["server_groups"] = server_groups(spec_of(server))
    return view


def _volumes(status: Obj, version: Version) -> list[Obj]:
    found = []
    for item in status.get("volumes_attached") or []:
        if not isinstance(item, dict):
            continue
        entry: Obj = {"id": item["volume_id"]}
        if version.at_least("2.3"):
            entry["delete_on_termination"] = bool(item.get("delete_on_termination"))
        found.append(entry)
    return found


def _server_attributes(server: Obj, server_id: str, version: Version) -> Obj:
    """`OS-EXT-SRV-ATTR:*`, an admin's view of where and how the server runs."""
    spec, status = spec_of(server), status_of(server)
    attributes: Obj = {
        "OS-EXT-SRV-ATTR:host": status.get("host"),
        "OS-EXT-SRV-ATTR:hypervisor_hostname": status.get("host"),
        "OS-EXT-SRV-ATTR:instance_name": f"instance-{kinds.integer_id(server_id):08x}",
    }
    if version.at_least("2.3"):
        attributes |= {
            "OS-EXT-SRV-ATTR:reservation_id": spec.get("reservation_id"),
            "OS-EXT-SRV-ATTR:launch_index": int(spec.get("launch_index") or 0),
            "OS-EXT-SRV-ATTR:kernel_id": "",
            "OS-EXT-SRV-ATTR:ramdisk_id": "",
            "OS-EXT-SRV-ATTR:hostname": hostname_of(spec),
            "OS-EXT-SRV-ATTR:root_device_name": status.get("root_device_name") or "/dev/vda",
            "OS-EXT-SRV-ATTR:user_data": spec.get("user_data"),
        }
    return attributes


def hostname_of(spec: Obj) -> str:
    """The guest's hostname: the one asked for (2.90), else Nova's sanitised display name."""
    if spec.get("hostname"):
        return str(spec["hostname"])
    return sanitized_hostname(str(spec.get("name") or ""))


def sanitized_hostname(name: str) -> str:
    """Nova's `sanitize_hostname`: a DNS label from a display name (`Server-1` → `server-1`)."""
    text = re.sub(r"[ _.]", "-", name.lower())
    text = re.sub(r"[^\w.-]+", "", text, flags=re.ASCII).strip(".-")
    return text[:63].rstrip(".-") or "server"


def _usg_time(text: str | None) -> str | None:
    """OS-SRV-USG times are ISO without a zone and with microseconds, as Nova shows them."""
    if not text:
        return None
    return text.rstrip("Z") + ".000000"


def parse_time(text: str) -> datetime.datetime:
    try:
        value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise bad_request(f"Invalid filter field: changes-since. Value: {text}.") from exc
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def matches(server: Obj, query: Any) -> bool:
    """Nova's server list filters (name is a regular expression)."""
    spec, status = spec_of(server), status_of(server)
    name = query.get("name")
    if name and not _search(name, str(spec.get("name", ""))):
        return False
    wanted = query.get("status")
    if wanted and server_status(server) != wanted.upper():
        return False
    image = query.get("image")
    if image and spec.get("image_ref") != image.rsplit("/", 1)[-1]:
        return False
    flavor = query.get("flavor")
    if flavor and str((spec.get("flavor") or {}).get("id")) != flavor.rsplit("/", 1)[-1]:
        return False
    since = query.get("changes-since")
    updated = status.get("updated_at") or server["metadata"].get("creationTimestamp")
    if since and updated and parse_time(updated) < parse_time(since):
        return False
    host = query.get("host")
    if host and status.get("host") != host:
        return False
    reservation = query.get("reservation_id")
    if reservation and spec.get("reservation_id") != reservation:
        return False
    if not _tags_match(set(spec.get("tags") or []), query):
        return False
    ip = query.get("ip")
    return not ip or any(
        _search(ip, str(a.get("addr", "")))
        for entries in (status.get("addresses") or {}).values()
        for a in entries
    )


def _tags_match(tags: set[str], query: Any) -> bool:
    """The tag filters (2.26): all of `tags`, any of `tags-any`, not all of `not-tags`,
    none of `not-tags-any` (each a comma-separated list)."""

    def wanted(key: str) -> set[str]:
        return {t for t in (query.get(key) or "").split(",") if t}

    if wanted("tags") - tags:
        return False
    if query.get("tags-any") and not wanted("tags-any") & tags:
        return False
    if query.get("not-tags") and wanted("not-tags") <= tags:
        return False
    return not wanted("not-tags-any") & tags


def _search(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return pattern in text
