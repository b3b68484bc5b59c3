"""The compute service (Nova v2.1) at `/compute`: version documents, microversions, and the
resource families, each in its own module.

`GET /` lists v2.0 (the legacy API, listed first as Nova does) and v2.1 with its microversion
range; `GET /v2.1` is the v2.1 version document. Everything under `/v2.1` is negotiated
(`OpenStack-API-Version: compute X` or `X-OpenStack-Nova-API-Version`) and echoes the version;
every answer carries the request id also as `x-compute-request-id`. The families: `flavors`,
`keypairs`, `servers` (+ `server_requests`, `server_views`, `server_actions`,
`server_details`), `server_groups`, `quotas`, `hypervisors`, `hosts`, `compute_services`,
`aggregates`, `tenant_usage`, `volume_attachments`, `interfaces`, and the proxies of the
other services' APIs Nova kept up to 2.35: `images`, `volumes`, `networks`,
`security_groups`, `floating_ips` (`retired`: a 404 after 2.35, image metadata after
2.38), `server_tags` (2.26) and `migrations`. The microversions run from 2.1 to 2.100. `build` wires
the service on the gateway's platform: the records of the compute kinds, the Nodes
informer (hypervisors), DevStack's default flavors, and the server controller
(`unistack.iaas.compute.controller`) under the `compute` lease.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from unistack.client.resources import NODES
from unistack.iaas.compute import kinds
from unistack.iaas.compute.agentdriver import AgentDriver, HostDrivers
from unistack.iaas.compute.controller import ServerController
from unistack.iaas.compute.hosts import HostView
from unistack.iaas.compute.ports import Networking
from unistack.iaas.compute.volumes import Volumes
from unistack.iaas.records import Records
from unistack.openstack.compute.aggregates import Aggregates
from unistack.openstack.compute.compute_services import ComputeServices
from unistack.openstack.compute.extensions import Extensions
from unistack.openstack.compute.flavors import Flavors, ensure_defaults
from unistack.openstack.compute.floating_ips import FloatingIps
from unistack.openstack.compute.hosts import Hosts
from unistack.openstack.compute.hypervisors import Hypervisors
from unistack.openstack.compute.images import Images
from unistack.openstack.compute.interfaces import Interfaces
from unistack.openstack.compute.keypairs import Keypairs
from unistack.openstack.compute.migrations import Migrations
from unistack.openstack.compute.networks import Networks
from unistack.openstack.compute.quotas import Quotas
from unistack.openstack.compute.security_groups import SecurityGroups
from unistack.openstack.compute.server_actions import ServerActions
from unistack.openstack.compute.server_details import ServerDetails
from unistack.openstack.compute.server_groups import ServerGroups
from unistack.openstack.compute.server_tags import ServerTags
from unistack.openstack.compute.servers import Servers
from unistack.openstack.compute.service import ComputeService, removed_after
from unistack.openstack.compute.tenant_usage import TenantUsage
from unistack.openstack.compute.volume_attachments import VolumeAttachments
from unistack.openstack.compute.volumes import Volumes as VolumeProxy
from unistack.openstack.microversion import Microversions, NegotiatingApp
from unistack.openstack.platform import Platform
from unistack.openstack.web import base_url, json_response, nova_error, service_app

MIN_VERSION = "2.1"
MAX_VERSION = "2.100"
VERSIONS = Microversions("compute", MIN_VERSION, MAX_VERSION, "X-OpenStack-Nova-API-Version")
MEDIA_TYPE = "application/vnd.openstack.compute+json;version=2.1"


def _v20(request: Request) -> dict[str, object]:
    return {
        "id": "v2.0",
        "status": "SUPPORTED",
        "version": "",
        "min_version": "",
        "updated": "2011-01-21T11:33:21Z",
        "links": [{"rel": "self", "href": f"{base_url(request)}v2/"}],
    }


def _v21(request: Request) -> dict[str, object]:
    return {
        "id": "v2.1",
        "status": "CURRENT",
        "version": MAX_VERSION,
        "min_version": MIN_VERSION,
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": f"{base_url(request)}v2.1/"}],
    }


def _media(entry: dict[str, object]) -> dict[str, object]:
    return {**entry, "media-types": [{"base": "application/json", "type": MEDIA_TYPE}]}


async def list_versions(request: Request) -> Response:
    return json_response({"versions": [_v20(request), _v21(request)]})


async def show_v21(request: Request) -> Response:
    return json_response({"version": _media(_v21(request))})


async def show_v20(request: Request) -> Response:
    return json_response({"version": _media(_v20(request))})


class ComputeRequestId:
    """Nova answers its request id twice: `x-openstack-request-id` and the older
    `x-compute-request-id`, which some clients (Tempest among them) still read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            request_id = scope.get("state", {}).get("request_id")
            if message["type"] == "http.response.start" and request_id:
                header = (b"x-compute-request-id", str(request_id).encode())
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        scope.setdefault("state", {})
        await self.app(scope, receive, send_with_id)


def _last_version(path: str) -> str | None:
    """Until which microversion Nova kept a path it later dropped: the proxies until 2.35
    (image metadata until 2.38), `os-hosts` until 2.42; a server's own paths stay."""
    if path.startswith(("/v2.1/servers/", "/v2.1/os-server-external", "/v2.1/os-instance_")):
        return None
    if path.startswith("/v2.1/os-hosts"):
        return "2.42"
    return "2.38" if path.startswith("/v2.1/images/") and "/metadata" in path else "2.35"


def _until(last: str, endpoint: Callable[[Request], Awaitable[Response]]) -> Any:
    async def answer(request: Request) -> Response:
        removed_after(request, last)
        return await endpoint(request)

    return answer


def retired(routes: list[Route]) -> list[Route]:
    """Routes of a family Nova retired, each a 404 after the version it was dropped at."""
    kept = []
    for route in routes:
        last = _last_version(route.path)
        if last is None:
            kept.append(route)
            continue
        methods = sorted((route.methods or set()) - {"HEAD"})
        kept.append(Route(route.path, _until(last, route.endpoint), methods=methods))
    return kept


def create_app(service: ComputeService, hypervisor_type: str) -> ASGIApp:
    routes = [
        Route("/", list_versions, methods=["GET"]),
        Route("/v2.1", show_v21, methods=["GET"]),
        Route("/v2.1/", show_v21, methods=["GET"]),
        Route("/v2", show_v20, methods=["GET"]),
        Route("/v2/", show_v20, methods=["GET"]),
        *Flavors(service).routes(),
        *Keypairs(service).routes(),
        *Servers(service).routes(),
        *ServerActions(service).routes(),
        *ServerDetails(service).routes(),
        *ServerGroups(service).routes(),
        *ServerTags(service).routes(),
        *Migrations(service).routes(),
        *Quotas(service).routes(),
        *Hypervisors(service, hypervisor_type).routes(),
        *VolumeAttachments(service).routes(),
        *retired(Hosts(service).routes()),
        *ComputeServices(service).routes(),
        *TenantUsage(service).routes(),
        *retired(Images(service).routes()),
        *retired(SecurityGroups(service).routes()),
        *Aggregates(service).routes(),
        *retired(FloatingIps(service).routes()),
        *retired(VolumeProxy(service).routes()),
        *retired(Networks(service).routes()),
        *Interfaces(service).routes(),
        *Extensions(service).routes(),
    ]
    app = service_app(routes, nova_error, redirect_slashes=False)
    return ComputeRequestId(NegotiatingApp(app, VERSIONS, nova_error, prefix="/v2.1"))


async def build(platform: Platform) -> ASGIApp:
    """The service on the gateway's platform; its controller runs under the `compute` lease."""
    records = Records(platform.client, kinds.ALL, kinds.INDEXERS, informers=platform.informers)
    await records.start()
    nodes = platform.informers.informer(NODES)
    nodes.start()
    platform.cleanups.append(records.stop)
    platform.cleanups.append(nodes.stop)
    await nodes.wait_synced(30.0)
    caller = platform.internal
    service = ComputeService(records, platform.validator, caller, HostView(nodes, records))
    await ensure_defaults(service)
    driver = HostDrivers(nodes, AgentDriver(platform.client, caller, records))
    service.console = driver.console
    service.guest_disks = driver
    service.guest_passwords = driver
    service.guest_nics = driver
    controller = ServerController(
        records, service.hosts, Networking(caller), Volumes(caller, driver), driver, caller
    )
    platform.lead("compute", controller.run)
    return create_app(service, driver.hypervisor_type)
