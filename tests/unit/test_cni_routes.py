"""Deciding which inter-node pod routes to replace or delete."""

from __future__ import annotations

from unistack.dataplane import routes
from unistack.dataplane.routes import RouteChange


def test_nothing_to_do_when_in_sync() -> None:
    desired = {"10.244.1.0/24": "192.168.0.2"}
    assert routes.plan_route_changes(desired, dict(desired)) == []


def test_new_moved_and_stale_routes() -> None:
    desired = {"10.244.1.0/24": "192.168.0.2", "10.244.2.0/24": "192.168.0.9"}
    observed = {"10.244.2.0/24": "192.168.0.3", "10.244.3.0/24": "192.168.0.4"}
    assert routes.plan_route_changes(desired, observed) == [
        RouteChange("delete", "10.244.3.0/24", "192.168.0.4"),
        RouteChange("replace", "10.244.1.0/24", "192.168.0.2"),
        RouteChange("replace", "10.244.2.0/24", "192.168.0.9"),
    ]


def test_host_routes_compare_equal_however_spelled() -> None:
    observed = routes.parse_observed([{"dst": "10.244.9.9", "gateway": "192.168.0.2"}])
    assert routes.plan_route_changes({"10.244.9.9/32": "192.168.0.2"}, observed) == []


def test_routes_without_gateway_are_not_ours_to_manage() -> None:
    assert routes.parse_observed([{"dst": "10.244.0.0/24", "dev": "unistack0"}]) == {}


def test_change_lines_carry_the_protocol_tag() -> None:
    assert routes.change_line(RouteChange("replace", "10.244.1.0/24", "192.168.0.2"), 199) == (
        "route replace 10.244.1.0/24 via 192.168.0.2 proto 199"
    )
    assert routes.change_line(RouteChange("delete", "10.244.1.0/24"), 199) == (
        "route delete 10.244.1.0/24 proto 199"
    )
