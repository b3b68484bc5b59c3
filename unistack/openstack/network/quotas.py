"""Quotas: `/v2.0/quotas[/{project}[/default|/details]]` — Neutron's defaults, per-project
limits (admin sets them; -1 is unlimited), usage counted from the cache. Creates beyond a
limit are 409 OverQuota (`NetworkService.check_quota`)."""

from __future__ import annotations

import contextlib

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.network import kinds
from unistack.iaas.records import Duplicate, Missing, Obj, spec_of
from unistack.openstack import auth
from unistack.openstack.auth import AuthContext
from unistack.openstack.network.service import QUOTA_DEFAULTS, NetworkService, bad
from unistack.openstack.web import empty, json_response


def _stored_id(project_id: str) -> str:
    return project_id.lower()


class Quotas:
    def __init__(self, service: NetworkService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        base = "/v2.0/quotas"
        return [
            Route(base, self.list_quotas, methods=["GET"]),
            Route(base + "/tenant", self.show_own_project, methods=["GET"]),
            Route(base + "/{project}", self.show_quota, methods=["GET"]),
            Route(base + "/{project}", self.update_quota, methods=["PUT"]),
            Route(base + "/{project}", self.reset_quota, methods=["DELETE"]),
            Route(base + "/{project}/default", self.show_default, methods=["GET"]),
            Route(base + "/{project}/details", self.show_details, methods=["GET"]),
        ]

    def _reader(self, context: AuthContext, project_id: str) -> None:
        if not auth.may_see(context, project_id):
            raise auth.deny("get_quota")

    async def list_quotas(self, request: Request) -> Response:
        context = self.service.context(request)
        auth.require_admin(context, "get_quota")
        listed = []
        for obj in self.service.records.all(kinds.QUOTAS):
            project = str(spec_of(obj).get("project_id"))
            listed.append(
                {**self.service.quota_of(project), "project_id": project, "tenant_id": project}
            )
        return json_response({"quotas": listed})

    async def show_own_project(self, request: Request) -> Response:
        context = self.service.context(request)
        return json_response({"tenant": {"tenant_id": context.project_id}})

    async def show_quota(self, request: Request) -> Response:
        context = self.service.context(request)
        project = request.path_params["project"]
        self._reader(context, project)
        return json_response({"quota": self.service.quota_of(project)})

    async def show_default(self, request: Request) -> Response:
        context = self.service.context(request)
        self._reader(context, request.path_params["project"])
        return json_response({"quota": dict(QUOTA_DEFAULTS)})

    async def show_details(self, request: Request) -> Response:
        context = self.service.context(request)
        project = request.path_params["project"]
        self._reader(context, project)
        details = {
            name: {"limit": limit, "used": self.service.used(project, name), "reserved": 0}
            for name, limit in self.service.quota_of(project).items()
        }
        return json_response({"quota": details})

    async def update_quota(self, request: Request) -> Response:
        context = self.service.context(request)
        auth.require_admin(context, "update_quota")
        project = request.path_params["project"]
        body = await self.service.body_of(request, "quota")
        limits: dict[str, int] = {}
        for name, value in body.items():
            if name not in QUOTA_DEFAULTS:
                raise bad(f"Unrecognized attribute(s) '{name}'")
            try:
                limits[name] = int(value)
            except (TypeError, ValueError) as exc:
                raise bad(
                    f"Invalid input for {name}. Reason: '{value}' is not an integer."
                ) from exc
            if limits[name] < -1:
                raise bad(f"Invalid input for {name}. Reason: '{value}' should be >= -1.")
        await self._store(project, limits)
        return json_response({"quota": self.service.quota_of(project)})

    async def _store(self, project: str, limits: dict[str, int]) -> None:
        name = _stored_id(project)

        def change(obj: Obj) -> None:
            obj["spec"]["limits"] = {**(obj["spec"].get("limits") or {}), **limits}

        if self.service.records.get(kinds.QUOTAS, name) is None:
            try:
                await self.service.records.create(
                    kinds.QUOTAS, name, {"project_id": project, "limits": limits}
                )
                return
            except Duplicate:
                pass
        await self.service.records.update(kinds.QUOTAS, name, change)

    async def reset_quota(self, request: Request) -> Response:
        context = self.service.context(request)
        auth.require_admin(context, "delete_quota")
        with contextlib.suppress(Missing):
            await self.service.records.delete(
                kinds.QUOTAS, _stored_id(request.path_params["project"])
            )
        return empty(204)
