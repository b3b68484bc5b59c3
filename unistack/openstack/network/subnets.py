"""Subnets: `/v2.0/subnets` — real IPAM over `ipam`: CIDR checks, the default gateway and
pools, no overlap within a network, DNS servers and host routes. A subnet with addresses
still allocated to ports (other than DHCP ports) is 409 SubnetInUse on delete, except an
automatic-address (SLAAC) subnet, whose addresses are taken off the ports.
"""

from __future__ import annotations

import functools
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.network import ipam, kinds
from unistack.iaas.network.ipam import IpamError
from unistack.iaas.network.stamps import stamp_new
from unistack.iaas.records import Obj, spec_of
from unistack.openstack import auth
from unistack.openstack.auth import AuthContext
from unistack.openstack.network import fixed_ips, query
from unistack.openstack.network.service import (
    NetworkService,
    bad,
    boolean,
    create_one_or_many,
    in_use,
    new_id,
    reject_read_only,
    reject_unknown,
    standard,
    text,
)
from unistack.openstack.web import empty, json_response

CREATE_KEYS = {
    "name", "description", "network_id", "cidr", "ip_version", "gateway_ip", "allocation_pools",
    "dns_nameservers", "host_routes", "enable_dhcp", "ipv6_ra_mode", "ipv6_address_mode",
    "project_id", "tenant_id", "tags", "subnetpool_id", "segment_id", "service_types",
    "prefixlen", "use_default_subnetpool", "dns_publish_fixed_ip",
}  # fmt: skip
UPDATE_KEYS = {
    "name", "description", "gateway_ip", "allocation_pools", "dns_nameservers", "host_routes",
    "enable_dhcp", "service_types", "dns_publish_fixed_ip", "segment_id",
}  # fmt: skip


def view(obj: Obj) -> Obj:
    spec = spec_of(obj)
    shown = standard(obj)
    for key in (
        "network_id",
        "ip_version",
        "cidr",
        "gateway_ip",
        "ipv6_ra_mode",
        "ipv6_address_mode",
    ):
        shown[key] = spec.get(key)
    shown.update(
        allocation_pools=spec.get("allocation_pools", []),
        dns_nameservers=spec.get("dns_nameservers", []),
        host_routes=spec.get("host_routes", []),
        enable_dhcp=spec.get("enable_dhcp", True),
        subnetpool_id=None,
        segment_id=spec.get("segment_id"),
        service_types=spec.get("service_types", []),
        dns_publish_fixed_ip=spec.get("dns_publish_fixed_ip", False),
    )
    return shown


def _nameservers(value: Any, version: int) -> list[str]:
    if not isinstance(value, list):
        raise bad(f"Invalid input for dns_nameservers. Reason: '{value}' is not a list.")
    seen: list[str] = []
    for server in value:
        address = ipam.parse_address(server, "dns_nameservers")
        if str(address) in seen:
            raise bad(
                f"Invalid input for dns_nameservers. Reason: Duplicate nameserver '{server}'."
            )
        seen.append(str(address))
    return seen


def _routes(value: Any, version: int) -> list[Obj]:
    if not isinstance(value, list):
        raise bad(f"Invalid input for host_routes. Reason: '{value}' is not a list.")
    routes: list[Obj] = []
    for route in value:
        if not isinstance(route, dict) or set(route) != {"destination", "nexthop"}:
            raise bad(f"Invalid input for host_routes. Reason: '{route}' is not valid.")
        destination = ipam.parse_cidr(route["destination"], version)
        nexthop = ipam.parse_address(route["nexthop"], "nexthop")
        entry = {"destination": str(destination), "nexthop": str(nexthop)}
        if entry in routes:
            raise bad(f"Invalid input for host_routes. Reason: Duplicate hostroute '{route}'.")
        routes.append(entry)
    return routes


IPV6_MODES = ("slaac", "dhcpv6-stateful", "dhcpv6-stateless")


def _ipv6_modes(body: Obj, version: int) -> Obj:
    ra, address = body.get("ipv6_ra_mode"), body.get("ipv6_address_mode")
    for key, value in (("ipv6_ra_mode", ra), ("ipv6_address_mode", address)):
        if value is not None and value not in IPV6_MODES:
            raise bad(f"Invalid input for {key}. Reason: '{value}' is not in {list(IPV6_MODES)}.")
        if value is not None and version != 6:
            raise bad(
                "Invalid input for operation: ipv6_ra_mode or ipv6_address_mode cannot be "
                "set when enable_dhcp is set to False or ip_version is 4."
            )
    if ra and address and ra != address:
        raise bad(
            f"Invalid input for operation: ipv6_ra_mode set to '{ra}' with "
            f"ipv6_address_mode set to '{address}' is not valid. If both attributes "
            "are set, they must be the same value."
        )
    if address in ("slaac", "dhcpv6-stateless") and not str(body.get("cidr", "")).endswith("/64"):
        raise bad(
            "Invalid CIDR for IPv6 address mode. OpenStack uses the EUI-64 address "
            "format, which requires the prefix to be /64."
        )
    return {"ipv6_ra_mode": ra, "ipv6_address_mode": address}


def _version(body: Obj) -> int:
    version = body.get("ip_version", 4)
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    if version not in (4, 6):
        raise bad(f"Invalid input for ip_version. Reason: '{version}' is not in [4, 6].")
    return int(version)


def _gateway(body: Obj, network: ipam.Network, pools: list[ipam.Pool] | None) -> str | None:
    if "gateway_ip" in body and body["gateway_ip"] is None:
        return None
    if body.get("gateway_ip"):
        ipam.validate_gateway(network, str(body["gateway_ip"]))
        return str(ipam.parse_address(body["gateway_ip"], "gateway_ip"))
    return ipam.default_gateway(network)


def addressing(body: Obj, version: int) -> Obj:
    """cidr, gateway_ip and allocation_pools of a new subnet, validated (IpamError → 400)."""
    if "cidr" not in body or body["cidr"] is None:
        raise bad("Bad subnets request: a cidr must be specified in the absence of a subnet pool")
    network = ipam.parse_cidr(body["cidr"], version)
    gateway = _gateway(body, network, None)
    if "allocation_pools" in body and body["allocation_pools"] is not None:
        pools = ipam.validate_pools(network, body["allocation_pools"], gateway)
    else:
        pools = ipam.default_pools(network, gateway)
    return {"cidr": str(network), "gateway_ip": gateway, "allocation_pools": pools}


class Subnets:
    def __init__(self, service: NetworkService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        return [
            Route("/v2.0/subnets", self.list_subnets, methods=["GET"]),
            Route("/v2.0/subnets", self.create_subnets, methods=["POST"]),
            Route("/v2.0/subnets/{id}", self.show_subnet, methods=["GET"]),
            Route("/v2.0/subnets/{id}", self.update_subnet, methods=["PUT"]),
            Route("/v2.0/subnets/{id}", self.delete_subnet, methods=["DELETE"]),
        ]

    def find(self, context: AuthContext, subnet_id: str) -> Obj:
        return self.service.find(context, kinds.SUBNETS, subnet_id, "SubnetNotFound", "Subnet")

    async def list_subnets(self, request: Request) -> Response:
        context = self.service.context(request)
        items = [view(s) for s in self.service.visible(context, kinds.SUBNETS)]
        return json_response(query.list_body(request, "subnets", items))

    async def show_subnet(self, request: Request) -> Response:
        subnet = self.find(self.service.context(request), request.path_params["id"])
        return json_response(query.show_body(request, "subnet", view(subnet)))

    async def create_subnets(self, request: Request) -> Response:
        context = self.service.context(request)
        create = functools.partial(self.create_one, context)
        return await create_one_or_many(request, "subnet", "subnets", create, view)

    async def create_one(self, context: AuthContext, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise bad("Invalid subnet body.")
        reject_unknown(body, CREATE_KEYS)
        if not body.get("network_id"):
            raise bad("Invalid input for network_id. Reason: network_id is required.")
        network = self.service.find(
            context, kinds.NETWORKS, str(body["network_id"]), "NetworkNotFound", "Network"
        )
        project = self.service.owner_of_new(context, body, "create_subnet")
        if spec_of(network).get("project_id") != project:
            auth.require_admin(context, "create_subnet")
        self.service.check_quota(project, "subnet")
        spec = self._spec(body, project, network)
        return await self.service.records.create(kinds.SUBNETS, new_id(), stamp_new(spec))

    def _spec(self, body: Obj, project: str, network: Obj) -> Obj:
        version = _version(body)
        try:
            addresses = addressing(body, version)
            spec = {
                "project_id": project,
                "network_id": network["metadata"]["name"],
                "ip_version": version,
                "name": text(body, "name"),
                "description": text(body, "description"),
                "enable_dhcp": boolean(body, "enable_dhcp", True),
                "dns_nameservers": _nameservers(body.get("dns_nameservers") or [], version),
                "host_routes": _routes(body.get("host_routes") or [], version),
                **_ipv6_modes(body, version),
                "service_types": body.get("service_types") or [],
                "segment_id": body.get("segment_id"),
                **addresses,
            }
        except IpamError as exc:
            raise bad(str(exc)) from exc
        self._no_overlap(network, spec["cidr"], None)
        return spec

    def _no_overlap(self, network: Obj, cidr: str, itself: str | None) -> None:
        network_id = network["metadata"]["name"]
        others = [
            str(spec_of(s).get("cidr"))
            for s in self.service.records.indexed(kinds.SUBNETS, "network", network_id)
            if s["metadata"]["name"] != itself
        ]
        clash = ipam.overlapping(ipam.parse_any_cidr(cidr), others)
        if clash:
            raise bad(
                f"Invalid input for operation: Requested subnet with cidr: {cidr} for network: "
                f"{network_id} overlaps with another subnet."
            )

    async def update_subnet(self, request: Request) -> Response:
        context = self.service.context(request)
        subnet = self.find(context, request.path_params["id"])
        body = await self.service.body_of(request, "subnet")
        self.service.may_write(context, subnet, "update_subnet", "SubnetNotFound", "Subnet")
        reject_read_only(body, UPDATE_KEYS, CREATE_KEYS)
        try:
            changes = self._changes(subnet, body)
        except IpamError as exc:
            raise bad(str(exc)) from exc
        updated = await self.service.revise(kinds.SUBNETS, subnet["metadata"]["name"], changes)
        return json_response({"subnet": view(updated)})

    def _changes(self, subnet: Obj, body: Obj) -> Obj:
        spec = spec_of(subnet)
        version = int(spec["ip_version"])
        network = ipam.parse_cidr(spec["cidr"], version)
        changes: Obj = {}
        for key in ("name", "description"):
            if key in body:
                changes[key] = text(body, key)
        if "enable_dhcp" in body:
            changes["enable_dhcp"] = boolean(body, "enable_dhcp", True)
        if "dns_nameservers" in body:
            changes["dns_nameservers"] = _nameservers(body["dns_nameservers"] or [], version)
        if "host_routes" in body:
            changes["host_routes"] = _routes(body["host_routes"] or [], version)
        gateway = spec.get("gateway_ip")
        if "gateway_ip" in body:
            gateway = _gateway(body, network, None)
            changes["gateway_ip"] = gateway
        pools = body.get("allocation_pools", spec.get("allocation_pools") or [])
        changes["allocation_pools"] = ipam.validate_pools(network, pools, gateway)
        return changes

    async def _detach_all(self, subnet_id: str, ports: list[Obj]) -> None:
        """Take an automatic-address subnet's addresses off its ports, as Neutron does when
        such a subnet is deleted."""

        def detach(spec: Obj) -> None:
            held = spec.get("fixed_ips") or []
            spec["fixed_ips"] = [ip for ip in held if ip.get("subnet_id") != subnet_id]

        for port in ports:
            await self.service.revise(kinds.PORTS, port["metadata"]["name"], detach)

    async def delete_subnet(self, request: Request) -> Response:
        context = self.service.context(request)
        subnet = self.find(context, request.path_params["id"])
        self.service.may_write(context, subnet, "delete_subnet", "SubnetNotFound", "Subnet")
        subnet_id = subnet["metadata"]["name"]
        users = self.service.records.indexed(kinds.PORTS, "subnet", subnet_id)
        owners = [str(spec_of(p).get("device_owner")) for p in users]
        if fixed_ips.is_auto(subnet) and "network:router_interface" not in owners:
            await self._detach_all(subnet_id, users)
        elif any(owner != "network:dhcp" for owner in owners):
            raise in_use(
                "SubnetInUse",
                f"Unable to complete operation on subnet {subnet_id}: "
                "One or more ports have an IP allocation from this subnet.",
            )
        await self.service.drop_subnet(subnet)
        return empty(204)
