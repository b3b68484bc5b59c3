"""Generic object-metadata validation, worded as kube-apiserver words it.

Every kind's validator (declared in `unistack.apiserver.kinds`) calls `validate_object_meta` on
create and `validate_meta_update` on update, and reuses the name, label and selector helpers
below for its own fields. `unistack.apiserver.schema` uses them for the metadata of resources
embedded in custom resources. Pure functions: dicts in, `errors.FieldError`s out.

The `*_errors` helpers return kube's messages (empty when valid), like apimachinery's
`IsDNS1123Label`; the `is_*` helpers answer yes or no.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from unistack.apiserver import errors
from unistack.apiserver.errors import FieldError

Obj = dict[str, Any]
# (name, is a generateName prefix) -> messages
NameValidator = Callable[[str, bool], list[str]]

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = "(" + _QUALIFIED_NAME_FMT + ")?"

_DNS1123_LABEL_RE = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL_RE = re.compile(_DNS1035_LABEL_FMT)
_QUALIFIED_NAME_RE = re.compile(_QUALIFIED_NAME_FMT)
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)

_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character"
)
_DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
    "start with an alphabetic character, and end with an alphanumeric character"
)
_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character"
)

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
IMMUTABLE = "field is immutable"
_BANNED_OWNERS = {("", "v1", "Event")}
_ORPHAN, _FOREGROUND = "orphan", "foregroundDeletion"


def regex_error(message: str, regex: str, *examples: str) -> str:
    """kube's `RegexError`: the message, examples, and the regex used."""
    if not examples:
        return f"{message} (regex used for validation is '{regex}')"
    shown = " or ".join(f"'{e}'" for e in examples)
    return f"{message} (e.g. {shown}, regex used for validation is '{regex}')"


def _max_len_error(length: int) -> str:
    return f"must be no more than {length} bytes"


def _too_long(value: str, limit: int) -> bool:
    return len(value.encode()) > limit


def dns1123_label_errors(value: str) -> list[str]:
    errs = [_max_len_error(63)] if _too_long(value, 63) else []
    if not _DNS1123_LABEL_RE.fullmatch(value):
        if _DNS1123_SUBDOMAIN_RE.fullmatch(value):
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def dns1123_subdomain_errors(value: str) -> list[str]:
    errs = [_max_len_error(253)] if _too_long(value, 253) else []
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errs.append(regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def dns1035_label_errors(value: str) -> list[str]:
    errs = [_max_len_error(63)] if _too_long(value, 63) else []
    if not _DNS1035_LABEL_RE.fullmatch(value):
        errs.append(regex_error(_DNS1035_LABEL_MSG, _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def path_segment_errors(value: str, prefix: bool = False) -> list[str]:
    """Names that must be safe as one URL path segment (kube's `ValidatePathSegmentName`)."""
    if not prefix and value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{bad}'" for bad in ("/", "%") if bad in value]


def qualified_name_errors(value: str) -> list[str]:
    """A label key or other qualified name: `[prefix/]name`, the prefix a DNS subdomain."""
    parts = value.split("/")
    if len(parts) > 2:
        example = regex_error(
            _QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc"
        )
        return [
            f"a valid label key {example} with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"
        ]
    errs: list[str] = []
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in dns1123_subdomain_errors(prefix))
    name = parts[-1]
    if not name:
        errs.append("name part must be non-empty")
    elif _too_long(name, 63):
        errs.append("name part " + _max_len_error(63))
    if not _QUALIFIED_NAME_RE.fullmatch(name):
        msg = regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        errs.append("name part " + msg)
    return errs


def label_value_errors(value: str) -> list[str]:
    errs = [_max_len_error(63)] if _too_long(value, 63) else []
    if not _LABEL_VALUE_RE.fullmatch(value):
        errs.append(regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_dns1123_label(value: str) -> bool:
    return not dns1123_label_errors(value)


def is_dns1123_subdomain(value: str) -> bool:
    return not dns1123_subdomain_errors(value)


def is_dns1035_label(value: str) -> bool:
    return not dns1035_label_errors(value)


def is_qualified_name(value: str) -> bool:
    return not qualified_name_errors(value)


def is_label_value(value: str) -> bool:
    return not label_value_errors(value)


def _mask_trailing_dash(name: str) -> str:
    # kube's maskTrailingDash, quirk included: a generateName may end in '-'.
    if len(name) > 1 and name.endswith("-"):
        return name[:-2] + "a"
    return name


def _prefixable(check: Callable[[str], list[str]]) -> NameValidator:
    def validate_name(name: str, prefix: bool) -> list[str]:
        return check(_mask_trailing_dash(name) if prefix else name)

    return validate_name


NAME_VALIDATORS: dict[str, NameValidator] = {
    "dns1123subdomain": _prefixable(dns1123_subdomain_errors),
    "dns1123label": _prefixable(dns1123_label_errors),
    "dns1035label": _prefixable(dns1035_label_errors),
    "path": path_segment_errors,
}


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def validate_labels(labels: Any, path: str) -> list[FieldError]:
    """Label keys are qualified names, values short label values; errors name `path`."""
    if labels is None:
        return []
    if not isinstance(labels, Mapping):
        return [errors.invalid_field(path, labels, "must be a map of string keys to string values")]
    errs: list[FieldError] = []
    for key, value in labels.items():
        errs.extend(errors.invalid_field(path, key, m) for m in qualified_name_errors(key))
        if not isinstance(value, str):
            errs.append(errors.invalid_field(path, value, "must be a string"))
            continue
        errs.extend(errors.invalid_field(path, value, m) for m in label_value_errors(value))
    return errs


def validate_annotations(annotations: Any, path: str) -> list[FieldError]:
    if annotations is None:
        return []
    if not isinstance(annotations, Mapping):
        return [errors.invalid_field(path, annotations, "must be a map of string keys to strings")]
    errs: list[FieldError] = []
    total = 0
    for key, value in annotations.items():
        errs.extend(errors.invalid_field(path, key, m) for m in qualified_name_errors(key.lower()))
        total += len(key.encode()) + len(str(value).encode())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        detail = f"may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"
        errs.append(FieldError("FieldValueTooLong", path, detail))
    return errs


def validate_finalizers(finalizers: Any, path: str) -> list[FieldError]:
    if not finalizers:
        return []
    if not isinstance(finalizers, list):
        return [errors.invalid_field(path, finalizers, "must be a list of strings")]
    errs: list[FieldError] = []
    for name in finalizers:
        errs.extend(errors.invalid_field(path, name, m) for m in qualified_name_errors(str(name)))
    if _ORPHAN in finalizers and _FOREGROUND in finalizers:
        detail = f"finalizer {_ORPHAN} and {_FOREGROUND} cannot be both set"
        errs.append(errors.invalid_field(path, finalizers, detail))
    return errs


def _parse_group_version(api_version: str) -> tuple[str, str] | None:
    parts = api_version.split("/")
    if len(parts) == 1:
        return "", parts[0]
    if len(parts) == 2 and parts[1]:
        return parts[0], parts[1]
    return None


def _validate_owner_reference(ref: Mapping[str, Any], path: str) -> list[FieldError]:
    mistyped = _non_strings(ref, ("apiVersion", "kind", "name", "uid"), path)
    if mistyped:
        return mistyped
    errs: list[FieldError] = []
    api_version = ref.get("apiVersion") or ""
    group_version = _parse_group_version(api_version)
    if not api_version:
        errs.append(errors.required_field(f"{path}.apiVersion", "must not be empty"))
    elif group_version is None:
        detail = "must be <group>/<version> or <version>"
        errs.append(errors.invalid_field(f"{path}.apiVersion", api_version, detail))
    for field in ("kind", "name", "uid"):
        if not ref.get(field):
            errs.append(errors.required_field(f"{path}.{field}", "must not be empty"))
    group, version = group_version or ("", "")
    if (group, version, ref.get("kind")) in _BANNED_OWNERS:
        detail = f"{group}/{version}, Kind={ref.get('kind')} is disallowed from being an owner"
        errs.append(errors.invalid_field(path, dict(ref), detail))
    return errs


def _non_strings(obj: Mapping[str, Any], fields: Iterable[str], path: str) -> list[FieldError]:
    """Type errors for the `fields` of `obj` that are set but are not strings."""
    return [
        errors.type_invalid_field(f"{path}.{field}", obj[field], "string")
        for field in fields
        if obj.get(field) is not None and not isinstance(obj[field], str)
    ]


def validate_owner_references(refs: Any, path: str) -> list[FieldError]:
    if not refs:
        return []
    if not isinstance(refs, list):
        return [errors.invalid_field(path, refs, "must be a list of owner references")]
    errs: list[FieldError] = []
    first_controller = ""
    for index, ref in enumerate(refs):
        if not isinstance(ref, Mapping):
            errs.append(errors.invalid_field(f"{path}[{index}]", ref, "must be an object"))
            continue
        errs.extend(_validate_owner_reference(ref, f"{path}[{index}]"))
        if ref.get("controller") is not True:
            continue
        current = f"{ref.get('kind', '')}/{ref.get('name', '')}"
        if first_controller:
            detail = (
                'Only one reference can have Controller set to true. Found "true" in '
                f"references for {first_controller} and {current}"
            )
            errs.append(errors.invalid_field(path, refs, detail))
        else:
            first_controller = current
    return errs


def _validate_name(meta: Mapping[str, Any], path: str, check: NameValidator) -> list[FieldError]:
    errs: list[FieldError] = []
    generate_name = meta.get("generateName") or ""
    name = meta.get("name") or ""
    if not isinstance(generate_name, str):
        return [errors.invalid_field(f"{path}.generateName", generate_name, "must be a string")]
    if generate_name:
        field = f"{path}.generateName"
        errs.extend(
            errors.invalid_field(field, generate_name, m) for m in check(generate_name, True)
        )
    if not isinstance(name, str):
        return [*errs, errors.invalid_field(f"{path}.name", name, "must be a string")]
    if name:
        errs.extend(errors.invalid_field(f"{path}.name", name, m) for m in check(name, False))
    elif not generate_name:
        errs.append(errors.required_field(f"{path}.name", "name or generateName is required"))
    return errs


def _validate_namespace(meta: Mapping[str, Any], path: str, namespaced: bool) -> list[FieldError]:
    namespace = meta.get("namespace") or ""
    field = f"{path}.namespace"
    if not namespaced:
        return [errors.forbidden_field(field, "not allowed on this type")] if namespace else []
    if not namespace:
        return [errors.required_field(field)]
    return [errors.invalid_field(field, namespace, m) for m in dns1123_label_errors(namespace)]


def _validate_generation(meta: Mapping[str, Any], path: str) -> list[FieldError]:
    generation = meta.get("generation")
    if isinstance(generation, int) and generation < 0:
        detail = "must be greater than or equal to 0"
        return [errors.invalid_field(f"{path}.generation", generation, detail)]
    return []


def _validate_meta_common(meta: Mapping[str, Any], path: str) -> list[FieldError]:
    return [
        *validate_labels(meta.get("labels"), f"{path}.labels"),
        *validate_annotations(meta.get("annotations"), f"{path}.annotations"),
        *validate_owner_references(meta.get("ownerReferences"), f"{path}.ownerReferences"),
    ]


def validate_object_meta(
    obj: Mapping[str, Any],
    *,
    namespaced: bool,
    name_validator: str = "dns1123subdomain",
    path: str = "metadata",
) -> list[FieldError]:
    """Check an object's metadata on create.

    `name_validator` names an entry of `NAME_VALIDATORS`. A missing name is accepted when a
    generateName is given (the generated name is checked again once generated).
    """
    meta = obj.get("metadata")
    if meta is None:
        meta = {}
    if not isinstance(meta, Mapping):
        return [errors.invalid_field(path, meta, "must be an object")]
    return [
        *_validate_name(meta, path, NAME_VALIDATORS[name_validator]),
        *_validate_namespace(meta, path, namespaced),
        *_validate_generation(meta, path),
        *_validate_meta_common(meta, path),
        *validate_finalizers(meta.get("finalizers"), f"{path}.finalizers"),
    ]


def _go_string_list(values: list[str]) -> str:
    quoted = ", ".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "[]string{" + quoted + "}"


def _validate_new_finalizers(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[FieldError]:
    if not old.get("deletionTimestamp"):
        return []
    extra = sorted(set(new.get("finalizers") or []) - set(old.get("finalizers") or []))
    if not extra:
        return []
    detail = (
        "no new finalizers can be added if the object is being deleted, "
        f"found new finalizers {_go_string_list(extra)}"
    )
    return [errors.forbidden_field("metadata.finalizers", detail)]


_IMMUTABLE_META = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


def validate_meta_update(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[FieldError]:
    """Check metadata on update: immutable fields, generation, and the create-time rules."""
    new_meta: Mapping[str, Any] = new.get("metadata") or {}
    old_meta: Mapping[str, Any] = old.get("metadata") or {}
    errs = _validate_new_finalizers(new_meta, old_meta)
    errs.extend(_validate_generation(new_meta, "metadata"))
    new_generation, old_generation = new_meta.get("generation"), old_meta.get("generation")
    if isinstance(new_generation, int) and isinstance(old_generation, int):
        errs.extend(_validate_generation_step(new_generation, old_generation))
    for field in _IMMUTABLE_META:
        value = new_meta.get(field)
        if value != old_meta.get(field):
            errs.append(errors.invalid_field(f"metadata.{field}", value, IMMUTABLE))
    errs.extend(_validate_meta_common(new_meta, "metadata"))
    return errs


def _validate_generation_step(new: int, old: int) -> list[FieldError]:
    if new < old:
        return [errors.invalid_field("metadata.generation", new, "must not be decremented")]
    return []


_SELECTOR_OPERATORS_WITH_VALUES = ("In", "NotIn")
_SELECTOR_OPERATORS_WITHOUT_VALUES = ("Exists", "DoesNotExist")


def _validate_selector_requirement(expr: Any, path: str) -> list[FieldError]:
    if not isinstance(expr, Mapping):
        return [errors.invalid_field(path, expr, "must be an object")]
    values = expr.get("values") or []
    if not isinstance(values, list):
        return [errors.type_invalid_field(f"{path}.values", values, "array")]
    errs = _non_strings(expr, ("key", "operator"), path)
    errs += [
        errors.type_invalid_field(f"{path}.values[{index}]", value, "string")
        for index, value in enumerate(values)
        if not isinstance(value, str)
    ]
    if errs:
        return errs
    operator = expr.get("operator")
    if operator in _SELECTOR_OPERATORS_WITH_VALUES and not values:
        detail = "must be specified when `operator` is 'In' or 'NotIn'"
        errs.append(errors.required_field(f"{path}.values", detail))
    elif operator in _SELECTOR_OPERATORS_WITHOUT_VALUES and values:
        detail = "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
        errs.append(errors.forbidden_field(f"{path}.values", detail))
    elif operator not in (*_SELECTOR_OPERATORS_WITH_VALUES, *_SELECTOR_OPERATORS_WITHOUT_VALUES):
        errs.append(
            errors.invalid_field(f"{path}.operator", operator, "not a valid selector operator")
        )
    key = str(expr.get("key") or "")
    errs.extend(errors.invalid_field(f"{path}.key", key, m) for m in qualified_name_errors(key))
    for index, value in enumerate(values):
        field = f"{path}.values[{index}]"
        errs.extend(errors.invalid_field(field, value, m) for m in label_value_errors(str(value)))
    return errs


def validate_label_selector_spec(selector: Any, path: str) -> list[FieldError]:
    """Check a `{matchLabels, matchExpressions}` label selector (Deployments, Services, ...)."""
    if selector is None:
        return []
    if not isinstance(selector, Mapping):
        return [errors.invalid_field(path, selector, "must be an object")]
    errs = validate_labels(selector.get("matchLabels"), _child(path, "matchLabels"))
    expressions = selector.get("matchExpressions") or []
    if not isinstance(expressions, list):
        field = _child(path, "matchExpressions")
        return [*errs, errors.type_invalid_field(field, expressions, "array")]
    for index, expr in enumerate(expressions):
        field = f"{_child(path, 'matchExpressions')}[{index}]"
        errs.extend(_validate_selector_requirement(expr, field))
    return errs
