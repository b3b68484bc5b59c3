"""What every compute handler shares: the records, the caller, the hosts, and the lookups
that word their misses as Nova does.

`ComputeService` is built once per gateway worker (`app.build`). Handlers (one module per
resource family: `flavors`, `keypairs`, `servers`, `server_actions`, ...) take it in their
constructor. `authenticate` is the token check; `visible_server` (and `server_of`, for paths
under `/servers/{server_id}`) finds a server the caller may see (another project's is a 404,
as in Nova); `call_as` sends a request to another service with the caller's own token, as
Nova's proxies do; `set_spec` and `set_status` write to a
server; `record_action` writes the
instance action an API call starts (`os-instance-actions`), which the controller finishes
with events. `require_unlocked` and `require_attachable` are Nova's 409 checks of a server.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from unistack.iaas.compute import kinds
from unistack.iaas.compute.driver import GuestPasswords
from unistack.iaas.compute.hosts import HostView
from unistack.iaas.compute.ports import Caller, GuestNics
from unistack.iaas.compute.volumes import GuestDisks
from unistack.iaas.records import Records, spec_of, status_of
from unistack.openstack.auth import AuthContext, TokenValidator, may_see
from unistack.openstack.microversion import Version, version_of
from unistack.openstack.web import OpenStackError, bad_request, base_url, conflict, not_found
from unistack.runtime.events import timestamp

Obj = dict[str, Any]
V2_1 = Version(2, 1)
ATTACHABLE = (kinds.ACTIVE, kinds.STOPPED, kinds.PAUSED)  # Nova: not suspended


def now_text() -> str:
    """Now, as the compute objects keep times (`2026-01-01T00:00:00Z`)."""
    return timestamp()


def microversion(request: Request) -> Version:
    """The version negotiated for this request (2.1 outside the versioned API)."""
    return version_of(request) if "microversion" in request.scope.get("state", {}) else V2_1


def require_version(request: Request, minimum: str) -> None:
    """A resource or action that came with microversion `minimum` is a 404 before it."""
    if not microversion(request).at_least(minimum):
        raise not_found("The resource could not be found.")


def removed_after(request: Request, last: str) -> None:
    """A resource Nova dropped after microversion `last` (the proxies end at 2.35): 404."""
    if microversion(request) > Version.parse(last):
        raise not_found("The resource could not be found.")


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id") or f"req-{uuid.uuid4()}")


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def integer(value: Any, name: str, minimum: int = 0) -> int:
    """An integer parameter (JSON number or numeric string), as Nova's schemas accept."""
    if isinstance(value, bool):
        raise bad_request(f"Invalid input for field/attribute {name}. Value: {value}.")
    try:
        number = int(str(value).strip()) if isinstance(value, str) else int(value)
        if isinstance(value, float) and value != number:
            raise ValueError
    except (TypeError, ValueError) as exc:
        raise bad_request(
            f"Invalid input for field/attribute {name}. Value: {value}. "
            f"{value!r} is not of type 'integer'"
        ) from exc
    if number < minimum:
        raise bad_request(
            f"Invalid input for field/attribute {name}. Value: {value}. "
            f"{value} is less than the minimum of {minimum}"
        )
    return number


_TRUE = ("1", "t", "true", "on", "y", "yes")
_FALSE = ("0", "f", "false", "off", "n", "no")


def boolean(value: Any, name: str) -> bool:
    """A boolean parameter as Nova's schemas take it: JSON true/false or their spellings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise bad_request(f"Invalid input for field/attribute {name}. Value: {value}.")


@dataclass
class ComputeService:
    records: Records
    validator: TokenValidator
    caller: Caller
    hosts: HostView
    # the guest's console from its host (`agentdriver.HostDrivers.console`); None when the
    # console is the fake driver's, kept on the server
    console: Callable[[Obj, int | None], Awaitable[str | None]] | None = None
    # where attached volumes reach the guest (`agentdriver.HostDrivers`); None: nowhere
    guest_disks: GuestDisks | None = None
    # who sets a guest's password (`agentdriver.HostDrivers`); None: nobody can
    guest_passwords: GuestPasswords | None = None
    # where interfaces attached to a living server reach its guest; None: nowhere
    guest_nics: GuestNics | None = None

    def authenticate(self, request: Request) -> AuthContext:
        return self.validator.authenticate(request.headers.get("x-auth-token"))

    def visible_server(self, context: AuthContext, server_id: str) -> Obj:
        server = self.records.get(kinds.SERVERS, server_id)
        if server is None or not may_see(context, spec_of(server).get("project_id")):
            raise not_found(f"Instance {server_id} could not be found.")
        return server

    def server_of(self, request: Request) -> tuple[AuthContext, Obj]:
        """The caller and the server its path names (`/servers/{server_id}/...`)."""
        context = self.authenticate(request)
        return context, self.visible_server(context, request.path_params["server_id"])

    async def call_as(
        self,
        request: Request,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Another service's API with the caller's own token, so that service decides what
        the caller may see and change (Nova's image, volume and network proxies)."""
        sent = {"x-auth-token": request.headers.get("x-auth-token", ""), **(headers or {})}
        return await self.caller.call(method, path, body, sent, params)

    async def set_spec(self, server: Obj, **changes: Any) -> Obj:
        """Write `changes` to the server's spec."""

        def change(obj: Obj) -> None:
            obj["spec"].update(changes)

        return await self.records.update(kinds.SERVERS, server["metadata"]["name"], change)

    async def set_status(self, server: Obj, **changes: Any) -> Obj:
        """Write `changes` to the server's status, stamped `updated_at`."""

        def change(obj: Obj) -> None:
            obj["status"].update(changes, updated_at=now_text())

        name = server["metadata"]["name"]
        return await self.records.update(kinds.SERVERS, name, change, status=True)

    def flavor(self, flavor_id: str) -> Obj:
        flavor = self.records.get(kinds.FLAVORS, flavor_object_name(flavor_id))
        if flavor is None:
            raise not_found(f"Flavor {flavor_id} could not be found.")
        return flavor

    async def record_action(
        self,
        request: Request,
        context: AuthContext,
        server: Obj,
        action: str,
        *,
        done: bool = False,
        error: str | None = None,
    ) -> None:
        """An instance action for `request` (its request id); `done` when the API itself did
        the work (attaching or detaching a port or a volume), so its event is there at once:
        Tempest's detach waiters wait for `compute_detach_interface` to be a Success; an
        `error` makes that event an Error saying why (and the action's message)."""
        spec = {
            "instance_uuid": server["metadata"]["name"],
            "project_id": spec_of(server).get("project_id"),
            "user_id": context.user_id,
            "action": action,
            "request_id": request_id(request),
            "start_time": now_text(),
            "started": time.time(),  # orders actions begun within one second
            "message": "Error" if done and error else None,
        }
        status: Obj = {"events": []}
        if done:
            host, result = status_of(server).get("host"), "Error" if error else "Success"
            status["events"] = [kinds.action_event(spec, host, now_text(), result, error)]
        await self.records.create(kinds.INSTANCE_ACTIONS, str(uuid.uuid4()), spec, status)


def flavor_object_name(flavor_id: str) -> str:
    """Flavor ids are free text ("1", "m1.tiny"); the object name is a DNS-safe form."""
    safe = "".join(c if c.isalnum() else "-" for c in flavor_id.lower()).strip("-")
    digest = uuid.uuid5(uuid.NAMESPACE_URL, f"flavor:{flavor_id}").hex[:8]
    return f"flavor-{safe[:40]}-{digest}" if safe else f"flavor-{digest}"


def conflict_state(server_id: str, action: str, attribute: str, state: Any) -> OpenStackError:
    return OpenStackError(
        409,
        f"Cannot '{action}' instance {server_id} while it is in {attribute} {state}",
    )


def require_unlocked(context: AuthContext, server: Obj) -> None:
    """A locked server refuses everyone but admins (409)."""
    if spec_of(server).get("locked") and not context.is_admin:
        raise conflict(f"Instance {server['metadata']['name']} is locked")


def require_attachable(
    context: AuthContext, server: Obj, action: str, shelved_too: bool = False
) -> None:
    """Attaching or detaching a port or a volume: the server is unlocked, running, stopped
    or paused (volumes from 2.20: shelved too), and has no task under way."""
    require_unlocked(context, server)
    server_id, status = server["metadata"]["name"], status_of(server)
    allowed = ATTACHABLE + ((kinds.SHELVED, kinds.SHELVED_OFFLOADED) if shelved_too else ())
    if status.get("vm_state") not in allowed:
        raise conflict_state(server_id, action, "vm_state", status.get("vm_state"))
    if status.get("task_state") or server["metadata"].get("deletionTimestamp"):
        raise conflict_state(server_id, action, "task_state", status.get("task_state"))


def links_for(request: Request, collection: str, object_id: str) -> list[Obj]:
    base = base_url(request)
    return [
        {"rel": "self", "href": f"{base}v2.1/{collection}/{object_id}"},
        {"rel": "bookmark", "href": f"{base}{collection}/{object_id}"},
    ]


def _id_of(item: Obj) -> str:
    return str(item["id"] if "id" in item else item["metadata"]["name"])


def page(
    items: list[Obj], request: Request, key: Callable[[Obj], str] = _id_of
) -> tuple[list[Obj], str | None]:
    """`limit` and `marker` over items already sorted; the marker of a next page, if any."""
    marker = request.query_params.get("marker")
    if marker:
        ids = [key(item) for item in items]
        if marker not in ids:
            raise bad_request(f"marker [{marker}] not found")
        items = items[ids.index(marker) + 1 :]
    limit_text = request.query_params.get("limit")
    if limit_text is None:
        return items, None
    limit = integer(limit_text, "limit")
    if len(items) > limit:
        return items[:limit], key(items[limit - 1]) if limit else None
    return items, None


def next_link(request: Request, collection: str, marker: str) -> list[Obj]:
    query = {k: v for k, v in request.query_params.items() if k != "marker"}
    query["marker"] = marker
    text = "&".join(f"{k}={v}" for k, v in query.items())
    return [{"rel": "next", "href": f"{base_url(request)}v2.1/{collection}?{text}"}]
