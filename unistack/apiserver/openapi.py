"""OpenAPI documents: `/openapi/v3` (an index and one document per group-version) and `/openapi/v2`.

kubectl reads these to decide that the server validates fields itself (a `fieldValidation`
parameter on the PATCH operation of a kind), to compute strategic merge patches and for
`explain`; every operation and kind schema carries `x-kubernetes-group-version-kind` so clients
can map schemas to kinds. Paths follow the resource types in the `resources.Registry`, with the
subresources `discovery.SUBRESOURCES` describes. Schemas of built-in kinds come from
`builtin_schemas` (the `kubernetes` client's model classes); custom kinds use their CRD's
openAPIV3Schema. Documents are cached until the registry's generation changes; `app` serialises
them. Documents returned here are shared between requests: callers must not modify them.

PATCH operations do not offer strategic merge patch: the schemas lack the lists' merge keys, and
kubectl would compute patches from them that replace lists the server merges by key. Without the
offer, kubectl computes strategic merge patches from the merge keys compiled into it.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import orjson

from unistack.apiserver import builtin_schemas, discovery
from unistack.apiserver.resources import Registry, ResourceType

Doc = dict[str, Any]
Schema = dict[str, Any]

_cache = discovery.GenerationCache()

_HTTP_METHODS = ("get", "put", "post", "delete", "patch")
_JSON_YAML = ("application/json", "application/yaml")
_PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
)

# Query parameters: name -> (type, description).
_PARAMETERS: dict[str, tuple[str, str]] = {
    "pretty": ("string", "If 'true', the output is pretty printed."),
    "allowWatchBookmarks": ("boolean", "Ask for BOOKMARK watch events."),
    "continue": ("string", "The continue token of a previous paginated list."),
    "fieldSelector": ("string", "Restrict the returned objects by their fields."),
    "labelSelector": ("string", "Restrict the returned objects by their labels."),
    "limit": ("integer", "The maximum number of objects to return in one page."),
    "resourceVersion": ("string", "Which resource version to serve the request from."),
    "resourceVersionMatch": ("string", "How resourceVersion is applied to a list."),
    "sendInitialEvents": ("boolean", "Start a watch with the current objects as events."),
    "timeoutSeconds": ("integer", "How long a list or watch call may last."),
    "watch": ("boolean", "Watch for changes instead of listing."),
    "dryRun": ("string", "'All' to process the request without persisting it."),
    "fieldManager": ("string", "The name of the actor making these changes."),
    "fieldValidation": (
        "string",
        "How to treat unknown or duplicate fields: Ignore, Warn or Strict.",
    ),
    "force": ("boolean", "Take over fields owned by other managers (apply only)."),
    "gracePeriodSeconds": ("integer", "Seconds before the object is deleted."),
    "orphanDependents": ("boolean", "Deprecated: use propagationPolicy."),
    "propagationPolicy": ("string", "Orphan, Background or Foreground garbage collection."),
    "container": ("string", "The container to address."),
    "follow": ("boolean", "Follow the log stream."),
    "limitBytes": ("integer", "Stop after this many bytes of log."),
    "previous": ("boolean", "The log of the previous, terminated container."),
    "sinceSeconds": ("integer", "Only log lines newer than this many seconds."),
    "tailLines": ("integer", "Only this many lines from the end of the log."),
    "timestamps": ("boolean", "Prefix every log line with its timestamp."),
    "command": ("string", "The command to run (repeat for each argument)."),
    "stdin": ("boolean", "Attach standard input."),
    "stdout": ("boolean", "Attach standard output."),
    "stderr": ("boolean", "Attach standard error."),
    "tty": ("boolean", "Allocate a terminal."),
}
_LIST_PARAMETERS = (
    "allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit",
    "resourceVersion", "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds", "watch",
)  # fmt: skip
_WRITE_PARAMETERS = ("dryRun", "fieldManager", "fieldValidation")
_DELETE_PARAMETERS = ("dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy")
_SUBRESOURCE_PARAMETERS = {
    "log": (
        "container", "follow", "limitBytes", "previous", "sinceSeconds", "tailLines", "timestamps",
    ),
    "exec": ("command", "container", "stdin", "stdout", "stderr", "tty"),
    "attach": ("container", "stdin", "stdout", "stderr", "tty"),
}  # fmt: skip

# What each action of an object or subresource answers: action -> (verb word, status codes).
_ACTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "get": ("read", ("200",)),
    "list": ("list", ("200",)),
    "post": ("create", ("200", "201", "202")),
    "put": ("replace", ("200", "201")),
    "patch": ("patch", ("200", "201")),
    "delete": ("delete", ("200", "202")),
    "deletecollection": ("delete", ("200",)),
    "connect": ("connect", ("200",)),
}
_VERB_METHODS = {
    "get": "get",
    "update": "put",
    "patch": "patch",
    "create": "post",
    "delete": "delete",
}


# -- public API -------------------------------------------------------------------------------


def v3_index(registry: Registry) -> Doc:
    """`/openapi/v3`: where each group-version's document is, with a content hash in the URL."""
    return _cache.get(registry, "index", lambda: _index(registry))


def v3_group_version(registry: Registry, group: str, version: str) -> Doc | None:
    """`/openapi/v3/api/v1`, `/openapi/v3/apis/<g>/<v>`: one OpenAPI 3.0 document."""
    key = ("v3", group, version)
    return _cache.get(registry, key, lambda: _group_version_doc(registry, group, version))


def v2(registry: Registry) -> Doc:
    """`/openapi/v2`: every group-version in one Swagger 2.0 document."""
    return _cache.get(registry, "v2", lambda: _swagger(registry))


def api_path(group: str, version: str) -> str:
    """The index key of a group-version: `api/v1`, `apis/apps/v1`."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _group_versions(registry: Registry) -> list[tuple[str, str]]:
    return [(g, v) for g in registry.groups() for v in registry.versions(g)]


def _index(registry: Registry) -> Doc:
    paths: Doc = {}
    for group, version in _group_versions(registry):
        doc = v3_group_version(registry, group, version)
        if doc is None:
            continue
        digest = hashlib.sha512(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()
        key = api_path(group, version)
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest.upper()}"}
    return {"paths": paths}


# -- one group-version ------------------------------------------------------------------------


def _group_version_doc(registry: Registry, group: str, version: str) -> Doc | None:
    types = sorted(registry.in_group_version(group, version), key=lambda rt: rt.plural)
    if not types:
        return None
    paths: Doc = {}
    schemas: dict[str, Schema] = {}
    for rt in types:
        paths.update(_resource_paths(rt))
        schemas.update(_kind_schemas(rt))
    schemas.update(builtin_schemas.common_schemas())
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unistack"},
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items()))},
    }


def _kind_schemas(rt: ResourceType) -> dict[str, Schema]:
    """The schemas of a kind, its list kind and the kinds its subresources answer with."""
    schemas = dict(builtin_schemas.kind_schemas(rt.group, rt.version, rt.kind))
    if rt.custom or not schemas:
        schemas = _declared_schemas(rt)
    else:
        schemas.update(builtin_schemas.kind_schemas(rt.group, rt.version, rt.list_kind))
        for kind in (rt.kind, rt.list_kind):
            _tag_kind(schemas, _schema_name(rt, kind), _gvk(rt.group, rt.version, kind))
    for sub in rt.subresources:
        group, version, kind = _subresource_gvk(rt, sub)
        if _subresource_body(rt, sub) is not None and kind != rt.kind:
            schemas.update(builtin_schemas.kind_schemas(group, version, kind))
            name = builtin_schemas.kind_name(group, version, kind)
            _tag_kind(schemas, name, _gvk(group, version, kind))
    return schemas


def _tag_kind(schemas: dict[str, Schema], name: str, gvk: dict[str, str]) -> None:
    if name in schemas:
        schemas[name] = {**schemas[name], "x-kubernetes-group-version-kind": [gvk]}


def _schema_name(rt: ResourceType, kind: str) -> str:
    if rt.custom:
        return ".".join(reversed(rt.group.split("."))) + f".{rt.version}.{kind}"
    return builtin_schemas.kind_name(rt.group, rt.version, kind)


def _declared_schemas(rt: ResourceType) -> dict[str, Schema]:
    """A kind's schema as it declares it (a CRD's openAPIV3Schema, or any object when it
    declares none), with standard apiVersion, kind and metadata; and its list's schema."""
    schema: Schema = copy.deepcopy(rt.schema) if rt.schema else {}
    if not schema.get("properties"):
        schema["x-kubernetes-preserve-unknown-fields"] = True
    schema["type"] = "object"
    schema["properties"] = {**schema.get("properties", {}), **builtin_schemas.type_meta(True)}
    schema["x-kubernetes-group-version-kind"] = [_gvk(rt.group, rt.version, rt.kind)]
    items = {"type": "array", "items": _ref(_schema_name(rt, rt.kind))}
    listing: Schema = {
        "description": f"{rt.list_kind} is a list of {rt.kind}",
        "type": "object",
        "required": ["items"],
        "properties": {"items": items, **builtin_schemas.type_meta(False)},
        "x-kubernetes-group-version-kind": [_gvk(rt.group, rt.version, rt.list_kind)],
    }
    return {_schema_name(rt, rt.kind): schema, _schema_name(rt, rt.list_kind): listing}


# -- paths ------------------------------------------------------------------------------------


def _resource_paths(rt: ResourceType) -> dict[str, Doc]:
    """Every path of a resource: its collection, its objects, their subresources, and the
    list across namespaces."""
    base = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
    scope = "/namespaces/{namespace}" if rt.namespaced else ""
    collection = f"{base}{scope}/{rt.plural}"
    item = collection + "/{name}"
    verbs = set(rt.verbs)
    paths = {
        collection: _collection_path(rt, verbs),
        item: _item_path(rt, verbs),
        **{f"{item}/{name}": _subresource_path(rt, name) for name in rt.subresources},
    }
    if rt.namespaced and "list" in verbs:
        every = _operation(rt, "list", "list", all_namespaces=True)
        paths[f"{base}/{rt.plural}"] = {"get": every, "parameters": [_parameter("pretty")]}
    return {path: ops for path, ops in paths.items() if set(ops) & set(_HTTP_METHODS)}


def _path_parameters(rt: ResourceType, named: bool) -> list[Doc]:
    parameters = [_path_parameter("name", f"name of the {rt.kind}")] if named else []
    if rt.namespaced:
        parameters.append(_path_parameter("namespace", "object name and auth scope"))
    return [*parameters, _parameter("pretty")]


def _collection_path(rt: ResourceType, verbs: set[str]) -> Doc:
    path: Doc = {}
    if "list" in verbs:
        path["get"] = _operation(rt, "list", "list")
    if "create" in verbs:
        path["post"] = _operation(rt, "post", "post")
    if "deletecollection" in verbs:
        path["delete"] = _operation(rt, "deletecollection", "deletecollection")
    path["parameters"] = _path_parameters(rt, named=False)
    return path


def _item_path(rt: ResourceType, verbs: set[str]) -> Doc:
    methods = [_VERB_METHODS[v] for v in ("get", "update", "patch", "delete") if v in verbs]
    path: Doc = {method: _operation(rt, method, method) for method in methods}
    path["parameters"] = _path_parameters(rt, named=True)
    return path


def _subresource_path(rt: ResourceType, name: str) -> Doc:
    sub = discovery.subresource(name)
    path: Doc = {}
    for verb in sub.verbs:
        method = _VERB_METHODS[verb]
        action = "connect" if sub.connect else method
        path[method] = _operation(rt, action, method, subresource=name)
    path["parameters"] = _path_parameters(rt, named=True)
    return path


def _operation(
    rt: ResourceType,
    action: str,
    method: str,
    subresource: str = "",
    all_namespaces: bool = False,
) -> Doc:
    """One operation, with the parameters, request body and responses its action implies."""
    group, version, kind = (
        _subresource_gvk(rt, subresource) if subresource else (rt.group, rt.version, rt.kind)
    )
    op: Doc = {
        "tags": [_tag(rt)],
        "description": f"{action} {kind}" + (f" {subresource}" if subresource else ""),
        "operationId": _operation_id(rt, action, method, subresource, all_namespaces),
        "parameters": [_parameter(p) for p in _query_parameters(action, subresource)],
    }
    body = _subresource_body(rt, subresource) if subresource else _ref(_schema_name(rt, kind))
    request = _request_body(action, body)
    if request is not None:
        op["requestBody"] = request
    op["responses"] = _responses(rt, action, body)
    op["x-kubernetes-action"] = action
    op["x-kubernetes-group-version-kind"] = _gvk(group, version, kind)
    return op


def _query_parameters(action: str, subresource: str) -> tuple[str, ...]:
    if subresource in _SUBRESOURCE_PARAMETERS:
        return _SUBRESOURCE_PARAMETERS[subresource]
    return {
        "list": _LIST_PARAMETERS,
        "post": _WRITE_PARAMETERS,
        "put": _WRITE_PARAMETERS,
        "patch": (*_WRITE_PARAMETERS, "force"),
        "delete": _DELETE_PARAMETERS,
        "deletecollection": (*_LIST_PARAMETERS, *_DELETE_PARAMETERS),
    }.get(action, ())


def _request_body(action: str, body: Schema | None) -> Doc | None:
    if action == "patch":
        patch = _ref(builtin_schemas.PATCH)
        return {"content": {t: {"schema": patch} for t in _PATCH_TYPES}, "required": True}
    if action in ("delete", "deletecollection"):
        return {"content": {"*/*": {"schema": _ref(builtin_schemas.DELETE_OPTIONS)}}}
    if action in ("post", "put") and body is not None:
        return {"content": {"*/*": {"schema": body}}, "required": True}
    return None


def _responses(rt: ResourceType, action: str, body: Schema | None) -> Doc:
    if action in ("delete", "deletecollection"):
        body = _ref(builtin_schemas.STATUS)
    elif action == "list":
        body = _ref(_schema_name(rt, rt.list_kind))
    elif body is None:
        body = {"type": "string"}
    content = {media: {"schema": body} for media in _JSON_YAML}
    responses: Doc = {
        code: {"description": "OK", "content": content} for code in _ACTIONS[action][1]
    }
    responses["401"] = {"description": "Unauthorized"}
    return responses


def _subresource_gvk(rt: ResourceType, name: str) -> tuple[str, str, str]:
    sub = discovery.subresource(name)
    if sub.group or sub.version:
        return sub.group, sub.version, sub.response_kind(rt)
    return rt.group, rt.version, sub.response_kind(rt)


def _subresource_body(rt: ResourceType, name: str) -> Schema | None:
    """The object a subresource reads and writes, or None for streams (log, exec, ...)."""
    sub = discovery.subresource(name)
    group, version, kind = _subresource_gvk(rt, name)
    if sub.connect or name == "log":
        return None
    if kind == rt.kind:
        return _ref(_schema_name(rt, kind))
    if builtin_schemas.kind_schemas(group, version, kind):
        return _ref(builtin_schemas.kind_name(group, version, kind))
    return None


def _operation_id(
    rt: ResourceType, action: str, method: str, subresource: str, all_namespaces: bool
) -> str:
    verb = _ACTIONS[action][0] + (method.capitalize() if action == "connect" else "")
    collection = "Collection" if action == "deletecollection" else ""
    scope = "Namespaced" if rt.namespaced and not all_namespaces else ""
    suffix = "ForAllNamespaces" if all_namespaces else ""
    gv = _camel_group(rt.group) + rt.version.capitalize()
    return f"{verb}{gv}{collection}{scope}{rt.kind}{subresource.capitalize()}{suffix}"


def _camel_group(group: str) -> str:
    parts = group.removesuffix(".k8s.io").replace("-", ".").split(".") if group else ["core"]
    return "".join(part[:1].upper() + part[1:] for part in parts)


def _tag(rt: ResourceType) -> str:
    camel = _camel_group(rt.group)
    return f"{camel[:1].lower()}{camel[1:]}_{rt.version}"


def _parameter(name: str) -> Doc:
    kind, description = _PARAMETERS[name]
    return {"name": name, "in": "query", "description": description, "schema": {"type": kind}}


def _path_parameter(name: str, description: str) -> Doc:
    schema = {"type": "string"}
    return {
        "name": name,
        "in": "path",
        "description": description,
        "required": True,
        "schema": schema,
    }


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


# -- Swagger 2.0 ------------------------------------------------------------------------------


def _swagger(registry: Registry) -> Doc:
    paths: Doc = {}
    definitions: dict[str, Schema] = {}
    for group, version in _group_versions(registry):
        doc = v3_group_version(registry, group, version)
        if doc is None:
            continue
        paths.update({path: _v2_path(item) for path, item in doc["paths"].items()})
        schemas = doc["components"]["schemas"].items()
        definitions.update({name: _v2_schema(schema) for name, schema in schemas})
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "unistack"},
        "paths": paths,
        "definitions": dict(sorted(definitions.items())),
    }


def _v2_path(item: Doc) -> Doc:
    path: Doc = {m: _v2_operation(op) for m, op in item.items() if m in _HTTP_METHODS}
    path["parameters"] = [_v2_parameter(p) for p in item.get("parameters", [])]
    return path


def _v2_operation(op: Doc) -> Doc:
    parameters = [_v2_parameter(p) for p in op["parameters"]]
    out: Doc = {k: op[k] for k in ("description", "operationId", "tags")}
    if "requestBody" in op:
        content = op["requestBody"]["content"]
        schema = _v2_schema(next(iter(content.values()))["schema"])
        body = {"name": "body", "in": "body", "required": op["requestBody"].get("required", False)}
        parameters.insert(0, {**body, "schema": schema})
        out["consumes"] = list(content)
    out["produces"] = list(_JSON_YAML)
    out["parameters"] = parameters
    out["responses"] = {code: _v2_response(r) for code, r in op["responses"].items()}
    out["schemes"] = ["https"]
    for key in ("x-kubernetes-action", "x-kubernetes-group-version-kind"):
        out[key] = op[key]
    return out


def _v2_response(response: Doc) -> Doc:
    out = {"description": response["description"]}
    if "content" in response:
        out["schema"] = _v2_schema(next(iter(response["content"].values()))["schema"])
    return out


def _v2_parameter(parameter: Doc) -> Doc:
    out = {k: v for k, v in parameter.items() if k != "schema"}
    return {**out, **parameter["schema"], "uniqueItems": True}


_SCHEMA_MAPS = ("properties", "patternProperties", "definitions")
_SCHEMA_VALUES = ("items", "additionalProperties", "additionalItems")
_V3_ONLY = ("oneOf", "anyOf", "not", "nullable")


def _v2_schema(schema: Any) -> Any:
    """An OpenAPI v3 schema as Swagger 2.0 has it: refs under `#/definitions/`, no `oneOf`,
    `anyOf`, `not` or `nullable`, and int-or-string values typed as strings."""
    if not isinstance(schema, dict):
        return schema
    out: Schema = {}
    for key, value in schema.items():
        if key == "$ref":
            out[key] = value.replace("#/components/schemas/", "#/definitions/")
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _v2_schema(s) for name, s in value.items()}
        elif key in _SCHEMA_VALUES or key == "allOf":
            out[key] = (
                [_v2_schema(s) for s in value] if isinstance(value, list) else _v2_schema(value)
            )
        elif key not in _V3_ONLY:
            out[key] = value
    if "oneOf" in schema and "type" not in schema:
        out["type"] = "string"
    all_of = out.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and "$ref" in all_of[0]:
        del out["allOf"]
        out["$ref"] = all_of[0]["$ref"]
    return out
