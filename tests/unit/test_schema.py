"""Custom resources against openAPIV3Schema: validation wording, defaulting and pruning."""

from __future__ import annotations

from typing import Any

import pytest

from unistack.apiserver import formats, schema
from unistack.apiserver.errors import FieldError


def _crd_schema(spec: dict[str, Any], **root: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {"type": "object", **spec},
        },
        **root,
    }


def _obj(spec: Any, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": spec,
        **extra,
    }


def _errors(spec_schema: dict[str, Any], spec: Any) -> list[str]:
    found = schema.validate(_crd_schema(spec_schema), _obj(spec))
    return [_text(e) for e in found]


def _text(error: FieldError) -> str:
    return f"{error.field}: {error.type}: {error.value!r}: {error.detail}"


def _props(**properties: Any) -> dict[str, Any]:
    return {"properties": properties}


def test_a_valid_object_has_no_errors() -> None:
    spec = _props(replicas={"type": "integer"}, name={"type": "string"})
    assert _errors(spec, {"replicas": 3, "name": "x"}) == []


def test_type_mismatch_uses_kube_openapi_words() -> None:
    errs = schema.validate(
        _crd_schema(_props(replicas={"type": "integer"})), _obj({"replicas": "3"})
    )
    assert [(e.type, e.field, e.value, e.detail) for e in errs] == [
        (
            "FieldValueTypeInvalid",
            "spec.replicas",
            "string",
            'spec.replicas in body must be of type integer: "string"',
        )
    ]
    assert errs[0].message() == (
        'Invalid value: "string": spec.replicas in body must be of type integer: "string"'
    )


@pytest.mark.parametrize(
    ("type_name", "value", "ok"),
    [
        ("integer", 1, True),
        ("integer", 1.0, True),
        ("integer", 1.5, False),
        ("integer", True, False),
        ("number", 1, True),
        ("number", 1.5, True),
        ("boolean", False, True),
        ("boolean", 0, False),
        ("string", "", True),
        ("string", 1, False),
        ("array", [], True),
        ("array", {}, False),
        ("object", {}, True),
        ("object", [], False),
    ],
)
def test_json_types(type_name: str, value: Any, ok: bool) -> None:
    assert (_errors(_props(x={"type": type_name}), {"x": value}) == []) is ok


def test_null_needs_nullable() -> None:
    spec = _props(a={"type": "string"}, b={"type": "string", "nullable": True})
    assert _errors(spec, {"a": None, "b": None}) == [
        "spec.a: FieldValueTypeInvalid: 'null': spec.a in body must be of type string: \"null\""
    ]


def test_int_or_string() -> None:
    spec = _props(port={"x-kubernetes-int-or-string": True})
    assert _errors(spec, {"port": 80}) == []
    assert _errors(spec, {"port": "http"}) == []
    assert _errors(spec, {"port": 1.5}) == [
        "spec.port: FieldValueTypeInvalid: 'number': "
        'spec.port in body must be of type integer,string: "number"'
    ]


def test_required_fields() -> None:
    spec = {"required": ["replicas"], **_props(replicas={"type": "integer"})}
    assert _errors(spec, {}) == ["spec.replicas: FieldValueRequired: None: "]
    found = schema.validate(_crd_schema({}, required=["spec"]), {"metadata": {"name": "w"}})
    assert [e.message() for e in found] == ["Required value"]
    assert found[0].field == "spec"


def test_required_skips_meta_fields_at_the_root() -> None:
    root = _crd_schema({}, required=["apiVersion", "kind", "metadata"])
    assert schema.validate(root, {"spec": {}}) == []


def test_enum_is_unsupported_value() -> None:
    found = schema.validate(
        _crd_schema(_props(mode={"type": "string", "enum": ["a", "b"]})), _obj({"mode": "c"})
    )
    assert [f"{e.field}: {e.message()}" for e in found] == [
        'spec.mode: Unsupported value: "c": supported values: "a", "b"'
    ]
    assert _errors(_props(n={"type": "integer", "enum": [1, 2]}), {"n": 2}) == []
    assert _errors(_props(b={"type": "boolean", "enum": [True]}), {"b": True}) == []
    assert _errors(_props(n={"type": "integer", "enum": [1]}), {"n": 2})[0].endswith(
        'supported values: "1"'
    )


def test_enum_does_not_confuse_true_and_one() -> None:
    assert _errors(_props(n={"type": "number", "enum": [True, 2]}), {"n": 1}) != []


def test_numeric_bounds() -> None:
    spec = _props(
        a={"type": "integer", "minimum": 1, "maximum": 10},
        b={"type": "integer", "minimum": 1, "exclusiveMinimum": True},
        c={"type": "number", "maximum": 2.5, "exclusiveMaximum": True},
        d={"type": "integer", "multipleOf": 5},
        e={"type": "number", "multipleOf": 0.5},
    )
    assert _errors(spec, {"a": 10, "b": 2, "c": 2.4, "d": 15, "e": 1.5}) == []
    assert _errors(spec, {"a": 11, "b": 1, "c": 2.5, "d": 7, "e": 1.3}) == [
        "spec.a: FieldValueInvalid: 11: spec.a in body should be less than or equal to 10",
        "spec.b: FieldValueInvalid: 1: spec.b in body should be greater than 1",
        "spec.c: FieldValueInvalid: 2.5: spec.c in body should be less than 2.5",
        "spec.d: FieldValueInvalid: 7: spec.d in body should be a multiple of 5",
        "spec.e: FieldValueInvalid: 1.3: spec.e in body should be a multiple of 0.5",
    ]
    assert _errors(spec, {"a": 0}) == [
        "spec.a: FieldValueInvalid: 0: spec.a in body should be greater than or equal to 1"
    ]


def test_integer_formats_bound_the_range() -> None:
    spec = _props(n={"type": "integer", "format": "int32"})
    assert _errors(spec, {"n": 2**31 - 1}) == []
    assert _errors(spec, {"n": 2**31}) == [
        f"spec.n: FieldValueInvalid: {2**31}: "
        "Checked value must be of type integer with format int32 in spec.n"
    ]


def test_string_constraints() -> None:
    spec = _props(
        short={"type": "string", "maxLength": 3},
        long={"type": "string", "minLength": 2},
        word={"type": "string", "pattern": "^[a-z]+$"},
    )
    assert _errors(spec, {"short": "abc", "long": "ab", "word": "abc"}) == []
    assert _errors(spec, {"short": "abcd", "long": "a", "word": "ABC"}) == [
        "spec.short: FieldValueTooLong: None: may not be more than 3 bytes",
        "spec.long: FieldValueInvalid: 'a': spec.long in body should be at least 2 chars long",
        "spec.word: FieldValueInvalid: 'ABC': spec.word in body should match '^[a-z]+$'",
    ]


@pytest.mark.parametrize(
    ("format_name", "good", "bad"),
    [
        ("date-time", "2024-01-02T03:04:05Z", "2024-01-02"),
        ("date", "2024-01-02", "2024-13-02"),
        ("byte", "aGVsbG8=", "not base64!"),
        ("uuid", "123e4567-e89b-12d3-a456-426614174000", "123"),
        ("ipv4", "10.0.0.1", "10.0.0.256"),
        ("ipv6", "fe80::1", "10.0.0.1"),
        ("cidr", "10.0.0.0/8", "10.0.0.0/33"),
        ("hostname", "web.example.com", "-bad-"),
        ("email", "a@example.com", "nobody"),
        ("mac", "00:1a:2b:3c:4d:5e", "00:1a"),
    ],
)
def test_string_formats(format_name: str, good: str, bad: str) -> None:
    assert formats.conforms(format_name, good)
    assert not formats.conforms(format_name, bad)
    spec = _props(v={"type": "string", "format": format_name})
    assert _errors(spec, {"v": bad}) == [
        f"spec.v: FieldValueTypeInvalid: {bad!r}: "
        f'spec.v in body must be of type {format_name}: "{bad}"'
    ]


def test_unknown_formats_are_ignored() -> None:
    assert _errors(_props(v={"type": "string", "format": "pokemon"}), {"v": "x"}) == []


def test_array_constraints_and_item_paths() -> None:
    spec = _props(
        few={"type": "array", "items": {"type": "string"}, "minItems": 2},
        many={"type": "array", "items": {"type": "integer"}, "maxItems": 1},
        unique={"type": "array", "items": {"type": "string"}, "uniqueItems": True},
    )
    assert _errors(spec, {"few": ["a"], "many": [1, "x"], "unique": ["a", "a"]}) == [
        "spec.few: FieldValueInvalid: 1: spec.few in body should have at least 2 items",
        "spec.many[1]: FieldValueTypeInvalid: 'string': "
        'spec.many[1] in body must be of type integer: "string"',
        "spec.many: FieldValueTooMany: 2: must have at most 1 item",
        "spec.unique: FieldValueInvalid: '': spec.unique in body shouldn't contain duplicates",
    ]


def test_list_type_set_and_map_reject_duplicates() -> None:
    spec = _props(
        tags={"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
        ports={
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name", "protocol"],
            "items": _props(name={"type": "string"}, protocol={"type": "string"})
            | {"type": "object"},
        },
    )
    ports = [
        {"name": "http", "protocol": "TCP"},
        {"name": "http", "protocol": "UDP"},
        {"name": "http", "protocol": "TCP", "extra": 1},
    ]
    found = schema.validate(_crd_schema(spec), _obj({"tags": ["a", "b", "a"], "ports": ports}))
    assert [(e.type, e.field, e.value) for e in found] == [
        ("FieldValueDuplicate", "spec.tags[2]", "a"),
        ("FieldValueDuplicate", "spec.ports[2]", {"name": "http", "protocol": "TCP"}),
    ]


def test_objects_properties_and_additional_properties() -> None:
    spec = _props(
        labels={"type": "object", "additionalProperties": {"type": "string"}},
        closed={
            "type": "object",
            "properties": {"a": {"type": "string"}},
            "additionalProperties": False,
        },
        counted={"type": "object", "minProperties": 1, "maxProperties": 2},
    )
    assert _errors(spec, {"labels": {"a": "x"}, "closed": {"a": "y"}, "counted": {"a": 1}}) == []
    assert _errors(spec, {"labels": {"a": 1}, "closed": {"b": "y"}, "counted": {}}) == [
        "spec.labels.a: FieldValueTypeInvalid: 'integer': "
        'spec.labels.a in body must be of type string: "integer"',
        "spec.closed: FieldValueInvalid: 'b': spec.closed.b in body is a forbidden property",
        "spec.counted: FieldValueInvalid: 0: "
        "spec.counted in body should have at least 1 properties",
    ]
    assert _errors(spec, {"counted": {"a": 1, "b": 2, "c": 3}}) == [
        "spec.counted: FieldValueTooMany: 3: must have at most 2 items"
    ]


def test_preserve_unknown_fields_accepts_anything() -> None:
    spec = _props(free={"x-kubernetes-preserve-unknown-fields": True})
    assert _errors(spec, {"free": {"a": [1, {"b": None}]}}) == []
    assert _errors(spec, {"free": "text"}) == []


def test_any_of_one_of_all_of_not() -> None:
    strings_or_ints = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert _errors(_props(v=strings_or_ints), {"v": 1}) == []
    assert _errors(_props(v=strings_or_ints), {"v": True})[0] == (
        "spec.v: FieldValueInvalid: '': \"spec.v\" must validate at least one schema (anyOf)"
    )
    one = {"type": "integer", "oneOf": [{"minimum": 5}, {"maximum": 10}]}
    assert _errors(_props(v=one), {"v": 1}) == []
    assert _errors(_props(v=one), {"v": 7})[0].endswith(
        '"spec.v" must validate one and only one schema (oneOf). Found 2 valid alternatives'
    )
    every = {"type": "integer", "allOf": [{"minimum": 5}, {"maximum": 10}]}
    assert _errors(_props(v=every), {"v": 7}) == []
    assert _errors(_props(v=every), {"v": 11}) == [
        "spec.v: FieldValueInvalid: 11: spec.v in body should be less than or equal to 10",
        "spec.v: FieldValueInvalid: '': \"spec.v\" must validate all the schemas (allOf)",
    ]
    never_empty = {"type": "string", "not": {"maxLength": 0}}
    assert _errors(_props(v=never_empty), {"v": "x"}) == []
    assert _errors(_props(v=never_empty), {"v": ""}) == [
        "spec.v: FieldValueInvalid: '': \"spec.v\" must not validate the schema (not)"
    ]


def test_embedded_resources_need_type_meta_and_valid_metadata() -> None:
    embedded = {
        "type": "object",
        "x-kubernetes-embedded-resource": True,
        "x-kubernetes-preserve-unknown-fields": True,
    }
    spec = _props(template=embedded)
    assert _errors(spec, {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {}}}) == []
    found = _errors(
        spec, {"template": {"kind": "pod!", "metadata": {"name": "a/b", "labels": {"k": "-"}}}}
    )
    assert found[0] == "spec.template.apiVersion: FieldValueRequired: None: "
    assert found[1].startswith(
        "spec.template.kind: FieldValueInvalid: 'pod!': "
        "may have mixed case, but should otherwise match: "
    )
    assert found[2] == "spec.template.metadata.name: FieldValueInvalid: 'a/b': may not contain '/'"
    assert found[3].startswith("spec.template.metadata.labels: FieldValueInvalid: '-'")


def test_metadata_name_must_be_a_string_and_follow_the_schema() -> None:
    root = _crd_schema({})
    assert schema.validate(root, {"metadata": {"name": 5}})[0].detail == (
        'metadata.name in body must be of type string: "integer"'
    )
    root["properties"]["metadata"] = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 3}},
    }
    assert [e.field for e in schema.validate(root, {"metadata": {"name": "long"}})] == [
        "metadata.name"
    ]


def test_other_metadata_and_type_meta_are_not_checked_here() -> None:
    root = _crd_schema({})
    assert schema.validate(root, {"apiVersion": 1, "kind": [], "metadata": {"labels": 3}}) == []


DEFAULTING = _crd_schema(
    _props(
        replicas={"type": "integer", "default": 1},
        strategy={
            "type": "object",
            "default": {},
            "properties": {"type": {"type": "string", "default": "Rolling"}},
        },
        ports={
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"protocol": {"type": "string", "default": "TCP"}},
            },
        },
        labels={"type": "object", "additionalProperties": {"type": "string", "default": "x"}},
        note={"type": "string"},
        maybe={"type": "string", "nullable": True},
    )
)


def test_defaults_fill_missing_fields_recursively() -> None:
    obj = _obj({"ports": [{}, {"protocol": "UDP"}]})
    defaulted = schema.apply_defaults(DEFAULTING, obj)
    assert defaulted["spec"] == {
        "ports": [{"protocol": "TCP"}, {"protocol": "UDP"}],
        "replicas": 1,
        "strategy": {"type": "Rolling"},
    }
    assert obj["spec"] == {"ports": [{}, {"protocol": "UDP"}]}  # the input is untouched


def test_defaults_do_not_override_given_values() -> None:
    defaulted = schema.apply_defaults(
        DEFAULTING, _obj({"replicas": 0, "strategy": {"type": "Recreate"}})
    )
    assert defaulted["spec"]["replicas"] == 0
    assert defaulted["spec"]["strategy"] == {"type": "Recreate"}


def test_non_nullable_nulls_are_defaulted_or_dropped() -> None:
    obj = _obj({"replicas": None, "note": None, "maybe": None, "labels": {"a": None}})
    spec = schema.apply_defaults(DEFAULTING, obj)["spec"]
    assert spec["replicas"] == 1
    assert "note" not in spec
    assert spec["maybe"] is None
    assert spec["labels"] == {"a": "x"}


def test_prune_drops_unknown_fields_and_reports_their_paths() -> None:
    root = _crd_schema(
        _props(
            known={"type": "string"},
            items={
                "type": "array",
                "items": {"type": "object", "properties": {"a": {"type": "string"}}},
            },
            free={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            labels={"type": "object", "additionalProperties": {"type": "string"}},
            template={"type": "object", "x-kubernetes-embedded-resource": True, "properties": {}},
        )
    )
    obj = _obj(
        {
            "known": "k",
            "unknown": 1,
            "items": [{"a": "x", "b": "y"}],
            "free": {"anything": {"goes": True}},
            "labels": {"any": "key"},
            "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}},
        },
        status={"phase": "x"},
        extra=True,
    )
    pruned, removed = schema.prune(root, obj)
    assert removed == ["spec.unknown", "spec.items[0].b", "spec.template.spec", "status", "extra"]
    assert pruned["spec"]["items"] == [{"a": "x"}]
    assert pruned["spec"]["free"] == {"anything": {"goes": True}}
    assert pruned["spec"]["labels"] == {"any": "key"}
    assert pruned["spec"]["template"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
    }
    assert pruned["metadata"] == {"name": "w"} and pruned["kind"] == "Widget"
    assert "unknown" in obj["spec"]  # the input is untouched


def test_prune_keeps_everything_under_a_preserving_root() -> None:
    root = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    pruned, removed = schema.prune(root, _obj({"a": 1}, other=2))
    assert removed == []
    assert pruned["other"] == 2


def test_check_structural_is_reachable_from_schema() -> None:
    assert schema.check_structural(_crd_schema({})) == []
