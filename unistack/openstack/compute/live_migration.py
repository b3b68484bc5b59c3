"""Live migration (`os-migrateLive`, admin): a running server moved to another host.

The action's body is checked as Nova's schema for the request's microversion has it:
`host` (null: the scheduler's choice) and `block_migration` are required, with
`disk_over_commit` as well before 2.25 and `"auto"` allowed for `block_migration` from 2.25;
`force` exists from 2.30 to 2.67 (no host here skips the scheduler's checks, so it changes
nothing). No host shares its instances' disks, so a live migration is a block migration
whenever the server has local disks; `block_migration: false` then gets Nova's refusal for a
host without shared storage. The API records the `Migration` (type `live-migration`,
`queued`) and the pending action; the server controller moves it
(`unistack.iaas.compute.controller`), the server's task state `migrating` meanwhile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from unistack.iaas.records import spec_of, status_of
from unistack.openstack.auth import AuthContext
from unistack.openstack.compute.migrations import start_resize
from unistack.openstack.compute.service import ComputeService, microversion
from unistack.openstack.microversion import Version
from unistack.openstack.web import bad_request, empty

Obj = dict[str, Any]
Pending = Callable[..., Awaitable[None]]
ACTION = "os-migrateLive"
TRUE = ("1", "t", "true", "on", "y", "yes")
FALSE = ("0", "f", "false", "off", "n", "no")


def parse(body: Any, version: Version) -> tuple[str | None, bool | None]:
    """(host, block_migration — None for `auto`) from the action's body, or Nova's 400."""
    if not isinstance(body, dict):
        raise _invalid(body, "is not of type 'object'")
    allowed = {"host", "block_migration"}
    required = ["block_migration", "host"]
    if not version.at_least("2.25"):
        allowed.add("disk_over_commit")
        required.append("disk_over_commit")
    if version.at_least("2.30") and not version.at_least("2.68"):
        allowed.add("force")
    extra = sorted(set(body) - allowed)
    if extra:
        raise _invalid(body, f"Additional properties are not allowed ('{extra[0]}' was unexpected)")
    for key in required:
        if key not in body:
            raise _invalid(body, f"'{key}' is a required property")
    host = body["host"]
    if host is not None and (not isinstance(host, str) or not 1 <= len(host) <= 255):
        raise bad_request(f"Invalid input for field/attribute host. Value: {host}.")
    block = body["block_migration"]
    for key in ("disk_over_commit", "force"):
        if key in body:
            _boolean(key, body[key])
    if block == "auto" and version.at_least("2.25"):
        return host, None
    return host, _boolean("block_migration", block)


def _boolean(key: str, value: Any) -> bool:
    """Nova's `parameter_types.boolean`: true/false, or their usual spellings."""
    if isinstance(value, bool):
        return value
    if str(value).lower() in TRUE:
        return True
    if str(value).lower() in FALSE:
        return False
    raise bad_request(f"Invalid input for field/attribute {key}. Value: {value}.")


def _invalid(body: Any, why: str) -> Exception:
    return bad_request(f"Invalid input for field/attribute {ACTION}. Value: {body}. {why}")


class LiveMigrations:
    """The `os-migrateLive` server action."""

    def __init__(
        self, service: ComputeService, pending: Pending, require_host: Callable[[str], None]
    ) -> None:
        self.service = service
        self.pending = pending
        self.require_host = require_host

    async def migrate_live(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        host, block = parse(body, microversion(request))
        status, server_id = status_of(server), server["metadata"]["name"]
        if host is not None:
            self.require_host(host)
            if host == status.get("host"):
                raise bad_request(
                    f"Unable to migrate instance ({server_id}) to current host ({host})."
                )
        if block is False and _has_local_disk(server):
            raise bad_request(
                f"{host or 'The destination host'} is not on shared storage: Shared storage "
                "live-migration requires either shared storage or boot-from-volume with no "
                "local disks."
            )
        flavor = spec_of(server).get("flavor") or {}
        migration_id = await start_resize(
            self.service, context, server, flavor, flavor, "live-migration", dest=host
        )
        await self.pending(
            request, context, server, "live-migration", "migrating",
            migration_id=migration_id, host=host,
        )  # fmt: skip
        return empty(202)


def _has_local_disk(server: Obj) -> bool:
    """A server with an image root disk or a flavor's ephemeral disk keeps disks on its host;
    one booted from a volume, with no ephemeral disk, keeps none there."""
    spec = spec_of(server)
    ephemeral = int((spec.get("flavor") or {}).get("ephemeral") or 0)
    return bool(spec.get("image_ref")) or ephemeral > 0
