"""Hypervisors (`/os-hypervisors`) and availability zones (`/os-availability-zone`).

Each hypervisor is a Kubernetes `Node` of an agent (`unistack.iaas.compute.hosts`): its
capacity from the node's status, what is used from the servers' allocations, `state` up
while the node is Ready, `status` disabled when it is cordoned. `hypervisor_type` is the
first instance driver the node's agent offers (`container`, `qemu`), else the controller's
`fake`. Nova numbers hypervisors up to 2.52 (a stable digest of the node name) and gives
them UUIDs from 2.53 (then `search` and `servers` give way to the list's
`hypervisor_hostname_pattern` and `with_servers`); `cpu_info` is an object from 2.28, lists
are paged from 2.33, and from 2.88 the detail drops the resource counts and the statistics
are gone. Zones are the nodes' zones; the detail
(admin) lists each zone's hosts and their `nova-compute` service.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.compute import kinds
from unistack.iaas.compute.agentdriver import hypervisor_type
from unistack.iaas.compute.hosts import node_enabled, node_ready, node_total
from unistack.iaas.records import spec_of
from unistack.openstack.auth import require_admin
from unistack.openstack.compute.service import (
    ComputeService,
    boolean,
    is_uuid,
    microversion,
    page,
    removed_after,
)
from unistack.openstack.microversion import Version
from unistack.openstack.web import bad_request, json_response, not_found

Obj = dict[str, Any]
HYPERVISOR_VERSION = 1000


def node_ip(node: Obj) -> str:
    for address in (node.get("status") or {}).get("addresses") or []:
        if address.get("type") == "InternalIP":
            return str(address.get("address"))
    return "127.0.0.1"


UPTIME = " 00:00:00 up 1 day, 0:00,  0 users,  load average: 0.00, 0.00, 0.00"


def _hypervisor_id(name: str, version: Version) -> int | str:
    """Nova numbered hypervisors up to 2.52; from 2.53 they are UUIDs."""
    if version.at_least("2.53"):
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"hypervisor:{name}"))
    return kinds.integer_id(name)


def _service_id(name: str, version: Version) -> int | str:
    if version.at_least("2.53"):
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"service:nova-compute@{name}"))
    return kinds.integer_id(f"service/{name}")


class Hypervisors:
    def __init__(self, service: ComputeService, hypervisor_type: str) -> None:
        self.service = service
        self.hosts = service.hosts
        self.hypervisor_type = hypervisor_type

    def routes(self) -> list[Route]:
        base = "/v2.1/os-hypervisors"
        return [
            Route(base, self.list_hypervisors, methods=["GET"]),
            Route(f"{base}/detail", self.list_hypervisors_detail, methods=["GET"]),
            Route(f"{base}/statistics", self.show_statistics, methods=["GET"]),
            Route(f"{base}/{{hypervisor_id}}", self.show_hypervisor, methods=["GET"]),
            Route(f"{base}/{{hypervisor_id}}/uptime", self.show_uptime, methods=["GET"]),
            Route(f"{base}/{{pattern}}/search", self.search, methods=["GET"]),
            Route(f"{base}/{{pattern}}/servers", self.list_servers, methods=["GET"]),
            Route("/v2.1/os-availability-zone", self.list_zones, methods=["GET"]),
            Route("/v2.1/os-availability-zone/detail", self.list_zones_detail, methods=["GET"]),
        ]

    def _admin(self, request: Request, rule: str) -> None:
        require_admin(self.service.authenticate(request), f"os_compute_api:os-hypervisors:{rule}")

    def brief(self, request: Request, node: Obj) -> Obj:
        name = node["metadata"]["name"]
        return {
            "id": _hypervisor_id(name, microversion(request)),
            "hypervisor_hostname": name,
            "state": "up" if node_ready(node) else "down",
            "status": "enabled" if node_enabled(node) else "disabled",
        }

    def detail(self, request: Request, node: Obj) -> Obj:
        """A hypervisor's detail: `cpu_info` an object from 2.28, UUIDs from 2.53, and from
        2.88 without the resource counts (placement has them) but with the uptime."""
        name, version = node["metadata"]["name"], microversion(request)
        view: Obj = {
            **self.brief(request, node),
            "hypervisor_type": hypervisor_type(node, self.hypervisor_type),
            "hypervisor_version": HYPERVISOR_VERSION,
            "host_ip": node_ip(node),
            "service": {
                "host": name,
                "id": _service_id(name, version),
                "disabled_reason": None,
            },
        }
        if version.at_least("2.88"):
            return view | {"uptime": UPTIME}
        total, used = node_total(node), self.hosts.used(name)
        return view | {
            "cpu_info": {} if version.at_least("2.28") else "{}",
            "current_workload": 0,
            "disk_available_least": total.disk_gb - used.disk_gb,
            "vcpus": total.vcpus,
            "vcpus_used": used.vcpus,
            "memory_mb": total.memory_mb,
            "memory_mb_used": used.memory_mb,
            "free_ram_mb": total.memory_mb - used.memory_mb,
            "local_gb": total.disk_gb,
            "local_gb_used": used.disk_gb,
            "free_disk_gb": total.disk_gb - used.disk_gb,
            "running_vms": len(self.hosts.servers_on(name)),
        }

    def _servers_of(self, node: Obj) -> list[Obj]:
        return [
            {"uuid": s["metadata"]["name"], "name": spec_of(s).get("name", "")}
            for s in self.hosts.servers_on(node["metadata"]["name"])
        ]

    def _with_servers(self, request: Request, node: Obj, view: Obj) -> Obj:
        """From 2.53 `with_servers=true` adds each hypervisor's servers."""
        flag = request.query_params.get("with_servers")
        if microversion(request).at_least("2.53") and flag and boolean(flag, "with_servers"):
            view["servers"] = self._servers_of(node)
        return view

    def _node(self, request: Request, hypervisor_id: str) -> Obj:
        version = microversion(request)
        if version.at_least("2.53") and not is_uuid(hypervisor_id):
            raise bad_request(f"Invalid uuid {hypervisor_id}")
        for node in self.hosts.all_nodes():
            if hypervisor_id == str(_hypervisor_id(node["metadata"]["name"], version)):
                return node
        raise not_found(f"Hypervisor with ID '{hypervisor_id}' could not be found.")

    def _matching(self, pattern: str) -> list[Obj]:
        found = [n for n in self.hosts.all_nodes() if pattern in n["metadata"]["name"]]
        if not found:
            raise not_found(f"No hypervisor matching '{pattern}' could be found.")
        return found

    def _listed(self, request: Request) -> list[Obj]:
        """The nodes a list shows: from 2.53 filtered by `hypervisor_hostname_pattern`, from
        2.33 paged with `limit` and `marker`."""
        version, query = microversion(request), request.query_params
        nodes = self.hosts.all_nodes()
        pattern = query.get("hypervisor_hostname_pattern")
        if version.at_least("2.53") and pattern:
            nodes = self._matching(pattern)
        if version.at_least("2.33"):
            nodes, _ = page(
                nodes, request, key=lambda n: str(_hypervisor_id(n["metadata"]["name"], version))
            )
        return nodes

    async def list_hypervisors(self, request: Request) -> Response:
        self._admin(request, "list")
        items = [
            self._with_servers(request, n, self.brief(request, n)) for n in self._listed(request)
        ]
        return json_response({"hypervisors": items})

    async def list_hypervisors_detail(self, request: Request) -> Response:
        self._admin(request, "list-detail")
        items = [
            self._with_servers(request, n, self.detail(request, n)) for n in self._listed(request)
        ]
        return json_response({"hypervisors": items})

    async def show_hypervisor(self, request: Request) -> Response:
        self._admin(request, "show")
        node = self._node(request, request.path_params["hypervisor_id"])
        return json_response(
            {"hypervisor": self._with_servers(request, node, self.detail(request, node))}
        )

    async def show_uptime(self, request: Request) -> Response:
        removed_after(request, "2.87")
        self._admin(request, "uptime")
        node = self._node(request, request.path_params["hypervisor_id"])
        return json_response({"hypervisor": {**self.brief(request, node), "uptime": UPTIME}})

    async def search(self, request: Request) -> Response:
        removed_after(request, "2.52")
        self._admin(request, "search")
        found = self._matching(request.path_params["pattern"])
        return json_response({"hypervisors": [self.brief(request, n) for n in found]})

    async def list_servers(self, request: Request) -> Response:
        removed_after(request, "2.52")
        self._admin(request, "servers")
        items = []
        for node in self._matching(request.path_params["pattern"]):
            servers = self._servers_of(node)
            entry = self.brief(request, node)
            if servers:
                entry["servers"] = servers
            items.append(entry)
        return json_response({"hypervisors": items})

    async def show_statistics(self, request: Request) -> Response:
        removed_after(request, "2.87")
        self._admin(request, "statistics")
        details = [self.detail(request, n) for n in self.hosts.all_nodes()]
        keys = (
            "current_workload",
            "disk_available_least",
            "free_disk_gb",
            "free_ram_mb",
            "local_gb",
            "local_gb_used",
            "memory_mb",
            "memory_mb_used",
            "running_vms",
            "vcpus",
            "vcpus_used",
        )
        stats = {key: sum(int(d[key]) for d in details) for key in keys}
        return json_response({"hypervisor_statistics": {"count": len(details), **stats}})

    # --- availability zones -----------------------------------------------------------------

    async def list_zones(self, request: Request) -> Response:
        self.service.authenticate(request)
        zones = [
            {"zoneName": zone, "zoneState": {"available": up}, "hosts": None}
            for zone, up in sorted(self.hosts.zones().items())
        ]
        return json_response({"availabilityZoneInfo": zones})

    async def list_zones_detail(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-availability-zone:detail")
        zones: dict[str, Obj] = {}
        for node in self.hosts.all_nodes():
            entry = zones.setdefault(
                self.hosts.zone_of(node),
                {"zoneName": self.hosts.zone_of(node), "zoneState": {"available": False}},
            )
            up = node_enabled(node) and node_ready(node)
            entry["zoneState"]["available"] |= node_enabled(node)
            service = {"available": up, "active": node_enabled(node), "updated_at": None}
            entry.setdefault("hosts", {})[node["metadata"]["name"]] = {"nova-compute": service}
        return json_response({"availabilityZoneInfo": list(zones.values())})
