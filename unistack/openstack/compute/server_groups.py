"""Server groups (`/os-server-groups`): affinity and anti-affinity for the scheduler.

A group belongs to its project; its members are the servers created with the scheduler hint
`group` (found by index, not stored twice). Up to 2.14 a group has one policy of `affinity`
or `anti-affinity`; from 2.15 also `soft-affinity` and `soft-anti-affinity` (the scheduler
weighs those instead of filtering). From 2.13 a group shows its user and project; from 2.64
it has one `policy` and `rules` (`max_server_per_host` for anti-affinity). Admins list every
project's groups with `all_projects`; lists are paged with `limit` and `offset`.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.compute import kinds
from unistack.iaas.records import spec_of
from unistack.openstack.auth import may_see, require_member, require_project, wants_all_projects
from unistack.openstack.compute import quotas
from unistack.openstack.compute.server_requests import check_name
from unistack.openstack.compute.service import (
    ComputeService,
    integer,
    microversion,
    now_text,
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
HARD_POLICIES = ("affinity", "anti-affinity")
SOFT_POLICIES = ("soft-affinity", "soft-anti-affinity")


class ServerGroups:
    def __init__(self, service: ComputeService) -> None:
        self.service = service
        self.records = service.records

    def routes(self) -> list[Route]:
        return [
            Route("/v2.1/os-server-groups", self.list_groups, methods=["GET"]),
            Route("/v2.1/os-server-groups", self.create_group, methods=["POST"]),
            Route("/v2.1/os-server-groups/{group_id}", self.show_group, methods=["GET"]),
            Route("/v2.1/os-server-groups/{group_id}", self.delete_group, methods=["DELETE"]),
        ]

    def view(self, request: Request, group: Obj) -> Obj:
        """A group at the request's version: `user_id` and `project_id` from 2.13; from
        2.64 one `policy` and its `rules` instead of `policies` and `metadata`."""
        spec, group_id = spec_of(group), group["metadata"]["name"]
        version = microversion(request)
        members = [
            server["metadata"]["name"]
            for server in self.records.indexed(kinds.SERVERS, "group", group_id)
            if not server["metadata"].get("deletionTimestamp")
        ]
        view: Obj = {"id": group_id, "name": spec.get("name", ""), "members": members}
        if version.at_least("2.64"):
            view |= {"policy": (spec.get("policies") or [""])[0], "rules": spec.get("rules") or {}}
        else:
            view |= {"policies": list(spec.get("policies") or []), "metadata": {}}
        if version.at_least("2.13"):
            view |= {"user_id": spec.get("user_id"), "project_id": spec.get("project_id")}
        return view

    def _visible(self, request: Request) -> Obj:
        context = self.service.authenticate(request)
        group_id = request.path_params["group_id"]
        group = self.records.get(kinds.SERVER_GROUPS, group_id)
        if group is None or not may_see(context, spec_of(group).get("project_id")):
            raise not_found(f"Instance group {group_id} could not be found.")
        return group

    async def list_groups(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        if wants_all_projects(context, request.query_params.get("all_projects")):
            groups = self.records.all(kinds.SERVER_GROUPS)
        else:
            groups = self.records.of_project(kinds.SERVER_GROUPS, context.project_id or "")
        groups.sort(key=lambda g: str(spec_of(g).get("created_at")))
        query = request.query_params
        start = integer(query.get("offset", 0), "offset")
        shown = groups[start:]
        if query.get("limit") is not None:
            shown = shown[: integer(query["limit"], "limit", 1)]
        return json_response({"server_groups": [self.view(request, g) for g in shown]})

    async def show_group(self, request: Request) -> Response:
        return json_response({"server_group": self.view(request, self._visible(request))})

    async def delete_group(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_member(context, "os_compute_api:os-server-groups:delete")
        group = self._visible(request)
        await self.records.delete(kinds.SERVER_GROUPS, group["metadata"]["name"])
        return empty(204)

    async def create_group(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        project_id = require_project(context)
        require_member(context, "os_compute_api:os-server-groups:create")
        body = (await read_json(request)).get("server_group")
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute server_group.")
        policies, rules = _policy(body, microversion(request))
        limits = quotas.limits_of(self.records, project_id)
        if len(self.records.of_project(kinds.SERVER_GROUPS, project_id)) >= limits["server_groups"]:
            raise OpenStackError(403, "Quota exceeded, too many server groups.")
        spec = {
            "name": check_name(body.get("name")),
            "policies": policies,
            "rules": rules,
            "project_id": project_id,
            "user_id": context.user_id,
            "created_at": now_text(),
        }
        group = await self.records.create(kinds.SERVER_GROUPS, str(uuid.uuid4()), spec)
        return json_response({"server_group": self.view(request, group)})


def _policy(body: Obj, version: Version) -> tuple[list[str], Obj]:
    """The group's policy as asked: a one-item `policies` list up to 2.63, from 2.64 a
    `policy` and `rules` (`max_server_per_host`, for anti-affinity only)."""
    allowed = HARD_POLICIES + (SOFT_POLICIES if version.at_least("2.15") else ())
    if not version.at_least("2.64"):
        policies = body.get("policies")
        if (
            not isinstance(policies, list)
            or len(policies) != 1
            or policies[0] not in allowed
            or set(body) - {"name", "policies"}
        ):
            raise bad_request(f"Invalid input for field/attribute policies. Value: {policies}.")
        return list(policies), {}
    policy, rules = body.get("policy"), body.get("rules", {})
    if policy not in allowed or set(body) - {"name", "policy", "rules"}:
        raise bad_request(f"Invalid input for field/attribute policy. Value: {policy}.")
    if not isinstance(rules, dict) or set(rules) - {"max_server_per_host"}:
        raise bad_request(f"Invalid input for field/attribute rules. Value: {rules}.")
    if rules and policy != "anti-affinity":
        raise bad_request("Only anti-affinity policy supports rules.")
    if "max_server_per_host" in rules:
        rules = {"max_server_per_host": integer(rules["max_server_per_host"], "rules", 1)}
    return [str(policy)], rules
