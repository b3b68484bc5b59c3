"""Metering labels and their rules (admin only): `/v2.0/metering/metering-labels` and
`/v2.0/metering/metering-label-rules`. The records are kept as Neutron keeps them; counting
traffic is the data plane's business. Deleting a label deletes its rules."""

from __future__ import annotations

import ipaddress

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.network import kinds
from unistack.iaas.network.stamps import stamp_new
from unistack.iaas.records import Obj, spec_of
from unistack.openstack import auth
from unistack.openstack.network import query
from unistack.openstack.network.service import (
    NetworkService,
    bad,
    boolean,
    in_use,
    missing,
    new_id,
    reject_unknown,
    standard,
    text,
)
from unistack.openstack.web import empty, json_response

LABEL_KEYS = {"name", "description", "shared", "project_id", "tenant_id"}
RULE_KEYS = {"metering_label_id", "direction", "remote_ip_prefix", "excluded"}
RULE_KEYS |= {"source_ip_prefix", "destination_ip_prefix", "project_id", "tenant_id"}


def label_view(obj: Obj) -> Obj:
    shown = {k: v for k, v in standard(obj).items() if k != "tags"}
    shown["shared"] = spec_of(obj).get("shared", False)
    return shown


def rule_view(obj: Obj) -> Obj:
    spec = spec_of(obj)
    shown = {"id": obj["metadata"]["name"]}
    for key in ("metering_label_id", "direction", "remote_ip_prefix", "excluded"):
        shown[key] = spec.get(key)
    shown.update(
        source_ip_prefix=spec.get("source_ip_prefix"),
        destination_ip_prefix=spec.get("destination_ip_prefix"),
        project_id=spec.get("project_id"),
        tenant_id=spec.get("project_id"),
    )
    return shown


def _prefix(value: object) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError as exc:
        raise bad(f"Invalid input for remote_ip_prefix. Reason: '{value}' is not valid.") from exc


def _overlaps(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    left, right = ipaddress.ip_network(a), ipaddress.ip_network(b)
    return left.version == right.version and left.overlaps(right)


class Metering:
    def __init__(self, service: NetworkService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        labels, rules = "/v2.0/metering/metering-labels", "/v2.0/metering/metering-label-rules"
        return [
            Route(labels, self.list_labels, methods=["GET"]),
            Route(labels, self.create_label, methods=["POST"]),
            Route(labels + "/{id}", self.show_label, methods=["GET"]),
            Route(labels + "/{id}", self.delete_label, methods=["DELETE"]),
            Route(rules, self.list_rules, methods=["GET"]),
            Route(rules, self.create_rule, methods=["POST"]),
            Route(rules + "/{id}", self.show_rule, methods=["GET"]),
            Route(rules + "/{id}", self.delete_rule, methods=["DELETE"]),
        ]

    def _admin(self, request: Request, rule: str) -> None:
        auth.require_admin(self.service.context(request), rule)

    def _label(self, label_id: str) -> Obj:
        obj = self.service.records.get(kinds.METERING_LABELS, label_id)
        if obj is None:
            raise missing("MeteringLabelNotFound", f"Metering label {label_id} does not exist")
        return obj

    def _rule(self, rule_id: str) -> Obj:
        obj = self.service.records.get(kinds.METERING_LABEL_RULES, rule_id)
        if obj is None:
            raise missing(
                "MeteringLabelRuleNotFound", f"Metering label rule {rule_id} does not exist"
            )
        return obj

    async def list_labels(self, request: Request) -> Response:
        self._admin(request, "get_metering_label")
        items = [label_view(o) for o in self.service.records.all(kinds.METERING_LABELS)]
        return json_response(query.list_body(request, "metering_labels", items))

    async def show_label(self, request: Request) -> Response:
        self._admin(request, "get_metering_label")
        shown = label_view(self._label(request.path_params["id"]))
        return json_response(query.show_body(request, "metering_label", shown))

    async def create_label(self, request: Request) -> Response:
        context = self.service.context(request)
        auth.require_admin(context, "create_metering_label")
        body = await self.service.body_of(request, "metering_label")
        reject_unknown(body, LABEL_KEYS)
        project = self.service.owner_of_new(context, body, "create_metering_label")
        spec: Obj = {"project_id": project, "name": text(body, "name")}
        spec.update(description=text(body, "description"), shared=boolean(body, "shared", False))
        label = await self.service.records.create(kinds.METERING_LABELS, new_id(), stamp_new(spec))
        return json_response({"metering_label": label_view(label)}, 201)

    async def delete_label(self, request: Request) -> Response:
        self._admin(request, "delete_metering_label")
        label = self._label(request.path_params["id"])
        label_id = label["metadata"]["name"]
        for rule in self.service.records.all(kinds.METERING_LABEL_RULES):
            if spec_of(rule).get("metering_label_id") == label_id:
                await self.service.records.delete(
                    kinds.METERING_LABEL_RULES, rule["metadata"]["name"]
                )
        await self.service.records.delete(kinds.METERING_LABELS, label_id)
        return empty(204)

    async def list_rules(self, request: Request) -> Response:
        self._admin(request, "get_metering_label_rule")
        items = [rule_view(o) for o in self.service.records.all(kinds.METERING_LABEL_RULES)]
        return json_response(query.list_body(request, "metering_label_rules", items))

    async def show_rule(self, request: Request) -> Response:
        self._admin(request, "get_metering_label_rule")
        shown = rule_view(self._rule(request.path_params["id"]))
        return json_response(query.show_body(request, "metering_label_rule", shown))

    async def create_rule(self, request: Request) -> Response:
        self._admin(request, "create_metering_label_rule")
        body = await self.service.body_of(request, "metering_label_rule")
        reject_unknown(body, RULE_KEYS)
        label = self._label(str(body.get("metering_label_id") or ""))
        if body.get("direction") not in ("ingress", "egress"):
            raise bad(
                f"Invalid input for direction. Reason: '{body.get('direction')}' is not valid."
            )
        spec = {
            "project_id": spec_of(label).get("project_id"),
            "metering_label_id": label["metadata"]["name"],
            "direction": body["direction"],
            "excluded": boolean(body, "excluded", False),
            "remote_ip_prefix": _prefix(body.get("remote_ip_prefix")),
            "source_ip_prefix": _prefix(body.get("source_ip_prefix")),
            "destination_ip_prefix": _prefix(body.get("destination_ip_prefix")),
        }
        self._no_overlap(spec)
        rule = await self.service.records.create(kinds.METERING_LABEL_RULES, new_id(), spec)
        return json_response({"metering_label_rule": rule_view(rule)}, 201)

    def _no_overlap(self, spec: Obj) -> None:
        for other in self.service.records.all(kinds.METERING_LABEL_RULES):
            known = spec_of(other)
            same = all(known.get(k) == spec[k] for k in ("metering_label_id", "direction"))
            if same and _overlaps(known.get("remote_ip_prefix"), spec["remote_ip_prefix"]):
                raise in_use(
                    "MeteringLabelRuleOverlaps",
                    f"Metering label rule with remote_ip_prefix {spec['remote_ip_prefix']} "
                    "overlaps another.",
                )

    async def delete_rule(self, request: Request) -> Response:
        self._admin(request, "delete_metering_label_rule")
        rule = self._rule(request.path_params["id"])
        await self.service.records.delete(kinds.METERING_LABEL_RULES, rule["metadata"]["name"])
        return empty(204)
