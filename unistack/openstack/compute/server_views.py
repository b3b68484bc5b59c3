"""How a server reads in Nova v2.1: the brief entry, the basic view (update and rebuild
answer with it) and the detail view with the extension attributes, and the list filters.

The basic view has Nova's core attributes (addresses with `version` and `addr` only); the
detail view adds key name, security groups, `OS-EXT-STS:*` (task, vm and power state),
`OS-EXT-AZ`, `OS-SRV-USG`, attached volumes, the MAC and type of each address, and for an
admin `OS-EXT-SRV-ATTR:*` (host, hypervisor, instance name). `hostId` is Nova's digest of
the project and the host, so a project sees which of its servers share a host and nothing
else.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from typing import Any

from starlette.requests import Request

from unistack.iaas.compute import kinds
from unistack.iaas.records import spec_of, status_of
from unistack.openstack.auth import AuthContext
from unistack.openstack.compute.service import links_for
from unistack.openstack.web import bad_request

Obj = dict[str, Any]
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


def basic_view(request: Request, server: Obj) -> Obj:
    spec, status = spec_of(server), status_of(server)
    image_id = spec.get("image_ref")
    image: Obj | str = (
        {"id": image_id, "links": links_for(request, "images", image_id)[1:]} if image_id else ""
    )
    flavor_id = str((spec.get("flavor") or {}).get("id") or spec.get("flavor_id") or "")
    view: Obj = {
        **brief_view(request, server),
        "status": server_status(server),
        "tenant_id": spec.get("project_id"),
        "user_id": spec.get("user_id"),
        "metadata": spec.get("metadata") or {},
        "hostId": host_id(str(spec.get("project_id")), status.get("host")),
        "image": image,
        "flavor": {"id": flavor_id, "links": links_for(request, "flavors", flavor_id)[1:]},
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
    return view


def detail_view(request: Request, server: Obj, context: AuthContext) -> Obj:
    spec, status = spec_of(server), status_of(server)
    view = basic_view(request, server)
    view["addresses"] = status.get("addresses") or {}
    view |= {
        "key_name": spec.get("key_name"),
        "OS-SRV-USG:launched_at": _usg_time(status.get("launched_at")),
        "OS-SRV-USG:terminated_at": None,
        "OS-EXT-AZ:availability_zone": status.get("zone") or spec.get("availability_zone") or "",
        "OS-EXT-STS:task_state": task_state(server),
        "OS-EXT-STS:vm_state": status.get("vm_state") or kinds.BUILDING,
        "OS-EXT-STS:power_state": int(status.get("power_state") or 0),
        "os-extended-volumes:volumes_attached": [
            {"id": item["volume_id"]}
            for item in status.get("volumes_attached") or []
            if isinstance(item, dict)
        ],
        "config_drive": "True" if spec.get("config_drive") else "",
    }
    if spec.get("security_groups"):  # Nova leaves the key out when a server has none
        view["security_groups"] = [{"name": name} for name in spec["security_groups"]]
    if context.is_admin:
        view |= {
            "OS-EXT-SRV-ATTR:host": status.get("host"),
            "OS-EXT-SRV-ATTR:hypervisor_hostname": status.get("host"),
            "OS-EXT-SRV-ATTR:instance_name": f"instance-{kinds.integer_id(view['id']):08x}",
        }
    return view


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
    ip = query.get("ip")
    return not ip or any(
        _search(ip, str(a.get("addr", "")))
        for entries in (status.get("addresses") or {}).values()
        for a in entries
    )


def _search(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return pattern in text
