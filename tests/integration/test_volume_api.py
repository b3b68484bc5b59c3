"""The block-storage API in-process: versions, volumes and their lifecycle, isolation."""

from __future__ import annotations

from tests.integration.cloud import Cloud
from tests.integration.volume_support import (
    V3,
    available_volume,
    create_volume,
    wait_gone,
    wait_status,
)


async def test_version_documents(cloud: Cloud) -> None:
    root = await cloud.call("GET", "/volume/")
    assert root.status == 300
    (entry,) = root.body["versions"]
    assert (entry["id"], entry["status"], entry["min_version"]) == ("v3.0", "CURRENT", "3.0")
    assert entry["links"][-1]["href"] == "http://unistack.local/volume/v3/"
    v3 = await cloud.call("GET", "/volume/v3/")
    assert v3.status == 200 and v3.body["versions"][0]["version"] == entry["version"]


async def test_microversions_are_negotiated_and_echoed(cloud: Cloud) -> None:
    reply = await cloud.call(
        "GET", f"{V3}/volumes", token=cloud.admin, headers={"OpenStack-API-Version": "volume 3.27"}
    )
    assert reply.status == 200
    assert reply.headers["openstack-api-version"] == "volume 3.27"
    too_new = {"OpenStack-API-Version": "volume 3.99"}
    reply = await cloud.call("GET", f"{V3}/volumes", token=cloud.admin, headers=too_new)
    assert reply.status == 406


async def test_volume_lifecycle_with_and_without_project_in_path(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    reply = await create_volume(cloud, tenant.token, name="data", metadata={"a": "b"})
    assert reply.status == 202, reply.body
    created = reply.body["volume"]
    assert created["status"] == "creating" and created["volume_type"] == "__DEFAULT__"
    path = f"/volume/v3/{tenant.project_id}/volumes/{created['id']}"
    volume = await wait_status(cloud, path, tenant.token, "available")
    assert volume["os-vol-tenant-attr:tenant_id"] == tenant.project_id
    assert volume["bootable"] == "false" and volume["metadata"] == {"a": "b"}
    listed = await cloud.call("GET", f"{V3}/volumes", token=tenant.token)
    assert [v["id"] for v in listed.body["volumes"]] == [created["id"]]
    update = {"volume": {"name": "renamed", "description": "d"}}
    reply = await cloud.call("PUT", path, update, token=tenant.token)
    assert reply.status == 200 and reply.body["volume"]["name"] == "renamed"
    assert (await cloud.call("DELETE", path, token=tenant.token)).status == 202
    await wait_gone(cloud, path, tenant.token)


async def test_another_projects_volume_is_not_found(cloud: Cloud) -> None:
    owner, other = await cloud.tenant(), await cloud.tenant()
    volume = await available_volume(cloud, owner.token)
    path = f"{V3}/volumes/{volume['id']}"
    reply = await cloud.call("GET", path, token=other.token)
    assert reply.status == 404
    assert reply.body == {
        "itemNotFound": {"code": 404, "message": f"Volume {volume['id']} could not be found."}
    }
    assert (await cloud.call("DELETE", path, token=other.token)).status == 404
    listed = await cloud.call("GET", f"{V3}/volumes/detail", token=other.token)
    assert listed.body["volumes"] == []
    everyone = await cloud.call(
        "GET", f"{V3}/volumes/detail", token=cloud.admin, params={"all_tenants": "1"}
    )
    assert volume["id"] in {v["id"] for v in everyone.body["volumes"]}


async def test_bad_sizes_are_rejected(cloud: Cloud) -> None:
    for size in ("#$%", "", "0", "-1"):
        reply = await create_volume(cloud, cloud.admin, size=size)
        assert reply.status == 400, size
        assert "badRequest" in reply.body
    reply = await create_volume(cloud, cloud.admin, volume_type="no-such-type")
    assert reply.status == 404


async def test_reader_may_look_but_not_write(cloud: Cloud) -> None:
    reader = await cloud.tenant(role="reader")
    assert (await cloud.call("GET", f"{V3}/volumes", token=reader.token)).status == 200
    assert (await create_volume(cloud, reader.token)).status == 403


async def test_paths_cinder_does_not_serve_are_404(cloud: Cloud) -> None:
    assert (await cloud.call("GET", f"{V3}/volumes/", token=cloud.admin)).status == 404
    assert (await cloud.call("DELETE", f"{V3}/volumes", token=cloud.admin)).status == 404
    assert (await cloud.call("PUT", f"{V3}/volumes/", {}, token=cloud.admin)).status == 404


async def test_list_pages_link_to_the_next(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    for _ in range(3):
        await available_volume(cloud, tenant.token)
    seen: list[str] = []
    params: dict[str, str] | None = {"limit": "2"}
    path = f"/volume/v3/{tenant.project_id}/volumes/detail"
    while params is not None:
        page = await cloud.call("GET", path, token=tenant.token, params=params)
        seen += [v["id"] for v in page.body["volumes"]]
        links = page.body.get("volumes_links") or []
        params = None
        if links:
            assert links[0]["href"].startswith(f"http://unistack.local{path}?")
            query = links[0]["href"].split("?", 1)[1]
            params = dict(part.split("=", 1) for part in query.split("&"))
    assert len(seen) == len(set(seen)) == 3
