"""Usage per project (`/os-simple-tenant-usage`), as Nova v2.1 reports it.

For a period (`start`, `end`; the last day by default) each server counts the hours it
existed within it, times its flavor's vCPUs, RAM and disk. An admin lists every project;
a project may read its own.
"""

from __future__ import annotations

import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.compute import kinds
from unistack.iaas.records import spec_of, status_of
from unistack.openstack.auth import deny, may_see, require_admin
from unistack.openstack.compute.server_views import server_status
from unistack.openstack.compute.service import ComputeService
from unistack.openstack.web import bad_request, json_response

Obj = dict[str, Any]
UTC = datetime.UTC


def _parse(text: str | None, default: datetime.datetime) -> datetime.datetime:
    if not text:
        return default
    try:
        value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise bad_request(f"Invalid time format {text}.") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _text(value: datetime.datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def period(request: Request) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(UTC)
    start = _parse(request.query_params.get("start"), now - datetime.timedelta(days=1))
    end = _parse(request.query_params.get("end"), now)
    if start > end:
        raise bad_request("Invalid start time. The start time cannot occur after the end time.")
    return start, min(end, now)


def server_usage(server: Obj, start: datetime.datetime, end: datetime.datetime) -> Obj:
    spec, flavor = spec_of(server), spec_of(server).get("flavor") or {}
    created = _parse(server["metadata"].get("creationTimestamp"), start)
    begin = max(created, start)
    hours = max(0.0, (end - begin).total_seconds() / 3600)
    return {
        "instance_id": server["metadata"]["name"],
        "name": spec.get("name", ""),
        "tenant_id": spec.get("project_id"),
        "flavor": flavor.get("name", ""),
        "vcpus": int(flavor.get("vcpus", 0)),
        "memory_mb": int(flavor.get("ram", 0)),
        "local_gb": int(flavor.get("disk", 0)),
        "hours": hours,
        "started_at": _text(created),
        "ended_at": None,
        "state": str(status_of(server).get("vm_state") or server_status(server).lower()),
        "uptime": int((end - created).total_seconds()),
    }


def project_usage(
    project_id: str, servers: list[Obj], start: datetime.datetime, end: datetime.datetime
) -> Obj:
    usages = [server_usage(server, start, end) for server in servers]
    return {
        "tenant_id": project_id,
        "start": _text(start),
        "stop": _text(end),
        "total_hours": sum(u["hours"] for u in usages),
        "total_vcpus_usage": sum(u["hours"] * u["vcpus"] for u in usages),
        "total_memory_mb_usage": sum(u["hours"] * u["memory_mb"] for u in usages),
        "total_local_gb_usage": sum(u["hours"] * u["local_gb"] for u in usages),
        "server_usages": usages,
    }


class TenantUsage:
    def __init__(self, service: ComputeService) -> None:
        self.service = service
        self.records = service.records

    def routes(self) -> list[Route]:
        return [
            Route("/v2.1/os-simple-tenant-usage", self.list_usage, methods=["GET"]),
            Route("/v2.1/os-simple-tenant-usage/{project_id}", self.show_usage, methods=["GET"]),
        ]

    async def list_usage(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-simple-tenant-usage:list")
        start, end = period(request)
        projects: dict[str, list[Obj]] = {}
        for server in self.records.all(kinds.SERVERS):
            projects.setdefault(str(spec_of(server).get("project_id")), []).append(server)
        detailed = request.query_params.get("detailed") in ("1", "true", "True")
        usages = []
        for project_id, servers in sorted(projects.items()):
            usage = project_usage(project_id, servers, start, end)
            if not detailed:
                usage.pop("server_usages")
            usages.append(usage)
        return json_response({"tenant_usages": usages})

    async def show_usage(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        project_id = request.path_params["project_id"]
        if not may_see(context, project_id):
            raise deny("os_compute_api:os-simple-tenant-usage:show")
        start, end = period(request)
        servers = self.records.of_project(kinds.SERVERS, project_id)
        if not servers:
            return json_response({"tenant_usage": {}})
        return json_response({"tenant_usage": project_usage(project_id, servers, start, end)})
