"""The storage backend the volume controller drives, and its fake.

`Backend` is what a pool must do for Cinder's volume manager: create a volume (empty, or as
a copy of a snapshot, another volume or an image), extend it, snapshot it, delete either.
`FakeBackend` keeps nothing, as Cinder's fake driver: what exists and how big it is are the
Volume and VolumeSnapshot objects themselves (`status.provisioned`, `spec.size`), so a new
leader needs nothing from the old one. The file/reflink pool of the data plane implements the
same Protocol later. Every call is idempotent, since a reconcile may be retried after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

BACKEND_NAME = "fake-backend"
POOL_NAME = "fake"
CAPACITY_GB = 1000
# What the backend reports to the scheduler; a volume type's extra specs must match them.
CAPABILITIES = {
    "volume_backend_name": BACKEND_NAME,
    "storage_protocol": "fake",
    "vendor_name": "unistack",
    "driver_version": "1.0.0",
}


class BackendError(Exception):
    """The backend could not do what was asked (the volume or snapshot goes to error)."""


class Backend(Protocol):
    async def create_volume(self, volume_id: str, size: int, source: str | None) -> None: ...

    async def extend_volume(self, volume_id: str, size: int) -> None: ...

    async def delete_volume(self, volume_id: str) -> None: ...

    async def create_snapshot(self, snapshot_id: str, volume_id: str) -> None: ...

    async def delete_snapshot(self, snapshot_id: str) -> None: ...


@dataclass
class FakeBackend:
    """A pool that stores nothing and succeeds, except for the ids in `failing`, whose
    creation fails (for tests of the error path)."""

    failing: set[str] = field(default_factory=set)

    async def create_volume(self, volume_id: str, size: int, source: str | None) -> None:
        if volume_id in self.failing:
            raise BackendError(f"the pool refused volume {volume_id}")

    async def extend_volume(self, volume_id: str, size: int) -> None:
        return None

    async def delete_volume(self, volume_id: str) -> None:
        return None

    async def create_snapshot(self, snapshot_id: str, volume_id: str) -> None:
        if snapshot_id in self.failing:
            raise BackendError(f"the pool refused snapshot {snapshot_id}")

    async def delete_snapshot(self, snapshot_id: str) -> None:
        return None
