"""Helpers of the block-storage tests (the gateway mounts the volume service): waiting for a
volume or snapshot to settle (the controller works asynchronously)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.integration.cloud import Cloud, Reply

V3 = "/volume/v3"
LATEST = {"OpenStack-API-Version": "volume 3.50"}


async def wait_status(
    cloud: Cloud, path: str, token: str, wanted: str, member: str = "volume", timeout: float = 10
) -> dict[str, Any]:
    """GET `path` until its `member` has status `wanted`; the object."""
    async with asyncio.timeout(timeout):
        while True:
            reply = await cloud.call("GET", path, token=token, headers=LATEST)
            assert reply.status == 200, reply.body
            if reply.body[member]["status"] == wanted:
                return dict(reply.body[member])
            await asyncio.sleep(0.02)


async def wait_gone(cloud: Cloud, path: str, token: str, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while (await cloud.call("GET", path, token=token, headers=LATEST)).status != 404:
            await asyncio.sleep(0.02)


async def create_volume(cloud: Cloud, token: str, **fields: Any) -> Reply:
    body = {"volume": {"size": 1, **fields}}
    return await cloud.call("POST", f"{V3}/volumes", body, token=token)


async def available_volume(cloud: Cloud, token: str, **fields: Any) -> dict[str, Any]:
    reply = await create_volume(cloud, token, **fields)
    assert reply.status == 202, reply.body
    volume_id = reply.body["volume"]["id"]
    return await wait_status(cloud, f"{V3}/volumes/{volume_id}", token, "available")
