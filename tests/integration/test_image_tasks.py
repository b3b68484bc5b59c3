"""Glance's tasks API through the in-process gateway: an `import` task fetches its data
over HTTP from a loopback server this test runs, and ends `success` with an active image;
a location that cannot be fetched ends `failure` with a message and leaves no image; only
admins may use the API; expired tasks go away."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import struct
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.integration.cloud import Cloud
from unistack.client.api import NotFound
from unistack.iaas.image import kinds

TASKS = "/image/v2/tasks"
VIRTUAL = 3 * 1024 * 1024
QCOW2 = b"QFI\xfb" + struct.pack(">IQIIQ", 3, 0, 0, 16, VIRTUAL) + bytes(range(256)) * 9000


@pytest.fixture
async def origin() -> AsyncIterator[str]:
    """An HTTP server on loopback serving one qcow2 file (and 404 for anything else)."""

    async def disk(request: web.Request) -> web.Response:
        return web.Response(body=QCOW2, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/disk.qcow2", disk)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def import_task(url: str, name: str, **properties: object) -> dict:
    image = {"name": name, "disk_format": "qcow2", "container_format": "bare", **properties}
    task_input = {"import_from": url, "import_from_format": "qcow2", "image_properties": image}
    return {"type": "import", "input": task_input}


async def wait_task(cloud: Cloud, task_id: str) -> dict:
    async with asyncio.timeout(20):
        while True:
            reply = await cloud.call("GET", f"{TASKS}/{task_id}", token=cloud.admin)
            assert reply.status == 200, reply.body
            if reply.body["status"] in ("success", "failure"):
                return dict(reply.body)
            await asyncio.sleep(0.05)


async def image_names(cloud: Cloud) -> list[str]:
    reply = await cloud.call("GET", "/image/v2/images", token=cloud.admin)
    return [image["name"] for image in reply.body["images"]]


async def test_import_task_fetches_the_data_into_an_active_image(cloud: Cloud, origin: str) -> None:
    body = import_task(f"{origin}/disk.qcow2", "imported", visibility="public")
    created = await cloud.call("POST", TASKS, body, cloud.admin)
    assert created.status == 201, created.body
    task = created.body
    assert task["status"] == "pending" and task["type"] == "import"
    assert task["input"] == body["input"] and task["result"] is None
    assert task["owner"] == cloud.admin_project_id and task["expires_at"] is None
    assert created.headers["location"] == f"/v2/tasks/{task['id']}" == task["self"]
    done = await wait_task(cloud, task["id"])
    assert done["status"] == "success", done
    assert done["message"] == "" and done["expires_at"] > done["created_at"]
    image_id = done["result"]["image_id"]
    image = (await cloud.call("GET", f"/image/v2/images/{image_id}", token=cloud.admin)).body
    assert image["status"] == "active" and image["name"] == "imported"
    assert image["visibility"] == "public" and image["disk_format"] == "qcow2"
    assert image["size"] == len(QCOW2) and image["virtual_size"] == VIRTUAL
    assert image["checksum"] == hashlib.md5(QCOW2).hexdigest()
    data = await cloud.call("GET", f"/image/v2/images/{image_id}/file", token=cloud.admin)
    assert data.status == 200 and data.raw == QCOW2
    listed = await cloud.call("GET", TASKS, token=cloud.admin, params={"status": "success"})
    assert listed.status == 200 and listed.body["schema"] == "/v2/schemas/tasks"
    (item,) = [t for t in listed.body["tasks"] if t["id"] == task["id"]]
    assert item["status"] == "success" and not {"input", "result", "message"} & set(item)
    pending = await cloud.call("GET", TASKS, token=cloud.admin, params={"status": "pending"})
    assert task["id"] not in {t["id"] for t in pending.body["tasks"]}


async def test_a_location_that_cannot_be_fetched_fails_and_leaves_no_image(
    cloud: Cloud, origin: str
) -> None:
    cases = [
        (f"{origin}/missing.qcow2", "404"),
        (f"http://127.0.0.1:{closed_port()}/disk.qcow2", "Could not fetch"),
        ("file:///etc/passwd", "not valid"),
        ("http:///no-host.qcow2", "not valid"),
    ]
    before = await image_names(cloud)
    for n, (url, words) in enumerate(cases):
        created = await cloud.call("POST", TASKS, import_task(url, f"doomed{n}"), cloud.admin)
        assert created.status == 201, created.body
        done = await wait_task(cloud, created.body["id"])
        assert done["status"] == "failure", (url, done)
        assert words in done["message"] and done["result"] is None, (url, done)
        assert done["expires_at"]
    no_url = import_task(f"{origin}/disk.qcow2", "doomed-x")
    del no_url["input"]["import_from"]
    no_formats = import_task(f"{origin}/disk.qcow2", "doomed-y", disk_format=None)
    for body, words in [
        (no_url, "Input does not contain 'import_from' field"),
        (no_formats, "disk_format, container_format must be set"),
        (import_task(f"{origin}/disk.qcow2", "doomed-z", min_ram=-1), "Invalid image_properties"),
    ]:
        created = await cloud.call("POST", TASKS, body, cloud.admin)
        done = await wait_task(cloud, created.body["id"])
        assert done["status"] == "failure" and words in done["message"], done
    assert await image_names(cloud) == before


async def test_admin_only_and_bad_requests(cloud: Cloud, origin: str) -> None:
    tenant = await cloud.tenant()
    body = import_task(f"{origin}/disk.qcow2", "nope")
    for method, path in [("POST", TASKS), ("GET", TASKS), ("GET", f"{TASKS}/x")]:
        reply = await cloud.call(method, path, body if method == "POST" else None, tenant.token)
        assert reply.status == 403, reply.body
        assert reply.body["code"] == "403 Forbidden"
    for bad in (
        {"input": body["input"]},
        {"type": "import"},
        {"type": "export", "input": body["input"]},
        {"type": "import", "input": "x"},
        {**body, "status": "success"},
    ):
        reply = await cloud.call("POST", TASKS, bad, cloud.admin)
        assert reply.status == 400 and reply.body["code"] == "400 Bad Request", (bad, reply.body)
    for query in ({"status": "done"}, {"sort_dir": "up"}, {"limit": "x"}, {"marker": "nope"}):
        reply = await cloud.call("GET", TASKS, token=cloud.admin, params=query)
        assert reply.status == 400, (query, reply.body)
    assert (await cloud.call("GET", f"{TASKS}/nope", token=cloud.admin)).status == 404
    reply = await cloud.call("DELETE", f"{TASKS}/nope", token=cloud.admin)
    assert reply.status == 405 and reply.headers["allow"] == "GET"
    assert (await cloud.call("GET", "/image/v2/schemas/task", token=cloud.admin)).status == 200


async def test_expired_tasks_are_gone(cloud: Cloud) -> None:
    created = await cloud.call("POST", TASKS, import_task("file:///x", "gone"), cloud.admin)
    task_id = created.body["id"]
    await wait_task(cloud, task_id)
    namespace_of = {
        t["metadata"]["name"]: t["metadata"]["namespace"]
        for t in (await cloud.client.list(kinds.TASKS.ref))["items"]
    }
    stored = await cloud.client.get(kinds.TASKS.ref, task_id, namespace_of[task_id])
    stored["status"]["expires_at"] = "2000-01-01T00:00:00Z"
    await cloud.client.update_status(kinds.TASKS.ref, stored)
    async with asyncio.timeout(10):
        while (await cloud.call("GET", f"{TASKS}/{task_id}", token=cloud.admin)).status != 404:
            await asyncio.sleep(0.05)
    listed = await cloud.call("GET", TASKS, token=cloud.admin)
    assert task_id not in {t["id"] for t in listed.body["tasks"]}
    with pytest.raises(NotFound):
        await cloud.client.get(kinds.TASKS.ref, task_id, namespace_of[task_id])
