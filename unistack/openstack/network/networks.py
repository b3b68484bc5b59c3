"""Networks: `/v2.0/networks` — create (one or bulk), list, show, update, delete.

A network has a segment: VXLAN by default (its id taken from the allocator, unique in the
cloud), or flat / VLAN on a physical network (admin only, as are the `provider:*`
attributes, `shared` and `router:external`). Deleting a network with ports in use (other than
DHCP ports) is 409 NetworkInUse; its subnets and (external networks) floating IPs go with it.
"""

from __future__ import annotations

import functools
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.network import kinds
from unistack.iaas.network.allocations import AddressInUse
from unistack.iaas.network.stamps import stamp_new
from unistack.iaas.records import Obj, spec_of
from unistack.openstack import auth
from unistack.openstack.auth import AuthContext
from unistack.openstack.network import query
from unistack.openstack.network.service import (
    NetworkService,
    bad,
    boolean,
    create_one_or_many,
    in_use,
    new_id,
    reject_read_only,
    reject_unknown,
    requested_tags,
    standard,
    text,
)
from unistack.openstack.web import empty, json_response

PROVIDER = ("provider:network_type", "provider:physical_network", "provider:segmentation_id")
ADMIN_ONLY = {"shared", "router:external", *PROVIDER}
CREATE_KEYS = {
    "name",
    "description",
    "admin_state_up",
    "shared",
    "router:external",
    "mtu",
    "port_security_enabled",
    "availability_zone_hints",
    "project_id",
    "tenant_id",
    "tags",
    "is_default",
    "dns_domain",
    *PROVIDER,
}
UPDATE_KEYS = {"name", "description", "admin_state_up", "shared", "router:external", "mtu"}
UPDATE_KEYS |= {"port_security_enabled", "is_default", "dns_domain"}
MTU = {"vxlan": 1450, "geneve": 1442}
NETWORK_TYPES = ("vxlan", "flat", "vlan", "local", "geneve")


def view(service: NetworkService, context: AuthContext, obj: Obj) -> Obj:
    spec = spec_of(obj)
    subnets = service.records.indexed(kinds.SUBNETS, "network", obj["metadata"]["name"])
    shown = standard(obj)
    shown.update(
        {
            "admin_state_up": spec.get("admin_state_up", True),
            "status": "ACTIVE",
            "subnets": sorted(s["metadata"]["name"] for s in subnets),
            "shared": spec.get("shared", False),
            "router:external": spec.get("router:external", False),
            "mtu": spec.get("mtu", 1500),
            "port_security_enabled": spec.get("port_security_enabled", True),
            "availability_zone_hints": spec.get("availability_zone_hints", []),
            "availability_zones": ["nova"],
            "ipv4_address_scope": None,
            "ipv6_address_scope": None,
            "l2_adjacency": True,
            "is_default": spec.get("is_default", False),
            "dns_domain": spec.get("dns_domain", ""),
        }
    )
    if context.is_admin:
        for key in PROVIDER:
            shown[key] = spec.get(key)
    return shown


def _segment(body: Obj) -> tuple[str, str | None, int | None]:
    network_type = body.get("provider:network_type") or "vxlan"
    if network_type not in NETWORK_TYPES:
        raise bad(
            f"Invalid input for operation: network_type value '{network_type}' not supported."
        )
    physical = body.get("provider:physical_network")
    segment = body.get("provider:segmentation_id")
    if segment is not None and (not isinstance(segment, int) or isinstance(segment, bool)):
        try:
            segment = int(segment)
        except (TypeError, ValueError) as exc:
            raise bad(f"Invalid input for provider:segmentation_id: {segment}") from exc
    if network_type == "flat" and (not physical or segment is not None):
        raise bad(
            "Invalid input for operation: flat provider networks need a physical_network "
            "and no segmentation_id."
        )
    if network_type == "vlan" and (not physical or segment is None or not 1 <= segment <= 4094):
        raise bad("Invalid input for operation: segmentation_id out of range (1 through 4094).")
    return network_type, physical, segment


class Networks:
    def __init__(self, service: NetworkService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        return [
            Route("/v2.0/networks", self.list_networks, methods=["GET"]),
            Route("/v2.0/networks", self.create_networks, methods=["POST"]),
            Route("/v2.0/networks/{id}", self.show_network, methods=["GET"]),
            Route("/v2.0/networks/{id}", self.update_network, methods=["PUT"]),
            Route("/v2.0/networks/{id}", self.delete_network, methods=["DELETE"]),
        ]

    async def list_networks(self, request: Request) -> Response:
        context = self.service.context(request)
        items = [
            view(self.service, context, n) for n in self.service.visible(context, kinds.NETWORKS)
        ]
        return json_response(query.list_body(request, "networks", items))

    async def show_network(self, request: Request) -> Response:
        context = self.service.context(request)
        network = self.service.find(
            context, kinds.NETWORKS, request.path_params["id"], "NetworkNotFound", "Network"
        )
        shown = view(self.service, context, network)
        return json_response(query.show_body(request, "network", shown))

    async def create_networks(self, request: Request) -> Response:
        context = self.service.context(request)
        return await create_one_or_many(
            request,
            "network",
            "networks",
            functools.partial(self.create_one, context),
            functools.partial(view, self.service, context),
        )

    async def create_one(self, context: AuthContext, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise bad("Invalid network body.")
        reject_unknown(body, CREATE_KEYS)
        project = self.service.owner_of_new(context, body, "create_network")
        for key in ADMIN_ONLY & set(body):
            if key in ("shared", "router:external") and body[key] is False:
                continue
            auth.require_admin(context, f"create_network:{key}")
        self.service.check_quota(project, "network")
        network_type, physical, segment = _segment(body)
        network_id = new_id()
        spec = self._spec(body, project, (network_type, physical, segment))
        if network_type not in ("vxlan", "geneve"):
            return await self.service.records.create(kinds.NETWORKS, network_id, stamp_new(spec))
        try:
            segment = await self.service.allocator.take_vni(network_id, segment)
        except AddressInUse as exc:
            raise in_use(
                "SegmentationIdInUse",
                f"Unable to create the network. The VXLAN ID {segment} is in use.",
            ) from exc
        spec["provider:segmentation_id"] = segment
        try:
            return await self.service.records.create(kinds.NETWORKS, network_id, stamp_new(spec))
        except BaseException:
            await self.service.allocator.release_vni(segment)
            raise

    def _spec(self, body: Obj, project: str, segment: tuple[str, str | None, int | None]) -> Obj:
        network_type, physical, segment_id = segment
        mtu = body.get("mtu", MTU.get(network_type, 1500))
        if not isinstance(mtu, int) or isinstance(mtu, bool) or mtu < 68:
            raise bad(
                f"Invalid input for mtu. Reason: '{mtu}' is too small - must be at least '68'."
            )
        hints = body.get("availability_zone_hints", [])
        if not isinstance(hints, list):
            raise bad("Invalid input for availability_zone_hints.")
        return {
            "project_id": project,
            "name": text(body, "name"),
            "description": text(body, "description"),
            "admin_state_up": boolean(body, "admin_state_up", True),
            "shared": boolean(body, "shared", False),
            "router:external": boolean(body, "router:external", False),
            "mtu": mtu,
            "port_security_enabled": boolean(body, "port_security_enabled", True),
            "availability_zone_hints": hints,
            "is_default": boolean(body, "is_default", False),
            "dns_domain": text(body, "dns_domain"),
            "tags": requested_tags(body),
            "provider:network_type": network_type,
            "provider:physical_network": physical,
            "provider:segmentation_id": segment_id,
        }

    async def update_network(self, request: Request) -> Response:
        context = self.service.context(request)
        network = self.service.find(
            context, kinds.NETWORKS, request.path_params["id"], "NetworkNotFound", "Network"
        )
        body = await self.service.body_of(request, "network")
        self.service.may_write(context, network, "update_network", "NetworkNotFound", "Network")
        if PROVIDER & body.keys():
            raise bad("Plugin does not support updating provider attributes")
        reject_read_only(body, UPDATE_KEYS, CREATE_KEYS)
        for key in ("shared", "router:external") & body.keys():
            auth.require_admin(context, f"update_network:{key}")
        changes = self._changes(body)
        updated = await self.service.revise(kinds.NETWORKS, network["metadata"]["name"], changes)
        return json_response({"network": view(self.service, context, updated)})

    def _changes(self, body: Obj) -> Obj:
        changes: Obj = {}
        for key in ("name", "description", "dns_domain"):
            if key in body:
                changes[key] = text(body, key)
        for key in (
            "admin_state_up",
            "shared",
            "router:external",
            "port_security_enabled",
            "is_default",
        ):
            if key in body:
                changes[key] = boolean(body, key, False)
        if "mtu" in body:
            if not isinstance(body["mtu"], int) or body["mtu"] < 68:
                raise bad(f"Invalid input for mtu. Reason: '{body['mtu']}' is not valid.")
            changes["mtu"] = body["mtu"]
        return changes

    async def delete_network(self, request: Request) -> Response:
        context = self.service.context(request)
        network = self.service.find(
            context, kinds.NETWORKS, request.path_params["id"], "NetworkNotFound", "Network"
        )
        self.service.may_write(context, network, "delete_network", "NetworkNotFound", "Network")
        await delete_network(self.service, network)
        return empty(204)


async def delete_network(service: NetworkService, network: Obj) -> None:
    network_id = network["metadata"]["name"]
    ports = service.records.indexed(kinds.PORTS, "network", network_id)
    if any(spec_of(p).get("device_owner") != "network:dhcp" for p in ports):
        raise in_use(
            "NetworkInUse",
            f"Unable to complete operation on network {network_id}. "
            "There are one or more ports still in use on the network.",
        )
    for port in ports:
        await service.release_port(port)
    for floating in service.records.indexed(kinds.FLOATING_IPS, "network", network_id):
        await service.release_floating_ip(floating)
    for subnet in service.records.indexed(kinds.SUBNETS, "network", network_id):
        await service.drop_subnet(subnet)
    spec = spec_of(network)
    await service.records.delete(kinds.NETWORKS, network_id)
    if spec.get("provider:network_type") in ("vxlan", "geneve") and spec.get(
        "provider:segmentation_id"
    ):
        await service.allocator.release_vni(int(spec["provider:segmentation_id"]))
