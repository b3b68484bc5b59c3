"""apiextensions.k8s.io/v1 CustomResourceDefinition: the kind that declares other kinds.

Defaults (singular and listKind names, conversion strategy None) and validation (group,
names, scope, exactly one storage version, a schema per version, the `<plural>.<group>` name)
follow upstream's apiextensions validation. Serving the declared kinds, and the CRD's status,
is `unistack.apiserver.crds`'s job.
"""

from __future__ import annotations

from typing import Any

from unistack.apiserver.errors import FieldError, forbidden_field, invalid_field, required_field
from unistack.apiserver.kinds import cells
from unistack.apiserver.kinds.checks import check_enum, check_immutable
from unistack.apiserver.kinds.objects import (
    Obj,
    dict_of,
    dicts_in,
    dig,
    ensure_dict,
    list_of,
    metadata_of,
    set_default,
)
from unistack.apiserver.resources import Column, ResourceType
from unistack.apiserver.validation import dns1035_label_errors, dns1123_subdomain_errors

SCOPES = ("Cluster", "Namespaced")
COLUMN_TYPES = ("boolean", "date", "integer", "number", "string")
NAME_MISMATCH = 'must be spec.names.plural+"."+spec.group'


def default_crd(crd: Obj) -> None:
    spec = ensure_dict(crd, "spec")
    if spec is None:
        return
    names = ensure_dict(spec, "names")
    kind = names.get("kind") if names is not None else None
    if names is not None and isinstance(kind, str) and kind:
        set_default(names, "singular", kind.lower())
        set_default(names, "listKind", kind + "List")
    conversion = ensure_dict(spec, "conversion")
    if conversion is not None:
        set_default(conversion, "strategy", "None")
        service = dig(conversion, "webhook", "clientConfig", "service")
        if isinstance(service, dict):
            set_default(service, "port", 443)


def validate_crd(crd: Obj, old: Obj | None) -> list[FieldError]:
    spec = dict_of(crd.get("spec"))
    names = dict_of(spec.get("names"))
    errs = _check_name(crd, spec, names)
    errs += _check_group(spec.get("group"))
    errs += check_enum("spec.scope", spec.get("scope"), SCOPES)
    errs += _check_versions(list_of(spec.get("versions")))
    errs += _check_names(names)
    errs += _check_conversion(dict_of(spec.get("conversion")))
    if old is not None:
        errs += _check_crd_update(spec, old)
    return errs


def _check_name(crd: Obj, spec: Obj, names: Obj) -> list[FieldError]:
    name = metadata_of(crd).get("name")
    if name and name != f"{names.get('plural', '')}.{spec.get('group', '')}":
        return [invalid_field("metadata.name", name, NAME_MISMATCH)]
    return []


def _check_group(group: Any) -> list[FieldError]:
    if group in (None, ""):
        return [required_field("spec.group")]
    problems = dns1123_subdomain_errors(str(group))
    if problems:
        return [invalid_field("spec.group", group, ",".join(problems))]
    if "." not in str(group):
        return [invalid_field("spec.group", group, "should be a domain with at least one dot")]
    return []


def _check_versions(versions: list[Any]) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, version in enumerate(versions):
        errs += _check_version(dict_of(version), f"spec.versions[{i}]")
    names = [dict_of(v).get("name") for v in versions]
    if len(set(map(str, names))) != len(names):
        errs.append(invalid_field("spec.versions", versions, "must contain unique version names"))
    if sum(dict_of(v).get("storage") is True for v in versions) != 1:
        detail = "must have exactly one version marked as storage version"
        errs.append(invalid_field("spec.versions", versions, detail))
    return errs


def _check_version(version: Obj, path: str) -> list[FieldError]:
    name = str(version.get("name") or "")
    problems = dns1035_label_errors(name)
    errs = [invalid_field(f"{path}.name", name, ",".join(problems))] if problems else []
    errs += _check_schema(dig(version, "schema", "openAPIV3Schema"), f"{path}.schema")
    for j, column in enumerate(dicts_in(version.get("additionalPrinterColumns"))):
        errs += _check_printer_column(column, f"{path}.additionalPrinterColumns[{j}]")
    return errs


def _check_schema(schema: Any, path: str) -> list[FieldError]:
    field = f"{path}.openAPIV3Schema"
    if not isinstance(schema, dict):
        return [required_field(field, "schemas are required")]
    root_type = schema.get("type")
    if root_type in (None, ""):
        return [required_field(f"{field}.type", "must not be empty at the root")]
    if root_type != "object":
        return [invalid_field(f"{field}.type", root_type, "must be object at the root")]
    return []


def _check_printer_column(column: Obj, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for key in ("name", "jsonPath"):
        if column.get(key) in (None, ""):
            errs.append(required_field(f"{path}.{key}"))
    return errs + check_enum(f"{path}.type", column.get("type"), COLUMN_TYPES)


def _check_names(names: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    for key in ("plural", "singular", "kind", "listKind"):
        value = names.get(key)
        if value in (None, ""):
            errs.append(required_field(f"spec.names.{key}"))
            continue
        mixed_case = key in ("kind", "listKind")
        problems = dns1035_label_errors(str(value).lower() if mixed_case else str(value))
        if problems:
            prefix = "may have mixed case, but should otherwise match: " if mixed_case else ""
            errs.append(invalid_field(f"spec.names.{key}", value, prefix + ",".join(problems)))
    for key in ("shortNames", "categories"):
        for i, value in enumerate(list_of(names.get(key))):
            problems = dns1035_label_errors(str(value))
            if problems:
                errs.append(invalid_field(f"spec.names.{key}[{i}]", value, ",".join(problems)))
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        detail = "kind and listKind may not be the same"
        errs.append(invalid_field("spec.names.listKind", names["listKind"], detail))
    return errs


def _check_conversion(conversion: Obj) -> list[FieldError]:
    path = "spec.conversion"
    strategy = conversion.get("strategy")
    errs = check_enum(f"{path}.strategy", strategy, ("None", "Webhook"))
    client_config = dig(conversion, "webhook", "clientConfig")
    if strategy == "Webhook" and client_config is None:
        detail = "required when strategy is set to Webhook"
        errs.append(required_field(f"{path}.webhookClientConfig", detail))
    elif strategy != "Webhook" and client_config is not None:
        detail = "should not be set when strategy is not set to Webhook"
        errs.append(forbidden_field(f"{path}.webhookClientConfig", detail))
    return errs


def _check_crd_update(spec: Obj, old: Obj) -> list[FieldError]:
    old_spec = dict_of(old.get("spec"))
    errs = check_immutable("spec.group", spec.get("group"), old_spec.get("group"))
    new_plural, old_plural = dig(spec, "names", "plural"), dig(old_spec, "names", "plural")
    errs += check_immutable("spec.names.plural", new_plural, old_plural)
    if _is_established(old):
        errs += check_immutable("spec.scope", spec.get("scope"), old_spec.get("scope"))
        new_kind, old_kind = dig(spec, "names", "kind"), dig(old_spec, "names", "kind")
        errs += check_immutable("spec.names.kind", new_kind, old_kind)
    return errs


def _is_established(crd: Obj) -> bool:
    conditions = dicts_in(dig(crd, "status", "conditions"))
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


CUSTOM_RESOURCE_DEFINITION = ResourceType(
    tracks_generation=True,
    group="apiextensions.k8s.io",
    version="v1",
    kind="CustomResourceDefinition",
    plural="customresourcedefinitions",
    singular="customresourcedefinition",
    namespaced=False,
    short_names=("crd", "crds"),
    categories=("api-extensions",),
    status_subresource=True,
    columns=(
        Column(
            "Created At",
            cells.text_at("metadata", "creationTimestamp"),
            type="date",
            description="CreationTimestamp is the server time when this object was created.",
        ),
    ),
    defaulter=default_crd,
    validator=validate_crd,
)
