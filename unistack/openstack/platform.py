"""What every OpenStack service of a gateway worker shares (`Platform`), and how services
call each other (`Internal`).

The gateway (`unistack.openstack.gateway`) builds one `Platform` per worker once identity is
up and hands it to each service's `build`; services import this module, never the gateway
or each other. A service served by this process is called in-process through the gateway's
root app; any other over HTTP through the public gateway (`GatewaySettings.internal_url`),
which reaches the process serving it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import ASGIApp

from unistack.client import freshness
from unistack.client.api import Client
from unistack.client.transport import AsgiTransport, HttpTransport, Response, TransportError
from unistack.iaas.identity.bootstrap import stable_id
from unistack.iaas.identity.directory import Directory
from unistack.openstack.auth import TokenValidator
from unistack.runtime.informer import SharedInformers
from unistack.runtime.leader import LeaderElector
from unistack.tokens import Claims, TokenCodec

if TYPE_CHECKING:
    from unistack.openstack.gateway import GatewaySettings

LEASE_NAMESPACE = "kube-system"

log = logging.getLogger(__name__)


def is_local(path: str, local: Sequence[str]) -> bool:
    """Whether `path` (from the gateway root) belongs to one of the `local` mount paths."""
    return any(path == prefix or path.startswith(prefix.rstrip("/") + "/") for prefix in local)


class Internal:
    """Calls between services, as Nova calls Neutron, Glance and Cinder: real OpenStack
    requests with a service token (the bootstrap admin, scoped to the admin project),
    answered by the gateway's own app when this process serves the path (`local`, mount
    paths; None: every path), else sent over HTTP to `remote_url`, so services share no
    code and no shortcut around each other's API."""

    def __init__(
        self, ttl: float = 3600.0, local: Sequence[str] | None = None, remote_url: str = ""
    ) -> None:
        self.ttl = ttl
        self.codec: TokenCodec | None = None  # set at start-up, with the keys
        self.app: ASGIApp | None = None
        self.local = None if local is None else tuple(local)
        self.remote_url = remote_url
        self._remote: HttpTransport | None = None  # made on first use, in the running loop
        self._token = ""
        self._expires = 0.0

    def token(self) -> str:
        now = time.time()
        assert self.codec is not None, "the gateway has not started"
        if now > self._expires - 60:
            claims = Claims(
                stable_id("user", "admin"),
                ("token",),
                now,
                now + self.ttl,
                project_id=stable_id("project", "admin"),
            )
            self._token, self._expires = self.codec.seal(claims), now + self.ttl
        return self._token

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """`path` from the gateway root (`/network/v2.0/ports`); the answer decoded when it is
        JSON, its bytes otherwise. A `bytes` body goes as it is, as
        `application/octet-stream` (image data). A service elsewhere that cannot be reached
        answers 503, as one still starting here does."""
        raw = body if isinstance(body, bytes) else orjson.dumps(body) if body is not None else None
        media = "application/octet-stream" if isinstance(body, bytes) else "application/json"
        sent = {"content-type": media, "x-auth-token": self.token()}
        sent.update(headers or {})
        if method not in ("GET", "HEAD"):
            freshness.note_write()  # another service may have written: never run this again
        try:
            reply = await self._transport(path).request(
                method, path, params=params, body=raw, headers=sent
            )
        except TransportError as error:
            log.warning("internal call %s %s failed: %s", method, path, error)
            return 503, unreachable(path)
        return decoded(reply)

    def _transport(self, path: str) -> AsgiTransport | HttpTransport:
        if self.local is None or is_local(path, self.local):
            assert self.app is not None, "the gateway app is not built yet"
            return AsgiTransport(self.app)
        if self._remote is None:
            assert self.remote_url, "no URL for services served elsewhere"
            self._remote = HttpTransport(self.remote_url)
        return self._remote

    async def close(self) -> None:
        if self._remote is not None:
            await self._remote.close()
            self._remote = None


def decoded(reply: Response) -> tuple[int, Any]:
    """The status and the body: decoded JSON, the bytes of anything else, None if empty."""
    media = {k.lower(): v for k, v in reply.headers.items()}.get("content-type", "")
    if not reply.body:
        return reply.status, None
    if "json" not in media:
        return reply.status, reply.body  # image data comes back as the bytes it is
    return reply.status, orjson.loads(reply.body)


def unreachable(path: str) -> dict[str, Any]:
    message = f"The service of {path.split('?')[0]} cannot be reached."
    return {"error": {"code": 503, "title": "Service Unavailable", "message": message}}


@dataclass
class Platform:
    """What every service of a gateway worker shares."""

    settings: GatewaySettings
    client: Client
    informers: SharedInformers
    directory: Directory
    codec: TokenCodec
    validator: TokenValidator
    internal: Internal
    cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def admin_project_id(self) -> str:
        """The bootstrap admin project, owner of what the cloud itself provides."""
        return stable_id("project", "admin")

    def lead(self, name: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a service's controllers in one worker of the cluster at a time: `work` runs
        while this process holds Lease `unistack-<name>` (kube-system); another worker takes
        over within the lease duration if this one dies. Stopped with the gateway."""
        identity = f"{socket.gethostname()}-{os.getpid()}"
        elector = LeaderElector(self.client, LEASE_NAMESPACE, f"unistack-{name}", identity)

        async def campaign() -> None:
            while True:
                try:
                    await elector.run(work)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s controllers stopped; campaigning again", name)
                await asyncio.sleep(1.0)

        task = asyncio.create_task(campaign(), name=f"lead {name}")

        async def stop() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        self.cleanups.append(stop)
