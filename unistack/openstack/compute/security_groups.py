"""Security groups through the compute API (`/os-security-groups`, `/os-security-group-rules`,
`/servers/{id}/os-security-groups`, and the `addSecurityGroup` / `removeSecurityGroup`
actions), answered by the Networking API with the caller's own token, as Nova's Neutron
driver does (a proxy up to 2.35).

Nova checks the shapes first (ids are UUIDs, names and descriptions non-empty strings up to
255 characters, ports within their protocol's range) and words Neutron's refusals its own
way: a duplicate rule or removing the default group is a 400. Rules read as Nova shows
them: ingress only, ports as `from_port` / `to_port`, the remote as `ip_range` or `group`.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.records import status_of
from unistack.openstack.auth import AuthContext
from unistack.openstack.compute.service import ComputeService, is_uuid
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
PROTOCOLS = ("tcp", "udp", "icmp")


def rule_view(rule: Obj, names: dict[str, str]) -> Obj:
    remote = rule.get("remote_group_id")
    view: Obj = {
        "id": rule["id"],
        "parent_group_id": rule["security_group_id"],
        "ip_protocol": rule.get("protocol"),
        "from_port": rule.get("port_range_min"),
        "to_port": rule.get("port_range_max"),
        "ip_range": {},
        "group": {},
    }
    if rule.get("protocol") in ("tcp", "udp") and view["from_port"] is None:
        view["from_port"], view["to_port"] = 1, 65535
    if rule.get("protocol") == "icmp" and view["from_port"] is None:
        view["from_port"], view["to_port"] = -1, -1
    if remote:
        view["group"] = {"name": names.get(remote, ""), "tenant_id": rule.get("project_id", "")}
    else:
        view["ip_range"] = {"cidr": rule.get("remote_ip_prefix") or "0.0.0.0/0"}
    return view


def group_view(group: Obj, names: dict[str, str]) -> Obj:
    rules = [r for r in group.get("security_group_rules") or [] if r.get("direction") == "ingress"]
    return {
        "id": group["id"],
        "name": group.get("name", ""),
        "description": group.get("description") or "",
        "tenant_id": group.get("project_id") or group.get("tenant_id") or "",
        "rules": [rule_view(rule, names) for rule in rules],
    }


def _text(body: Obj, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise bad_request(f"Security group {key} is not a string or unicode")
    if not value.strip():
        raise bad_request(f"Security group {key} cannot be empty.")
    if len(value) > 255:
        raise bad_request(f"Security group {key} should not be greater than 255 characters.")
    return value


def _uuid(value: Any) -> str:
    if not isinstance(value, str) or not is_uuid(value):
        raise bad_request("Security group id should be uuid")
    return value


def _port(value: Any, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise bad_request(f"Invalid port {value}.") from exc
    if not low <= number <= high:
        raise bad_request(f"Invalid port range {value}. Valid ports are {low} to {high}.")
    return number


def neutron_rule(body: Obj) -> Obj:
    """A Nova rule request as a Neutron ingress rule (400s for what Nova refuses)."""
    protocol = body.get("ip_protocol")
    if not isinstance(protocol, str) or protocol.lower() not in PROTOCOLS:
        raise bad_request(f"Invalid IP protocol {protocol}.")
    protocol = protocol.lower()
    low, high = (-1, 255) if protocol == "icmp" else (1, 65535)
    first = _port(body.get("from_port"), low, high)
    last = _port(body.get("to_port"), low, high)
    if protocol != "icmp" and first > last:
        raise bad_request("Former value cannot be greater than the later")
    rule: Obj = {"direction": "ingress", "protocol": protocol, "ethertype": "IPv4"}
    if first != -1:
        rule["port_range_min"] = first
    if last != -1:
        rule["port_range_max"] = last
    if body.get("group_id"):
        rule["remote_group_id"] = _uuid(body["group_id"])
    elif body.get("cidr"):
        try:
            network = ipaddress.ip_network(str(body["cidr"]), strict=False)
        except ValueError as exc:
            raise bad_request(f"Invalid cidr {body['cidr']}.") from exc
        rule["remote_ip_prefix"] = str(network)
        rule["ethertype"] = f"IPv{network.version}"
    return rule


class SecurityGroups:
    def __init__(self, service: ComputeService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        groups, rules = "/v2.1/os-security-groups", "/v2.1/os-security-group-rules"
        return [
            Route(groups, self.list_groups, methods=["GET"]),
            Route(groups, self.create_group, methods=["POST"]),
            Route(f"{groups}/{{group_id}}", self.show_group, methods=["GET"]),
            Route(f"{groups}/{{group_id}}", self.update_group, methods=["PUT"]),
            Route(f"{groups}/{{group_id}}", self.delete_group, methods=["DELETE"]),
            Route(rules, self.create_rule, methods=["POST"]),
            Route(f"{rules}/{{rule_id}}", self.delete_rule, methods=["DELETE"]),
            Route(
                "/v2.1/servers/{server_id}/os-security-groups",
                self.list_server_groups,
                methods=["GET"],
            ),
        ]

    async def neutron(
        self, request: Request, method: str, path: str, body: Any = None, **params: str
    ) -> tuple[int, Any]:
        self.service.authenticate(request)
        return await self.service.call_as(
            request, method, f"{NET}{path}", body, params=params or None
        )

    async def _names(self, request: Request) -> dict[str, str]:
        status, body = await self.neutron(request, "GET", "/security-groups")
        groups = body.get("security_groups", []) if status == 200 else []
        return {g["id"]: g.get("name", "") for g in groups}

    async def _group(self, request: Request, group_id: str) -> Obj:
        status, body = await self.neutron(request, "GET", f"/security-groups/{group_id}")
        if status != 200:
            raise not_found(f"Security group {group_id} not found.")
        group: Obj = body["security_group"]
        return group

    async def list_groups(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        params: dict[str, str] = {"project_id": context.project_id or ""}
        if context.is_admin and request.query_params.get("all_tenants"):
            params = {}
        status, body = await self.neutron(request, "GET", "/security-groups", **params)
        groups = body.get("security_groups", []) if status == 200 else []
        names = {g["id"]: g.get("name", "") for g in groups}
        return json_response({"security_groups": [group_view(g, names) for g in groups]})

    async def show_group(self, request: Request) -> Response:
        group = await self._group(request, _uuid(request.path_params["group_id"]))
        return json_response({"security_group": group_view(group, await self._names(request))})

    async def create_group(self, request: Request) -> Response:
        body = (await read_json(request)).get("security_group")
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute security_group.")
        wanted = {"name": _text(body, "name"), "description": _text(body, "description")}
        status, answer = await self.neutron(
            request, "POST", "/security-groups", {"security_group": wanted}
        )
        group = self._answer(status, answer, 201)["security_group"]
        return json_response({"security_group": group_view(group, {})})

    async def update_group(self, request: Request) -> Response:
        group_id = _uuid(request.path_params["group_id"])
        body = (await read_json(request)).get("security_group")
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute security_group.")
        wanted = {"name": _text(body, "name"), "description": _text(body, "description")}
        await self._group(request, group_id)
        status, answer = await self.neutron(
            request, "PUT", f"/security-groups/{group_id}", {"security_group": wanted}
        )
        group = self._answer(status, answer, 200)["security_group"]
        return json_response({"security_group": group_view(group, await self._names(request))})

    async def delete_group(self, request: Request) -> Response:
        group_id = _uuid(request.path_params["group_id"])
        group = await self._group(request, group_id)
        if group.get("name") == "default":
            raise bad_request("Removing default security group not allowed.")
        status, answer = await self.neutron(request, "DELETE", f"/security-groups/{group_id}")
        self._answer(status, answer, 204)
        return empty(202)

    async def create_rule(self, request: Request) -> Response:
        body = (await read_json(request)).get("security_group_rule")
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute security_group_rule.")
        parent = _uuid(body.get("parent_group_id"))
        rule = neutron_rule(body)
        await self._group(request, parent)
        rule["security_group_id"] = parent
        status, answer = await self.neutron(
            request, "POST", "/security-group-rules", {"security_group_rule": rule}
        )
        if status == 409:
            raise bad_request(f"Security group rule already exists. Group id is {parent}.")
        created = self._answer(status, answer, 201)["security_group_rule"]
        view = rule_view(created, await self._names(request))
        if body.get("cidr") and not body.get("group_id"):
            view["ip_range"] = {"cidr": str(body["cidr"])}  # as given, as Nova answers it
        return json_response({"security_group_rule": view})

    async def delete_rule(self, request: Request) -> Response:
        rule_id = request.path_params["rule_id"]
        status, answer = await self.neutron(request, "DELETE", f"/security-group-rules/{rule_id}")
        if status == 404:
            raise not_found(f"Security group rule {rule_id} not found.")
        self._answer(status, answer, 204)
        return empty(202)

    async def list_server_groups(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        server = self.service.visible_server(context, request.path_params["server_id"])
        groups = await self.server_groups(request, context, server)
        names = {g["id"]: g.get("name", "") for g in groups}
        return json_response({"security_groups": [group_view(g, names) for g in groups]})

    async def server_groups(self, request: Request, context: AuthContext, server: Obj) -> list[Obj]:
        wanted: set[str] = set()
        for port_id in status_of(server).get("ports") or []:
            status, body = await self.service.caller.call("GET", f"{NET}/ports/{port_id}")
            if status == 200:
                wanted |= set(body["port"].get("security_groups") or [])
        found = []
        for group_id in sorted(wanted):
            status, body = await self.service.caller.call(
                "GET", f"{NET}/security-groups/{group_id}"
            )
            if status == 200:
                found.append(body["security_group"])
        return found

    @staticmethod
    def _answer(status: int, answer: Any, expected: int) -> Obj:
        if status == expected:
            return answer if isinstance(answer, dict) else {}
        message = str(answer)
        if isinstance(answer, dict) and isinstance(answer.get("NeutronError"), dict):
            message = str(answer["NeutronError"].get("message"))
        if status == 404:
            raise not_found(message)
        if status in (400, 409):
            raise bad_request(message)
        raise OpenStackError(status if 400 <= status < 500 else 500, message)
