"""Images through the compute API (Nova's image proxy) and server snapshots (createImage)."""

from __future__ import annotations

import asyncio

from tests.integration.cloud import Cloud
from tests.integration.test_compute_api import active_image, call
from tests.integration.test_compute_servers import boot, ready_cloud, wait_server


async def test_images_read_in_novas_shape_with_metadata(cloud: Cloud) -> None:
    image_id = await active_image(cloud, min_ram=64, os_distro="cirros")
    tenant = await cloud.tenant()
    listed = await call(cloud, "GET", "/images", tenant.token)
    assert image_id in {i["id"] for i in listed.body["images"]}
    shown = await call(cloud, "GET", f"/images/{image_id}", tenant.token)
    image = shown.body["image"]
    assert image["status"] == "ACTIVE" and image["progress"] == 100
    assert image["minRam"] == 64 and image["metadata"] == {"os_distro": "cirros"}
    assert image["OS-EXT-IMG-SIZE:size"] == 1024
    filtered = await call(cloud, "GET", "/images/detail?minRam=65", tenant.token)
    assert image_id not in {i["id"] for i in filtered.body["images"]}
    meta = f"/images/{image_id}/metadata"
    merged = await call(cloud, "POST", meta, cloud.admin, {"metadata": {"k": "v"}})
    assert merged.body["metadata"] == {"os_distro": "cirros", "k": "v"}
    item = await call(cloud, "GET", f"{meta}/k", tenant.token)
    assert item.body == {"meta": {"k": "v"}}
    assert (await call(cloud, "DELETE", f"{meta}/k", cloud.admin)).status == 204
    missing = await call(cloud, "GET", "/images/11111111-2222-3333-4444-555555555555", tenant.token)
    assert missing.status == 404
    assert missing.body["itemNotFound"]["message"] == "Image not found."


async def test_create_image_snapshots_a_server(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    server_id = await boot(cloud, tenant.token, image)
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    body = {"createImage": {"name": "snap", "metadata": {"why": "backup"}}}
    reply = await call(cloud, "POST", f"/servers/{server_id}/action", tenant.token, body)
    assert reply.status == 202, reply.body
    snapshot_id = reply.headers["location"].rsplit("/", 1)[-1]
    async with asyncio.timeout(10):
        while True:
            shown = (await call(cloud, "GET", f"/images/{snapshot_id}", tenant.token)).body
            if shown["image"]["status"] == "ACTIVE":
                break
            await asyncio.sleep(0.02)
    assert shown["image"]["server"]["id"] == server_id
    assert shown["image"]["metadata"]["why"] == "backup"
    assert shown["image"]["metadata"]["image_type"] == "snapshot"
    glance = await cloud.call("GET", f"/image/v2/images/{snapshot_id}", token=tenant.token)
    assert glance.body["owner"] == tenant.project_id and glance.body["size"] == 1024
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    assert (await call(cloud, "DELETE", f"/images/{snapshot_id}", tenant.token)).status == 204


async def test_backups_rotate_and_password_is_empty(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    server_id = await boot(cloud, tenant.token, image)
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    made = []
    for n in range(3):
        body = {"createBackup": {"name": f"b{n}", "backup_type": "daily", "rotation": 2}}
        reply = await call(cloud, "POST", f"/servers/{server_id}/action", tenant.token, body)
        assert reply.status == 202, reply.body
        made.append(reply.headers["location"].rsplit("/", 1)[-1])
        await wait_server(cloud, server_id, tenant.token, "ACTIVE")
        await asyncio.sleep(1.05)  # Glance's created_at counts seconds; rotation goes by it
    listed = await call(cloud, "GET", f"/images?server={server_id}", tenant.token)
    assert {i["id"] for i in listed.body["images"]} == set(made[1:])
    password = await call(cloud, "GET", f"/servers/{server_id}/os-server-password", tenant.token)
    assert password.body == {"password": ""}
    path = f"/servers/{server_id}/os-server-password"
    assert (await call(cloud, "DELETE", path, tenant.token)).status == 204
