"""Subnet pools: `/v2.0/subnetpools` — the pools' records (prefixes, prefix lengths, quota,
sharing) with create, list, show, update and delete. Subnets are not carved out of pools
yet: a subnet always names its CIDR."""

from __future__ import annotations

import ipaddress
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.network import kinds
from unistack.iaas.network.stamps import stamp_new
from unistack.iaas.records import Obj, spec_of
from unistack.openstack import auth
from unistack.openstack.auth import AuthContext
from unistack.openstack.network import query
from unistack.openstack.network.service import (
    NetworkService,
    bad,
    boolean,
    new_id,
    reject_unknown,
    standard,
    text,
)
from unistack.openstack.web import empty, json_response

UPDATE_KEYS = {
    "name", "description", "prefixes", "default_prefixlen", "min_prefixlen", "max_prefixlen",
    "default_quota", "is_default", "address_scope_id",
}  # fmt: skip
CREATE_KEYS = UPDATE_KEYS | {"project_id", "tenant_id", "shared", "tags"}


def view(obj: Obj) -> Obj:
    spec = spec_of(obj)
    shown = standard(obj)
    for key in ("prefixes", "ip_version", "default_prefixlen", "min_prefixlen", "max_prefixlen"):
        shown[key] = spec.get(key)
    shown.update(
        shared=spec.get("shared", False),
        is_default=spec.get("is_default", False),
        default_quota=spec.get("default_quota"),
        address_scope_id=spec.get("address_scope_id"),
    )
    return shown


def _prefixes(value: Any) -> tuple[list[str], int]:
    if not isinstance(value, list) or not value:
        raise bad("Invalid input for prefixes. Reason: a non-empty list of CIDRs is required.")
    try:
        networks = [ipaddress.ip_network(str(p), strict=False) for p in value]
    except ValueError as exc:
        raise bad(f"Invalid input for prefixes. Reason: {exc}.") from exc
    versions = {n.version for n in networks}
    if len(versions) != 1:
        raise bad("Illegal subnetpool: prefixes of mixed IP versions.")
    return sorted({str(n) for n in networks}), versions.pop()


def _length(key: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise bad(f"Invalid input for {key}. Reason: '{value}' is not an integer.") from exc


def _lengths(body: Obj, version: int, current: Obj) -> Obj:
    top = 32 if version == 4 else 128
    lengths: Obj = {}
    for key, default in (("min_prefixlen", 8 if version == 4 else 64), ("max_prefixlen", top)):
        lengths[key] = _length(key, body.get(key, current.get(key, default)))
    fallback = current.get("default_prefixlen", lengths["min_prefixlen"])
    lengths["default_prefixlen"] = _length(
        "default_prefixlen", body.get("default_prefixlen", fallback)
    )
    low, high = lengths["min_prefixlen"], lengths["max_prefixlen"]
    if not 0 <= low <= lengths["default_prefixlen"] <= high <= top:
        raise bad("Illegal prefix bounds: min_prefixlen <= default_prefixlen <= max_prefixlen.")
    return lengths


class SubnetPools:
    def __init__(self, service: NetworkService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        base = "/v2.0/subnetpools"
        return [
            Route(base, self.list_pools, methods=["GET"]),
            Route(base, self.create_pool, methods=["POST"]),
            Route(base + "/{id}", self.show_pool, methods=["GET"]),
            Route(base + "/{id}", self.update_pool, methods=["PUT"]),
            Route(base + "/{id}", self.delete_pool, methods=["DELETE"]),
        ]

    def find(self, context: AuthContext, pool_id: str) -> Obj:
        return self.service.find(
            context, kinds.SUBNET_POOLS, pool_id, "SubnetPoolNotFound", "Subnet pool"
        )

    async def list_pools(self, request: Request) -> Response:
        context = self.service.context(request)
        items = [view(p) for p in self.service.visible(context, kinds.SUBNET_POOLS)]
        return json_response(query.list_body(request, "subnetpools", items))

    async def show_pool(self, request: Request) -> Response:
        pool = self.find(self.service.context(request), request.path_params["id"])
        return json_response(query.show_body(request, "subnetpool", view(pool)))

    async def create_pool(self, request: Request) -> Response:
        context = self.service.context(request)
        body = await self.service.body_of(request, "subnetpool")
        reject_unknown(body, CREATE_KEYS)
        project = self.service.owner_of_new(context, body, "create_subnetpool")
        if body.get("shared") or body.get("is_default"):
            auth.require_admin(context, "create_subnetpool:shared")
        prefixes, version = _prefixes(body.get("prefixes"))
        spec = {
            "project_id": project,
            "name": text(body, "name"),
            "description": text(body, "description"),
            "prefixes": prefixes,
            "ip_version": version,
            **_lengths(body, version, {}),
            "shared": boolean(body, "shared", False),
            "is_default": boolean(body, "is_default", False),
            "default_quota": body.get("default_quota"),
            "address_scope_id": body.get("address_scope_id"),
        }
        pool = await self.service.records.create(kinds.SUBNET_POOLS, new_id(), stamp_new(spec))
        return json_response({"subnetpool": view(pool)}, 201)

    async def update_pool(self, request: Request) -> Response:
        context = self.service.context(request)
        pool = self.find(context, request.path_params["id"])
        body = await self.service.body_of(request, "subnetpool")
        self.service.may_write(
            context, pool, "update_subnetpool", "SubnetPoolNotFound", "Subnet pool"
        )
        reject_unknown(body, UPDATE_KEYS)
        current = spec_of(pool)
        changes: Obj = {k: text(body, k) for k in ("name", "description") if k in body}
        if "prefixes" in body:
            merged, version = _prefixes([*current.get("prefixes", []), *(body["prefixes"] or [])])
            if version != current.get("ip_version"):
                raise bad("Illegal subnetpool update: prefixes of another IP version.")
            changes["prefixes"] = merged
        changes.update(_lengths(body, int(current.get("ip_version", 4)), current))
        for key in ("default_quota", "address_scope_id"):
            if key in body:
                changes[key] = body[key]
        if "is_default" in body:
            changes["is_default"] = boolean(body, "is_default", False)
        updated = await self.service.revise(kinds.SUBNET_POOLS, pool["metadata"]["name"], changes)
        return json_response({"subnetpool": view(updated)})

    async def delete_pool(self, request: Request) -> Response:
        context = self.service.context(request)
        pool = self.find(context, request.path_params["id"])
        self.service.may_write(
            context, pool, "delete_subnetpool", "SubnetPoolNotFound", "Subnet pool"
        )
        await self.service.records.delete(kinds.SUBNET_POOLS, pool["metadata"]["name"])
        return empty(204)
