"""Ports: `/v2.0/ports` — addresses from the network's subnets (asked for or the next free),
a unique `fa:16:3e` MAC, device and binding attributes (binding is admin's: Nova binds a
port to a host with `binding:host_id`), allowed address pairs, port security and security
groups (the project's `default` group unless told otherwise). Deleting a port frees its
addresses; router interface ports are removed through the router.
"""

from __future__ import annotations

import functools
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.network import ipam, kinds, macs
from unistack.iaas.network.stamps import stamp_new
from unistack.iaas.records import Obj, spec_of
from unistack.openstack import auth
from unistack.openstack.auth import AuthContext
from unistack.openstack.network import fixed_ips, query, security_groups
from unistack.openstack.network.service import (
    NetworkService,
    bad,
    boolean,
    create_one_or_many,
    in_use,
    missing,
    new_id,
    reject_read_only,
    reject_unknown,
    requested_tags,
    standard,
    text,
)
from unistack.openstack.web import empty, json_response

BINDING = ("binding:host_id", "binding:profile")
UPDATE_KEYS = {
    "name", "description", "admin_state_up", "fixed_ips", "device_id", "device_owner",
    "binding:host_id", "binding:profile", "binding:vnic_type", "allowed_address_pairs",
    "security_groups", "port_security_enabled", "mac_address", "extra_dhcp_opts", "dns_name",
    "qos_policy_id", "propagate_uplink_status",
}  # fmt: skip
CREATE_KEYS = UPDATE_KEYS | {"network_id", "project_id", "tenant_id", "tags"}
ROUTER_OWNERS = ("network:router_interface", "network:router_gateway", "network:floatingip")
VNIC_TYPES = ("normal", "direct", "macvtap", "baremetal", "direct-physical", "virtio-forwarder")


def status_of(spec: Obj) -> str:
    if not spec.get("admin_state_up", True):
        return "DOWN"
    if spec.get("binding:host_id") or (
        spec.get("device_id") and str(spec.get("device_owner", "")).startswith("network:")
    ):
        return "ACTIVE"
    return "DOWN"


def view(context: AuthContext, obj: Obj) -> Obj:
    spec = spec_of(obj)
    shown = standard(obj)
    shown.update(
        network_id=spec.get("network_id"),
        mac_address=spec.get("mac_address"),
        admin_state_up=spec.get("admin_state_up", True),
        status=status_of(spec),
        device_id=spec.get("device_id", ""),
        device_owner=spec.get("device_owner", ""),
        fixed_ips=spec.get("fixed_ips", []),
        allowed_address_pairs=spec.get("allowed_address_pairs", []),
        extra_dhcp_opts=spec.get("extra_dhcp_opts", []),
        security_groups=spec.get("security_groups", []),
        port_security_enabled=spec.get("port_security_enabled", True),
        dns_name=spec.get("dns_name", ""),
        dns_assignment=[],
        qos_policy_id=spec.get("qos_policy_id"),
        qos_network_policy_id=None,
        propagate_uplink_status=spec.get("propagate_uplink_status", False),
        ip_allocation="immediate",
        resource_request=None,
    )
    shown["binding:vnic_type"] = spec.get("binding:vnic_type", "normal")
    if context.is_admin:
        host = spec.get("binding:host_id", "")
        shown["binding:host_id"] = host
        shown["binding:profile"] = spec.get("binding:profile", {})
        shown["binding:vif_type"] = "bridge" if host else "unbound"
        shown["binding:vif_details"] = {"port_filter": True} if host else {}
    return shown


def _pairs(value: Any) -> list[Obj]:
    if not isinstance(value, list):
        raise bad("Invalid input for allowed_address_pairs: not a list.")
    pairs: list[Obj] = []
    for pair in value:
        if (
            not isinstance(pair, dict)
            or "ip_address" not in pair
            or set(pair) - {"ip_address", "mac_address"}
        ):
            raise bad(f"Invalid input for allowed_address_pairs: {pair} is not valid.")
        address = str(pair["ip_address"])
        try:
            if "/" in address:
                ipam.parse_any_cidr(address)
            else:
                ipam.parse_address(address)
        except ipam.IpamError as exc:
            raise bad(f"Invalid input for allowed_address_pairs: {exc}") from exc
        if "mac_address" in pair and not macs.valid_mac(pair["mac_address"]):
            raise bad(
                f"Invalid input for allowed_address_pairs: bad mac_address {pair['mac_address']}."
            )
        pairs.append(dict(pair))
    return pairs


class Ports:
    def __init__(self, service: NetworkService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        return [
            Route("/v2.0/ports", self.list_ports, methods=["GET"]),
            Route("/v2.0/ports", self.create_ports, methods=["POST"]),
            Route("/v2.0/ports/{id}", self.show_port, methods=["GET"]),
            Route("/v2.0/ports/{id}", self.update_port, methods=["PUT"]),
            Route("/v2.0/ports/{id}", self.delete_port, methods=["DELETE"]),
        ]

    def find(self, context: AuthContext, port_id: str) -> Obj:
        return self.service.find(context, kinds.PORTS, port_id, "PortNotFound", "Port")

    async def list_ports(self, request: Request) -> Response:
        context = self.service.context(request)
        items = [view(context, p) for p in self.service.visible(context, kinds.PORTS)]
        return json_response(query.list_body(request, "ports", items))

    async def show_port(self, request: Request) -> Response:
        context = self.service.context(request)
        port = self.find(context, request.path_params["id"])
        return json_response(query.show_body(request, "port", view(context, port)))

    async def create_ports(self, request: Request) -> Response:
        context = self.service.context(request)
        return await create_one_or_many(
            request,
            "port",
            "ports",
            functools.partial(self.create_one, context),
            functools.partial(view, context),
        )

    async def create_one(self, context: AuthContext, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise bad("Invalid port body.")
        reject_unknown(body, CREATE_KEYS)
        if not body.get("network_id"):
            raise bad("Invalid input for network_id. Reason: network_id is required.")
        network = self.service.find(
            context, kinds.NETWORKS, str(body["network_id"]), "NetworkNotFound", "Network"
        )
        project = self.service.owner_of_new(context, body, "create_port")
        for key in BINDING:
            if body.get(key):
                auth.require_admin(context, f"create_port:{key}")
        self.service.check_quota(project, "port")
        return await create_port(self.service, network, project, body)

    async def update_port(self, request: Request) -> Response:
        context = self.service.context(request)
        port = self.find(context, request.path_params["id"])
        body = await self.service.body_of(request, "port")
        self.service.may_write(context, port, "update_port", "PortNotFound", "Port")
        reject_read_only(body, UPDATE_KEYS, CREATE_KEYS)
        for key in BINDING:
            if key in body:
                auth.require_admin(context, f"update_port:{key}")
        changes = await self._changes(port, body)
        updated = await self.service.revise(kinds.PORTS, port["metadata"]["name"], changes)
        return json_response({"port": view(context, updated)})

    async def _changes(self, port: Obj, body: Obj) -> Obj:
        spec = spec_of(port)
        changes = plain_attributes(body)
        if "mac_address" in body and body["mac_address"] != spec.get("mac_address"):
            if spec.get("binding:host_id"):
                raise in_use(
                    "PortBound", "Unable to complete operation on port, port is already bound."
                )
            changes["mac_address"] = checked_mac(self.service, body["mac_address"])
        merged = {**spec, **changes}
        changes.update(security(self.service, merged, body, updating=True))
        if "fixed_ips" in body:
            network = self.service.records.require(kinds.NETWORKS, spec["network_id"])
            changes["fixed_ips"] = await fixed_ips.reallocate(
                self.service, network, port, body["fixed_ips"]
            )
        return changes

    async def delete_port(self, request: Request) -> Response:
        context = self.service.context(request)
        port = self.find(context, request.path_params["id"])
        self.service.may_write(context, port, "delete_port", "PortNotFound", "Port")
        owner = spec_of(port).get("device_owner", "")
        if owner == "network:router_interface" and not context.is_admin:
            raise in_use(
                "L3PortInUse",
                f"Port {port['metadata']['name']} cannot be deleted directly via the port API: "
                f"has device owner {owner}.",
            )
        await self.service.release_port(port)
        return empty(204)


def plain_attributes(body: Obj) -> Obj:
    changes: Obj = {}
    for key in ("name", "description", "device_id", "device_owner", "binding:host_id", "dns_name"):
        if key in body:
            changes[key] = text(body, key)
    if "admin_state_up" in body:
        changes["admin_state_up"] = boolean(body, "admin_state_up", True)
    if "propagate_uplink_status" in body:
        changes["propagate_uplink_status"] = boolean(body, "propagate_uplink_status", False)
    if "binding:profile" in body:
        if not isinstance(body["binding:profile"], dict | None):
            raise bad("Invalid input for binding:profile.")
        changes["binding:profile"] = body["binding:profile"] or {}
    if "binding:vnic_type" in body:
        if body["binding:vnic_type"] not in VNIC_TYPES:
            raise bad(f"Invalid input for binding:vnic_type: '{body['binding:vnic_type']}'.")
        changes["binding:vnic_type"] = body["binding:vnic_type"]
    if "extra_dhcp_opts" in body:
        changes["extra_dhcp_opts"] = body["extra_dhcp_opts"] or []
    if "qos_policy_id" in body:
        changes["qos_policy_id"] = body["qos_policy_id"]
    return changes


def checked_mac(service: NetworkService, mac: Any) -> str:
    if not macs.valid_mac(mac):
        raise bad(f"Invalid input for mac_address. Reason: '{mac}' is not a valid MAC address.")
    mac = str(mac).lower()
    if service.records.indexed(kinds.PORTS, "mac", mac):
        raise in_use(
            "MacAddressInUse",
            f"Unable to complete operation for network. The mac address {mac} is in use.",
        )
    return mac


def security(service: NetworkService, merged: Obj, body: Obj, updating: bool) -> Obj:
    """port_security_enabled, security_groups and allowed_address_pairs, consistent."""
    changes: Obj = {}
    enabled = boolean(body, "port_security_enabled", merged.get("port_security_enabled", True))
    changes["port_security_enabled"] = enabled
    if "security_groups" in body:
        groups = body["security_groups"] or []
        if not isinstance(groups, list):
            raise bad("Invalid input for security_groups.")
        for group_id in groups:
            found = service.records.get(kinds.SECURITY_GROUPS, str(group_id))
            if found is None or spec_of(found).get("project_id") != merged.get("project_id"):
                raise missing("SecurityGroupNotFound", f"Security group {group_id} does not exist")
        changes["security_groups"] = list(dict.fromkeys(str(g) for g in groups))
    if "allowed_address_pairs" in body:
        changes["allowed_address_pairs"] = _pairs(body["allowed_address_pairs"] or [])
    final = {**merged, **changes}
    if not enabled and final.get("security_groups"):
        if "security_groups" in body or not updating:
            raise bad(
                "Port has security group associated. Cannot disable port security or ip address "
                "until security group is removed",
                "PortSecurityAndIPRequiredForSecurityGroups",
            )
        raise in_use(
            "PortSecurityPortHasSecurityGroup",
            "Port has security group associated. Cannot disable port security or ip address until "
            "security group is removed",
        )
    if not enabled and final.get("allowed_address_pairs"):
        raise in_use(
            "AddressPairAndPortSecurityRequired",
            "Port Security must be enabled in order to have allowed address pairs on a port.",
        )
    return changes


async def create_port(service: NetworkService, network: Obj, project: str, body: Obj) -> Obj:
    """A port on `network` for `project`: its MAC, addresses and security groups."""
    network_spec = spec_of(network)
    port_id = new_id()
    owner = text(body, "device_owner")
    spec: Obj = {"project_id": project, "network_id": network["metadata"]["name"]}
    spec.update(name="", description="", admin_state_up=True, device_id="", device_owner="")
    spec.update(allowed_address_pairs=[], security_groups=[])
    spec.update(plain_attributes(body))
    spec["tags"] = requested_tags(body)
    if "mac_address" in body:
        spec["mac_address"] = checked_mac(service, body["mac_address"])
    else:
        spec["mac_address"] = macs.unique_mac(
            lambda m: bool(service.records.indexed(kinds.PORTS, "mac", m))
        )
    merged = {**spec, "port_security_enabled": network_spec.get("port_security_enabled", True)}
    spec.update(security(service, merged, body, updating=False))
    if (
        "security_groups" not in body
        and spec["port_security_enabled"]
        and not owner.startswith("network:")
    ):
        spec["security_groups"] = [await security_groups.ensure_default(service, project)]
    requested = body.get("fixed_ips")
    spec["fixed_ips"] = await fixed_ips.allocate(
        service, network, port_id, requested, spec["mac_address"]
    )
    try:
        return await service.records.create(kinds.PORTS, port_id, stamp_new(spec))
    except Exception:
        pairs = [(ip["subnet_id"], ip["ip_address"]) for ip in spec["fixed_ips"]]
        await service.allocator.release_all(pairs)
        raise
