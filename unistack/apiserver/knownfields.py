"""Unknown fields in built-in objects, found against the `kubernetes` client's model classes.

kube-apiserver decodes a built-in object into its Go type, so a field the type lacks (a typo
such as `spec.replicass`) never reaches storage: with `fieldValidation=Ignore` it is dropped,
with `Warn` (the server default) it is dropped with a warning, and with `Strict` (kubectl's
default) the request is a 400 "strict decoding error". The walk follows each field's declared
type from `builtin_schemas`; `object`-typed fields (int-or-string, raw extensions, FieldsV1)
are opaque, as they are upstream.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from unistack.apiserver import builtin_schemas
from unistack.apiserver.resources import ResourceType

Obj = dict[str, Any]


def unknown_fields(rt: ResourceType, obj: Obj) -> list[str]:
    """Dotted paths of the fields in `obj` its kind does not have ([] when not checkable)."""
    model = builtin_schemas.model_class(rt.group, rt.version, rt.kind)
    if model is None or rt.custom:
        return []
    return list(_walk_model(model, obj, ""))


def drop(obj: Obj, paths: list[str]) -> None:
    """Remove the fields `unknown_fields` reported, in place."""
    for path in paths:
        parent, key = _locate(obj, path)
        if isinstance(parent, dict):
            parent.pop(key, None)


# JSON field -> (how it nests: "list", "map" or "one"; the model of its values, or None)
Plan = dict[str, tuple[str, type | None]]
_PLANS: dict[type, Plan] = {}


def _plan(model: type) -> Plan:
    """What each JSON field of a model holds, worked out once per model."""
    plan = _PLANS.get(model)
    if plan is None:
        types: dict[str, str] = model.openapi_types  # type: ignore[attr-defined]
        mapping: dict[str, str] = model.attribute_map  # type: ignore[attr-defined]
        plan = {}
        for attribute, json_name in mapping.items():
            shape, inner = builtin_schemas.element_type(types[attribute])
            if shape != "one" and builtin_schemas.element_type(inner)[0] != "one":
                plan[json_name] = (shape, None)  # nested containers: not walked further
            else:
                plan[json_name] = (shape, builtin_schemas.model_named(inner))
        _PLANS[model] = plan
    return plan


def _walk_model(model: type, value: Any, path: str) -> Iterator[str]:
    if not isinstance(value, dict):
        return
    plan = _plan(model)
    for key, child in value.items():
        child_path = f"{path}.{key}" if path else key
        entry = plan.get(key)
        if entry is None:
            yield child_path
            continue
        shape, child_model = entry
        if child_model is None:
            continue
        if shape == "one":
            yield from _walk_model(child_model, child, child_path)
        elif shape == "list" and isinstance(child, list):
            for index, item in enumerate(child):
                yield from _walk_model(child_model, item, f"{child_path}[{index}]")
        elif shape == "map" and isinstance(child, dict):
            for name, item in child.items():
                yield from _walk_model(child_model, item, f"{child_path}.{name}")


def _locate(obj: Obj, path: str) -> tuple[Any, str]:
    node: Any = obj
    parts = path.replace("[", ".[").split(".")
    for part in parts[:-1]:
        if part.startswith("["):
            node = node[int(part[1:-1])] if isinstance(node, list) else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
    return node, parts[-1]
