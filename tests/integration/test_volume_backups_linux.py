"""The agent's backup routes (`unistack.agent.blockstorage`) on a real `LoopXfsPool`: a backup
of a volume or of its snapshot is the data at that time, and restoring writes it back over the
volume (or makes a new one). The registry is a stand-in that keeps each pushed qcow2 and
serves it back as `ImageCache.pull_artifact` would.

Needs root, /dev/loop-control, mkfs.xfs and qemu-img (skipped with the reason otherwise); the
pool lives in a fresh `/tmp/unistack-backups-*` directory, undone even when a test fails.
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
        or not shutil.which("mkfs.xfs")
        or not shutil.which("qemu-img"),
        reason="needs root, /dev/loop-control, mkfs.xfs (xfsprogs) and qemu-img (qemu-utils)",
    ),
]


class _Registry:
    """`BackupStore` and `ImageCache.pull_artifact` over one directory of pushed backups."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True)

    async def push(self, backup_id: str, volume_id: str, disk: Path) -> int:
        shutil.copyfile(disk, self.root / backup_id)
        return disk.stat().st_size

    async def forget(self, backup_id: str) -> None:
        (self.root / backup_id).unlink(missing_ok=True)

    async def pull_artifact(self, reference: str) -> Path:
        return self.root / reference.rpartition(":")[2]


@pytest.fixture
async def agent() -> AsyncIterator[tuple[aiohttp.ClientSession, str, Path, _Registry]]:
    root = Path(tempfile.mkdtemp(prefix="unistack-backups-"))
    try:
        registry = _Registry(root / "registry")
        volumes = VolumeService(
            volumepool.LoopXfsPool(root / "volumes", 4 * GIB),
            registry,  # type: ignore[arg-type]
            "registry.test:5000",
            root / "scratch",
            backups=registry,  # type: ignore[arg-type]
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
                yield session, str(server.make_url("")), root / "volumes" / "pool", registry
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


def _write(path: Path, data: bytes, offset: int = 4096) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(data)


def _read(path: Path, size: int, offset: int = 4096) -> bytes:
    with open(path, "rb") as file:
        file.seek(offset)
        return file.read(size)


async def test_backup_then_restore_over_the_volume_and_into_a_new_one(agent: Any) -> None:
    session, url, pool, registry = agent
    assert (await _call(session, "PUT", f"{url}/volumes/v1", {"size_gb": 1}))[0] == 200
    volume = pool / "volumes" / "v1"
    _write(volume, b"BACKED-UP-MARKER")
    status, answer = await _call(session, "PUT", f"{url}/backups/b1", {"volume_id": "v1"})
    assert status == 200 and answer["size"] > 0
    assert (registry.root / "b1").read_bytes()[:4] == b"QFI\xfb"  # a qcow2
    _write(volume, b"OVERWRITTEN-DATA")
    status, _ = await _call(session, "POST", f"{url}/volumes/v1/restore", {"backup_id": "b1"})
    assert status == 200
    assert _read(volume, 16) == b"BACKED-UP-MARKER" and volume.stat().st_size == GIB
    assert not (pool / "volumes" / "unistack-restore-v1").exists()
    body = {"size_gb": 2, "source": {"backup": "b1"}}
    assert (await _call(session, "PUT", f"{url}/volumes/v2", body))[0] == 200
    assert _read(pool / "volumes" / "v2", 16) == b"BACKED-UP-MARKER"
    assert (await _call(session, "DELETE", f"{url}/backups/b1"))[0] == 200
    assert not (registry.root / "b1").exists()


async def test_a_backup_of_a_snapshot_has_the_snapshot_data(agent: Any) -> None:
    session, url, pool, _ = agent
    assert (await _call(session, "PUT", f"{url}/volumes/v1", {"size_gb": 1}))[0] == 200
    volume = pool / "volumes" / "v1"
    _write(volume, b"AT-SNAPSHOT-TIME")
    assert (await _call(session, "PUT", f"{url}/snapshots/s1", {"volume_id": "v1"}))[0] == 200
    _write(volume, b"AFTER-SNAPSHOT!!")
    body = {"volume_id": "v1", "snapshot_id": "s1"}
    assert (await _call(session, "PUT", f"{url}/backups/b2", body))[0] == 200
    assert not (pool / "volumes" / "unistack-backup-b2").exists()
    status, _ = await _call(session, "POST", f"{url}/volumes/v1/restore", {"backup_id": "b2"})
    assert status == 200 and _read(volume, 16) == b"AT-SNAPSHOT-TIME"
    missing = await _call(session, "POST", f"{url}/volumes/nope/restore", {"backup_id": "b2"})
    assert missing[0] == 404
    bad = await _call(session, "POST", f"{url}/volumes/v1/restore", {})
    assert bad[0] == 400
