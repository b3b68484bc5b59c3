"""Admission: defaulting and validation of every write, per kind.

Order, as in kube-apiserver: fields the kind does not have are dropped or refused (custom
kinds by their schema, built-in kinds by their type, per `fieldValidation`); custom resources
are defaulted from their schema and built-in kinds by their declared defaulter; then metadata,
the kind's own rules and the schema are validated. All field errors are reported together in
one 422 Invalid, and nothing is written when there is any.
"""

from __future__ import annotations

from typing import Any

from unistack.apiserver import errors, knownfields, schema, validation
from unistack.apiserver.resources import ResourceType

Obj = dict[str, Any]


def admit(
    rt: ResourceType, obj: Obj, old: Obj | None, *, field_validation: str
) -> tuple[Obj, list[str]]:
    """Return the defaulted object and warnings, or raise 400/422.

    Fields the kind does not have are dropped (`Ignore`), dropped with a warning (`Warn`) or
    refused with a 400 (`Strict`), before anything else looks at the object."""
    obj, unknown = _without_unknown_fields(rt, obj)
    if unknown and field_validation == "Strict":
        fields = ", ".join(f'unknown field "{p}"' for p in unknown)
        raise errors.bad_request(
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
            f"strict decoding error: {fields}"
        )
    warnings = [f'unknown field "{p}"' for p in unknown] if field_validation == "Warn" else []
    if rt.schema is not None:
        obj = schema.apply_defaults(rt.schema, obj)
    if rt.defaulter is not None:
        rt.defaulter(obj)
    problems = _validate(rt, obj, old)
    if problems:
        name = obj.get("metadata", {}).get("name") or ""
        raise errors.invalid(rt.kind, rt.group, name, problems)
    return obj, warnings


def _without_unknown_fields(rt: ResourceType, obj: Obj) -> tuple[Obj, list[str]]:
    """Custom kinds are pruned by their CRD schema, built-in kinds by their type."""
    if rt.schema is not None:
        return schema.prune(rt.schema, obj)
    unknown = knownfields.unknown_fields(rt, obj)
    knownfields.drop(obj, unknown)
    return obj, unknown


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
