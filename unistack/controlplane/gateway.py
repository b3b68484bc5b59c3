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
stops.

`run_gateway(client, settings)` runs it until cancelled; `serve(kubeconfig_path, settings)`
is the blocking entry of `unistack serve gateway`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unistack.client import kubeconfig
from unistack.client.api import Client
from unistack.client.resources import ENDPOINTS, SERVICES
from unistack.controlplane import haproxyconf
from unistack.controlplane.haproxy import HAProxy, HAProxyConfigError, HAProxyError
from unistack.runtime import process
from unistack.runtime.informer import Informer

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
        self._dirty = asyncio.Event()
        for informer in (self.services, self.endpoints):
            informer.add_handlers(
                on_add=self._mark_dirty,
                on_update=lambda _old, new: self._mark_dirty(new),
                on_delete=self._mark_dirty,
            )

    def _mark_dirty(self, _obj: Obj) -> None:
        self._dirty.set()

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

    async def run(self) -> None:
        """Watch and apply until cancelled; then stop HAProxy."""
        tasks = [self.services.start(), self.endpoints.start()]
        try:
            await self.services.wait_synced()
            await self.endpoints.wait_synced()
            self._dirty.set()
            await self._sync_forever()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.haproxy.stop()

    async def _sync_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.resync_period):
                    await self._dirty.wait()
            await asyncio.sleep(self.settings.debounce)
            self._dirty.clear()
            try:
                await self.sync()
            except (HAProxyError, OSError) as exc:
                log.error("gateway: haproxy: %s; retrying in %.1fs", exc, self.settings.retry_delay)
                await asyncio.sleep(self.settings.retry_delay)
                self._dirty.set()


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
