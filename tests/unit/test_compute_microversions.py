"""The pure decisions behind Nova's microversions: which version allows what, and what each
version shows (no I/O)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from unistack.openstack.compute import migrations, quotas
from unistack.openstack.compute.server_requests import check_tags, tags_allowed
from unistack.openstack.compute.server_views import matches, sanitized_hostname
from unistack.openstack.compute.view_cache import EncodedViews, list_body
from unistack.openstack.microversion import Version
from unistack.openstack.web import OpenStackError

V = Version.parse


def server(tags: list[str]) -> dict[str, Any]:
    return {"metadata": {"name": "s"}, "spec": {"name": "vm", "tags": tags}, "status": {}}


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ({"tags": "a,b"}, True),
        ({"tags": "a,c"}, False),
        ({"tags-any": "c,b"}, True),
        ({"tags-any": "c"}, False),
        ({"not-tags": "a,b"}, False),
        ({"not-tags": "a,c"}, True),
        ({"not-tags-any": "c,b"}, False),
        ({"not-tags-any": "c"}, True),
    ],
)
def test_tag_filters_follow_nova(query: dict[str, str], shown: bool) -> None:
    assert matches(server(["a", "b"]), query) is shown


def test_device_tags_exist_at_2_32_and_from_2_42() -> None:
    assert [tags_allowed(V(v)) for v in ("2.31", "2.32", "2.33", "2.41", "2.42", "2.100")] == [
        False,
        True,
        False,
        False,
        True,
        True,
    ]


def test_tags_are_checked_and_deduplicated() -> None:
    assert check_tags(["a", "b", "a"]) == ["a", "b"]
    for bad in (["a,b"], ["a/b"], [""], ["x" * 61], ["t"] * 51, "a"):
        with pytest.raises(OpenStackError):
            check_tags(bad)


def test_hostnames_come_from_display_names_as_nova_sanitises_them() -> None:
    assert sanitized_hostname("My Server_1.example") == "my-server-1-example"
    assert sanitized_hostname("--ünïcode--") == "ncode"
    assert sanitized_hostname("!!!") == "server"
    assert len(sanitized_hostname("x" * 100)) == 63


def test_quotas_hidden_by_version() -> None:
    assert quotas.hidden_quotas(V("2.35")) == set()
    assert "floating_ips" in quotas.hidden_quotas(V("2.36"))
    assert "injected_files" in quotas.hidden_quotas(V("2.57"))
    assert "server_groups" in quotas.hidden_quotas(V("2.49"), classes=True)
    classes = quotas.hidden_quotas(V("2.50"), classes=True)
    assert "server_groups" not in classes and "floating_ips" in classes
    absolute = {"maxImageMeta": 1, "maxPersonality": 1, "maxTotalInstances": 1}
    assert quotas.versioned_limits(absolute, V("2.38")) == absolute
    assert quotas.versioned_limits(absolute, V("2.57")) == {"maxTotalInstances": 1}


def test_migration_view_grows_with_the_version() -> None:
    obj = {
        "metadata": {"name": "0b8e6a4e-0000-4000-8000-000000000000"},
        "spec": {
            "instance_uuid": "i",
            "migration_type": "resize",
            "old_flavor_id": "1",
            "new_flavor_id": "2",
            "user_id": "u",
            "project_id": "p",
            "created_at": "2026-01-01T00:00:00Z",
        },
        "status": {"status": "finished", "updated_at": None},
    }
    base = migrations.migration_view(obj, V("2.1"))
    assert base["created_at"] == "2026-01-01T00:00:00.000000" and base["updated_at"] is None
    assert isinstance(base["old_instance_type_id"], int) and "migration_type" not in base
    assert migrations.migration_view(obj, V("2.23"))["migration_type"] == "resize"
    assert "uuid" in migrations.migration_view(obj, V("2.59"))
    assert migrations.migration_view(obj, V("2.80"))["project_id"] == "p"
    assert migrations.matches(obj, {"status": "finished"}, V("2.1"))
    assert not migrations.matches(obj, {"instance_uuid": "other"}, V("2.1"))
    assert not migrations.matches(obj, {"project_id": "other"}, V("2.80"))


def test_encoded_views_are_rebuilt_only_when_the_server_or_its_showing_changes() -> None:
    cache = EncodedViews(limit=2)
    built: list[str] = []

    def build(label: str) -> Callable[[], dict[str, Any]]:
        def view() -> dict[str, Any]:
            built.append(label)
            return {"v": label}

        return view

    one = {"metadata": {"name": "a", "resourceVersion": "1"}}
    assert cache.encoded(one, "2.1", build("first")) == b'{"v":"first"}'
    assert cache.encoded(one, "2.1", build("again")) == b'{"v":"first"}'
    assert cache.encoded(one, "2.100", build("newer")) == b'{"v":"newer"}'
    changed = {"metadata": {"name": "a", "resourceVersion": "2"}}
    assert cache.encoded(changed, "2.100", build("changed")) == b'{"v":"changed"}'
    assert built == ["first", "newer", "changed"]
    cache.encoded({"metadata": {"name": "b", "resourceVersion": "1"}}, "2.1", build("b"))
    cache.encoded({"metadata": {"name": "c", "resourceVersion": "1"}}, "2.1", build("c"))
    assert len(cache) == 1  # outgrew its limit: dropped whole, then kept the newest


def test_list_body_splices_encoded_items() -> None:
    assert list_body("servers", [b"{}", b"[]"], None) == b'{"servers":[{},[]]}'
    links = [{"rel": "next", "href": "x"}]
    assert orjson.loads(list_body("servers", [], links)) == {
        "servers": [],
        "servers_links": links,
    }
