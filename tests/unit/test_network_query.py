"""The Neutron list machinery (filters, tags, sorting, pagination, fields) and rule checks."""

from __future__ import annotations

import pytest
from starlette.datastructures import QueryParams

from unistack.openstack.network import query, rules
from unistack.openstack.web import OpenStackError

ITEMS = [
    {"id": "1", "name": "b", "shared": False, "tags": ["x"]},
    {"id": "2", "name": "a", "shared": True, "tags": ["x", "y"]},
    {"id": "3", "name": "c", "shared": False, "tags": []},
]


def chosen(text: str) -> list[str]:
    params = QueryParams(text)
    return [i["id"] for i in query.sort([i for i in ITEMS if query.matches(i, params)], params)]


def test_filters_and_tags() -> None:
    assert chosen("shared=true") == ["2"]
    assert chosen("name=a&name=c") == ["2", "3"]
    assert chosen("tags=x,y") == ["2"]
    assert chosen("tags-any=y") == ["2"]
    assert chosen("not-tags=x") == ["3"]
    assert chosen("unknown=1") == ["1", "2", "3"]


def test_sorting() -> None:
    assert chosen("sort_key=name&sort_dir=desc") == ["3", "1", "2"]
    with pytest.raises(OpenStackError):
        chosen("sort_key=name&sort_dir=sideways")


def test_pagination_links() -> None:
    def url(change: dict[str, str]) -> str:
        return "u?" + "&".join(f"{k}={v}" for k, v in change.items())

    page, links = query.paginate(ITEMS, QueryParams("limit=2"), url, "things")
    assert [i["id"] for i in page] == ["1", "2"]
    assert links["things_links"] == [{"rel": "next", "href": "u?marker=2"}]
    page, links = query.paginate(ITEMS, QueryParams("limit=2&marker=2"), url, "things")
    assert [i["id"] for i in page] == ["3"]
    assert links["things_links"][0]["rel"] == "previous"


def test_rules_are_validated() -> None:
    rule = rules.checked_rule(
        {"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22}
    )
    assert rule["ethertype"] == "IPv4" and rule["protocol"] == "tcp"
    cases = [
        (
            {"protocol": "tcp", "port_range_min": -16, "port_range_max": 80},
            "Invalid value for port -16",
        ),
        (
            {"protocol": "tcp", "port_range_min": 80, "port_range_max": 79},
            "port_range_min must be <= port_range_max",
        ),
        (
            {"protocol": "icmp", "port_range_min": 1, "port_range_max": 256},
            "Invalid value for ICMP code",
        ),
        ({"protocol": "icmp", "port_range_max": 6}, "ICMP type (port-range-min) is missing"),
        ({"protocol": "bogus"}, "not supported"),
        ({"remote_ip_prefix": "::/0"}, "Conflicting value ethertype"),
    ]
    for extra, message in cases:
        with pytest.raises(OpenStackError) as caught:
            rules.checked_rule({"direction": "ingress", **extra})
        assert message in caught.value.message
    same = rules.checked_rule({"direction": "egress", "remote_ip_prefix": "0.0.0.0/0"})
    assert rules.same_rule(same, rules.checked_rule({"direction": "egress"}))
