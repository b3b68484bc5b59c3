"""Networks through the compute API (`/os-networks`, `/os-tenant-networks`, Nova's read-only
Neutron proxies up to 2.35): the networks the caller may see, labelled by name; the first
with the nova-network fields Nova keeps for compatibility set to null, the second with the
CIDR of the network's first subnet.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.openstack.compute.service import ComputeService
from unistack.openstack.web import json_response, not_found

Obj = dict[str, Any]
NET = "/network/v2.0"
_LEGACY_FIELDS = (
    "bridge", "bridge_interface", "broadcast", "cidr", "cidr_v6", "created_at", "deleted",
    "deleted_at", "dhcp_server", "dhcp_start", "dns1", "dns2", "enable_dhcp", "gateway",
    "gateway_v6", "host", "injected", "mtu", "multi_host", "netmask", "netmask_v6",
    "priority", "project_id", "rxtx_base", "share_address", "updated_at", "vlan",
    "vpn_private_address", "vpn_public_address", "vpn_public_port",
)  # fmt: skip


def network_view(network: Obj) -> Obj:
    return {**dict.fromkeys(_LEGACY_FIELDS), "id": network["id"], "label": network.get("name")}


class Networks:
    def __init__(self, service: ComputeService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        return [
            Route("/v2.1/os-networks", self.list_networks, methods=["GET"]),
            Route("/v2.1/os-networks/{network_id}", self.show_network, methods=["GET"]),
            Route("/v2.1/os-tenant-networks", self.list_tenant_networks, methods=["GET"]),
            Route(
                "/v2.1/os-tenant-networks/{network_id}",
                self.show_tenant_network,
                methods=["GET"],
            ),
        ]

    async def _call(self, request: Request, path: str) -> tuple[int, Any]:
        self.service.authenticate(request)
        return await self.service.call_as(request, "GET", f"{NET}{path}")

    async def list_networks(self, request: Request) -> Response:
        status, body = await self._call(request, "/networks")
        networks = body.get("networks", []) if status == 200 else []
        return json_response({"networks": [network_view(n) for n in networks]})

    async def show_network(self, request: Request) -> Response:
        network_id = request.path_params["network_id"]
        status, body = await self._call(request, f"/networks/{network_id}")
        if status != 200:
            raise not_found(f"Network {network_id} could not be found.")
        return json_response({"network": network_view(body["network"])})

    # --- tenant networks: id, label and the first subnet's CIDR ----------------------------

    async def _tenant_view(self, request: Request, network: Obj) -> Obj:
        cidr = None
        for subnet_id in network.get("subnets") or []:
            status, body = await self._call(request, f"/subnets/{subnet_id}")
            if status == 200:
                cidr = body["subnet"].get("cidr")
                break
        return {"id": network["id"], "label": network.get("name") or "", "cidr": cidr}

    async def list_tenant_networks(self, request: Request) -> Response:
        status, body = await self._call(request, "/networks")
        networks = body.get("networks", []) if status == 200 else []
        views = [await self._tenant_view(request, n) for n in networks]
        return json_response({"networks": views})

    async def show_tenant_network(self, request: Request) -> Response:
        network_id = request.path_params["network_id"]
        status, body = await self._call(request, f"/networks/{network_id}")
        if status != 200:
            raise not_found(f"Network {network_id} could not be found.")
        return json_response({"network": await self._tenant_view(request, body["network"])})
