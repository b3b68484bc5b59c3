"""Who has what: role grants, `/v3/role_assignments` and implied roles.

Grants are `PUT`/`HEAD`/`GET`/`DELETE` on `/v3/{projects|domains}/{id}/{users|groups}/{id}/
roles/{role}` and `/v3/system/{users|groups}/{id}/roles/{role}`, plus OS-INHERIT's inherited
grants on domains and projects; each is one `RoleAssignment` object, named by what it grants.
`GET /v3/role_assignments` lists them with Keystone's filters; `?effective` expands group
grants into their members' and inherited grants onto the projects below, and adds the roles
each grant implies, as Keystone does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.identity import kinds
from unistack.iaas.identity.kinds import spec_of
from unistack.openstack import auth
from unistack.openstack.identity.resources import RESOURCES, list_links, view
from unistack.openstack.identity.service import IdentityService
from unistack.openstack.web import (
    OpenStackError,
    bad_request,
    base_url,
    empty,
    forbidden,
    json_response,
    not_found,
)
from unistack.tokens import SYSTEM_ALL

Obj = dict[str, Any]
INHERIT = "/v3/OS-INHERIT"


class Grants:
    def __init__(self, service: IdentityService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        grant = self.grant
        routes = []
        for target in ("projects", "domains"):
            for actor in ("users", "groups"):
                path = f"/v3/{target}/{{target}}/{actor}/{{actor}}/roles"
                routes += [
                    Route(path, self.list_grants, methods=["GET"]),
                    Route(path + "/{role}", grant, methods=["PUT", "HEAD", "GET", "DELETE"]),
                    Route(
                        f"{INHERIT}/{target}/{{target}}/{actor}/{{actor}}/roles/{{role}}/inherited_to_projects",
                        grant,
                        methods=["PUT", "HEAD", "GET", "DELETE"],
                    ),
                ]
                routes.append(
                    Route(
                        f"{INHERIT}/{target}/{{target}}/{actor}/{{actor}}/roles/inherited_to_projects",
                        self.list_grants,
                        methods=["GET"],
                    )
                )
        for actor in ("users", "groups"):
            routes += [
                Route(f"/v3/system/{actor}/{{actor}}/roles", self.list_grants, methods=["GET"]),
                Route(
                    f"/v3/system/{actor}/{{actor}}/roles/{{role}}",
                    grant,
                    methods=["PUT", "HEAD", "GET", "DELETE"],
                ),
            ]
        routes += [
            Route("/v3/role_assignments", self.role_assignments, methods=["GET"]),
            Route("/v3/roles/{prior}/implies", self.list_implied, methods=["GET"]),
            Route(
                "/v3/roles/{prior}/implies/{implied}",
                self.implied,
                methods=["PUT", "HEAD", "GET", "DELETE"],
            ),
            Route("/v3/role_inferences", self.role_inferences, methods=["GET"]),
        ]
        return routes

    # --- grants ---------------------------------------------------------------------------

    def _target(self, request: Request) -> tuple[str, str]:
        path = request.url.path
        if "/system/" in path:
            return "system", SYSTEM_ALL
        target_type = "project" if "/projects/" in path else "domain"
        target = request.path_params["target"]
        kind = kinds.PROJECTS if target_type == "project" else kinds.DOMAINS
        self.service.get(kind, target, target_type)
        return target_type, target

    def _actor(self, request: Request) -> tuple[str, str]:
        actor_type = "user" if "/users/" in request.url.path else "group"
        actor = request.path_params["actor"]
        self.service.get(kinds.USERS if actor_type == "user" else kinds.GROUPS, actor, actor_type)
        return actor_type, actor

    async def grant(self, request: Request) -> Response:
        context = self.service.caller(request)
        verb = {"PUT": "create", "DELETE": "revoke"}.get(request.method, "check")
        auth.require_admin(context, f"identity:{verb}_grant")
        target_type, target = self._target(request)
        actor_type, actor = self._actor(request)
        role_id = request.path_params["role"]
        self.service.get(kinds.ROLES, role_id, "role")
        inherited = request.url.path.endswith("/inherited_to_projects")
        name = kinds.assignment_name(role_id, actor_type, actor, target_type, target, inherited)
        existing = self.service.directory.get(kinds.ROLE_ASSIGNMENTS, name)
        if request.method == "PUT":
            if existing is None:
                spec: Obj = {"role_id": role_id, f"{actor_type}_id": actor, "inherited": inherited}
                if target_type == "system":
                    spec["system"] = target
                else:
                    spec[f"{target_type}_id"] = target
                try:
                    await self.service.create(kinds.ROLE_ASSIGNMENTS, name, spec, "role assignment")
                except OpenStackError as exc:
                    if exc.status != 409:
                        raise
            return empty()
        if existing is None:
            raise not_found(
                f"Could not find role assignment with role: {role_id}, {actor_type}: "
                f"{actor}, {target_type}: {target}."
            )
        if request.method == "DELETE":
            await self.service.delete(kinds.ROLE_ASSIGNMENTS, name)
        return empty()

    async def list_grants(self, request: Request) -> Response:
        context = self.service.caller(request)
        auth.require_admin(context, "identity:list_grants")
        target_type, target = self._target(request)
        actor_type, actor = self._actor(request)
        inherited = request.url.path.endswith("/inherited_to_projects")
        base = base_url(request)
        roles = []
        for assignment in self.service.directory.assignments_on(f"{target_type}/{target}"):
            spec = spec_of(assignment)
            if spec.get(f"{actor_type}_id") == actor and bool(spec.get("inherited")) == inherited:
                role = self.service.directory.get(kinds.ROLES, spec["role_id"])
                if role is not None:
                    roles.append(view(RESOURCES["roles"], role, base))
        return json_response({"roles": roles, "links": list_links(request)})

    # --- role assignments -----------------------------------------------------------------

    async def role_assignments(self, request: Request) -> Response:
        context = self.service.caller(request)
        query = request.query_params
        user_filter = query.get("user.id")
        if not context.is_admin and user_filter != context.user_id:
            raise auth.deny("identity:list_role_assignments")
        effective = "effective" in query
        if effective and query.get("group.id"):
            raise bad_request(
                "Combining effective and group filter will always result in an empty list."
            )
        rows = list(self._effective_rows() if effective else self._direct_rows())
        base = base_url(request)
        include_names = "include_names" in query and query.get("include_names") not in (
            "0",
            "false",
        )
        shown = [
            self._assignment_view(row, base, include_names)
            for row in rows
            if self._row_matches(row, query)
        ]
        return json_response({"role_assignments": shown, "links": list_links(request)})

    def _direct_rows(self) -> Iterator[Obj]:
        for assignment in self.service.directory.all(kinds.ROLE_ASSIGNMENTS):
            yield dict(spec_of(assignment))

    def _effective_rows(self) -> Iterator[Obj]:
        """Group grants as their members', inherited grants on the projects below their
        target, and each grant's implied roles; without duplicates."""
        directory = self.service.directory
        seen: set[tuple[Any, ...]] = set()
        for row in self._direct_rows():
            users = (
                [row["user_id"]]
                if row.get("user_id")
                else [
                    u
                    for u in spec_of(directory.get(kinds.GROUPS, row.get("group_id"))).get("users")
                    or []
                ]
            )
            targets: list[tuple[str, str]]
            if row.get("inherited"):
                if row.get("domain_id"):
                    below = [
                        p
                        for p in directory.all(kinds.PROJECTS)
                        if spec_of(p).get("domain_id") == row["domain_id"]
                    ]
                else:
                    below = self._subtree(row["project_id"])
                targets = [("project_id", p["metadata"]["name"]) for p in below]
            elif row.get("project_id"):
                targets = [("project_id", row["project_id"])]
            elif row.get("domain_id"):
                targets = [("domain_id", row["domain_id"])]
            else:
                targets = [("system", row.get("system", SYSTEM_ALL))]
            roles = [
                r["metadata"]["name"]
                for r in directory.implied_closure([row["role_id"]])
                if not spec_of(r).get("domain_id")
            ]
            for user in users:
                for key, target in targets:
                    for role_id in roles:
                        identity = (user, key, target, role_id)
                        if identity in seen:
                            continue
                        seen.add(identity)
                        effective = {"user_id": user, key: target, "role_id": role_id}
                        if row.get("group_id"):
                            effective["via_group"] = row["group_id"]
                        if role_id != row["role_id"]:
                            effective["prior_role"] = row["role_id"]
                        yield effective

    def _subtree(self, project_id: str) -> list[Obj]:
        directory, found, pending = self.service.directory, [], [project_id]
        while pending:
            for child in directory.indexed(kinds.PROJECTS, "parent", pending.pop()):
                found.append(child)
                pending.append(child["metadata"]["name"])
        return found

    def _row_matches(self, row: Obj, query: Any) -> bool:
        checks = {
            "user.id": row.get("user_id"),
            "group.id": row.get("group_id"),
            "role.id": row.get("role_id"),
            "scope.project.id": row.get("project_id"),
            "scope.domain.id": row.get("domain_id"),
        }
        for key, value in checks.items():
            if key in query and query[key] != value:
                return False
        if "scope.system" in query and row.get("system") != query["scope.system"]:
            return False
        return not ("scope.OS-INHERIT:inherited_to" in query and not row.get("inherited"))

    def _assignment_view(self, row: Obj, base: str, include_names: bool) -> Obj:
        directory = self.service.directory
        shown: Obj = {"role": {"id": row["role_id"]}}
        if include_names:
            shown["role"]["name"] = spec_of(directory.get(kinds.ROLES, row["role_id"])).get("name")
        for actor, kind in (("user", kinds.USERS), ("group", kinds.GROUPS)):
            if row.get(f"{actor}_id"):
                shown[actor] = {"id": row[f"{actor}_id"]}
                if include_names:
                    obj = directory.get(kind, row[f"{actor}_id"])
                    domain_id = spec_of(obj).get("domain_id")
                    shown[actor]["name"] = spec_of(obj).get("name")
                    shown[actor]["domain"] = {
                        "id": domain_id,
                        "name": spec_of(directory.get(kinds.DOMAINS, domain_id)).get("name"),
                    }
        if row.get("project_id"):
            scope: Obj = {"project": {"id": row["project_id"]}}
            target_link = f"projects/{row['project_id']}"
            if include_names:
                project = spec_of(directory.get(kinds.PROJECTS, row["project_id"]))
                domain_id = project.get("domain_id")
                scope["project"]["name"] = project.get("name")
                scope["project"]["domain"] = {
                    "id": domain_id,
                    "name": spec_of(directory.get(kinds.DOMAINS, domain_id)).get("name"),
                }
        elif row.get("domain_id"):
            scope = {"domain": {"id": row["domain_id"]}}
            target_link = f"domains/{row['domain_id']}"
            if include_names:
                domain = spec_of(directory.get(kinds.DOMAINS, row["domain_id"]))
                scope["domain"]["name"] = domain.get("name")
        else:
            scope = {"system": {"all": True}}
            target_link = "system"
        if row.get("inherited"):
            scope["OS-INHERIT:inherited_to"] = "projects"
        shown["scope"] = scope
        actor_link = (
            f"users/{row['user_id']}" if row.get("user_id") else f"groups/{row['group_id']}"
        )
        link = f"{base}v3/{target_link}/{actor_link}/roles/{row['role_id']}"
        shown["links"] = {"assignment": link}
        if row.get("via_group"):
            shown["links"]["membership"] = (
                f"{base}v3/groups/{row['via_group']}/users/{row['user_id']}"
            )
        if row.get("prior_role"):
            shown["links"]["prior_role"] = f"{base}v3/roles/{row['prior_role']}"
        return shown

    # --- implied roles --------------------------------------------------------------------

    def _role_ref(self, role: Obj, base: str) -> Obj:
        role_id = role["metadata"]["name"]
        return {
            "id": role_id,
            "name": spec_of(role).get("name"),
            "links": {"self": f"{base}v3/roles/{role_id}"},
        }

    async def implied(self, request: Request) -> Response:
        context = self.service.caller(request)
        auth.require_admin(context, "identity:create_implied_role")
        prior_id, implied_id = request.path_params["prior"], request.path_params["implied"]
        prior = self.service.get(kinds.ROLES, prior_id, "role")
        implied = self.service.get(kinds.ROLES, implied_id, "role")
        present = implied_id in (spec_of(prior).get("implies") or [])
        base = base_url(request)
        if request.method == "PUT":
            if prior_id == implied_id or prior_id in {
                r["metadata"]["name"] for r in self.service.directory.implied_closure([implied_id])
            }:
                raise forbidden(f"Implied role {implied_id} would create a loop with {prior_id}.")
            if spec_of(implied).get("name") == "admin":
                raise forbidden("admin may not be an implied role.")
            if not present:
                await self.service.update(
                    kinds.ROLES,
                    prior_id,
                    lambda s: s.update(implies=[*(s.get("implies") or []), implied_id]),
                    "role",
                )
            body = {
                "role_inference": {
                    "prior_role": self._role_ref(prior, base),
                    "implies": self._role_ref(implied, base),
                },
                "links": {"self": f"{base}v3/roles/{prior_id}/implies/{implied_id}"},
            }
            return json_response(body, 201)
        if not present:
            raise not_found(f"{prior_id} does not imply {implied_id}.")
        if request.method == "DELETE":
            await self.service.update(
                kinds.ROLES,
                prior_id,
                lambda s: s.update(implies=[i for i in s.get("implies") or [] if i != implied_id]),
                "role",
            )
            return empty()
        if request.method == "HEAD":
            return empty(204)
        body = {
            "role_inference": {
                "prior_role": self._role_ref(prior, base),
                "implies": self._role_ref(implied, base),
            },
            "links": {"self": f"{base}v3/roles/{prior_id}/implies/{implied_id}"},
        }
        return json_response(body)

    def _inference(self, prior: Obj, base: str) -> Obj:
        implies = [
            self._role_ref(role, base)
            for role_id in spec_of(prior).get("implies") or []
            if (role := self.service.directory.get(kinds.ROLES, role_id)) is not None
        ]
        return {"prior_role": self._role_ref(prior, base), "implies": implies}

    async def list_implied(self, request: Request) -> Response:
        context = self.service.caller(request)
        auth.require_admin(context, "identity:list_implied_roles")
        prior = self.service.get(kinds.ROLES, request.path_params["prior"], "role")
        base = base_url(request)
        return json_response(
            {"role_inference": self._inference(prior, base), "links": {"self": str(request.url)}}
        )

    async def role_inferences(self, request: Request) -> Response:
        context = self.service.caller(request)
        auth.require_admin(context, "identity:list_role_inference_rules")
        base = base_url(request)
        rules = [
            self._inference(role, base)
            for role in self.service.directory.all(kinds.ROLES)
            if spec_of(role).get("implies")
        ]
        return json_response({"role_inferences": rules, "links": {"self": str(request.url)}})
