"""Network IP availability: `/v2.0/network-ip-availabilities[/{network}]` (admin) — for each
network and subnet, the addresses in its pools and those allocated, from the allocation
objects."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.network import ipam, kinds
from unistack.iaas.records import Obj, spec_of
from unistack.openstack import auth
from unistack.openstack.network import query
from unistack.openstack.network.service import NetworkService
from unistack.openstack.web import json_response


def subnet_availability(service: NetworkService, subnet: Obj) -> Obj:
    spec = spec_of(subnet)
    subnet_id = subnet["metadata"]["name"]
    return {
        "subnet_id": subnet_id,
        "subnet_name": spec.get("name", ""),
        "cidr": spec.get("cidr"),
        "ip_version": spec.get("ip_version"),
        "total_ips": ipam.pool_size(spec.get("allocation_pools") or []),
        "used_ips": len(service.records.indexed(kinds.ALLOCATIONS, "subnet", subnet_id)),
    }


def network_availability(service: NetworkService, network: Obj) -> Obj:
    network_id = network["metadata"]["name"]
    subnets = [
        subnet_availability(service, s)
        for s in service.records.indexed(kinds.SUBNETS, "network", network_id)
    ]
    project = spec_of(network).get("project_id")
    return {
        "network_id": network_id,
        "network_name": spec_of(network).get("name", ""),
        "project_id": project,
        "tenant_id": project,
        "total_ips": sum(s["total_ips"] for s in subnets),
        "used_ips": sum(s["used_ips"] for s in subnets),
        "subnet_ip_availability": subnets,
    }


def routes(service: NetworkService) -> list[Route]:
    async def list_availabilities(request: Request) -> Response:
        context = service.context(request)
        auth.require_admin(context, "get_network_ip_availability")
        items = [network_availability(service, n) for n in service.records.all(kinds.NETWORKS)]
        for item in items:
            item["id"] = item["network_id"]
        body = query.list_body(request, "network_ip_availabilities", items)
        for item in body["network_ip_availabilities"]:
            item.pop("id", None)
        return json_response(body)

    async def show_availability(request: Request) -> Response:
        context = service.context(request)
        auth.require_admin(context, "get_network_ip_availability")
        network = service.find(
            context, kinds.NETWORKS, request.path_params["id"], "NetworkNotFound", "Network"
        )
        return json_response({"network_ip_availability": network_availability(service, network)})

    base = "/v2.0/network-ip-availabilities"
    return [
        Route(base, list_availabilities, methods=["GET"]),
        Route(base + "/{id}", show_availability, methods=["GET"]),
    ]
