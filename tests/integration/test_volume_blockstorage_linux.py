"""The agent's block storage service (`unistack.agent.blockstorage`) over its HTTP routes,
on a real `LoopXfsPool`: volumes, snapshots and clones as independent files, extend, data
out, upload to an image service stand-in, errors as JSON.

Needs root, /dev/loop-control and mkfs.xfs (skipped with the reason otherwise); the pool is
made in a fresh `/tmp/unistack-blockstorage-*` directory and undone (loop devices, mounts)
even when a test fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from unistack.agent.blockstorage import VolumeService
from unistack.dataplane import loopdev, volumepool

GIB = 1 << 30

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        os.geteuid() != 0
        or not os.path.exists(loopdev.LOOP_CONTROL)
        or not shutil.which("mkfs.xfs"),
        reason="needs root, /dev/loop-control and mkfs.xfs (xfsprogs)",
    ),
]


class _Images:
    """`ImageCache.pull_artifact` for one raw image file."""

    def __init__(self, image: Path) -> None:
        self.image = image
        self.pulled: list[str] = []

    async def pull_artifact(self, reference: str) -> Path:
        self.pulled.append(reference)
        return self.image


class _Glance:
    """Glance's `PUT /v2/images/{id}/file`, keeping what it received."""

    def __init__(self) -> None:
        self.received: dict[str, tuple[bytes, int]] = {}  # first bytes, size
        self.tokens: list[str] = []
        self.app = web.Application()
        self.app.router.add_put("/v2/images/{id}/file", self.put)

    async def put(self, request: web.Request) -> web.Response:
        self.tokens.append(request.headers.get("X-Auth-Token", ""))
        head, size = b"", 0
        async for chunk in request.content.iter_any():
            head, size = (head + chunk)[:16], size + len(chunk)
        self.received[request.match_info["id"]] = (head, size)
        return web.Response(status=204)


@pytest.fixture
async def service() -> AsyncIterator[tuple[aiohttp.ClientSession, str, Path, _Images]]:
    root = Path(tempfile.mkdtemp(prefix="unistack-blockstorage-"))
    image = root / "image.raw"
    image.write_bytes(b"IMAGE-DATA" + bytes(4096))
    try:
        images = _Images(image)
        volumes = VolumeService(
            volumepool.LoopXfsPool(root / "volumes", 4 * GIB),
            images,  # type: ignore[arg-type]
            "registry.test:5000",
            root / "scratch",
        )
        try:
            await volumes.start()
        except volumepool.PoolUnavailable as error:
            pytest.skip(f"loop-mounted xfs not available here: {error}")
        app = web.Application()
        volumes.add_routes(app)
        server = TestServer(app)
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as session:
                yield session, str(server.make_url("")), root / "volumes" / "pool", images
        finally:
            await server.close()
    finally:
        volumepool.cleanup(root)
        shutil.rmtree(root, ignore_errors=True)


async def _call(
    session: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    async with session.request(method, url, json=body) as answer:
        return answer.status, await answer.json()


def _write(path: Path, data: bytes) -> None:
    with open(path, "r+b") as file:
        file.write(data)


async def test_volumes_snapshots_and_clones_are_independent_files(service: Any) -> None:
    session, base, pool, _ = service
    assert (await _call(session, "PUT", f"{base}/volumes/v1", {"size_gb": 1}))[0] == 200
    assert (await _call(session, "PUT", f"{base}/volumes/v1", {"size_gb": 1}))[0] == 200  # again
    volume = pool / "volumes" / "v1"
    assert volume.stat().st_size == GIB
    _write(volume, b"original")
    assert (await _call(session, "PUT", f"{base}/snapshots/s1", {"volume_id": "v1"}))[0] == 200
    _write(volume, b"changed!")
    body = {"size_gb": 2, "source": {"snapshot": "s1"}}
    assert (await _call(session, "PUT", f"{base}/volumes/fromsnap", body))[0] == 200
    body = {"size_gb": 1, "source": {"volume": "v1"}}
    assert (await _call(session, "PUT", f"{base}/volumes/clone", body))[0] == 200
    _write(volume, b"third...")
    assert (pool / "snapshots" / "s1").read_bytes()[:8] == b"original"
    assert (pool / "volumes" / "fromsnap").read_bytes()[:8] == b"original"
    assert (pool / "volumes" / "fromsnap").stat().st_size == 2 * GIB
    assert (pool / "volumes" / "clone").read_bytes()[:8] == b"changed!"

    assert (await _call(session, "POST", f"{base}/volumes/v1/extend", {"size_gb": 3}))[0] == 200
    assert volume.stat().st_size == 3 * GIB
    async with session.get(f"{base}/volumes/clone/data") as answer:
        assert answer.status == 200
        assert answer.content_length == GIB
        assert (await answer.content.read(8)) == b"changed!"

    status, usage = await _call(session, "GET", f"{base}/pool")
    assert status == 200 and 0 < usage["free_bytes"] <= usage["capacity_bytes"]
    assert usage["provisioned_bytes"] == (3 + 2 + 1) * GIB

    for path in ("volumes/v1", "volumes/fromsnap", "volumes/clone", "snapshots/s1"):
        assert (await _call(session, "DELETE", f"{base}/{path}"))[0] == 200
        assert (await _call(session, "DELETE", f"{base}/{path}"))[0] == 200  # gone: no error
    assert not any((pool / "volumes").iterdir()) and not any((pool / "snapshots").iterdir())


async def test_a_volume_from_an_image_pulls_its_artifact(service: Any) -> None:
    session, base, pool, images = service
    body = {"size_gb": 1, "source": {"image": "img-1"}}
    assert (await _call(session, "PUT", f"{base}/volumes/boot", body))[0] == 200
    assert images.pulled == ["registry.test:5000/openstack/images:img-1"]
    assert (pool / "volumes" / "boot").read_bytes()[:10] == b"IMAGE-DATA"
    assert (pool / "volumes" / "boot").stat().st_size == GIB


async def test_upload_puts_the_volume_bytes_to_the_image_service(service: Any) -> None:
    session, base, pool, _ = service
    await _call(session, "PUT", f"{base}/volumes/up", {"size_gb": 1})
    _write(pool / "volumes" / "up", b"payload")
    glance = _Glance()
    server = TestServer(glance.app)
    await server.start_server()
    try:
        url = str(server.make_url("/v2/images/img-9/file"))
        body = {"url": url, "token": "tok", "disk_format": "raw"}
        status, answer = await _call(session, "POST", f"{base}/volumes/up/upload", body)
    finally:
        await server.close()
    assert (status, answer) == (200, {"state": "done"})
    assert glance.tokens == ["tok"]
    head, size = glance.received["img-9"]
    assert size == GIB and head[:7] == b"payload"


async def test_errors_are_json_with_their_status(service: Any) -> None:
    session, base, _, _ = service
    assert (await _call(session, "PUT", f"{base}/volumes/x", {"size_gb": 0}))[0] == 400
    assert (await _call(session, "PUT", f"{base}/volumes/x", {"size_gb": 1, "source": 3}))[0] == 400
    body = {"size_gb": 1, "source": {"volume": "missing"}}
    status, answer = await _call(session, "PUT", f"{base}/volumes/x", body)
    assert status == 404 and "missing" in answer["message"]
    await _call(session, "PUT", f"{base}/volumes/y", {"size_gb": 2})
    status, answer = await _call(session, "PUT", f"{base}/volumes/y", {"size_gb": 1})
    assert status == 409 and answer["message"]
    assert (await _call(session, "POST", f"{base}/volumes/y/extend", {"size_gb": 1}))[0] == 400
    assert (await _call(session, "POST", f"{base}/volumes/nope/extend", {"size_gb": 1}))[0] == 404
    body = {"volume_id": "nope"}
    assert (await _call(session, "PUT", f"{base}/snapshots/s", body))[0] == 404
    async with session.put(f"{base}/volumes/z", data=b"{not json") as answer:
        assert answer.status == 400 and "JSON" in (await answer.json())["message"]
    async with session.get(f"{base}/volumes/nope/data") as answer:
        assert answer.status == 404
    await _call(session, "DELETE", f"{base}/volumes/y")
