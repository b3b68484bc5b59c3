"""Informers: one kind listed and watched into a read-only local cache, with event handlers.

An `Informer` lists its resource, then watches from the list's resourceVersion, applying every
event to its `Cache` and calling the handlers (which should only enqueue keys, see
`unistack.runtime.controller`). Bookmarks advance the resourceVersion it would resume from.
When the watch ends normally it watches again from there; when the server answers 410 Gone it
lists again at once; when the stream breaks or a request fails it lists again after an
exponential backoff (0.8 s doubling to 30 s). A relist reconciles the cache with the new list,
calling the handlers for what changed meanwhile.

Objects in the cache are shared, not copied: NEVER modify an object an informer or its cache
hands out. Take `copy_object(obj)` first when you need to change one to write it back.

`SharedInformers` hands the controllers of one process the same informer per resource, as
client-go's SharedInformerFactory does: one watch stream and one decoded object per change
whatever the number of controllers reading pods, each adding the indexes and handlers it
needs. A shared informer runs while anyone who `start`ed it has not `stop`ped it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from unistack.client.api import ApiError, Client, Gone, WatchEvent
from unistack.client.resources import ResourceRef
from unistack.client.transport import TransportError

Obj = dict[str, Any]
IndexFunc = Callable[[Obj], Iterable[str]]
AddHandler = Callable[[Obj], None]
UpdateHandler = Callable[[Obj, Obj], None]
DeleteHandler = Callable[[Obj], None]

log = logging.getLogger(__name__)


def object_key(obj: Obj) -> str:
    """`namespace/name`, or `name` for a cluster-scoped object (client-go's key)."""
    meta = obj.get("metadata", {})
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if namespace else str(meta["name"])


def split_key(key: str) -> tuple[str | None, str]:
    """The (namespace or None, name) of a key made by `object_key`."""
    namespace, _, name = key.rpartition("/")
    return namespace or None, name


def copy_object(obj: Obj) -> Obj:
    """A deep copy of an object, safe to modify."""
    copied: Obj = orjson.loads(orjson.dumps(obj))
    return copied


def owner_uids(obj: Obj) -> list[str]:
    """Index function: the uids of the object's owners."""
    return [ref["uid"] for ref in obj.get("metadata", {}).get("ownerReferences") or []]


def namespace_index(obj: Obj) -> list[str]:
    """Index function: the object's namespace."""
    namespace = obj.get("metadata", {}).get("namespace")
    return [namespace] if namespace else []


class Cache:
    """Objects by key, with optional secondary indexes. Read-only for everyone but its informer."""

    def __init__(self, indexers: dict[str, IndexFunc] | None = None) -> None:
        self._objects: dict[str, Obj] = {}
        self._indexers: dict[str, IndexFunc] = dict(indexers or {})
        self._indexes: dict[str, dict[str, set[str]]] = {name: {} for name in self._indexers}

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, key: str) -> bool:
        return key in self._objects

    def get(self, key: str) -> Obj | None:
        return self._objects.get(key)

    def list(self) -> builtins.list[Obj]:
        return builtins.list(self._objects.values())

    def keys(self) -> builtins.list[str]:
        return builtins.list(self._objects)

    def by_index(self, index: str, value: str) -> builtins.list[Obj]:
        """Objects whose index function `index` yields `value`."""
        keys = self._indexes[index].get(value, ())
        return [self._objects[key] for key in keys]

    def matches(self, index: str, value: str, obj: Obj) -> bool:
        """Whether `by_index(index, value)` would include `obj` (one not cached, perhaps)."""
        return value in self._indexers[index](obj)

    def has_index(self, name: str) -> bool:
        return name in self._indexers

    def add_indexer(self, name: str, function: IndexFunc) -> None:
        self._indexers[name] = function
        self._indexes[name] = {}
        for key, obj in self._objects.items():
            self._index(name, key, obj)

    def _put(self, obj: Obj) -> Obj | None:
        key = object_key(obj)
        old = self._objects.get(key)
        if old is not None:
            self._unindex(key, old)
        self._objects[key] = obj
        for name in self._indexers:
            self._index(name, key, obj)
        return old

    def _remove(self, key: str) -> Obj | None:
        old = self._objects.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _index(self, name: str, key: str, obj: Obj) -> None:
        for value in self._indexers[name](obj):
            self._indexes[name].setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: Obj) -> None:
        for name, function in self._indexers.items():
            index = self._indexes[name]
            for value in function(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]


def _resource_version(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))


def _revision(resource_version: str) -> int:
    return int(resource_version) if resource_version.isdigit() else 0


class Informer:
    """List-then-watch of one resource into a `Cache`; run it with `run()` (until cancelled)."""

    def __init__(
        self,
        client: Client,
        ref: ResourceRef,
        namespace: str | None = None,
        label_selector: str | None = None,
        *,
        field_selector: str | None = None,
        indexers: dict[str, IndexFunc] | None = None,
        backoff_initial: float = 0.8,
        backoff_max: float = 30.0,
        watch_timeout: int | None = None,
    ) -> None:
        self.client = client
        self.ref = ref
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.cache = Cache(indexers)
        self.last_resource_version = ""
        self.changes = 0  # objects put or removed so far (`client.freshness` compares it)
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._watch_timeout = watch_timeout
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._users = 0
        self._on_add: list[AddHandler] = []
        self._on_update: list[UpdateHandler] = []
        self._on_delete: list[DeleteHandler] = []
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until `condition()` holds after the cache applied an event (read-your-writes:
        after a write, wait until the cache shows it). TimeoutError after `timeout`."""
        if condition():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (condition, future)
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await future
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    async def wait_for_version(self, resource_version: str, timeout: float = 10.0) -> None:
        """Wait until the cache has applied events up to `resource_version` (a revision)."""
        wanted = int(resource_version)
        await self.wait_until(lambda: _revision(self.last_resource_version) >= wanted, timeout)

    async def catch_up(self, timeout: float = 2.0) -> None:
        """Wait until the cache holds what the store holds now: list the resource as the
        informer does and wait for the watch to bring every listed object (at its version or
        newer) and take away what the store has deleted since (unless it is newer than the
        list). Gives up quietly after `timeout`, or at once when the API server is away.
        `client.freshness` calls this for a request that may have read a stale cache."""
        try:
            listing = await self.client.list_all(
                self.ref,
                self.namespace,
                label_selector=self.label_selector,
                field_selector=self.field_selector,
            )
        except (ApiError, TransportError):
            return
        listed = {object_key(obj): _revision(_resource_version(obj)) for obj in listing["items"]}
        revision = _revision(_resource_version(listing))

        def holds() -> bool:
            for key, version in listed.items():
                cached = self.cache.get(key)
                if cached is None or _revision(_resource_version(cached)) < version:
                    return False
            return all(
                object_key(obj) in listed or _revision(_resource_version(obj)) > revision
                for obj in self.cache.list()
            )

        with contextlib.suppress(TimeoutError):
            await self.wait_until(holds, timeout)

    def _wake(self) -> None:
        for condition, future in self._waiters:
            if not future.done() and condition():
                future.set_result(None)

    def add_handlers(
        self,
        on_add: AddHandler | None = None,
        on_update: UpdateHandler | None = None,
        on_delete: DeleteHandler | None = None,
    ) -> None:
        """Call these for every change. Objects already cached are replayed to `on_add`."""
        if on_add is not None:
            self._on_add.append(on_add)
            for obj in self.cache.list():
                self._call(on_add, obj)
        if on_update is not None:
            self._on_update.append(on_update)
        if on_delete is not None:
            self._on_delete.append(on_delete)

    @property
    def has_synced(self) -> bool:
        """True once the first list is in the cache."""
        return self._synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self._synced.wait()

    def start(self) -> asyncio.Task[None]:
        """`run()` as a task, one for all who start it; `stop` once per `start` (or cancel the
        task, which stops it for everyone)."""
        self._users += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=f"informer {self.ref}")
        return self._task

    async def stop(self) -> None:
        """Undo one `start`; the last one stops the informer."""
        self._users -= 1
        task = self._task
        if self._users > 0 or task is None:
            return
        self._task = None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def run(self) -> None:
        """List and watch forever: relist on 410 at once, on failures after a backoff."""
        delay = self._backoff_initial
        while True:
            try:
                await self._list()
                delay = self._backoff_initial
                await self._watch_until_gone()
            except Gone:
                log.info("informer %s: resourceVersion expired, relisting", self.ref)
                continue
            except (ApiError, TransportError, ValueError) as exc:
                log.warning("informer %s: %s; relisting in %.1fs", self.ref, exc, delay)
            await asyncio.sleep(delay * random.uniform(1.0, 1.2))
            delay = min(delay * 2, self._backoff_max)

    async def _list(self) -> None:
        listing = await self.client.list_all(
            self.ref,
            self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        self._replace(listing.get("items") or [], self.ref.kind)
        self.last_resource_version = _resource_version(listing)
        self._synced.set()
        if self._waiters:
            self._wake()

    async def _watch_until_gone(self) -> None:
        """Watch, and watch again each time the server ends the stream; raise on failure."""
        while True:
            events = self.client.watch(
                self.ref,
                self.namespace,
                resource_version=self.last_resource_version,
                label_selector=self.label_selector,
                field_selector=self.field_selector,
                allow_bookmarks=True,
                timeout_seconds=self._watch_timeout or random.randint(300, 600),
            )
            async with contextlib.aclosing(events):
                async for event in events:
                    self._apply(event)

    def _apply(self, event: WatchEvent) -> None:
        obj = event.object
        if event.type != "BOOKMARK":
            obj.setdefault("kind", self.ref.kind)
            obj.setdefault("apiVersion", self.ref.api_version)
        if event.type in ("ADDED", "MODIFIED"):
            self._upsert(obj)
        elif event.type == "DELETED":
            self._delete(object_key(obj), obj)
        self.last_resource_version = _resource_version(obj) or self.last_resource_version
        if self._waiters:
            self._wake()

    def _replace(self, items: list[Obj], kind: str) -> None:
        """Make the cache equal the list, telling the handlers what changed."""
        listed: set[str] = set()
        for obj in items:
            obj.setdefault("kind", kind)
            obj.setdefault("apiVersion", self.ref.api_version)
            listed.add(object_key(obj))
            old = self.cache.get(object_key(obj))
            if old is None or _resource_version(old) != _resource_version(obj):
                self._upsert(obj)
        for key in set(self.cache.keys()) - listed:
            self._delete(key, self.cache.get(key))

    def _upsert(self, obj: Obj) -> None:
        self.changes += 1
        old = self.cache._put(obj)
        if old is None:
            for on_add in self._on_add:
                self._call(on_add, obj)
        else:
            for on_update in self._on_update:
                self._call(on_update, old, obj)

    def _delete(self, key: str, last: Obj | None) -> None:
        self.changes += 1
        old = self.cache._remove(key)
        final = last if last is not None else old
        if final is None:
            return
        for on_delete in self._on_delete:
            self._call(on_delete, final)

    def _call(self, handler: Callable[..., None], *objs: Obj) -> None:
        try:
            handler(*objs)
        except Exception:
            log.exception("informer %s: event handler failed", self.ref)


class SharedInformers:
    """One unfiltered informer per resource for every controller of a process."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._informers: dict[tuple[str, str, str], Informer] = {}

    def informer(self, ref: ResourceRef, indexers: dict[str, IndexFunc] | None = None) -> Informer:
        """The resource's shared informer, with these indexes added to its cache (an index
        name means one function: the first registered under it is kept)."""
        key = (ref.group, ref.version, ref.plural)
        informer = self._informers.get(key)
        if informer is None:
            informer = self._informers[key] = Informer(self.client, ref, indexers=indexers)
            return informer
        for name, function in (indexers or {}).items():
            if not informer.cache.has_index(name):
                informer.cache.add_indexer(name, function)
        return informer
