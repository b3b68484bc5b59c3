"""`/v2/metadefs`: Glance's metadata definitions catalog — namespaces of the properties,
objects and tags that images, flavors and volumes may carry, and the resource types each
namespace applies to.

A namespace is one object; its objects, properties, tags and resource type associations live
in its spec, changed with compare-and-swap. As in Glance's default policy, only an admin
writes; anyone reads public namespaces, and private ones are the owner's (404 to others). A
protected namespace cannot be deleted (403); names are unique (409).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unistack.iaas.image import kinds
from unistack.iaas.records import Duplicate, Missing, spec_of
from unistack.openstack.auth import AuthContext, require_admin
from unistack.openstack.image.service import ImageService, now_iso
from unistack.openstack.web import (
    OpenStackError,
    bad_request,
    conflict,
    empty,
    forbidden,
    json_response,
    not_found,
    read_json,
)

Obj = dict[str, Any]
BASE = "/v2/metadefs/namespaces"
# The resource types Glance's metadefs catalog ships (`glance-manage db_load_metadefs`).
RESOURCE_TYPES = (
    "OS::Cinder::Volume",
    "OS::Glance::Image",
    "OS::Glance::Snapshot",
    "OS::Nova::Aggregate",
    "OS::Nova::Flavor",
    "OS::Nova::Server",
    "OS::Trove::Instance",
)
NAMESPACE_FIELDS = ("display_name", "description", "visibility", "protected")
CHILDREN = {"objects": "object", "properties": "property", "tags": "tag"}


def object_name(namespace: str) -> str:
    return "ns-" + hashlib.sha256(namespace.encode()).hexdigest()[:40]


def namespace_view(spec: Obj, full: bool = False) -> Obj:
    name = spec["namespace"]
    shown: Obj = {
        "namespace": name,
        "display_name": spec.get("display_name", name),
        "description": spec.get("description", ""),
        "visibility": spec.get("visibility", "private"),
        "protected": bool(spec.get("protected", False)),
        "owner": spec.get("owner"),
        "created_at": spec.get("created_at"),
        "updated_at": spec.get("updated_at"),
        "schema": "/v2/schemas/metadefs/namespace",
        "self": f"{BASE}/{name}",
    }
    if spec.get("resource_type_associations"):
        shown["resource_type_associations"] = list(spec["resource_type_associations"])
    if full:
        if spec.get("properties"):
            shown["properties"] = dict(spec["properties"])
        if spec.get("objects"):
            shown["objects"] = [object_view(name, o) for o in spec["objects"].values()]
        if spec.get("tags"):
            shown["tags"] = [{"name": t} for t in spec["tags"]]
    return shown


def object_view(namespace: str, obj: Obj) -> Obj:
    return {
        **obj,
        "schema": "/v2/schemas/metadefs/object",
        "self": f"{BASE}/{namespace}/objects/{obj['name']}",
    }


def _text(body: Obj, key: str, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or (len(value) > 80 and key == "namespace"):
        raise bad_request(f"Invalid value for {key}: {value!r}")
    return value


@dataclass
class Metadefs:
    service: ImageService

    def routes(self) -> list[Route]:
        ns = BASE + "/{namespace}"
        return [
            Route("/v2/metadefs/resource_types", self.list_resource_types, methods=["GET"]),
            Route(BASE, self.list_namespaces, methods=["GET"]),
            Route(BASE, self.create_namespace, methods=["POST"]),
            Route(ns, self.show_namespace, methods=["GET"]),
            Route(ns, self.update_namespace, methods=["PUT"]),
            Route(ns, self.delete_namespace, methods=["DELETE"]),
            Route(ns + "/resource_types", self.list_associations, methods=["GET"]),
            Route(ns + "/resource_types", self.create_association, methods=["POST"]),
            Route(ns + "/resource_types/{name}", self.delete_association, methods=["DELETE"]),
            Route(ns + "/objects", self.list_objects, methods=["GET"]),
            Route(ns + "/objects", self.create_object, methods=["POST"]),
            Route(ns + "/objects/{name}", self.show_object, methods=["GET"]),
            Route(ns + "/objects/{name}", self.update_object, methods=["PUT"]),
            Route(ns + "/objects/{name}", self.delete_object, methods=["DELETE"]),
            Route(ns + "/properties", self.list_properties, methods=["GET"]),
            Route(ns + "/properties", self.create_property, methods=["POST"]),
            Route(ns + "/properties/{name}", self.show_property, methods=["GET"]),
            Route(ns + "/properties/{name}", self.update_property, methods=["PUT"]),
            Route(ns + "/properties/{name}", self.delete_property, methods=["DELETE"]),
            Route(ns + "/tags", self.list_tags, methods=["GET"]),
            Route(ns + "/tags", self.replace_tags, methods=["POST"]),
            Route(ns + "/tags", self.delete_tags, methods=["DELETE"]),
            Route(ns + "/tags/{name}", self.create_tag, methods=["POST"]),
            Route(ns + "/tags/{name}", self.show_tag, methods=["GET"]),
            Route(ns + "/tags/{name}", self.update_tag, methods=["PUT"]),
            Route(ns + "/tags/{name}", self.delete_tag, methods=["DELETE"]),
        ]

    # --- lookups and writes -------------------------------------------------------------

    def _visible(self, context: AuthContext, namespace: str) -> Obj:
        found = self.service.records.get(kinds.METADEF_NAMESPACES, object_name(namespace))
        spec = spec_of(found)
        if found is None or not (
            context.is_admin
            or spec.get("visibility") == "public"
            or spec.get("owner") == context.project_id
        ):
            raise not_found(f"Metadata definition namespace={namespace} was not found.")
        return spec

    def _writable(self, request: Request) -> tuple[AuthContext, str, Obj]:
        context = self.service.caller(request)
        require_admin(context, "modify_metadef_namespace")
        namespace = request.path_params["namespace"]
        return context, namespace, self._visible(context, namespace)

    async def _change(self, namespace: str, change: Callable[[Obj], None]) -> Obj:
        def apply(obj: Obj) -> None:
            change(obj["spec"])
            obj["spec"]["updated_at"] = now_iso()

        try:
            written = await self.service.records.update(
                kinds.METADEF_NAMESPACES, object_name(namespace), apply
            )
        except Missing:
            raise not_found(f"Metadata definition namespace={namespace} was not found.") from None
        return spec_of(written)

    # --- namespaces ---------------------------------------------------------------------

    async def list_resource_types(self, request: Request) -> Response:
        self.service.caller(request)
        stamp = "2014-08-28T17:13:06Z"
        types = [{"name": n, "created_at": stamp, "updated_at": stamp} for n in RESOURCE_TYPES]
        return json_response({"resource_types": types})

    async def list_namespaces(self, request: Request) -> Response:
        context = self.service.caller(request)
        wanted = request.query_params.get("visibility")
        resource_type = request.query_params.get("resource_types")
        shown = []
        for item in self.service.records.all(kinds.METADEF_NAMESPACES):
            spec = spec_of(item)
            name = spec["namespace"]
            try:
                self._visible(context, name)
            except OpenStackError:
                continue
            if wanted and spec.get("visibility") != wanted:
                continue
            associations = {a["name"] for a in spec.get("resource_type_associations") or []}
            if resource_type and resource_type not in associations:
                continue
            shown.append(namespace_view(spec))
        shown.sort(key=lambda n: n["namespace"])
        body = {"namespaces": shown, "first": BASE, "schema": "/v2/schemas/metadefs/namespaces"}
        return json_response(body)

    async def create_namespace(self, request: Request) -> Response:
        context = self.service.caller(request)
        require_admin(context, "add_metadef_namespace")
        body = await read_json(request)
        name = _text(body, "namespace", required=True)
        assert name is not None
        spec = self._namespace_spec(body, name, context)
        for association in body.get("resource_type_associations") or []:
            spec["resource_type_associations"].append(_association(association))
        try:
            await self.service.records.create(kinds.METADEF_NAMESPACES, object_name(name), spec)
        except Duplicate:
            message = f"A metadata definition namespace with name={name} already exists."
            raise conflict(message) from None
        return json_response(namespace_view(spec, full=True), 201)

    def _namespace_spec(self, body: Obj, name: str, context: AuthContext) -> Obj:
        visibility = body.get("visibility", "private")
        if visibility not in ("public", "private"):
            raise bad_request(f"Invalid visibility: {visibility!r}")
        stamp = now_iso()
        return {
            "namespace": name,
            "display_name": body.get("display_name", name),
            "description": body.get("description", ""),
            "visibility": visibility,
            "protected": bool(body.get("protected", False)),
            "owner": body.get("owner") or context.project_id,
            "created_at": stamp,
            "updated_at": stamp,
            "resource_type_associations": [],
            "objects": {},
            "properties": {},
            "tags": [],
        }

    async def show_namespace(self, request: Request) -> Response:
        context = self.service.caller(request)
        spec = self._visible(context, request.path_params["namespace"])
        return json_response(namespace_view(spec, full=True))

    async def update_namespace(self, request: Request) -> Response:
        _, namespace, _ = self._writable(request)
        body = await read_json(request)
        if body.get("visibility", "private") not in ("public", "private"):
            raise bad_request(f"Invalid visibility: {body.get('visibility')!r}")
        if body.get("namespace", namespace) != namespace:
            raise bad_request("Renaming a metadata definition namespace is not supported.")

        def change(spec: Obj) -> None:
            for key in NAMESPACE_FIELDS:
                if key in body:
                    spec[key] = bool(body[key]) if key == "protected" else body[key]

        return json_response(namespace_view(await self._change(namespace, change)))

    async def delete_namespace(self, request: Request) -> Response:
        _, namespace, spec = self._writable(request)
        if spec.get("protected"):
            raise forbidden(f"Namespace {namespace} is protected and cannot be deleted.")
        await self.service.records.delete(kinds.METADEF_NAMESPACES, object_name(namespace))
        return empty()

    # --- resource type associations -----------------------------------------------------

    async def list_associations(self, request: Request) -> Response:
        context = self.service.caller(request)
        spec = self._visible(context, request.path_params["namespace"])
        return json_response(
            {"resource_type_associations": list(spec.get("resource_type_associations") or [])}
        )

    async def create_association(self, request: Request) -> Response:
        _, namespace, spec = self._writable(request)
        association = _association(await read_json(request))
        if any(a["name"] == association["name"] for a in spec["resource_type_associations"]):
            raise conflict(f"Resource type {association['name']} is already associated.")

        def change(current: Obj) -> None:
            current.setdefault("resource_type_associations", []).append(association)

        await self._change(namespace, change)
        return json_response(association, 201)

    async def delete_association(self, request: Request) -> Response:
        _, namespace, spec = self._writable(request)
        name = request.path_params["name"]
        if not any(a["name"] == name for a in spec.get("resource_type_associations") or []):
            raise not_found(f"Resource type {name} is not associated with {namespace}.")

        def change(current: Obj) -> None:
            current["resource_type_associations"] = [
                a for a in current.get("resource_type_associations") or [] if a["name"] != name
            ]

        await self._change(namespace, change)
        return empty()

    # --- objects and properties (named children with free-form bodies) -------------------

    async def list_objects(self, request: Request) -> Response:
        context = self.service.caller(request)
        namespace = request.path_params["namespace"]
        spec = self._visible(context, namespace)
        objects = [object_view(namespace, o) for o in (spec.get("objects") or {}).values()]
        return json_response({"objects": objects, "schema": "v2/schemas/metadefs/objects"})

    async def create_object(self, request: Request) -> Response:
        return await self._create_child(request, "objects")

    async def show_object(self, request: Request) -> Response:
        return await self._show_child(request, "objects")

    async def update_object(self, request: Request) -> Response:
        return await self._update_child(request, "objects")

    async def delete_object(self, request: Request) -> Response:
        return await self._delete_child(request, "objects")

    async def list_properties(self, request: Request) -> Response:
        context = self.service.caller(request)
        spec = self._visible(context, request.path_params["namespace"])
        return json_response({"properties": dict(spec.get("properties") or {})})

    async def create_property(self, request: Request) -> Response:
        return await self._create_child(request, "properties")

    async def show_property(self, request: Request) -> Response:
        return await self._show_child(request, "properties")

    async def update_property(self, request: Request) -> Response:
        return await self._update_child(request, "properties")

    async def delete_property(self, request: Request) -> Response:
        return await self._delete_child(request, "properties")

    def _child_view(self, namespace: str, collection: str, child: Obj) -> Obj:
        return object_view(namespace, child) if collection == "objects" else dict(child)

    async def _create_child(self, request: Request, collection: str) -> Response:
        _, namespace, spec = self._writable(request)
        child = _child_body(await read_json(request), collection)
        name = child["name"]
        if name in (spec.get(collection) or {}):
            raise conflict(
                f"A metadata definition {CHILDREN[collection]} with name={name} "
                f"already exists in namespace={namespace}."
            )

        def change(current: Obj) -> None:
            current.setdefault(collection, {})[name] = child

        await self._change(namespace, change)
        return json_response(self._child_view(namespace, collection, child), 201)

    def _child(self, spec: Obj, namespace: str, collection: str, name: str) -> Obj:
        child = (spec.get(collection) or {}).get(name)
        if child is None:
            raise not_found(
                f"The metadata definition {CHILDREN[collection]} with name={name} "
                f"was not found in namespace={namespace}."
            )
        return dict(child)

    async def _show_child(self, request: Request, collection: str) -> Response:
        context = self.service.caller(request)
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        child = self._child(self._visible(context, namespace), namespace, collection, name)
        return json_response(self._child_view(namespace, collection, child))

    async def _update_child(self, request: Request, collection: str) -> Response:
        _, namespace, spec = self._writable(request)
        name = request.path_params["name"]
        old = self._child(spec, namespace, collection, name)
        body = _child_body({"name": name, **(await read_json(request))}, collection)
        updated = dict(body)
        if collection == "objects":
            updated.update(created_at=old.get("created_at"), updated_at=now_iso())
        if updated["name"] != name and updated["name"] in (spec.get(collection) or {}):
            raise conflict(
                f"A metadata definition {CHILDREN[collection]} named "
                f"{updated['name']} already exists."
            )

        def change(current: Obj) -> None:
            children = current.setdefault(collection, {})
            children.pop(name, None)
            children[updated["name"]] = updated

        await self._change(namespace, change)
        return json_response(self._child_view(namespace, collection, updated))

    async def _delete_child(self, request: Request, collection: str) -> Response:
        _, namespace, spec = self._writable(request)
        name = request.path_params["name"]
        self._child(spec, namespace, collection, name)

        def change(current: Obj) -> None:
            current.setdefault(collection, {}).pop(name, None)

        await self._change(namespace, change)
        return empty()

    # --- tags ---------------------------------------------------------------------------

    async def list_tags(self, request: Request) -> Response:
        context = self.service.caller(request)
        spec = self._visible(context, request.path_params["namespace"])
        return json_response({"tags": [_tag_view(t) for t in spec.get("tags") or []]})

    async def replace_tags(self, request: Request) -> Response:
        _, namespace, spec = self._writable(request)
        body = await read_json(request)
        names = [str(t.get("name") or "") for t in body.get("tags") or [] if isinstance(t, dict)]
        if not names or not all(names):
            raise bad_request("A list of tags, each with a name, is required.")
        append = request.headers.get("x-openstack-append", "").lower() == "true"
        existing = list(spec.get("tags") or []) if append else []
        duplicates = set(names) & set(existing) or {n for n in names if names.count(n) > 1}
        if duplicates:
            raise conflict(f"Duplicate tags: {', '.join(sorted(duplicates))}.")

        def change(current: Obj) -> None:
            current["tags"] = [*existing, *names]

        await self._change(namespace, change)
        return json_response({"tags": [{"name": n} for n in names]}, 201)

    async def delete_tags(self, request: Request) -> Response:
        _, namespace, _ = self._writable(request)
        await self._change(namespace, lambda spec: spec.update(tags=[]))
        return empty()

    async def create_tag(self, request: Request) -> Response:
        _, namespace, spec = self._writable(request)
        name = request.path_params["name"]
        if name in (spec.get("tags") or []):
            raise conflict(f"A metadata tag with name={name} already exists in {namespace}.")
        await self._change(namespace, lambda s: s.setdefault("tags", []).append(name))
        return json_response(_tag_view(name), 201)

    async def show_tag(self, request: Request) -> Response:
        context = self.service.caller(request)
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        if name not in (self._visible(context, namespace).get("tags") or []):
            raise not_found(f"The metadata tag {name} was not found in namespace={namespace}.")
        return json_response(_tag_view(name))

    async def update_tag(self, request: Request) -> Response:
        _, namespace, spec = self._writable(request)
        name = request.path_params["name"]
        new = (await read_json(request)).get("name")
        if not isinstance(new, str) or not new:
            raise bad_request("A tag needs a name.")
        tags = list(spec.get("tags") or [])
        if name not in tags:
            raise not_found(f"The metadata tag {name} was not found in namespace={namespace}.")
        if new != name and new in tags:
            raise conflict(f"A metadata tag with name={new} already exists in {namespace}.")

        def change(current: Obj) -> None:
            current["tags"] = [new if t == name else t for t in current.get("tags") or []]

        await self._change(namespace, change)
        return json_response(_tag_view(new))

    async def delete_tag(self, request: Request) -> Response:
        _, namespace, spec = self._writable(request)
        name = request.path_params["name"]
        if name not in (spec.get("tags") or []):
            raise not_found(f"The metadata tag {name} was not found in namespace={namespace}.")

        def change(current: Obj) -> None:
            current["tags"] = [t for t in current.get("tags") or [] if t != name]

        await self._change(namespace, change)
        return empty()


def _tag_view(name: str) -> Obj:
    return {"name": name}


def _association(body: Any) -> Obj:
    if not isinstance(body, dict) or body.get("name") not in RESOURCE_TYPES:
        raise bad_request(f"Unknown resource type: {body!r}; one of {', '.join(RESOURCE_TYPES)}.")
    stamp = now_iso()
    association = {"name": body["name"], "created_at": stamp, "updated_at": stamp}
    for key in ("prefix", "properties_target"):
        if body.get(key) is not None:
            association[key] = str(body[key])
    return association


def _child_body(body: Obj, collection: str) -> Obj:
    name = body.get("name")
    if not isinstance(name, str) or not name or len(name) > 80:
        raise bad_request(f"Invalid name for a {CHILDREN[collection]}: {name!r}")
    if collection == "properties" and not all(
        isinstance(body.get(k), str) for k in ("title", "type")
    ):
        raise bad_request("A property needs a title and a type.")
    if collection == "properties":
        return {**body, "name": name}
    stamp = now_iso()
    return {"created_at": stamp, "updated_at": stamp, **body, "name": name}
