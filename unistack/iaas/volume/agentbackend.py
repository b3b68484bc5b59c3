"""Volumes on real hosts: the backend that asks a host's agent, as the volume manager asks
cinder-volume.

A host whose Node advertises a volume pool (annotation `unistack.io/volume-pool`, its
capacity in bytes, written by `unistack.agent.node`) keeps volumes as files in that pool;
`AgentBackend` carries each call to its agent through the API server's node proxy,
`/api/v1/nodes/{node}/proxy/volumes/{id}` (`unistack.agent.blockstorage` answers).

`HostBackends` is what the volume controller holds: it places a new volume (Cinder's
scheduler: the pools whose capabilities satisfy the volume type, the one with the most free
space; a clone goes where its source is, since a reflink never crosses pools; the fake
backend when no real pool will do) and then sends every call to the volume's recorded host
(`status.host`, `node@unistack-pool#pool`). A volume on the fake backend — every volume when
no agent has a pool, as in tests without root — stays with `FakeBackend`, as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from unistack.client.api import ApiError, Client
from unistack.client.transport import TransportError
from unistack.iaas.records import Records, spec_of, status_of
from unistack.iaas.volume import decisions
from unistack.iaas.volume.backend import (
    BACKEND_NAME,
    Backend,
    BackendError,
    FakeBackend,
    FixedPlacement,
    Placed,
)
from unistack.iaas.volume.kinds import SNAPSHOTS, VOLUMES
from unistack.runtime.informer import Informer

log = logging.getLogger(__name__)
Obj = dict[str, Any]
POOL_ANNOTATION = "unistack.io/volume-pool"
POOL_BACKEND = "unistack-pool"
POOL_NAME = "pool"
GIB = 1024**3
POLL_INTERVAL = 1.0
# What a host's file pool reports to the scheduler (a type's extra specs may name them).
POOL_CAPABILITIES = {
    "volume_backend_name": POOL_BACKEND,
    "storage_protocol": "file",
    "vendor_name": "unistack",
    "driver_version": "1.0.0",
}


def pool_capacity(node: Obj | None) -> int:
    """The capacity in bytes of the volume pool a Node advertises (0: none)."""
    annotations = ((node or {}).get("metadata") or {}).get("annotations") or {}
    try:
        return max(int(annotations.get(POOL_ANNOTATION) or 0), 0)
    except ValueError:
        return 0


def pool_host(node: str) -> str:
    return f"{node}@{POOL_BACKEND}#{POOL_NAME}"


def node_of(host: str) -> str:
    """The node of a Cinder host string (`node@backend#pool`)."""
    return host.partition("@")[0]


def is_pool_host(host: str) -> bool:
    return host.partition("@")[2].partition("#")[0] == POOL_BACKEND


def choose_pool(free: dict[str, int], wanted_bytes: int) -> str | None:
    """The node with the most free bytes that holds `wanted_bytes` (ties: by name)."""
    fitting = [(-space, node) for node, space in free.items() if space >= wanted_bytes]
    return min(fitting)[1] if fitting else None


def agent_source(volume: Obj) -> Obj | None:
    """What the agent makes a volume from, as `unistack.agent.blockstorage` takes it."""
    spec = spec_of(volume)
    for field, kind in (
        ("snapshot_id", "snapshot"),
        ("source_volid", "volume"),
        ("backup_id", "backup"),
        ("imageRef", "image"),
    ):
        if spec.get(field):
            return {kind: str(spec[field])}
    return None


class AgentBackend:
    """Calls to one host's block storage service through the node proxy."""

    def __init__(self, client: Client, image_url: str, token: Callable[[], str]) -> None:
        self.client = client
        self.image_url = image_url.rstrip("/")  # Glance's endpoint, the agent uploads there
        self.token = token

    async def ask(self, method: str, node: str, path: str, body: Any = None) -> Obj:
        try:
            return await self.client.request_json(
                method, f"/api/v1/nodes/{node}/proxy/{path}", body=body
            )
        except (ApiError, TransportError) as error:
            raise BackendError(f"host {node}: {getattr(error, 'message', error)}") from None

    async def until_done(self, method: str, node: str, path: str, body: Any = None) -> Obj:
        """Repeat a job's request (an upload, a backup) while the agent says it runs."""
        while True:
            answer = await self.ask(method, node, path, body)
            if answer.get("state") != "running":
                return answer
            await asyncio.sleep(POLL_INTERVAL)

    async def free_bytes(self, node: str) -> int | None:
        """The pool's free bytes, or None when the agent does not answer."""
        try:
            return int((await self.ask("GET", node, "pool"))["free_bytes"])
        except (BackendError, KeyError, ValueError, TypeError) as error:
            log.warning("volume pool of %s: %s", node, error)
            return None

    async def create_volume(self, node: str, volume_id: str, size: int, source: Obj | None) -> None:
        body = {"size_gb": size, "source": source}
        await self.ask("PUT", node, f"volumes/{volume_id}", body)

    async def extend_volume(self, node: str, volume_id: str, size: int) -> None:
        await self.ask("POST", node, f"volumes/{volume_id}/extend", {"size_gb": size})

    async def delete_volume(self, node: str, volume_id: str) -> None:
        await self.ask("DELETE", node, f"volumes/{volume_id}")

    async def create_snapshot(self, node: str, snapshot_id: str, volume_id: str) -> None:
        await self.ask("PUT", node, f"snapshots/{snapshot_id}", {"volume_id": volume_id})

    async def delete_snapshot(self, node: str, snapshot_id: str) -> None:
        await self.ask("DELETE", node, f"snapshots/{snapshot_id}")

    async def upload_volume(
        self, node: str, volume_id: str, image_id: str, disk_format: str
    ) -> None:
        body = {
            "url": f"{self.image_url}/v2/images/{image_id}/file",
            "token": self.token(),
            "disk_format": disk_format,
        }
        await self.until_done("POST", node, f"volumes/{volume_id}/upload", body)

    async def create_backup(
        self, node: str, backup_id: str, volume_id: str, snapshot_id: str | None
    ) -> int:
        body = {"volume_id": volume_id, "snapshot_id": snapshot_id}
        answer = await self.until_done("PUT", node, f"backups/{backup_id}", body)
        return int(answer.get("size") or 0)

    async def restore_backup(self, node: str, backup_id: str, volume_id: str) -> None:
        body = {"backup_id": backup_id}
        await self.until_done("POST", node, f"volumes/{volume_id}/restore", body)

    async def delete_backup(self, node: str, backup_id: str) -> None:
        await self.ask("DELETE", node, f"backups/{backup_id}")


class HostBackends:
    """The controller's `Backend`, `Placement` and `DataBackend`: a volume's host's pool
    when it has one, else the in-process fake."""

    def __init__(
        self,
        nodes: Informer,
        records: Records,
        agent: AgentBackend,
        fake: Backend | None = None,
    ) -> None:
        self.nodes = nodes
        self.records = records
        self.agent = agent
        self.fake: Backend = fake or FakeBackend()

    def pools(self) -> list[str]:
        """The nodes that advertise a volume pool."""
        return sorted(
            node["metadata"]["name"] for node in self.nodes.cache.list() if pool_capacity(node)
        )

    def host_of(self, volume_id: str | None) -> str | None:
        """The recorded host of a volume when it is on a real pool that is still there."""
        host = str(status_of(self.records.get(VOLUMES, volume_id)).get("host") or "")
        if is_pool_host(host) and pool_capacity(self.nodes.cache.get(node_of(host))):
            return host
        return None

    def holds_data(self, volume_id: str) -> bool:
        return self.host_of(volume_id) is not None

    # --- placement --------------------------------------------------------------------------

    async def place(self, volume: Obj, extra_specs: dict[str, str]) -> Placed | None:
        """A real pool when one satisfies the type (the source's, for a clone), else the
        fake backend when it does."""
        if not decisions.unmatched_specs(extra_specs, POOL_CAPABILITIES):
            host = await self._choose(volume)
            if host is not None:
                return Placed(host, POOL_BACKEND)
        return await FixedPlacement().place(volume, extra_specs)

    async def _choose(self, volume: Obj) -> str | None:
        spec = spec_of(volume)
        source_volume = spec.get("source_volid")
        if spec.get("snapshot_id"):
            snapshot = self.records.get(SNAPSHOTS, str(spec["snapshot_id"]))
            source_volume = spec_of(snapshot).get("volume_id")
        if source_volume:  # a reflink copy: the source's pool, or the fake if it is there
            return self.host_of(str(source_volume))
        free: dict[str, int] = {}
        for node in self.pools():
            space = await self.agent.free_bytes(node)
            if space is not None:
                free[node] = space
        chosen = choose_pool(free, int(spec.get("size") or 1) * GIB)
        return pool_host(chosen) if chosen else None

    # --- Backend ----------------------------------------------------------------------------

    async def create_volume(self, volume_id: str, size: int, source: str | None) -> None:
        host = self.host_of(volume_id)
        if host is None:
            return await self.fake.create_volume(volume_id, size, source)
        volume = self.records.get(VOLUMES, volume_id) or {}
        await self.agent.create_volume(node_of(host), volume_id, size, agent_source(volume))

    async def extend_volume(self, volume_id: str, size: int) -> None:
        host = self.host_of(volume_id)
        if host is None:
            return await self.fake.extend_volume(volume_id, size)
        await self.agent.extend_volume(node_of(host), volume_id, size)

    async def delete_volume(self, volume_id: str) -> None:
        host = self.host_of(volume_id)
        if host is None:
            return await self.fake.delete_volume(volume_id)
        await self.agent.delete_volume(node_of(host), volume_id)

    async def create_snapshot(self, snapshot_id: str, volume_id: str) -> None:
        host = self.host_of(volume_id)
        if host is None:
            return await self.fake.create_snapshot(snapshot_id, volume_id)
        await self.agent.create_snapshot(node_of(host), snapshot_id, volume_id)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        volume_id = spec_of(self.records.get(SNAPSHOTS, snapshot_id)).get("volume_id")
        host = self.host_of(volume_id)
        if host is None:
            return await self.fake.delete_snapshot(snapshot_id)
        await self.agent.delete_snapshot(node_of(host), snapshot_id)

    # --- DataBackend ------------------------------------------------------------------------

    def _real_host(self, volume_id: str) -> str:
        host = self.host_of(volume_id)
        if host is None:
            raise BackendError(f"volume {volume_id} is on the {BACKEND_NAME}, which keeps no data")
        return node_of(host)

    async def upload_volume(self, volume_id: str, image_id: str, disk_format: str) -> None:
        await self.agent.upload_volume(self._real_host(volume_id), volume_id, image_id, disk_format)

    async def create_backup(
        self, backup_id: str, volume_id: str, snapshot_id: str | None = None
    ) -> int:
        node = self._real_host(volume_id)
        return await self.agent.create_backup(node, backup_id, volume_id, snapshot_id)

    async def restore_backup(self, backup_id: str, volume_id: str) -> None:
        await self.agent.restore_backup(self._real_host(volume_id), backup_id, volume_id)

    async def delete_backup(self, backup_id: str, volume_id: str | None) -> None:
        """Any pool's agent can drop a backup from the registry: the volume's when it is
        still there, else the first pool."""
        node = node_of(self.host_of(volume_id) or "") or next(iter(self.pools()), "")
        if node:
            await self.agent.delete_backup(node, backup_id)
