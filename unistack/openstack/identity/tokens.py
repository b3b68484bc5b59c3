"""`/v3/auth/*`: issuing, validating and revoking tokens, and what a token may reach.

`POST /v3/auth/tokens` authenticates with the methods Keystone offers here — `password` (user
by id, or by name and domain), `token` (a new token from a valid one, keeping its expiry and
audit chain) and `application_credential` (by id, or by name and user; the scope is the
credential's project) — then scopes the token to a project, a domain or the system, or
leaves it unscoped (Keystone's rules: an explicit scope, else the user's default project if
they have a role there). The answer is 201 with the token in `X-Subject-Token` and its body
(user, scope, roles, catalog unless `?nocatalog`). A trust-scoped token (OS-TRUST) is asked for
by the trustee and described in `trusts`. Failing authentication is always 401 with
the same message, so a caller cannot tell a wrong password from an unknown user.

`GET`/`HEAD /v3/auth/tokens` validate `X-Subject-Token` for the caller of `X-Auth-Token`
(404 when it is not valid); `DELETE` revokes it by its audit id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.identity import kinds, passwords
from unistack.iaas.identity.bootstrap import stable_id
from unistack.iaas.identity.kinds import spec_of
from unistack.openstack import auth
from unistack.openstack.auth import AuthContext, InvalidToken
from unistack.openstack.identity import trusts
from unistack.openstack.identity.resources import RESOURCES, list_links, view
from unistack.openstack.identity.service import IdentityService, iso_time
from unistack.openstack.web import (
    OpenStackError,
    bad_request,
    base_url,
    empty,
    forbidden,
    json_response,
    read_json,
    unauthorized,
)
from unistack.tokens import SYSTEM_ALL, Claims, new_audit_id

Obj = dict[str, Any]
SUPPORTED_METHODS = ("password", "token", "application_credential")


def _field(data: Obj, name: str, parent: str) -> Obj:
    value = data.get(name)
    if not isinstance(value, dict):
        raise bad_request(f"Invalid input for field '{parent}': '{name}' is a required property")
    return value


class TokenApi:
    def __init__(self, service: IdentityService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        return [
            Route("/v3/auth/tokens", self.issue, methods=["POST"]),
            Route("/v3/auth/tokens", self.validate, methods=["GET", "HEAD"]),
            Route("/v3/auth/tokens", self.revoke, methods=["DELETE"]),
            Route("/v3/auth/catalog", self.catalog, methods=["GET"]),
            Route("/v3/auth/projects", self.projects, methods=["GET"]),
            Route("/v3/auth/domains", self.domains, methods=["GET"]),
            Route("/v3/auth/system", self.system, methods=["GET"]),
        ]

    # --- issue ----------------------------------------------------------------------------

    async def issue(self, request: Request) -> Response:
        body = await read_json(request)
        auth_body = _field(body, "auth", "auth")
        identity = _field(auth_body, "identity", "auth")
        methods = identity.get("methods")
        if not isinstance(methods, list) or not methods:
            raise bad_request(
                "Invalid input for field 'identity': 'methods' is a required property"
            )
        unknown = [m for m in methods if m not in SUPPORTED_METHODS]
        if unknown:
            raise unauthorized(
                f"Attempted to authenticate with an unsupported method: {unknown[0]}."
            )
        now = time.time()
        parent: Claims | None = None
        credential: Obj | None = None
        if "token" in methods:
            parent = self._parent_token(identity)
            user_id = parent.user_id
        if "password" in methods:
            user_id = await self._password_user(_field(identity, "password", "identity"))
            if parent is not None and parent.user_id != user_id:
                raise unauthorized()
        if "application_credential" in methods:
            credential = await self._credential(
                _field(identity, "application_credential", "identity"), now
            )
            user_id = spec_of(credential)["user_id"]
        user = self.service.directory.get(kinds.USERS, user_id)
        if user is None:
            raise unauthorized()
        scope = auth_body.get("scope")
        trust_id = None
        if credential is not None:
            if scope not in (None, "unscoped") and scope:
                raise unauthorized("Application credentials cannot request a scope.")
            project_id, domain_id, system = spec_of(credential)["project_id"], None, None
        elif isinstance(scope, dict) and trusts.SCOPE_KEY in scope:
            trust = await trusts.use_trust(self.service, scope[trusts.SCOPE_KEY], user_id, now)
            user_id, trust_id = trusts.token_user(trust), trust["metadata"]["name"]
            project_id, domain_id, system = spec_of(trust).get("project_id"), None, None
        else:
            project_id, domain_id, system = self._scope(scope, user, parent)
        expires = parent.expires_at if parent is not None else now + self.service.settings.token_ttl
        audit_ids = (
            (new_audit_id(), parent.audit_ids[-1]) if parent is not None else (new_audit_id(),)
        )
        claims = Claims(
            user_id,
            tuple(dict.fromkeys([*(parent.methods if parent else ()), *methods])),
            now,
            expires,
            audit_ids,
            project_id,
            domain_id,
            system,
            credential["metadata"]["name"] if credential is not None else None,
            trust_id,
        )
        try:
            context = self.service.validator.validate(self.service.codec.seal(claims), now)
        except InvalidToken as exc:
            raise self._no_access(claims) from exc
        # Sealed again with what readers without the identity objects need (kube-apiserver).
        token = self.service.codec.seal(
            dataclasses.replace(
                claims,
                user_name=str(spec_of(context.user).get("name") or ""),
                role_names=tuple(sorted(context.role_names)),
            )
        )
        context = dataclasses.replace(context, token=token)
        with_catalog = "nocatalog" not in request.query_params
        return json_response(
            self.token_body(context, request, with_catalog),
            201,
            {"X-Subject-Token": token},
        )

    def _no_access(self, claims: Claims) -> OpenStackError:
        if claims.trust_id:
            return forbidden(f"Trust {claims.trust_id} gives no role on its project any more.")
        if claims.project_id:
            return unauthorized(
                f"User {claims.user_id} has no access to project {claims.project_id}"
            )
        if claims.domain_id:
            return unauthorized(f"User {claims.user_id} has no access to domain {claims.domain_id}")
        if claims.system:
            return unauthorized(f"User {claims.user_id} has no access to the system")
        return unauthorized()

    def _parent_token(self, identity: Obj) -> Claims:
        token = _field(identity, "token", "identity").get("id")
        if not isinstance(token, str):
            raise bad_request("Invalid input for field 'token': 'id' is a required property")
        try:
            context = self.service.validator.validate(token)
        except InvalidToken as exc:
            raise unauthorized() from exc
        if context.claims.app_cred_id:
            raise unauthorized("Application credential tokens cannot be used to get new tokens.")
        if context.claims.trust_id:
            raise forbidden("Redelegation is off: a trust-scoped token cannot get other tokens.")
        return context.claims

    def _domain_ref(self, ref: Obj | None) -> str | None:
        """The id of a domain named by {"id"} or {"name"} (None when it names none)."""
        if not isinstance(ref, dict):
            return None
        if ref.get("id"):
            return str(ref["id"])
        if ref.get("name"):
            found = self.service.directory.domain_by_name(str(ref["name"]))
            return found["metadata"]["name"] if found is not None else None
        return None

    async def _password_user(self, password_body: Obj) -> str:
        user_ref = _field(password_body, "user", "password")
        secret = user_ref.get("password")
        if not isinstance(secret, str):
            raise bad_request("Invalid input for field 'user': 'password' is a required property")
        directory = self.service.directory
        if user_ref.get("id"):
            user = directory.get(kinds.USERS, str(user_ref["id"]))
        elif user_ref.get("name"):
            if not isinstance(user_ref.get("domain"), dict):
                raise bad_request(
                    "Expecting to find domain in user. The server could not comply "
                    "with the request since it is either malformed or otherwise "
                    "incorrect. The client is assumed to be in error."
                )
            domain_id = self._domain_ref(user_ref.get("domain"))
            user = directory.by_name(kinds.USERS, str(user_ref["name"]), domain_id)
        else:
            raise bad_request("Invalid input for field 'user': 'id' or 'name' is required")
        hashed = spec_of(user).get("password_hash")
        matched = await asyncio.to_thread(passwords.check_password, secret, hashed)
        if user is None or not matched or spec_of(user).get("enabled") is False:
            raise unauthorized()
        return str(user["metadata"]["name"])

    async def _credential(self, body: Obj, now: float) -> Obj:
        secret = body.get("secret")
        if not isinstance(secret, str):
            raise bad_request(
                "Invalid input for field 'application_credential': 'secret' is required"
            )
        directory = self.service.directory
        credential: Obj | None = None
        if body.get("id"):
            credential = directory.get(kinds.APPLICATION_CREDENTIALS, str(body["id"]))
        elif body.get("name") and isinstance(body.get("user"), dict):
            user_ref = body["user"]
            if user_ref.get("id"):
                user_id = str(user_ref["id"])
            else:
                domain_id = self._domain_ref(user_ref.get("domain"))
                user = directory.by_name(kinds.USERS, str(user_ref.get("name")), domain_id)
                user_id = user["metadata"]["name"] if user else ""
            credential = next(
                (
                    c
                    for c in directory.indexed(kinds.APPLICATION_CREDENTIALS, "user", user_id)
                    if spec_of(c).get("name") == body["name"]
                ),
                None,
            )
        else:
            raise bad_request(
                "Invalid input for field 'application_credential': "
                "'id' or 'name' and 'user' are required"
            )
        hashed = spec_of(credential).get("secret_hash")
        matched = await asyncio.to_thread(passwords.check_password, secret, hashed)
        if credential is None or not matched:
            raise unauthorized()
        expires = spec_of(credential).get("expires_at_epoch")
        if expires is not None and float(expires) <= now:
            raise unauthorized()
        return credential

    def _scope(
        self, scope: Any, user: Obj, parent: Claims | None
    ) -> tuple[str | None, str | None, str | None]:
        """(project id, domain id, system) the token is for."""
        if scope is None:
            if parent is not None:
                return parent.project_id, parent.domain_id, parent.system
            default_project = spec_of(user).get("default_project_id")
            if default_project and self.service.directory.effective_roles(
                user["metadata"]["name"], project_id=default_project
            ):
                return default_project, None, None
            return None, None, None
        if scope == "unscoped":
            return None, None, None
        if not isinstance(scope, dict):
            raise bad_request("Invalid input for field 'scope': expected an object")
        directory = self.service.directory
        if "project" in scope:
            ref = scope["project"]
            if not isinstance(ref, dict):
                raise bad_request("Invalid input for field 'project': expected an object")
            if ref.get("id"):
                project = directory.get(kinds.PROJECTS, str(ref["id"]))
            elif ref.get("name"):
                if not isinstance(ref.get("domain"), dict):
                    raise bad_request("Expecting to find domain in project.")
                project = directory.by_name(
                    kinds.PROJECTS, str(ref["name"]), self._domain_ref(ref.get("domain"))
                )
            else:
                raise bad_request("Invalid input for field 'project': 'id' or 'name' is required")
            if project is None:
                raise unauthorized(f"Could not find project: {ref.get('id') or ref.get('name')}.")
            return project["metadata"]["name"], None, None
        if "domain" in scope:
            domain_id = self._domain_ref(scope["domain"])
            if domain_id is None or directory.get(kinds.DOMAINS, domain_id) is None:
                raise unauthorized("Could not find domain.")
            return None, domain_id, None
        if "system" in scope:
            if scope["system"] != {"all": True}:
                raise bad_request(
                    "Invalid input for field 'system': only {'all': true} is supported"
                )
            return None, None, SYSTEM_ALL
        raise bad_request("Invalid input for field 'scope': project, domain or system expected")

    # --- the token body -------------------------------------------------------------------

    def _domain(self, domain_id: str | None) -> Obj:
        domain = self.service.directory.get(kinds.DOMAINS, domain_id)
        return {"id": domain_id, "name": spec_of(domain).get("name")}

    def token_body(self, context: AuthContext, request: Request, with_catalog: bool) -> Obj:
        claims, user = context.claims, context.user
        token: Obj = {
            "methods": list(claims.methods),
            "user": {
                "id": claims.user_id,
                "name": spec_of(user).get("name"),
                "domain": self._domain(spec_of(user).get("domain_id")),
                "password_expires_at": None,
            },
            "audit_ids": list(claims.audit_ids),
            "expires_at": iso_time(claims.expires_at),
            "issued_at": iso_time(claims.issued_at),
        }
        if context.project is not None:
            token["project"] = {
                "id": claims.project_id,
                "name": spec_of(context.project).get("name"),
                "domain": self._domain(spec_of(context.project).get("domain_id")),
            }
            token["is_domain"] = False
        elif claims.domain_id:
            token["domain"] = self._domain(claims.domain_id)
        elif claims.system:
            token["system"] = {"all": True}
        if claims.trust_id:
            token[trusts.SCOPE_KEY] = trusts.token_section(self.service, claims)
        if claims.scope != "unscoped":
            token["roles"] = [
                {"id": role["metadata"]["name"], "name": spec_of(role).get("name")}
                for role in context.roles
            ]
            if with_catalog:
                token["catalog"] = self.catalog_entries()
        if claims.app_cred_id:
            credential = self.service.directory.get(
                kinds.APPLICATION_CREDENTIALS, claims.app_cred_id
            )
            token["application_credential"] = {
                "id": claims.app_cred_id,
                "name": spec_of(credential).get("name"),
                "restricted": not spec_of(credential).get("unrestricted", False),
            }
        return {"token": token}

    def catalog_entries(self) -> list[Obj]:
        directory = self.service.directory
        endpoints_by_service: dict[str, list[Obj]] = {}
        for endpoint in directory.all(kinds.ENDPOINTS):
            spec = spec_of(endpoint)
            if spec.get("enabled", True) is False:
                continue
            endpoints_by_service.setdefault(str(spec.get("service_id")), []).append(
                {
                    "id": endpoint["metadata"]["name"],
                    "interface": spec.get("interface"),
                    "region_id": spec.get("region_id"),
                    "region": spec.get("region_id"),
                    "url": spec.get("url"),
                }
            )
        catalog = []
        for service in directory.all(kinds.SERVICES):
            spec = spec_of(service)
            if spec.get("enabled", True) is False:
                continue
            catalog.append(
                {
                    "id": service["metadata"]["name"],
                    "type": spec.get("type"),
                    "name": spec.get("name") or "",
                    "endpoints": endpoints_by_service.get(service["metadata"]["name"], []),
                }
            )
        return catalog

    # --- validate, revoke -----------------------------------------------------------------

    async def validate(self, request: Request) -> Response:
        caller = self.service.caller(request)
        subject_token = request.headers.get("x-subject-token")
        subject = self.service.validator.subject(subject_token)
        if not (caller.is_admin or caller.has_role("service") or caller.user_id == subject.user_id):
            raise auth.deny("identity:validate_token")
        headers = {"X-Subject-Token": subject_token or ""}
        if request.method == "HEAD":
            return empty(200, headers)
        with_catalog = "nocatalog" not in request.query_params
        return json_response(self.token_body(subject, request, with_catalog), 200, headers)

    async def revoke(self, request: Request) -> Response:
        caller = self.service.caller(request)
        subject = self.service.validator.subject(request.headers.get("x-subject-token"))
        if not (caller.is_admin or caller.user_id == subject.user_id):
            raise auth.deny("identity:revoke_token")
        audit_id = subject.claims.audit_ids[0]
        spec = {"audit_id": audit_id, "issued_before": time.time(), "user_id": None}
        await self.service.create(
            kinds.REVOCATIONS, stable_id("revoke", audit_id), spec, "revocation event"
        )
        return empty()

    # --- what the token may reach ---------------------------------------------------------

    async def catalog(self, request: Request) -> Response:
        context = self.service.caller(request)
        if context.claims.scope == "unscoped":
            raise auth.deny("identity:get_auth_catalog")
        links = {"self": str(request.url)}
        return json_response({"catalog": self.catalog_entries(), "links": links})

    async def projects(self, request: Request) -> Response:
        """The enabled projects the caller has a role on (what they may scope a token to)."""
        return self._reachable(request, "projects", "project_id")

    async def domains(self, request: Request) -> Response:
        return self._reachable(request, "domains", "domain_id")

    def _reachable(self, request: Request, collection: str, scope: str) -> Response:
        context = self.service.caller(request)
        resource, directory = RESOURCES[collection], self.service.directory
        shown = [
            view(resource, obj, base_url(request))
            for obj in directory.all(resource.kind)
            if spec_of(obj).get("enabled", True)
            and directory.effective_roles(context.user_id, **{scope: obj["metadata"]["name"]})
        ]
        return json_response({collection: shown, "links": list_links(request)})

    async def system(self, request: Request) -> Response:
        context = self.service.caller(request)
        has = bool(self.service.directory.effective_roles(context.user_id, system=SYSTEM_ALL))
        return json_response(
            {"system": [{"all": True}] if has else [], "links": {"self": str(request.url)}}
        )
