"""Compute services (`/os-services`), as Nova v2.1 lists and toggles them.

Each hypervisor node runs a `nova-compute` service in the node's zone; the scheduler and the
conductor are the gateway's controllers, shown as `nova-scheduler` and `nova-conductor` in
the `internal` zone on the first node. Disabling a `nova-compute` service cordons its node
(`spec.unschedulable`), so the scheduler skips it, as Nova's ComputeFilter does; enabling
uncordons it; forcing it down (2.11) is an annotation on the node. Ids are the 2.1
integers up to 2.52, UUIDs from 2.53 (`PUT /os-services/{id}` then changes status, reason
and forced-down in one call); from 2.75 unknown list filters are a 400.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.client.resources import NODES
from unistack.iaas.compute import kinds
from unistack.iaas.compute.hosts import node_enabled, node_ready
from unistack.openstack.auth import require_admin
from unistack.openstack.compute.service import ComputeService, boolean, is_uuid, microversion
from unistack.openstack.microversion import Version
from unistack.openstack.web import bad_request, conflict, json_response, not_found, read_json

Obj = dict[str, Any]
CONTROLLERS = ("nova-scheduler", "nova-conductor")
REASON = "compute.unistack.io/disabled-reason"
FORCED_DOWN = "compute.unistack.io/forced-down"


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
            Route("/v2.1/os-services/{service_id}", self.delete_service, methods=["DELETE"]),
        ]

    def services(self) -> list[Obj]:
        nodes = self.hosts.all_nodes()
        found: list[Obj] = []
        if nodes:
            first = nodes[0]["metadata"]["name"]
            found += [
                _entry(binary, first, "internal", True, True, None, False) for binary in CONTROLLERS
            ]
        for node in nodes:
            annotations = node.get("metadata", {}).get("annotations") or {}
            found.append(
                _entry(
                    "nova-compute",
                    node["metadata"]["name"],
                    self.hosts.zone_of(node),
                    node_enabled(node),
                    node_ready(node) and not annotations.get(FORCED_DOWN),
                    annotations.get(REASON) if not node_enabled(node) else None,
                    bool(annotations.get(FORCED_DOWN)),
                )
            )
        return found

    async def list_services(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-services:list")
        query, version = request.query_params, microversion(request)
        if version.at_least("2.75"):
            for key in query:
                if key not in ("host", "binary"):
                    raise bad_request(
                        f"Invalid input for query parameters {key}. Additional properties "
                        f"are not allowed ('{key}' was unexpected)"
                    )
        host, binary = query.get("host"), query.get("binary")
        found = [
            _view(s, version)
            for s in self.services()
            if (not host or s["host"] == host) and (not binary or s["binary"] == binary)
        ]
        return json_response({"services": found})

    async def update_service(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-services:update")
        if microversion(request).at_least("2.53"):
            return await self._update_by_id(request)
        change = request.path_params["change"]
        if change == "force-down" and microversion(request).at_least("2.11"):
            return await self._force_down(request)
        if change not in ("enable", "disable", "disable-log-reason"):
            raise not_found("Unknown action")
        body = await read_json(request)
        host, binary = body.get("host"), body.get("binary")
        if not isinstance(host, str) or not isinstance(binary, str):
            raise bad_request("Invalid input for field/attribute host or binary.")
        reason = body.get("disabled_reason") if change == "disable-log-reason" else None
        if change == "disable-log-reason" and not isinstance(reason, str):
            raise bad_request("Missing disabled reason field")
        self._compute_host(host, binary)
        await self._patch(host, change != "enable", reason)
        answer: Obj = {"host": host, "binary": binary}
        answer["status"] = "enabled" if change == "enable" else "disabled"
        if reason is not None:
            answer["disabled_reason"] = reason
        return json_response({"service": answer})

    def _compute_host(self, host: str, binary: str) -> None:
        known = {node["metadata"]["name"] for node in self.hosts.all_nodes()}
        if binary != "nova-compute" or host not in known:
            raise not_found(f"Service {binary} on host {host} could not be found.")

    async def _force_down(self, request: Request) -> Response:
        """2.11 to 2.52: `PUT /os-services/force-down` with host, binary and the flag."""
        body = await read_json(request)
        host, binary, down = body.get("host"), body.get("binary"), body.get("forced_down")
        if not isinstance(host, str) or not isinstance(binary, str):
            raise bad_request("Invalid input for field/attribute host or binary.")
        forced = boolean(down, "forced_down")
        self._compute_host(host, binary)
        await self._patch(host, None, None, forced)
        return json_response({"service": {"host": host, "binary": binary, "forced_down": forced}})

    def _by_id(self, request: Request, service_id: str) -> Obj:
        if not is_uuid(service_id):
            raise bad_request(f"Invalid uuid {service_id}")
        for entry in self.services():
            if entry["uuid"] == service_id:
                return entry
        raise not_found(f"Service {service_id} could not be found.")

    async def _update_by_id(self, request: Request) -> Response:
        """2.53: `PUT /os-services/{id}` with `status`, `disabled_reason`, `forced_down`."""
        entry = self._by_id(request, request.path_params["change"])
        body = await read_json(request)
        if not body or set(body) - {"status", "disabled_reason", "forced_down"}:
            raise bad_request("Invalid input for field/attribute service.")
        status, reason = body.get("status"), body.get("disabled_reason")
        if status not in (None, "enabled", "disabled"):
            raise bad_request(f"Invalid input for field/attribute status. Value: {status}.")
        if reason is not None and status != "disabled":
            raise bad_request("Specifying 'disabled_reason' with status 'enabled' is invalid.")
        forced = boolean(body["forced_down"], "forced_down") if "forced_down" in body else None
        if entry["binary"] != "nova-compute":
            raise bad_request(f"Updating a {entry['binary']} service is not supported.")
        cordoned = None if status is None else status == "disabled"
        await self._patch(entry["host"], cordoned, reason, forced)
        updated = self._by_id(request, entry["uuid"])
        return json_response({"service": _view(updated, microversion(request))})

    async def delete_service(self, request: Request) -> Response:
        """Nova deletes a service record; a node here is the hypervisor itself, which this
        API does not remove: a nova-compute service answers 409, an unknown one 404."""
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-services:delete")
        service_id = request.path_params["service_id"]
        found = [s for s in self.services() if service_id in (s["uuid"], str(s["legacy_id"]))]
        if not found:
            raise not_found(f"Service {service_id} could not be found.")
        raise conflict(f"Service {service_id} is a running hypervisor and cannot be deleted.")

    async def _patch(
        self, host: str, cordoned: bool | None, reason: str | None, forced: bool | None = None
    ) -> None:
        """One merge patch, as `kubectl cordon` does: no lost update against the agent's
        own writes to the node."""
        patch: Obj = {"metadata": {"annotations": {}}}
        if cordoned is not None:
            patch["spec"] = {"unschedulable": cordoned}
            patch["metadata"]["annotations"][REASON] = reason if cordoned else None
        if forced is not None:
            patch["metadata"]["annotations"][FORCED_DOWN] = "true" if forced else None
        written = await self.service.records.client.patch(NODES, host, patch)
        await self.hosts.nodes.wait_for_version(written["metadata"]["resourceVersion"])


def _entry(
    binary: str, host: str, zone: str, enabled: bool, up: bool, reason: str | None, forced: bool
) -> Obj:
    return {
        "legacy_id": kinds.integer_id(f"{binary}@{host}") % 100000,
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"service:{binary}@{host}")),
        "binary": binary,
        "host": host,
        "zone": zone,
        "status": "enabled" if enabled else "disabled",
        "state": "up" if up else "down",
        "updated_at": _now(),
        "disabled_reason": reason,
        "forced_down": forced,
    }


def _view(entry: Obj, version: Version) -> Obj:
    """A service at the request's version: `forced_down` from 2.11, a UUID id from 2.53."""
    view = {k: v for k, v in entry.items() if k not in ("legacy_id", "uuid", "forced_down")}
    view["id"] = entry["uuid"] if version.at_least("2.53") else entry["legacy_id"]
    if version.at_least("2.11"):
        view["forced_down"] = entry["forced_down"]
    return view
