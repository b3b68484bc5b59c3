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
    conflict_state,
    microversion,
    next_link,
    now_text,
    page,
    require_unlocked,
    require_version,
)
from unistack.openstack.microversion import Version
from unistack.openstack.web import bad_request, empty, json_response, not_found, read_json

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


def server_migration_view(obj: Obj, version: Version) -> Obj:
    """A server's own live migration (`/servers/{id}/migrations`), as Nova shows it: the
    server's id as `server_uuid`, and how far the copy is, in bytes."""
    view = migration_view(obj, version)
    for key in ("instance_uuid", "migration_type", "old_instance_type_id", "new_instance_type_id"):
        view.pop(key, None)
    status = status_of(obj)
    return (
        view
        | {"server_uuid": spec_of(obj).get("instance_uuid")}
        | {key: status.get(key) for key in kinds.MIGRATION_PROGRESS}
    )


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
            Route(f"{own}/{{migration_id}}", self.abort, methods=["DELETE"]),
            Route(f"{own}/{{migration_id}}/action", self.force_complete, methods=["POST"]),
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
        return json_response({"migrations": [server_migration_view(m, version) for m in found]})

    async def show_server_migration(self, request: Request) -> Response:
        server, found = self._in_progress(request)
        wanted = request.path_params["migration_id"]
        for obj in found:
            if str(kinds.integer_id(obj["metadata"]["name"])) == wanted:
                view = server_migration_view(obj, microversion(request))
                return json_response({"migration": view})
        raise not_found(
            f"In-progress live migration {wanted} is not found for server "
            f"{server['metadata']['name']}."
        )

    async def force_complete(self, request: Request) -> Response:
        """`force_complete` (2.22): the guest paused so its memory stops changing and the
        copy converges; it resumes on its new host. Nova's 400 for a migration not running."""
        require_version(request, "2.22")
        context, server = self.service.server_of(request)
        require_admin(context, "os_compute_api:servers:migrations:force_complete")
        body = await read_json(request)
        if not isinstance(body, dict) or set(body) != {"force_complete"}:
            raise bad_request(
                f"Invalid input for field/attribute action. Value: {body}. "
                "'force_complete' is a required property"
            )
        migration = self._steerable(request, context, server, "force_complete", ("running",))
        await self._ask(request, context, server, migration, "force_complete")
        return empty(202)

    async def abort(self, request: Request) -> Response:
        """Abort (2.24; queued or preparing ones too from 2.65): the copy stops, the server
        runs on where it was, the migration `cancelled`."""
        require_version(request, "2.24")
        context, server = self.service.server_of(request)
        require_admin(context, "os_compute_api:servers:migrations:delete")
        states: tuple[str, ...] = ("running",)
        if microversion(request).at_least("2.65"):
            states += ("queued", "preparing")
        migration = self._steerable(request, context, server, "abort live migration", states)
        await self._ask(request, context, server, migration, "abort")
        return empty(202)

    def _steerable(
        self,
        request: Request,
        context: AuthContext,
        server: Obj,
        what: str,
        states: tuple[str, ...],
    ) -> Obj:
        """The server's live migration the path names, when it is in one of `states`."""
        require_unlocked(context, server)
        server_id, wanted = server["metadata"]["name"], request.path_params["migration_id"]
        status = status_of(server)
        if status.get("task_state") != "migrating":
            raise conflict_state(server_id, what.split()[0], "task_state", status.get("task_state"))
        for obj in self.records.indexed(kinds.MIGRATIONS, "instance", server_id):
            if str(kinds.integer_id(obj["metadata"]["name"])) != wanted:
                continue
            if spec_of(obj).get("migration_type") != "live-migration":
                break
            state = status_of(obj).get("status")
            if state not in states:
                raise bad_request(
                    f"Migration {wanted} state of instance {server_id} is {state}. Cannot "
                    f"{what} while the migration is in this state."
                )
            return obj
        raise not_found(f"Migration {wanted} could not be found for instance {server_id}.")

    async def _ask(
        self, request: Request, context: AuthContext, server: Obj, migration: Obj, wish: str
    ) -> None:
        """The wish on the migration record, where the server controller's live migration
        reads it (`controller.LiveSteering`); an instance action says who asked."""

        def change(obj: Obj) -> None:
            obj["status"].update(requested=wish, updated_at=now_text())

        action = f"live_migration_{wish}"  # Nova's: live_migration_abort, ..._force_complete
        await self.service.record_action(request, context, server, action, done=True)
        name = migration["metadata"]["name"]
        await self.records.update(kinds.MIGRATIONS, name, change, status=True)
