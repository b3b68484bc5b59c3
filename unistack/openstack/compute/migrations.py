"""Migrations (`/os-migrations`, `/servers/{id}/migrations`), as Nova lists them.

A resize makes a `Migration` record (`start_resize`, called by the resize action) with the
source and destination host, the old and new flavor and the status `pre-migrating`; the
server controller moves it to `finished`, then `confirmed` or `reverted`
(`unistack.iaas.compute.controller`). A cold migration (`migrate`, `start_resize` with
type `migration`) has no destination until the controller schedules one; it goes through
`migrating`, and to `error` when it fails. Listing is for admins, newest first, filtered by
host, status, server, type, source compute and, from 2.80, user and project; from 2.59 a
migration has a `uuid` and the list is paged (`limit`, `marker`) and filtered by
`changes-since` (2.66: `changes-before`); from 2.23 it says its `migration_type`. A
server's own migrations (`/servers/{id}/migrations`, 2.23) are its live migrations in
progress, which a resize never is.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.compute import kinds
from unistack.iaas.records import spec_of, status_of
from unistack.openstack.auth import AuthContext, require_admin
from unistack.openstack.compute.server_views import parse_time
from unistack.openstack.compute.service import (
    ComputeService,
    microversion,
    next_link,
    now_text,
    page,
    require_version,
)
from unistack.openstack.microversion import Version
from unistack.openstack.web import json_response, not_found

Obj = dict[str, Any]
_FILTERS = ("status", "instance_uuid", "migration_type", "source_compute")


async def start_resize(
    service: ComputeService,
    context: AuthContext,
    server: Obj,
    old: Obj,
    new: Obj,
    migration_type: str = "resize",
    dest: str | None = None,
) -> str:
    """Record the migration a resize (or a cold migration, `migration`, or a live one,
    `live-migration`, queued) starts; its id goes with the pending action. A resize stays on
    its host; a migration's `dest` is the admin's host, or the scheduler's choice later."""
    host = status_of(server).get("host")
    dest = host if migration_type == "resize" else dest
    spec = {
        "instance_uuid": server["metadata"]["name"],
        "project_id": spec_of(server).get("project_id"),
        "user_id": context.user_id,
        "migration_type": migration_type,
        "source_compute": host,
        "source_node": host,
        "dest_compute": dest,
        "dest_node": dest,
        "dest_host": dest,
        "old_flavor_id": str(old.get("id") or ""),
        "new_flavor_id": str(new.get("id") or ""),
        "created_at": now_text(),
    }
    migration_id = str(uuid.uuid4())
    queued = kinds.MIGRATION_QUEUED if migration_type == "live-migration" else kinds.MIGRATION_PRE
    status = {"status": queued, "updated_at": None}
    await service.records.create(kinds.MIGRATIONS, migration_id, spec, status)
    return migration_id


def _time(text: Any) -> str | None:
    """Migration times read as Nova's: ISO, no zone, with microseconds."""
    return f"{str(text).rstrip('Z')}.000000" if text else None


def migration_view(obj: Obj, version: Version) -> Obj:
    spec, status, name = spec_of(obj), status_of(obj), obj["metadata"]["name"]
    view: Obj = {
        "id": kinds.integer_id(name),
        "status": status.get("status"),
        "instance_uuid": spec.get("instance_uuid"),
        "source_node": spec.get("source_node"),
        "source_compute": spec.get("source_compute"),
        "dest_node": status.get("dest_node") or spec.get("dest_node"),
        "dest_compute": status.get("dest_compute") or spec.get("dest_compute"),
        "dest_host": status.get("dest_host") or spec.get("dest_host"),
        "old_instance_type_id": _flavor_number(spec.get("old_flavor_id")),
        "new_instance_type_id": _flavor_number(spec.get("new_flavor_id")),
        "created_at": _time(spec.get("created_at")),
        "updated_at": _time(status.get("updated_at")),
    }
    if version.at_least("2.23"):
        view["migration_type"] = spec.get("migration_type")
    if version.at_least("2.59"):
        view["uuid"] = name
    if version.at_least("2.80"):
        view |= {"user_id": spec.get("user_id"), "project_id": spec.get("project_id")}
    return view


def _flavor_number(flavor_id: Any) -> int | None:
    return kinds.integer_id(f"flavor:{flavor_id}") if flavor_id else None


def _updated(obj: Obj) -> str:
    return str(status_of(obj).get("updated_at") or spec_of(obj).get("created_at") or "")


def matches(obj: Obj, query: Any, version: Version) -> bool:
    """Nova's migration list filters."""
    spec, status = spec_of(obj), status_of(obj)
    values = {**spec, "status": status.get("status")}
    if any(query.get(key) and str(values.get(key)) != query[key] for key in _FILTERS):
        return False
    host = query.get("host")
    dest = status.get("dest_compute") or spec.get("dest_compute")
    if host and host not in (spec.get("source_compute"), dest):
        return False
    if version.at_least("2.80"):
        for key in ("user_id", "project_id"):
            if query.get(key) and spec.get(key) != query[key]:
                return False
    if not version.at_least("2.59"):
        return True
    since, before = query.get("changes-since"), query.get("changes-before")
    if since and parse_time(_updated(obj)) < parse_time(since):
        return False
    return not (
        before and version.at_least("2.66") and parse_time(_updated(obj)) > parse_time(before)
    )


class Migrations:
    def __init__(self, service: ComputeService) -> None:
        self.service = service
        self.records = service.records

    def routes(self) -> list[Route]:
        own = "/v2.1/servers/{server_id}/migrations"
        return [
            Route("/v2.1/os-migrations", self.list_migrations, methods=["GET"]),
            Route(own, self.list_server_migrations, methods=["GET"]),
            Route(f"{own}/{{migration_id}}", self.show_server_migration, methods=["GET"]),
        ]

    async def list_migrations(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-migrations:index")
        version, query = microversion(request), request.query_params
        found = [m for m in self.records.all(kinds.MIGRATIONS) if matches(m, query, version)]
        found.sort(key=lambda m: (str(spec_of(m).get("created_at")), m["metadata"]["name"]))
        found.reverse()
        marker = None
        if version.at_least("2.59"):
            found, marker = page(found, request, key=lambda m: str(m["metadata"]["name"]))
        body: Obj = {"migrations": [migration_view(m, version) for m in found]}
        if marker is not None:
            body["migrations_links"] = next_link(request, "os-migrations", marker)
        return json_response(body)

    def _in_progress(self, request: Request) -> tuple[Obj, list[Obj]]:
        """The server's live migrations under way (none: resizes are not live)."""
        require_version(request, "2.23")
        context, server = self.service.server_of(request)
        require_admin(context, "os_compute_api:servers:migrations:index")
        found = [
            m
            for m in self.records.indexed(kinds.MIGRATIONS, "instance", server["metadata"]["name"])
            if spec_of(m).get("migration_type") == "live-migration"
            and status_of(m).get("status") in ("queued", "preparing", "running", "post-migrating")
        ]
        return server, found

    async def list_server_migrations(self, request: Request) -> Response:
        _, found = self._in_progress(request)
        version = microversion(request)
        return json_response({"migrations": [migration_view(m, version) for m in found]})

    async def show_server_migration(self, request: Request) -> Response:
        server, found = self._in_progress(request)
        wanted = request.path_params["migration_id"]
        for obj in found:
            if str(kinds.integer_id(obj["metadata"]["name"])) == wanted:
                return json_response({"migration": migration_view(obj, microversion(request))})
        raise not_found(
            f"In-progress live migration {wanted} is not found for server "
            f"{server['metadata']['name']}."
        )
