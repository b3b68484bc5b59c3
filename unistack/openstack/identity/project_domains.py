"""Projects acting as domains: the `/v3/projects` paths where Keystone treats a domain as a
project with `is_domain: true`.

In Keystone every domain is also a project (no domain, no parent, `is_domain: true`). unistack
keeps domains as Domain objects and shows them through the project API the way Keystone
does: `POST /v3/projects` with `is_domain: true` creates a domain (listed by `/v3/domains`),
`GET /v3/projects?is_domain=true` lists the domains as projects, and `GET`, `PATCH` and
`DELETE /v3/projects/{id}` on a domain's id show, change and delete that domain (disabled
first, as any domain). Everything else goes on to the plain project handlers (`resources`).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.identity import kinds
from unistack.iaas.identity.kinds import spec_of
from unistack.openstack import auth
from unistack.openstack.identity.resources import (
    RESOURCES,
    Collections,
    as_bool,
    clean_body,
    list_links,
    matches,
)
from unistack.openstack.identity.service import IdentityService, new_id
from unistack.openstack.web import bad_request, base_url, empty, json_response, read_json

Obj = dict[str, Any]
PROJECTS, DOMAINS = RESOURCES["projects"], RESOURCES["domains"]
# What a project acting as a domain has by definition; a change to any of it is refused.
FIXED: Obj = {"domain_id": None, "parent_id": None, "is_domain": True}


def as_project(domain: Obj, base: str) -> Obj:
    """A domain in the project API's shape."""
    spec = spec_of(domain)
    domain_id = domain["metadata"]["name"]
    shown = {
        "description": spec.get("description") or "",
        "enabled": spec.get("enabled", True),
        "tags": spec.get("tags") or [],
        "options": spec.get("options") or {},
        **{k: v for k, v in spec.items() if k not in ("config", "id")},
        **FIXED,
    }
    shown["id"] = domain_id
    shown["links"] = {"self": f"{base}v3/projects/{domain_id}"}
    return shown


def _domain_spec(data: Obj) -> Obj:
    for key, value in FIXED.items():
        if key in data and data[key] != value:
            raise bad_request(f"Invalid input for field '{key}': a domain has {key} {value}.")
    return {k: v for k, v in data.items() if k not in FIXED and k != "id"}


class ProjectDomains:
    def __init__(self, service: IdentityService, collections: Collections) -> None:
        self.service = service
        self.collections = collections

    def routes(self) -> list[Route]:
        return [
            Route("/v3/projects", self.list, methods=["GET"]),
            Route("/v3/projects", self.create, methods=["POST"]),
            Route("/v3/projects/{id}", self.one, methods=["GET", "PATCH", "DELETE"]),
        ]

    async def list(self, request: Request) -> Response:
        if as_bool(request.query_params.get("is_domain", "")) is not True:
            return await self.collections.list(PROJECTS, request)
        auth.require_admin(self.service.caller(request), "identity:list_projects")
        query = {k: v for k, v in request.query_params.items() if k in ("name", "enabled")}
        base = base_url(request)
        shown = [
            as_project(domain, base)
            for domain in self.service.directory.all(kinds.DOMAINS)
            if matches(domain, DOMAINS, query)
        ]
        return json_response({"projects": shown, "links": list_links(request)})

    async def create(self, request: Request) -> Response:
        auth.require_admin(self.service.caller(request), "identity:create_project")
        body = await read_json(request)
        if not (isinstance(body.get("project"), dict) and body["project"].get("is_domain")):
            return await self.collections.create_from(PROJECTS, request, body)
        spec = _domain_spec(clean_body(PROJECTS, body))
        if not spec.get("name"):
            raise bad_request("Invalid input for field 'name': 'name' is a required property")
        spec.setdefault("description", "")
        spec.setdefault("enabled", True)
        self.collections.check_unique(DOMAINS, spec, None)
        created = await self.service.create(kinds.DOMAINS, new_id(), spec, "project")
        return json_response({"project": as_project(created, base_url(request))}, 201)

    async def one(self, request: Request) -> Response:
        """A project by id, or the domain of that id when there is no such project."""
        object_id = request.path_params["id"]
        directory = self.service.directory
        domain = directory.get(kinds.DOMAINS, object_id)
        if domain is None or directory.get(kinds.PROJECTS, object_id) is not None:
            handler = {
                "GET": self.collections.show,
                "PATCH": self.collections.patch,
                "DELETE": self.collections.delete,
            }[request.method]
            return await handler(PROJECTS, request)
        context = self.service.caller(request)
        base = base_url(request)
        if request.method == "GET":
            if not DOMAINS.may_read(context, domain):
                raise auth.deny("identity:get_project")
            return json_response({"project": as_project(domain, base)})
        if request.method == "DELETE":
            auth.require_admin(context, "identity:delete_project")
            await self.collections.before_delete(DOMAINS, domain)
            await self.service.delete(kinds.DOMAINS, object_id)
            return empty()
        auth.require_admin(context, "identity:update_project")
        data = _domain_spec(clean_body(PROJECTS, await read_json(request)))
        self.collections.check_unique(DOMAINS, {**spec_of(domain), **data}, object_id)
        updated = await self.service.update(
            kinds.DOMAINS, object_id, lambda spec: spec.update(data), "project"
        )
        return json_response({"project": as_project(updated, base)})
