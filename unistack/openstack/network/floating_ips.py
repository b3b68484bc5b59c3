"""Floating IPs: `/v2.0/floatingips` — an address taken on an external network's subnet,
associated with a port's fixed IP when a router joins the port's subnet to that external
network (else 404 ExternalGatewayForFloatingIPNotFound), and given back on delete. A list
filtered by ports (`port_id`, as the compute API asks for a server's) or by one project reads
them by index instead of scanning every floating IP.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.network import ipam, kinds
from unistack.iaas.network.allocations import AddressInUse, Exhausted
from unistack.iaas.network.stamps import stamp_new
from unistack.iaas.records import Obj, spec_of
from unistack.openstack import auth
from unistack.openstack.auth import AuthContext
from unistack.openstack.network import query, routers
from unistack.openstack.network.service import (
    NetworkService,
    bad,
    in_use,
    missing,
    new_id,
    reject_unknown,
    requested_tags,
    standard,
    text,
)
from unistack.openstack.web import empty, json_response

CREATE_KEYS = {
    "floating_network_id", "floating_ip_address", "subnet_id", "port_id", "fixed_ip_address",
    "description", "project_id", "tenant_id", "tags", "dns_name", "dns_domain", "qos_policy_id",
}  # fmt: skip
UPDATE_KEYS = {"port_id", "fixed_ip_address", "description", "qos_policy_id"}


def view(obj: Obj) -> Obj:
    spec = spec_of(obj)
    shown = {k: v for k, v in standard(obj).items() if k != "name"}
    shown.update(
        floating_ip_address=spec.get("floating_ip_address"),
        floating_network_id=spec.get("floating_network_id"),
        router_id=spec.get("router_id"),
        port_id=spec.get("port_id"),
        fixed_ip_address=spec.get("fixed_ip_address"),
        status="ACTIVE" if spec.get("port_id") else "DOWN",
        qos_policy_id=spec.get("qos_policy_id"),
        port_forwardings=[],
    )
    return shown


class FloatingIps:
    def __init__(self, service: NetworkService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        base = "/v2.0/floatingips"
        return [
            Route(base, self.list_floating_ips, methods=["GET"]),
            Route(base, self.create_floating_ip, methods=["POST"]),
            Route(base + "/{id}", self.show_floating_ip, methods=["GET"]),
            Route(base + "/{id}", self.update_floating_ip, methods=["PUT"]),
            Route(base + "/{id}", self.delete_floating_ip, methods=["DELETE"]),
        ]

    def find(self, context: AuthContext, fip_id: str) -> Obj:
        return self.service.find(
            context, kinds.FLOATING_IPS, fip_id, "FloatingIPNotFound", "Floating IP"
        )

    async def list_floating_ips(self, request: Request) -> Response:
        context = self.service.context(request)
        items = [view(f) for f in self._candidates(context, request)]
        return json_response(query.list_body(request, "floatingips", items))

    def _candidates(self, context: AuthContext, request: Request) -> list[Obj]:
        """What a list may show: the floating IPs of the ports or the project the query
        names, read by index (Nova asks for a server's), else all; the ones the caller sees.
        The query's filters still apply to them."""
        records, params = self.service.records, request.query_params
        ports = set(params.getlist("port_id"))
        projects = set(params.getlist("project_id"))
        if ports and all(ports):
            found = [f for p in ports for f in records.indexed(kinds.FLOATING_IPS, "port", p)]
        elif len(projects) == 1 and all(projects):
            found = records.of_project(kinds.FLOATING_IPS, projects.pop())
        else:
            return self.service.visible(context, kinds.FLOATING_IPS)
        return [
            fip
            for fip in found
            if self.service.sees(context, kinds.FLOATING_IPS, fip)
            and not fip["metadata"].get("deletionTimestamp")
        ]

    async def show_floating_ip(self, request: Request) -> Response:
        fip = self.find(self.service.context(request), request.path_params["id"])
        return json_response(query.show_body(request, "floatingip", view(fip)))

    async def create_floating_ip(self, request: Request) -> Response:
        context = self.service.context(request)
        body = await self.service.body_of(request, "floatingip")
        reject_unknown(body, CREATE_KEYS)
        project = self.service.owner_of_new(context, body, "create_floatingip")
        if not body.get("floating_network_id"):
            raise bad("Invalid input for floating_network_id. Reason: it is required.")
        network = self.service.find(
            context, kinds.NETWORKS, str(body["floating_network_id"]), "NetworkNotFound", "Network"
        )
        if not spec_of(network).get("router:external"):
            raise bad(
                f"Bad floatingip request: Network {body['floating_network_id']} is not a valid "
                "external network."
            )
        if body.get("floating_ip_address"):
            auth.require_admin(context, "create_floatingip:floating_ip_address")
        self.service.check_quota(project, "floatingip")
        fip_id = new_id()
        subnet, address = await self._take_address(network, fip_id, body)
        spec = stamp_new({
            "project_id": project, "description": text(body, "description"),
            "floating_network_id": network["metadata"]["name"], "floating_ip_address": address,
            "subnet_id": subnet, "port_id": None, "fixed_ip_address": None, "router_id": None,
            "tags": requested_tags(body),
        })  # fmt: skip
        try:
            if body.get("port_id"):
                spec.update(self._association(context, spec, body))
            fip = await self.service.records.create(kinds.FLOATING_IPS, fip_id, spec)
        except BaseException:
            await self.service.allocator.release_address(subnet, address)
            raise
        return json_response({"floatingip": view(fip)}, 201)

    async def _take_address(self, network: Obj, owner: str, body: Obj) -> tuple[str, str]:
        network_id = network["metadata"]["name"]
        subnets = [
            s
            for s in self.service.records.indexed(kinds.SUBNETS, "network", network_id)
            if spec_of(s).get("ip_version") == 4
        ]
        wanted = body.get("floating_ip_address")
        if body.get("subnet_id"):
            subnets = [s for s in subnets if s["metadata"]["name"] == body["subnet_id"]]
            if not subnets:
                raise bad(
                    f"Invalid input for operation: Failed to create port on network {network_id}, "
                    f"because fixed_ips included invalid subnet {body['subnet_id']}."
                )
        if wanted:
            subnets = [s for s in subnets if ipam.in_subnet(str(wanted), spec_of(s)["cidr"])]
            if not subnets:
                raise bad(
                    f"Invalid input for operation: IP address {wanted} is not a valid IP for any "
                    "of the subnets on the specified network."
                )
        for subnet in subnets:
            try:
                return subnet["metadata"]["name"], await self.service.allocator.take_address(
                    subnet, owner, wanted
                )
            except AddressInUse as exc:
                raise in_use(
                    "IpAddressInUse",
                    f"Unable to complete operation for network {network_id}. The IP address "
                    f"{wanted} is in use.",
                ) from exc
            except Exhausted:
                continue
        raise in_use(
            "IpAddressGenerationFailure", f"No more IP addresses available on network {network_id}."
        )

    def _association(self, context: AuthContext, fip: Obj, body: Obj) -> Obj:
        """port_id, fixed_ip_address and router_id for an association (or None for none)."""
        port_id = body.get("port_id")
        if not port_id:
            return {"port_id": None, "fixed_ip_address": None, "router_id": None}
        port = self.service.records.get(kinds.PORTS, str(port_id))
        if port is None or (
            spec_of(port).get("project_id") != fip["project_id"] and not context.is_admin
        ):
            raise missing("PortNotFound", f"Port {port_id} could not be found.")
        fixed = self._fixed_ip(port, body.get("fixed_ip_address"))
        router_id = self._router_for(fip["floating_network_id"], fixed, port)
        for other in self.service.records.indexed(kinds.FLOATING_IPS, "port", str(port_id)):
            if spec_of(other).get("fixed_ip_address") == fixed["ip_address"] and other["metadata"][
                "name"
            ] != fip.get("id"):
                raise in_use(
                    "FloatingIPPortAlreadyAssociated",
                    f"Cannot associate floating IP {fip['floating_ip_address']} ({fip.get('id')}) "
                    f"with port {port_id} using fixed IP {fixed['ip_address']}, as that fixed IP "
                    f"already has a floating IP on external network {fip['floating_network_id']}.",
                )
        return {
            "port_id": str(port_id),
            "fixed_ip_address": fixed["ip_address"],
            "router_id": router_id,
        }

    def _fixed_ip(self, port: Obj, wanted: Any) -> Obj:
        ips = [ip for ip in spec_of(port).get("fixed_ips") or [] if ":" not in ip["ip_address"]]
        port_id = port["metadata"]["name"]
        if wanted:
            ips = [ip for ip in ips if ip["ip_address"] == wanted]
            if not ips:
                raise bad(
                    f"Bad floatingip request: Port {port_id} does not have fixed ip {wanted}."
                )
        if not ips:
            raise bad(f"Bad floatingip request: Port {port_id} does not have any IPv4 fixed IPs.")
        if len(ips) > 1 and not wanted:
            raise bad(
                f"Bad floatingip request: Port {port_id} has multiple fixed IPv4 addresses. Must "
                "provide a specific IPv4 address when assigning a floating IP."
            )
        return dict(ips[0])

    def _router_for(self, external_id: str, fixed: Obj, port: Obj) -> str:
        for router in self.service.records.all(kinds.ROUTERS):
            gateway = spec_of(router).get("external_gateway_info") or {}
            if gateway.get("network_id") != external_id:
                continue
            router_id = router["metadata"]["name"]
            for interface in routers.interfaces(self.service, router_id):
                if fixed["subnet_id"] in [
                    ip["subnet_id"] for ip in spec_of(interface).get("fixed_ips") or []
                ]:
                    return router_id
        raise missing(
            "ExternalGatewayForFloatingIPNotFound",
            f"External network {external_id} is not reachable from subnet {fixed['subnet_id']}.  "
            f"Therefore, cannot associate Port {port['metadata']['name']} with a Floating IP.",
        )

    async def update_floating_ip(self, request: Request) -> Response:
        context = self.service.context(request)
        fip = self.find(context, request.path_params["id"])
        body = await self.service.body_of(request, "floatingip")
        self.service.may_write(
            context, fip, "update_floatingip", "FloatingIPNotFound", "Floating IP"
        )
        reject_unknown(body, UPDATE_KEYS)
        changes: Obj = {}
        if "description" in body:
            changes["description"] = text(body, "description")
        if "port_id" in body:
            current = {**spec_of(fip), "id": fip["metadata"]["name"]}
            changes.update(self._association(context, current, body))
        updated = await self.service.revise(kinds.FLOATING_IPS, fip["metadata"]["name"], changes)
        return json_response({"floatingip": view(updated)})

    async def delete_floating_ip(self, request: Request) -> Response:
        context = self.service.context(request)
        fip = self.find(context, request.path_params["id"])
        self.service.may_write(
            context, fip, "delete_floatingip", "FloatingIPNotFound", "Floating IP"
        )
        await self.service.release_floating_ip(fip)
        return empty(204)
