"""Routers: `/v2.0/routers` with an external gateway (its address taken on the external
network, SNAT on by default), extra routes, and interfaces added and removed by subnet or by
port (`add_router_interface` makes a `network:router_interface` port holding the subnet's
gateway address). A router with interfaces cannot be deleted (409 RouterInUse).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.network import ipam, kinds
from unistack.iaas.network.stamps import stamp_new
from unistack.iaas.records import Obj, spec_of
from unistack.openstack import auth
from unistack.openstack.auth import AuthContext
from unistack.openstack.network import query
from unistack.openstack.network.ports import create_port
from unistack.openstack.network.service import (
    NetworkService,
    bad,
    boolean,
    in_use,
    missing,
    new_id,
    reject_unknown,
    standard,
    text,
)
from unistack.openstack.web import empty, json_response, read_json

INTERFACE = "network:router_interface"
GATEWAY = "network:router_gateway"
CREATE_KEYS = {
    "name", "description", "admin_state_up", "external_gateway_info", "project_id",
    "tenant_id", "distributed", "ha", "availability_zone_hints", "tags", "flavor_id",
}  # fmt: skip
UPDATE_KEYS = {"name", "description", "admin_state_up", "external_gateway_info", "routes"}
UPDATE_KEYS |= {"distributed", "ha"}


def interfaces(service: NetworkService, router_id: str) -> list[Obj]:
    return [
        p for p in service.records.indexed(kinds.PORTS, "device", router_id)
        if spec_of(p).get("device_owner") == INTERFACE
    ]  # fmt: skip


def view(service: NetworkService, context: AuthContext, obj: Obj) -> Obj:
    spec = spec_of(obj)
    shown = standard(obj)
    gateway = spec.get("external_gateway_info")
    shown.update(
        admin_state_up=spec.get("admin_state_up", True),
        status="ACTIVE",
        external_gateway_info=dict(gateway) if gateway else None,
        routes=spec.get("routes", []),
        availability_zone_hints=spec.get("availability_zone_hints", []),
        availability_zones=["nova"],
        flavor_id=None,
    )
    if context.is_admin:
        shown.update(distributed=spec.get("distributed", False), ha=spec.get("ha", False))
    return shown


class Routers:
    def __init__(self, service: NetworkService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        base = "/v2.0/routers"
        return [
            Route(base, self.list_routers, methods=["GET"]),
            Route(base, self.create_router, methods=["POST"]),
            Route(base + "/{id}", self.show_router, methods=["GET"]),
            Route(base + "/{id}", self.update_router, methods=["PUT"]),
            Route(base + "/{id}", self.delete_router, methods=["DELETE"]),
            Route(base + "/{id}/add_router_interface", self.add_interface, methods=["PUT"]),
            Route(base + "/{id}/remove_router_interface", self.remove_interface, methods=["PUT"]),
            Route(base + "/{id}/add_extraroutes", self.add_routes, methods=["PUT"]),
            Route(base + "/{id}/remove_extraroutes", self.remove_routes, methods=["PUT"]),
        ]

    def find(self, context: AuthContext, router_id: str) -> Obj:
        return self.service.find(context, kinds.ROUTERS, router_id, "RouterNotFound", "Router")

    async def list_routers(self, request: Request) -> Response:
        context = self.service.context(request)
        items = [
            view(self.service, context, r) for r in self.service.visible(context, kinds.ROUTERS)
        ]
        return json_response(query.list_body(request, "routers", items))

    async def show_router(self, request: Request) -> Response:
        context = self.service.context(request)
        router = self.find(context, request.path_params["id"])
        shown = view(self.service, context, router)
        return json_response(query.show_body(request, "router", shown))

    async def create_router(self, request: Request) -> Response:
        context = self.service.context(request)
        body = await self.service.body_of(request, "router")
        reject_unknown(body, CREATE_KEYS)
        project = self.service.owner_of_new(context, body, "create_router")
        for key in ("distributed", "ha"):
            if key in body:
                auth.require_admin(context, f"create_router:{key}")
        self.service.check_quota(project, "router")
        router_id = new_id()
        spec = stamp_new({
            "project_id": project, "name": text(body, "name"),
            "description": text(body, "description"),
            "admin_state_up": boolean(body, "admin_state_up", True), "routes": [],
            "distributed": boolean(body, "distributed", False), "ha": boolean(body, "ha", False),
            "availability_zone_hints": body.get("availability_zone_hints") or [],
            "external_gateway_info": None,
        })  # fmt: skip
        info = body.get("external_gateway_info")
        if info:
            spec["external_gateway_info"] = await self._gateway(
                context, router_id, project, info, None
            )
        router = await self.service.records.create(kinds.ROUTERS, router_id, spec)
        return json_response({"router": view(self.service, context, router)}, 201)

    async def _gateway(
        self, context: AuthContext, router_id: str, project: str, info: Any, old: Obj | None
    ) -> Obj | None:
        """The router's gateway info: its port and addresses on the external network."""
        if not info:
            await self._drop_gateway(router_id)
            return None
        if not isinstance(info, dict) or not info.get("network_id"):
            raise bad("Invalid input for external_gateway_info.")
        network = self.service.find(
            context, kinds.NETWORKS, str(info["network_id"]), "NetworkNotFound", "Network"
        )
        if not spec_of(network).get("router:external"):
            raise bad(
                f"Bad router request: Network {info['network_id']} is not an external network."
            )
        for key in ("external_fixed_ips", "enable_snat"):
            if (
                key in info
                and not context.is_admin
                and not (key == "enable_snat" and info[key] is True)
            ):
                auth.require_admin(context, f"create_router:external_gateway_info:{key}")
        snat = boolean(info, "enable_snat", True)
        if old and old.get("network_id") == info["network_id"] and "external_fixed_ips" not in info:
            return {**old, "enable_snat": snat}
        await self._drop_gateway(router_id)
        body = {"network_id": info["network_id"], "device_owner": GATEWAY, "device_id": router_id}
        if info.get("external_fixed_ips"):
            body["fixed_ips"] = info["external_fixed_ips"]
        port = await create_port(self.service, network, "", body)
        ips = [dict(ip) for ip in spec_of(port).get("fixed_ips") or []]
        return {"network_id": info["network_id"], "enable_snat": snat, "external_fixed_ips": ips}

    async def _drop_gateway(self, router_id: str) -> None:
        for port in self.service.records.indexed(kinds.PORTS, "device", router_id):
            if spec_of(port).get("device_owner") == GATEWAY:
                await self.service.release_port(port)

    async def update_router(self, request: Request) -> Response:
        context = self.service.context(request)
        router = self.find(context, request.path_params["id"])
        body = await self.service.body_of(request, "router")
        self.service.may_write(context, router, "update_router", "RouterNotFound", "Router")
        reject_unknown(body, UPDATE_KEYS)
        router_id = router["metadata"]["name"]
        changes: Obj = {k: text(body, k) for k in ("name", "description") if k in body}
        for key in ("admin_state_up", "distributed", "ha"):
            if key in body:
                changes[key] = boolean(body, key, False)
        if "routes" in body:
            changes["routes"] = self._checked_routes(router_id, body["routes"] or [])
        if "external_gateway_info" in body:
            old = spec_of(router).get("external_gateway_info")
            if not body["external_gateway_info"] and self.service.records.indexed(
                kinds.FLOATING_IPS, "network", str((old or {}).get("network_id"))
            ):
                self._gateway_in_use(router_id)
            changes["external_gateway_info"] = await self._gateway(
                context,
                router_id,
                str(spec_of(router).get("project_id")),
                body["external_gateway_info"],
                old,
            )
        updated = await self.service.revise(kinds.ROUTERS, router_id, changes)
        return json_response({"router": view(self.service, context, updated)})

    def _gateway_in_use(self, router_id: str) -> None:
        for fip in self.service.records.all(kinds.FLOATING_IPS):
            if spec_of(fip).get("router_id") == router_id:
                raise in_use(
                    "RouterExternalGatewayInUseByFloatingIp",
                    f"Gateway cannot be updated for router {router_id}, since a gateway to "
                    "external network is required by one or more floating IPs.",
                )

    def _checked_routes(self, router_id: str, routes: Any) -> list[Obj]:
        if not isinstance(routes, list):
            raise bad("Invalid input for routes.")
        cidrs = self._attached_cidrs(router_id)
        checked: list[Obj] = []
        for route in routes:
            if not isinstance(route, dict) or set(route) != {"destination", "nexthop"}:
                raise bad(f"Invalid input for routes: {route}.")
            nexthop = str(route["nexthop"])
            try:
                destination = ipam.parse_any_cidr(route["destination"])
                ipam.parse_address(nexthop)
            except ipam.IpamError as exc:
                raise bad(str(exc)) from exc
            if not any(ipam.in_subnet(nexthop, c) for c in cidrs):
                raise bad(
                    f"Invalid format for routes: {route}, the nexthop is not connected with router",
                    "InvalidRoutes",
                )
            entry = {"destination": str(destination), "nexthop": nexthop}
            if entry not in checked:
                checked.append(entry)
        return checked

    def _subnet_cidr(self, subnet_id: str) -> str:
        return str(spec_of(self.service.records.get(kinds.SUBNETS, subnet_id)).get("cidr") or "")

    def _attached_cidrs(self, router_id: str) -> list[str]:
        """The CIDRs of the subnets the router has interfaces on."""
        cidrs = [
            self._subnet_cidr(ip["subnet_id"])
            for port in interfaces(self.service, router_id)
            for ip in spec_of(port).get("fixed_ips") or []
        ]
        return [cidr for cidr in cidrs if cidr]

    async def add_routes(self, request: Request) -> Response:
        return await self._edit_routes(request, add=True)

    async def remove_routes(self, request: Request) -> Response:
        return await self._edit_routes(request, add=False)

    async def _edit_routes(self, request: Request, add: bool) -> Response:
        context = self.service.context(request)
        router = self.find(context, request.path_params["id"])
        body = await self.service.body_of(request, "router")
        self.service.may_write(context, router, "update_router", "RouterNotFound", "Router")
        router_id = router["metadata"]["name"]
        current = list(spec_of(router).get("routes") or [])
        given = (
            self._checked_routes(router_id, body.get("routes") or [])
            if add
            else body.get("routes") or []
        )
        routes = (
            current + [r for r in given if r not in current]
            if add
            else [r for r in current if r not in given]
        )
        updated = await self.service.revise(kinds.ROUTERS, router_id, {"routes": routes})
        return json_response({"router": view(self.service, context, updated)})

    async def delete_router(self, request: Request) -> Response:
        context = self.service.context(request)
        router = self.find(context, request.path_params["id"])
        self.service.may_write(context, router, "delete_router", "RouterNotFound", "Router")
        router_id = router["metadata"]["name"]
        if interfaces(self.service, router_id):
            raise in_use("RouterInUse", f"Router {router_id} still has ports")
        self._gateway_in_use(router_id)
        await self._drop_gateway(router_id)
        await self.service.records.delete(kinds.ROUTERS, router_id)
        return empty(204)

    async def add_interface(self, request: Request) -> Response:
        context = self.service.context(request)
        router = self.find(context, request.path_params["id"])
        body = await read_interface_body(request)
        self.service.may_write(context, router, "add_router_interface", "RouterNotFound", "Router")
        if body.get("port_id"):
            port = await self._adopt_port(context, router, str(body["port_id"]))
        else:
            port = await self._interface_on_subnet(context, router, str(body["subnet_id"]))
        return json_response(interface_info(router, port))

    async def _interface_on_subnet(self, context: AuthContext, router: Obj, subnet_id: str) -> Obj:
        router_id = router["metadata"]["name"]
        subnet = self.service.find(context, kinds.SUBNETS, subnet_id, "SubnetNotFound", "Subnet")
        spec = spec_of(subnet)
        if not spec.get("gateway_ip"):
            raise bad(f"Bad router request: Subnet {subnet_id} does not have a gateway IP.")
        self._no_overlap(router_id, spec["cidr"])
        network = self.service.records.require(kinds.NETWORKS, spec["network_id"])
        body = {
            "network_id": spec["network_id"], "device_owner": INTERFACE, "device_id": router_id,
            "fixed_ips": [{"subnet_id": subnet_id, "ip_address": spec["gateway_ip"]}],
        }  # fmt: skip
        return await create_port(
            self.service, network, str(spec_of(router).get("project_id")), body
        )

    def _no_overlap(self, router_id: str, cidr: str) -> None:
        clash = ipam.overlapping(ipam.parse_any_cidr(cidr), self._attached_cidrs(router_id))
        if clash:
            raise bad(
                f"Bad router request: Cidr {cidr} of subnet overlaps with cidr {clash} of a "
                "subnet already attached to the router."
            )

    async def _adopt_port(self, context: AuthContext, router: Obj, port_id: str) -> Obj:
        router_id = router["metadata"]["name"]
        port = self.service.find(context, kinds.PORTS, port_id, "PortNotFound", "Port")
        spec = spec_of(port)
        if spec.get("device_id") or spec.get("device_owner"):
            raise in_use(
                "PortInUse",
                f"Unable to complete operation on port {port_id} for network "
                f"{spec.get('network_id')}. Port already has an attached device "
                f"{spec.get('device_id')}.",
            )
        if not spec.get("fixed_ips"):
            raise bad("Bad router request: Router port must have at least one fixed IP.")
        for ip in spec["fixed_ips"]:
            self._no_overlap(router_id, self._subnet_cidr(ip["subnet_id"]))
        adopted = {"device_id": router_id, "device_owner": INTERFACE, "security_groups": []}
        return await self.service.revise(kinds.PORTS, port_id, adopted)

    async def remove_interface(self, request: Request) -> Response:
        context = self.service.context(request)
        router = self.find(context, request.path_params["id"])
        body = await read_interface_body(request, both=True)
        self.service.may_write(
            context, router, "remove_router_interface", "RouterNotFound", "Router"
        )
        router_id = router["metadata"]["name"]
        port = self._interface_port(router_id, body)
        for ip in spec_of(port).get("fixed_ips") or []:
            self._used_by_floating_ip(router_id, ip["subnet_id"])
        await self.service.release_port(port)
        return json_response(interface_info(router, port))

    def _interface_port(self, router_id: str, body: Obj) -> Obj:
        attached = interfaces(self.service, router_id)
        if body.get("port_id"):
            port = next((p for p in attached if p["metadata"]["name"] == body["port_id"]), None)
            if port is None:
                raise missing(
                    "RouterInterfaceNotFound",
                    f"Router {router_id} does not have an interface with id {body['port_id']}",
                )
            if body.get("subnet_id") and body["subnet_id"] not in [
                ip["subnet_id"] for ip in spec_of(port).get("fixed_ips") or []
            ]:
                raise in_use(
                    "SubnetMismatchForPort",
                    f"Subnet on port {body['port_id']} does not match the requested subnet "
                    f"{body['subnet_id']}.",
                )
            return port
        for port in attached:
            if body["subnet_id"] in [
                ip["subnet_id"] for ip in spec_of(port).get("fixed_ips") or []
            ]:
                return port
        raise missing(
            "RouterInterfaceNotFoundForSubnet",
            f"Router {router_id} has no interface on subnet {body['subnet_id']}",
        )

    def _used_by_floating_ip(self, router_id: str, subnet_id: str) -> None:
        for fip in self.service.records.all(kinds.FLOATING_IPS):
            fspec = spec_of(fip)
            if fspec.get("router_id") != router_id or not fspec.get("port_id"):
                continue
            port = self.service.records.get(kinds.PORTS, fspec["port_id"])
            if subnet_id in [ip["subnet_id"] for ip in spec_of(port).get("fixed_ips") or []]:
                raise in_use(
                    "RouterInterfaceInUseByFloatingIP",
                    f"Router interface for subnet {subnet_id} on router {router_id} cannot be "
                    "deleted, as it is required by one or more floating IPs.",
                )


async def read_interface_body(request: Request, both: bool = False) -> Obj:
    body = await read_json(request)
    if not body.get("port_id") and not body.get("subnet_id"):
        raise bad("Bad router request: Either subnet_id or port_id must be specified.")
    if body.get("port_id") and body.get("subnet_id") and not both:
        raise bad("Bad router request: Cannot specify both subnet-id and port-id.")
    return body


def interface_info(router: Obj, port: Obj) -> Obj:
    spec = spec_of(port)
    subnets = [ip["subnet_id"] for ip in spec.get("fixed_ips") or []]
    project = spec_of(router).get("project_id")
    return {
        "id": router["metadata"]["name"], "tenant_id": project, "project_id": project,
        "port_id": port["metadata"]["name"], "network_id": spec.get("network_id"),
        "subnet_id": subnets[0] if subnets else None, "subnet_ids": subnets,
    }  # fmt: skip
