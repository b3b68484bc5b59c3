"""OS-TRUST: a user (the trustor) delegates some of their roles on a project to another user
(the trustee), who may then get tokens scoped to the trust.

`POST /v3/OS-TRUST/trusts` creates a trust: only the trustor may, only with roles they have on
the project, with an optional expiry and number of uses, impersonating the trustor or not.
Trusts are listed (by trustor or trustee, or all for an admin), shown and deleted by the
users they concern; `/roles` lists and checks the delegated roles. Trusts cannot be changed.
Redelegation is off (Keystone's default, `[trust] allow_redelegation = false`): a trust may
not allow it, and a trust-scoped token neither creates trusts nor gets other tokens.

A trust-scoped token (`"scope": {"OS-TRUST:trust": {"id": ...}}`, asked for by the trustee) is
for the trustor when the trust impersonates, else for the trustee; its project is the trust's
and its roles the trust's (`Directory.trust_roles`), for as long as the trust is there, has
not expired and the trustor still holds those roles. Deleting a trust revokes its tokens.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.identity import kinds
from unistack.iaas.identity.kinds import spec_of
from unistack.openstack import auth
from unistack.openstack.auth import AuthContext
from unistack.openstack.identity.resources import list_links
from unistack.openstack.identity.service import IdentityService, iso_time, new_id, parse_time
from unistack.openstack.web import (
    OpenStackError,
    bad_request,
    base_url,
    empty,
    forbidden,
    json_response,
    not_found,
    read_json,
    unauthorized,
)
from unistack.tokens import Claims

Obj = dict[str, Any]
PATH = "/v3/OS-TRUST/trusts"
SCOPE_KEY = "OS-TRUST:trust"


def _missing(trust_id: str) -> OpenStackError:
    return not_found(f"Could not find trust: {trust_id}.")


def parse_expiry(value: Any, now: float) -> float | None:
    """A trust's `expires_at` as Unix seconds (None: never); 400 when it is no time or past."""
    if value is None:
        return None
    try:
        expires = parse_time(str(value))
    except ValueError as exc:
        raise bad_request(
            f"Invalid input for field 'expires_at': {value!r} is not an ISO 8601 time."
        ) from exc
    if expires <= now:
        raise bad_request("The 'expires_at' must not be before now.")
    return expires


def parse_uses(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_request("Invalid input for field 'remaining_uses': a positive integer or null.")
    return value


def check_request(data: Any) -> Obj:
    """The trust body's required fields and types (Keystone's schema)."""
    if not isinstance(data, dict):
        raise bad_request("Invalid input for field 'trust': expected an object.")
    for key in ("trustor_user_id", "trustee_user_id"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise bad_request(f"Invalid input for field '{key}': '{key}' is a required property")
    if not isinstance(data.get("impersonation"), bool):
        raise bad_request(
            "Invalid input for field 'impersonation': 'impersonation' is a required boolean"
        )
    if data.get("allow_redelegation"):
        raise forbidden("Trust redelegation is not enabled in this cloud.")
    if not isinstance(data.get("roles", []), list):
        raise bad_request("Invalid input for field 'roles': a list of roles is required.")
    return data


class Trusts:
    def __init__(self, service: IdentityService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        return [
            Route(PATH, self.list_trusts, methods=["GET"]),
            Route(PATH, self.create_trust, methods=["POST"]),
            Route(PATH + "/{trust}", self.show_trust, methods=["GET"]),
            Route(PATH + "/{trust}", self.delete_trust, methods=["DELETE"]),
            Route(PATH + "/{trust}/roles", self.list_trust_roles, methods=["GET"]),
            Route(PATH + "/{trust}/roles/{role}", self.trust_role, methods=["GET", "HEAD"]),
        ]

    # --- views ----------------------------------------------------------------------------

    def _role_view(self, role_id: str, base: str) -> Obj | None:
        role = self.service.directory.get(kinds.ROLES, role_id)
        if role is None:
            return None
        spec = spec_of(role)
        return {
            "id": role_id,
            "name": spec.get("name"),
            "domain_id": spec.get("domain_id"),
            "description": spec.get("description"),
            "options": spec.get("options") or {},
            "links": {"self": f"{base}v3/roles/{role_id}"},
        }

    def _roles(self, trust: Obj, base: str) -> list[Obj]:
        found = (self._role_view(r, base) for r in spec_of(trust).get("role_ids") or [])
        return [role for role in found if role is not None]

    def _view(self, trust: Obj, base: str, with_roles: bool = True) -> Obj:
        spec, trust_id = spec_of(trust), trust["metadata"]["name"]
        expires = spec.get("expires_at_epoch")
        shown: Obj = {
            "id": trust_id,
            "trustor_user_id": spec.get("trustor_user_id"),
            "trustee_user_id": spec.get("trustee_user_id"),
            "project_id": spec.get("project_id"),
            "impersonation": spec.get("impersonation", False),
            "expires_at": iso_time(float(expires)) if expires is not None else None,
            "remaining_uses": spec.get("remaining_uses"),
            "allow_redelegation": False,
            "redelegation_count": 0,
            "redelegated_trust_id": None,
            "links": {"self": f"{base}v3/OS-TRUST/trusts/{trust_id}"},
        }
        if with_roles:
            shown["roles"] = self._roles(trust, base)
            shown["roles_links"] = {"self": None, "previous": None, "next": None}
        return shown

    # --- handlers -------------------------------------------------------------------------

    def _readable(self, context: AuthContext, trust_id: str, rule: str) -> Obj:
        """The trust, for its trustor, its trustee or an admin (404 when there is none)."""
        trust = self.service.directory.get(kinds.TRUSTS, trust_id)
        if trust is None:
            raise _missing(trust_id)
        spec = spec_of(trust)
        if context.user_id not in (spec.get("trustor_user_id"), spec.get("trustee_user_id")):
            auth.require_admin(context, rule)
        return trust

    async def create_trust(self, request: Request) -> Response:
        context = self.service.caller(request)
        if context.claims.trust_id:
            raise forbidden("Redelegation is off: a trust-scoped token cannot create trusts.")
        data = check_request((await read_json(request)).get("trust"))
        if data["trustor_user_id"] != context.user_id:
            raise forbidden("The authenticated user should match the trustor.")
        self.service.get(kinds.USERS, data["trustee_user_id"], "user")
        project_id = data.get("project_id")
        role_ids = self._delegated_roles(data.get("roles") or [], context.user_id, project_id)
        expires = parse_expiry(data.get("expires_at"), time.time())
        spec = {
            "trustor_user_id": data["trustor_user_id"],
            "trustee_user_id": data["trustee_user_id"],
            "project_id": project_id,
            "impersonation": data["impersonation"],
            "expires_at_epoch": expires,
            "remaining_uses": parse_uses(data.get("remaining_uses")),
            "role_ids": role_ids,
        }
        created = await self.service.create(kinds.TRUSTS, new_id(), spec, "trust")
        return json_response({"trust": self._view(created, base_url(request))}, 201)

    def _delegated_roles(self, refs: list[Any], trustor: str, project_id: Any) -> list[str]:
        """The ids of the roles asked for, each one the trustor has on the project."""
        if project_id is None:
            if refs:
                raise forbidden("A trust without a project cannot delegate roles.")
            return []
        self.service.get(kinds.PROJECTS, str(project_id), "project")
        if not refs:
            raise forbidden("At least one role should be specified.")
        directory = self.service.directory
        held = {r["metadata"]["name"] for r in directory.effective_roles(trustor, str(project_id))}
        role_ids: list[str] = []
        for ref in refs:
            if not isinstance(ref, dict):
                raise bad_request("Invalid input for field 'roles': each role is an object.")
            role = (
                directory.get(kinds.ROLES, str(ref["id"]))
                if ref.get("id")
                else directory.by_name(kinds.ROLES, str(ref.get("name")), None)
            )
            if role is None:
                raise not_found(f"Could not find role: {ref.get('id') or ref.get('name')}.")
            role_id = role["metadata"]["name"]
            if role_id not in held:
                raise forbidden(f"The trustor does not have role {role_id} on the project.")
            role_ids.append(role_id)
        return list(dict.fromkeys(role_ids))

    async def list_trusts(self, request: Request) -> Response:
        context = self.service.caller(request)
        query = request.query_params
        trustor, trustee = query.get("trustor_user_id"), query.get("trustee_user_id")
        if context.user_id not in (trustor, trustee):
            auth.require_admin(context, "identity:list_trusts")
        base = base_url(request)
        shown = [
            self._view(trust, base, with_roles=False)
            for trust in self.service.directory.all(kinds.TRUSTS)
            if trustor in (None, spec_of(trust).get("trustor_user_id"))
            and trustee in (None, spec_of(trust).get("trustee_user_id"))
        ]
        return json_response({"trusts": shown, "links": list_links(request)})

    async def show_trust(self, request: Request) -> Response:
        context = self.service.caller(request)
        trust = self._readable(context, request.path_params["trust"], "identity:get_trust")
        return json_response({"trust": self._view(trust, base_url(request))})

    async def delete_trust(self, request: Request) -> Response:
        context = self.service.caller(request)
        trust_id = request.path_params["trust"]
        trust = self.service.directory.get(kinds.TRUSTS, trust_id)
        if trust is None:
            raise _missing(trust_id)
        if context.user_id != spec_of(trust).get("trustor_user_id"):
            auth.require_admin(context, "identity:delete_trust")
        await self.service.delete(kinds.TRUSTS, trust_id)
        await self.service.revoke(trust_id=trust_id)
        return empty()

    async def list_trust_roles(self, request: Request) -> Response:
        context = self.service.caller(request)
        trust = self._readable(
            context, request.path_params["trust"], "identity:list_roles_for_trust"
        )
        return json_response(
            {"roles": self._roles(trust, base_url(request)), "links": list_links(request)}
        )

    async def trust_role(self, request: Request) -> Response:
        context = self.service.caller(request)
        trust = self._readable(context, request.path_params["trust"], "identity:get_role_for_trust")
        role_id = request.path_params["role"]
        role = None
        if role_id in (spec_of(trust).get("role_ids") or []):
            role = self._role_view(role_id, base_url(request))
        if role is None:
            raise not_found(f"Could not find role: {role_id}.")
        return empty(200) if request.method == "HEAD" else json_response({"role": role})


# --- trust-scoped tokens ------------------------------------------------------------------


async def use_trust(service: IdentityService, ref: Any, user_id: str, now: float) -> Obj:
    """The trust a token asks to be scoped to, for its trustee, counting one use."""
    if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
        raise bad_request(f"Invalid input for field '{SCOPE_KEY}': 'id' is a required property")
    trust_id = ref["id"]
    trust = service.directory.get(kinds.TRUSTS, trust_id)
    if trust is None:
        raise _missing(trust_id)
    spec = spec_of(trust)
    if spec.get("trustee_user_id") != user_id:
        raise forbidden("The user is not the trustee of this trust.")
    expires = spec.get("expires_at_epoch")
    if expires is not None and float(expires) <= now:
        raise unauthorized("The trust has expired.")
    if spec.get("remaining_uses") is not None:
        return await _consume(service, trust_id)
    return trust


async def _consume(service: IdentityService, trust_id: str) -> Obj:
    def change(spec: Obj) -> None:
        left = int(spec.get("remaining_uses") or 0)
        if left < 1:
            raise forbidden("The trust has no uses left.")
        spec["remaining_uses"] = left - 1

    return await service.update(kinds.TRUSTS, trust_id, change, "trust")


def token_user(trust: Obj) -> str:
    """Whom a trust-scoped token stands for: the trustor when the trust impersonates."""
    spec = spec_of(trust)
    return str(spec["trustor_user_id"] if spec.get("impersonation") else spec["trustee_user_id"])


def token_section(service: IdentityService, claims: Claims) -> Obj:
    """The token body's `OS-TRUST:trust`."""
    spec = spec_of(service.directory.get(kinds.TRUSTS, claims.trust_id))
    return {
        "id": claims.trust_id,
        "impersonation": spec.get("impersonation", False),
        "trustee_user": {"id": spec.get("trustee_user_id")},
        "trustor_user": {"id": spec.get("trustor_user_id")},
    }
