"""OpenAPI schemas of the built-in kinds, derived from the `kubernetes` client's model classes.

Each model class (`V1Deployment`) lists its fields with Python type names (`openapi_types`) and
JSON names (`attribute_map`); walking them from a kind yields the kind's schema and the schemas
of every type it refers to, named as upstream names them (`io.k8s.api.apps.v1.Deployment`,
`io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta`). The client stores int-or-string fields as
`object` and quantities as `str`; the tables here restore both. Importing the models is slow, so
it happens once per process, on first use; without the package, kinds get open schemas.
`openapi` assembles these into documents.

Schemas returned here are shared: callers must copy one before changing it.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Iterable
from types import ModuleType
from typing import Any

Schema = dict[str, Any]

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
OBJECT_META = f"{META}.ObjectMeta"
LIST_META = f"{META}.ListMeta"
STATUS = f"{META}.Status"
DELETE_OPTIONS = f"{META}.DeleteOptions"
PATCH = f"{META}.Patch"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"

# Types of the meta/v1 package, which every group uses.
_META_TYPES = frozenset({
    "APIGroup", "APIGroupList", "APIResource", "APIResourceList", "APIVersions", "Condition",
    "DeleteOptions", "GroupVersionForDiscovery", "LabelSelector", "LabelSelectorRequirement",
    "ListMeta", "ManagedFieldsEntry", "ObjectMeta", "OwnerReference", "Preconditions",
    "ServerAddressByClientCIDR", "Status", "StatusCause", "StatusDetails", "WatchEvent",
})  # fmt: skip
# Packages whose names do not follow io.k8s.api.<first segment of the group>.
_PACKAGE_ROOTS = {
    "apiextensions": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions",
    "apiregistration": "io.k8s.kube-aggregator.pkg.apis.apiregistration",
}
# The core kinds: every type reachable from them is in io.k8s.api.core.v1.
_CORE_ROOTS = (
    "V1Pod", "V1PodTemplate", "V1ReplicationController", "V1Service", "V1Endpoints",
    "V1Node", "V1Namespace", "V1PersistentVolume", "V1PersistentVolumeClaim", "V1ConfigMap",
    "V1Secret", "V1ServiceAccount", "V1LimitRange", "V1ResourceQuota", "CoreV1Event",
    "V1Binding", "V1ComponentStatus",
)  # fmt: skip
# Fields the client types `object` that hold an int or a string.
_INT_OR_STRING_FIELDS = frozenset(
    {"port", "targetPort", "maxSurge", "maxUnavailable", "minAvailable"}
)
# Fields (model without version prefix, JSON name) the client types `str` that hold quantities.
_QUANTITY_FIELDS = frozenset({
    ("ResourceRequirements", "limits"), ("ResourceRequirements", "requests"),
    ("VolumeResourceRequirements", "limits"), ("VolumeResourceRequirements", "requests"),
    ("NodeStatus", "capacity"), ("NodeStatus", "allocatable"),
    ("PersistentVolumeSpec", "capacity"), ("PersistentVolumeClaimStatus", "capacity"),
    ("PersistentVolumeClaimStatus", "allocatedResources"),
    ("ResourceQuotaSpec", "hard"), ("ResourceQuotaStatus", "hard"), ("ResourceQuotaStatus", "used"),
    ("LimitRangeItem", "default"), ("LimitRangeItem", "defaultRequest"), ("LimitRangeItem", "max"),
    ("LimitRangeItem", "min"), ("LimitRangeItem", "maxLimitRequestRatio"),
    ("EmptyDirVolumeSource", "sizeLimit"), ("ResourceFieldSelector", "divisor"),
    ("Overhead", "podFixed"), ("PodSpec", "overhead"), ("PodStatus", "allocatedResources"),
    ("ContainerStatus", "allocatedResources"), ("CSIStorageCapacity", "capacity"),
    ("CSIStorageCapacity", "maximumVolumeSize"), ("MetricTarget", "value"),
    ("MetricTarget", "averageValue"), ("MetricValueStatus", "value"),
    ("MetricValueStatus", "averageValue"),
})  # fmt: skip
_PRIMITIVES: dict[str, Schema] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number", "format": "double"},
    "bool": {"type": "boolean"},
    "bytes": {"type": "string", "format": "byte"},
    "date": {"type": "string", "format": "date"},
    "datetime": {"type": "string", "format": "date-time"},
    "object": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
}
_ANY_VALUE: Schema = {"x-kubernetes-preserve-unknown-fields": True}
_LIST = re.compile(r"(?:List|list)\[(.+)\]")
_MAP = re.compile(r"Dict\[str, (.+)\]|dict\(str, (.+)\)")
_CLASS_NAME = re.compile(r"([A-Z][a-z]+)?(V\d+(?:alpha\d+|beta\d+)?)([A-Z]\w*)")
_WORD = re.compile(r"[A-Za-z_]\w*")
_NOT_MODELS = frozenset({*_PRIMITIVES, "List", "list", "Dict", "dict"})

_SCALARS: dict[str, Schema] = {
    INT_OR_STRING: {
        "description": "An int32 or a string, such as a port number or a port name.",
        "format": "int-or-string",
        "oneOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
    },
    QUANTITY: {
        "description": "A fixed-point number with an optional suffix, such as 100m, 2Gi or 1.5.",
        "oneOf": [{"type": "string"}, {"type": "number"}],
        "x-kubernetes-int-or-string": True,
    },
    PATCH: {
        "description": "The body of a PATCH request, in the format its Content-Type names.",
        "type": "object",
    },
}


@functools.cache
def _models() -> ModuleType | None:
    """The client's model classes; None without the `kubernetes` package (then every kind
    gets a schema that allows any object)."""
    try:
        return importlib.import_module("kubernetes.client.models")
    except ImportError:
        return None


# -- names ------------------------------------------------------------------------------------


def _segment(group: str) -> str:
    """The package segment of a built-in group: `apps`, `rbac` (rbac.authorization.k8s.io)."""
    return group.split(".")[0] if group else "core"


def _package(segment: str, version: str) -> str:
    return f"{_PACKAGE_ROOTS.get(segment, f'io.k8s.api.{segment}')}.{version}"


def kind_name(group: str, version: str, kind: str) -> str:
    """The upstream schema name of a built-in kind: `io.k8s.api.apps.v1.Deployment`."""
    if kind in _META_TYPES:
        return f"{META}.{kind}"
    return f"{_package(_segment(group), version)}.{kind}"


def _model_class(group: str, version: str, kind: str) -> str | None:
    """The client's class for a kind: `V1Deployment`, or `EventsV1Event` where names clash."""
    prefix = _segment(group).capitalize() + version.capitalize()
    for name in (prefix + kind, version.capitalize() + kind):
        if hasattr(_models(), name):
            return name
    return None


def model_class(group: str, version: str, kind: str) -> type | None:
    """The client's model class of a built-in kind, or None (no package, or no such kind)."""
    name = _model_class(group, version, kind) if _models() is not None else None
    return getattr(_models(), name) if name else None


def model_named(name: str) -> type | None:
    """A model class by its client name (`V1PodSpec`), or None for a primitive type name."""
    models = _models()
    return getattr(models, name, None) if models is not None and name[:1].isupper() else None


def element_type(type_text: str) -> tuple[str, str]:
    """How a client type text nests: ("list", inner), ("map", inner) or ("one", itself)."""
    listed = _LIST.fullmatch(type_text)
    if listed:
        return "list", listed.group(1)
    mapped = _MAP.fullmatch(type_text)
    if mapped:
        return "map", mapped.group(1) or mapped.group(2)
    return "one", type_text


def _split_class(name: str) -> tuple[str, str, str]:
    """`CoreV1EventList` -> ("core", "v1", "EventList"); `V1PodSpec` -> ("", "v1", "PodSpec")."""
    match = _CLASS_NAME.fullmatch(name)
    if match is None:
        return "", "", name
    prefix, version, short = match.groups()
    return (prefix or "").lower(), version.lower(), short


def _schema_name(cls_name: str, home: str) -> str:
    """A model class's schema name; `home` is the package segment of the kind that led here."""
    prefix, version, short = _split_class(cls_name)
    if short in _META_TYPES and version == "v1":
        return f"{META}.{short}"
    if not prefix:
        prefix = "core" if cls_name in _core_classes() else home
    return f"{_package(prefix, version)}.{short}"


# -- walking the models -----------------------------------------------------------------------


def _referenced(cls_name: str) -> list[str]:
    types = getattr(_models(), cls_name).openapi_types.values()
    return [word for text in types for word in _WORD.findall(text) if word not in _NOT_MODELS]


def _reachable(roots: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name not in seen:
            seen[name] = None
            pending.extend(_referenced(name))
    return list(seen)


@functools.cache
def _core_classes() -> frozenset[str]:
    return frozenset(_reachable(name for name in _CORE_ROOTS if hasattr(_models(), name)))


@functools.cache
def kind_schemas(group: str, version: str, kind: str) -> dict[str, Schema]:
    """The schema of a built-in kind and of every type it refers to, by schema name.

    Empty when the client has no model for the kind.
    """
    cls_name = _model_class(group, version, kind)
    if cls_name is None:
        return {}
    home = _segment(group)
    schemas = {
        _schema_name(name, home): _model_schema(name, home) for name in _reachable([cls_name])
    }
    return {**schemas, **{name: _SCALARS[name] for name in (INT_OR_STRING, QUANTITY)}}


@functools.cache
def _model_schema(cls_name: str, home: str) -> Schema:
    cls = getattr(_models(), cls_name)
    fields = getattr(cls, "model_fields", {})
    short = _split_class(cls_name)[2]
    properties: Schema = {}
    required: list[str] = []
    for attr, type_text in cls.openapi_types.items():
        json_name = cls.attribute_map[attr]
        schema = _field_schema(short, json_name, type_text, home)
        field = fields.get(attr)
        if field is not None and field.description:
            schema = _described(schema, field.description)
        if field is not None and field.is_required():
            required.append(json_name)
        properties[json_name] = schema
    schema = {"description": _class_description(cls), "type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return (
        schema if schema["description"] else {k: v for k, v in schema.items() if k != "description"}
    )


def _class_description(cls: type) -> str:
    """The docstring of a generated pydantic model, without its boilerplate."""
    if not hasattr(cls, "model_fields") or not cls.__doc__:
        return ""
    return " ".join(cls.__doc__.split("Attributes:")[0].split())


def _described(schema: Schema, description: str) -> Schema:
    if "$ref" in schema:
        return {"allOf": [schema], "description": description}
    return {**schema, "description": description}


def _field_schema(model: str, field: str, type_text: str, home: str) -> Schema:
    if (model, field) in _QUANTITY_FIELDS:
        quantity = _ref(QUANTITY)
        return (
            {"type": "object", "additionalProperties": quantity}
            if _MAP.fullmatch(type_text)
            else quantity
        )
    if type_text == "object" and field in _INT_OR_STRING_FIELDS:
        return _ref(INT_OR_STRING)
    if type_text == "object" and model == "JSONSchemaProps":
        return dict(_ANY_VALUE)
    if type_text == "List[object]" and model == "JSONSchemaProps":  # `enum`: any values
        return {"type": "array", "items": dict(_ANY_VALUE)}
    return _type_schema(type_text, home)


def _type_schema(type_text: str, home: str) -> Schema:
    if type_text in _PRIMITIVES:
        return dict(_PRIMITIVES[type_text])
    if match := _LIST.fullmatch(type_text):
        return {"type": "array", "items": _type_schema(match.group(1), home)}
    if match := _MAP.fullmatch(type_text):
        value = match.group(1) or match.group(2)
        return {"type": "object", "additionalProperties": _type_schema(value, home)}
    return _ref(_schema_name(type_text, home))


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


# -- schemas every document has ---------------------------------------------------------------


@functools.cache
def common_schemas() -> dict[str, Schema]:
    """Status, DeleteOptions, Patch, ObjectMeta and ListMeta, with what they refer to."""
    schemas: dict[str, Schema] = dict(_SCALARS)
    for kind in ("Status", "DeleteOptions", "ObjectMeta", "ListMeta"):
        any_object = {kind_name("", "v1", kind): _PRIMITIVES["object"]}
        schemas.update(kind_schemas("", "v1", kind) or any_object)
    if STATUS in schemas:
        gvk = [{"group": "", "kind": "Status", "version": "v1"}]
        schemas[STATUS] = {**schemas[STATUS], "x-kubernetes-group-version-kind": gvk}
    return schemas


def type_meta(is_object: bool) -> dict[str, Schema]:
    """The apiVersion, kind and metadata properties of an object (or, if not, of a list)."""
    meta = OBJECT_META if is_object else LIST_META
    return {
        "apiVersion": {"type": "string", "description": "The versioned schema of this object."},
        "kind": {"type": "string", "description": "The REST resource this object represents."},
        "metadata": {"allOf": [_ref(meta)], "description": "Standard object metadata."},
    }
