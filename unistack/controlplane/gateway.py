"""The gateway: HAProxy in front of the control plane's API pods, kept equal to their Endpoints.

`Gateway` watches, in `settings.namespace` (`unistack-system`), the Services labelled
`unistack.io/gateway: "true"` and every Endpoints (informers from `unistack.runtime`,
namespaced: this process needs nothing else, so it does not share cluster-wide ones). Any
change marks it dirty; after `debounce` seconds (a burst of events costs one reload) it
renders the config with the pure `unistack.controlplane.haproxyconf` and, only when the text
changed, applies it through `unistack.controlplane.haproxy.HAProxy` (check, atomic swap,
seamless reload). Every `resync_period` it also makes sure HAProxy still runs, starting it
again if it died. A config HAProxy rejects is logged and not retried until the objects
change; other failures are retried after `retry_delay`. HAProxy is stopped when the gateway
stops: a soft stop, its listener closed at once and its connections finished (the other
gateways sharing the port through SO_REUSEPORT take the new ones, and with the host's
`net.ipv4.tcp_migrate_req` those its listener had queued). A gateway pod says it is Ready by
its heartbeat, `settings.heartbeat` (`runtime.process.heartbeat`): touched every second
while HAProxy runs, removed the moment the gateway is told to stop. Told to stop, a pod
serves on for `settings.drain_seconds` first, long enough for the bootstrap to bind the port
when it was the last one Ready (`cli.selfhost`).

`run_gateway(client, settings)` runs it until cancelled; `serve(kubeconfig_path, settings)`
is the blocking entry of `unistack serve gateway`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unistack.client import kubeconfig
from unistack.client.api import Client
from unistack.client.resources import ENDPOINTS, SERVICES
from unistack.controlplane import haproxyconf
from unistack.controlplane.haproxy import HAProxy, HAProxyConfigError
from unistack.runtime import process
from unistack.runtime.informer import Informer
from unistack.runtime.syncloop import SyncLoop

Obj = dict[str, Any]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """Where HAProxy keeps its files, what it renders, and how the watch loop paces itself.
    `config.stats_socket` is replaced by the runner's own socket under `workdir`."""

    workdir: Path
    config: haproxyconf.GatewayConfig = field(default_factory=haproxyconf.GatewayConfig)
    namespace: str = "unistack-system"
    debounce: float = 0.1
    retry_delay: float = 1.0
    resync_period: float = 5.0
    haproxy_binary: str = "haproxy"
    # A gateway pod's readiness: fresh while HAProxy runs, gone from the moment it stops
    heartbeat: Path | None = None
    drain_seconds: float = 0.0  # serving on after being told to stop, before the soft stop


class Gateway:
    """Keeps one HAProxy's config equal to the gateway Services' ready endpoints."""

    def __init__(self, client: Client, settings: GatewaySettings) -> None:
        self.settings = settings
        self.haproxy = HAProxy(settings.workdir, binary=settings.haproxy_binary)
        self.config = dataclasses.replace(
            settings.config, stats_socket=str(self.haproxy.stats_socket)
        )
        selector = f"{haproxyconf.GATEWAY_LABEL}=true"
        self.services = Informer(client, SERVICES, settings.namespace, selector)
        self.endpoints = Informer(client, ENDPOINTS, settings.namespace)
        self.rejected: str | None = None
        # the resync restarts a HAProxy that died (`sync` applies when it is not running)
        self.loop = SyncLoop(
            "gateway",
            self.sync,
            (self.services, self.endpoints),
            coalesce=settings.debounce,
            retry=settings.retry_delay,
            resync=settings.resync_period,
        )

    def desired_routes(self) -> list[haproxyconf.Route]:
        return haproxyconf.routes_from(self.services.cache.list(), self.endpoints.cache.list())

    def desired_config(self) -> str:
        """The haproxy.cfg the caches call for now."""
        return haproxyconf.render(self.config, self.desired_routes())

    async def sync(self) -> bool:
        """Apply the desired config when it changed (or HAProxy is not running); True when
        something was started or reloaded."""
        text = self.desired_config()
        if text == self.rejected:
            return False
        try:
            changed = await self.haproxy.apply(text)
        except HAProxyConfigError as exc:
            self.rejected = text
            log.error("gateway: config rejected, the previous one (if any) keeps serving: %s", exc)
            return False
        if changed:
            log.info("gateway: haproxy serves %d route(s)", len(self.desired_routes()))
        return changed

    async def serving(self) -> None:
        """The heartbeat's check: HAProxy runs."""
        if self.haproxy.pid is None:
            raise RuntimeError("haproxy does not run")

    async def run(self) -> None:
        """Watch and apply until cancelled, beating while HAProxy runs; then stop beating,
        drain, and stop HAProxy."""
        path = self.settings.heartbeat
        beat = None
        if path is not None:
            beat = asyncio.create_task(process.heartbeat(self.serving, path, period=1.0))
        try:
            await self.loop.run()
        finally:
            if beat is not None:  # not Ready from now on
                beat.cancel()
                await asyncio.wait([beat])
            if self.haproxy.pid is not None:
                await asyncio.sleep(self.settings.drain_seconds)
            await self.haproxy.stop()


async def run_gateway(client: Client, settings: GatewaySettings) -> None:
    """Run the gateway until cancelled (HAProxy is stopped on the way out)."""
    await Gateway(client, settings).run()


def serve(kubeconfig_path: str, settings: GatewaySettings) -> None:
    """`unistack serve gateway`: run until SIGTERM or SIGINT (blocking)."""
    process.configure_logging()
    asyncio.run(_main(kubeconfig_path, settings))


async def _main(kubeconfig_path: str, settings: GatewaySettings) -> None:
    client = Client(kubeconfig.load_transport(kubeconfig_path))
    try:
        await process.run_until_signalled(run_gateway(client, settings))
    finally:
        await client.close()
