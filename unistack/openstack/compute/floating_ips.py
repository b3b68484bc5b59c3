"""Floating IPs through the compute API (`/os-floating-ips`, `/os-floating-ip-pools`, and the
`addFloatingIp` / `removeFloatingIp` actions), answered by the Networking API with the
caller's token, as Nova's Neutron proxy does (up to 2.35).

A pool is an external network, named; allocating without a pool takes the first one.
Associating finds the server's port (the one with `fixed_address`, or the first) and
points the floating IP at it; an address the project does not hold is a 404.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.records import status_of
from unistack.openstack.auth import AuthContext
from unistack.openstack.compute.service import ComputeService
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


class FloatingIps:
    def __init__(self, service: ComputeService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        base = "/v2.1/os-floating-ips"
        return [
            Route(base, self.list_floating_ips, methods=["GET"]),
            Route(base, self.allocate, methods=["POST"]),
            Route(f"{base}/{{fip_id}}", self.show_floating_ip, methods=["GET"]),
            Route(f"{base}/{{fip_id}}", self.release, methods=["DELETE"]),
            Route("/v2.1/os-floating-ip-pools", self.list_pools, methods=["GET"]),
        ]

    async def neutron(
        self, request: Request, method: str, path: str, body: Any = None, **params: str
    ) -> tuple[int, Any]:
        return await self.service.call_as(
            request, method, f"{NET}{path}", body, params=params or None
        )

    async def _pools(self, request: Request) -> list[Obj]:
        status, body = await self.neutron(
            request, "GET", "/networks", **{"router:external": "true"}
        )
        return list(body.get("networks", [])) if status == 200 else []

    async def view(self, request: Request, fip: Obj, pools: list[Obj] | None = None) -> Obj:
        pools = pools if pools is not None else await self._pools(request)
        names = {n["id"]: n.get("name") for n in pools}
        instance_id = None
        if fip.get("port_id"):
            status, body = await self.neutron(request, "GET", f"/ports/{fip['port_id']}")
            if status == 200:
                instance_id = body["port"].get("device_id") or None
        return {
            "id": fip["id"],
            "ip": fip.get("floating_ip_address"),
            "fixed_ip": fip.get("fixed_ip_address"),
            "pool": names.get(fip.get("floating_network_id")),
            "instance_id": instance_id,
        }

    async def _fip(self, request: Request, fip_id: str) -> Obj:
        status, body = await self.neutron(request, "GET", f"/floatingips/{fip_id}")
        if status != 200:
            raise not_found(f"Floating IP not found for ID {fip_id}")
        fip: Obj = body["floatingip"]
        return fip

    async def list_floating_ips(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        status, body = await self.neutron(
            request, "GET", "/floatingips", project_id=context.project_id or ""
        )
        pools = await self._pools(request)
        fips = body.get("floatingips", []) if status == 200 else []
        return json_response({"floating_ips": [await self.view(request, f, pools) for f in fips]})

    async def show_floating_ip(self, request: Request) -> Response:
        self.service.authenticate(request)
        fip = await self._fip(request, request.path_params["fip_id"])
        return json_response({"floating_ip": await self.view(request, fip)})

    async def allocate(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        body = await read_json(request) if request.headers.get("content-length") != "0" else {}
        pool = body.get("pool")
        pools = await self._pools(request)
        chosen = [p for p in pools if pool is None or p.get("name") == pool or p["id"] == pool]
        if not chosen:
            raise not_found(f"Floating IP pool not found: {pool}")
        wanted = {"floating_network_id": chosen[0]["id"], "project_id": context.project_id}
        status, answer = await self.neutron(request, "POST", "/floatingips", {"floatingip": wanted})
        if status != 201:
            raise OpenStackError(
                400 if status < 500 else 500, f"No more floating IPs in pool {pool}."
            )
        return json_response({"floating_ip": await self.view(request, answer["floatingip"], pools)})

    async def release(self, request: Request) -> Response:
        self.service.authenticate(request)
        fip_id = request.path_params["fip_id"]
        status, _ = await self.neutron(request, "DELETE", f"/floatingips/{fip_id}")
        if status == 404:
            raise not_found(f"Floating IP not found for ID {fip_id}")
        return empty(202)

    async def list_pools(self, request: Request) -> Response:
        self.service.authenticate(request)
        pools = [{"name": p.get("name")} for p in await self._pools(request)]
        return json_response({"floating_ip_pools": pools})

    # --- the server actions ---------------------------------------------------------------

    async def _by_address(self, request: Request, context: AuthContext, address: Any) -> Obj:
        if not isinstance(address, str) or not address:
            raise bad_request("Invalid input for field/attribute address.")
        status, body = await self.neutron(
            request, "GET", "/floatingips", floating_ip_address=address
        )
        found = body.get("floatingips", []) if status == 200 else []
        if not found:
            raise not_found(f"floating IP {address} not found")
        fip: Obj = found[0]
        return fip

    async def associate(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        body = body if isinstance(body, dict) else {}
        fip = await self._by_address(request, context, body.get("address"))
        port, fixed = await self._server_port(server, body.get("fixed_address"))
        change = {"floatingip": {"port_id": port, "fixed_ip_address": fixed}}
        status, answer = await self.neutron(request, "PUT", f"/floatingips/{fip['id']}", change)
        if status != 200:
            raise bad_request(f"Unable to associate floating IP {body.get('address')}: {answer}")
        return empty(202)

    async def disassociate(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        body = body if isinstance(body, dict) else {}
        fip = await self._by_address(request, context, body.get("address"))
        ports = set(status_of(server).get("ports") or [])
        if fip.get("port_id") not in ports:
            raise OpenStackError(
                409, f"Floating IP {body.get('address')} is not associated with instance."
            )
        change = {"floatingip": {"port_id": None}}
        await self.neutron(request, "PUT", f"/floatingips/{fip['id']}", change)
        return empty(202)

    async def _server_port(self, server: Obj, fixed: Any) -> tuple[str, str | None]:
        for port_id in status_of(server).get("ports") or []:
            status, body = await self.service.caller.call("GET", f"{NET}/ports/{port_id}")
            if status != 200:
                continue
            addresses = [ip.get("ip_address") for ip in body["port"].get("fixed_ips") or []]
            if fixed is None and addresses:
                return str(port_id), addresses[0]
            if fixed in addresses:
                return str(port_id), str(fixed)
        raise bad_request("No nw_info cache associated with instance")
