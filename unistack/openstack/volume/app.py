"""The block-storage service's ASGI app: version documents, the v3 API, its controller.

`GET /` is Cinder's "300 Multiple Choices" list of versions and `GET /v3/` its version
document (also a list, as Cinder answers). Everything under `/v3` negotiates a microversion
(`OpenStack-API-Version: volume 3.x`, echoed) between 3.0 and `MAX_VERSION`; features behind
versions: 3.3 user messages, 3.12 volume summary (3.36 its metadata), 3.13/3.21/3.48 volume
attributes, 3.27 attachments, 3.42 extending in-use volumes, 3.44 attachment completion, 3.45
list counts, 3.49 backend state of services; backups (`backups.py`, 3.9 update, 3.18 project, 3.43
metadata). A project id after `/v3/` is optional
(`/v3/{project_id}/volumes` and `/v3/volumes` are the same, as Cinder accepts both since
3.67): `ProjectPath` takes it off before routing. `build` starts the records, creates the
default volume type and runs the volume controller under the service's Lease, over the
hosts' volume pools (`agentbackend.HostBackends`, the fake backend where no host has one).
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import TYPE_CHECKING, Any, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from unistack.client.api import Client
from unistack.client.resources import NODES
from unistack.iaas.crds import Kind
from unistack.iaas.records import Duplicate, Records, spec_of
from unistack.iaas.volume import kinds
from unistack.iaas.volume.agentbackend import AgentBackend, HostBackends
from unistack.iaas.volume.backend import Backend
from unistack.iaas.volume.controller import VolumeController
from unistack.openstack.microversion import Microversions, NegotiatingApp
from unistack.openstack.volume.actions import VolumeActions
from unistack.openstack.volume.attachments import Attachments, AttachmentState
from unistack.openstack.volume.backends import Backends
from unistack.openstack.volume.backups import Backups
from unistack.openstack.volume.encryption import Encryption
from unistack.openstack.volume.group_types import GroupTypes
from unistack.openstack.volume.groups import Groups, by_group, by_group_snapshot
from unistack.openstack.volume.messages import Messages
from unistack.openstack.volume.metadata import Metadata
from unistack.openstack.volume.qos import QosSpecs, by_qos
from unistack.openstack.volume.quotas import Quotas
from unistack.openstack.volume.service import VolumeService
from unistack.openstack.volume.snapshots import Snapshots
from unistack.openstack.volume.transfers import Transfers
from unistack.openstack.volume.types import VolumeTypes, by_name, ensure_default_type
from unistack.openstack.volume.volumes import Volumes
from unistack.openstack.web import base_url, json_response, not_found, nova_error, service_app
from unistack.runtime.informer import IndexFunc, SharedInformers

if TYPE_CHECKING:
    from unistack.openstack.platform import Platform

Obj = dict[str, Any]
MIN_VERSION = "3.0"
MAX_VERSION = "3.50"
VERSIONS = Microversions("volume", MIN_VERSION, MAX_VERSION)
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH"})
MEDIA_TYPE = "application/vnd.openstack.volume+json;version=3"
_PROJECT_ID = re.compile(
    r"^(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)

log = logging.getLogger(__name__)


def version_entry(request: Request) -> Obj:
    return {
        "id": "v3.0",
        "status": "CURRENT",
        "version": MAX_VERSION,
        "min_version": MIN_VERSION,
        "updated": "2023-01-01T00:00:00Z",
        "links": [
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
            {"rel": "self", "href": f"{base_url(request)}v3/"},
        ],
        "media-types": [{"base": "application/json", "type": MEDIA_TYPE}],
    }


async def list_versions(request: Request) -> Response:
    return json_response({"versions": [version_entry(request)]}, 300)


async def show_version(request: Request) -> Response:
    return json_response({"versions": [version_entry(request)]})


class Family(Protocol):
    """A resource family's handlers: its routes under `/v3`."""

    def routes(self) -> list[Route]: ...


class ProjectPath:
    """Drops the project id after `/v3/` (kept in `state.path_project` for links)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            root = scope.get("root_path", "")
            path = scope["path"][len(root) :] if scope["path"].startswith(root) else scope["path"]
            path_before = scope["path"]
            parts = path.split("/", 3)  # "", "v3", project, rest
            if len(parts) == 4 and parts[1] == "v3" and _PROJECT_ID.match(parts[2]):
                scope = dict(scope)
                scope["path"] = f"{root}/v3/{parts[3]}"
                scope["raw_path"] = scope["path"].encode()
                scope.setdefault("state", {})["path_project"] = parts[2]
                scope["state"]["original_path"] = path_before
        await self.app(scope, receive, send)


def create_app(service: VolumeService) -> ASGIApp:
    quotas = Quotas(service)
    types = VolumeTypes(service)
    snapshots = Snapshots(service, quotas)
    volumes = Volumes(service, quotas, types, snapshots)
    state = AttachmentState(service)
    group_types = GroupTypes(service)
    families: list[Family] = [
        volumes,
        VolumeActions(service, state, quotas, volumes),
        Metadata(service, kinds.VOLUMES, "volumes", "volume"),
        snapshots,
        Metadata(service, kinds.SNAPSHOTS, "snapshots", "snapshot"),
        types,
        Encryption(service, types),
        Attachments(service, state),
        quotas,
        Backends(service),
        Messages(service),
        Transfers(service, quotas),
        Backups(service, quotas, volumes),
        QosSpecs(service),
        group_types,
        Groups(service, group_types, types, volumes, snapshots),
    ]
    routes = [
        Route("/", list_versions, methods=["GET"]),
        Route("/v3", show_version, methods=["GET"]),
        Route("/v3/", show_version, methods=["GET"]),
    ]
    for family in families:
        for route in family.routes():
            routes.append(Route(f"/v3{route.path}", route.endpoint, methods=route.methods))
    # a trailing slash names nothing (`volumes/` is no volume): 404, not a redirect
    trailing = Route("/v3/{rest:path}/", no_such_resource, methods=sorted(METHODS))
    app = service_app([*routes, *_unrouted_methods(routes), trailing], nova_error)
    return NegotiatingApp(ProjectPath(app), VERSIONS, nova_error, prefix="/v3")


async def no_such_resource(request: Request) -> Response:
    raise not_found("The resource could not be found.")


def _unrouted_methods(routes: list[Route]) -> list[Route]:
    """404s for the methods a path does not serve: Cinder's router matches path and method
    together, so `DELETE /volumes` is not found rather than not allowed."""
    served: dict[str, set[str]] = {}
    for route in routes:
        served.setdefault(route.path, set()).update(route.methods or ())
    return [
        Route(path, no_such_resource, methods=sorted(METHODS - methods))
        for path, methods in served.items()
        if METHODS - methods
    ]


def _by_volume(obj: Obj) -> list[str]:
    return [str(spec_of(obj).get("volume_id") or "")]


def _by_parent(obj: Obj) -> list[str]:
    return [str(spec_of(obj).get("parent_id") or "")]


def volume_records(client: Client, informers: SharedInformers) -> Records:
    indexers: dict[Kind, dict[str, IndexFunc]] = {
        kinds.VOLUMES: {"group": by_group},
        kinds.SNAPSHOTS: {"volume": _by_volume, "group_snapshot": by_group_snapshot},
        kinds.GROUP_TYPES: {"name": by_name},
        kinds.GROUP_SNAPSHOTS: {"group": by_group},
        kinds.ATTACHMENTS: {"volume": _by_volume},
        kinds.BACKUPS: {"volume": _by_volume, "parent": _by_parent},
        kinds.TYPES: {"name": by_name, "qos": by_qos},
    }
    return Records(client, kinds.ALL, indexers, informers=informers)


async def build(platform: Platform, backend: Backend | None = None) -> ASGIApp:
    """The service on the gateway's platform (`gateway.Platform`)."""
    records = volume_records(platform.client, platform.informers)
    await records.start()
    platform.cleanups.append(records.stop)
    with contextlib.suppress(Duplicate):
        await ensure_default_type(records)

    async def read_image(image_id: str) -> tuple[int, Any]:
        return await platform.internal.call("GET", f"/image/v2/images/{image_id}")

    async def delete_image(image_id: str) -> None:
        await platform.internal.call("DELETE", f"/image/v2/images/{image_id}")

    async def notify_extended(volume_id: str, servers: list[str]) -> None:
        """Nova's `volume-extended` event for each server the volume is attached to, as
        Cinder sends it (at compute 2.51); a refusal is logged, the extend stands."""
        events = [
            {"name": "volume-extended", "server_uuid": server_id, "tag": volume_id}
            for server_id in servers
        ]
        status, body = await platform.internal.call(
            "POST",
            "/compute/v2.1/os-server-external-events",
            {"events": events},
            headers={"openstack-api-version": "compute 2.51"},
        )
        if status not in (200, 207):
            log.warning("volume %s: volume-extended refused: %s %s", volume_id, status, body)

    nodes = platform.informers.informer(NODES)
    nodes.start()
    platform.cleanups.append(nodes.stop)
    await nodes.wait_synced(30.0)
    gateway = platform.settings.agent_url or platform.settings.public_url
    image_url = f"{gateway.rstrip('/')}/image"  # the agent of the pool's host uploads there
    agent = AgentBackend(platform.client, image_url, platform.internal.token)
    hosts = HostBackends(nodes, records, agent, backend)
    controller = VolumeController(
        records,
        hosts,
        read_image,
        placement=hosts,
        data=hosts,
        delete_image=delete_image,
        notify_extended=notify_extended,
    )
    platform.lead("volume", controller.run)
    service = VolumeService(records, platform.validator, platform.internal.call)
    return create_app(service)
