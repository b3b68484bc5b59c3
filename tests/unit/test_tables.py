"""`as=Table` rendering: columns, cells, ages and the row object policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from unistack.apiserver import errors, tables
from unistack.apiserver.resources import Column, ResourceType
from unistack.apiserver.tables import compile_jsonpath, human_duration, to_table

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def _rt(columns: tuple[Column, ...] = ()) -> ResourceType:
    return ResourceType("example.com", "v1", "Widget", "widgets", "widget", True, columns=columns)


def _obj(name: str = "w", age: timedelta = timedelta(minutes=5), **extra: Any) -> dict[str, Any]:
    created = (NOW - age).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = {"name": name, "namespace": "ns", "creationTimestamp": created}
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta, **extra}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (182, "3m2s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 5 * 60, "3h5m"),
        (8 * 3600 + 59 * 60, "8h"),
        (47 * 3600, "47h"),
        (2 * 86400, "2d"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (12 * 86400, "12d"),
        (729 * 86400, "729d"),
        (2 * 365 * 86400 + 10 * 86400, "2y10d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration_matches_kube(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_default_columns_are_name_and_age() -> None:
    table = to_table(_rt(), [_obj()], list_meta={"resourceVersion": "7"}, now=NOW)
    assert table["kind"] == "Table"
    assert table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "7"}
    names = [(c["name"], c["type"], c["format"]) for c in table["columnDefinitions"]]
    assert names == [("Name", "string", "name"), ("Age", "date", "")]
    assert table["columnDefinitions"][0]["description"].startswith("Name must be unique")
    assert table["rows"][0]["cells"] == ["w", "5m"]


def test_missing_or_bad_creation_timestamps() -> None:
    obj = {"metadata": {"name": "x"}}
    assert to_table(_rt(), [obj], list_meta={}, now=NOW)["rows"][0]["cells"] == ["x", "<unknown>"]
    obj["metadata"]["creationTimestamp"] = "yesterday"
    assert to_table(_rt(), [obj], list_meta={}, now=NOW)["rows"][0]["cells"] == ["x", "<invalid>"]


def test_row_object_policies() -> None:
    obj = _obj(spec={"size": 1})
    by_policy = {
        policy: to_table(_rt(), [obj], include_object=policy, list_meta={}, now=NOW)["rows"][0]
        for policy in ("None", "Metadata", "Object", "")
    }
    assert by_policy["None"]["object"] is None
    assert by_policy["Object"]["object"] == obj
    partial = {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    }
    assert by_policy["Metadata"]["object"] == partial
    assert by_policy[""]["object"] == partial


def test_unknown_include_object_is_a_bad_request() -> None:
    with pytest.raises(errors.ApiError) as caught:
        to_table(_rt(), [], include_object="All", list_meta={}, now=NOW)
    assert caught.value.code == 400
    assert caught.value.message == 'unrecognized includeObject value: "All"'


CRD_COLUMNS = (
    Column("Replicas", ".spec.replicas", "integer"),
    Column("Ready", '.status.conditions[?(@.type=="Ready")].status'),
    Column("Ports", ".spec.ports[*].port"),
    Column("App", ".metadata.labels.app"),
    Column("Ratio", ".status.ratio", "number", priority=1),
    Column("Paused", ".spec.paused", "boolean"),
    Column("Started", ".status.startTime", "date"),
    Column("Missing", ".status.nothing"),
    Column("Summary", lambda obj: f"{len(obj['spec']['ports'])} ports"),
)


def test_crd_style_columns() -> None:
    obj = _obj(
        spec={"replicas": 3.0, "ports": [{"port": 80}, {"port": 443}], "paused": False},
        status={
            "conditions": [
                {"type": "Synced", "status": "False"},
                {"type": "Ready", "status": "True"},
            ],
            "ratio": 1,
            "startTime": (NOW - timedelta(hours=4)).isoformat(),
        },
    )
    obj["metadata"]["labels"] = {"app": "web"}
    table = to_table(_rt(CRD_COLUMNS), [obj], list_meta={}, now=NOW)
    assert table["rows"][0]["cells"] == [
        "w",
        3,
        "True",
        "80,443",
        "web",
        1.0,
        False,
        "4h",
        None,
        "2 ports",
    ]
    definitions = table["columnDefinitions"]
    assert [d["name"] for d in definitions][:3] == ["Name", "Replicas", "Ready"]
    assert definitions[5]["priority"] == 1
    assert definitions[1]["description"] == (
        "Custom resource definition column (in JSONPath format): .spec.replicas"
    )


def test_cells_of_the_wrong_type_are_empty() -> None:
    obj = _obj(spec={"replicas": "three", "paused": "no"})
    columns = (
        Column("Replicas", ".spec.replicas", "integer"),
        Column("P", ".spec.paused", "boolean"),
    )
    assert to_table(_rt(columns), [obj], list_meta={}, now=NOW)["rows"][0]["cells"] == [
        "w",
        None,
        None,
    ]


def test_string_columns_print_non_strings() -> None:
    obj = _obj(spec={"n": 2, "flag": True, "map": {"a": 1}})
    columns = (Column("N", ".spec.n"), Column("F", ".spec.flag"), Column("M", ".spec.map"))
    cells = to_table(_rt(columns), [obj], list_meta={}, now=NOW)["rows"][0]["cells"]
    assert cells == ["w", "2", "true", '{"a":1}']


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (".a.b", [1]),
        ("{.a.b}", [1]),
        (".a['b']", [1]),
        (".list[0].name", ["x"]),
        (".list[-1].name", ["y"]),
        (".list[5].name", []),
        (".list[*].name", ["x", "y"]),
        (".list[?(@.name=='y')].v", [2]),
        (".list[?(@.v>1)].name", ["y"]),
        (".list[?(@.v)].name", ["x", "y"]),
        ('.list[?(@.name!="x")].name', ["y"]),
        (".dots.a\\.b", ["dotted"]),
        (".a.*", [1]),
        (".nope.deeper", []),
    ],
)
def test_jsonpath_subset(path: str, expected: list[Any]) -> None:
    node = {
        "a": {"b": 1},
        "list": [{"name": "x", "v": 1}, {"name": "y", "v": 2}],
        "dots": {"a.b": "dotted"},
    }
    assert compile_jsonpath(path)(node) == expected


@pytest.mark.parametrize("path", ["spec", ".a[", ".a[?(@.x=~y)]", ".a[x]"])
def test_jsonpath_rejects_what_it_cannot_read(path: str) -> None:
    with pytest.raises(ValueError):
        compile_jsonpath(path)


def test_age_accepts_naive_now() -> None:
    assert tables.age("2024-05-01T11:59:00Z", NOW.replace(tzinfo=None)) == "60s"
