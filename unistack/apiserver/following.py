"""Following a store prefix in memory: list it, then apply every watch event to a mirror.

Some of the API server's own state must answer synchronously, on every request, without a
store read: Keystone's revocation events (`keystone.StoreRevocations`) and the RBAC objects
(`rbac.index.RbacIndex`). Each is a `Mirror` of one store prefix, kept by a `StoreFollower`:
the follower lists the prefix (`replace`), watches from the list's revision (`apply` per
event), and when the watch ends (it fell behind compaction) lists again and follows on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

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
        self.revision = 0  # the store revision the mirror reflects, at least
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        watcher = await self._load()
        self._task = asyncio.get_running_loop().create_task(self._follow(watcher))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _load(self) -> Any:
        listed = await self.store.list(self.prefix)
        self.mirror.replace(listed.items)
        self.revision = listed.revision
        return self.store.watch(self.prefix, listed.revision)

    async def _follow(self, watcher: Any) -> None:
        while True:
            async for batch in watcher.batches():
                for event in batch:
                    self.mirror.apply(event)
                    self.revision = max(self.revision, event.revision)
            # The watch ended (it fell behind): read the prefix again and follow on.
            while True:
                try:
                    watcher = await self._load()
                    break
                except Exception:
                    log.exception("reloading %s failed", self.prefix)
                    await asyncio.sleep(1.0)
