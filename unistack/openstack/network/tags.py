"""Tags: `/v2.0/{collection}/{id}/tags[/{tag}]` on networks, subnets, ports, routers,
floating IPs and security groups — list, replace all, add one, check one, remove one or
all, as Neutron's tag extension does. (Filtering by tags is in `query`.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.crds import Kind
from unistack.iaas.network import kinds
from unistack.iaas.records import Obj, spec_of
from unistack.openstack.network.service import NetworkService, bad, missing
from unistack.openstack.web import empty, json_response, read_json

COLLECTIONS: dict[str, tuple[Kind, str, str]] = {
    "networks": (kinds.NETWORKS, "NetworkNotFound", "Network"),
    "subnets": (kinds.SUBNETS, "SubnetNotFound", "Subnet"),
    "ports": (kinds.PORTS, "PortNotFound", "Port"),
    "routers": (kinds.ROUTERS, "RouterNotFound", "Router"),
    "floatingips": (kinds.FLOATING_IPS, "FloatingIPNotFound", "Floating IP"),
    "subnetpools": (kinds.SUBNET_POOLS, "SubnetPoolNotFound", "Subnet pool"),
    "security-groups": (kinds.SECURITY_GROUPS, "SecurityGroupNotFound", "Security group"),
}
MAX_TAG = 60


def checked_tag(tag: Any) -> str:
    if not isinstance(tag, str) or not tag or len(tag) > MAX_TAG or "," in tag or "/" in tag:
        raise bad(f"Invalid input for operation: '{tag}' is not a valid tag.")
    return tag


def routes(service: NetworkService) -> list[Route]:
    async def target(request: Request, rule: str) -> tuple[Kind, Obj]:
        collection = request.path_params["collection"]
        if collection not in COLLECTIONS:
            raise missing("NotFound", "The resource could not be found.")
        kind, error_type, label = COLLECTIONS[collection]
        context = service.context(request)
        obj = service.find(context, kind, request.path_params["id"], error_type, label)
        if request.method != "GET":
            service.may_write(context, obj, rule, error_type, label)
        return kind, obj

    async def write(kind: Kind, obj: Obj, retag: Callable[[list[str]], list[str]]) -> None:
        """New tags from the object's current ones (on the fresh object, so that concurrent
        tag changes do not undo each other)."""

        def change(spec: Obj) -> None:
            spec["tags"] = retag(list(spec.get("tags") or []))

        await service.revise(kind, obj["metadata"]["name"], change)

    async def list_tags(request: Request) -> Response:
        _, obj = await target(request, "get_tags")
        return json_response({"tags": list(spec_of(obj).get("tags") or [])})

    async def replace_tags(request: Request) -> Response:
        kind, obj = await target(request, "update_tags")
        body = await read_json(request)
        given = body.get("tags")
        if not isinstance(given, list):
            raise bad("Invalid input for operation: 'tags' must be a list.")
        tags = list(dict.fromkeys(checked_tag(t) for t in given))
        await write(kind, obj, lambda _: tags)
        return json_response({"tags": tags})

    async def remove_tags(request: Request) -> Response:
        kind, obj = await target(request, "delete_tags")
        await write(kind, obj, lambda _: [])
        return empty(204)

    async def check_tag(request: Request) -> Response:
        _, obj = await target(request, "get_tag")
        tag = request.path_params["tag"]
        if tag not in (spec_of(obj).get("tags") or []):
            raise missing(
                "TagNotFound", f"Tag {tag} could not be found for {request.path_params['id']}."
            )
        return empty(204)

    async def add_tag(request: Request) -> Response:
        kind, obj = await target(request, "update_tag")
        tag = checked_tag(request.path_params["tag"])
        if tag not in (spec_of(obj).get("tags") or []):
            await write(kind, obj, lambda tags: tags if tag in tags else [*tags, tag])
        return empty(201)

    async def remove_tag(request: Request) -> Response:
        kind, obj = await target(request, "delete_tag")
        tag = request.path_params["tag"]
        if tag not in (spec_of(obj).get("tags") or []):
            raise missing(
                "TagNotFound", f"Tag {tag} could not be found for {request.path_params['id']}."
            )
        await write(kind, obj, lambda tags: [t for t in tags if t != tag])
        return empty(204)

    base = "/v2.0/{collection}/{id}/tags"
    return [
        Route(base, list_tags, methods=["GET"]),
        Route(base, replace_tags, methods=["PUT"]),
        Route(base, remove_tags, methods=["DELETE"]),
        Route(base + "/{tag}", check_tag, methods=["GET"]),
        Route(base + "/{tag}", add_tag, methods=["PUT"]),
        Route(base + "/{tag}", remove_tag, methods=["DELETE"]),
    ]
