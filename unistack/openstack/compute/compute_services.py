"""Compute services (`/os-services`), as Nova v2.1 lists and toggles them.

Each hypervisor node runs a `nova-compute` service in the node's zone; the scheduler and the
conductor are the gateway's controllers, shown as `nova-scheduler` and `nova-conductor` in
the `internal` zone on the first node. Disabling a `nova-compute` service cordons its node
(`spec.unschedulable`), so the scheduler skips it, as Nova's ComputeFilter does; enabling
uncordons it. Ids are the 2.1 integers.
"""

from __future__ import annotations

import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.client.resources import NODES
from unistack.iaas.compute import kinds
from unistack.iaas.compute.hosts import node_enabled
from unistack.openstack.auth import require_admin
from unistack.openstack.compute.hypervisors import node_ready
from unistack.openstack.compute.service import ComputeService
from unistack.openstack.web import bad_request, json_response, not_found, read_json

Obj = dict[str, Any]
CONTROLLERS = ("nova-scheduler", "nova-conductor")
REASON = "compute.unistack.io/disabled-reason"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000000")


class ComputeServices:
    def __init__(self, service: ComputeService) -> None:
        self.service = service
        self.hosts = service.hosts

    def routes(self) -> list[Route]:
        return [
            Route("/v2.1/os-services", self.list_services, methods=["GET"]),
            Route("/v2.1/os-services/{change}", self.update_service, methods=["PUT"]),
        ]

    def services(self) -> list[Obj]:
        nodes = self.hosts.all_nodes()
        found: list[Obj] = []
        if nodes:
            first = nodes[0]["metadata"]["name"]
            found += [
                self._entry(binary, first, "internal", True, True, None) for binary in CONTROLLERS
            ]
        for node in nodes:
            reason = (node.get("metadata", {}).get("annotations") or {}).get(REASON)
            found.append(
                self._entry(
                    "nova-compute",
                    node["metadata"]["name"],
                    self.hosts.zone_of(node),
                    node_enabled(node),
                    node_ready(node),
                    reason if not node_enabled(node) else None,
                )
            )
        return found

    def _entry(
        self, binary: str, host: str, zone: str, enabled: bool, up: bool, reason: str | None
    ) -> Obj:
        return {
            "id": kinds.integer_id(f"{binary}@{host}") % 100000,
            "binary": binary,
            "host": host,
            "zone": zone,
            "status": "enabled" if enabled else "disabled",
            "state": "up" if up else "down",
            "updated_at": _now(),
            "disabled_reason": reason,
        }

    async def list_services(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-services:list")
        host, binary = request.query_params.get("host"), request.query_params.get("binary")
        found = [
            s
            for s in self.services()
            if (not host or s["host"] == host) and (not binary or s["binary"] == binary)
        ]
        return json_response({"services": found})

    async def update_service(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-services:update")
        change = request.path_params["change"]
        if change not in ("enable", "disable", "disable-log-reason"):
            raise not_found("Unknown action")
        body = await read_json(request)
        host, binary = body.get("host"), body.get("binary")
        if not isinstance(host, str) or not isinstance(binary, str):
            raise bad_request("Invalid input for field/attribute host or binary.")
        reason = body.get("disabled_reason") if change == "disable-log-reason" else None
        if change == "disable-log-reason" and not isinstance(reason, str):
            raise bad_request("Missing disabled reason field")
        known = {node["metadata"]["name"] for node in self.hosts.all_nodes()}
        if binary != "nova-compute" or host not in known:
            raise not_found(f"Service {binary} on host {host} could not be found.")
        await self._cordon(host, change != "enable", reason)
        answer: Obj = {"host": host, "binary": binary}
        answer["status"] = "enabled" if change == "enable" else "disabled"
        if reason is not None:
            answer["disabled_reason"] = reason
        return json_response({"service": answer})

    async def _cordon(self, host: str, cordoned: bool, reason: str | None) -> None:
        """One merge patch, as `kubectl cordon` does: no lost update against the agent's
        own writes to the node."""
        patch = {
            "spec": {"unschedulable": cordoned},
            "metadata": {"annotations": {REASON: reason or None}},
        }
        written = await self.service.records.client.patch(NODES, host, patch)
        await self.hosts.nodes.wait_for_version(written["metadata"]["resourceVersion"])
