"""Server actions (`POST /servers/{id}/action`), as Nova v2.1 checks and accepts them.

Each action is declared by what it needs (`Rule`: the vm states it is allowed from, the task
state it sets) and handled in three steps: policy (members of the project; admin-only ones
such as `os-resetState`; a locked server refuses non-admins with 409), state (a 409 in
Nova's words: "Cannot 'reboot' instance X while it is in vm_state stopped"), then the
write. Long actions (reboot, stop, start, rebuild, resize, confirm and revert, createImage,
createBackup, shelve and unshelve: `server_images` makes the images)
set the task state and a `pending` action on the server's status in one compare-and-swap
write, for the controller to carry out, as are pause, suspend and their reverses (the guest
frozen or saved on its host), and rescue and unrescue (the rescue image booted with the
server's root disk as its second disk); quick ones (lock, unlock, reset state) are written
directly. `createImage` makes the image record through
the Image API at once (its Location is answered); security group and floating IP actions
go to the Networking API, and `addFixedIp` / `removeFixedIp` (up to 2.43) to `interfaces`.
A rebuild answers the server with its floating IPs
(`server_addresses`). The console output is the fake driver's log kept on the server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.compute import kinds
from unistack.iaas.compute.driver import PasswordError
from unistack.iaas.compute.ports import Networking
from unistack.iaas.records import spec_of, status_of
from unistack.openstack.auth import AuthContext, deny, require_admin, require_member
from unistack.openstack.compute import quotas
from unistack.openstack.compute.floating_ips import FloatingIps
from unistack.openstack.compute.interfaces import Interfaces
from unistack.openstack.compute.live_migration import LiveMigrations
from unistack.openstack.compute.migrations import start_resize
from unistack.openstack.compute.server_addresses import ServerAddresses
from unistack.openstack.compute.server_images import ServerImages
from unistack.openstack.compute.server_requests import (
    ServerRequests,
    access_ip,
    check_description,
    check_hostname,
    check_metadata,
    check_name,
    disk_config,
    personality,
    trusted_certs,
    user_data,
)
from unistack.openstack.compute.server_views import basic_view, shown_view
from unistack.openstack.compute.servers import image_properties
from unistack.openstack.compute.service import (
    ComputeService,
    conflict_state,
    integer,
    is_uuid,
    microversion,
    now_text,
    request_id,
    require_unlocked,
    require_version,
)
from unistack.openstack.microversion import Version
from unistack.openstack.web import (
    OpenStackError,
    bad_request,
    empty,
    json_response,
    not_found,
    read_json,
)

Obj = dict[str, Any]
NET = "/network/v2.0"
ACTIVE, STOPPED, ERROR, RESIZED = kinds.ACTIVE, kinds.STOPPED, kinds.ERROR, kinds.RESIZED
PAUSED, SUSPENDED = kinds.PAUSED, kinds.SUSPENDED


@dataclass(frozen=True)
class Rule:
    vm_states: tuple[str, ...]
    task_state: str | None = None  # what the action sets while under way


RULES: dict[str, Rule] = {
    "reboot": Rule((ACTIVE, STOPPED, PAUSED, SUSPENDED, ERROR), "rebooting"),
    "os-stop": Rule((ACTIVE, ERROR), "powering-off"),
    "os-start": Rule((STOPPED,), "powering-on"),
    "rebuild": Rule((ACTIVE, STOPPED, ERROR), "rebuilding"),
    "resize": Rule((ACTIVE, STOPPED), "resize_prep"),
    "migrate": Rule((ACTIVE, STOPPED), "resize_prep"),
    "confirmResize": Rule((RESIZED,)),
    "revertResize": Rule((RESIZED,), "resize_reverting"),
    "pause": Rule((ACTIVE,), "pausing"),
    "unpause": Rule((PAUSED,), "unpausing"),
    "suspend": Rule((ACTIVE,), "suspending"),
    "resume": Rule((SUSPENDED,), "resuming"),
    "rescue": Rule((ACTIVE, STOPPED, ERROR), "rescuing"),
    "shelve": Rule((ACTIVE, STOPPED, PAUSED, SUSPENDED), "shelving"),
    "shelveOffload": Rule((kinds.SHELVED,)),
    "unshelve": Rule((kinds.SHELVED, kinds.SHELVED_OFFLOADED), "unshelving"),
    "unrescue": Rule((kinds.RESCUED,), "unrescuing"),
    "lock": Rule(()),
    "unlock": Rule(()),
    "os-getConsoleOutput": Rule(()),
    "changePassword": Rule((ACTIVE,)),
    "createImage": Rule((ACTIVE, STOPPED, PAUSED, SUSPENDED), "image_snapshot"),
    "createBackup": Rule((ACTIVE, STOPPED, PAUSED, SUSPENDED), "image_backup"),
    "addSecurityGroup": Rule(()),
    "addFloatingIp": Rule(()),
    "removeFloatingIp": Rule(()),
    "addFixedIp": Rule(()),
    "removeFixedIp": Rule(()),
    "removeSecurityGroup": Rule(()),
    "os-resetState": Rule(()),
    "injectNetworkInfo": Rule(()),
    "resetNetwork": Rule(()),
    "restore": Rule(("soft-delete",)),
    "forceDelete": Rule(("soft-delete",)),
    "os-migrateLive": Rule((ACTIVE, PAUSED), "migrating"),
}
# actions Nova dropped after 2.43: the floating IP proxies and multinic
RETIRED_AFTER = {
    "addFloatingIp": "2.43",
    "removeFloatingIp": "2.43",
    "addFixedIp": "2.43",
    "removeFixedIp": "2.43",
}
ADMIN_ONLY = ("os-resetState", "injectNetworkInfo", "resetNetwork")
POLICIES = {
    "migrate": "os_compute_api:os-migrate-server:migrate",
    "os-migrateLive": "os_compute_api:os-migrate-server:migrate_live",
}
NO_LOCK_CHECK = ("lock", "unlock", "os-getConsoleOutput", *ADMIN_ONLY)
_CONSOLE_PROTOCOLS = ("vnc", "spice", "rdp", "serial", "mks")
_PENDING = {
    "os-stop": "stop",
    "os-start": "start",
    **{action: action for action in ("pause", "unpause", "suspend", "resume", "unrescue")},
}


class ServerActions:
    def __init__(self, service: ComputeService) -> None:
        self.service = service
        self.records = service.records
        self.requests = ServerRequests(service)
        self.addresses = ServerAddresses(Networking(service.caller))
        floating = FloatingIps(service)
        interfaces = Interfaces(service)
        images = ServerImages(service, self._pending)
        live = LiveMigrations(service, self._pending, self._require_host)
        self.handlers: dict[str, Callable[[Request, AuthContext, Obj, Any], Awaitable[Response]]]
        self.handlers = {
            "reboot": self.reboot,
            "os-stop": self.simple_pending,
            "os-start": self.simple_pending,
            "rebuild": self.rebuild,
            "resize": self.resize,
            "migrate": self.migrate,
            "confirmResize": self.confirm_resize,
            "revertResize": self.revert_resize,
            "pause": self.simple_pending,
            "unpause": self.simple_pending,
            "suspend": self.simple_pending,
            "resume": self.simple_pending,
            "rescue": self.rescue,
            "shelve": images.shelve,
            "shelveOffload": self.no_op,
            "unshelve": self.unshelve,
            "unrescue": self.simple_pending,
            "lock": self.lock,
            "unlock": self.unlock,
            "os-getConsoleOutput": self.console_output,
            "changePassword": self.change_password,
            "createImage": images.create_image,
            "createBackup": images.create_backup,
            "addFloatingIp": floating.associate,
            "removeFloatingIp": floating.disassociate,
            "addFixedIp": interfaces.add_fixed_ip,
            "removeFixedIp": interfaces.remove_fixed_ip,
            "addSecurityGroup": self.change_security_groups,
            "removeSecurityGroup": self.change_security_groups,
            "os-resetState": self.reset_state,
            "injectNetworkInfo": self.no_op,
            "resetNetwork": self.no_op,
            "restore": self.no_op,
            "forceDelete": self.no_op,
            "os-migrateLive": live.migrate_live,
        }

    def routes(self) -> list[Route]:
        return [
            Route("/v2.1/servers/{server_id}/action", self.server_action, methods=["POST"]),
            Route(
                "/v2.1/servers/{server_id}/remote-consoles", self.remote_console, methods=["POST"]
            ),
        ]

    async def server_action(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_member(context, "os_compute_api:servers:action")
        server = self.service.visible_server(context, request.path_params["server_id"])
        body = await read_json(request)
        names = [name for name in body if name in self.handlers]
        if len(names) != 1:
            raise bad_request("There is no such action: " + ", ".join(body) if body else "")
        name = names[0]
        if name in RETIRED_AFTER and microversion(request) > Version.parse(RETIRED_AFTER[name]):
            raise not_found(f"There is no such action: {name}")
        if name in ADMIN_ONLY or name in POLICIES:
            require_admin(context, POLICIES.get(name, f"os_compute_api:{name}"))
        if name not in NO_LOCK_CHECK:
            require_unlocked(context, server)
        self._check_state(server, name)
        request.scope.setdefault("state", {})["compute_action"] = name
        return await self.handlers[name](request, context, server, body[name])

    def _check_state(self, server: Obj, action: str) -> None:
        rule, status = RULES[action], status_of(server)
        server_id = server["metadata"]["name"]
        if server["metadata"].get("deletionTimestamp"):
            raise conflict_state(server_id, action, "task_state", "deleting")
        if not rule.vm_states:
            return
        vm_state = status.get("vm_state") or kinds.BUILDING
        if vm_state not in rule.vm_states:
            raise conflict_state(server_id, action, "vm_state", vm_state)
        if status.get("task_state"):
            raise conflict_state(server_id, action, "task_state", status["task_state"])

    async def _pending(
        self,
        request: Request,
        context: AuthContext,
        server: Obj,
        action: str,
        task: str,
        **args: Any,
    ) -> None:
        """Set the task state and the pending action in one write, unless another action
        got there first (then 409, as Nova's expected task state check)."""
        server_id = server["metadata"]["name"]

        def change(obj: Obj) -> None:
            if obj["status"].get("task_state"):
                raise conflict_state(server_id, action, "task_state", obj["status"]["task_state"])
            pending = {"action": action, "request_id": request_id(request), **args}
            obj["status"].update(task_state=task, pending=pending, updated_at=now_text())

        await self.service.record_action(request, context, server, action)
        await self.records.update(kinds.SERVERS, server_id, change, status=True)

    # --- long actions -------------------------------------------------------------------

    async def reboot(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        kind = body.get("type") if isinstance(body, dict) else None
        if kind not in ("SOFT", "HARD", "soft", "hard"):
            raise bad_request(f"Invalid input for field/attribute type. Value: {kind}.")
        kind = kind.upper()
        vm_state = status_of(server).get("vm_state")
        if kind == "SOFT" and vm_state != ACTIVE:
            raise conflict_state(server["metadata"]["name"], "reboot", "vm_state", vm_state)
        task = "rebooting_hard" if kind == "HARD" else "rebooting"
        await self._pending(request, context, server, "reboot", task, type=kind)
        return empty(202)

    async def simple_pending(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        action = _which(request, "os-stop")
        task = RULES[action].task_state or ""
        await self._pending(request, context, server, _PENDING[action], task)
        return empty(202)

    async def change_password(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        """The guest's administrator password, set on its host at once (Nova's
        set_admin_password): 202; 409 when the guest could not take it, 501 when this kind
        of guest never can."""
        password = body.get("adminPass") if isinstance(body, dict) else None
        if not isinstance(password, str):
            raise bad_request(
                "Invalid input for field/attribute changePassword. 'adminPass' is a required "
                "property"
            )
        error = None
        if self.service.guest_passwords is not None:
            try:
                await self.service.guest_passwords.set_password(
                    server["metadata"]["name"], password
                )
            except PasswordError as failed:
                if failed.not_supported:
                    raise OpenStackError(501, "Unable to set password on instance") from None
                error = failed.message
        await self.service.record_action(
            request, context, server, "changePassword", done=True, error=error
        )
        if error is not None:
            raise OpenStackError(409, f"Failed to set admin password: {error}")
        return empty(202)

    async def rebuild(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute rebuild.")
        version = microversion(request)
        _check_rebuild_keys(body, version)
        ref = str(body.get("imageRef") or "").rstrip("/").rsplit("/", 1)[-1]
        if not is_uuid(ref):
            raise bad_request("Invalid imageRef provided.")
        image = await self.requests.image(context, ref)
        self.requests.check_fits(spec_of(server).get("flavor") or {}, image)
        changes = _rebuild_changes(body, version)
        changes |= {"image_ref": ref, "image_properties": image_properties(image)}
        if changes.get("key_name") is not None:
            self.requests.key_name(context, changes["key_name"])
        if "personality" in changes:
            project_id = str(spec_of(server).get("project_id"))
            quotas.check_files(self.records, project_id, changes["personality"])
        await self._pending(request, context, server, "rebuild", "rebuilding")
        written = await self.addresses.current(await self.service.set_spec(server, **changes))
        if version.at_least("2.75"):
            view = shown_view(request, written, context, self.service.hosts.host_status)
            view.pop("OS-EXT-SRV-ATTR:user_data", None)
            view["user_data"] = spec_of(written).get("user_data")
            return json_response({"server": view}, 202)
        return json_response({"server": basic_view(request, written, rebuilt=True)}, 202)

    async def resize(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        if not isinstance(body, dict) or "flavorRef" not in body:
            raise bad_request("Invalid input for field/attribute resize.")
        ref = str(body["flavorRef"]).rstrip("/").rsplit("/", 1)[-1]
        flavor = self.requests.flavor(context, ref)
        old = spec_of(server).get("flavor") or {}
        if str(old.get("id")) == str(flavor["id"]):
            raise bad_request("When resizing, instances must change flavor!")
        grow = {k: max(0, int(flavor.get(k, 0)) - int(old.get(k, 0))) for k in ("vcpus", "ram")}
        _check_growth(self.records, spec_of(server), grow)
        new = {k: flavor.get(k) for k in old} | {k: flavor.get(k) for k in ("id", "name")}
        migration_id = await start_resize(self.service, context, server, old, new)
        await self._pending(
            request, context, server, "resize", "resize_prep", migration_id=migration_id
        )
        await self.service.set_status(server, old_flavor=old, migration_id=migration_id)
        changes: Obj = {"flavor": new}
        if "OS-DCF:diskConfig" in body:
            changes["disk_config"] = disk_config(body)
        await self.service.set_spec(server, **changes)
        return empty(202)

    def _require_host(self, host: str) -> None:
        """400 unless `host` is a compute host (a Node), as Nova answers an unknown one."""
        if host not in {node["metadata"]["name"] for node in self.service.hosts.all_nodes()}:
            raise bad_request(f"Compute host {host} could not be found.")

    async def migrate(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        """Cold migration (admin): to the scheduler's choice of another host, or from 2.56 to
        `host`; VERIFY_RESIZE there, to be confirmed or reverted like a resize."""
        host = None
        if body is not None and microversion(request).at_least("2.56"):  # before: ignored
            host = body.get("host") if isinstance(body, dict) else None
            if not isinstance(body, dict) or not set(body) <= {"host"}:
                raise bad_request(f"Invalid input for field/attribute migrate. Value: {body}.")
            if host is not None and (not isinstance(host, str) or not 1 <= len(host) <= 255):
                raise bad_request(f"Invalid input for field/attribute host. Value: {host}.")
        if host is not None:
            self._require_host(host)
            if host == status_of(server).get("host"):
                raise bad_request("Cannot migrate to the host where the server exists.")
        flavor = spec_of(server).get("flavor") or {}
        migration_id = await start_resize(
            self.service, context, server, flavor, flavor, migration_type="migration"
        )
        await self._pending(
            request, context, server, "migrate", "resize_prep", migration_id=migration_id, host=host
        )
        await self.service.set_status(server, old_flavor=flavor, migration_id=migration_id)
        return empty(202)

    async def confirm_resize(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        await self._pending(request, context, server, "confirmResize", "resize_confirming")
        return empty(204)

    async def revert_resize(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        old = status_of(server).get("old_flavor") or spec_of(server).get("flavor")
        await self._pending(request, context, server, "revertResize", "resize_reverting")
        await self.service.set_spec(server, flavor=old)
        return empty(202)

    async def rescue(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        """Boot the rescue image (`rescue_image_ref`, else the server's own) with the
        server's root disk as its second disk; a stable device rescue when the image has
        `hw_rescue_device` or `hw_rescue_bus` (every disk kept, the rescue disk added on that
        bus). A server booted from a volume has no root disk of its own to give: from 2.87 it
        is rescued with such an image, before that it is a 400, as in Nova. Nova answers 200
        with the password only when it sets one: no guest agent here sets it."""
        if body is not None and (
            not isinstance(body, dict) or not set(body) <= {"adminPass", "rescue_image_ref"}
        ):
            raise bad_request(f"Invalid input for field/attribute rescue. Value: {body}.")
        body = body or {}
        if "adminPass" in body and not isinstance(body["adminPass"], str):
            raise bad_request("Invalid input for field/attribute adminPass.")
        server_id = server["metadata"]["name"]
        image_ref = body.get("rescue_image_ref")
        if image_ref is not None and (not isinstance(image_ref, str) or not is_uuid(image_ref)):
            raise bad_request(
                f"Invalid input for field/attribute rescue_image_ref. Value: {image_ref}."
            )
        image = await self.requests.image(context, image_ref) if image_ref else None
        stable = _stable_rescue(image or {})
        if not spec_of(server).get("image_ref"):  # booted from a volume
            if not microversion(request).at_least("2.87"):
                raise bad_request(
                    f"Instance {server_id} cannot be rescued: Cannot rescue a volume-backed "
                    "instance"
                )
            if image_ref is None:
                raise bad_request(
                    f"Instance {server_id} cannot be rescued: Cannot rescue a volume-backed "
                    "instance without a rescue image"
                )
            if not stable:
                raise bad_request(f"Requested rescue image '{image_ref}' is not supported")
        extra = {"image_ref": image_ref} if image_ref else {}
        await self._pending(request, context, server, "rescue", "rescuing", **extra)
        return json_response({})

    # --- quick actions --------------------------------------------------------------------

    async def lock(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        owner = "admin" if context.is_admin else "owner"
        reason = None
        if microversion(request).at_least("2.73") and isinstance(body, dict):
            reason = body.get("locked_reason")
            if reason is not None and (not isinstance(reason, str) or len(reason) > 255):
                raise bad_request(
                    f"Invalid input for field/attribute locked_reason. Value: {reason}."
                )
        elif body is not None and body != {} and microversion(request).at_least("2.73"):
            raise bad_request("Invalid input for field/attribute lock.")
        await self.service.record_action(request, context, server, "lock")
        await self.service.set_spec(server, locked=True, locked_by=owner, locked_reason=reason)
        return empty(202)

    async def unlock(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        if spec_of(server).get("locked_by") == "admin" and not context.is_admin:
            raise deny("os_compute_api:os-lock-server:unlock:unlock_override")
        await self.service.record_action(request, context, server, "unlock")
        await self.service.set_spec(server, locked=False, locked_by=None, locked_reason=None)
        return empty(202)

    async def change_security_groups(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise bad_request("Security group name cannot be empty")
        adding = _which(request, "addSecurityGroup") == "addSecurityGroup"
        project_id = str(spec_of(server).get("project_id"))
        group_id = await self._group_id(name, project_id)
        names = list(spec_of(server).get("security_groups") or [])
        if not adding and name not in names:
            raise bad_request(f"Security group {name} not associated with the instance")
        for port_id in status_of(server).get("ports") or []:
            await self._set_port_groups(str(port_id), group_id, adding)
        names = sorted({*names, name}) if adding else [n for n in names if n != name]
        await self.service.set_spec(server, security_groups=names)
        return empty(202)

    async def _group_id(self, name: str, project_id: str) -> str:
        query = {"name": name, "project_id": project_id}
        status, body = await self.service.caller.call("GET", f"{NET}/security-groups", params=query)
        found = body.get("security_groups", []) if status == 200 else []
        if not found:
            raise not_found(f"Security group {name} not found for project {project_id}.")
        return str(found[0]["id"])

    async def _set_port_groups(self, port_id: str, group_id: str, adding: bool) -> None:
        status, body = await self.service.caller.call("GET", f"{NET}/ports/{port_id}")
        if status != 200:
            return
        groups = list(body["port"].get("security_groups") or [])
        groups = sorted({*groups, group_id}) if adding else [g for g in groups if g != group_id]
        change = {"port": {"security_groups": groups}}
        await self.service.caller.call("PUT", f"{NET}/ports/{port_id}", change)

    async def unshelve(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        """Schedule the shelved server again: from 2.77 into an `availability_zone`, from 2.91
        (admin) onto a `host`, which needs it offloaded."""
        version, place = microversion(request), {}
        if isinstance(body, dict) and version.at_least("2.77"):
            allowed = (
                {"availability_zone", "host"} if version.at_least("2.91") else {"availability_zone"}
            )
            if not set(body) <= allowed:
                raise bad_request(f"Invalid input for field/attribute unshelve. Value: {body}.")
            zone = body.get("availability_zone")
            if zone is not None and (not isinstance(zone, str) or not zone):
                raise bad_request(
                    f"Invalid input for field/attribute availability_zone. Value: {zone}."
                )
            place["zone"] = zone
            host = body.get("host")
            if host is not None:
                require_admin(context, "os_compute_api:os-shelve:unshelve_to_host")
                vm_state = status_of(server).get("vm_state")
                if vm_state != kinds.SHELVED_OFFLOADED:
                    name = server["metadata"]["name"]
                    raise conflict_state(name, "unshelve", "vm_state", vm_state)
                self._require_host(host)
                place["host"] = host
        await self._pending(request, context, server, "unshelve", "unshelving", **place)
        return empty(202)

    async def reset_state(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        state = body.get("state") if isinstance(body, dict) else None
        if state not in ("active", "error"):
            raise bad_request(f"Invalid input for field/attribute state. Value: {state}.")
        await self.service.record_action(request, context, server, "resetState")
        await self.service.set_status(server, vm_state=state, task_state=None, pending=None)
        return empty(202)

    async def no_op(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        """Actions with nothing to do on the fake driver (network info is never stale)."""
        return empty(202)

    async def remote_console(self, request: Request) -> Response:
        """`POST /servers/{id}/remote-consoles` (2.6): no graphical or serial console is
        served, so every protocol and type is Nova's "Unavailable console type" (400)."""
        require_version(request, "2.6")
        context, _ = self.service.server_of(request)
        require_member(context, "os_compute_api:os-remote-consoles")
        body = (await read_json(request)).get("remote_console")
        if not isinstance(body, dict) or body.get("protocol") not in _CONSOLE_PROTOCOLS:
            raise bad_request("Invalid input for field/attribute remote_console.")
        raise bad_request(f"Unavailable console type {body.get('type')}.")

    async def console_output(
        self, request: Request, context: AuthContext, server: Obj, body: Any
    ) -> Response:
        length = body.get("length") if isinstance(body, dict) else None
        kept: list[str] = status_of(server).get("console") or []
        output = "".join(f"{line}\n" for line in kept)
        live = await self.service.console(server, None) if self.service.console else None
        if live is not None:
            output = live if live.endswith("\n") or not live else live + "\n"
        if length is not None and str(length) != "-1":
            count = integer(length, "length", -1)
            output = "\n".join(output.split("\n")[-count:]) if count > 0 else ""
        return json_response({"output": output})


_REBUILD_KEYS = {
    "imageRef", "name", "metadata", "OS-DCF:diskConfig", "accessIPv4", "accessIPv6",
    "adminPass", "personality", "preserve_ephemeral",
}  # fmt: skip
_REBUILD_KEYS_SINCE = (
    ("2.19", "description"),
    ("2.54", "key_name"),
    ("2.57", "user_data"),
    ("2.63", "trusted_image_certificates"),
    ("2.90", "hostname"),
)


def _check_rebuild_keys(body: Obj, version: Version) -> None:
    allowed = set(_REBUILD_KEYS)
    if version.at_least("2.57"):
        allowed.discard("personality")
    allowed |= {key for minimum, key in _REBUILD_KEYS_SINCE if version.at_least(minimum)}
    for key in body:
        if key not in allowed:
            raise bad_request(
                "Invalid input for field/attribute rebuild. Additional properties are not "
                f"allowed ('{key}' was unexpected)"
            )


def _rebuild_changes(body: Obj, version: Version) -> Obj:
    """What a rebuild changes besides the image, each checked as Nova's schema does."""
    changes: Obj = {}
    if "name" in body:
        changes["name"] = check_name(body["name"])
    if "metadata" in body:
        changes["metadata"] = check_metadata(body["metadata"])
    if "OS-DCF:diskConfig" in body:
        changes["disk_config"] = disk_config(body)
    for key, field in (("accessIPv4", "access_ipv4"), ("accessIPv6", "access_ipv6")):
        if key in body:
            changes[field] = access_ip(body, key)
    if "description" in body:
        changes["description"] = check_description(body["description"])
    if "key_name" in body:  # null removes the key pair
        name = body["key_name"]
        if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 255):
            raise bad_request(f"Invalid input for field/attribute key_name. Value: {name}.")
        changes["key_name"] = name
    if "user_data" in body:
        changes["user_data"] = user_data(body["user_data"])
    if "personality" in body:
        changes["personality"] = personality(body["personality"])
    if "trusted_image_certificates" in body:
        changes["trusted_image_certificates"] = trusted_certs(body["trusted_image_certificates"])
    if "hostname" in body:
        changes["hostname"] = check_hostname(body["hostname"], version)
    return changes


# a stable device rescue's device on each bus (disk: every bus; cdrom: scsi and ide)
_RESCUE_BUSES = {"disk": ("virtio", "scsi", "usb", "ide"), "cdrom": ("scsi", "ide")}


def _stable_rescue(image: Obj) -> bool:
    """Whether a rescue image asks for a stable device rescue (`hw_rescue_device`,
    `hw_rescue_bus`); 400 for a device or bus the qemu driver cannot give a guest."""
    device, bus = image.get("hw_rescue_device"), image.get("hw_rescue_bus")
    if device is not None and device not in _RESCUE_BUSES:
        raise bad_request(f"Requested rescue device '{device}' is not supported")
    buses = _RESCUE_BUSES[device or "disk"]
    if bus is not None and bus not in buses:
        raise bad_request(f"Requested rescue bus '{bus}' is not supported by the qemu virt driver")
    return device is not None or bus is not None


def _which(request: Request, default: str) -> str:
    """The action named in the body (stored by `server_action` on the request state)."""
    return str(request.scope.get("state", {}).get("compute_action") or default)


def _check_growth(records: Any, spec: Obj, grow: dict[str, int]) -> None:
    project_id = str(spec.get("project_id"))
    limits, used = quotas.limits_of(records, project_id), quotas.usage_of(records, project_id)
    for key, quota in (("vcpus", "cores"), ("ram", "ram")):
        if limits[quota] >= 0 and used[quota] + grow[key] > limits[quota]:
            raise OpenStackError(
                403,
                f"Quota exceeded for {quota}: Requested {grow[key]}, but already used "
                f"{used[quota]} of {limits[quota]} {quota}",
            )
