"""Compute hosts and what an admin asks of them: `/os-hosts` (list, detail), the server
diagnostics (`/servers/{id}/diagnostics`) and external events (`/os-server-external-events`,
which Neutron sends when a port changes and Cinder when it grew an attached volume), as Nova
v2.1 serves them.

Hosts are the hypervisors' nodes (`unistack.iaas.compute.hosts`); a host's detail is its
total, what its servers hold, and the share of each project. Events are accepted for servers
that exist (code 200) and reported 404 per event otherwise. Port events change nothing (the
agents follow the ports themselves); `volume-extended` (2.51; its tag is the volume) has the
server's host show the guest the volume's new size and is recorded as the server's
`extend_volume` action, whose `compute_extend_volume` event says how it went, as Nova's
compute does.
"""

from __future__ import annotations

import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.compute import kinds
from unistack.iaas.compute.controller import wanted_resources
from unistack.iaas.compute.hosts import allocation_of, node_total
from unistack.iaas.compute.scheduler import Resources
from unistack.iaas.compute.volumes import VolumeError
from unistack.iaas.records import spec_of, status_of
from unistack.openstack.auth import AuthContext, require_admin
from unistack.openstack.compute.service import ComputeService, microversion
from unistack.openstack.microversion import Version
from unistack.openstack.web import (
    OpenStackError,
    bad_request,
    json_response,
    not_found,
    read_json,
)

Obj = dict[str, Any]
EVENT_NAMES = (
    "network-changed",
    "network-vif-plugged",
    "network-vif-unplugged",
    "network-vif-deleted",
)
VOLUME_EXTENDED = "volume-extended"  # from 2.51


def _resource(host: str, project: str, used: Resources) -> Obj:
    return {
        "resource": {
            "host": host,
            "project": project,
            "cpu": used.vcpus,
            "memory_mb": used.memory_mb,
            "disk_gb": used.disk_gb,
        }
    }


def diagnostics_of(server: Obj, version: Version) -> Obj:
    """A server's diagnostics; from 2.48 in Nova's common form, whose `driver` must be one
    of Nova's drivers: ours run QEMU guests as libvirt's does, so `libvirt`."""
    flavor = wanted_resources(spec_of(server).get("flavor") or {})
    status = status_of(server)
    ports = status.get("ports") or []
    volumes = status.get("volumes_attached") or []
    answer: Obj = {
        "state": "running" if status.get("power_state") == kinds.RUNNING else "shutdown",
        "driver": "libvirt" if version.at_least("2.48") else "fake",
        "hypervisor": "qemu" if version.at_least("2.48") else "fake",
        "hypervisor_os": "linux",
        "uptime": 0,
        "num_cpus": flavor.vcpus,
        "memory_details": {"maximum": flavor.memory_mb, "used": 0},
        "nic_details": [],
        "disk_details": [],
        "cpu_details": [],
        "config_drive": False,
    }
    if version.at_least("2.48"):
        answer |= {"num_nics": len(ports), "num_disks": len(volumes) + 1}
        answer["nic_details"] = [
            dict.fromkeys(_NIC_COUNTERS, 0) | {"mac_address": None} for _ in ports
        ]
        answer["disk_details"] = [dict.fromkeys(_DISK_COUNTERS, 0) for _ in range(len(volumes) + 1)]
    return answer


_NIC_COUNTERS = (
    "rx_octets", "rx_errors", "rx_drop", "rx_packets", "rx_rate",
    "tx_octets", "tx_errors", "tx_drop", "tx_packets", "tx_rate",
)  # fmt: skip
_DISK_COUNTERS = ("read_bytes", "read_requests", "write_bytes", "write_requests", "errors_count")


class Hosts:
    def __init__(self, service: ComputeService) -> None:
        self.service = service
        self.hosts = service.hosts

    def routes(self) -> list[Route]:
        return [
            Route("/v2.1/os-hosts", self.list_hosts, methods=["GET"]),
            Route("/v2.1/os-hosts/{host}", self.show_host, methods=["GET"]),
            Route("/v2.1/os-hosts/{host}", self.update_host, methods=["PUT"]),
            Route("/v2.1/os-hosts/{host}/{power:str}", self.power_host, methods=["GET"]),
            Route("/v2.1/servers/{server_id}/diagnostics", self.diagnostics, methods=["GET"]),
            Route("/v2.1/os-instance_usage_audit_log", self.list_audit, methods=["GET"]),
            Route("/v2.1/os-instance_usage_audit_log/{before}", self.show_audit, methods=["GET"]),
            Route("/v2.1/os-server-external-events", self.external_events, methods=["POST"]),
        ]

    def _admin(self, request: Request, rule: str) -> None:
        require_admin(self.service.authenticate(request), f"os_compute_api:{rule}")

    async def list_hosts(self, request: Request) -> Response:
        self._admin(request, "os-hosts:list")
        zone = request.query_params.get("zone")
        nodes = self.hosts.all_nodes()
        hosts = [
            {
                "host_name": node["metadata"]["name"],
                "service": "compute",
                "zone": self.hosts.zone_of(node),
            }
            for node in nodes
        ]
        if nodes:
            first = nodes[0]["metadata"]["name"]
            hosts += [
                {"host_name": first, "service": service, "zone": "internal"}
                for service in ("scheduler", "conductor")
            ]
        return json_response({"hosts": [h for h in hosts if not zone or h["zone"] == zone]})

    async def show_host(self, request: Request) -> Response:
        self._admin(request, "os-hosts:show")
        name = request.path_params["host"]
        node = self._node(name)
        servers = self.hosts.servers_on(name)
        rows = [
            _resource(name, "(total)", node_total(node)),
            _resource(name, "(used_now)", self.hosts.used(name)),
            _resource(name, "(used_max)", self.hosts.used(name)),
        ]
        projects: dict[str, Resources] = {}
        for server in servers:
            project = str(spec_of(server).get("project_id"))
            projects[project] = projects.get(project, Resources()) + allocation_of(server)
        rows += [_resource(name, project, used) for project, used in sorted(projects.items())]
        return json_response({"host": rows})

    def _node(self, name: str) -> Obj:
        node = next((n for n in self.hosts.all_nodes() if n["metadata"]["name"] == name), None)
        if node is None:
            raise not_found(f"Compute host {name} could not be found.")
        return node

    async def update_host(self, request: Request) -> Response:
        """Nova's `status` and `maintenance_mode`: the shapes are checked; the fake driver
        has no maintenance mode, and enabling or disabling is `/os-services`' job."""
        self._admin(request, "os-hosts:update")
        body = await read_json(request)
        status, maintenance = body.get("status"), body.get("maintenance_mode")
        if (status is None and maintenance is None) or set(body) - {"status", "maintenance_mode"}:
            raise bad_request("'status' or 'maintenance_mode' needed for host update")
        if status not in (None, "enable", "disable"):
            raise bad_request(f"Invalid status: '{status}'")
        if maintenance not in (None, "enable", "disable"):
            raise bad_request(f"Invalid mode: '{maintenance}'")
        name = request.path_params["host"]
        self._node(name)
        raise OpenStackError(501, "Virt driver does not implement host maintenance mode.")

    async def power_host(self, request: Request) -> Response:
        action = request.path_params["power"]
        if action not in ("startup", "shutdown", "reboot"):
            raise not_found("The resource could not be found.")
        self._admin(request, f"os-hosts:{action}")
        self._node(request.path_params["host"])
        raise OpenStackError(501, "Virt driver does not implement host power management.")

    def _audit(self, before: datetime.datetime) -> Obj:
        """The last completed audit period (a month, as Nova's default) before `before`:
        every host audited, each server of the period counted."""
        end = before.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        start = (end - datetime.timedelta(days=1)).replace(day=1)
        nodes = [n["metadata"]["name"] for n in self.hosts.all_nodes()]
        log = {
            host: {
                "state": "DONE",
                "instances": len(self.hosts.servers_on(host)),
                "errors": 0,
                "message": f"Instance usage audit ran for host {host}.",
            }
            for host in nodes
        }
        return {
            "hosts_not_run": [],
            "log": log,
            "num_hosts": len(nodes),
            "num_hosts_done": len(nodes),
            "num_hosts_not_run": 0,
            "num_hosts_running": 0,
            "overall_status": "ALL hosts done. 0 errors.",
            "period_beginning": start.strftime("%Y-%m-%d %H:%M:%S"),
            "period_ending": end.strftime("%Y-%m-%d %H:%M:%S"),
            "total_errors": 0,
            "total_instances": sum(entry["instances"] for entry in log.values()),
        }

    async def list_audit(self, request: Request) -> Response:
        self._admin(request, "os-instance-usage-audit-log:list")
        audit = self._audit(datetime.datetime.now(datetime.UTC))
        return json_response({"instance_usage_audit_logs": audit})

    async def show_audit(self, request: Request) -> Response:
        self._admin(request, "os-instance-usage-audit-log:show")
        text = request.path_params["before"]
        try:
            before = datetime.datetime.fromisoformat(text.replace("Z", ""))
        except ValueError as exc:
            raise bad_request(f"Invalid timestamp for date {text}") from exc
        return json_response({"instance_usage_audit_log": self._audit(before)})

    async def diagnostics(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-server-diagnostics")
        server = self.service.visible_server(context, request.path_params["server_id"])
        return json_response(diagnostics_of(server, microversion(request)))

    async def external_events(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-server-external-events:create")
        names: tuple[str, ...] = EVENT_NAMES
        if microversion(request).at_least("2.51"):
            names = (*EVENT_NAMES, VOLUME_EXTENDED)
        events = (await read_json(request)).get("events")
        if not isinstance(events, list) or not events:
            raise bad_request("Invalid input for field/attribute events.")
        for event in events:
            if not isinstance(event, dict) or event.get("name") not in names:
                raise bad_request(f"Invalid input for field/attribute events. Value: {event}.")
        answered = [await self._event(request, context, event) for event in events]
        status = 200 if any(e["code"] == 200 for e in answered) else 404
        return json_response({"events": answered}, status)

    async def _event(self, request: Request, context: AuthContext, event: Obj) -> Obj:
        server = self.service.records.get(kinds.SERVERS, str(event.get("server_uuid")))
        answer = {
            "server_uuid": event.get("server_uuid"),
            "name": event["name"],
            "status": event.get("status") or "completed",
            "code": 200 if server is not None else 404,
        }
        if event.get("tag"):
            answer["tag"] = event["tag"]
        if server is None:
            answer["status"] = "failed"
        elif event["name"] == VOLUME_EXTENDED:
            await self._volume_extended(request, context, server, str(event.get("tag") or ""))
        return answer

    async def _volume_extended(
        self, request: Request, context: AuthContext, server: Obj, volume_id: str
    ) -> None:
        """The guest shown the volume's new size; the outcome is the action's event."""
        attached = {
            str(item.get("volume_id"))
            for item in status_of(server).get("volumes_attached") or []
            if isinstance(item, dict)
        }
        error = None
        if volume_id not in attached:
            error = f"volume {volume_id} is not attached to server {server['metadata']['name']}"
        elif self.service.guest_disks is not None:
            try:
                await self.service.guest_disks.extend_volume(server["metadata"]["name"], volume_id)
            except VolumeError as failed:
                error = failed.message
        await self.service.record_action(
            request, context, server, "extend_volume", done=True, error=error
        )
