"""Host aggregates (`/os-aggregates`), admin only, as Nova v2.1.

An aggregate (`Aggregate`, cluster-scoped) groups hypervisor hosts and carries metadata; an
`availability_zone` in it makes its hosts that zone (`hosts.HostView` reads it, so the
scheduler's zone filter and `/os-availability-zone` follow). Names are unique; a host joins
an aggregate once, and a host cannot be in two zones. Ids are Nova's integers.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.compute import kinds
from unistack.iaas.records import spec_of
from unistack.openstack.auth import require_admin
from unistack.openstack.compute.server_requests import check_metadata
from unistack.openstack.compute.service import ComputeService, now_text
from unistack.openstack.web import bad_request, conflict, json_response, not_found, read_json

Obj = dict[str, Any]


def aggregate_view(spec: Obj, full: bool = True) -> Obj:
    view = {
        "id": spec["id"],
        "name": spec["name"],
        "availability_zone": spec.get("availability_zone"),
        "created_at": spec["created_at"],
        "updated_at": spec.get("updated_at"),
        "deleted": False,
        "deleted_at": None,
    }
    if full:
        metadata = dict(spec.get("metadata") or {})
        if spec.get("availability_zone"):
            metadata["availability_zone"] = spec["availability_zone"]
        view |= {"hosts": list(spec.get("hosts") or []), "metadata": metadata}
    return view


def _name(value: Any, attribute: str = "name") -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 255 or not value.strip():
        raise bad_request(f"Invalid input for field/attribute {attribute}. Value: {value}.")
    return value


class Aggregates:
    def __init__(self, service: ComputeService) -> None:
        self.service = service
        self.records = service.records

    def routes(self) -> list[Route]:
        base = "/v2.1/os-aggregates"
        return [
            Route(base, self.list_aggregates, methods=["GET"]),
            Route(base, self.create_aggregate, methods=["POST"]),
            Route(f"{base}/{{aggregate_id}}", self.show_aggregate, methods=["GET"]),
            Route(f"{base}/{{aggregate_id}}", self.update_aggregate, methods=["PUT"]),
            Route(f"{base}/{{aggregate_id}}", self.delete_aggregate, methods=["DELETE"]),
            Route(f"{base}/{{aggregate_id}}/action", self.aggregate_action, methods=["POST"]),
        ]

    def _admin(self, request: Request, rule: str) -> None:
        require_admin(self.service.authenticate(request), f"os_compute_api:os-aggregates:{rule}")

    def _find(self, request: Request) -> Obj:
        wanted = request.path_params["aggregate_id"]
        for obj in self.records.all(kinds.AGGREGATES):
            if str(spec_of(obj).get("id")) == wanted:
                return obj
        raise not_found(f"Aggregate {wanted} could not be found.")

    def _check_name(self, name: str, own: str = "") -> None:
        for obj in self.records.all(kinds.AGGREGATES):
            if spec_of(obj).get("name") == name and obj["metadata"]["name"] != own:
                raise conflict(f"Aggregate {name} already exists.")

    async def _change(self, obj: Obj, **changes: Any) -> Obj:
        def change(current: Obj) -> None:
            current["spec"].update(changes, updated_at=now_text())

        written = await self.records.update(kinds.AGGREGATES, obj["metadata"]["name"], change)
        return aggregate_view(spec_of(written))

    async def list_aggregates(self, request: Request) -> Response:
        self._admin(request, "index")
        found = sorted(
            (spec_of(o) for o in self.records.all(kinds.AGGREGATES)), key=lambda s: s["id"]
        )
        return json_response({"aggregates": [aggregate_view(spec) for spec in found]})

    async def show_aggregate(self, request: Request) -> Response:
        self._admin(request, "show")
        return json_response({"aggregate": aggregate_view(spec_of(self._find(request)))})

    async def create_aggregate(self, request: Request) -> Response:
        self._admin(request, "create")
        body = (await read_json(request)).get("aggregate")
        if not isinstance(body, dict):
            raise bad_request("Invalid input for field/attribute aggregate.")
        name = _name(body.get("name"))
        zone = body.get("availability_zone")
        if zone is not None:
            zone = _name(zone, "availability_zone")
        self._check_name(name)
        object_name = str(uuid.uuid4())
        spec = {
            "id": kinds.integer_id(object_name) % 1_000_000,
            "name": name,
            "availability_zone": zone,
            "hosts": [],
            "metadata": {},
            "created_at": now_text(),
            "updated_at": None,
        }
        await self.records.create(kinds.AGGREGATES, object_name, spec)
        return json_response({"aggregate": aggregate_view(spec, full=False)})

    async def update_aggregate(self, request: Request) -> Response:
        self._admin(request, "update")
        obj = self._find(request)
        body = (await read_json(request)).get("aggregate")
        if not isinstance(body, dict) or not body or set(body) - {"name", "availability_zone"}:
            raise bad_request("Invalid input for field/attribute aggregate.")
        changes: Obj = {}
        if "name" in body:
            changes["name"] = _name(body["name"])
            self._check_name(changes["name"], obj["metadata"]["name"])
        if "availability_zone" in body:
            changes["availability_zone"] = _name(body["availability_zone"], "availability_zone")
        return json_response({"aggregate": await self._change(obj, **changes)})

    async def delete_aggregate(self, request: Request) -> Response:
        self._admin(request, "delete")
        obj = self._find(request)
        if spec_of(obj).get("hosts"):
            raise bad_request(
                f"Invalid aggregate action delete for aggregate {spec_of(obj)['id']}: "
                "host aggregate is not empty"
            )
        await self.records.delete(kinds.AGGREGATES, obj["metadata"]["name"])
        return Response(status_code=200)

    async def aggregate_action(self, request: Request) -> Response:
        body = await read_json(request)
        if len(body) != 1:
            raise bad_request("Invalid input for field/attribute aggregate action.")
        ((action, value),) = body.items()
        handlers = {
            "add_host": self._add_host,
            "remove_host": self._remove_host,
            "set_metadata": self._set_metadata,
        }
        if action not in handlers or not isinstance(value, dict):
            raise bad_request(f"Invalid input for field/attribute {action}.")
        self._admin(request, action)
        obj = self._find(request)
        return json_response({"aggregate": await handlers[action](obj, value)})

    async def _add_host(self, obj: Obj, body: Obj) -> Obj:
        host = str(body.get("host") or "")
        if host not in {n["metadata"]["name"] for n in self.service.hosts.all_nodes()}:
            raise not_found(f"Compute host {host} could not be found.")
        spec = spec_of(obj)
        if host in (spec.get("hosts") or []):
            raise conflict(f"Aggregate {spec['id']} already has host {host}.")
        zone = spec.get("availability_zone")
        current = self.service.hosts.aggregate_zone(host)
        if zone and current and current != zone:
            raise conflict(f"Host {host} is already in availability zone {current}.")
        return await self._change(obj, hosts=[*(spec.get("hosts") or []), host])

    async def _remove_host(self, obj: Obj, body: Obj) -> Obj:
        host = str(body.get("host") or "")
        spec = spec_of(obj)
        if host not in (spec.get("hosts") or []):
            raise not_found(f"Cannot remove host {host} in aggregate {spec['id']}: not found")
        return await self._change(obj, hosts=[h for h in spec["hosts"] if h != host])

    async def _set_metadata(self, obj: Obj, body: Obj) -> Obj:
        given = body.get("metadata")
        if not isinstance(given, dict):
            raise bad_request("Invalid input for field/attribute metadata.")
        spec = spec_of(obj)
        metadata = dict(spec.get("metadata") or {})
        zone = spec.get("availability_zone")
        for key, value in given.items():
            if key == "availability_zone":
                zone = value
            elif value is None:
                metadata.pop(key, None)
            else:
                metadata.update(check_metadata({key: value}))
        return await self._change(obj, metadata=metadata, availability_zone=zone)
