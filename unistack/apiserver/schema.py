"""Custom resources against their CRD's openAPIV3Schema, as apiextensions-apiserver checks them.

On every write of a custom resource, admission (`unistack.apiserver.admission`) runs `prune`
(drop fields the schema does not know), `apply_defaults` (drop non-nullable nulls, fill in
`default`s) and then `validate`. `check_structural`, from `unistack.apiserver.structural`,
rejects with a 422 a CRD whose schema is not structural. Messages are kube-openapi's, as
apiextensions-apiserver turns them into field errors
(`spec.replicas in body must be of type integer: "string"`). apiVersion, kind and metadata at
the root are left to `unistack.apiserver.validation`, which also checks the metadata of
embedded resources. Pure functions of dicts; the input object is never changed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import orjson

from unistack.apiserver import errors, formats, validation
from unistack.apiserver.errors import FieldError
from unistack.apiserver.structural import check_structural as check_structural

Obj = dict[str, Any]
Schema = Mapping[str, Any]
Errors = list[FieldError]

_META_FIELDS = ("apiVersion", "kind", "metadata")
_INT_OR_STRING = "x-kubernetes-int-or-string"
_PRESERVE = "x-kubernetes-preserve-unknown-fields"
_EMBEDDED = "x-kubernetes-embedded-resource"
_LIST_TYPE = "x-kubernetes-list-type"
_LIST_MAP_KEYS = "x-kubernetes-list-map-keys"


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _quote(text: str) -> str:
    return orjson.dumps(text).decode()


def _go_number(value: float) -> str:
    """A number as Go's %v prints it: integral floats without a fraction."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _body_schema(schema: Schema) -> Schema:
    """The root schema without apiVersion, kind and metadata, which are checked elsewhere."""
    properties = schema.get("properties") or {}
    kept = {k: v for k, v in properties.items() if k not in _META_FIELDS}
    required = [k for k in schema.get("required") or [] if k not in _META_FIELDS]
    return {**schema, "properties": kept, "required": required}


# ---------------------------------------------------------------------------------------------
# Validation


def validate(schema: Schema, obj: Obj) -> Errors:
    """Every way `obj` breaks `schema`, in kube's wording."""
    errs: Errors = []
    body = {k: v for k, v in obj.items() if k not in _META_FIELDS}
    _check(_body_schema(schema), body, "", errs)
    _check_metadata_name(schema, obj, errs)
    return errs


def _check_metadata_name(schema: Schema, obj: Obj, errs: Errors) -> None:
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or "name" not in meta:
        return
    meta_schema = (schema.get("properties") or {}).get("metadata") or {}
    name_schema = (meta_schema.get("properties") or {}).get("name") or {}
    _check({"type": "string", **name_schema}, meta["name"], "metadata.name", errs)


def _check(s: Schema, value: Any, path: str, errs: Errors) -> None:
    if value is None:
        _check_null(s, path, errs)
        return
    if not _check_type(s, value, path, errs):
        return
    _check_junctors(s, value, path, errs)
    if isinstance(value, str):
        _check_string(s, value, path, errs)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(s, value, path, errs)
    elif isinstance(value, list):
        _check_array(s, value, path, errs)
    _check_enum(s, value, path, errs)
    if isinstance(value, dict):
        _check_object(s, value, path, errs)


def _expected_type(s: Schema) -> str:
    return "integer,string" if s.get(_INT_OR_STRING) else str(s.get("type") or "")


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}
_JSON_TYPES.update({list: "array", dict: "object"})


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _type_error(path: str, expected: str, actual: str) -> FieldError:
    detail = f"{path} in body must be of type {expected}: {_quote(actual)}"
    return FieldError("FieldValueTypeInvalid", path, detail, actual)


def _check_null(s: Schema, path: str, errs: Errors) -> None:
    expected = _expected_type(s)
    if expected and not s.get("nullable"):
        errs.append(_type_error(path, expected, "null"))


def _check_type(s: Schema, value: Any, path: str, errs: Errors) -> bool:
    expected = _expected_type(s)
    if not expected:
        return True
    allowed = expected.split(",")
    actual = _json_type(value)
    if actual in allowed or (actual == "integer" and "number" in allowed):
        return True
    if actual == "number" and "integer" in allowed and float(value).is_integer():
        return True
    errs.append(_type_error(path, expected, actual))
    return False


def _errors_of(s: Schema, value: Any, path: str) -> Errors:
    found: Errors = []
    _check(s, value, path, found)
    return found


def _composite(path: str, message: str) -> FieldError:
    return errors.invalid_field(path, "", message)


def _check_junctors(s: Schema, value: Any, path: str, errs: Errors) -> None:
    if s.get("anyOf"):
        _check_any_of(s["anyOf"], value, path, errs)
    if s.get("oneOf"):
        _check_one_of(s["oneOf"], value, path, errs)
    if s.get("allOf"):
        _check_all_of(s["allOf"], value, path, errs)
    if isinstance(s.get("not"), Mapping) and not _errors_of(s["not"], value, path):
        errs.append(_composite(path, f"{_quote(path)} must not validate the schema (not)"))


def _check_any_of(options: list[Schema], value: Any, path: str, errs: Errors) -> None:
    results = [_errors_of(option, value, path) for option in options]
    if all(results):
        errs.append(_composite(path, f"{_quote(path)} must validate at least one schema (anyOf)"))
        errs.extend(_fewest(results))


def _fewest(results: list[Errors]) -> Errors:
    return min(results, key=lambda found: len(found))


def _check_one_of(options: list[Schema], value: Any, path: str, errs: Errors) -> None:
    results = [_errors_of(option, value, path) for option in options]
    valid = sum(1 for result in results if not result)
    if valid == 1:
        return
    found = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
    message = f"{_quote(path)} must validate one and only one schema (oneOf). {found}"
    errs.append(_composite(path, message))
    if valid == 0:
        errs.extend(_fewest(results))


def _check_all_of(options: list[Schema], value: Any, path: str, errs: Errors) -> None:
    results = [_errors_of(option, value, path) for option in options]
    failed = [result for result in results if result]
    for result in failed:
        errs.extend(result)
    if failed:
        none = ". None validated" if len(failed) == len(results) else ""
        errs.append(_composite(path, f"{_quote(path)} must validate all the schemas (allOf){none}"))


def _string_error(s: Schema, value: str, path: str) -> FieldError | None:
    longest, shortest, pattern = s.get("maxLength"), s.get("minLength"), s.get("pattern")
    if longest is not None and len(value) > longest:
        return FieldError("FieldValueTooLong", path, f"may not be more than {longest} bytes")
    if shortest is not None and len(value) < shortest:
        detail = f"{path} in body should be at least {shortest} chars long"
        return errors.invalid_field(path, value, detail)
    if pattern and not _pattern_matches(pattern, value):
        return errors.invalid_field(path, value, f"{path} in body should match '{pattern}'")
    return None


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _pattern_matches(pattern: str, value: str) -> bool:
    compiled = _compiled(pattern)
    return compiled is None or compiled.search(value) is not None


def _check_string(s: Schema, value: str, path: str, errs: Errors) -> None:
    error = _string_error(s, value, path)
    if error is not None:
        errs.append(error)
    if s.get("format") and not formats.conforms(str(s["format"]), value):
        detail = f"{path} in body must be of type {s['format']}: {_quote(value)}"
        errs.append(FieldError("FieldValueTypeInvalid", path, detail, value))


_RANGES = {
    ("integer", "int32"): (-(2**31), 2**31 - 1),
    ("integer", "int64"): (-(2**63), 2**63 - 1),
    ("number", "float"): (-3.4028234663852886e38, 3.4028234663852886e38),
}


def _range_error(s: Schema, value: float, path: str) -> FieldError | None:
    type_name, format_name = s.get("type"), s.get("format")
    bounds = _RANGES.get((str(type_name), str(format_name)))
    if bounds is None or bounds[0] <= value <= bounds[1]:
        return None
    detail = f"Checked value must be of type {type_name} with format {format_name} in {path}"
    return errors.invalid_field(path, value, detail)


def _multiple_of_error(s: Schema, value: float, path: str) -> FieldError | None:
    factor = s.get("multipleOf")
    if factor is None:
        return None
    if factor <= 0:
        detail = f"factor MultipleOf declared for {path} must be positive: {_go_number(factor)}"
        return errors.invalid_field(path, factor, detail)
    if isinstance(value, int) and float(factor).is_integer():
        whole = value % int(factor) == 0
    else:
        whole = float(value / factor if factor >= 1 else (1 / factor) * value).is_integer()
    if whole:
        return None
    detail = f"{path} in body should be a multiple of {_go_number(factor)}"
    return errors.invalid_field(path, value, detail)


def _bound_error(s: Schema, value: float, path: str, upper: bool) -> FieldError | None:
    bound = s.get("maximum" if upper else "minimum")
    if bound is None:
        return None
    exclusive = s.get("exclusiveMaximum" if upper else "exclusiveMinimum") is True
    beyond = value > bound if upper else value < bound
    if not beyond and not (exclusive and value == bound):
        return None
    word = "less" if upper else "greater"
    relation = f"{word} than" if exclusive else f"{word} than or equal to"
    detail = f"{path} in body should be {relation} {_go_number(bound)}"
    return errors.invalid_field(path, value, detail)


def _check_number(s: Schema, value: float, path: str, errs: Errors) -> None:
    found = (
        _range_error(s, value, path),
        _multiple_of_error(s, value, path),
        _bound_error(s, value, path, upper=False),
        _bound_error(s, value, path, upper=True),
    )
    errs.extend(error for error in found if error is not None)


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _check_array(s: Schema, value: list[Any], path: str, errs: Errors) -> None:
    items = s.get("items")
    if isinstance(items, Mapping):
        for index, item in enumerate(value):
            _check(items, item, f"{path}[{index}]", errs)
    fewest, most = s.get("minItems"), s.get("maxItems")
    if fewest is not None and len(value) < fewest:
        detail = f"{path} in body should have at least {fewest} items"
        errs.append(errors.invalid_field(path, len(value), detail))
    if most is not None and len(value) > most:
        errs.append(_too_many(path, len(value), most))
    if s.get("uniqueItems") and len({_canonical(v) for v in value}) < len(value):
        errs.append(errors.invalid_field(path, "", f"{path} in body shouldn't contain duplicates"))
    _check_list_type(s, value, path, errs)


def _too_many(path: str, actual: int, most: int) -> FieldError:
    noun = "item" if most == 1 else "items"
    return FieldError("FieldValueTooMany", path, f"must have at most {most} {noun}", actual)


def _list_keys(s: Schema, value: list[Any]) -> list[tuple[bytes, Any]]:
    if s.get(_LIST_TYPE) == "set":
        return [(_canonical(item), item) for item in value]
    names = s.get(_LIST_MAP_KEYS) or []
    keyed = []
    for item in value:
        key = {n: item.get(n) for n in names if n in item} if isinstance(item, dict) else item
        keyed.append((_canonical(key), key))
    return keyed


def _check_list_type(s: Schema, value: list[Any], path: str, errs: Errors) -> None:
    if s.get(_LIST_TYPE) not in ("set", "map"):
        return
    seen: set[bytes] = set()
    for index, (key, shown) in enumerate(_list_keys(s, value)):
        if key in seen:
            errs.append(errors.duplicate_field(f"{path}[{index}]", shown))
        seen.add(key)


def _json_equal(left: Any, right: Any) -> bool:
    return isinstance(left, bool) == isinstance(right, bool) and left == right


def _check_enum(s: Schema, value: Any, path: str, errs: Errors) -> None:
    allowed = s.get("enum")
    if not allowed or any(_json_equal(value, option) for option in allowed):
        return
    shown = [o if isinstance(o, str) else orjson.dumps(o).decode() for o in allowed]
    errs.append(errors.unsupported_field(path, value, shown))


def _check_object(s: Schema, value: dict[str, Any], path: str, errs: Errors) -> None:
    _check_property_counts(s, value, path, errs)
    properties = s.get("properties") or {}
    extra = s.get("additionalProperties")
    for key, item in value.items():
        if key in properties:
            _check(properties[key], item, _child(path, key), errs)
        elif isinstance(extra, Mapping):
            _check(extra, item, _child(path, key), errs)
        elif extra is False:
            detail = f"{path}.{key} in body is a forbidden property"
            errs.append(errors.invalid_field(path, key, detail))
    for key in s.get("required") or []:
        if key not in value:
            errs.append(errors.required_field(_child(path, key)))
    if s.get(_EMBEDDED):
        errs.extend(_embedded_resource_errors(value, path))


def _check_property_counts(s: Schema, value: dict[str, Any], path: str, errs: Errors) -> None:
    fewest, most = s.get("minProperties"), s.get("maxProperties")
    if fewest is not None and len(value) < fewest:
        detail = f"{path} in body should have at least {fewest} properties"
        errs.append(errors.invalid_field(path, len(value), detail))
    if most is not None and len(value) > most:
        errs.append(_too_many(path, len(value), most))


def _type_meta_errors(value: dict[str, Any], key: str, path: str) -> Errors:
    field, given = _child(path, key), value[key]
    if not isinstance(given, str):
        return [errors.invalid_field(field, given, "must be a string")]
    if not given:
        return [errors.invalid_field(field, given, "must not be empty")]
    if key == "apiVersion" and given.count("/") > 1:
        detail = f"unexpected GroupVersion string: {given}"
        return [errors.invalid_field(field, given, detail)]
    problems = validation.dns1035_label_errors(given.lower()) if key == "kind" else []
    if problems:
        detail = "may have mixed case, but should otherwise match: " + ",".join(problems)
        return [errors.invalid_field(field, given, detail)]
    return []


def _embedded_resource_errors(value: dict[str, Any], path: str) -> Errors:
    errs: Errors = []
    for key in ("apiVersion", "kind"):
        if key in value:
            errs.extend(_type_meta_errors(value, key, path))
        else:
            errs.append(errors.required_field(_child(path, key)))
    meta = value.get("metadata")
    if isinstance(meta, dict):
        named = {**meta, "name": meta.get("name") or "fakename"}
        errs.extend(
            validation.validate_object_meta(
                {"metadata": named},
                namespaced=bool(meta.get("namespace")),
                name_validator="path",
                path=_child(path, "metadata"),
            )
        )
    return errs


# ---------------------------------------------------------------------------------------------
# Defaulting and pruning


def apply_defaults(schema: Schema, obj: Obj) -> Obj:
    """A copy of `obj` with schema `default`s filled in where fields are missing.

    As apiextensions-apiserver does first, a null in a non-nullable field is replaced by its
    default, or dropped when it has none.
    """
    out: Obj = _copy(obj)
    _default(_body_schema(schema), out)
    return out


def _default(s: Schema, value: Any) -> None:
    if isinstance(value, dict):
        _default_object(s, value)
    elif isinstance(value, list) and isinstance(s.get("items"), Mapping):
        for index in range(len(value)):
            _default_at(s["items"], value, index)


def _default_object(s: Schema, value: dict[str, Any]) -> None:
    properties = s.get("properties") or {}
    for key, prop in properties.items():
        if key not in value and "default" in prop:
            value[key] = _copy(prop["default"])
    extra = s.get("additionalProperties")
    for key in list(value):
        sub = properties.get(key, extra if isinstance(extra, Mapping) else None)
        if sub is not None:
            _default_at(sub, value, key)


def _default_at(s: Schema, container: Any, key: Any) -> None:
    if container[key] is None and not s.get("nullable"):
        if "default" in s:
            container[key] = _copy(s["default"])
        elif isinstance(container, dict):
            del container[key]
            return
    _default(s, container[key])


def prune(schema: Schema, obj: Obj) -> tuple[Obj, list[str]]:
    """A copy of `obj` without fields `schema` does not specify, and the paths removed.

    Fields under `x-kubernetes-preserve-unknown-fields` stay, as do apiVersion, kind and
    metadata at the root and in embedded resources.
    """
    out: Obj = _copy(obj)
    removed: list[str] = []
    _prune_object(_body_schema(schema), out, "", removed, _META_FIELDS)
    return out, removed


def _prune(s: Schema, value: Any, path: str, removed: list[str]) -> None:
    if isinstance(value, dict):
        kept = _META_FIELDS if s.get(_EMBEDDED) else ()
        _prune_object(s, value, path, removed, kept)
    elif isinstance(value, list) and isinstance(s.get("items"), Mapping):
        for index, item in enumerate(value):
            _prune(s["items"], item, f"{path}[{index}]", removed)


def _prune_object(
    s: Schema, value: dict[str, Any], path: str, removed: list[str], kept: tuple[str, ...]
) -> None:
    properties = s.get("properties") or {}
    extra = s.get("additionalProperties")
    preserve = s.get(_PRESERVE) is True or extra is True or bool(s.get(_INT_OR_STRING))
    for key in list(value):
        child = _child(path, key)
        if key in kept:
            continue
        if key in properties:
            _prune(properties[key], value[key], child, removed)
        elif isinstance(extra, Mapping):
            _prune(extra, value[key], child, removed)
        elif not preserve:
            del value[key]
            removed.append(child)
