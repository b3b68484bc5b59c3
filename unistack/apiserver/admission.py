"""Admission: defaulting and validation of every write, per kind.

Order, as in kube-apiserver: custom resources are pruned and defaulted from their schema;
built-in kinds are defaulted by their declared defaulter; then metadata, the kind's own rules
and the schema are validated. All field errors are reported together in one 422 Invalid, and
nothing is written when there is any.
"""

from __future__ import annotations

from typing import Any

from unistack.apiserver import errors, schema, validation
from unistack.apiserver.resources import ResourceType

Obj = dict[str, Any]


def admit(rt: ResourceType, obj: Obj, old: Obj | None, *, strict: bool) -> tuple[Obj, list[str]]:
    """Return the defaulted object and warnings, or raise 400/422."""
    warnings: list[str] = []
    if rt.schema is not None:
        obj, pruned = schema.prune(rt.schema, obj)
        if pruned and strict:
            fields = ", ".join(f'unknown field "{p}"' for p in pruned)
            raise errors.bad_request(f"strict decoding error: {fields}")
        warnings.extend(f'unknown field "{p}"' for p in pruned)
        obj = schema.apply_defaults(rt.schema, obj)
    if rt.defaulter is not None:
        rt.defaulter(obj)
    problems = _validate(rt, obj, old)
    if problems:
        name = obj.get("metadata", {}).get("name") or ""
        raise errors.invalid(rt.kind, rt.group, name, problems)
    return obj, warnings


def _validate(rt: ResourceType, obj: Obj, old: Obj | None) -> list[errors.FieldError]:
    name_format = str(rt.extra.get("name_format", "dns1123subdomain"))
    problems = validation.validate_object_meta(
        obj, namespaced=rt.namespaced, name_validator=name_format
    )
    if old is not None:
        problems += validation.validate_meta_update(obj, old)
    if rt.validator is not None:
        problems += rt.validator(obj, old)
    if rt.schema is not None:
        problems += schema.validate(rt.schema, obj)
    return problems
