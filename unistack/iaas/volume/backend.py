"""The storage backend the volume controller drives, and its fake.

`Backend` is what a pool must do for Cinder's volume manager: create a volume (empty, or as
a copy of a snapshot, another volume or an image), extend it, snapshot it, delete either.
`FakeBackend` keeps nothing, as Cinder's fake driver: what exists and how big it is are the
Volume and VolumeSnapshot objects themselves (`status.provisioned`, `spec.size`), so a new
leader needs nothing from the old one. Every call is idempotent, since a reconcile may be
retried after a crash.

Where a volume goes is a `Placement`'s choice (Cinder's scheduler): `FixedPlacement` sends
every volume to the fake backend's one pool when its capabilities satisfy the volume type;
`unistack.iaas.volume.agentbackend.HostBackends` chooses among the hosts' real pools (the
file/reflink pool of the data plane, on each host's agent) and keeps the fake for the rest.
A backend that holds data (`DataBackend`) also uploads a volume to an image and keeps
backups (of the volume, or of one of its snapshots) and restores them into a volume. Backups
of a volume on the fake backend are state only: there is nothing to copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from unistack.iaas.volume.decisions import unmatched_specs

BACKEND_NAME = "fake-backend"
POOL_NAME = "fake"
FAKE_HOST = f"volnode@{BACKEND_NAME}#{POOL_NAME}"  # Cinder's host@backend#pool
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


@dataclass(frozen=True)
class Placed:
    """Where a volume lives: its Cinder host (`node@backend#pool`) and that backend's name."""

    host: str
    backend: str


class Placement(Protocol):
    async def place(self, volume: dict[str, Any], extra_specs: dict[str, str]) -> Placed | None:
        """The host for a new volume, or None when no backend satisfies the specs."""
        ...


class DataBackend(Protocol):
    """What only a backend that keeps the bytes can do."""

    def holds_data(self, volume_id: str) -> bool: ...

    async def upload_volume(self, volume_id: str, image_id: str, disk_format: str) -> None: ...

    async def create_backup(
        self, backup_id: str, volume_id: str, snapshot_id: str | None = None
    ) -> int: ...

    async def restore_backup(self, backup_id: str, volume_id: str) -> None: ...

    async def delete_backup(self, backup_id: str, volume_id: str | None) -> None: ...


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


class FixedPlacement:
    """Every volume on the fake backend's pool, when its capabilities satisfy the type."""

    async def place(self, volume: dict[str, Any], extra_specs: dict[str, str]) -> Placed | None:
        if unmatched_specs(extra_specs, CAPABILITIES):
            return None
        return Placed(FAKE_HOST, BACKEND_NAME)
