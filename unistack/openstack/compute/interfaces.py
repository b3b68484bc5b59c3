"""Port interfaces of a server (`/servers/{id}/os-interface`), through the Networking API
(`unistack.iaas.compute.ports`), as Nova v2.1.

Attaching takes a network (a new port, optionally with a fixed IP) or an existing port,
binds it to the server's host, gives it to the guest (`ports.GuestNics`: the host's agent
plugs it into the running or stopped guest) and records it on the server (its ports and
addresses); a guest that cannot take it is a 500, the port undone, as Nova's
InterfaceAttachFailed. Detaching takes it out of the guest first, then deletes a port Nova
made and releases one it was given. The server must be
running, stopped or paused with no task under way (else 409). An interface may
carry a device `tag` (asked from 2.49, shown from 2.70), kept on the server's status.

The multinic actions up to 2.43 (`addFixedIp` / `removeFixedIp`, dispatched by
`server_actions`) go the same way: adding a fixed IP on a network attaches a new port on it;
removing an address takes it off the port that holds it, detaching that port when it was
its only one (a 400 for an address the server does not have).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.compute.ports import Networking, NicError, PlugError, Plugged
from unistack.iaas.records import status_of
from unistack.openstack.auth import AuthContext, require_member
from unistack.openstack.compute.server_requests import check_tag
from unistack.openstack.compute.service import (
    ComputeService,
    is_uuid,
    microversion,
    require_attachable,
)
from unistack.openstack.microversion import Version
from unistack.openstack.web import (
    OpenStackError,
    bad_request,
    empty,
    json_response,
    not_found,
    read_json,
)

Obj = dict[str, Any]
NET = "/network/v2.0"


def interface_view(port: Obj, version: Version, tag: str | None = None) -> Obj:
    """A port as an interface attachment; from 2.70 with its device `tag`."""
    view: Obj = {
        "port_id": port["id"],
        "net_id": port.get("network_id"),
        "mac_addr": port.get("mac_address"),
        "port_state": port.get("status") or "DOWN",
        "fixed_ips": [
            {"subnet_id": ip.get("subnet_id"), "ip_address": ip.get("ip_address")}
            for ip in port.get("fixed_ips") or []
        ],
    }
    if version.at_least("2.70"):
        view["tag"] = tag
    return view


def fixed_ip_network(body: Any) -> str:
    """`addFixedIp`'s `networkId` (a string or an integer, nothing else in the body)."""
    if not isinstance(body, dict) or set(body) != {"networkId"}:
        raise bad_request("Invalid input for field/attribute addFixedIp: networkId is required.")
    network = body["networkId"]
    if isinstance(network, bool) or not isinstance(network, str | int) or network == "":
        raise bad_request(f"Invalid input for field/attribute networkId. Value: {network}.")
    return str(network)


def fixed_ip_address(body: Any) -> str:
    """`removeFixedIp`'s `address`, an IPv4 or IPv6 address."""
    if not isinstance(body, dict) or set(body) != {"address"}:
        raise bad_request("Invalid input for field/attribute removeFixedIp: address is required.")
    address = body["address"]
    try:
        return str(ipaddress.ip_address(address if isinstance(address, str) else ""))
    except ValueError:
        raise bad_request(f"Invalid input for field/attribute address. Value: {address}.") from None


def without_address(port: Obj, address: str) -> list[Obj] | None:
    """The port's fixed IPs less `address`, or None when the port does not hold it."""
    fixed = list(port.get("fixed_ips") or [])
    kept = [ip for ip in fixed if ip.get("ip_address") != address]
    return kept if len(kept) < len(fixed) else None


def _request_item(body: Any, version: Version) -> Obj:
    if not isinstance(body, dict):
        raise bad_request("Invalid input for field/attribute interfaceAttachment.")
    allowed = {"net_id", "port_id", "fixed_ips"} | ({"tag"} if version.at_least("2.49") else set())
    for key in body:
        if key not in allowed:
            raise bad_request(
                "Invalid input for field/attribute interfaceAttachment. Additional "
                f"properties are not allowed ('{key}' was unexpected)"
            )
    if "tag" in body:
        check_tag(body["tag"])
    net_id, port_id = body.get("net_id"), body.get("port_id")
    if net_id and port_id:
        raise bad_request("Must not input both network_id and port_id")
    for value in (net_id, port_id):
        if value is not None and not is_uuid(str(value)):
            raise bad_request(f"Invalid input for field/attribute interfaceAttachment: {value}")
    item: Obj = {"port": port_id} if port_id else {"uuid": net_id}
    fixed = body.get("fixed_ips") or []
    if fixed:
        if not isinstance(fixed, list) or not isinstance(fixed[0], dict):
            raise bad_request("Invalid input for field/attribute fixed_ips.")
        item["fixed_ip"] = fixed[0].get("ip_address")
    return item


class Interfaces:
    def __init__(self, service: ComputeService) -> None:
        self.service = service
        self.networking = Networking(service.caller)

    def routes(self) -> list[Route]:
        base = "/v2.1/servers/{server_id}/os-interface"
        return [
            Route(base, self.list_interfaces, methods=["GET"]),
            Route(base, self.attach_interface, methods=["POST"]),
            Route(f"{base}/{{port_id}}", self.show_interface, methods=["GET"]),
            Route(f"{base}/{{port_id}}", self.detach_interface, methods=["DELETE"]),
        ]

    async def _port(self, port_id: str) -> Obj | None:
        status, body = await self.service.caller.call("GET", f"{NET}/ports/{port_id}")
        return body["port"] if status == 200 else None

    def _attached(self, server: Obj, port_id: str) -> None:
        if port_id not in (status_of(server).get("ports") or []):
            raise not_found(f"Port {port_id} is not attached")

    async def list_interfaces(self, request: Request) -> Response:
        _, server = self.service.server_of(request)
        ports = [await self._port(str(p)) for p in status_of(server).get("ports") or []]
        tags, version = status_of(server).get("port_tags") or {}, microversion(request)
        items = [interface_view(p, version, tags.get(p["id"])) for p in ports if p is not None]
        return json_response({"interfaceAttachments": items})

    async def show_interface(self, request: Request) -> Response:
        _, server = self.service.server_of(request)
        port_id = request.path_params["port_id"]
        self._attached(server, port_id)
        port = await self._port(port_id)
        if port is None:
            raise not_found(f"Port {port_id} could not be found.")
        tag = (status_of(server).get("port_tags") or {}).get(port_id)
        return json_response(
            {"interfaceAttachment": interface_view(port, microversion(request), tag)}
        )

    async def attach_interface(self, request: Request) -> Response:
        context, server = self.service.server_of(request)
        require_member(context, "os_compute_api:os-attach-interfaces:create")
        version = microversion(request)
        body = (await read_json(request)).get("interfaceAttachment")
        item = _request_item(body, version)
        require_attachable(context, server, "attach_interface")
        plugged = Plugged()
        host = str(status_of(server).get("host") or "")
        try:
            await self.networking.plug_one(server, host, item, plugged)
        except PlugError as exc:
            raise bad_request(f"Failed to attach network adapter device: {exc}") from exc
        port_id = plugged.ports[0]
        await self._into_guest(server, host, port_id, plugged)
        await self.service.record_action(request, context, server, "attach_interface", done=True)
        tag = body.get("tag") if isinstance(body, dict) else None
        await self._record(server, add=port_id, created=bool(plugged.created), tag=tag)
        port = await self._port(port_id)
        view = interface_view(port or {"id": port_id}, version, tag)
        return json_response({"interfaceAttachment": view})

    async def detach_interface(self, request: Request) -> Response:
        context, server = self.service.server_of(request)
        require_member(context, "os_compute_api:os-attach-interfaces:delete")
        port_id = request.path_params["port_id"]
        self._attached(server, port_id)
        require_attachable(context, server, "detach_interface")
        await self._out_of_guest(server, port_id)
        created = status_of(server).get("created_ports") or []
        await self.networking.unplug([port_id], [p for p in created if p == port_id])
        await self.service.record_action(request, context, server, "detach_interface", done=True)
        await self._record(server, remove=port_id)
        return empty(202)

    async def _into_guest(self, server: Obj, host: str, port_id: str, plugged: Plugged) -> None:
        """The bound port into the server's guest; when it cannot go, the port is undone
        and the answer is Nova's InterfaceAttachFailed (500)."""
        guest = self.service.guest_nics
        if guest is None:
            return
        server_id = server["metadata"]["name"]
        try:
            await guest.attach_interface(server_id, host, port_id)
        except NicError as exc:
            await self.networking.unplug([port_id], plugged.created)
            message = f"Failed to attach network adapter device to {server_id}: {exc}"
            raise OpenStackError(500, message) from exc

    async def _out_of_guest(self, server: Obj, port_id: str) -> None:
        guest = self.service.guest_nics
        if guest is None:
            return
        server_id = server["metadata"]["name"]
        try:
            await guest.detach_interface(server_id, port_id)
        except NicError as exc:
            message = f"Failed to detach network adapter device from {server_id}: {exc}"
            raise OpenStackError(500, message) from exc

    # --- multinic (up to 2.43) --------------------------------------------------------

    async def add_fixed_ip(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        """`addFixedIp`: one more fixed IP, from a subnet of `networkId`, on the server's port
        on that network, as Nova's `add_fixed_ip_to_instance` does; 400 when the server has
        no port there."""
        require_member(context, "os_compute_api:os-multinic:add")
        network_id = fixed_ip_network(body)
        require_attachable(context, server, "addFixedIp")
        port = await self._port_on(server, network_id)
        if port is None:
            raise bad_request(f"Network {network_id} could not be found for instance.")
        status, subnets = await self.service.caller.call(
            "GET", f"{NET}/subnets", params={"network_id": network_id}
        )
        if status != 200 or not subnets.get("subnets"):
            raise bad_request(f"Network {network_id} has no subnet to take a fixed IP from.")
        await self.service.record_action(request, context, server, "addFixedIp")
        wanted = [*port["fixed_ips"], {"subnet_id": subnets["subnets"][0]["id"]}]
        await self._set_fixed_ips(port["id"], wanted, f"Adding a fixed IP on network {network_id}")
        await self._record(server)
        return empty(202)

    async def _set_fixed_ips(self, port_id: str, fixed_ips: list[Obj], doing: str) -> None:
        change = {"port": {"fixed_ips": fixed_ips}}
        status, answer = await self.service.caller.call("PUT", f"{NET}/ports/{port_id}", change)
        if status != 200:
            raise bad_request(f"{doing} failed: {answer}")

    async def _port_on(self, server: Obj, network_id: str) -> Obj | None:
        for port_id in status_of(server).get("ports") or []:
            port = await self._port(str(port_id))
            if port is not None and port.get("network_id") == network_id:
                return port
        return None

    async def remove_fixed_ip(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        """`removeFixedIp`: the address off the server's port that holds it; a port left
        with no address is detached (deleted when Nova made it)."""
        require_member(context, "os_compute_api:os-multinic:remove")
        address = fixed_ip_address(body)
        require_attachable(context, server, "removeFixedIp")
        port, kept = await self._holder(server, address)
        await self.service.record_action(request, context, server, "removeFixedIp")
        if kept:
            await self._set_fixed_ips(port, kept, f"Removing fixed IP {address}")
            await self._record(server)
            return empty(202)
        await self._out_of_guest(server, port)
        created = status_of(server).get("created_ports") or []
        await self.networking.unplug([port], [p for p in created if p == port])
        await self._record(server, remove=port)
        return empty(202)

    async def _holder(self, server: Obj, address: str) -> tuple[str, list[Obj]]:
        """The server's port holding `address` and the fixed IPs it keeps without it."""
        for port_id in status_of(server).get("ports") or []:
            port = await self._port(str(port_id))
            kept = without_address(port, address) if port else None
            if kept is not None:
                return str(port_id), kept
        server_id = server["metadata"]["name"]
        raise bad_request(f"Instance {server_id} does not have fixed IP '{address}'.")

    async def _record(
        self,
        server: Obj,
        add: str = "",
        created: bool = False,
        remove: str = "",
        tag: str | None = None,
    ) -> None:
        status = status_of(server)
        tags = {p: t for p, t in (status.get("port_tags") or {}).items() if p != remove}
        if add and tag:
            tags[add] = tag
        ports = [p for p in status.get("ports") or [] if p != remove] + ([add] if add else [])
        made = [p for p in status.get("created_ports") or [] if p != remove]
        made += [add] if add and created else []
        addresses = await self.networking.addresses(ports)
        await self.service.set_status(
            server, ports=ports, created_ports=made, addresses=addresses, port_tags=tags
        )
