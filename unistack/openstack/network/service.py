"""What every Neutron handler shares: the records, the allocator, who is calling, who may
see and change what, the standard attributes, quota enforcement, writes that stamp a new
revision (`revise`), and the checks and shapes of request bodies (one or many on create,
read-only attributes on update).

Policy is Neutron's default in its simplest faithful form: an admin sees and changes
everything; a member creates and changes what its project owns; a reader only reads; another
project's objects are invisible (404), except shared and external networks (and their
subnets; an external network's subnets stay its owner's), which every project reads and uses
for its ports and floating IPs, and shared subnet pools.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from unistack.iaas.crds import Kind
from unistack.iaas.network import kinds
from unistack.iaas.network.allocations import INDEXERS as ALLOCATION_INDEXERS
from unistack.iaas.network.allocations import Allocator
from unistack.iaas.network.stamps import stamp_update
from unistack.iaas.records import Missing, Obj, Records, spec_of
from unistack.openstack import auth
from unistack.openstack.auth import AuthContext, TokenValidator
from unistack.openstack.web import OpenStackError, json_response, read_json
from unistack.runtime.informer import IndexFunc

QUOTA_DEFAULTS = {
    "network": 100,
    "subnet": 100,
    "subnetpool": -1,
    "port": 500,
    "router": 10,
    "floatingip": 50,
    "security_group": 10,
    "security_group_rule": 100,
    "rbac_policy": 10,
}
QUOTA_KINDS = {
    "network": kinds.NETWORKS,
    "subnet": kinds.SUBNETS,
    "port": kinds.PORTS,
    "router": kinds.ROUTERS,
    "floatingip": kinds.FLOATING_IPS,
    "security_group": kinds.SECURITY_GROUPS,
    "security_group_rule": kinds.SECURITY_GROUP_RULES,
}


def _spec_key(key: str) -> Callable[[Obj], list[str]]:
    def index(obj: Obj) -> list[str]:
        value = spec_of(obj).get(key)
        return [str(value)] if value else []

    return index


def _fixed_ip_subnets(obj: Obj) -> list[str]:
    return [str(ip.get("subnet_id")) for ip in spec_of(obj).get("fixed_ips") or []]


INDEXERS: dict[Kind, dict[str, IndexFunc]] = {
    kinds.SUBNETS: {"network": _spec_key("network_id")},
    kinds.PORTS: {
        "network": _spec_key("network_id"),
        "device": _spec_key("device_id"),
        "mac": _spec_key("mac_address"),
        "subnet": _fixed_ip_subnets,
    },
    kinds.SECURITY_GROUP_RULES: {"group": _spec_key("security_group_id")},
    kinds.FLOATING_IPS: {"port": _spec_key("port_id"), "network": _spec_key("floating_network_id")},
    kinds.ALLOCATIONS: dict(ALLOCATION_INDEXERS),
}


def new_id() -> str:
    return str(uuid.uuid4())


def standard(obj: Obj) -> Obj:
    """The attributes every Neutron resource shows."""
    spec = spec_of(obj)
    project = spec.get("project_id") or ""
    return {
        "id": obj["metadata"]["name"],
        "name": spec.get("name", ""),
        "description": spec.get("description", ""),
        "project_id": project,
        "tenant_id": project,
        "tags": list(spec.get("tags") or []),
        "created_at": spec.get("created_at"),
        "updated_at": spec.get("updated_at"),
        "revision_number": spec.get("revision_number", 0),
    }


def bad(message: str, error_type: str = "HTTPBadRequest") -> OpenStackError:
    return OpenStackError(400, message, error_type=error_type)


def missing(error_type: str, message: str) -> OpenStackError:
    return OpenStackError(404, message, error_type=error_type)


def in_use(error_type: str, message: str) -> OpenStackError:
    return OpenStackError(409, message, error_type=error_type)


class NetworkService:
    """The shared state of the Neutron facade in one gateway worker."""

    def __init__(self, records: Records, validator: TokenValidator, admin_project: str) -> None:
        self.records = records
        self.validator = validator
        self.allocator = Allocator(records)
        self.admin_project = admin_project

    def context(self, request: Request) -> AuthContext:
        return self.validator.authenticate(request.headers.get("x-auth-token"))

    # --- visibility ----------------------------------------------------------------------

    def owns(self, context: AuthContext, obj: Obj) -> bool:
        return auth.may_see(context, spec_of(obj).get("project_id"))

    def sees_network(self, context: AuthContext, network: Obj) -> bool:
        spec = spec_of(network)
        return self.owns(context, network) or bool(
            spec.get("shared") or spec.get("router:external")
        )

    def sees(self, context: AuthContext, kind: Kind, obj: Obj) -> bool:
        if kind == kinds.NETWORKS:
            return self.sees_network(context, obj)
        if kind == kinds.SUBNETS:
            if self.owns(context, obj):
                return True
            network = self.records.get(kinds.NETWORKS, spec_of(obj).get("network_id"))
            return bool(spec_of(network).get("shared"))
        if kind == kinds.SUBNET_POOLS:
            return self.owns(context, obj) or bool(spec_of(obj).get("shared"))
        return self.owns(context, obj)

    def visible(self, context: AuthContext, kind: Kind) -> list[Obj]:
        return [
            obj
            for obj in self.records.all(kind)
            if self.sees(context, kind, obj) and not obj["metadata"].get("deletionTimestamp")
        ]

    def find(
        self, context: AuthContext, kind: Kind, object_id: str, error_type: str, label: str
    ) -> Obj:
        obj = self.records.get(kind, object_id)
        if obj is None or not self.sees(context, kind, obj):
            raise missing(error_type, f"{label} {object_id} could not be found.")
        return obj

    # --- writes --------------------------------------------------------------------------

    def may_write(
        self, context: AuthContext, obj: Obj, rule: str, error_type: str, label: str
    ) -> None:
        """Changing `obj`: 404 if the caller cannot see it as its own, 403 for readers."""
        if not self.owns(context, obj):
            raise missing(error_type, f"{label} {obj['metadata']['name']} could not be found.")
        auth.require_member(context, rule)

    def owner_of_new(self, context: AuthContext, body: Obj, rule: str) -> str:
        """The project a new object belongs to: the caller's, or (admins) the one asked for."""
        auth.require_member(context, rule)
        asked = body.get("project_id") or body.get("tenant_id")
        if (
            body.get("project_id")
            and body.get("tenant_id")
            and body["project_id"] != body["tenant_id"]
        ):
            raise bad("'project_id' and 'tenant_id' do not match")
        own = context.project_id or ""
        if asked and asked != own:
            auth.require_admin(context, rule)
            return str(asked)
        if not own:
            raise bad("A project-scoped token is required.")
        return own

    async def body_of(self, request: Request, member: str) -> Obj:
        data = await read_json(request)
        inner = data.get(member)
        if not isinstance(inner, dict):
            raise bad(f"Resource body required: '{member}' is missing or not an object.")
        return inner

    async def revise(self, kind: Kind, object_id: str, changes: Obj | Callable[[Obj], None]) -> Obj:
        """Change an object's spec — new values, or a function of the current spec (applied
        on the fresh object at each retry) — and stamp the change (a new revision)."""

        def change(obj: Obj) -> None:
            if isinstance(changes, dict):
                obj["spec"].update(changes)
            else:
                changes(obj["spec"])
            stamp_update(obj["spec"])

        return await self.records.update(kind, object_id, change)

    # --- teardown shared by networks, subnets, ports and routers ------------------------

    async def release_port(self, port: Obj) -> None:
        """Delete a port and free its addresses (its floating IPs are disassociated)."""
        port_id = port["metadata"]["name"]
        unlinked = {"port_id": None, "fixed_ip_address": None, "router_id": None}
        for floating in self.records.indexed(kinds.FLOATING_IPS, "port", port_id):
            await self.revise(kinds.FLOATING_IPS, floating["metadata"]["name"], unlinked)
        with contextlib.suppress(Missing):
            await self.records.delete(kinds.PORTS, port_id)
        pairs = [(ip["subnet_id"], ip["ip_address"]) for ip in spec_of(port).get("fixed_ips") or []]
        await self.allocator.release_all(pairs)

    async def release_floating_ip(self, floating: Obj) -> None:
        spec = spec_of(floating)
        with contextlib.suppress(Missing):
            await self.records.delete(kinds.FLOATING_IPS, floating["metadata"]["name"])
        subnet, address = spec.get("subnet_id"), spec.get("floating_ip_address")
        await self.allocator.release_address(str(subnet), str(address))

    async def drop_subnet(self, subnet: Obj) -> None:
        subnet_id = subnet["metadata"]["name"]
        with contextlib.suppress(Missing):
            await self.records.delete(kinds.SUBNETS, subnet_id)
        for held in self.records.indexed(kinds.ALLOCATIONS, "subnet", subnet_id):
            await self.allocator.release_address(subnet_id, str(spec_of(held)["ip_address"]))

    # --- quotas --------------------------------------------------------------------------

    def quota_of(self, project_id: str) -> dict[str, int]:
        limits = dict(QUOTA_DEFAULTS)
        obj = self.records.get(kinds.QUOTAS, project_id)
        limits.update(spec_of(obj).get("limits") or {})
        return limits

    def used(self, project_id: str, resource: str) -> int:
        kind = QUOTA_KINDS.get(resource)
        return len(self.records.of_project(kind, project_id)) if kind else 0

    def check_quota(self, project_id: str, resource: str, adding: int = 1) -> None:
        limit = self.quota_of(project_id).get(resource, -1)
        if limit >= 0 and self.used(project_id, resource) + adding > limit:
            raise in_use("OverQuota", f"Quota exceeded for resources: ['{resource}'].")


def is_true(value: Any) -> bool | None:
    """Neutron's boolean conversion: JSON booleans and 'true'/'false' strings, else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return None


def boolean(body: Obj, key: str, default: bool) -> bool:
    if key not in body:
        return default
    value = is_true(body[key])
    if value is None:
        raise bad(f"Invalid input for {key}. Reason: '{body[key]}' is not a valid boolean value.")
    return value


def text(body: Obj, key: str, default: str = "", limit: int = 255) -> str:
    value = body.get(key, default)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise bad(f"Invalid input for {key}. Reason: '{value}' is not a valid string.")
    if len(value) > limit:
        raise bad(f"Invalid input for {key}. Reason: '{value}' exceeds maximum length of {limit}.")
    return value


def reject_unknown(body: Obj, allowed: set[str]) -> None:
    for key in body:
        if key not in allowed:
            raise bad(f"Unrecognized attribute(s) '{key}'")


def reject_read_only(body: Obj, writable: set[str], known: set[str]) -> None:
    """An update body: only `writable` attributes; the other `known` ones are read-only."""
    for key in body:
        if key not in writable:
            raise bad(
                f"Cannot update read-only attribute {key}"
                if key in known
                else f"Unrecognized attribute(s) '{key}'"
            )


def requested_tags(body: Obj) -> list[str]:
    return [t for t in body.get("tags") or [] if isinstance(t, str)]


async def create_one_or_many(
    request: Request,
    member: str,
    collection: str,
    create: Callable[[Any], Awaitable[Obj]],
    view: Callable[[Obj], Obj],
) -> Response:
    """A create that takes one object (`{"port": {...}}`) or, in bulk, a list of them
    (`{"ports": [...]}`), as Neutron's networks, subnets and ports do."""
    data = await read_json(request)
    if isinstance(data.get(collection), list):
        made = [await create(body) for body in data[collection]]
        return json_response({collection: [view(obj) for obj in made]}, 201)
    body = data.get(member)
    if not isinstance(body, dict):
        raise bad(f"Resource body required: '{member}' is missing.")
    return json_response({member: view(await create(body))}, 201)
