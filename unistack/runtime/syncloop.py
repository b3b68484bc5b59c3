"""A level-triggered sync loop: informers say something changed, one `sync` makes the world
match the caches.

For a component whose whole desired state is a function of a few caches (a host's nftables
table, its bridges, routers or DHCP servers, HAProxy's configuration, the control plane's
objects), a per-object work queue buys nothing: `SyncLoop` marks itself dirty on every event
of the informers it watches, waits `coalesce` seconds so that a burst of events costs one
pass, and calls `sync`. A failed pass is logged and retried after `retry` seconds; with
`resync`, a pass also runs that often when nothing changed (to notice drift on the host).
`lookups` are informers the loop runs without reacting to them (caches `sync` only reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from unistack.runtime.informer import Informer

log = logging.getLogger(__name__)


class SyncLoop:
    """Calls `sync` after changes to the watched informers' caches, coalesced."""

    def __init__(
        self,
        name: str,
        sync: Callable[[], Awaitable[Any]],
        informers: Sequence[Informer],
        *,
        lookups: Sequence[Informer] = (),
        coalesce: float = 0.05,
        retry: float = 1.0,
        resync: float | None = None,
    ) -> None:
        self.name = name
        self.informers = (*informers, *lookups)
        self._sync = sync
        self.coalesce, self.retry, self.resync = coalesce, retry, resync
        self._dirty = asyncio.Event()
        for informer in informers:
            informer.add_handlers(
                on_add=self.poke, on_update=lambda old, new: self.poke(), on_delete=self.poke
            )

    def poke(self, *_: object) -> None:
        """Ask for a pass (an informer event, or anything else that changed what to do)."""
        self._dirty.set()

    async def run(self) -> None:
        """Start the informers, pass once they have listed, then after every change, until
        cancelled; the informers stop with it."""
        tasks = [informer.start() for informer in self.informers]
        try:
            for informer in self.informers:
                await informer.wait_synced()
            self.poke()
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.resync):
                        await self._dirty.wait()
                await asyncio.sleep(self.coalesce)
                self._dirty.clear()
                try:
                    await self._sync()
                except Exception:
                    log.exception("%s: sync failed; retrying in %.1fs", self.name, self.retry)
                    await asyncio.sleep(self.retry)
                    self.poke()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
