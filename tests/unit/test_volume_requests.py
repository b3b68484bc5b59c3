"""Parsing Cinder's request values and list conventions, without I/O."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from unistack.openstack.volume.service import as_bool, as_size, check_metadata, page
from unistack.openstack.web import OpenStackError


def _request(query: str) -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/",
            "query_string": query.encode(),
            "headers": [],
        }
    )


def _objects() -> list[dict[str, Any]]:
    return [
        {"metadata": {"name": f"v{n}"}, "spec": {"created_at": f"2030-01-0{n}", "size": n}}
        for n in range(1, 5)
    ]


def _value(obj: dict[str, Any], key: str) -> Any:
    return obj["metadata"]["name"] if key == "id" else obj["spec"].get(key)


def _ids(objects: list[dict[str, Any]]) -> list[str]:
    return [obj["metadata"]["name"] for obj in objects]


def test_sizes() -> None:
    assert as_size(3) == as_size("3") == 3
    for bad in ("#$%", "", "0", "-1", True, None, 0):
        with pytest.raises(OpenStackError) as raised:
            as_size(bad)
        assert raised.value.status == 400


def test_booleans_and_metadata() -> None:
    assert as_bool("True", "x") is True and as_bool("0", "x") is False
    with pytest.raises(OpenStackError):
        as_bool("maybe", "x")
    assert check_metadata({"a": "b"}) == {"a": "b"}
    for bad in ([], {"a": 1}, {"": "x"}, {"k": "v" * 256}):
        with pytest.raises(OpenStackError):
            check_metadata(bad)


def test_newest_first_then_marker_and_limit() -> None:
    assert _ids(page(_objects(), _request(""), _value)) == ["v4", "v3", "v2", "v1"]
    paged = page(_objects(), _request("marker=v3&limit=1"), _value)
    assert _ids(paged) == ["v2"]
    ascending = page(_objects(), _request("sort=size:asc"), _value)
    assert _ids(ascending) == ["v1", "v2", "v3", "v4"]
    assert _ids(page(_objects(), _request("sort_key=size&sort_dir=asc&offset=3"), _value)) == ["v4"]


def test_bad_list_parameters_are_400() -> None:
    for query in ("limit=invalid", "sort_key=invalid", "sort=size:sideways"):
        with pytest.raises(OpenStackError) as raised:
            page(_objects(), _request(query), _value)
        assert raised.value.status == 400
