"""The service proxy (kube-proxy's role): Services and EndpointSlices kept as one nftables table.

`ServiceProxy` watches Services and EndpointSlices in every namespace (informers from
`unistack.runtime`); any change marks the table dirty, and after a short coalescing delay (so a
burst of events costs one apply) it renders the whole table with the pure
`unistack.agent.proxyrules.render` and, only when the text differs from what it last applied,
replaces the table atomically through an `unistack.dataplane.nftables.Nftables` driver. A
failed apply is logged and retried with backoff. When it stops it deletes its table (unless
told to keep it), so a stopped proxy leaves nothing on the host.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from unistack.agent.proxyrules import ProxySettings, render
from unistack.client.api import Client
from unistack.client.resources import ENDPOINTSLICES, SERVICES
from unistack.dataplane.nftables import Nftables
from unistack.runtime.informer import Informer
from unistack.runtime.syncloop import SyncLoop

Obj = dict[str, Any]
FAMILY = "ip"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProxyOptions:
    """How the proxy runs: the table it renders, how long it lets events pile up before a
    render, how long it waits after a failed apply, and whether it removes its table on stop."""

    rules: ProxySettings = field(default_factory=ProxySettings)
    coalesce_delay: float = 0.02
    retry_delay: float = 1.0
    delete_on_stop: bool = True


class ServiceProxy:
    """Keeps the nftables table of `options.rules.table` equal to the cluster's Services."""

    def __init__(self, client: Client, driver: Nftables, options: ProxyOptions | None = None):
        self.driver = driver
        self.options = options or ProxyOptions()
        self.services = Informer(client, SERVICES)
        self.slices = Informer(client, ENDPOINTSLICES)
        self.last_ruleset: str | None = None
        self.applies = 0
        self.loop = SyncLoop(
            f"service proxy ({self.options.rules.table})",
            self.sync,
            (self.services, self.slices),
            coalesce=self.options.coalesce_delay,
            retry=self.options.retry_delay,
        )

    def desired_ruleset(self) -> str:
        """The table the caches call for now."""
        return render(self.services.cache.list(), self.slices.cache.list(), self.options.rules)

    async def sync(self) -> bool:
        """Render and apply when the text changed; True when something was applied."""
        ruleset = self.desired_ruleset()
        if ruleset == self.last_ruleset:
            return False
        await self.driver.apply_table(FAMILY, self.options.rules.table, ruleset)
        self.last_ruleset = ruleset
        self.applies += 1
        return True

    async def run(self) -> None:
        """Watch and apply until cancelled; then delete the table if so configured."""
        try:
            await self.loop.run()
        finally:
            await self._cleanup()

    async def _cleanup(self) -> None:
        if not self.options.delete_on_stop:
            return
        try:
            await self.driver.delete_table(FAMILY, self.options.rules.table)
        except Exception as exc:
            log.warning("service proxy: deleting table %s: %s", self.options.rules.table, exc)
        else:
            self.last_ruleset = None
