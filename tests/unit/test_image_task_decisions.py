"""The pure decisions behind Glance's tasks and Nova's multinic actions: an import task's
input, which URLs are fetched, a list query's page, an address taken off a port."""

from __future__ import annotations

import pytest

from unistack.openstack.compute.interfaces import fixed_ip_address, without_address
from unistack.openstack.image.fetch import FetchError, check_url
from unistack.openstack.image.task_import import ImportFailed, import_request
from unistack.openstack.image.tasks import ListQuery, check_create, expired, select
from unistack.openstack.web import OpenStackError


def test_import_request_names_the_missing_field() -> None:
    good = {"import_from": "http://h/x", "import_from_format": "raw", "image_properties": {}}
    assert import_request(good).url == "http://h/x"
    for key in good:
        with pytest.raises(ImportFailed, match=f"Input does not contain '{key}' field"):
            import_request({k: v for k, v in good.items() if k != key})
    with pytest.raises(ImportFailed):
        import_request({**good, "image_properties": "x"})


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://h/x", "http:///x", "x"])
def test_only_http_urls_with_a_host_are_fetched(url: str) -> None:
    with pytest.raises(FetchError, match="not valid"):
        check_url(url)
    check_url("https://example.org/disk.qcow2")


def test_create_body_needs_a_known_type_and_an_object_input() -> None:
    assert check_create({"type": "import", "input": {"a": 1}}) == ("import", {"a": 1})
    for body in ({"type": "import"}, {"type": "api_image_import", "input": {}}, {"input": {}}):
        with pytest.raises(OpenStackError) as raised:
            check_create(body)
        assert raised.value.status == 400


def test_select_filters_sorts_and_pages_with_a_marker() -> None:
    tasks = [
        {"id": f"t{n}", "type": "import", "status": "success" if n % 2 else "failure",
         "created_at": f"2026-01-0{n}T00:00:00Z"}
        for n in range(1, 6)
    ]  # fmt: skip
    wanted = ListQuery("success", None, "created_at", True, 2, None)
    page, more = select(tasks, wanted)
    assert [t["id"] for t in page] == ["t5", "t3"] and more
    wanted.marker = "t3"
    page, more = select(tasks, wanted)
    assert [t["id"] for t in page] == ["t1"] and not more
    assert expired({"expires_at": "2026-01-01T00:00:00Z"}, "2026-01-02T00:00:00Z")
    assert not expired({"expires_at": None}, "2026-01-02T00:00:00Z")


def test_an_address_comes_off_the_port_that_holds_it() -> None:
    port = {"fixed_ips": [{"ip_address": "10.0.0.2"}, {"ip_address": "10.0.0.3"}]}
    assert without_address(port, "10.0.0.3") == [{"ip_address": "10.0.0.2"}]
    assert without_address(port, "10.0.0.9") is None
    assert without_address({"fixed_ips": [{"ip_address": "10.0.0.2"}]}, "10.0.0.2") == []
    assert fixed_ip_address({"address": "fd00::1"}) == "fd00::1"
    with pytest.raises(OpenStackError):
        fixed_ip_address({"address": "10.0.0.256"})
