"""The OpenStack gateway: every service's app under one port with DevStack's paths.

`SERVICES` lists the facades: Keystone v3 at `/identity`, and each other facade at its
DevStack path (`/compute`, `/image`, `/network`, `/volume`) with its catalog entries and
kinds. One process serves all of them, or only those named in `GatewaySettings.services`
(one API per pod of the self-hosted control plane); the catalog always lists every service
at the public URL, and calls to a service this process does not serve go over HTTP to
`internal_url` (see `platform.Internal`). At start each worker connects to the API server
(the kubeconfig), installs the CRDs of the services it serves (and identity's, which every
service reads) if missing, bootstraps identity (idempotent and safe to run from several
processes at once: the Default domain, roles, the admin project and user, the catalog), fills
its caches, and builds each served service on the shared `Platform` (the client, the
informers, the identity directory and the token validator); until then a service answers 503
and `GET /healthz` (for the proxy's health checks) 503, then 200; a pod's process drains
as a lame duck on SIGTERM (`drain_seconds`, `runtime.lameduck`), `/healthz` 503 again while
it still serves. uvicorn runs `workers`
processes, each with its own caches, reading the same store — Keystone runs several WSGI
workers the same way.

Settings come as JSON in the environment (`UNISTACK_GATEWAY_SETTINGS`), as uvicorn's worker
processes build the app from an import string.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from unistack.client import kubeconfig
from unistack.client.api import Client
from unistack.client.transport import TransportError
from unistack.iaas import crds
from unistack.iaas.compute import kinds as compute_kinds
from unistack.iaas.crds import Kind
from unistack.iaas.identity import kinds
from unistack.iaas.identity.bootstrap import (
    BootstrapSettings,
    CatalogEntry,
    bootstrap,
)
from unistack.iaas.identity.directory import Directory
from unistack.iaas.image import kinds as image_kinds
from unistack.iaas.network import kinds as network_kinds
from unistack.iaas.volume import kinds as volume_kinds
from unistack.openstack.auth import TokenValidator
from unistack.openstack.platform import Internal, Platform
from unistack.openstack.readyourwrites import ReadYourWrites
from unistack.openstack.web import json_response
from unistack.runtime import lameduck
from unistack.runtime.informer import SharedInformers
from unistack.tokens import RepositoryCodec

SETTINGS_ENV = "UNISTACK_GATEWAY_SETTINGS"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewaySettings:
    kubeconfig: str
    key_repository: str
    admin_password_file: str
    public_url: str  # what clients reach, e.g. http://127.0.0.1:8080
    host: str = "127.0.0.1"
    agent_url: str = ""  # what the hosts' agents reach (`up --hosts N`); else public_url
    port: int = 8080
    workers: int = 1
    region: str = "RegionOne"
    hash_rounds: int = 12
    token_ttl: float = 3600.0
    image_store: str = ""  # the image store's root (the registry's), for Glance's data
    public_cidr: str = "172.24.4.0/24"  # the public network's subnet (`up --public-cidr`)
    vm_image_dir: str = ""  # the built-in VM image's files (`unistack.images.vmimage`), if any
    services: tuple[str, ...] = ()  # the names of the services served here; empty: all
    internal_url: str = ""  # where calls to services served elsewhere go; else public_url
    drain_seconds: float = 0.0  # after SIGTERM, serve on this long with /healthz 503 (a pod)

    def __post_init__(self) -> None:
        # From JSON (uvicorn's workers) the names arrive as a list.
        object.__setattr__(self, "services", tuple(self.services))
        unknown = sorted(set(self.services) - {service.name for service in SERVICES})
        if unknown:
            known = ", ".join(service.name for service in SERVICES)
            raise ValueError(f"unknown service {', '.join(unknown)} (known: {known})")

    def served(self) -> tuple[Service, ...]:
        """The services this process mounts and builds, in `SERVICES` order."""
        return tuple(s for s in SERVICES if not self.services or s.name in self.services)

    def catalog(self) -> list[CatalogEntry]:
        return [
            CatalogEntry(kind, name, f"{self.public_url}{path}")
            for service in SERVICES
            for kind, name, path in service.catalog
        ]


@dataclass(frozen=True)
class Service:
    """A facade the gateway mounts: its name (`--services`), path, catalog entries (type,
    name, path), the kinds it stores, and the module whose `build(platform)` makes its app
    once the platform is up. The module is imported then, not with the gateway: a pod that
    serves one API loads only that API's code, which is most of a replacement pod's start
    (identity alone imports in half the time all five take)."""

    name: str
    path: str
    catalog: tuple[tuple[str, str, str], ...]
    kinds: Sequence[Kind]
    app_module: str

    async def build(self, platform: Platform) -> ASGIApp:
        builder: Callable[[Platform], Awaitable[ASGIApp]]
        builder = importlib.import_module(self.app_module).build
        return await builder(platform)


SERVICES: tuple[Service, ...] = (
    Service(
        "identity",
        "/identity",
        (("identity", "keystone", "/identity"),),
        kinds.ALL,
        "unistack.openstack.identity.app",
    ),
    Service(
        "image",
        "/image",
        (("image", "glance", "/image"),),
        image_kinds.ALL,
        "unistack.openstack.image.app",
    ),
    Service(
        "compute",
        "/compute",
        (("compute", "nova", "/compute/v2.1"),),
        compute_kinds.ALL,
        "unistack.openstack.compute.app",
    ),
    Service(
        "network",
        "/network",
        (("network", "neutron", "/network"),),
        network_kinds.ALL,
        "unistack.openstack.network.app",
    ),
    Service(
        "volume",
        "/volume",
        (("block-storage", "cinder", "/volume/v3"), ("volumev3", "cinderv3", "/volume/v3")),
        volume_kinds.ALL,
        "unistack.openstack.volume.app",
    ),
)


class Deferred:
    """An app that answers 503 until its real app is set (at the end of start-up)."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            if scope["type"] == "http":
                body = {
                    "error": {
                        "code": 503,
                        "title": "Service Unavailable",
                        "message": "The service is starting.",
                    }
                }
                await json_response(body, 503)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def kinds_to_install(served: Sequence[Service]) -> list[Kind]:
    """The kinds of the services served, and identity's (every service reads the directory)."""
    needed = [*kinds.ALL, *(kind for service in served for kind in service.kinds)]
    return list({kind.crd_name: kind for kind in needed}.values())


async def _until_reachable(
    client: Client, served: Sequence[Service], timeout: float = 60.0
) -> None:
    """Install the CRDs, retrying while the API server is not up yet (started together)."""
    deadline = asyncio.get_running_loop().time() + timeout
    needed = kinds_to_install(served)
    while True:
        try:
            await crds.install(client, needed)
            return
        except TransportError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


def create_app(
    settings: GatewaySettings | None = None, connect: Callable[[], Client] | None = None
) -> Starlette:
    """The gateway app; `connect` makes its API client (the kubeconfig's by default; tests
    pass an in-process one)."""
    settings = settings or GatewaySettings(**json.loads(os.environ[SETTINGS_ENV]))
    served = settings.served()
    mounts = {service.path: Deferred() for service in served}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = connect() if connect else Client(kubeconfig.load_transport(settings.kubeconfig))
        informers = SharedInformers(client)
        directory = Directory(client, informers)
        platform: Platform | None = None
        try:
            await _until_reachable(client, served)
            password = Path(settings.admin_password_file).read_text().strip()
            await bootstrap(
                client,
                BootstrapSettings(
                    password,
                    region=settings.region,
                    services=settings.catalog(),
                    hash_rounds=settings.hash_rounds,
                ),
            )
            await directory.start()
            codec = RepositoryCodec(Path(settings.key_repository))
            validator = TokenValidator(codec, directory)
            internal.codec = codec
            platform = Platform(settings, client, informers, directory, codec, validator, internal)
            app.state.platform = platform
            for service in served:
                mounts[service.path].app = await service.build(platform)
            names = ", ".join(service.name for service in served)
            log.info("gateway ready on %s:%d (%s)", settings.host, settings.port, names)
            yield
        finally:
            for cleanup in reversed(platform.cleanups if platform else []):
                await cleanup()
            await internal.close()
            await directory.stop()
            await client.close()

    draining = lameduck.Draining()

    async def healthz(request: Request) -> PlainTextResponse:
        if draining.active:
            return PlainTextResponse("draining", 503)
        ready = all(deferred.app is not None for deferred in mounts.values())
        return PlainTextResponse("ok" if ready else "starting", 200 if ready else 503)

    routes: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET", "HEAD"])]
    routes += [Mount(path, app=ReadYourWrites(app)) for path, app in mounts.items()]
    root = Starlette(routes=routes, lifespan=lifespan)
    root.state.draining = draining
    internal = Internal(
        settings.token_ttl,
        local=[service.path for service in served],
        remote_url=settings.internal_url or settings.public_url,
    )
    internal.app = root
    return root


def serve(settings: GatewaySettings) -> None:
    """Run the gateway until SIGINT or SIGTERM (blocking). One worker with `drain_seconds`
    (a control-plane pod) shuts down as a lame duck (`runtime.lameduck`)."""
    os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": "warning",
        "access_log": False,
        "lifespan": "on",
    }
    if settings.workers <= 1 and settings.drain_seconds > 0:
        app = create_app(settings)
        config = uvicorn.Config(app, **options)
        lameduck.LameDuckServer(config, settings.drain_seconds, app.state.draining).run()
        return
    uvicorn.run(
        "unistack.openstack.gateway:create_app",
        factory=True,
        workers=settings.workers if settings.workers > 1 else None,
        **options,
    )
