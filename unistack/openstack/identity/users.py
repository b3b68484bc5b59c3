"""What users have and do for themselves: group membership, a user's groups and projects,
password change (which revokes the user's tokens, as Keystone does), application
credentials and EC2 credentials.

Group membership is the group's `spec.users`; an application credential keeps a bcrypt hash
of its secret and the role ids it may use (a subset of the creator's roles on the project);
an EC2 credential is a `Credential` of type `ec2` whose id is the SHA-256 of its access key,
as in Keystone.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.identity import kinds, passwords
from unistack.iaas.identity.kinds import spec_of
from unistack.openstack import auth
from unistack.openstack.identity.resources import RESOURCES, list_links, view
from unistack.openstack.identity.service import IdentityService, iso_time, new_id, parse_time
from unistack.openstack.web import (
    bad_request,
    base_url,
    conflict,
    empty,
    forbidden,
    json_response,
    not_found,
    read_json,
    unauthorized,
)

Obj = dict[str, Any]
CREDENTIALS = "application_credentials"
EC2 = "credentials/OS-EC2"


class Users:
    def __init__(self, service: IdentityService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        return [
            Route("/v3/groups/{group}/users", self.group_users, methods=["GET"]),
            Route(
                "/v3/groups/{group}/users/{user}",
                self.membership,
                methods=["PUT", "HEAD", "GET", "DELETE"],
            ),
            Route("/v3/users/{user}/groups", self.user_groups, methods=["GET"]),
            Route("/v3/users/{user}/projects", self.user_projects, methods=["GET"]),
            Route("/v3/users/{user}/password", self.change_password, methods=["POST"]),
            Route(
                "/v3/users/{user}/application_credentials",
                self.list_credentials,
                methods=["GET"],
            ),
            Route(
                "/v3/users/{user}/application_credentials",
                self.create_credential,
                methods=["POST"],
            ),
            Route(
                "/v3/users/{user}/application_credentials/{credential}",
                self.credential,
                methods=["GET", "DELETE"],
            ),
            Route(f"/v3/users/{{user}}/{EC2}", self.ec2_credentials, methods=["GET", "POST"]),
            Route(
                f"/v3/users/{{user}}/{EC2}/{{access}}",
                self.ec2_credential,
                methods=["GET", "DELETE"],
            ),
        ]

    # --- groups and users -----------------------------------------------------------------

    async def membership(self, request: Request) -> Response:
        context = self.service.caller(request)
        auth.require_admin(context, "identity:add_user_to_group")
        group_id, user_id = request.path_params["group"], request.path_params["user"]
        group = self.service.get(kinds.GROUPS, group_id, "group")
        self.service.get(kinds.USERS, user_id, "user")
        members = spec_of(group).get("users") or []
        if request.method == "PUT":
            if user_id not in members:
                await self.service.update(
                    kinds.GROUPS,
                    group_id,
                    lambda s: s.update(
                        users=[*(u for u in s.get("users") or [] if u != user_id), user_id]
                    ),
                    "group",
                )
            return empty()
        if user_id not in members:
            raise not_found(f"User {user_id} is not a member of group {group_id}.")
        if request.method == "DELETE":
            await self.service.update(
                kinds.GROUPS,
                group_id,
                lambda s: s.update(users=[u for u in s.get("users") or [] if u != user_id]),
                "group",
            )
        return empty()

    async def group_users(self, request: Request) -> Response:
        context = self.service.caller(request)
        auth.require_admin(context, "identity:list_users_in_group")
        group = self.service.get(kinds.GROUPS, request.path_params["group"], "group")
        base = base_url(request)
        users = [
            view(RESOURCES["users"], user, base)
            for user_id in spec_of(group).get("users") or []
            if (user := self.service.directory.get(kinds.USERS, user_id)) is not None
        ]
        return json_response({"users": users, "links": list_links(request)})

    async def user_groups(self, request: Request) -> Response:
        user_id = request.path_params["user"]
        context = self.service.caller(request)
        auth.require_admin_or_self(context, user_id, "identity:list_groups_for_user")
        self.service.get(kinds.USERS, user_id, "user")
        base = base_url(request)
        groups = [
            view(RESOURCES["groups"], g, base) for g in self.service.directory.groups_of(user_id)
        ]
        return json_response({"groups": groups, "links": list_links(request)})

    async def user_projects(self, request: Request) -> Response:
        user_id = request.path_params["user"]
        context = self.service.caller(request)
        auth.require_admin_or_self(context, user_id, "identity:list_user_projects")
        self.service.get(kinds.USERS, user_id, "user")
        base, directory = base_url(request), self.service.directory
        projects = [
            view(RESOURCES["projects"], p, base)
            for p in directory.all(kinds.PROJECTS)
            if directory.direct_role_ids(user_id, project_id=p["metadata"]["name"])
        ]
        return json_response({"projects": projects, "links": list_links(request)})

    async def change_password(self, request: Request) -> Response:
        user_id = request.path_params["user"]
        body = await read_json(request)
        data = body.get("user")
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("password"), str)
            or not isinstance(data.get("original_password"), str)
        ):
            raise bad_request(
                "Invalid input for field 'user': 'password' and 'original_password' are required"
            )
        user = self.service.directory.get(kinds.USERS, user_id)
        hashed = spec_of(user).get("password_hash")
        if user is None or not await asyncio.to_thread(
            passwords.check_password, data["original_password"], hashed
        ):
            raise unauthorized()
        rounds = self.service.settings.hash_rounds
        new_hash = await asyncio.to_thread(passwords.hash_password, data["password"], rounds)
        await self.service.update(
            kinds.USERS, user_id, lambda s: s.update(password_hash=new_hash), "user"
        )
        # Keystone revokes the user's tokens when the password changes.
        await self.service.revoke(user_id=user_id)
        return empty()

    # --- application credentials ----------------------------------------------------------

    def _credential_view(self, credential: Obj, base: str, secret: str | None = None) -> Obj:
        spec = spec_of(credential)
        credential_id = credential["metadata"]["name"]
        roles = []
        for role_id in spec.get("role_ids") or []:
            role = self.service.directory.get(kinds.ROLES, role_id)
            if role is not None:
                roles.append({"id": role_id, "name": spec_of(role).get("name"), "domain_id": None})
        shown = {
            "id": credential_id,
            "name": spec.get("name"),
            "description": spec.get("description"),
            "user_id": spec.get("user_id"),
            "project_id": spec.get("project_id"),
            "expires_at": spec.get("expires_at"),
            "unrestricted": spec.get("unrestricted", False),
            "roles": roles,
            "access_rules": spec.get("access_rules") or [],
            "links": {
                "self": f"{base}v3/users/{spec.get('user_id')}/{CREDENTIALS}/{credential_id}"
            },
        }
        if secret is not None:
            shown["secret"] = secret
        return shown

    async def create_credential(self, request: Request) -> Response:
        user_id = request.path_params["user"]
        context = self.service.caller(request)
        if context.user_id != user_id:
            raise auth.deny("identity:create_application_credential")
        if context.project_id is None:
            raise forbidden("Application credentials need a project-scoped token.")
        if context.claims.app_cred_id and not spec_of(
            self.service.directory.get(kinds.APPLICATION_CREDENTIALS, context.claims.app_cred_id)
        ).get("unrestricted"):
            raise forbidden("A restricted application credential cannot create another.")
        data = (await read_json(request)).get("application_credential")
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
            raise bad_request(
                "Invalid input for field 'application_credential': 'name' is a required property"
            )
        for existing in self.service.directory.indexed(
            kinds.APPLICATION_CREDENTIALS, "user", user_id
        ):
            if spec_of(existing).get("name") == data["name"]:
                raise conflict(
                    "Conflict occurred attempting to store application_credential - "
                    f"Duplicate entry found with name {data['name']}."
                )
        have = {role["metadata"]["name"]: role for role in context.roles}
        wanted = data.get("roles")
        if wanted is None:
            role_ids = list(have)
        else:
            role_ids = []
            for ref in wanted if isinstance(wanted, list) else []:
                match = next(
                    (
                        rid
                        for rid, role in have.items()
                        if rid == ref.get("id") or spec_of(role).get("name") == ref.get("name")
                    ),
                    None,
                )
                if match is None:
                    raise forbidden(
                        "Invalid application credential: "
                        f"the user does not have role {ref} on the project."
                    )
                role_ids.append(match)
        expires_at = data.get("expires_at")
        expires_epoch = None
        if expires_at:
            try:
                expires_epoch = parse_time(str(expires_at))
            except ValueError as exc:
                raise bad_request(f"Invalid input for field 'expires_at': {expires_at!r}") from exc
        secret = data.get("secret") or secrets.token_urlsafe(64)
        rounds = self.service.settings.hash_rounds
        secret_hash = await asyncio.to_thread(passwords.hash_password, secret, rounds)
        spec = {
            "name": data["name"],
            "description": data.get("description"),
            "user_id": user_id,
            "project_id": context.project_id,
            "role_ids": role_ids,
            # Keystone shows it as it parsed it: naive UTC, microseconds, no zone.
            "expires_at": iso_time(expires_epoch)[:-1] if expires_epoch else None,
            "expires_at_epoch": expires_epoch,
            "unrestricted": bool(data.get("unrestricted", False)),
            "access_rules": data.get("access_rules") or [],
            "secret_hash": secret_hash,
        }
        created = await self.service.create(
            kinds.APPLICATION_CREDENTIALS, new_id(), spec, "application credential"
        )
        body = {"application_credential": self._credential_view(created, base_url(request), secret)}
        return json_response(body, 201)

    async def list_credentials(self, request: Request) -> Response:
        user_id = request.path_params["user"]
        context = self.service.caller(request)
        auth.require_admin_or_self(context, user_id, "identity:list_application_credentials")
        base = base_url(request)
        name = request.query_params.get("name")
        shown = [
            self._credential_view(c, base)
            for c in self.service.directory.indexed(kinds.APPLICATION_CREDENTIALS, "user", user_id)
            if name is None or spec_of(c).get("name") == name
        ]
        return json_response({"application_credentials": shown, "links": list_links(request)})

    async def credential(self, request: Request) -> Response:
        user_id = request.path_params["user"]
        context = self.service.caller(request)
        auth.require_admin_or_self(context, user_id, "identity:get_application_credential")
        credential_id = request.path_params["credential"]
        credential = self.service.directory.get(kinds.APPLICATION_CREDENTIALS, credential_id)
        if credential is None or spec_of(credential).get("user_id") != user_id:
            raise not_found(f"Could not find Application Credential: {credential_id}.")
        if request.method == "DELETE":
            if context.claims.app_cred_id == credential_id:
                raise forbidden("An application credential cannot delete itself.")
            await self.service.delete(kinds.APPLICATION_CREDENTIALS, credential_id)
            return empty()
        return json_response(
            {"application_credential": self._credential_view(credential, base_url(request))}
        )

    # --- EC2 credentials ------------------------------------------------------------------

    def _ec2_view(self, credential: Obj, base: str) -> Obj:
        spec = spec_of(credential)
        blob = orjson.loads(spec.get("blob") or "{}")
        user_id = spec.get("user_id")
        return {
            "user_id": user_id,
            "tenant_id": spec.get("project_id"),
            "access": blob.get("access"),
            "secret": blob.get("secret"),
            "trust_id": blob.get("trust_id"),
            "links": {"self": f"{base}v3/users/{user_id}/{EC2}/{blob.get('access')}"},
        }

    def _ec2_of(self, user_id: str) -> list[Obj]:
        return [
            c
            for c in self.service.directory.all(kinds.CREDENTIALS)
            if spec_of(c).get("type") == "ec2" and spec_of(c).get("user_id") == user_id
        ]

    async def ec2_credentials(self, request: Request) -> Response:
        user_id = request.path_params["user"]
        context = self.service.caller(request)
        auth.require_admin_or_self(context, user_id, "identity:ec2_create_credential")
        self.service.get(kinds.USERS, user_id, "user")
        base = base_url(request)
        if request.method == "GET":
            shown = [self._ec2_view(c, base) for c in self._ec2_of(user_id)]
            return json_response({"credentials": shown, "links": list_links(request)})
        project_id = (await read_json(request)).get("tenant_id")
        if not isinstance(project_id, str):
            raise bad_request("Invalid input for field 'tenant_id': a project id is required.")
        self.service.get(kinds.PROJECTS, project_id, "project")
        access, secret = uuid.uuid4().hex, uuid.uuid4().hex
        blob = orjson.dumps({"access": access, "secret": secret, "trust_id": None}).decode()
        spec = {"user_id": user_id, "project_id": project_id, "type": "ec2", "blob": blob}
        credential_id = hashlib.sha256(access.encode()).hexdigest()
        created = await self.service.create(kinds.CREDENTIALS, credential_id, spec, "credential")
        return json_response({"credential": self._ec2_view(created, base)}, 201)

    async def ec2_credential(self, request: Request) -> Response:
        user_id, access = request.path_params["user"], request.path_params["access"]
        context = self.service.caller(request)
        auth.require_admin_or_self(context, user_id, "identity:ec2_get_credential")
        credential_id = hashlib.sha256(access.encode()).hexdigest()
        credential = self.service.directory.get(kinds.CREDENTIALS, credential_id)
        if credential is None or spec_of(credential).get("user_id") != user_id:
            raise not_found(f"Could not find credential: {access}.")
        if request.method == "DELETE":
            await self.service.delete(kinds.CREDENTIALS, credential_id)
            return empty()
        return json_response({"credential": self._ec2_view(credential, base_url(request))})
