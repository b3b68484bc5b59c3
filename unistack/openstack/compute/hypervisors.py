"""Hypervisors (`/os-hypervisors`) and availability zones (`/os-availability-zone`).

Each hypervisor is a Kubernetes `Node` of an agent (`unistack.iaas.compute.hosts`): its
capacity from the node's status, what is used from the servers' allocations, `state` up
while the node is Ready, `status` disabled when it is cordoned. `hypervisor_type` is the
driver's ("fake": instances run on the fake driver for now). Nova v2.1 numbers hypervisors;
the number is a stable digest of the node name. Zones are the nodes' zones; the detail
(admin) lists each zone's hosts and their `nova-compute` service.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.compute import kinds
from unistack.iaas.compute.hosts import node_enabled, node_total
from unistack.iaas.records import spec_of
from unistack.openstack.auth import require_admin
from unistack.openstack.compute.service import ComputeService
from unistack.openstack.web import json_response, not_found

Obj = dict[str, Any]
HYPERVISOR_VERSION = 1000


def node_ready(node: Obj) -> bool:
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return True  # a node nobody reports on yet (no agent conditions): assume up


def node_ip(node: Obj) -> str:
    for address in (node.get("status") or {}).get("addresses") or []:
        if address.get("type") == "InternalIP":
            return str(address.get("address"))
    return "127.0.0.1"


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

    def brief(self, node: Obj) -> Obj:
        return {
            "id": kinds.integer_id(node["metadata"]["name"]),
            "hypervisor_hostname": node["metadata"]["name"],
            "state": "up" if node_ready(node) else "down",
            "status": "enabled" if node_enabled(node) else "disabled",
        }

    def detail(self, node: Obj) -> Obj:
        name = node["metadata"]["name"]
        total, used = node_total(node), self.hosts.used(name)
        return {
            **self.brief(node),
            "hypervisor_type": self.hypervisor_type,
            "hypervisor_version": HYPERVISOR_VERSION,
            "host_ip": node_ip(node),
            "cpu_info": "{}",
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
            "service": {
                "host": name,
                "id": kinds.integer_id(f"service/{name}"),
                "disabled_reason": None,
            },
        }

    def _node(self, hypervisor_id: str) -> Obj:
        for node in self.hosts.all_nodes():
            if hypervisor_id in (str(kinds.integer_id(node["metadata"]["name"])),):
                return node
        raise not_found(f"Hypervisor with ID '{hypervisor_id}' could not be found.")

    def _matching(self, pattern: str) -> list[Obj]:
        found = [n for n in self.hosts.all_nodes() if pattern in n["metadata"]["name"]]
        if not found:
            raise not_found(f"No hypervisor matching '{pattern}' could be found.")
        return found

    async def list_hypervisors(self, request: Request) -> Response:
        self._admin(request, "list")
        return json_response({"hypervisors": [self.brief(n) for n in self.hosts.all_nodes()]})

    async def list_hypervisors_detail(self, request: Request) -> Response:
        self._admin(request, "list-detail")
        return json_response({"hypervisors": [self.detail(n) for n in self.hosts.all_nodes()]})

    async def show_hypervisor(self, request: Request) -> Response:
        self._admin(request, "show")
        node = self._node(request.path_params["hypervisor_id"])
        return json_response({"hypervisor": self.detail(node)})

    async def show_uptime(self, request: Request) -> Response:
        self._admin(request, "uptime")
        node = self._node(request.path_params["hypervisor_id"])
        uptime = " 00:00:00 up 1 day, 0:00,  0 users,  load average: 0.00, 0.00, 0.00"
        return json_response({"hypervisor": {**self.brief(node), "uptime": uptime}})

    async def search(self, request: Request) -> Response:
        self._admin(request, "search")
        found = self._matching(request.path_params["pattern"])
        return json_response({"hypervisors": [self.brief(n) for n in found]})

    async def list_servers(self, request: Request) -> Response:
        self._admin(request, "servers")
        items = []
        for node in self._matching(request.path_params["pattern"]):
            servers = [
                {"uuid": s["metadata"]["name"], "name": spec_of(s).get("name", "")}
                for s in self.hosts.servers_on(node["metadata"]["name"])
            ]
            entry = self.brief(node)
            if servers:
                entry["servers"] = servers
            items.append(entry)
        return json_response({"hypervisors": items})

    async def show_statistics(self, request: Request) -> Response:
        self._admin(request, "statistics")
        details = [self.detail(n) for n in self.hosts.all_nodes()]
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
