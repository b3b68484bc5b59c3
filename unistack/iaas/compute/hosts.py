"""Hypervisors as Nova sees them: one per Kubernetes `Node`, with what its servers hold.

`HostView` reads Nodes (a shared informer on `unistack.client.resources.NODES`) and the
servers' recorded allocations (`status.host`, `status.allocation`) into the
`scheduler.HostState` the scheduler decides on, and into the numbers `os-hypervisors`
shows (capacity from the node's status, used from the allocations). A node's zone is the one
a host aggregate gives it, else its `topology.kubernetes.io/zone` label, else Nova's
default zone `nova`; an unschedulable node
(cordoned) is a disabled compute service. `host_status` is Nova's word for a server's host
(UP, DOWN, MAINTENANCE, UNKNOWN).
"""

from __future__ import annotations

from typing import Any

from unistack.iaas.compute import kinds
from unistack.iaas.compute.scheduler import HostState, Resources
from unistack.iaas.records import Records, spec_of, status_of
from unistack.quantity import int_value, parse_quantity
from unistack.runtime.informer import Informer

Obj = dict[str, Any]
ZONE_LABEL = "topology.kubernetes.io/zone"
DEFAULT_ZONE = "nova"
MIB, GIB = 2**20, 2**30


def label_zone(node: Obj) -> str:
    labels = node.get("metadata", {}).get("labels") or {}
    return str(labels.get(ZONE_LABEL) or DEFAULT_ZONE)


def _quantity(values: Obj, name: str, default: str) -> int:
    try:
        return int_value(parse_quantity(values.get(name, default)))
    except (ValueError, TypeError):
        return int_value(parse_quantity(default))


def node_total(node: Obj) -> Resources:
    status = node.get("status") or {}
    capacity = status.get("capacity") or status.get("allocatable") or {}
    return Resources(
        _quantity(capacity, "cpu", "1"),
        _quantity(capacity, "memory", "1Gi") // MIB,
        _quantity(capacity, "ephemeral-storage", "20Gi") // GIB,
    )


def node_enabled(node: Obj) -> bool:
    return not (node.get("spec") or {}).get("unschedulable")


def node_ready(node: Obj) -> bool:
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return True  # a node nobody reports on yet (no agent conditions): assume up


def allocation_of(server: Obj) -> Resources:
    held = status_of(server).get("allocation") or {}
    return Resources(
        int(held.get("vcpus", 0)), int(held.get("memory_mb", 0)), int(held.get("disk_gb", 0))
    )


class HostView:
    def __init__(self, nodes: Informer, records: Records) -> None:
        self.nodes = nodes
        self.records = records

    def aggregate_zone(self, host: str) -> str | None:
        """The zone an aggregate holding `host` gives it, as Nova's host AZ."""
        for aggregate in self.records.all(kinds.AGGREGATES):
            spec = spec_of(aggregate)
            if host in (spec.get("hosts") or []) and spec.get("availability_zone"):
                return str(spec["availability_zone"])
        return None

    def zone_of(self, node: Obj) -> str:
        return self.aggregate_zone(node["metadata"]["name"]) or label_zone(node)

    def all_nodes(self) -> list[Obj]:
        return sorted(self.nodes.cache.list(), key=lambda node: node["metadata"]["name"])

    def host_status(self, host: str | None) -> str:
        """Nova's `host_status` of a server's host: UP, DOWN, MAINTENANCE (disabled),
        UNKNOWN (no such node), or "" for a server on no host."""
        if not host:
            return ""
        node = self.nodes.cache.get(host)
        if node is None:
            return "UNKNOWN"
        if not node_enabled(node):
            return "MAINTENANCE"
        return "UP" if node_ready(node) else "DOWN"

    def servers_on(self, host: str) -> list[Obj]:
        return self.records.indexed(kinds.SERVERS, "host", host)

    def used(self, host: str) -> Resources:
        total = Resources()
        for server in self.servers_on(host):
            total = total + allocation_of(server)
        return total

    def state(self, node: Obj) -> HostState:
        name = node["metadata"]["name"]
        groups: dict[str, int] = {}
        for server in self.servers_on(name):
            group = spec_of(server).get("group_id")
            if group:
                groups[group] = groups.get(group, 0) + 1
        return HostState(
            name,
            node_total(node),
            self.used(name),
            self.zone_of(node),
            node_enabled(node),
            groups,
            up=node_ready(node),
        )

    def states(self) -> list[HostState]:
        return [self.state(node) for node in self.all_nodes()]

    def zones(self) -> dict[str, bool]:
        """Every zone and whether any of its hosts is enabled."""
        found: dict[str, bool] = {}
        for node in self.all_nodes():
            zone = self.zone_of(node)
            found[zone] = found.get(zone, False) or node_enabled(node)
        return found
