"""The agent's block storage (Cinder's cinder-volume): this host's volume pool over HTTP.

The volume controller (`unistack.iaas.volume.controller`) decides; `unistack.iaas.volume.
agentbackend` carries its calls to the volume's host through the API server's node proxy
(`/api/v1/nodes/{host}/proxy/volumes/...`), as cinder-scheduler and the volume manager reach
cinder-volume. The pool is `unistack.dataplane.volumepool`: a loop-mounted xfs with reflinks
where the agent runs as root, else a plain directory. Routes, served by `unistack.agent.server`:

- `PUT /volumes/{id}` `{"size_gb": n, "source": null | {"snapshot"|"volume"|"image"|"backup": id}}`
  makes the volume (an image or a backup comes from the registry as an artifact);
- `POST /volumes/{id}/extend` `{"size_gb": n}`, `DELETE /volumes/{id}`;
- `PUT /snapshots/{id}` `{"volume_id": id}`, `DELETE /snapshots/{id}`;
- `GET /volumes/{id}/data`: the volume's bytes;
- `POST /volumes/{id}/upload` `{"url", "token", "disk_format"}`: the volume's bytes (raw, or
  qcow2 through qemu-img) PUT to Glance's `/v2/images/{id}/file`, as cinder-volume uploads;
- `PUT /backups/{id}` `{"volume_id": id, "snapshot_id": null | id}` → `{"size": bytes}`,
  `DELETE /backups/{id}`: backups (of the volume, or of its snapshot) as registry artifacts
  (`unistack.agent.backupstore`); `POST /volumes/{id}/restore` `{"backup_id": id}` writes a
  backup over an existing volume (a new volume from a backup is `PUT /volumes/{id}`);
- `POST /volumes/{id}/connection` `{"host": node}` → Cinder's connection info,
  `{"driver_volume_type": "nbd", "data": {"host", "port", "export"}}`: the volume served over
  NBD to a server on another host (`unistack.dataplane.nbd`); `DELETE
  /volumes/{id}/connection/{node}` ends that host's connection (Cinder's
  initialize_connection and terminate_connection). Deleting a volume ends every one;
- `GET /pool`: capacity and free bytes for the scheduler.

Every call is idempotent (the controller retries after a crash); errors are JSON
`{"message"}` with 400 (bad request), 404 (no such volume or snapshot) or 409 (the pool
refused). An upload or a backup can outlast an HTTP request: it runs as a job, the request
waits up to `JOB_WAIT` seconds for it and otherwise answers 202 `{"state": "running"}`; the
caller repeats the same request until it gets the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from unistack.agent import backupstore, jsonhttp
from unistack.dataplane import nbd, volumepool
from unistack.dataplane.volumepool import VolumePool
from unistack.images.pull import ImageCache, ImagePullError

log = logging.getLogger(__name__)
Obj = dict[str, Any]
GIB = 1024**3
ARTIFACTS = "openstack/images"
SOURCES = ("snapshot", "volume", "image", "backup")
DISK_FORMATS = ("raw", "qcow2")
CHUNK = 1 << 20
JOB_WAIT = 10.0
RUNNING = {"state": "running"}


class RequestError(ValueError):
    """The request is malformed (400)."""


class ExportError(Exception):
    """The volume could not be written out (qemu-img, Glance or the registry failed)."""


def parse_source(body: Obj) -> tuple[str, str] | None:
    """The volume's source as (kind, id), or None for an empty volume."""
    source = body.get("source")
    if source is None:
        return None
    if not isinstance(source, dict) or len(source) != 1:
        raise RequestError(f"source must name one of {', '.join(SOURCES)}")
    kind, source_id = next(iter(source.items()))
    if kind not in SOURCES or not isinstance(source_id, str) or not source_id:
        raise RequestError(f"source must name one of {', '.join(SOURCES)}")
    return kind, source_id


def size_bytes(body: Obj) -> int:
    size = body.get("size_gb")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise RequestError("size_gb must be a positive integer")
    return size * GIB


class VolumeService:
    """This host's volumes, snapshots and backups; one lock per object id."""

    def __init__(
        self,
        pool: VolumePool,
        images: ImageCache,
        registry: str,
        scratch: Path,
        *,
        fallback: VolumePool | None = None,
        backups: backupstore.BackupStore | None = None,
        exports: nbd.NbdExports | None = None,
    ) -> None:
        self.pool = pool
        self.exports = exports
        self.fallback = fallback
        self.images = images
        self.registry = registry
        self.scratch = scratch
        self.backups = backups or backupstore.BackupStore(registry)
        self._locks: dict[str, asyncio.Lock] = {}
        self._jobs: dict[str, asyncio.Task[Obj]] = {}
        self.job_wait = JOB_WAIT

    def lock(self, object_id: str) -> asyncio.Lock:
        return self._locks.setdefault(object_id, asyncio.Lock())

    async def job(self, key: str, work: Callable[[], Coroutine[Any, Any, Obj]]) -> Obj | None:
        """The result of the job `key` (started by the first call), or None while it runs
        past `job_wait`; its error, once, when it failed."""
        task = self._jobs.get(key)
        if task is None:
            task = self._jobs[key] = asyncio.create_task(work(), name=f"volume job {key}")
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.job_wait)
        except TimeoutError:
            return None
        finally:
            if task.done():
                self._jobs.pop(key, None)

    async def start(self) -> int:
        """Make and mount the pool (the fallback when this host cannot: no root, no loop
        devices, no mkfs.xfs); its capacity in bytes, for the Node."""
        try:
            await asyncio.to_thread(self.pool.ensure)
        except volumepool.PoolUnavailable as error:
            if self.fallback is None:
                raise
            log.warning("volume pool: a plain directory, since %s", error)
            self.pool = self.fallback
            await asyncio.to_thread(self.pool.ensure)
        if self.exports is not None:
            try:
                await self.exports.reconcile()
            except nbd.NbdError as error:  # the volumes themselves are fine
                log.warning("volume exports: %s", error)
        usage = await asyncio.to_thread(self.pool.usage)
        log.info("volume pool: %s, %d bytes", type(self.pool).__name__, usage.capacity_bytes)
        return usage.capacity_bytes

    # --- volumes and snapshots --------------------------------------------------------------

    async def create(self, volume_id: str, size: int, source: tuple[str, str] | None) -> None:
        async with self.lock(volume_id):
            if source is None:
                await asyncio.to_thread(self.pool.create, volume_id, size)
            elif source[0] == "snapshot":
                await asyncio.to_thread(self.pool.create_from_snapshot, source[1], volume_id, size)
            elif source[0] == "volume":
                await asyncio.to_thread(self.pool.clone, source[1], volume_id, size)
            else:
                await self._create_from_artifact(volume_id, size, source)

    async def _create_from_artifact(
        self, volume_id: str, size: int, source: tuple[str, str]
    ) -> None:
        if self.pool.exists(volume_id):
            await asyncio.to_thread(self.pool.create, volume_id, size)  # same size: nothing
            return
        if source[0] == "image":
            reference = f"{self.registry}/{ARTIFACTS}:{source[1]}"
        else:
            reference = backupstore.artifact(self.registry, source[1])
        try:
            data = await self.images.pull_artifact(reference)
        except ImagePullError as error:
            raise volumepool.NotFound(f"{source[0]} {source[1]}: {error.message}") from None
        await asyncio.to_thread(self.pool.create_from_image, volume_id, data, size)

    async def extend(self, volume_id: str, size: int) -> None:
        async with self.lock(volume_id):
            if self.pool.size(volume_id) != size:
                await asyncio.to_thread(self.pool.extend, volume_id, size)

    async def delete(self, volume_id: str) -> None:
        async with self.lock(volume_id):
            if self.exports is not None:
                await self.exports.unexport(volume_id)
            await asyncio.to_thread(self.pool.delete, volume_id)

    async def connect(self, volume_id: str, host: str) -> Obj:
        """The volume served to a server on `host`: Cinder's connection info."""
        if self.exports is None:
            raise ExportError("this host serves no volume to other hosts")
        async with self.lock(volume_id):
            path = self.pool.path(volume_id)  # NotFound first
            try:
                target = await self.exports.export(volume_id, path, host)
            except nbd.NbdError as error:
                raise ExportError(str(error)) from None
        return {"driver_volume_type": "nbd", "data": target.to_json()}

    async def disconnect(self, volume_id: str, host: str) -> None:
        if self.exports is None:
            return
        async with self.lock(volume_id):
            try:
                await self.exports.unexport(volume_id, host)
            except nbd.NbdError as error:
                raise ExportError(str(error)) from None

    def volume_file(self, volume_id: str) -> Path:
        """The volume's file in this host's pool, for attaching it to an instance here
        (`unistack.agent.instancevolumes`); NotFound (a KeyError) when the pool has none."""
        return self.pool.path(volume_id)

    async def snapshot(self, snapshot_id: str, volume_id: str) -> None:
        async with self.lock(snapshot_id):
            await asyncio.to_thread(self.pool.snapshot, volume_id, snapshot_id)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        async with self.lock(snapshot_id):
            await asyncio.to_thread(self.pool.delete_snapshot, snapshot_id)

    # --- data out: upload to an image, backups ------------------------------------------------

    async def upload(self, volume_id: str, url: str, token: str, disk_format: str) -> None:
        """PUT the volume's bytes (in `disk_format`) to Glance's image data URL."""
        self.pool.path(volume_id)  # NotFound first
        async with self._exported(volume_id, disk_format) as path:
            headers = {"X-Auth-Token": token, "Content-Type": "application/octet-stream"}
            headers["Content-Length"] = str(path.stat().st_size)
            try:
                async with (
                    aiohttp.ClientSession(timeout=backupstore.TIMEOUT) as session,
                    session.put(url, data=backupstore.file_chunks(path), headers=headers) as answer,
                ):
                    if answer.status >= 300:
                        text = (await answer.text())[:300]
                        raise ExportError(f"the image service answered {answer.status}: {text}")
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                raise ExportError(f"uploading to the image service failed: {error}") from None

    async def backup(self, backup_id: str, volume_id: str, snapshot_id: str | None = None) -> int:
        """A full backup of the volume (or of its snapshot) in the registry; its stored
        size in bytes. A snapshot is first cloned into a scratch volume of the pool."""
        self.pool.path(volume_id)
        async with (
            self.lock(backup_id),
            self._backup_source(backup_id, volume_id, snapshot_id) as source,
            self._exported(source, "qcow2") as path,
        ):
            try:
                return await self.backups.push(backup_id, volume_id, path)
            except backupstore.BackupStoreError as error:
                raise ExportError(str(error)) from None

    @contextlib.asynccontextmanager
    async def _backup_source(
        self, backup_id: str, volume_id: str, snapshot_id: str | None
    ) -> AsyncIterator[str]:
        """The pool volume to export: the volume, or a scratch clone of the snapshot
        (removed afterwards)."""
        if snapshot_id is None:
            yield volume_id
            return
        scratch = f"unistack-backup-{backup_id}"
        size = self.pool.size(volume_id)  # volumes only grow: it holds the snapshot
        await asyncio.to_thread(self.pool.delete, scratch)  # left by a crash
        try:
            await asyncio.to_thread(self.pool.create_from_snapshot, snapshot_id, scratch, size)
            yield scratch
        finally:
            await asyncio.to_thread(self.pool.delete, scratch)

    async def restore(self, volume_id: str, backup_id: str) -> None:
        """Write the backup over the existing volume, keeping its size: the backup becomes a
        scratch volume first, which then replaces the volume's file at once."""
        target = self.pool.path(volume_id)
        size = self.pool.size(volume_id)
        scratch = f"unistack-restore-{volume_id}"
        async with self.lock(volume_id):
            await asyncio.to_thread(self.pool.delete, scratch)  # left by a crash
            try:
                await self._create_from_artifact(scratch, size, ("backup", backup_id))
                await asyncio.to_thread(os.replace, self.pool.path(scratch), target)
            finally:
                await asyncio.to_thread(self.pool.delete, scratch)

    async def delete_backup(self, backup_id: str) -> None:
        async with self.lock(backup_id):
            try:
                await self.backups.forget(backup_id)
            except backupstore.BackupStoreError as error:
                raise ExportError(str(error)) from None

    @contextlib.asynccontextmanager
    async def _exported(self, volume_id: str, disk_format: str) -> AsyncIterator[Path]:
        """The volume as a file in `disk_format`: itself when raw, else a qcow2 copy in the
        scratch directory, removed afterwards."""
        source = self.pool.path(volume_id)
        if disk_format == "raw":
            yield source
            return
        target = self.scratch / f"{volume_id}-{uuid.uuid4().hex}.qcow2"
        try:
            await asyncio.to_thread(to_qcow2, source, target)
            yield target
        finally:
            target.unlink(missing_ok=True)

    # --- HTTP -------------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_put("/volumes/{id}", self.http_create)
        app.router.add_post("/volumes/{id}/extend", self.http_extend)
        app.router.add_delete("/volumes/{id}", self.http_delete)
        app.router.add_get("/volumes/{id}/data", self.http_data)
        app.router.add_post("/volumes/{id}/upload", self.http_upload)
        app.router.add_post("/volumes/{id}/restore", self.http_restore)
        app.router.add_put("/snapshots/{id}", self.http_snapshot)
        app.router.add_delete("/snapshots/{id}", self.http_delete_snapshot)
        app.router.add_put("/backups/{id}", self.http_backup)
        app.router.add_delete("/backups/{id}", self.http_delete_backup)
        app.router.add_post("/volumes/{id}/connection", self.http_connect)
        app.router.add_delete("/volumes/{id}/connection/{host}", self.http_disconnect)
        app.router.add_get("/pool", self.http_pool)

    async def http_create(self, request: web.Request) -> web.Response:
        async def act(body: Obj) -> Obj:
            await self.create(request.match_info["id"], size_bytes(body), parse_source(body))
            return {}

        return await _answer(request, act)

    async def http_extend(self, request: web.Request) -> web.Response:
        async def act(body: Obj) -> Obj:
            await self.extend(request.match_info["id"], size_bytes(body))
            return {}

        return await _answer(request, act)

    async def http_delete(self, request: web.Request) -> web.Response:
        async def act(body: Obj) -> Obj:
            await self.delete(request.match_info["id"])
            return {}

        return await _answer(request, act)

    async def http_connect(self, request: web.Request) -> web.Response:
        async def act(body: Obj) -> Obj:
            return await self.connect(
                nbd.check_volume_id(request.match_info["id"]), _text(body, "host")
            )

        return await _answer(request, act)

    async def http_disconnect(self, request: web.Request) -> web.Response:
        async def act(body: Obj) -> Obj:
            volume_id = nbd.check_volume_id(request.match_info["id"])
            await self.disconnect(volume_id, request.match_info["host"])
            return {}

        return await _answer(request, act)

    async def http_snapshot(self, request: web.Request) -> web.Response:
        async def act(body: Obj) -> Obj:
            await self.snapshot(request.match_info["id"], _text(body, "volume_id"))
            return {}

        return await _answer(request, act)

    async def http_delete_snapshot(self, request: web.Request) -> web.Response:
        async def act(body: Obj) -> Obj:
            await self.delete_snapshot(request.match_info["id"])
            return {}

        return await _answer(request, act)

    async def http_upload(self, request: web.Request) -> web.Response:
        async def act(body: Obj) -> Obj:
            disk_format = body.get("disk_format") or "raw"
            if disk_format not in DISK_FORMATS:
                raise RequestError(f"disk_format must be one of {', '.join(DISK_FORMATS)}")
            url, token = _text(body, "url"), _text(body, "token")
            volume_id = request.match_info["id"]

            async def work() -> Obj:
                await self.upload(volume_id, url, token, disk_format)
                return {"state": "done"}

            return await self.job(f"upload {volume_id} {url}", work) or RUNNING

        return await _answer(request, act)

    async def http_backup(self, request: web.Request) -> web.Response:
        async def act(body: Obj) -> Obj:
            backup_id, volume_id = request.match_info["id"], _text(body, "volume_id")
            snapshot_id = _text(body, "snapshot_id") if body.get("snapshot_id") else None

            async def work() -> Obj:
                size = await self.backup(backup_id, volume_id, snapshot_id)
                return {"state": "done", "size": size}

            return await self.job(f"backup {backup_id}", work) or RUNNING

        return await _answer(request, act)

    async def http_restore(self, request: web.Request) -> web.Response:
        async def act(body: Obj) -> Obj:
            volume_id, backup_id = request.match_info["id"], _text(body, "backup_id")

            async def work() -> Obj:
                await self.restore(volume_id, backup_id)
                return {"state": "done"}

            return await self.job(f"restore {volume_id} {backup_id}", work) or RUNNING

        return await _answer(request, act)

    async def http_delete_backup(self, request: web.Request) -> web.Response:
        async def act(body: Obj) -> Obj:
            await self.delete_backup(request.match_info["id"])
            return {}

        return await _answer(request, act)

    async def http_pool(self, request: web.Request) -> web.Response:
        usage = await asyncio.to_thread(self.pool.usage)
        return _json(
            200,
            {
                "capacity_bytes": usage.capacity_bytes,
                "free_bytes": usage.free_bytes,
                "provisioned_bytes": usage.provisioned_bytes,
                "allocated_bytes": usage.allocated_bytes,
            },
        )

    async def http_data(self, request: web.Request) -> web.StreamResponse:
        volume_id = request.match_info["id"]
        try:
            handle = self.pool.open_read(volume_id)
        except volumepool.NotFound as error:
            return _error(404, str(error))
        except ValueError as error:
            return _error(400, str(error))
        with handle:
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            response.content_length = self.pool.size(volume_id)
            await response.prepare(request)
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                await response.write(chunk)
            await response.write_eof()
        return response


def to_qcow2(source: Path, target: Path) -> None:
    """qemu-img's conversion of a raw file (no clusters for zeros); ExportError without it."""
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        raise ExportError("qcow2 needs qemu-img (qemu-utils)")
    target.parent.mkdir(parents=True, exist_ok=True)
    argv = [qemu_img, "convert", "-q", "-f", "raw", "-O", "qcow2", str(source), str(target)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ExportError(f"qemu-img convert failed: {done.stderr.strip()}")


async def _answer(request: web.Request, act: Callable[[Obj], Awaitable[Obj]]) -> web.Response:
    """Run one call with the request's JSON body; pool errors as JSON with their status."""
    try:
        answer = await act(await _body(request))
        return _json(202 if answer is RUNNING else 200, answer)
    except volumepool.NotFound as error:
        return _error(404, str(error.args[0] if error.args else error))
    except (RequestError, volumepool.InvalidSize) as error:
        return _error(400, str(error))
    except (volumepool.PoolError, ExportError) as error:
        return _error(409, str(error))
    except ValueError as error:  # an id that cannot be a file name
        return _error(400, str(error))


def _text(body: Obj, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise RequestError(f"{name} must be a non-empty string")
    return value


async def _body(request: web.Request) -> Obj:
    try:
        body = await jsonhttp.read_json(request)
    except jsonhttp.BadJson as error:
        raise RequestError(str(error)) from None
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    return body


_json, _error = jsonhttp.json_response, jsonhttp.error_response
