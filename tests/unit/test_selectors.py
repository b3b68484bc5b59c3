"""Label and field selectors: apimachinery's grammar, matching and error wording."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from unistack.apiserver import errors, fieldselectors
from unistack.apiserver.selectors import (
    label_selector_from_spec,
    parse_field_selector,
    parse_label_selector,
    selector_to_string,
)


def _bad_request(call: Callable[..., object], *args: object) -> str:
    with pytest.raises(errors.ApiError) as caught:
        call(*args)
    assert caught.value.code == 400
    assert caught.value.reason == "BadRequest"
    return caught.value.message


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app=web", {"app": "db"}, False),
        ("app=web", {}, False),
        ("app==web", {"app": "web"}, True),
        ("app!=web", {"app": "db"}, True),
        ("app!=web", {}, True),
        ("app!=web", {"app": "web"}, False),
        ("tier in (a,b)", {"tier": "b"}, True),
        ("tier in (a,b)", {"tier": "c"}, False),
        ("tier in (a,b)", {}, False),
        ("tier notin (a,b)", {"tier": "c"}, True),
        ("tier notin (a,b)", {}, True),
        ("tier notin (a,b)", {"tier": "a"}, False),
        ("app", {"app": ""}, True),
        ("app", {"other": "x"}, False),
        ("!app", {"other": "x"}, True),
        ("!app", {"app": "x"}, False),
        ("app=web,tier in (a)", {"app": "web", "tier": "a"}, True),
        ("app=web,tier in (a)", {"app": "web", "tier": "b"}, False),
        ("n>3", {"n": "4"}, True),
        ("n>3", {"n": "3"}, False),
        ("n<3", {"n": "x"}, False),
        ("env=", {"env": ""}, True),
        ("env=", {"env": "x"}, False),
        ("mode in (in,notin)", {"mode": "notin"}, True),
        ("", {"anything": "x"}, True),
    ],
)
def test_label_selector_matches_like_kube(
    text: str, labels: dict[str, str], expected: bool
) -> None:
    assert parse_label_selector(text).matches(labels) is expected


def test_whitespace_is_ignored_between_tokens() -> None:
    selector = parse_label_selector("  app = web ,  tier  notin  ( a , b ) ")
    assert str(selector) == "app=web,tier notin (a,b)"


def test_empty_selector_is_empty_and_others_are_not() -> None:
    assert parse_label_selector("").empty
    assert not parse_label_selector("a").empty


def test_string_form_sorts_requirements_by_key_and_values() -> None:
    selector = parse_label_selector("z notin (q,p),a=1,!m,x in (foo,,baz)")
    assert str(selector) == "a=1,!m,x in (,baz,foo),z notin (p,q)"


def test_empty_value_set_means_the_empty_string() -> None:
    selector = parse_label_selector("a in ()")
    assert selector.matches({"a": ""})
    assert not selector.matches({"a": "x"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a in", "unable to parse requirement: found '' expected: '('"),
        ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        (",a", "found ',', expected: !, identifier, or 'end of string'"),
        ("a,", "found '', expected: identifier after ','"),
        (
            "a!b",
            "unable to parse requirement: found '!', expected: in, notin, =, ==, !=, gt, lt",
        ),
    ],
)
def test_syntax_errors_are_worded_like_apimachinery(text: str, message: str) -> None:
    assert _bad_request(parse_label_selector, text) == message


def test_invalid_label_key_is_rejected() -> None:
    message = _bad_request(parse_label_selector, "-bad=x")
    assert message.startswith('unable to parse requirement: <nil>: Invalid value: "-bad": ')
    assert "name part must consist of alphanumeric characters" in message


def test_invalid_label_value_names_the_value_path() -> None:
    message = _bad_request(parse_label_selector, "app=we$b")
    assert message.startswith('unable to parse requirement: values[0][app]: Invalid value: "we$b"')


def test_greater_than_needs_an_integer() -> None:
    message = _bad_request(parse_label_selector, "n>x")
    assert "for 'Gt', 'Lt' operators, the value must be an integer" in message


SPEC = {
    "matchLabels": {"b": "2", "a": "1"},
    "matchExpressions": [
        {"key": "c", "operator": "In", "values": ["z", "y"]},
        {"key": "d", "operator": "DoesNotExist"},
        {"key": "e", "operator": "NotIn", "values": ["x"]},
        {"key": "f", "operator": "Exists"},
    ],
}


def test_selector_spec_string_is_sorted_by_key() -> None:
    assert selector_to_string(SPEC) == "a=1,b=2,c in (y,z),!d,e notin (x),f"


def test_selector_spec_matches() -> None:
    selector = label_selector_from_spec(SPEC)
    assert selector.matches({"a": "1", "b": "2", "c": "y", "f": ""})
    assert not selector.matches({"a": "1", "b": "2", "c": "y"})  # f missing
    assert not selector.matches({"a": "1", "b": "2", "c": "y", "f": "", "d": "x"})
    assert not selector.matches({"a": "1", "b": "2", "c": "y", "f": "", "e": "x"})


def test_empty_selector_spec_matches_everything() -> None:
    assert label_selector_from_spec({}).matches({"x": "y"})
    assert selector_to_string({}) == ""


def test_selector_spec_rejects_unknown_operators_and_empty_in() -> None:
    bad = {"matchExpressions": [{"key": "a", "operator": "Has"}]}
    assert (
        _bad_request(label_selector_from_spec, bad)
        == '"Has" is not a valid label selector operator'
    )
    empty = {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}
    message = _bad_request(label_selector_from_spec, empty)
    assert "for 'in', 'notin' operators, values set can't be empty" in message


POD = {
    "metadata": {"name": "web-1", "namespace": "prod"},
    "spec": {"nodeName": "node-a", "hostNetwork": True},
    "status": {"phase": "Running"},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metadata.name=web-1", True),
        ("metadata.name==web-1", True),
        ("metadata.name!=web-1", False),
        ("metadata.name=web-1,metadata.namespace=prod", True),
        ("metadata.name=web-1,metadata.namespace=dev", False),
        ("spec.nodeName=node-a,status.phase!=Pending", True),
        ("spec.nodeName=", False),
        ("spec.hostNetwork=true", True),
        ("status.podIP=", True),
        ("", True),
    ],
)
def test_field_selector_matches_dotted_paths(text: str, expected: bool) -> None:
    assert parse_field_selector(text).matches(POD) is expected


def test_absent_typed_fields_read_as_their_zero_value() -> None:
    node = {"metadata": {"name": "n"}, "spec": {}}
    assert parse_field_selector("spec.unschedulable=false").matches(node)
    assert parse_field_selector("status.replicas=0").matches({"status": {}})
    assert parse_field_selector("status.successful=2").matches({"status": {"succeeded": 2}})


def test_event_source_falls_back_to_reporting_controller() -> None:
    event = {"source": {}, "reportingController": "kubelet", "involvedObject": {"name": "p"}}
    assert parse_field_selector("source=kubelet").matches(event)
    assert parse_field_selector("reportingComponent=kubelet,involvedObject.name=p").matches(event)
    event["source"] = {"component": "scheduler"}
    assert parse_field_selector("source=scheduler").matches(event)


def test_escaped_commas_and_equals_are_part_of_the_value() -> None:
    selector = parse_field_selector(r"metadata.name=a\,b\=c")
    assert selector.matches({"metadata": {"name": "a,b=c"}})
    assert str(selector) == r"metadata.name=a\,b\=c"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name", "invalid selector: 'name'; can't understand 'name'"),
        ("a=b=c", "invalid field selector: unescaped character in value: 61"),
        (r"a=\q", r"invalid field selector: invalid escape sequence: \q"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_field_selector_syntax_errors(text: str, message: str) -> None:
    assert _bad_request(parse_field_selector, text) == message


def test_requires_exact_match_finds_pinned_fields() -> None:
    selector = parse_field_selector("metadata.name=x,spec.nodeName!=y")
    assert selector.requires_exact_match("metadata.name") == "x"
    assert selector.requires_exact_match("spec.nodeName") is None


def test_check_supported_allows_the_kinds_fields() -> None:
    parse_field_selector("spec.nodeName=a,status.phase=Running").check_supported("Pod")
    parse_field_selector("type=Warning,involvedObject.uid=u").check_supported("Event")
    parse_field_selector("metadata.name=a").check_supported("Widget")
    parse_field_selector("spec.color=red").check_supported("Widget", extra={"spec.color"})


def test_check_supported_rejects_other_fields() -> None:
    selector = parse_field_selector("spec.nodeName=a")
    assert _bad_request(selector.check_supported, "ConfigMap") == (
        "field label not supported: spec.nodeName"
    )
    assert _bad_request(parse_field_selector("type=x").check_supported, "Pod") == (
        "field label not supported: type"
    )


def test_every_kind_supports_name_and_namespace() -> None:
    for fields in fieldselectors.SUPPORTED_FIELDS.values():
        assert {"metadata.name", "metadata.namespace"} <= fields
