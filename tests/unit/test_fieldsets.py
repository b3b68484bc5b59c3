"""Field sets: FieldsV1 encoding, path printing, and the walks apply is built on."""

from __future__ import annotations

import json

import pytest

from unistack.apiserver import fieldsets, patchkeys

POD = patchkeys.KINDS["Pod"]


def pod() -> dict[str, object]:
    return {
        "metadata": {"name": "p", "finalizers": ["b", "a"]},
        "spec": {
            "containers": [{"name": "c", "ports": [{"containerPort": 80}], "args": ["x"]}],
            "nodeSelector": {"disk": "ssd"},
        },
    }


def test_fields_of_a_pod_in_fieldsv1() -> None:
    encoded = fieldsets.encode(fieldsets.fields_of(pod(), POD))
    assert json.dumps(encoded) == json.dumps(
        {
            "f:metadata": {"f:finalizers": {'v:"a"': {}, 'v:"b"': {}}, "f:name": {}},
            "f:spec": {
                "f:containers": {
                    'k:{"name":"c"}': {
                        ".": {},
                        "f:args": {},
                        "f:name": {},
                        "f:ports": {
                            'k:{"containerPort":80,"protocol":"TCP"}': {
                                ".": {},
                                "f:containerPort": {},
                            }
                        },
                    }
                },
                "f:nodeSelector": {},
            },
        }
    )


def test_fieldsv1_round_trips() -> None:
    fields = fieldsets.fields_of(pod(), POD)
    assert fieldsets.decode(fieldsets.encode(fields)) == fields


@pytest.mark.parametrize("bad", [[], {"x:y": {}}, {"k:[1]": {}}, {"f:a": 3}])
def test_decoding_what_is_not_fieldsv1_fails(bad: object) -> None:
    with pytest.raises(ValueError):
        fieldsets.decode(bad)


def test_paths_print_as_structured_merge_diff_prints_them() -> None:
    keyed = fieldsets.item_element({"containerPort": 80}, ("containerPort", "protocol"))
    path = (("f", "spec"), ("f", "ports"), keyed, ("f", "name"))
    assert fieldsets.path_string(path) == '.spec.ports[containerPort=80,protocol="TCP"].name'
    value = fieldsets.item_element("kubernetes", ())
    assert fieldsets.path_string((("f", "finalizers"), value)) == '.finalizers[="kubernetes"]'


def test_keys_sort_numbers_before_strings() -> None:
    items = [fieldsets.item_element(value, ()) for value in ("a", 10, 9)]
    encoded = fieldsets.encode((("f", "l"), item) for item in items)
    assert list(encoded["f:l"]) == ["v:9", "v:10", 'v:"a"']


def test_compare_reports_added_modified_and_removed() -> None:
    old = {"spec": {"a": 1, "b": 2, "c": {"d": 1}}}
    new = {"spec": {"a": 1, "b": 3, "e": {"f": 1}}}
    result = fieldsets.compare(old, new, patchkeys.EMPTY)
    spec = ("f", "spec")
    assert result.modified == {(spec, ("f", "b"))}
    assert result.added == {(spec, ("f", "e")), (spec, ("f", "e"), ("f", "f"))}
    assert result.removed == {(spec, ("f", "c")), (spec, ("f", "c"), ("f", "d"))}


def containers(*specs: str) -> dict[str, object]:
    return {"spec": {"containers": [{"name": spec[0], "image": spec[1:]} for spec in specs]}}


@pytest.mark.parametrize(
    ("live", "applied", "expected"),
    [
        (("a1", "x1", "b1"), ("a2", "b2"), ["a2", "x1", "b2"]),
        # structured-merge-diff: a reordered item waits for its turn in the applied order
        (("a1", "x1", "b1"), ("b2", "a2"), ["x1", "b2", "a2"]),
        (("a1",), ("n1", "a2"), ["n1", "a2"]),
    ],
)
def test_merge_orders_keyed_items_as_structured_merge_diff(
    live: tuple[str, ...], applied: tuple[str, ...], expected: list[str]
) -> None:
    merged = fieldsets.merge(containers(*live), containers(*applied), POD)
    assert merged == containers(*expected)


def test_merge_refuses_an_applied_list_repeating_a_key() -> None:
    with pytest.raises(ValueError, match="duplicate entries"):
        fieldsets.merge(containers("a1"), containers("b1", "b2"), POD)


def test_remove_takes_out_whole_items() -> None:
    obj = {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}
    item = fieldsets.item_element({"name": "b"}, ("name",))
    removed = fieldsets.remove(obj, [(("f", "spec"), ("f", "containers"), item)], POD)
    assert removed == {"spec": {"containers": [{"name": "a"}]}}
