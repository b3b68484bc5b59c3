"""Running Glance's `import` task (`tasks` creates it, this carries it out in the
background): the image the input describes is created from `image_properties`, its data
fetched from `import_from` (`fetch`) into the image store, and the task ends `success` with
the image's id in `result`, or `failure` with a message.

The steps go as Glance's import flow: check the input (`import_from`, `import_from_format`,
`image_properties`), create the image (`saving` while the data comes), fetch, publish the
data and make the image `active`. When anything fails the image made for the task is
deleted, as Glance reverts its flow. Nothing succeeds without its data: a location that
cannot be fetched is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from unistack.iaas.image import kinds
from unistack.iaas.records import Duplicate, Missing
from unistack.openstack.auth import AuthContext
from unistack.openstack.image import attributes
from unistack.openstack.image.data import StoredData, TooLarge
from unistack.openstack.image.fetch import Fetcher, FetchError
from unistack.openstack.image.images import new_spec
from unistack.openstack.image.service import IMAGE_SIZE_CAP, ImageService, new_image_id, now_iso
from unistack.openstack.image.transfer import virtual_size, with_data
from unistack.openstack.web import OpenStackError

Obj = dict[str, Any]
INPUT_KEYS = ("import_from", "import_from_format", "image_properties")
TASK_TIME_TO_LIVE = 48 * 3600.0  # Glance's [task] task_time_to_live: 48 hours
log = logging.getLogger(__name__)


class ImportFailed(Exception):
    """The task cannot do its work; the message is the task's."""


@dataclass(frozen=True)
class ImportRequest:
    url: str
    source_format: str
    properties: Obj


def import_request(task_input: Any) -> ImportRequest:
    """The checked input of an import task (ImportFailed with Glance's words if not)."""
    if not isinstance(task_input, dict):
        raise ImportFailed("Task input must be an object.")
    for key in INPUT_KEYS:
        if key not in task_input:
            raise ImportFailed(f"Input does not contain '{key}' field")
    url, source, properties = (task_input[key] for key in INPUT_KEYS)
    if not isinstance(url, str) or not isinstance(source, str):
        raise ImportFailed("import_from and import_from_format must be strings.")
    if not isinstance(properties, dict):
        raise ImportFailed("image_properties must be an object.")
    return ImportRequest(url, source, dict(properties))


def image_spec(context: AuthContext, properties: Obj) -> tuple[str, Obj]:
    """The new image's id and spec from `image_properties`, checked as `POST /v2/images`
    checks its body; the formats must be set, since data follows at once."""
    wanted = dict(properties)
    try:
        image_id = attributes.check_id(wanted.pop("id")) if "id" in wanted else new_image_id()
        spec = new_spec(context, wanted)
    except OpenStackError as exc:
        raise ImportFailed(f"Invalid image_properties: {exc.message}") from exc
    if not spec.get("disk_format") or not spec.get("container_format"):
        raise ImportFailed(
            "Properties disk_format, container_format must be set prior to saving data."
        )
    return image_id, spec


@dataclass
class ImportRunner:
    service: ImageService
    fetcher: Fetcher
    time_to_live: float = TASK_TIME_TO_LIVE

    async def run(self, task_id: str, task_input: Any, context: AuthContext) -> None:
        """Carry out the task and record how it ended; it never stays `processing`."""
        await self._set(task_id, status="processing")
        try:
            image_id = await self._import(import_request(task_input), context)
        except ImportFailed as exc:
            await self._end(task_id, "failure", None, str(exc))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                message = "The image service stopped before the import finished."
                await self._end(task_id, "failure", None, message)
            raise
        except Exception:
            log.exception("import task %s failed", task_id)
            await self._end(task_id, "failure", None, "The import failed unexpectedly.")
        else:
            await self._end(task_id, "success", {"image_id": image_id}, "")

    async def _import(self, wanted: ImportRequest, context: AuthContext) -> str:
        image_id, spec = image_spec(context, wanted.properties)
        records = self.service.records
        try:
            await records.create(kinds.IMAGES, image_id, spec, _image_status("saving"))
        except Duplicate:
            raise ImportFailed(f"Image with identifier {image_id} already exists!") from None
        try:
            stored = await self._fetch(wanted.url)
            self.service.data.publish(image_id, stored, spec["disk_format"])
            size = virtual_size(self.service.data, stored, spec["disk_format"])
            await records.update(
                kinds.IMAGES, image_id, with_data("active", stored, size), status=True
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self._revert(image_id)
            raise
        return image_id

    async def _fetch(self, url: str) -> StoredData:
        try:
            async with contextlib.aclosing(self.fetcher.chunks(url)) as chunks:
                return await self.service.data.receive(chunks, IMAGE_SIZE_CAP)
        except (FetchError, TooLarge) as exc:
            raise ImportFailed(str(exc)) from exc

    async def _revert(self, image_id: str) -> None:
        self.service.data.forget(image_id)
        with contextlib.suppress(Missing):
            await self.service.records.delete(kinds.IMAGES, image_id)

    async def _set(self, task_id: str, **fields: Any) -> None:
        def change(obj: Obj) -> None:
            obj["status"].update(fields, updated_at=now_iso())

        with contextlib.suppress(Missing):
            await self.service.records.update(kinds.TASKS, task_id, change, status=True)

    async def _end(self, task_id: str, status: str, result: Obj | None, message: str) -> None:
        expires = datetime.fromtimestamp(time.time() + self.time_to_live, UTC)
        await self._set(
            task_id,
            status=status,
            result=result,
            message=message,
            expires_at=expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )


def _image_status(value: str) -> Obj:
    return {"status": value, "updated_at": now_iso()}
