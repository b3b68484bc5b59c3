"""The OpenStack gateway: every service's app under one port with DevStack's paths.

`/identity` is Keystone v3; the compute, image, network and volume facades join it under
`/compute`, `/image`, `/network` and `/volume` as they are built. At start each worker
connects to the API server (the kubeconfig), installs the IaaS CRDs it serves if missing,
bootstraps identity (idempotent: the Default domain, roles, the admin project and user, the
catalog entries of the services this gateway serves), and fills its caches; until then a
service answers 503. uvicorn runs `workers` processes, each with its own caches, reading
the same store — Keystone runs several WSGI workers the same way.

Settings come as JSON in the environment (`UNISTACK_GATEWAY_SETTINGS`), as uvicorn's worker
processes build the app from an import string.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from unistack.client import kubeconfig
from unistack.client.api import Client
from unistack.client.transport import TransportError
from unistack.iaas import crds
from unistack.iaas.identity import kinds
from unistack.iaas.identity.bootstrap import BootstrapSettings, CatalogEntry, bootstrap
from unistack.iaas.identity.directory import Directory
from unistack.openstack.identity.app import create_app as identity_app
from unistack.openstack.identity.service import IdentityService, IdentitySettings
from unistack.openstack.web import json_response
from unistack.tokens import TokenCodec, load_keys

SETTINGS_ENV = "UNISTACK_GATEWAY_SETTINGS"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewaySettings:
    kubeconfig: str
    key_repository: str
    admin_password_file: str
    public_url: str  # what clients reach, e.g. http://127.0.0.1:8080
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    region: str = "RegionOne"
    hash_rounds: int = 12
    token_ttl: float = 3600.0

    def catalog(self) -> list[CatalogEntry]:
        return [CatalogEntry("identity", "keystone", f"{self.public_url}/identity")]


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


async def _until_reachable(client: Client, timeout: float = 60.0) -> None:
    """Install the CRDs, retrying while the API server is not up yet (started together)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await crds.install(client, kinds.ALL)
            return
        except TransportError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


def create_app(settings: GatewaySettings | None = None) -> Starlette:
    settings = settings or GatewaySettings(**json.loads(os.environ[SETTINGS_ENV]))
    identity = Deferred()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = Client(kubeconfig.load_transport(settings.kubeconfig))
        directory = Directory(client)
        try:
            await _until_reachable(client)
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
            codec = TokenCodec(load_keys(Path(settings.key_repository)))
            service = IdentityService(
                client,
                directory,
                codec,
                IdentitySettings(token_ttl=settings.token_ttl, hash_rounds=settings.hash_rounds),
            )
            identity.app = identity_app(service)
            log.info("gateway ready on %s", settings.public_url)
            yield
        finally:
            await directory.stop()
            await client.close()

    return Starlette(routes=[Mount("/identity", app=identity)], lifespan=lifespan)


def serve(settings: GatewaySettings) -> None:
    """Run the gateway until SIGINT or SIGTERM (blocking)."""
    os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))
    uvicorn.run(
        "unistack.openstack.gateway:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers if settings.workers > 1 else None,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
