"""Object metadata validation: kube's rules and kube's words."""

from __future__ import annotations

from typing import Any

import pytest

from unistack.apiserver import validation
from unistack.apiserver.errors import FieldError
from unistack.apiserver.validation import (
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    validate_label_selector_spec,
    validate_labels,
    validate_meta_update,
    validate_object_meta,
)

SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


def _texts(errs: list[FieldError]) -> list[str]:
    return [f"{e.field}: {e.message()}" for e in errs]


def _meta(**meta: Any) -> dict[str, Any]:
    return {"metadata": meta}


@pytest.mark.parametrize(
    ("value", "label", "subdomain"),
    [
        ("web", True, True),
        ("web-1", True, True),
        ("a.b", False, True),
        ("Web", False, False),
        ("-web", False, False),
        ("web-", False, False),
        ("a" * 63, True, True),
        ("a" * 64, False, True),
        ("a" * 254, False, False),
        ("", False, False),
    ],
)
def test_dns_names(value: str, label: bool, subdomain: bool) -> None:
    assert is_dns1123_label(value) is label
    assert is_dns1123_subdomain(value) is subdomain


def test_label_with_dots_says_so() -> None:
    assert validation.dns1123_label_errors("a.b") == ["must not contain dots"]


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("app", True),
        ("App_1.x", True),
        ("example.com/app", True),
        ("/app", False),
        ("example.com/", False),
        ("a/b/c", False),
        ("Example.com/app", False),
        ("-app", False),
        ("a" * 64, False),
    ],
)
def test_qualified_names(value: str, valid: bool) -> None:
    assert is_qualified_name(value) is valid


def test_name_is_required_unless_generate_name_is_given() -> None:
    assert _texts(validate_object_meta(_meta(namespace="ns"), namespaced=True)) == [
        "metadata.name: Required value: name or generateName is required"
    ]
    assert validate_object_meta(_meta(generateName="web-", namespace="ns"), namespaced=True) == []


def test_bad_name_gets_kubes_subdomain_message() -> None:
    errs = validate_object_meta(_meta(name="Web_1", namespace="ns"), namespaced=True)
    assert _texts(errs) == [f'metadata.name: Invalid value: "Web_1": {SUBDOMAIN_MESSAGE}']


def test_name_validator_is_chosen_per_kind() -> None:
    obj = _meta(name="a.b")
    assert validate_object_meta(obj, namespaced=False) == []
    errs = validate_object_meta(obj, namespaced=False, name_validator="dns1123label")
    assert _texts(errs) == ['metadata.name: Invalid value: "a.b": must not contain dots']
    assert validate_object_meta(_meta(name="a:b"), namespaced=False, name_validator="path") == []
    errs = validate_object_meta(_meta(name="a/b"), namespaced=False, name_validator="path")
    assert _texts(errs) == ["metadata.name: Invalid value: \"a/b\": may not contain '/'"]


def test_generate_name_may_end_in_a_dash_but_not_start_with_one() -> None:
    assert validate_object_meta(_meta(generateName="web-"), namespaced=False) == []
    errs = validate_object_meta(_meta(generateName="-web"), namespaced=False)
    assert [e.field for e in errs] == ["metadata.generateName"]


def test_namespace_rules_follow_scope() -> None:
    errs = validate_object_meta(_meta(name="a"), namespaced=True)
    assert _texts(errs) == ["metadata.namespace: Required value"]
    errs = validate_object_meta(_meta(name="a", namespace="x"), namespaced=False)
    assert _texts(errs) == ["metadata.namespace: Forbidden: not allowed on this type"]
    errs = validate_object_meta(_meta(name="a", namespace="a.b"), namespaced=True)
    assert _texts(errs) == ['metadata.namespace: Invalid value: "a.b": must not contain dots']


def test_labels_report_the_labels_field() -> None:
    errs = validate_labels({"ok": "fine", "bad key": "v", "k": "-bad"}, "metadata.labels")
    assert [e.field for e in errs] == ["metadata.labels", "metadata.labels"]
    assert [e.value for e in errs] == ["bad key", "-bad"]
    assert "name part must consist of alphanumeric characters" in errs[0].detail
    assert errs[1].detail.startswith("a valid label must be an empty string or consist of")
    too_long = validate_labels({"k": "v" * 64}, "metadata.labels")
    assert too_long[0].detail == "must be no more than 63 bytes"


def test_annotation_keys_ignore_case_and_total_size_is_limited() -> None:
    assert (
        validate_object_meta(
            _meta(name="a", annotations={"Example.COM/Key": "x"}), namespaced=False
        )
        == []
    )
    big = {"a": "x" * (256 * 1024)}
    errs = validate_object_meta(_meta(name="a", annotations=big), namespaced=False)
    assert [(e.type, e.field, e.detail) for e in errs] == [
        ("FieldValueTooLong", "metadata.annotations", "may not be more than 262144 bytes")
    ]


def test_finalizers_must_be_qualified_and_not_both_orphan_and_foreground() -> None:
    errs = validate_object_meta(
        _meta(name="a", finalizers=["example.com/cleanup", "bad//name"]), namespaced=False
    )
    assert [(e.field, e.value) for e in errs] == [("metadata.finalizers", "bad//name")]
    errs = validate_object_meta(
        _meta(name="a", finalizers=["orphan", "foregroundDeletion"]), namespaced=False
    )
    assert _texts(errs)[0].endswith("finalizer orphan and foregroundDeletion cannot be both set")


def test_owner_references_need_their_fields_and_one_controller() -> None:
    refs = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "a",
            "uid": "1",
            "controller": True,
        },
        {"apiVersion": "a/b/c", "kind": "Deployment", "name": "b", "uid": "2", "controller": True},
        {"kind": "", "name": "c"},
    ]
    errs = validate_object_meta(_meta(name="x", ownerReferences=refs), namespaced=False)
    assert [e.field for e in errs] == [
        "metadata.ownerReferences[1].apiVersion",
        "metadata.ownerReferences",
        "metadata.ownerReferences[2].apiVersion",
        "metadata.ownerReferences[2].kind",
        "metadata.ownerReferences[2].uid",
    ]
    assert errs[0].detail == "must be <group>/<version> or <version>"
    assert errs[1].detail == (
        'Only one reference can have Controller set to true. Found "true" in references '
        "for ReplicaSet/a and Deployment/b"
    )
    assert errs[1].value == refs
    assert {e.message() for e in errs[2:]} == {"Required value: must not be empty"}


def test_events_cannot_own_objects() -> None:
    refs = [{"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "1"}]
    errs = validate_object_meta(_meta(name="x", ownerReferences=refs), namespaced=False)
    assert errs[0].detail == "/v1, Kind=Event is disallowed from being an owner"


def test_negative_generation_is_invalid() -> None:
    errs = validate_object_meta(_meta(name="a", generation=-1), namespaced=False)
    assert _texts(errs) == [
        "metadata.generation: Invalid value: -1: must be greater than or equal to 0"
    ]


OLD = {
    "metadata": {
        "name": "a",
        "namespace": "ns",
        "uid": "u1",
        "creationTimestamp": "2024-01-01T00:00:00Z",
        "generation": 3,
        "finalizers": ["x.io/f"],
    }
}


def _updated(**changes: Any) -> dict[str, Any]:
    return {"metadata": {**OLD["metadata"], **changes}}


def test_unchanged_metadata_updates_cleanly() -> None:
    assert validate_meta_update(_updated(labels={"a": "b"}), OLD) == []


@pytest.mark.parametrize("field", ["name", "namespace", "uid", "creationTimestamp"])
def test_identity_fields_are_immutable(field: str) -> None:
    errs = validate_meta_update(_updated(**{field: "changed"}), OLD)
    assert _texts(errs) == [f'metadata.{field}: Invalid value: "changed": field is immutable']


def test_generation_cannot_go_backwards() -> None:
    errs = validate_meta_update(_updated(generation=2), OLD)
    assert _texts(errs) == ["metadata.generation: Invalid value: 2: must not be decremented"]


def test_no_new_finalizers_while_deleting() -> None:
    old = {"metadata": {**OLD["metadata"], "deletionTimestamp": "2024-01-02T00:00:00Z"}}
    new = {"metadata": {**old["metadata"], "finalizers": ["x.io/f", "y.io/g"]}}
    assert _texts(validate_meta_update(new, old)) == [
        "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being "
        'deleted, found new finalizers []string{"y.io/g"}'
    ]
    shrunk = {"metadata": {**old["metadata"], "finalizers": []}}
    assert validate_meta_update(shrunk, old) == []


def test_update_still_checks_labels() -> None:
    errs = validate_meta_update(_updated(labels={"k": "bad value"}), OLD)
    assert [e.field for e in errs] == ["metadata.labels"]


def test_label_selector_spec_rules() -> None:
    selector = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "a", "operator": "In"},
            {"key": "b", "operator": "Exists", "values": ["x"]},
            {"key": "c", "operator": "Near", "values": ["x"]},
            {"key": "bad key", "operator": "NotIn", "values": ["bad value"]},
        ],
    }
    assert _texts(validate_label_selector_spec(selector, "spec.selector")) == [
        "spec.selector.matchExpressions[0].values: Required value: "
        "must be specified when `operator` is 'In' or 'NotIn'",
        "spec.selector.matchExpressions[1].values: Forbidden: "
        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        'spec.selector.matchExpressions[2].operator: Invalid value: "Near": '
        "not a valid selector operator",
        'spec.selector.matchExpressions[3].key: Invalid value: "bad key": '
        + validation.qualified_name_errors("bad key")[0],
        'spec.selector.matchExpressions[3].values[0]: Invalid value: "bad value": '
        + validation.label_value_errors("bad value")[0],
    ]
    assert validate_label_selector_spec({"matchLabels": {"app": "web"}}, "spec.selector") == []
