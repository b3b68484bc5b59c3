"""QoS specifications (`qos-specs`, admin only): create, list, show, set and unset keys,
delete (`force` when types still use it), and their association with volume types
(`associate`, `disassociate`, `disassociate_all`, `associations`). A type refers to its
specification by `qos_specs_id`; the fake backend enforces nothing, as Cinder's fake driver.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.records import spec_of
from unistack.iaas.volume import kinds
from unistack.openstack.volume.service import VolumeService, as_bool, link, new_id, read_member
from unistack.openstack.web import bad_request, conflict, empty, json_response, not_found, read_json

Obj = dict[str, Any]
CONSUMERS = frozenset({"front-end", "back-end", "both"})
RULE = "volume_extension:qos_specs_manage"


def by_qos(obj: Obj) -> list[str]:
    return [str(spec_of(obj).get("qos_specs_id") or "")]


def _specs(body: Obj) -> dict[str, str]:
    found = {}
    for key, value in body.items():
        if not key or len(key) > 255 or not isinstance(value, str | int | float):
            raise bad_request(f"Invalid input received: invalid QoS spec {key}.")
        found[key] = str(value)
    return found


class QosSpecs:
    def __init__(self, service: VolumeService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        one = "/qos-specs/{qos_id}"
        return [
            Route("/qos-specs", self.create_qos_specs, methods=["POST"]),
            Route("/qos-specs", self.list_qos_specs, methods=["GET"]),
            Route(one, self.show_qos_specs, methods=["GET"]),
            Route(one, self.set_keys, methods=["PUT"]),
            Route(one, self.delete_qos_specs, methods=["DELETE"]),
            Route(f"{one}/delete_keys", self.unset_keys, methods=["PUT"]),
            Route(f"{one}/associations", self.list_associations, methods=["GET"]),
            Route(f"{one}/associate", self.associate, methods=["GET"]),
            Route(f"{one}/disassociate", self.disassociate, methods=["GET"]),
            Route(f"{one}/disassociate_all", self.disassociate_all, methods=["GET"]),
        ]

    def _find(self, request: Request) -> Obj:
        self.service.admin(request, RULE)
        qos_id = request.path_params["qos_id"]
        found = self.service.records.get(kinds.QOS_SPECS, qos_id)
        if found is None:
            raise not_found(f"QoS Specs {qos_id} could not be found.")
        return found

    @staticmethod
    def view(qos: Obj) -> Obj:
        spec = spec_of(qos)
        return {
            "id": qos["metadata"]["name"],
            "name": spec.get("name"),
            "consumer": spec.get("consumer", "back-end"),
            "specs": spec.get("specs") or {},
        }

    async def create_qos_specs(self, request: Request) -> Response:
        self.service.admin(request, RULE)
        body = (await read_json(request)).get("qos_specs")
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise bad_request("Missing required element 'qos_specs' (with a name) in request body.")
        values = dict(body)
        name, consumer = values.pop("name").strip(), values.pop("consumer", "back-end")
        if not name or len(name) > 255:
            raise bad_request("Invalid input received: QoS specs name must be 1-255 characters.")
        if consumer not in CONSUMERS:
            raise bad_request(f"Invalid input received: consumer {consumer} is not valid.")
        if any(spec_of(q).get("name") == name for q in self.service.records.all(kinds.QOS_SPECS)):
            raise conflict(f"QoS Specs {name} already exists.")
        spec = {"name": name, "consumer": consumer, "specs": _specs(values)}
        created = await self.service.records.create(kinds.QOS_SPECS, new_id(), spec)
        links = link(request, "qos-specs", created["metadata"]["name"])
        return json_response({"qos_specs": self.view(created), "links": links})

    async def list_qos_specs(self, request: Request) -> Response:
        self.service.admin(request, RULE)
        shown = [self.view(q) for q in self.service.records.all(kinds.QOS_SPECS)]
        return json_response({"qos_specs": sorted(shown, key=lambda q: str(q["name"]))})

    async def show_qos_specs(self, request: Request) -> Response:
        qos = self._find(request)
        links = link(request, "qos-specs", qos["metadata"]["name"])
        return json_response({"qos_specs": self.view(qos), "links": links})

    async def set_keys(self, request: Request) -> Response:
        qos = self._find(request)
        body = await read_member(request, "qos_specs", filled=True)
        given = _specs(body)
        await self._change(qos, lambda spec: spec.setdefault("specs", {}).update(given))
        return json_response({"qos_specs": given})

    async def unset_keys(self, request: Request) -> Response:
        qos = self._find(request)
        keys = (await read_json(request)).get("keys")
        if not isinstance(keys, list) or not keys:
            raise bad_request("Missing required element 'keys' in request body.")
        missing = [k for k in keys if k not in (spec_of(qos).get("specs") or {})]
        if missing:
            raise bad_request(f"Invalid input received: QoS specs key {missing[0]} not found.")

        def drop(spec: Obj) -> None:
            spec["specs"] = {k: v for k, v in (spec.get("specs") or {}).items() if k not in keys}

        await self._change(qos, drop)
        return empty(202)

    async def _change(self, qos: Obj, edit: Any) -> None:
        def change(obj: Obj) -> None:
            edit(obj["spec"])

        await self.service.records.update(kinds.QOS_SPECS, qos["metadata"]["name"], change)

    async def delete_qos_specs(self, request: Request) -> Response:
        qos = self._find(request)
        force = as_bool(request.query_params.get("force", "false"), "force")
        users = self._types_of(qos)
        if users and not force:
            raise bad_request(
                f"QoS Specs {qos['metadata']['name']} is still associated with entities."
            )
        for vtype in users:
            await self._set_type_qos(vtype["metadata"]["name"], None)
        await self.service.records.delete(kinds.QOS_SPECS, qos["metadata"]["name"])
        return empty(202)

    def _types_of(self, qos: Obj) -> list[Obj]:
        return self.service.records.indexed(kinds.TYPES, "qos", qos["metadata"]["name"])

    async def list_associations(self, request: Request) -> Response:
        qos = self._find(request)
        shown = [
            {
                "association_type": "volume_type",
                "id": t["metadata"]["name"],
                "name": spec_of(t).get("name"),
            }
            for t in self._types_of(qos)
        ]
        return json_response({"qos_associations": shown})

    def _type_of(self, request: Request) -> Obj:
        type_id = request.query_params.get("vol_type_id")
        if not type_id:
            raise bad_request("Missing required parameter vol_type_id.")
        vtype = self.service.records.get(kinds.TYPES, type_id)
        if vtype is None:
            raise not_found(f"Volume type {type_id} could not be found.")
        return vtype

    async def associate(self, request: Request) -> Response:
        qos, vtype = self._find(request), self._type_of(request)
        held = spec_of(vtype).get("qos_specs_id")
        if held and held != qos["metadata"]["name"]:
            raise bad_request(
                f"Volume type {vtype['metadata']['name']} is already associated with QoS "
                f"specs {held}."
            )
        await self._set_type_qos(vtype["metadata"]["name"], qos["metadata"]["name"])
        return empty(202)

    async def disassociate(self, request: Request) -> Response:
        qos, vtype = self._find(request), self._type_of(request)
        if spec_of(vtype).get("qos_specs_id") == qos["metadata"]["name"]:
            await self._set_type_qos(vtype["metadata"]["name"], None)
        return empty(202)

    async def disassociate_all(self, request: Request) -> Response:
        qos = self._find(request)
        for vtype in self._types_of(qos):
            await self._set_type_qos(vtype["metadata"]["name"], None)
        return empty(202)

    async def _set_type_qos(self, type_id: str, qos_id: str | None) -> None:
        await self.service.merge(kinds.TYPES, type_id, {"qos_specs_id": qos_id})
