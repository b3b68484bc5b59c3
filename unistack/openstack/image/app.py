"""The image service's ASGI app (Glance v2), mounted by the gateway at `/image`.

`GET /` and `GET /versions` list the API versions (300 at the root, as Glance answers); the
rest is `/v2/...`: `images`, `transfer` (data upload, download, staging and import),
`members`, `metadefs`, `schemas` and `tasks` (import tasks run by `task_import`). Every
request but the version list needs a token. At start the built-in OCI images are offered
as public images (`builtin`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from unistack.iaas.image import kinds
from unistack.iaas.records import Records
from unistack.openstack.image import builtin, schemas, vmimages
from unistack.openstack.image.data import ImageData
from unistack.openstack.image.fetch import HttpFetcher
from unistack.openstack.image.images import Images
from unistack.openstack.image.members import Members
from unistack.openstack.image.metadefs import Metadefs
from unistack.openstack.image.service import ImageService
from unistack.openstack.image.task_import import ImportRunner
from unistack.openstack.image.tasks import Tasks
from unistack.openstack.image.transfer import Transfer
from unistack.openstack.platform import Platform
from unistack.openstack.web import base_url, glance_error, json_response, service_app

# The versions this API honours: 2.6 brought interoperable import, 2.7 hidden images. Later
# ones (2.8 on: multiple stores, location APIs) are not served, so they are not listed.
VERSIONS = ("2.7", "2.6", "2.5", "2.4", "2.3", "2.2", "2.1", "2.0")


def version_list(request: Request) -> list[dict[str, object]]:
    href = f"{base_url(request)}v2/"
    return [
        {
            "id": f"v{number}",
            "status": "CURRENT" if index == 0 else "SUPPORTED",
            "links": [{"rel": "self", "href": href}],
        }
        for index, number in enumerate(VERSIONS)
    ]


async def versions(request: Request) -> Response:
    return json_response({"versions": version_list(request)}, 300)


async def versions_ok(request: Request) -> Response:
    return json_response({"versions": version_list(request)})


def create_app(service: ImageService, tasks: Tasks) -> ASGIApp:
    async def show_schema(request: Request) -> Response:
        service.caller(request)
        return await schemas.show_schema(request)

    routes = [
        Route("/", versions, methods=["GET"]),
        Route("/versions", versions_ok, methods=["GET"]),
        Route("/v2/schemas/{name:path}", show_schema, methods=["GET"]),
        *Images(service).routes(),
        *Transfer(service).routes(),
        *Members(service).routes(),
        *Metadefs(service).routes(),
        *tasks.routes(),
    ]
    return service_app(routes, glance_error, redirect_slashes=False)


async def build(platform: Platform) -> ASGIApp:
    """The app on the gateway's platform: image records over its informers, data in the
    image store the registry serves."""
    records = Records(platform.client, kinds.ALL, informers=platform.informers)
    await records.start()
    platform.cleanups.append(records.stop)
    data = ImageData(Path(platform.settings.image_store))
    owner = platform.admin_project_id
    registering = asyncio.create_task(builtin.keep_registering(records, data, owner))
    if platform.settings.vm_image_dir:
        folder = Path(platform.settings.vm_image_dir)
        vm = asyncio.create_task(vmimages.register(records, data, folder, owner))
        platform.cleanups.append(lambda: _cancel(vm))

    async def stop_registering() -> None:
        registering.cancel()
        await asyncio.gather(registering, return_exceptions=True)

    platform.cleanups.append(stop_registering)
    service = ImageService(records, data, platform.validator)
    tasks = Tasks(service, ImportRunner(service, HttpFetcher()))
    platform.cleanups.append(tasks.stop)
    return create_app(service, tasks)


async def _cancel(task: asyncio.Task[int]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
