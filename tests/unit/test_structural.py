"""Structural-schema checks for CRDs, in apiextensions-apiserver's words."""

from __future__ import annotations

from typing import Any

from unistack.apiserver.structural import check_structural

ROOT = "spec.validation.openAPIV3Schema"


def _texts(schema: Any, path: str = ROOT) -> list[str]:
    return [f"{e.field}: {e.message()}" for e in check_structural(schema, path)]


def _root(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


GOOD = _root(
    apiVersion={"type": "string"},
    kind={"type": "string"},
    metadata={"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}},
    spec={
        "type": "object",
        "required": ["size"],
        "properties": {
            "size": {
                "x-kubernetes-int-or-string": True,
                "anyOf": [{"type": "integer"}, {"type": "string"}],
            },
            "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            "ports": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}},
                },
            },
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "free": {"x-kubernetes-preserve-unknown-fields": True},
            "template": {
                "type": "object",
                "x-kubernetes-embedded-resource": True,
                "x-kubernetes-preserve-unknown-fields": True,
            },
            "mode": {"type": "string", "allOf": [{"pattern": "^[a-z]+$"}]},
        },
        "oneOf": [{"required": ["size"]}, {"properties": {"tags": {"minItems": 1}}}],
    },
)


def test_a_structural_schema_passes() -> None:
    assert check_structural(GOOD) == []


def test_every_specified_field_needs_a_type() -> None:
    schema = _root(spec={"properties": {"a": {}, "b": {"type": "array", "items": {}}}})
    assert _texts(schema) == [
        f"{ROOT}.properties[spec].properties[a].type: Required value: "
        "must not be empty for specified object fields",
        f"{ROOT}.properties[spec].properties[b].items.type: Required value: "
        "must not be empty for specified array items",
        f"{ROOT}.properties[spec].type: Required value: "
        "must not be empty for specified object fields",
    ]


def test_the_root_must_be_an_object() -> None:
    assert _texts({"properties": {}}) == [
        f"{ROOT}.type: Required value: must not be empty at the root"
    ]
    assert _texts({"type": "string"}) == [
        f'{ROOT}.type: Invalid value: "string": must be object at the root'
    ]
    assert _texts({"type": "object", "additionalProperties": {"type": "string"}}) == [
        f"{ROOT}.additionalProperties: Forbidden: must not be used at the root"
    ]


def test_arrays_need_items() -> None:
    assert _texts(_root(a={"type": "array"})) == [
        f"{ROOT}.properties[a].items: Required value: must be specified"
    ]


def test_unsupported_keywords_are_forbidden() -> None:
    schema = _root(a={"type": "string", "$ref": "#/x"}, b={"type": "null"})
    assert _texts(schema) == [
        f"{ROOT}.properties[a].$ref: Forbidden: $ref is not supported",
        f"{ROOT}.properties[b].type: Forbidden: "
        "type cannot be set to null, use nullable as an alternative",
    ]
    assert _texts(_root(a={"type": "strin"}))[0].startswith(
        f'{ROOT}.properties[a].type: Unsupported value: "strin": supported values: "array"'
    )


def test_properties_and_additional_properties_exclude_each_other() -> None:
    schema = _root(
        a={"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": False}
    )
    assert _texts(schema) == [
        f"{ROOT}.properties[a].additionalProperties: Forbidden: "
        "additionalProperties and properties are mutual exclusive"
    ]


def test_value_validations_may_not_declare_structure() -> None:
    schema = _root(
        a={"type": "string", "anyOf": [{"type": "string", "description": "x"}, {"nullable": True}]}
    )
    assert _texts(schema) == [
        f"{ROOT}.properties[a].anyOf[0].description: Forbidden: must be empty to be structural",
        f"{ROOT}.properties[a].anyOf[0].type: Forbidden: must be empty to be structural",
        f"{ROOT}.properties[a].anyOf[1].nullable: Forbidden: must be false to be structural",
    ]


def test_value_validations_must_name_specified_fields() -> None:
    schema = _root(a={"type": "object", "allOf": [{"properties": {"ghost": {"minLength": 1}}}]})
    assert _texts(schema) == [
        f"{ROOT}.properties[a].properties[ghost]: Required value: "
        f"because it is defined in {ROOT}.properties[a].allOf[0].properties[ghost]"
    ]


def test_root_metadata_may_only_restrict_name_and_generate_name() -> None:
    schema = _root(metadata={"type": "object", "properties": {"labels": {"type": "object"}}})
    assert _texts(schema) == [
        f"{ROOT}.properties[metadata]: Forbidden: must not specify anything other than name and "
        "generateName, but metadata is implicitly specified"
    ]
    assert _texts(_root(kind={"type": "integer"})) == [
        f'{ROOT}.properties[kind].type: Invalid value: "integer": must be string'
    ]


def test_embedded_resources_must_be_objects() -> None:
    schema = _root(t={"x-kubernetes-embedded-resource": True})
    assert _texts(schema) == [
        f"{ROOT}.properties[t].properties: Required value: must not be empty if "
        "x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        f"{ROOT}.properties[t].type: Required value: "
        "must be object if x-kubernetes-embedded-resource is true",
    ]


def test_int_or_string_cannot_preserve_unknown_fields() -> None:
    schema = _root(
        a={"x-kubernetes-int-or-string": True, "x-kubernetes-preserve-unknown-fields": True}
    )
    assert _texts(schema) == [
        f"{ROOT}.properties[a].x-kubernetes-preserve-unknown-fields: Invalid value: true: "
        "must be false if x-kubernetes-int-or-string is true"
    ]


def test_list_map_needs_keys_that_are_item_properties() -> None:
    no_keys = _root(
        a={"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object"}}
    )
    assert _texts(no_keys) == [
        f"{ROOT}.properties[a].x-kubernetes-list-map-keys: Required value: "
        "must not be empty if x-kubernetes-list-type is map"
    ]
    unknown_key = _root(
        a={
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["id"],
            "items": {"type": "object", "properties": {"name": {"type": "string"}}},
        }
    )
    assert _texts(unknown_key) == [
        f'{ROOT}.properties[a].x-kubernetes-list-map-keys: Invalid value: ["id"]: '
        "entries must all be names of item properties"
    ]
    wrong_type = _root(a={"type": "string", "x-kubernetes-list-type": "set"})
    assert _texts(wrong_type) == [
        f'{ROOT}.properties[a].type: Invalid value: "string": '
        "must be array if x-kubernetes-list-type is specified"
    ]


def test_unique_items_is_forbidden_and_patterns_must_compile() -> None:
    schema = _root(
        a={"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        b={"type": "string", "pattern": "("},
    )
    texts = _texts(schema)
    assert texts[0] == (
        f"{ROOT}.properties[a].uniqueItems: Forbidden: "
        "uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
    )
    assert texts[1].startswith(
        f'{ROOT}.properties[b].pattern: Invalid value: "(": must be a valid regular expression'
    )


def test_paths_follow_the_callers_prefix() -> None:
    path = "spec.versions[1].schema.openAPIV3Schema"
    assert _texts({"type": "string"}, path) == [
        f'{path}.type: Invalid value: "string": must be object at the root'
    ]


def test_a_missing_schema_is_required() -> None:
    assert _texts(None) == [f"{ROOT}: Required value"]
