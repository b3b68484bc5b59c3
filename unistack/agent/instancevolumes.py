"""The volumes attached to this host's instances, as nova-compute's volume connector sees them.

`unistack.agent.instances.InstanceService` asks: which volumes a server has (kept on disk in
`<records>/<server id>.json`, so a stop/start, an agent restart or the host coming
back after `unistack down` attaches them again), where each volume's file is (this host's
pool: `unistack.agent.blockstorage.VolumeService.volume_file`), and the `Disk` it becomes for
the instance driver (`unistack.dataplane.instances`): a loop device for a system container
(`unistack.dataplane.loopdev`; attaching is idempotent, releasing frees it), the file itself
for a VM (QEMU opens it as virtio-blk).

A volume in another host's pool comes with the connection info its host answered (Cinder's
`driver_volume_type` `nbd`: `unistack.dataplane.nbd`): this host connects to it as os-brick
would, and the volume is a local file the driver takes like one of the pool's. Without a
connection, a volume not in this host's pool is `VolumeNotHere`.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from unistack.dataplane import nbd
from unistack.dataplane.instances import Disk, InstanceError
from unistack.dataplane.loopdev import LoopDevices

_TARGET = re.compile(r"^(?:/dev/)?([a-z][a-z0-9]{0,31})$")


class VolumeFiles(Protocol):
    """This host's volume pool: a volume's file (KeyError when the pool has no such volume)."""

    def volume_file(self, volume_id: str) -> Path: ...


class VolumeNotHere(InstanceError):
    """The volume is not in this host's pool (another host keeps it, or there is no pool)."""


@dataclass(frozen=True)
class VolumeRequest:
    """A volume to attach: its id, the device the guest sees (`/dev/vdb`) and, for a volume
    of another host's pool, where that host serves it."""

    volume_id: str
    device: str
    connection: nbd.NbdTarget | None = None


@dataclass(frozen=True)
class Attached:
    """A volume attached to an instance here: its guest device name and its file."""

    volume_id: str
    target: str  # vdb
    path: str  # the volume's file in the pool, or its connection's file
    connection: dict[str, Any] | None = None  # `nbd.NbdTarget` JSON: another host's volume


def device_target(device: str) -> str:
    """The guest device name of `/dev/vdb` (or `vdb`); ValueError for anything else."""
    found = _TARGET.match(device)
    if found is None:
        raise ValueError(f"device must be like /dev/vdb, not {device!r}")
    return found.group(1)


def parse_volume(body: Any) -> VolumeRequest:
    """One `{"volume_id", "device"}` of a request; ValueError saying what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("each volume must be an object with volume_id and device")
    volume_id, device = body.get("volume_id"), body.get("device")
    if not isinstance(volume_id, str) or not volume_id:
        raise ValueError("volume_id must be a non-empty string")
    if not isinstance(device, str):
        raise ValueError("device must be a string like /dev/vdb")
    device_target(device)
    connection = body.get("connection")
    return VolumeRequest(
        volume_id, device, None if connection is None else nbd.parse_target(connection)
    )


def with_volume(attached: list[Attached], item: Attached) -> list[Attached]:
    """`attached` with `item` added; InstanceError when its device is another volume's."""
    for known in attached:
        if known.target == item.target and known.volume_id != item.volume_id:
            raise InstanceError(f"device /dev/{item.target} holds volume {known.volume_id}")
    return [*(known for known in attached if known.volume_id != item.volume_id), item]


class AttachedVolumes:
    """The attachment records of this host's instances and the devices they need."""

    def __init__(
        self,
        records: Path,
        files: VolumeFiles | None,
        loops: LoopDevices,
        connections: nbd.NbdConnections | None = None,
    ) -> None:
        self.records = records
        self.records.mkdir(parents=True, exist_ok=True)
        self.files = files
        self.loops = loops
        self.connections = connections

    def _record(self, server_id: str) -> Path:
        return self.records / f"{server_id}.volumes.json"

    def listed(self, server_id: str) -> list[Attached]:
        try:
            raw = self._record(server_id).read_bytes()
        except FileNotFoundError:
            return []
        return [Attached(**item) for item in orjson.loads(raw)]

    def save(self, server_id: str, attached: list[Attached]) -> None:
        target = self._record(server_id)
        temporary = target.with_suffix(".new")
        temporary.write_bytes(orjson.dumps([asdict(item) for item in attached]))
        os.replace(temporary, target)

    def forget(self, server_id: str) -> None:
        self._record(server_id).unlink(missing_ok=True)

    def locate(self, volume: VolumeRequest) -> Attached:
        """The volume's file in this host's pool or its connection's, or VolumeNotHere."""
        if volume.connection is not None:
            if self.connections is None:
                raise VolumeNotHere(f"volume {volume.volume_id}: this host connects to no volume")
            path = self.connections.path(volume.volume_id)
            return Attached(
                volume.volume_id, device_target(volume.device), str(path),
                volume.connection.to_json(),
            )  # fmt: skip
        if self.files is None:
            raise VolumeNotHere(f"volume {volume.volume_id}: this host has no volume pool")
        try:
            path = self.files.volume_file(volume.volume_id)
        except (KeyError, ValueError):
            raise VolumeNotHere(
                f"volume {volume.volume_id} is not in this host's pool and came without a "
                "connection to the host that keeps it"
            ) from None
        return Attached(volume.volume_id, device_target(volume.device), str(path))

    async def disk(self, item: Attached, block: bool) -> Disk:
        """What the driver gets: a loop device on the file (`block`: a container) or the file;
        another host's volume connected first."""
        if item.connection is not None:
            await self._connect(item)
        if not block:
            return Disk(item.volume_id, item.path, item.target)
        try:
            device = await asyncio.to_thread(self.loops.attach, Path(item.path))
        except OSError as error:
            raise InstanceError(f"volume {item.volume_id}: no loop device: {error}") from None
        return Disk(item.volume_id, device, item.target)

    async def _connect(self, item: Attached) -> None:
        if self.connections is None:
            raise VolumeNotHere(f"volume {item.volume_id}: this host connects to no volume")
        target = nbd.parse_target(item.connection)
        try:
            await asyncio.to_thread(self.connections.connect, item.volume_id, target)
        except nbd.NbdError as error:
            raise InstanceError(str(error)) from None

    async def disks(self, server_id: str, block: bool) -> tuple[Disk, ...]:
        return tuple([await self.disk(item, block) for item in self.listed(server_id)])

    async def release(self, server_id: str, item: Attached, shared: bool = False) -> None:
        """Free the loop devices on the volume's file (a VM's file has none), unless another
        server here still has the volume (a multiattach volume: its servers share the one
        loop device the file has) and not `shared` (every server is going down)."""
        if not shared and self.held_elsewhere(server_id, item.volume_id):
            return
        for device, _ in await asyncio.to_thread(self.loops.backed_by, Path(item.path)):
            await asyncio.to_thread(self.loops.detach, device)
        if item.connection is not None and self.connections is not None:
            await asyncio.to_thread(self.connections.disconnect, item.volume_id)

    async def release_all(self, server_id: str, shared: bool = False) -> None:
        for item in self.listed(server_id):
            await self.release(server_id, item, shared)

    def held_elsewhere(self, server_id: str, volume_id: str) -> bool:
        """Whether a server other than `server_id` has the volume attached on this host."""
        for record in self.records.glob("*.volumes.json"):
            other = record.name.removesuffix(".volumes.json")
            if other != server_id and any(i.volume_id == volume_id for i in self.listed(other)):
                return True
        return False
