"""Following a store prefix in memory: list it, then apply every watch event to a mirror.

Some of the API server's own state must answer synchronously, on every request, without a
store read: Keystone's revocation events (`keystone.StoreRevocations`) and the RBAC objects
(`rbac.index.RbacIndex`). Each is a `Mirror` of one store prefix, kept by a `StoreFollower`:
the follower lists the prefix (`replace`), watches from the list's revision (`apply` per
event), and when the watch ends (it fell behind compaction) or a mirror fails on an event
(logged), lists again and follows on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from unistack import store as storage

log = logging.getLogger(__name__)


class Mirror(Protocol):
    def replace(self, items: list[storage.Stored]) -> None:
        """Everything under the prefix, as a list read it."""

    def apply(self, event: storage.Event) -> None:
        """One change under the prefix."""


class StoreFollower:
    """Keeps a `Mirror` in step with the store under `prefix` until stopped."""

    def __init__(self, store: storage.ObjectStore, prefix: str, mirror: Mirror) -> None:
        self.store = store
        self.prefix = prefix
        self.mirror = mirror
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        watcher = await self._load()
        self._task = asyncio.get_running_loop().create_task(self._follow(watcher))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _load(self) -> storage.Watcher:
        listed = await self.store.list(self.prefix)
        self.mirror.replace(listed.items)
        return self.store.watch(self.prefix, listed.revision)

    async def _follow(self, watcher: storage.Watcher) -> None:
        while True:
            try:
                async for batch in watcher.batches():
                    for event in batch:
                        self.mirror.apply(event)
            except Exception:  # a mirror that cannot take an event must not go stale quietly
                log.exception("following %s failed; reading it again", self.prefix)
                watcher.close()
            # The watch ended (it fell behind, or failed): read the prefix again, follow on.
            while True:
                try:
                    watcher = await self._load()
                    break
                except Exception:
                    log.exception("reloading %s failed", self.prefix)
                    await asyncio.sleep(1.0)
