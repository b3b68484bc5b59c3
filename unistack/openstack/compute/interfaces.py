"""Port interfaces of a server (`/servers/{id}/os-interface`), through the Networking API
(`unistack.iaas.compute.ports`), as Nova v2.1.

Attaching takes a network (a new port, optionally with a fixed IP) or an existing port,
binds it to the server's host and records it on the server (its ports and addresses);
detaching deletes a port Nova made and releases one it was given. The server must be
running, stopped, paused or suspended with no task under way (else 409). An interface may
carry a device `tag` (asked from 2.49, shown from 2.70), kept on the server's status.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.compute.ports import Networking, PlugError, Plugged
from unistack.iaas.records import status_of
from unistack.openstack.auth import require_member
from unistack.openstack.compute.server_requests import check_tag
from unistack.openstack.compute.service import (
    ComputeService,
    is_uuid,
    microversion,
    require_attachable,
)
from unistack.openstack.microversion import Version
from unistack.openstack.web import bad_request, empty, json_response, not_found, read_json

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
        await self.service.record_action(request, context, server, "attach_interface")
        port_id = plugged.ports[0]
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
        created = status_of(server).get("created_ports") or []
        await self.networking.unplug([port_id], [p for p in created if p == port_id])
        await self.service.record_action(request, context, server, "detach_interface")
        await self._record(server, remove=port_id)
        return empty(202)

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
