"""Whether a CRD's openAPIV3Schema is structural, as apiextensions-apiserver requires.

`check_structural` is called when a CustomResourceDefinition is created or updated
(`unistack.apiserver.crds`); its errors become the causes of a 422 Invalid, with field paths
under `spec.validation.openAPIV3Schema` (or the version's schema path the caller gives).
Objects are validated against accepted schemas by `unistack.apiserver.schema`. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from unistack.apiserver import errors
from unistack.apiserver.errors import FieldError

Schema = Mapping[str, Any]
Errors = list[FieldError]

_INT_OR_STRING = "x-kubernetes-int-or-string"
_PRESERVE = "x-kubernetes-preserve-unknown-fields"
_EMBEDDED = "x-kubernetes-embedded-resource"
_LIST_TYPE = "x-kubernetes-list-type"
_LIST_MAP_KEYS = "x-kubernetes-list-map-keys"
_TYPES = ("array", "boolean", "integer", "number", "object", "string")
_JUNCTORS = ("allOf", "anyOf", "oneOf")

_UNSUPPORTED = ("$ref", "id", "additionalItems", "patternProperties", "definitions", "dependencies")
_MISSING_TYPE = {
    "root": "must not be empty at the root",
    "item": "must not be empty for specified array items",
    "field": "must not be empty for specified object fields",
}
_NESTED_FORBIDDEN = (
    ("type", "must be empty to be structural"),
    ("additionalProperties", "must be undefined to be structural"),
    ("default", "must be undefined to be structural"),
    ("title", "must be empty to be structural"),
    ("description", "must be empty to be structural"),
    ("nullable", "must be false to be structural"),
    (_PRESERVE, "must be false to be structural"),
    (_EMBEDDED, "must be false to be structural"),
    (_INT_OR_STRING, "must be false to be structural"),
    (_LIST_MAP_KEYS, "must be empty to be structural"),
    (_LIST_TYPE, "must be undefined to be structural"),
    ("x-kubernetes-map-type", "must be undefined to be structural"),
    ("x-kubernetes-validations", "must be empty to be structural"),
)
_INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]


def check_structural(schema: Any, path: str = "spec.validation.openAPIV3Schema") -> Errors:
    """Why a CRD's schema is not structural (empty when it is), sorted as kube sorts them."""
    if not isinstance(schema, Mapping):
        return [errors.required_field(path)]
    errs: Errors = []
    _check_structural_node(schema, path, "root", errs)
    _check_root(schema, path, errs)
    return sorted(errs, key=lambda e: f"{e.field}: {e.message()}")


def _check_structural_node(s: Schema, path: str, level: str, errs: Errors) -> None:
    for keyword in _UNSUPPORTED:
        if keyword in s:
            errs.append(errors.forbidden_field(f"{path}.{keyword}", f"{keyword} is not supported"))
    _check_node_type(s, path, level, errs)
    _check_embedding(s, path, errs)
    _check_list_type_schema(s, path, errs)
    _check_pattern(s, path, errs)
    _check_structural_children(s, path, errs)
    _check_value_validations(s, path, errs)


def _check_node_type(s: Schema, path: str, level: str, errs: Errors) -> None:
    type_name = s.get("type")
    if type_name == "null":
        detail = "type cannot be set to null, use nullable as an alternative"
        errs.append(errors.forbidden_field(f"{path}.type", detail))
    elif type_name and type_name not in _TYPES:
        errs.append(errors.unsupported_field(f"{path}.type", type_name, list(_TYPES)))
    if (
        not type_name
        and not s.get(_INT_OR_STRING)
        and not s.get(_PRESERVE)
        and not s.get(_EMBEDDED)
    ):
        errs.append(errors.required_field(f"{path}.type", _MISSING_TYPE[level]))
    if s.get("uniqueItems"):
        detail = "uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
        errs.append(errors.forbidden_field(f"{path}.uniqueItems", detail))


def _required_or_invalid(field: str, value: Any, detail: str) -> FieldError:
    return (
        errors.invalid_field(field, value, detail)
        if value
        else errors.required_field(field, detail)
    )


def _check_embedding(s: Schema, path: str, errs: Errors) -> None:
    if s.get(_INT_OR_STRING):
        for key in (_PRESERVE, _EMBEDDED):
            if s.get(key):
                detail = "must be false if x-kubernetes-int-or-string is true"
                errs.append(errors.invalid_field(f"{path}.{key}", True, detail))
    if not s.get(_EMBEDDED):
        return
    if s.get("type") != "object":
        detail = "must be object if x-kubernetes-embedded-resource is true"
        errs.append(_required_or_invalid(f"{path}.type", s.get("type"), detail))
    if "additionalProperties" in s:
        detail = "must not be used if x-kubernetes-embedded-resource is set"
        errs.append(errors.forbidden_field(f"{path}.additionalProperties", detail))
    if not s.get(_PRESERVE) and not s.get("properties"):
        detail = (
            "must not be empty if x-kubernetes-embedded-resource is true without "
            "x-kubernetes-preserve-unknown-fields"
        )
        errs.append(errors.required_field(f"{path}.properties", detail))


def _check_list_type_schema(s: Schema, path: str, errs: Errors) -> None:
    list_type, keys = s.get(_LIST_TYPE), s.get(_LIST_MAP_KEYS)
    if list_type is not None and s.get("type") != "array":
        detail = "must be array if x-kubernetes-list-type is specified"
        errs.append(_required_or_invalid(f"{path}.type", s.get("type"), detail))
    if list_type is not None and list_type not in ("atomic", "set", "map"):
        supported = ["atomic", "set", "map"]
        errs.append(errors.unsupported_field(f"{path}.{_LIST_TYPE}", list_type, supported))
    if keys and list_type != "map":
        detail = "must be map if x-kubernetes-list-map-keys is non-empty"
        errs.append(_required_or_invalid(f"{path}.{_LIST_TYPE}", list_type, detail))
    if list_type == "map":
        errs.extend(_list_map_errors(s, path))


def _list_map_errors(s: Schema, path: str) -> Errors:
    keys, items = s.get(_LIST_MAP_KEYS) or [], s.get("items")
    if not keys:
        detail = "must not be empty if x-kubernetes-list-type is map"
        return [errors.required_field(f"{path}.{_LIST_MAP_KEYS}", detail)]
    if not isinstance(items, Mapping):
        detail = "must have a schema if x-kubernetes-list-type is map"
        return [errors.required_field(f"{path}.items", detail)]
    if items.get("type") != "object":
        detail = "must be object if parent array's x-kubernetes-list-type is map"
        return [errors.invalid_field(f"{path}.items.type", items.get("type"), detail)]
    properties = items.get("properties") or {}
    if any(key not in properties for key in keys):
        detail = "entries must all be names of item properties"
        return [errors.invalid_field(f"{path}.{_LIST_MAP_KEYS}", keys, detail)]
    if len(set(keys)) < len(keys):
        detail = "must not contain duplicate entries"
        return [errors.invalid_field(f"{path}.{_LIST_MAP_KEYS}", keys, detail)]
    detail = "must be a scalar type if parent array's x-kubernetes-list-type is map"
    return [
        errors.invalid_field(
            f"{path}.items.properties[{k}].type", properties[k].get("type"), detail
        )
        for k in keys
        if properties[k].get("type") in ("object", "array")
    ]


def _check_pattern(s: Schema, path: str, errs: Errors) -> None:
    pattern = s.get("pattern")
    if not pattern:
        return
    try:
        re.compile(pattern)
    except re.error as exc:
        detail = f"must be a valid regular expression, but isn't: {exc}"
        errs.append(errors.invalid_field(f"{path}.pattern", pattern, detail))


def _check_structural_children(s: Schema, path: str, errs: Errors) -> None:
    for key, sub in (s.get("properties") or {}).items():
        _check_structural_node(sub, f"{path}.properties[{key}]", "field", errs)
    items, extra = s.get("items"), s.get("additionalProperties")
    if s.get("type") == "array" and items is None:
        errs.append(errors.required_field(f"{path}.items", "must be specified"))
    if isinstance(items, Mapping):
        _check_structural_node(items, f"{path}.items", "item", errs)
    if isinstance(extra, Mapping):
        _check_structural_node(extra, f"{path}.additionalProperties", "field", errs)
    if extra is not None and extra is not True and s.get("properties"):
        detail = "additionalProperties and properties are mutual exclusive"
        errs.append(errors.forbidden_field(f"{path}.additionalProperties", detail))


def _nested_schemas(s: Schema, path: str) -> list[tuple[Schema, str]]:
    """The schemas under allOf/anyOf/oneOf/not, except kube's int-or-string idioms."""
    skip_any_of = s.get("anyOf") == _INT_OR_STRING_ANY_OF
    nested = [(s["not"], f"{path}.not")] if isinstance(s.get("not"), Mapping) else []
    for junctor in _JUNCTORS:
        if junctor == "anyOf" and skip_any_of:
            continue
        for index, sub in enumerate(s.get(junctor) or []):
            nested.append((sub, f"{path}.{junctor}[{index}]"))
    return nested


def _check_value_validations(s: Schema, path: str, errs: Errors) -> None:
    for nested, nested_path in _nested_schemas(s, path):
        _check_nested(nested, nested_path, errs)
        _check_completeness(nested, nested_path, s, path, errs)


def _check_nested(v: Schema, path: str, errs: Errors) -> None:
    for key, detail in _NESTED_FORBIDDEN:
        if (key == "default" and key in v) or (key != "default" and v.get(key)):
            errs.append(errors.forbidden_field(f"{path}.{key}", detail))
    properties = v.get("properties") or {}
    if "metadata" in properties:
        detail = "must not be specified in a nested context"
        errs.append(errors.forbidden_field(f"{path}.properties[metadata]", detail))
    _check_pattern(v, path, errs)
    for key, sub in properties.items():
        _check_nested(sub, f"{path}.properties[{key}]", errs)
    if isinstance(v.get("items"), Mapping):
        _check_nested(v["items"], f"{path}.items", errs)
    for nested, nested_path in _nested_schemas(v, path):
        _check_nested(nested, nested_path, errs)


def _check_completeness(v: Schema, v_path: str, s: Schema, s_path: str, errs: Errors) -> None:
    """Every field a value validation names must also be specified structurally."""
    s_properties = s.get("properties") or {}
    for key, sub in (v.get("properties") or {}).items():
        target, target_path = s_properties.get(key), f"{s_path}.properties[{key}]"
        if target is None:
            detail = f"because it is defined in {v_path}.properties[{key}]"
            errs.append(errors.required_field(target_path, detail))
        else:
            _check_completeness(sub, f"{v_path}.properties[{key}]", target, target_path, errs)
    if isinstance(v.get("items"), Mapping):
        if isinstance(s.get("items"), Mapping):
            _check_completeness(v["items"], f"{v_path}.items", s["items"], f"{s_path}.items", errs)
        else:
            detail = f"because it is defined in {v_path}.items"
            errs.append(errors.required_field(f"{s_path}.items", detail))
    for nested, nested_path in _nested_schemas(v, v_path):
        _check_completeness(nested, nested_path, s, s_path, errs)


def _check_root(s: Schema, path: str, errs: Errors) -> None:
    if "additionalProperties" in s:
        errs.append(
            errors.forbidden_field(f"{path}.additionalProperties", "must not be used at the root")
        )
    if s.get("type") and s.get("type") != "object":
        errs.append(errors.invalid_field(f"{path}.type", s["type"], "must be object at the root"))
    properties = s.get("properties") or {}
    for key in ("kind", "apiVersion"):
        if key in properties and properties[key].get("type") != "string":
            field = f"{path}.properties[{key}].type"
            errs.append(errors.invalid_field(field, properties[key].get("type"), "must be string"))
    if isinstance(properties.get("metadata"), Mapping):
        errs.extend(_root_metadata_errors(properties["metadata"], f"{path}.properties[metadata]"))


def _root_metadata_errors(meta: Schema, path: str) -> Errors:
    errs: Errors = []
    if meta.get("type") != "object":
        errs.append(errors.invalid_field(f"{path}.type", meta.get("type"), "must be object"))
    names = set(meta.get("properties") or {})
    if set(meta) - {"type", "properties", "default"} or names - {"name", "generateName"}:
        detail = (
            "must not specify anything other than name and generateName, "
            "but metadata is implicitly specified"
        )
        errs.append(errors.forbidden_field(path, detail))
    return errs
