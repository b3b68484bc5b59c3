"""Security groups and their rules: `/v2.0/security-groups`, `/v2.0/security-group-rules`.

Every project has a `default` group, made on first need (its first list or create of groups,
or its first port) with a stable id, so several workers racing make one; it has Neutron's
default rules: all egress (IPv4 and IPv6) and ingress from members of the same group. It
cannot be deleted (409) and no other group may be called `default`. A group in use by a port
cannot be deleted either.
"""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.network import kinds
from unistack.iaas.network.stamps import stamp_new
from unistack.iaas.records import Duplicate, Obj, spec_of
from unistack.openstack.auth import AuthContext
from unistack.openstack.network import query, rules
from unistack.openstack.network.service import (
    NetworkService,
    boolean,
    in_use,
    missing,
    new_id,
    reject_unknown,
    standard,
    text,
)
from unistack.openstack.web import empty, json_response

DEFAULT = "default"
NAMESPACE = uuid.UUID("5b0d0c1e-8a58-4c55-9d0e-6f1b7c5b2a10")
GROUP_KEYS = {"name", "description", "project_id", "tenant_id", "stateful", "tags"}


def default_group_id(project_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"default-security-group/{project_id}"))


def rule_view(obj: Obj) -> Obj:
    spec = spec_of(obj)
    shown = {k: v for k, v in standard(obj).items() if k not in ("name", "tags")}
    shown["security_group_id"] = spec.get("security_group_id")
    for key in rules.ATTRIBUTES:
        shown[key] = spec.get(key)
    shown["normalized_cidr"] = spec.get("remote_ip_prefix")
    shown["belongs_to_default_sg"] = spec.get("belongs_to_default_sg", False)
    return shown


def group_view(service: NetworkService, obj: Obj) -> Obj:
    group_id = obj["metadata"]["name"]
    members = service.records.indexed(kinds.SECURITY_GROUP_RULES, "group", group_id)
    shown = standard(obj)
    shown["security_group_rules"] = [rule_view(r) for r in members]
    shown["stateful"] = spec_of(obj).get("stateful", True)
    shown["shared"] = False
    return shown


async def _add_rule(
    service: NetworkService, group: Obj, rule: Obj, rule_id: str | None = None
) -> Obj:
    group_spec = spec_of(group)
    spec = {
        **rule,
        "project_id": group_spec.get("project_id"),
        "security_group_id": group["metadata"]["name"],
        "belongs_to_default_sg": group_spec.get("name") == DEFAULT,
    }
    return await service.records.create(
        kinds.SECURITY_GROUP_RULES, rule_id or new_id(), stamp_new(spec)
    )


async def ensure_default(service: NetworkService, project_id: str) -> str:
    """The project's default group, made (idempotently) if it does not exist yet."""
    group_id = default_group_id(project_id)
    if service.records.get(kinds.SECURITY_GROUPS, group_id) is not None:
        return group_id
    spec = stamp_new(
        {
            "project_id": project_id,
            "name": DEFAULT,
            "description": "Default security group",
            "stateful": True,
        }
    )
    try:
        group = await service.records.create(kinds.SECURITY_GROUPS, group_id, spec)
    except Duplicate:
        return group_id
    for index, (direction, ethertype, remote) in enumerate(
        [
            ("egress", "IPv4", None),
            ("egress", "IPv6", None),
            ("ingress", "IPv4", group_id),
            ("ingress", "IPv6", group_id),
        ]
    ):
        body = rules.checked_rule(
            {"direction": direction, "ethertype": ethertype, "remote_group_id": remote}
        )
        rule_id = str(uuid.uuid5(NAMESPACE, f"{group_id}/{index}"))
        try:
            await _add_rule(service, group, body, rule_id)
        except Duplicate:
            continue
    return group_id


class SecurityGroups:
    def __init__(self, service: NetworkService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        groups, group_rules = "/v2.0/security-groups", "/v2.0/security-group-rules"
        return [
            Route(groups, self.list_groups, methods=["GET"]),
            Route(groups, self.create_group, methods=["POST"]),
            Route(groups + "/{id}", self.show_group, methods=["GET"]),
            Route(groups + "/{id}", self.update_group, methods=["PUT"]),
            Route(groups + "/{id}", self.delete_group, methods=["DELETE"]),
            Route(group_rules, self.list_rules, methods=["GET"]),
            Route(group_rules, self.create_rule, methods=["POST"]),
            Route(group_rules + "/{id}", self.show_rule, methods=["GET"]),
            Route(group_rules + "/{id}", self.delete_rule, methods=["DELETE"]),
        ]

    def find_group(self, context: AuthContext, group_id: str) -> Obj:
        obj = self.service.records.get(kinds.SECURITY_GROUPS, group_id)
        if obj is None or not self.service.owns(context, obj):
            raise missing("SecurityGroupNotFound", f"Security group {group_id} does not exist")
        return obj

    def find_rule(self, context: AuthContext, rule_id: str) -> Obj:
        obj = self.service.records.get(kinds.SECURITY_GROUP_RULES, rule_id)
        if obj is None or not self.service.owns(context, obj):
            raise missing(
                "SecurityGroupRuleNotFound", f"Security group rule {rule_id} does not exist"
            )
        return obj

    async def _defaults_for(self, context: AuthContext) -> None:
        if context.project_id:
            await ensure_default(self.service, context.project_id)

    async def list_groups(self, request: Request) -> Response:
        context = self.service.context(request)
        await self._defaults_for(context)
        items = [
            group_view(self.service, g)
            for g in self.service.visible(context, kinds.SECURITY_GROUPS)
        ]
        return json_response(query.list_body(request, "security_groups", items))

    async def show_group(self, request: Request) -> Response:
        context = self.service.context(request)
        group = self.find_group(context, request.path_params["id"])
        shown = group_view(self.service, group)
        return json_response(query.show_body(request, "security_group", shown))

    async def create_group(self, request: Request) -> Response:
        context = self.service.context(request)
        body = await self.service.body_of(request, "security_group")
        reject_unknown(body, GROUP_KEYS)
        project = self.service.owner_of_new(context, body, "create_security_group")
        await ensure_default(self.service, project)
        name = text(body, "name")
        if name == DEFAULT:
            raise in_use(
                "SecurityGroupDefaultAlreadyExists", "Default security group already exists."
            )
        self.service.check_quota(project, "security_group")
        spec = stamp_new(
            {
                "project_id": project,
                "name": name,
                "description": text(body, "description"),
                "stateful": boolean(body, "stateful", True),
            }
        )
        group = await self.service.records.create(kinds.SECURITY_GROUPS, new_id(), spec)
        for ethertype in ("IPv4", "IPv6"):
            await _add_rule(
                self.service,
                group,
                rules.checked_rule({"direction": "egress", "ethertype": ethertype}),
            )
        return json_response({"security_group": group_view(self.service, group)}, 201)

    async def update_group(self, request: Request) -> Response:
        context = self.service.context(request)
        group = self.find_group(context, request.path_params["id"])
        body = await self.service.body_of(request, "security_group")
        self.service.may_write(
            context, group, "update_security_group", "SecurityGroupNotFound", "Security group"
        )
        reject_unknown(body, {"name", "description", "stateful"})
        is_default = spec_of(group).get("name") == DEFAULT
        if "name" in body and (text(body, "name") == DEFAULT) != is_default:
            raise in_use(
                "SecurityGroupDefaultAlreadyExists"
                if not is_default
                else "SecurityGroupCannotUpdateDefault",
                "Updating default security group not allowed."
                if is_default
                else "Default security group already exists.",
            )
        changes: Obj = {k: text(body, k) for k in ("name", "description") if k in body}
        if "stateful" in body:
            changes["stateful"] = boolean(body, "stateful", True)
        group_id = group["metadata"]["name"]
        updated = await self.service.revise(kinds.SECURITY_GROUPS, group_id, changes)
        return json_response({"security_group": group_view(self.service, updated)})

    async def delete_group(self, request: Request) -> Response:
        context = self.service.context(request)
        group = self.find_group(context, request.path_params["id"])
        self.service.may_write(
            context, group, "delete_security_group", "SecurityGroupNotFound", "Security group"
        )
        group_id = group["metadata"]["name"]
        if spec_of(group).get("name") == DEFAULT and not context.is_admin:
            raise in_use(
                "SecurityGroupCannotRemoveDefault",
                "Insufficient rights for removing default security group.",
            )
        if any(
            group_id in (spec_of(p).get("security_groups") or [])
            for p in self.service.records.of_project(
                kinds.PORTS, spec_of(group).get("project_id", "")
            )
        ):
            raise in_use("SecurityGroupInUse", f"Security Group {group_id} in use.")
        # Its own rules, and other groups' rules that name it as their remote group.
        doomed = self.service.records.indexed(kinds.SECURITY_GROUP_RULES, "group", group_id)
        doomed += [
            rule
            for rule in self.service.records.all(kinds.SECURITY_GROUP_RULES)
            if spec_of(rule).get("remote_group_id") == group_id
            and spec_of(rule).get("security_group_id") != group_id
        ]
        for rule in doomed:
            await self.service.records.delete(kinds.SECURITY_GROUP_RULES, rule["metadata"]["name"])
        await self.service.records.delete(kinds.SECURITY_GROUPS, group_id)
        return empty(204)

    async def list_rules(self, request: Request) -> Response:
        context = self.service.context(request)
        await self._defaults_for(context)
        items = [rule_view(r) for r in self.service.visible(context, kinds.SECURITY_GROUP_RULES)]
        return json_response(query.list_body(request, "security_group_rules", items))

    async def show_rule(self, request: Request) -> Response:
        rule = self.find_rule(self.service.context(request), request.path_params["id"])
        return json_response(query.show_body(request, "security_group_rule", rule_view(rule)))

    async def create_rule(self, request: Request) -> Response:
        context = self.service.context(request)
        body = await self.service.body_of(request, "security_group_rule")
        attributes = rules.checked_rule(body)
        group = self.find_group(context, str(body.get("security_group_id") or ""))
        self.service.may_write(
            context, group, "create_security_group_rule", "SecurityGroupNotFound", "Security group"
        )
        if attributes["remote_group_id"]:
            self.find_group(context, str(attributes["remote_group_id"]))
        group_id = group["metadata"]["name"]
        for existing in self.service.records.indexed(kinds.SECURITY_GROUP_RULES, "group", group_id):
            if rules.same_rule(spec_of(existing), attributes):
                raise in_use(
                    "SecurityGroupRuleExists",
                    "Security group rule already exists. Rule id is "
                    f"{existing['metadata']['name']}.",
                )
        self.service.check_quota(str(spec_of(group).get("project_id")), "security_group_rule")
        attributes["description"] = text(body, "description")
        rule = await _add_rule(self.service, group, attributes)
        return json_response({"security_group_rule": rule_view(rule)}, 201)

    async def delete_rule(self, request: Request) -> Response:
        context = self.service.context(request)
        rule = self.find_rule(context, request.path_params["id"])
        self.service.may_write(
            context,
            rule,
            "delete_security_group_rule",
            "SecurityGroupRuleNotFound",
            "Security group rule",
        )
        await self.service.records.delete(kinds.SECURITY_GROUP_RULES, rule["metadata"]["name"])
        return empty(204)
