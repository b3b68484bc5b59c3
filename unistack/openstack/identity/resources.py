"""Keystone's plain collections: domains, projects, users, groups, roles, regions, services,
endpoints — create, list (with filters), show, update, delete, from one table.

Each `Resource` says what Keystone says of the collection: its JSON names, the attributes it
shows with their defaults, which are required on create, which query parameters filter a
list, what makes two of them the same (a name within a domain → 409), who may read it, and
what `checks` must hold before a write (a project's domain exists, a domain is disabled before
it is deleted). Unknown attributes are kept and shown back, as Keystone keeps "extra"
attributes. Deleting cascades as Keystone's does: a user's or group's role assignments and
memberships, a project's assignments, a role's assignments and inference rules; disabling or
deleting a user or a project revokes its tokens. Domains seen as projects (`is_domain`) are
`project_domains`' and a domain's configuration `domain_config`'s.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.crds import Kind
from unistack.iaas.identity import kinds, passwords
from unistack.iaas.identity.kinds import spec_of
from unistack.openstack import auth
from unistack.openstack.auth import AuthContext
from unistack.openstack.identity.service import IdentityService, new_id
from unistack.openstack.web import (
    OpenStackError,
    bad_request,
    base_url,
    conflict,
    empty,
    forbidden,
    json_response,
    read_json,
)

Obj = dict[str, Any]
HIDDEN = frozenset(
    {"password_hash", "password", "password_created_at", "users", "implies", "secret", "id"}
)
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ReadRule = Callable[[AuthContext, Obj], bool]
Check = Callable[[IdentityService, Obj, Obj | None], None]


def _admin_only(context: AuthContext, obj: Obj) -> bool:
    return context.is_admin


def _anyone(context: AuthContext, obj: Obj) -> bool:
    return True


@dataclass(frozen=True)
class Resource:
    kind: Kind
    member: str  # "project"
    collection: str  # "projects"
    defaults: Obj
    required: tuple[str, ...] = ("name",)
    filters: tuple[str, ...] = ("name",)
    unique_in_domain: bool = False
    may_read: ReadRule = _admin_only
    checks: tuple[Check, ...] = ()
    id_from_body: bool = False  # regions: the id may be chosen
    immutable: tuple[str, ...] = ("id", "domain_id")
    extra: dict[str, Callable[[Obj], Any]] = field(default_factory=dict)
    path: str = ""  # under /v3, when not the collection's name (OS-OAUTH1/consumers)
    max_name: int = 255
    secret: str = ""  # an attribute generated on create and shown only then (consumers)
    hidden: frozenset[str] = frozenset()  # spec keys served elsewhere (a domain's config)

    @property
    def url_path(self) -> str:
        return self.path or self.collection


def view(resource: Resource, obj: Obj, base: str) -> Obj:
    object_id = kinds.openstack_id(obj)
    shown = dict(resource.defaults)
    shown.update(
        (k, v) for k, v in spec_of(obj).items() if k not in HIDDEN and k not in resource.hidden
    )
    for name, compute in resource.extra.items():
        shown[name] = compute(obj)
    shown["id"] = object_id
    shown["links"] = {"self": f"{base}v3/{resource.url_path}/{object_id}"}
    return shown


def list_links(request: Request) -> Obj:
    return {"self": str(request.url), "previous": None, "next": None}


def as_bool(text: str) -> bool | None:
    lowered = text.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    return None


def matches(obj: Obj, resource: Resource, query: dict[str, str]) -> bool:
    spec = spec_of(obj)
    for key in resource.filters:
        if key not in query:
            continue
        wanted = query[key]
        value = spec.get(key, resource.defaults.get(key))
        if isinstance(value, bool):
            if as_bool(wanted) is not value:
                return False
        elif str(value if value is not None else "") != wanted:
            return False
    if "tags" in query:
        tags = set(spec.get("tags") or [])
        if not set(query["tags"].split(",")) <= tags:
            return False
    return True


# --- checks -------------------------------------------------------------------------------


def _domain_exists(service: IdentityService, spec: Obj, old: Obj | None) -> None:
    domain_id = spec.get("domain_id")
    if domain_id and service.directory.get(kinds.DOMAINS, domain_id) is None:
        raise OpenStackError(404, f"Could not find domain: {domain_id}.")


def _parent_exists(service: IdentityService, spec: Obj, old: Obj | None) -> None:
    parent = spec.get("parent_id")
    if old is None and parent and parent != spec.get("domain_id"):
        found = service.directory.get(kinds.PROJECTS, parent)
        if found is None:
            raise OpenStackError(404, f"Could not find project: {parent}.")
        if spec_of(found).get("domain_id") != spec.get("domain_id"):
            raise forbidden("Cannot create project, the parent is in a different domain.")


def _service_exists(service: IdentityService, spec: Obj, old: Obj | None) -> None:
    service_id = spec.get("service_id")
    if service_id and service.directory.get(kinds.SERVICES, service_id) is None:
        raise bad_request(f"Could not find service: {service_id}.")
    interface = spec.get("interface")
    if interface is not None and interface not in ("public", "internal", "admin"):
        raise bad_request(
            f"Invalid input for field 'interface': '{interface}' is not one of "
            "['public', 'internal', 'admin']"
        )


def _region_exists(service: IdentityService, spec: Obj, old: Obj | None) -> None:
    region = spec.get("region_id")
    if region and service.directory.get(kinds.REGIONS, region) is None:
        raise bad_request(f"Could not find region: {region}.")
    parent = spec.get("parent_region_id")
    if parent and service.directory.get(kinds.REGIONS, parent) is None:
        raise bad_request(f"Could not find region: {parent}.")


def _user_project(service: IdentityService, spec: Obj, old: Obj | None) -> None:
    project = spec.get("default_project_id")
    if project and service.directory.get(kinds.PROJECTS, project) is None:
        raise bad_request(f"Could not find project: {project}.")


def _credential_owner(service: IdentityService, spec: Obj, old: Obj | None) -> None:
    user = spec.get("user_id")
    if user and service.directory.get(kinds.USERS, user) is None:
        raise bad_request(f"Could not find user: {user}.")
    blob = spec.get("blob")
    if blob is not None and not isinstance(blob, str):
        raise bad_request("Invalid input for field 'blob': a string is required.")


def _endpoint_region(obj: Obj) -> Any:
    return spec_of(obj).get("region_id")


RESOURCES = {
    "domains": Resource(
        kinds.DOMAINS,
        "domain",
        "domains",
        {"description": "", "enabled": True, "tags": [], "options": {}},
        filters=("name", "enabled"),
        may_read=lambda c, o: (
            c.is_admin
            or o["metadata"]["name"] in {spec_of(c.project).get("domain_id"), c.claims.domain_id}
        ),
        immutable=("id",),
        max_name=64,
        hidden=frozenset({"config"}),
    ),
    "projects": Resource(
        kinds.PROJECTS,
        "project",
        "projects",
        {
            "description": "",
            "enabled": True,
            "domain_id": kinds.DEFAULT_DOMAIN_ID,
            "parent_id": kinds.DEFAULT_DOMAIN_ID,
            "is_domain": False,
            "tags": [],
            "options": {},
        },
        filters=("name", "enabled", "domain_id", "parent_id", "is_domain"),
        unique_in_domain=True,
        may_read=lambda c, o: c.is_admin or c.project_id == o["metadata"]["name"],
        checks=(_domain_exists, _parent_exists),
        immutable=("id", "domain_id", "parent_id", "is_domain"),
        max_name=64,
    ),
    "users": Resource(
        kinds.USERS,
        "user",
        "users",
        {
            "enabled": True,
            "domain_id": kinds.DEFAULT_DOMAIN_ID,
            "password_expires_at": None,
            "options": {},
        },
        filters=("name", "enabled", "domain_id"),
        unique_in_domain=True,
        may_read=lambda c, o: c.is_admin or c.user_id == o["metadata"]["name"],
        checks=(_domain_exists, _user_project),
    ),
    "groups": Resource(
        kinds.GROUPS,
        "group",
        "groups",
        {"description": "", "domain_id": kinds.DEFAULT_DOMAIN_ID},
        filters=("name", "domain_id"),
        unique_in_domain=True,
        checks=(_domain_exists,),
        extra={},
    ),
    "roles": Resource(
        kinds.ROLES,
        "role",
        "roles",
        {"domain_id": None, "description": None, "options": {}},
        filters=("name", "domain_id"),
        checks=(_domain_exists,),
    ),
    "regions": Resource(
        kinds.REGIONS,
        "region",
        "regions",
        {"description": "", "parent_region_id": None},
        required=(),
        filters=("parent_region_id",),
        may_read=_anyone,
        checks=(_region_exists,),
        id_from_body=True,
    ),
    "services": Resource(
        kinds.SERVICES,
        "service",
        "services",
        {"enabled": True, "description": None},
        required=("type",),
        filters=("type", "name"),
        may_read=_anyone,
    ),
    "endpoints": Resource(
        kinds.ENDPOINTS,
        "endpoint",
        "endpoints",
        {"enabled": True, "region_id": None},
        required=("service_id", "interface", "url"),
        filters=("service_id", "interface", "region_id"),
        may_read=_anyone,
        checks=(_service_exists, _region_exists),
        extra={"region": _endpoint_region},
    ),
    "policies": Resource(
        kinds.POLICIES,
        "policy",
        "policies",
        {},
        required=("blob", "type"),
        filters=("type",),
    ),
    "credentials": Resource(
        kinds.CREDENTIALS,
        "credential",
        "credentials",
        {"project_id": None},
        required=("user_id", "type", "blob"),
        filters=("user_id", "type"),
        checks=(_credential_owner,),
    ),
    "consumers": Resource(
        kinds.CONSUMERS,
        "consumer",
        "consumers",
        {"description": None},
        required=(),
        filters=(),
        path="OS-OAUTH1/consumers",
        secret="secret",
    ),
    "endpoint_groups": Resource(
        kinds.ENDPOINT_GROUPS,
        "endpoint_group",
        "endpoint_groups",
        {"description": None},
        required=("name", "filters"),
        filters=("name",),
        path="OS-EP-FILTER/endpoint_groups",
    ),
}


def clean_body(resource: Resource, body: Obj) -> Obj:
    data = body.get(resource.member)
    if not isinstance(data, dict):
        raise bad_request(f"Invalid input for field '{resource.member}': expected an object.")
    if "name" in data and (not isinstance(data["name"], str) or not data["name"].strip()):
        raise bad_request("Invalid input for field 'name': a non-empty string is required.")
    if "name" in data and len(data["name"]) > resource.max_name:
        raise bad_request(
            f"Invalid input for field 'name': '{data['name']}' is too long "
            f"(at most {resource.max_name} characters)."
        )
    if "enabled" in data and not isinstance(data["enabled"], bool):
        raise bad_request(
            f"Invalid input for field 'enabled': {data['enabled']!r} is not of type 'boolean'"
        )
    if "tags" in data and not (
        isinstance(data["tags"], list) and all(isinstance(t, str) and t for t in data["tags"])
    ):
        raise bad_request("Invalid input for field 'tags': a list of strings is required.")
    return {k: v for k, v in data.items() if k != "links"}


MAX_TAGS = 80
MAX_TAG_LENGTH = 255


def _checked_tags(tags: Any) -> list[str]:
    """Keystone's tag rules: strings of 1-255 characters without '/' or ',', at most 80."""
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        raise bad_request(f"Invalid input for field 'tags': a list of at most {MAX_TAGS} tags.")
    for tag in tags:
        if (
            not isinstance(tag, str)
            or not 0 < len(tag) <= MAX_TAG_LENGTH
            or "/" in tag
            or "," in tag
        ):
            raise bad_request(f"Invalid input for field 'tags': {tag!r} is not a valid tag.")
    return list(dict.fromkeys(tags))


class Collections:
    """The handlers of the plain collections for one identity service."""

    def __init__(self, service: IdentityService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        routes = []
        for resource in RESOURCES.values():
            name = resource.url_path
            routes += [
                Route(f"/v3/{name}", self._handler(resource, self.list), methods=["GET"]),
                Route(f"/v3/{name}", self._handler(resource, self.create), methods=["POST"]),
                Route(f"/v3/{name}/{{id}}", self._handler(resource, self.show), methods=["GET"]),
                Route(f"/v3/{name}/{{id}}", self._handler(resource, self.patch), methods=["PATCH"]),
                Route(
                    f"/v3/{name}/{{id}}", self._handler(resource, self.delete), methods=["DELETE"]
                ),
            ]
        routes += [
            Route(
                "/v3/regions/{id}",
                self._handler(RESOURCES["regions"], self.create),
                methods=["PUT"],
            ),
            Route("/v3/projects/{id}/tags", self.tags, methods=["GET", "PUT", "DELETE"]),
            Route("/v3/projects/{id}/tags/{tag}", self.tag, methods=["GET", "PUT", "DELETE"]),
        ]
        return routes

    async def tags(self, request: Request) -> Response:
        """A project's tags: list, replace all (PUT), remove all (DELETE)."""
        context = self.service.caller(request)
        project_id = request.path_params["id"]
        project = self.service.get(kinds.PROJECTS, project_id, "project")
        if request.method == "GET":
            if not RESOURCES["projects"].may_read(context, project):
                raise auth.deny("identity:list_project_tags")
            return json_response({"tags": spec_of(project).get("tags") or []})
        auth.require_admin(context, "identity:update_project_tags")
        tags: list[str] = []
        if request.method == "PUT":
            tags = _checked_tags((await read_json(request)).get("tags"))
        await self.service.update(
            kinds.PROJECTS, project_id, lambda s: s.update(tags=tags), "project"
        )
        return json_response({"tags": tags}) if request.method == "PUT" else empty()

    async def tag(self, request: Request) -> Response:
        """One tag of a project: check (GET), add (PUT), remove (DELETE)."""
        context = self.service.caller(request)
        project_id, tag = request.path_params["id"], request.path_params["tag"]
        project = self.service.get(kinds.PROJECTS, project_id, "project")
        present = tag in (spec_of(project).get("tags") or [])
        if request.method == "GET":
            if not RESOURCES["projects"].may_read(context, project):
                raise auth.deny("identity:get_project_tag")
            if not present:
                raise OpenStackError(404, f"Could not find project tag: {tag}.")
            return empty()
        auth.require_admin(context, "identity:update_project_tags")
        if request.method == "PUT":
            wanted = _checked_tags([*(spec_of(project).get("tags") or []), tag])
            if not present:
                await self.service.update(
                    kinds.PROJECTS, project_id, lambda s: s.update(tags=wanted), "project"
                )
            return empty(201)  # the API guideline for tags: 201 and no body
        if not present:
            raise OpenStackError(404, f"Could not find project tag: {tag}.")
        await self.service.update(
            kinds.PROJECTS,
            project_id,
            lambda s: s.update(tags=[t for t in s.get("tags") or [] if t != tag]),
            "project",
        )
        return empty()

    def _handler(
        self,
        resource: Resource,
        method: Callable[[Resource, Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            return await method(resource, request)

        return handle

    async def list(self, resource: Resource, request: Request) -> Response:
        context = self.service.caller(request)
        query = dict(request.query_params)
        items = [
            obj
            for obj in self.service.directory.all(resource.kind)
            if matches(obj, resource, query)
        ]
        if resource.may_read is not _anyone:  # Keystone lets only regions be listed by all
            auth.require_admin(context, f"identity:list_{resource.collection}")
        base = base_url(request)
        shown = [view(resource, obj, base) for obj in items]
        return json_response({resource.collection: shown, "links": list_links(request)})

    async def show(self, resource: Resource, request: Request) -> Response:
        context = self.service.caller(request)
        obj = self.service.get(resource.kind, request.path_params["id"], resource.member)
        if not resource.may_read(context, obj):
            raise auth.deny(f"identity:get_{resource.member}")
        return json_response({resource.member: view(resource, obj, base_url(request))})

    def check_unique(self, resource: Resource, spec: Obj, own_id: str | None) -> None:
        name = spec.get("name")
        if not name:
            return
        if resource.unique_in_domain:
            domain = spec.get("domain_id", kinds.DEFAULT_DOMAIN_ID)
            found = self.service.directory.by_name(resource.kind, name, domain)
            if found is not None and found["metadata"]["name"] != own_id:
                raise conflict(
                    f"Conflict occurred attempting to store {resource.member} - Duplicate entry "
                    f"found with name {name} at domain ID {domain}."
                )
        elif resource.kind in (kinds.DOMAINS, kinds.ROLES):
            same = [
                o
                for o in self.service.directory.all(resource.kind)
                if spec_of(o).get("name") == name
                and spec_of(o).get("domain_id") == spec.get("domain_id")
                and o["metadata"]["name"] != own_id
            ]
            if same:
                raise conflict(
                    f"Conflict occurred attempting to store {resource.member} - Duplicate entry "
                    f"found with name {name}."
                )

    async def create(self, resource: Resource, request: Request) -> Response:
        context = self.service.caller(request)
        auth.require_admin(context, f"identity:create_{resource.member}")
        return await self.create_from(resource, request, await read_json(request))

    async def create_from(self, resource: Resource, request: Request, body: Obj) -> Response:
        """Create from a body already read (`create` reads it)."""
        context = self.service.caller(request)
        auth.require_admin(context, f"identity:create_{resource.member}")
        data = clean_body(resource, body)
        for key in resource.required:
            if key not in data or data[key] in (None, ""):
                raise bad_request(
                    f"Invalid input for field '{key}': '{key}' is a required property"
                )
        object_id = new_id()
        chosen = request.path_params.get("id") or (
            data.get("id") if resource.id_from_body else None
        )
        if chosen:
            object_id = str(chosen)
            if not _ID.match(object_id):
                raise bad_request(f"Invalid input for field 'id': {object_id!r}")
        spec = {k: v for k, v in data.items() if k != "id"}
        if resource.kind is kinds.PROJECTS:
            spec.setdefault(
                "domain_id", spec_of(context.project).get("domain_id") or kinds.DEFAULT_DOMAIN_ID
            )
            spec.setdefault("parent_id", spec["domain_id"])  # is_domain: project_domains
        elif resource.kind in (kinds.USERS, kinds.GROUPS):
            spec.setdefault("domain_id", kinds.DEFAULT_DOMAIN_ID)
        elif resource.kind is kinds.ROLES:
            spec.setdefault("domain_id", None)
        elif resource.kind is kinds.ENDPOINTS:
            await self._endpoint_region(spec)
        for check in resource.checks:
            check(self.service, spec, None)
        self.check_unique(resource, spec, None)
        if resource.kind is kinds.USERS:
            await self._hash_password(spec)
        if resource.kind is kinds.DOMAINS and data.get("explicit_domain_id"):
            object_id = str(data.pop("explicit_domain_id"))
            spec.pop("explicit_domain_id", None)
        if resource.secret:
            spec[resource.secret] = secrets.token_urlsafe(24)
        created = await self.service.create(resource.kind, object_id, spec, resource.member)
        shown = view(resource, created, base_url(request))
        if resource.secret:
            shown[resource.secret] = spec[resource.secret]
        return json_response({resource.member: shown}, 201)

    async def _endpoint_region(self, spec: Obj) -> None:
        """The v2-style `region` names the region; Keystone creates it if it does not exist."""
        legacy = spec.pop("region", None)
        if legacy and not spec.get("region_id"):
            spec["region_id"] = legacy
            if self.service.directory.get(kinds.REGIONS, str(legacy)) is None:
                region = {"description": "", "parent_region_id": None}
                await self.service.create(kinds.REGIONS, str(legacy), region, "region")

    async def _hash_password(self, spec: Obj) -> None:
        password = spec.pop("password", None)
        if password is None:
            return
        if not isinstance(password, str):
            raise bad_request("Invalid input for field 'password': a string is required.")
        rounds = self.service.settings.hash_rounds
        spec["password_hash"] = await asyncio.to_thread(passwords.hash_password, password, rounds)

    async def patch(self, resource: Resource, request: Request) -> Response:
        context = self.service.caller(request)
        auth.require_admin(context, f"identity:update_{resource.member}")
        object_id = request.path_params["id"]
        old = self.service.get(resource.kind, object_id, resource.member)
        data = clean_body(resource, await read_json(request))
        if resource.kind is kinds.ENDPOINTS:
            await self._endpoint_region(data)
        for key in resource.immutable:
            if key in data and data[key] != (spec_of(old).get(key) if key != "id" else object_id):
                raise bad_request(f"Cannot change {resource.member} {key}.")
        merged = {**spec_of(old), **{k: v for k, v in data.items() if k != "id"}}
        for check in resource.checks:
            check(self.service, merged, old)
        self.check_unique(resource, merged, object_id)
        if resource.kind is kinds.USERS and "password" in data:
            await self._hash_password(merged)
            data = {k: v for k, v in data.items() if k != "password"}
            data["password_hash"] = merged["password_hash"]

        def change(spec: Obj) -> None:
            spec.update((k, v) for k, v in data.items() if k != "id")

        updated = await self.service.update(resource.kind, object_id, change, resource.member)
        if data.get("enabled") is False and spec_of(old).get("enabled", True):
            await self._revoke_tokens(resource.kind, object_id)
        return json_response({resource.member: view(resource, updated, base_url(request))})

    async def _revoke_tokens(self, kind: Kind, object_id: str) -> None:
        """A user's or project's tokens end when it is disabled or deleted, as in Keystone."""
        if kind is kinds.USERS:
            await self.service.revoke(user_id=object_id)
        elif kind is kinds.PROJECTS:
            await self.service.revoke(project_id=object_id)

    async def delete(self, resource: Resource, request: Request) -> Response:
        context = self.service.caller(request)
        auth.require_admin(context, f"identity:delete_{resource.member}")
        object_id = request.path_params["id"]
        obj = self.service.get(resource.kind, object_id, resource.member)
        await self.before_delete(resource, obj)
        await self.service.delete(resource.kind, object_id)
        await self._revoke_tokens(resource.kind, object_id)
        return empty()

    async def before_delete(self, resource: Resource, obj: Obj) -> None:
        """Keystone's rules and cascades for deleting this kind of object."""
        directory, object_id = self.service.directory, obj["metadata"]["name"]
        kind = resource.kind
        if kind is kinds.DOMAINS:
            if spec_of(obj).get("enabled", True):
                raise forbidden("Cannot delete a domain that is enabled, please disable it first.")
            for child_kind in (kinds.PROJECTS, kinds.USERS, kinds.GROUPS):
                for child in directory.all(child_kind):
                    if spec_of(child).get("domain_id") == object_id:
                        await self._remove_assignments(child_kind, child["metadata"]["name"])
                        await self.service.delete(child_kind, child["metadata"]["name"])
            await self._remove_assignments(kind, object_id)
        elif kind is kinds.PROJECTS:
            children = directory.indexed(kinds.PROJECTS, "parent", object_id)
            if children:
                raise forbidden(
                    f"Cannot delete the project {object_id} since it is not a leaf in the "
                    "hierarchy. Use the cascade option if you want to delete a whole subtree."
                )
            await self._remove_assignments(kind, object_id)
        elif kind in (kinds.USERS, kinds.GROUPS):
            await self._remove_assignments(kind, object_id)
            if kind is kinds.USERS:
                for group in directory.groups_of(object_id):
                    await self._leave(group["metadata"]["name"], object_id)
                for credential in directory.indexed(
                    kinds.APPLICATION_CREDENTIALS, "user", object_id
                ):
                    await self.service.delete(
                        kinds.APPLICATION_CREDENTIALS, credential["metadata"]["name"]
                    )
        elif kind is kinds.ROLES:
            for assignment in directory.all(kinds.ROLE_ASSIGNMENTS):
                if spec_of(assignment).get("role_id") == object_id:
                    await self.service.delete(
                        kinds.ROLE_ASSIGNMENTS, assignment["metadata"]["name"]
                    )
            for role in directory.all(kinds.ROLES):
                if object_id in (spec_of(role).get("implies") or []):
                    await self.service.update(
                        kinds.ROLES,
                        role["metadata"]["name"],
                        lambda s: s.update(
                            implies=[i for i in s.get("implies") or [] if i != object_id]
                        ),
                        "role",
                    )
        elif kind is kinds.SERVICES:
            for endpoint in directory.all(kinds.ENDPOINTS):
                if spec_of(endpoint).get("service_id") == object_id:
                    await self.service.delete(kinds.ENDPOINTS, endpoint["metadata"]["name"])
        elif kind is kinds.REGIONS:
            children = [
                r
                for r in directory.all(kinds.REGIONS)
                if spec_of(r).get("parent_region_id") == object_id
            ]
            endpoints = [
                e
                for e in directory.all(kinds.ENDPOINTS)
                if spec_of(e).get("region_id") == object_id
            ]
            if children or endpoints:
                raise forbidden(
                    f"Unable to delete region {object_id} because it or its child regions "
                    "have associated endpoints."
                )

    async def _remove_assignments(self, kind: Kind, object_id: str) -> None:
        directory = self.service.directory
        if kind in (kinds.USERS, kinds.GROUPS):
            prefix = "user" if kind is kinds.USERS else "group"
            found = directory.assignments_of(f"{prefix}/{object_id}")
        else:
            prefix = "project" if kind is kinds.PROJECTS else "domain"
            found = directory.assignments_on(f"{prefix}/{object_id}")
        for assignment in found:
            await self.service.delete(kinds.ROLE_ASSIGNMENTS, assignment["metadata"]["name"])

    async def _leave(self, group_id: str, user_id: str) -> None:
        await self.service.update(
            kinds.GROUPS,
            group_id,
            lambda s: s.update(users=[u for u in s.get("users") or [] if u != user_id]),
            "group",
        )
