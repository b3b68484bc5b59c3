"""The volume controller against the real in-process API server and a fake backend that
records what it was asked: volumes from images (read through an image API stand-in), backend
failures, finalizer-driven delete."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from unistack.client.api import Client
from unistack.iaas import crds
from unistack.iaas.records import Records, status_of
from unistack.iaas.volume import kinds
from unistack.iaas.volume.backend import FakeBackend
from unistack.iaas.volume.controller import VolumeController
from unistack.iaas.volume.kinds import FINALIZER
from unistack.openstack.volume.app import volume_records
from unistack.runtime.informer import SharedInformers

IMAGE = {
    "id": "img-1",
    "name": "cirros",
    "status": "active",
    "size": 3 * 1024**3,
    "disk_format": "qcow2",
    "container_format": "bare",
    "min_disk": 0,
    "hw_disk_bus": "virtio",
}
PROJECT = "0123456789abcdef0123456789abcdef"


class RecordingBackend(FakeBackend):
    """The fake backend, with the calls the controller made (in order)."""

    def __init__(self, failing: set[str]) -> None:
        super().__init__(failing)
        self.calls: list[tuple[str, ...]] = []

    async def create_volume(self, volume_id: str, size: int, source: str | None) -> None:
        self.calls.append(("create_volume", volume_id, str(size), str(source)))
        await super().create_volume(volume_id, size, source)

    async def delete_volume(self, volume_id: str) -> None:
        self.calls.append(("delete_volume", volume_id))


async def _read_image(image_id: str) -> tuple[int, Any]:
    return (200, IMAGE) if image_id == "img-1" else (404, {"message": "not found"})


@contextlib.asynccontextmanager
async def _leading(records: Records, backend: RecordingBackend) -> AsyncIterator[None]:
    """A volume controller at work, as while its process holds the service's Lease."""
    task = asyncio.create_task(VolumeController(records, backend, _read_image).run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def records(client: Client) -> AsyncIterator[Records]:
    await crds.install(client, kinds.ALL)
    records = volume_records(client, SharedInformers(client))
    await records.start()
    yield records
    await records.stop()


@pytest.fixture
async def running(records: Records) -> AsyncIterator[tuple[Records, RecordingBackend]]:
    backend = RecordingBackend(failing={"bad-volume"})
    async with _leading(records, backend):
        yield records, backend


async def _create(records: Records, name: str, **spec: Any) -> None:
    await records.create(
        kinds.VOLUMES,
        name,
        {"project_id": PROJECT, "size": 1, **spec},
        {"status": "creating"},
        finalizers=(FINALIZER,),
    )


async def _settled(records: Records, name: str) -> dict[str, Any]:
    informer = records.informer(kinds.VOLUMES)
    await informer.wait_until(
        lambda: status_of(records.get(kinds.VOLUMES, name)).get("status") != "creating"
    )
    return status_of(records.get(kinds.VOLUMES, name))


async def test_volume_from_image_records_image_metadata(
    running: tuple[Records, RecordingBackend],
) -> None:
    records, backend = running
    await _create(records, "from-image", imageRef="img-1", size=3)
    status = await _settled(records, "from-image")
    assert status["status"] == "available" and status["bootable"] is True
    assert status["volume_image_metadata"]["image_name"] == "cirros"
    assert status["volume_image_metadata"]["hw_disk_bus"] == "virtio"
    assert backend.calls == [("create_volume", "from-image", "3", "image:img-1")]


async def test_missing_image_or_backend_failure_is_error(
    running: tuple[Records, RecordingBackend],
) -> None:
    records, _ = running
    await _create(records, "no-image", imageRef="img-2")
    await _create(records, "bad-volume")
    assert (await _settled(records, "no-image"))["status"] == "error"
    assert (await _settled(records, "bad-volume"))["status"] == "error"


async def test_delete_frees_the_backend_then_the_object(
    running: tuple[Records, RecordingBackend],
) -> None:
    records, backend = running
    await _create(records, "doomed")
    await _settled(records, "doomed")
    assert backend.calls == [("create_volume", "doomed", "1", "None")]
    await records.delete(kinds.VOLUMES, "doomed")
    await records.informer(kinds.VOLUMES).wait_until(
        lambda: records.get(kinds.VOLUMES, "doomed") is None
    )
    assert backend.calls[-1] == ("delete_volume", "doomed")


async def test_a_new_leader_tears_down_what_the_old_one_provisioned(records: Records) -> None:
    first, second = RecordingBackend(set()), RecordingBackend(set())
    async with _leading(records, first):
        await _create(records, "handed-over", size=2)
        assert (await _settled(records, "handed-over"))["status"] == "available"
    async with _leading(records, second):
        await records.delete(kinds.VOLUMES, "handed-over")
        await records.informer(kinds.VOLUMES).wait_until(
            lambda: records.get(kinds.VOLUMES, "handed-over") is None
        )
    assert first.calls == [("create_volume", "handed-over", "2", "None")]
    assert second.calls == [("delete_volume", "handed-over")]
