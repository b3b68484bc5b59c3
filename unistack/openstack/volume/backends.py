"""What Cinder says about where volumes live: `os-availability-zone` (zone `nova`),
`os-services` (cinder-scheduler, cinder-backup and cinder-volume@fake-backend, up; an admin
may disable or freeze them), `os-hosts`,
`scheduler-stats/get_pools` (admin), and `extensions`. The fake backend's one pool is always
listed; the hosts' real pools (`unistack-pool`) appear as cinder-volume services once a
volume lives there (its `status.host`); the rest are fixed answers with counts from the
records.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.records import spec_of, status_of
from unistack.iaas.volume import kinds
from unistack.iaas.volume.backend import BACKEND_NAME, CAPABILITIES, CAPACITY_GB
from unistack.openstack.volume.service import (
    BACKEND_HOST,
    HOST,
    POOL_HOST,
    ZONE,
    VolumeService,
    microversion,
    now,
)
from unistack.openstack.web import bad_request, empty, json_response, not_found, read_json

Obj = dict[str, Any]
EXTENSIONS = (
    ("AvailabilityZones", "os-availability-zone", "Describe Availability Zones."),
    ("VolumeActions", "os-volume-actions", "Enable volume actions."),
    ("AdminActions", "os-admin-actions", "Enable admin actions."),
    ("Hosts", "os-hosts", "Admin-only host administration."),
    ("Services", "os-services", "Services support."),
    ("Quotas", "os-quota-sets", "Quota management support."),
    ("VolumeTypeAccess", "os-volume-type-access", "Volume type access support."),
    (
        "ExtendedSnapshotAttributes",
        "os-extended-snapshot-attributes",
        "Extended snapshot attributes.",
    ),
    (
        "VolumeTenantAttribute",
        "os-vol-tenant-attr",
        "Expose the internal project_id as an attribute of a volume.",
    ),
    ("VolumeHostAttribute", "os-vol-host-attr", "Expose host as an attribute of a volume."),
    ("VolumeImageMetadata", "os-vol-image-meta", "Show image metadata associated with the volume."),
    ("SchedulerStats", "scheduler-stats", "Scheduler stats support."),
)
UPDATED = "2024-01-01T00:00:00+00:00"
DRIVER_VERSION = CAPABILITIES["driver_version"]
STORAGE_PROTOCOL = CAPABILITIES["storage_protocol"]
VENDOR = CAPABILITIES["vendor_name"]


class Backends:
    def __init__(self, service: VolumeService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        return [
            Route("/os-availability-zone", self.list_availability_zones, methods=["GET"]),
            Route("/os-services", self.list_services, methods=["GET"]),
            Route("/os-services/{action}", self.update_service, methods=["PUT"]),
            Route("/os-hosts", self.list_hosts, methods=["GET"]),
            Route("/os-hosts/{host}", self.show_host, methods=["GET"]),
            Route("/scheduler-stats/get_pools", self.list_pools, methods=["GET"]),
            Route("/capabilities/{host}", self.show_capabilities, methods=["GET"]),
            Route("/extensions", self.list_extensions, methods=["GET"]),
        ]

    async def list_availability_zones(self, request: Request) -> Response:
        self.service.reader(request)
        zones = [{"zoneName": ZONE, "zoneState": {"available": True}}]
        return json_response({"availabilityZoneInfo": zones})

    def _services(self, request: Request) -> list[Obj]:
        stamp = now()
        found: list[Obj] = [
            {"binary": "cinder-scheduler", "host": HOST},
            {"binary": "cinder-backup", "host": HOST},
        ]
        for backend in [BACKEND_HOST, *self._pool_backends()]:
            found.append(
                {
                    "binary": "cinder-volume",
                    "host": backend,
                    "frozen": False,
                    "replication_status": "disabled",
                    "active_backend_id": None,
                }
            )
        for service in found:
            held = spec_of(self.service.records.get(kinds.SERVICES, _service_id(service)))
            service.update(
                zone=ZONE,
                status="disabled" if held.get("disabled") else "enabled",
                state="up",
                updated_at=stamp,
                disabled_reason=held.get("disabled_reason"),
            )
            if "frozen" in service:
                service["frozen"] = bool(held.get("frozen"))
            if microversion(request).at_least("3.7"):
                service["cluster"] = None
            if microversion(request).at_least("3.49") and service["binary"] == "cinder-volume":
                service["backend_state"] = "up"
        return found

    def _pool_backends(self) -> list[str]:
        """The real pools' backends (`node@unistack-pool`) that hold volumes."""
        hosts = {_backend_of(volume) for volume in self.service.records.all(kinds.VOLUMES)}
        return sorted(host for host in hosts if host and host != BACKEND_HOST)

    async def list_services(self, request: Request) -> Response:
        self.service.admin(request, "volume_extension:services:index")
        found = self._services(request)
        host = request.query_params.get("host")
        if host:  # a host names its backends too (volnode covers volnode@fake-backend)
            found = [s for s in found if host in (s["host"], s["host"].partition("@")[0])]
        if "binary" in request.query_params:
            found = [s for s in found if s["binary"] == request.query_params["binary"]]
        return json_response({"services": found})

    async def update_service(self, request: Request) -> Response:
        """enable, disable, disable-log-reason (a service: host and binary), freeze and thaw
        (a backend host)."""
        self.service.admin(request, "volume_extension:services:update")
        action = request.path_params["action"]
        body = await read_json(request)
        if action in ("freeze", "thaw"):
            if body.get("host") != BACKEND_HOST:
                raise bad_request(f"Invalid host: {body.get('host')} is not a volume backend.")
            frozen = {"binary": "cinder-volume", "host": BACKEND_HOST}
            await self._hold(_service_id(frozen), frozen=action == "freeze")
            return empty(200)
        if action not in ("enable", "disable", "disable-log-reason"):
            raise not_found(f"Unknown action {action}.")
        service = self._named(request, body)
        reason = body.get("disabled_reason")
        if action == "disable-log-reason" and (not isinstance(reason, str) or not reason.strip()):
            raise bad_request("Disabled reason contains invalid characters or is too long")
        disabled = action != "enable"
        held = {"disabled": disabled, "disabled_reason": reason if disabled else None}
        await self._hold(_service_id(service), **held)
        shown = {
            "host": service["host"],
            "binary": service["binary"],
            "service": service["binary"],
            "status": "disabled" if disabled else "enabled",
            "disabled": disabled,
        }
        if action != "disable":
            shown["disabled_reason"] = held["disabled_reason"]
        return json_response(shown)

    def _named(self, request: Request, body: Obj) -> Obj:
        for service in self._services(request):
            if (service["host"], service["binary"]) == (body.get("host"), body.get("binary")):
                return service
        raise not_found(
            f"Service {body.get('binary')} on host {body.get('host')} could not be found."
        )

    async def _hold(self, service_id: str, **values: Any) -> None:
        await self.service.put(kinds.SERVICES, service_id, values)

    async def list_hosts(self, request: Request) -> Response:
        self.service.admin(request, "volume_extension:hosts")
        hosts = [
            {
                "service-status": "available",
                "service": s["binary"],
                "zone": ZONE,
                "service-state": "enabled",
                "host_name": s["host"],
                "last-update": s["updated_at"],
            }
            for s in self._services(request)
        ]
        return json_response({"hosts": hosts})

    async def show_host(self, request: Request) -> Response:
        self.service.admin(request, "volume_extension:hosts")
        host = request.path_params["host"]
        pools = self._pool_backends()  # listed by `list_hosts` as well
        if host not in (HOST, BACKEND_HOST, POOL_HOST, *pools):
            raise not_found(f"Host {host} could not be found.")
        volumes = self.service.records.all(kinds.VOLUMES)
        if host in pools:  # a real pool's backend: the volumes it holds
            volumes = [v for v in volumes if _backend_of(v) == host]
        held = {v["metadata"]["name"] for v in volumes}
        snapshots = [
            s for s in self.service.records.all(kinds.SNAPSHOTS)
            if str(spec_of(s).get("volume_id")) in held
        ]  # fmt: skip
        rows = [_usage(host, "(total)", volumes, snapshots)]
        for project in sorted({str(spec_of(v).get("project_id")) for v in volumes}):
            rows.append(
                _usage(
                    host,
                    project,
                    [v for v in volumes if str(spec_of(v).get("project_id")) == project],
                    [s for s in snapshots if str(spec_of(s).get("project_id")) == project],
                )
            )
        return json_response({"host": [{"resource": row} for row in rows]})

    async def list_pools(self, request: Request) -> Response:
        self.service.admin(request, "scheduler_extension:scheduler_stats:get_pools")
        pool: Obj = {"name": POOL_HOST}
        detail = request.query_params.get("detail", "").lower() in ("true", "1", "yes")
        if detail:
            used = sum(
                int(spec_of(v).get("size") or 0) for v in self.service.records.all(kinds.VOLUMES)
            )
            pool["capabilities"] = {
                "updated": now(),
                "QoS_support": False,
                "total_capacity_gb": CAPACITY_GB,
                "free_capacity_gb": max(CAPACITY_GB - used, 0),
                "volume_backend_name": BACKEND_NAME,
                "driver_version": DRIVER_VERSION,
                "reserved_percentage": 0,
                "storage_protocol": STORAGE_PROTOCOL,
                "vendor_name": VENDOR,
                "timestamp": now(),
            }
        return json_response({"pools": [pool]})

    async def show_capabilities(self, request: Request) -> Response:
        self.service.admin(request, "volume_extension:capabilities")
        host = request.path_params["host"]
        if host not in (BACKEND_HOST, POOL_HOST):
            raise not_found(f"Host {host} could not be found.")
        return json_response(
            {
                "namespace": "OS::Storage::Capabilities::fake-backend",
                "volume_backend_name": BACKEND_NAME,
                "pool_name": None,
                "driver_version": DRIVER_VERSION,
                "storage_protocol": STORAGE_PROTOCOL,
                "vendor_name": VENDOR,
                "visibility": None,
                "display_name": None,
                "description": None,
                "replication_targets": [],
                "properties": {},
            }
        )

    async def list_extensions(self, request: Request) -> Response:
        self.service.caller(request)
        shown = [
            {
                "name": name,
                "alias": alias,
                "description": text,
                "updated": UPDATED,
                "links": [],
                "namespace": "",
            }
            for name, alias, text in EXTENSIONS
        ]
        return json_response({"extensions": shown})


def _service_id(service: Obj) -> str:
    """The object name of a service's settings (a DNS label)."""
    return f"{service['binary']}-{service['host']}".replace("@", "-at-").lower()


def _backend_of(volume: Obj) -> str:
    """`node@backend` of a volume's `node@backend#pool`."""
    return str(status_of(volume).get("host") or "").partition("#")[0]


def _usage(host: str, project: str, volumes: list[Obj], snapshots: list[Obj]) -> Obj:
    return {
        "host": host,
        "project": project,
        "volume_count": str(len(volumes)),
        "total_volume_gb": str(sum(int(spec_of(v).get("size") or 0) for v in volumes)),
        "snapshot_count": str(len(snapshots)),
        "total_snapshot_gb": str(sum(int(spec_of(s).get("size") or 0) for s in snapshots)),
    }
