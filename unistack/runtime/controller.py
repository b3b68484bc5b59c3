"""The reconcile loop: workers take keys off a `WorkQueue` and call a reconcile function.

As in client-go's sample-controller: a worker `get`s a key, reconciles it, `forget`s it on
success or re-adds it with `add_rate_limited` when reconcile raised (logged), and marks it
`done`. A reconcile function may return a number of seconds to be called again after, for
state it must poll. The helpers at the bottom connect an `Informer`'s events to a queue: an
object's own key (`enqueue_objects`), or its controlling owner's key (`enqueue_owners`) so
that a child's change wakes the parent's reconcile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from unistack.client.resources import ResourceRef, split_api_version
from unistack.runtime.informer import Informer, object_key
from unistack.runtime.workqueue import WorkQueue

Obj = dict[str, Any]
Reconcile = Callable[[str], Awaitable[float | None]]

log = logging.getLogger(__name__)


class Controller:
    """`workers` concurrent loops of get → reconcile → forget/add_rate_limited → done."""

    def __init__(self, name: str, queue: WorkQueue, reconcile: Reconcile, workers: int = 1):
        self.name = name
        self.queue = queue
        self.reconcile = reconcile
        self.workers = workers

    async def run(self) -> None:
        """Run the workers until cancelled (then shut the queue down) or the queue shuts down."""
        try:
            async with asyncio.TaskGroup() as group:
                for n in range(self.workers):
                    group.create_task(self._work(), name=f"{self.name} worker {n}")
        finally:
            self.queue.shutdown()

    async def _work(self) -> None:
        while await self.process_next():
            pass

    async def process_next(self) -> bool:
        """Reconcile one key; False when the queue has shut down."""
        key = await self.queue.get()
        if key is None:
            return False
        try:
            await self._reconcile(key)
        finally:
            self.queue.done(key)
        return True

    async def _reconcile(self, key: str) -> None:
        try:
            requeue_after = await self.reconcile(key)
        except asyncio.CancelledError:
            raise
        except Exception:
            retries = self.queue.retries(key)
            log.exception("%s: reconciling %r failed (retry %d)", self.name, key, retries)
            self.queue.add_rate_limited(key)
            return
        self.queue.forget(key)
        if requeue_after is not None:
            self.queue.add_after(key, requeue_after)


def enqueue_objects(informer: Informer, queue: WorkQueue) -> None:
    """Queue the key of every object the informer sees added, changed or deleted."""

    def on_change(obj: Obj) -> None:
        queue.add(object_key(obj))

    informer.add_handlers(
        on_add=on_change,
        on_update=lambda old, new: on_change(new),
        on_delete=on_change,
    )


def controller_of(obj: Obj) -> Obj | None:
    """The object's ownerReference with `controller: true`, if any."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def owner_key(obj: Obj, owner: ResourceRef) -> str | None:
    """The queue key of the object's controlling owner when that owner is of kind `owner`."""
    ref = controller_of(obj)
    if ref is None or ref.get("kind") != owner.kind:
        return None
    if split_api_version(str(ref.get("apiVersion", "")))[0] != owner.group:
        return None
    namespace = obj.get("metadata", {}).get("namespace")
    if owner.namespaced and namespace:
        return f"{namespace}/{ref['name']}"
    return str(ref["name"])


def enqueue_owners(informer: Informer, queue: WorkQueue, owner: ResourceRef) -> None:
    """Route the informer's (child) events to the key of their controlling `owner`-kind owner.

    A change of owner queues both the old and the new owner.
    """

    def on_change(obj: Obj) -> None:
        key = owner_key(obj, owner)
        if key is not None:
            queue.add(key)

    def on_update(old: Obj, new: Obj) -> None:
        if old.get("metadata", {}).get("resourceVersion") == new.get("metadata", {}).get(
            "resourceVersion"
        ):
            return
        on_change(new)
        if owner_key(old, owner) != owner_key(new, owner):
            on_change(old)

    informer.add_handlers(on_add=on_change, on_update=on_update, on_delete=on_change)


async def run_with_informers(controller: Controller, *informers: Informer) -> None:
    """Start the informers, wait until every cache has synced, then run the controller;
    the informers stop when it does (cancelled or failed), as client-go's Run does — shared
    ones once the last controller reading them stops."""
    for informer in informers:
        informer.start()
    try:
        for informer in informers:
            await informer.wait_synced()
        await controller.run()
    finally:
        for informer in informers:
            await informer.stop()
