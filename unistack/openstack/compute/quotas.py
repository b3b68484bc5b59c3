"""Quotas: `/os-quota-sets` (show, defaults, detail, update, revert) and `/limits`, and the
check a server create makes (Nova's "Quota exceeded" 403).

A project's limits are a `QuotaSet` named by its project id, holding only what an admin
changed; the rest are Nova's defaults. What is in use is counted from the records (servers
not being deleted, their flavors' cores and RAM; key pairs of the user; server groups).
Later microversions show fewer: the network quotas go at 2.36 (quota classes: 2.50, which
adds the server group ones to them), image metadata's limit at 2.39, the injected files'
at 2.57 (`hidden_quotas`, `versioned_limits`).
"""

from __future__ import annotations

import base64
import contextlib
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.compute import kinds
from unistack.iaas.records import Duplicate, Missing, Records, spec_of
from unistack.openstack.auth import AuthContext, deny, may_see, require_admin
from unistack.openstack.compute.service import ComputeService, integer, microversion
from unistack.openstack.microversion import Version
from unistack.openstack.web import OpenStackError, bad_request, json_response, read_json

Obj = dict[str, Any]

DEFAULTS: dict[str, int] = {
    "instances": 10,
    "cores": 20,
    "ram": 51200,
    "floating_ips": 10,
    "fixed_ips": -1,
    "metadata_items": 128,
    "key_pairs": 100,
    "security_groups": 10,
    "security_group_rules": 20,
    "server_groups": 10,
    "server_group_members": 10,
    "injected_files": 5,
    "injected_file_content_bytes": 10240,
    "injected_file_path_bytes": 255,
}


NETWORK_QUOTAS = ("fixed_ips", "floating_ips", "security_groups", "security_group_rules")
FILE_QUOTAS = ("injected_files", "injected_file_content_bytes", "injected_file_path_bytes")
GROUP_QUOTAS = ("server_groups", "server_group_members")
# absolute limits each microversion dropped (2.36: the network proxies', 2.39: image
# metadata, 2.57: personality files)
_LIMITS_GONE = (
    (
        "2.36",
        (
            "maxSecurityGroups",
            "maxSecurityGroupRules",
            "maxTotalFloatingIps",
            "totalSecurityGroupsUsed",
            "totalFloatingIpsUsed",
        ),
    ),
    ("2.39", ("maxImageMeta",)),
    ("2.57", ("maxPersonality", "maxPersonalitySize")),
)


def hidden_quotas(version: Version, classes: bool = False) -> set[str]:
    """The quotas a version no longer shows or takes: the network ones from 2.36 (quota
    classes: 2.50), the injected-file ones from 2.57; quota classes show the server group
    ones only from 2.50."""
    hidden: set[str] = set()
    if version.at_least("2.50" if classes else "2.36"):
        hidden |= set(NETWORK_QUOTAS)
    if version.at_least("2.57"):
        hidden |= set(FILE_QUOTAS)
    if classes and not version.at_least("2.50"):
        hidden |= set(GROUP_QUOTAS)
    return hidden


def _shown(values: Obj, version: Version, classes: bool = False) -> Obj:
    hidden = hidden_quotas(version, classes)
    return {key: value for key, value in values.items() if key not in hidden}


CLASS_PREFIX = "class-"  # a quota class's QuotaSet: `class-default`


def _changed(records: Records, name: str) -> dict[str, int]:
    quota = records.get(kinds.QUOTA_SETS, name)
    return {k: int(v) for k, v in spec_of(quota).items() if k in DEFAULTS}


def defaults_of(records: Records) -> dict[str, int]:
    """Nova's defaults as the `default` quota class has them now."""
    return DEFAULTS | _changed(records, f"{CLASS_PREFIX}default")


def limits_of(records: Records, project_id: str) -> dict[str, int]:
    return defaults_of(records) | _changed(records, project_id)


def usage_of(records: Records, project_id: str, user_id: str | None = None) -> dict[str, int]:
    servers = [
        s
        for s in records.of_project(kinds.SERVERS, project_id)
        if not s["metadata"].get("deletionTimestamp")
    ]
    flavors = [spec_of(s).get("flavor") or {} for s in servers]
    used = dict.fromkeys(DEFAULTS, 0)
    used["instances"] = len(servers)
    used["cores"] = sum(int(f.get("vcpus", 0)) for f in flavors)
    used["ram"] = sum(int(f.get("ram", 0)) for f in flavors)
    used["server_groups"] = len(records.of_project(kinds.SERVER_GROUPS, project_id))
    if user_id:
        used["key_pairs"] = sum(
            1 for k in records.all(kinds.KEYPAIRS) if spec_of(k).get("user_id") == user_id
        )
    return used


def check_servers(records: Records, project_id: str, count: int, flavor: Obj) -> None:
    """403 when `count` more servers of `flavor` would pass the project's limits."""
    limits, used = limits_of(records, project_id), usage_of(records, project_id)
    wanted = {
        "instances": count,
        "cores": count * int(flavor.get("vcpus", 0)),
        "ram": count * int(flavor.get("ram", 0)),
    }
    overs = [k for k, n in wanted.items() if limits[k] >= 0 and used[k] + n > limits[k]]
    if overs:
        first = overs[0]
        raise OpenStackError(
            403,
            f"Quota exceeded for {', '.join(overs)}: Requested {wanted[first]}, but already "
            f"used {used[first]} of {limits[first]} {first}",
        )


def check_files(records: Records, project_id: str, files: list[Obj]) -> None:
    """403, with Nova's words, when personality files pass the project's file quotas."""
    limits = limits_of(records, project_id)
    if 0 <= limits["injected_files"] < len(files):
        raise OpenStackError(403, "Personality file limit exceeded")
    path_limit = limits["injected_file_path_bytes"]
    content_limit = limits["injected_file_content_bytes"]
    for item in files:
        if 0 <= path_limit < len(str(item["path"]).encode()):
            raise OpenStackError(403, f"Personality file path exceeds maximum {path_limit}")
        if 0 <= content_limit < len(base64.b64decode(str(item["contents"]))):
            raise OpenStackError(403, f"Personality file content exceeds maximum {content_limit}")


def versioned_limits(absolute: Obj, version: Version) -> Obj:
    gone = {key for at, keys in _LIMITS_GONE if version.at_least(at) for key in keys}
    return {key: value for key, value in absolute.items() if key not in gone}


def absolute_limits(records: Records, project_id: str, user_id: str) -> Obj:
    limits, used = limits_of(records, project_id), usage_of(records, project_id, user_id)
    return {
        "maxTotalInstances": limits["instances"],
        "maxTotalCores": limits["cores"],
        "maxTotalRAMSize": limits["ram"],
        "maxServerMeta": limits["metadata_items"],
        "maxImageMeta": limits["metadata_items"],
        "maxPersonality": limits["injected_files"],
        "maxPersonalitySize": limits["injected_file_content_bytes"],
        "maxTotalKeypairs": limits["key_pairs"],
        "maxSecurityGroups": limits["security_groups"],
        "maxSecurityGroupRules": limits["security_group_rules"],
        "maxTotalFloatingIps": limits["floating_ips"],
        "maxServerGroups": limits["server_groups"],
        "maxServerGroupMembers": limits["server_group_members"],
        "totalInstancesUsed": used["instances"],
        "totalCoresUsed": used["cores"],
        "totalRAMUsed": used["ram"],
        "totalSecurityGroupsUsed": 0,
        "totalFloatingIpsUsed": 0,
        "totalServerGroupsUsed": used["server_groups"],
    }


class Quotas:
    def __init__(self, service: ComputeService) -> None:
        self.service = service
        self.records = service.records

    def routes(self) -> list[Route]:
        path = "/v2.1/os-quota-sets/{project_id}"
        return [
            Route(path, self.show_quota_set, methods=["GET"]),
            Route(path, self.update_quota_set, methods=["PUT"]),
            Route(path, self.revert_quota_set, methods=["DELETE"]),
            Route(f"{path}/defaults", self.show_defaults, methods=["GET"]),
            Route(f"{path}/detail", self.show_detail, methods=["GET"]),
            Route("/v2.1/limits", self.show_limits, methods=["GET"]),
            Route("/v2.1/os-quota-class-sets/{name}", self.show_class, methods=["GET"]),
            Route("/v2.1/os-quota-class-sets/{name}", self.update_class, methods=["PUT"]),
        ]

    def _readable(self, request: Request) -> tuple[AuthContext, str]:
        context = self.service.authenticate(request)
        project_id = request.path_params["project_id"]
        if not may_see(context, project_id):
            raise deny("os_compute_api:os-quota-sets:show")
        return context, project_id

    async def show_quota_set(self, request: Request) -> Response:
        _, project_id = self._readable(request)
        body = {"id": project_id, **limits_of(self.records, project_id)}
        return json_response({"quota_set": _shown(body, microversion(request))})

    async def show_defaults(self, request: Request) -> Response:
        self.service.authenticate(request)
        defaults = _shown(defaults_of(self.records), microversion(request))
        return json_response({"quota_set": {"id": request.path_params["project_id"], **defaults}})

    async def show_detail(self, request: Request) -> Response:
        _, project_id = self._readable(request)
        limits, used = limits_of(self.records, project_id), usage_of(self.records, project_id)
        body: Obj = {"id": project_id}
        for key, limit in _shown(limits, microversion(request)).items():
            body[key] = {"limit": limit, "in_use": used[key], "reserved": 0}
        return json_response({"quota_set": body})

    async def show_limits(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        project_id = request.query_params.get("tenant_id") if context.is_admin else None
        project_id = project_id or context.project_id or ""
        absolute = absolute_limits(self.records, project_id, context.user_id)
        absolute = versioned_limits(absolute, microversion(request))
        return json_response({"limits": {"absolute": absolute, "rate": []}})

    async def update_quota_set(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-quota-sets:update")
        project_id = request.path_params["project_id"]
        body = (await read_json(request)).get("quota_set")
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute quota_set.")
        force = body.pop("force", False) in (True, "true", "True")
        version = microversion(request)
        wanted = _checked(body, hidden_quotas(version))
        if not force:
            _check_usage(wanted, usage_of(self.records, project_id))
        await self._store(project_id, wanted)
        return json_response({"quota_set": _shown(limits_of(self.records, project_id), version)})

    async def _store(self, project_id: str, wanted: dict[str, int]) -> None:
        if self.records.get(kinds.QUOTA_SETS, project_id) is None:
            try:
                await self.records.create(kinds.QUOTA_SETS, project_id, dict(wanted))
                return
            except Duplicate:
                pass
        await self.records.update(kinds.QUOTA_SETS, project_id, lambda o: o["spec"].update(wanted))

    async def show_class(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-quota-class-sets:show")
        name = request.path_params["name"]
        body = {"id": name, **defaults_of(self.records), **_changed(self.records, _class(name))}
        return json_response({"quota_class_set": _shown(body, microversion(request), True)})

    async def update_class(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-quota-class-sets:update")
        name = request.path_params["name"]
        body = (await read_json(request)).get("quota_class_set")
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute quota_class_set.")
        version = microversion(request)
        await self._store(_class(name), _checked(body, hidden_quotas(version, True)))
        answer = defaults_of(self.records) | _changed(self.records, _class(name))
        return json_response({"quota_class_set": _shown(answer, version, True)})

    async def revert_quota_set(self, request: Request) -> Response:
        context = self.service.authenticate(request)
        require_admin(context, "os_compute_api:os-quota-sets:delete")
        with contextlib.suppress(Missing):
            await self.records.delete(kinds.QUOTA_SETS, request.path_params["project_id"])
        return Response(status_code=202)


def _class(name: str) -> str:
    safe = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    if not safe or len(safe) > 50:
        raise bad_request(f"Invalid quota class {name}.")
    return f"{CLASS_PREFIX}{safe}"


def _checked(body: Obj, hidden: set[str]) -> dict[str, int]:
    wanted: dict[str, int] = {}
    for key, value in body.items():
        if key not in DEFAULTS or key in hidden:
            raise bad_request(
                "Invalid input for field/attribute quota_set. Value: "
                f"{body}. Additional properties are not allowed ('{key}' was unexpected)"
            )
        wanted[key] = integer(value, key, -1)
    return wanted


def _check_usage(wanted: dict[str, int], used: dict[str, int]) -> None:
    for key, limit in wanted.items():
        if limit != -1 and limit < used.get(key, 0):
            raise bad_request(
                f"Quota limit {limit} for {key} must be greater than or equal to already "
                f"used and reserved {used[key]}."
            )
