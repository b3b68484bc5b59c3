"""Read-your-writes across replicas: a lookup that found nothing asks the API server.

It lives with the client because the client notes every write (`Client` calls
`note_write`); the informers it waits on are the runtime's, used through their methods only.

A service answers reads from its informers' caches. With one replica that is consistent for
its clients, because each write returns only once the writer's own cache shows it
(`iaas.records`). With several replicas behind the gateway it is not: a network created
through one replica can be looked up through another a millisecond later, before that one's
watch has delivered it, and a client that just got 201 gets 404. Kubernetes' API server has
the same problem with its watch cache and answers consistent reads by waiting until the cache
has caught up with the store (KEP-2340); this does the same, but only when it matters.

During a request (`tracking()`), a cache lookup that comes back empty is noted
(`note_miss`: the informer, the index and the value), and so is any write (`note_write`: the
client's writes, and a call to another service that is not a GET); a write marks the
requests an in-process request was made from too.
If the request ends in a client error and wrote nothing, the caller (the OpenStack gateway's
middleware, `openstack.freshness`) calls `catch_up`: for every miss it lists the kind from
the API server (by name where the index is the object's name) and, when something there
matches the lookup, waits until the informer has applied it; the request is then served
again, now from a cache that has the object. A miss that the store confirms (a true 404)
costs one list and nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unistack.runtime.informer import Informer  # the caches are the runtime's

CATCH_UP_TIMEOUT = 2.0


@dataclass(frozen=True)
class Miss:
    informer: Informer
    index: str  # "" for a lookup by the cache's key (the object's name)
    value: str
    by_name: bool = False  # the value is the object's name: ask for that one object


@dataclass
class Tracked:
    misses: list[Miss] = field(default_factory=list)
    wrote: bool = False
    outer: Tracked | None = None  # the request this one was made from, in the same process


_current: ContextVar[Tracked | None] = ContextVar("unistack_freshness", default=None)


@contextlib.contextmanager
def tracking() -> Iterator[Tracked]:
    """Note the misses and writes of the code run inside (one request)."""
    tracked = Tracked(outer=_current.get())
    token = _current.set(tracked)
    try:
        yield tracked
    finally:
        _current.reset(token)


def note_miss(informer: Informer, index: str, value: str, *, by_name: bool = False) -> None:
    tracked = _current.get()
    if tracked is not None and len(tracked.misses) < 16:
        tracked.misses.append(Miss(informer, index, value, by_name))


def note_write() -> None:
    """Something was written: this request, and any it was made from, must not run again."""
    tracked = _current.get()
    while tracked is not None:
        tracked.wrote = True
        tracked = tracked.outer


async def catch_up(tracked: Tracked, timeout: float = CATCH_UP_TIMEOUT) -> bool:
    """Wait until the caches have what the store holds for each miss; True if any of them
    was missing only from the cache (the request is worth serving again)."""
    waits = []
    seen: set[tuple[int, str, str]] = set()
    for miss in tracked.misses:
        key = (id(miss.informer), miss.index, miss.value)
        if key in seen:
            continue
        seen.add(key)
        version = await _newest_match(miss)
        if version is not None:  # the store has it: wait for the cache (it may have it now)
            waits.append(
                miss.informer.wait_until(functools.partial(_cached, miss, version), timeout)
            )
    if not waits:
        return False
    results = await asyncio.gather(*waits, return_exceptions=True)
    return any(not isinstance(result, BaseException) for result in results)


async def _newest_match(miss: Miss) -> int | None:
    """The resourceVersion of the newest object in the store the lookup would find."""
    informer = miss.informer
    selector = f"metadata.name={miss.value}" if miss.by_name else None
    try:
        listing = await informer.client.list(
            informer.ref, informer.namespace, field_selector=selector
        )
    except Exception:  # the API server is away: nothing to wait for, the answer stands
        return None
    versions = [
        int(obj["metadata"].get("resourceVersion") or 0)
        for obj in listing.get("items") or []
        if _matches(informer, miss, obj)
    ]
    return max(versions) if versions else None


def _cached(miss: Miss, version: int) -> bool:
    """The cache has an object the lookup finds, as new as `version` or newer. (The cache's
    content, not the informer's last resourceVersion: that is only as good as the order the
    events came in.)"""
    cache = miss.informer.cache
    found = [cache.get(miss.value)] if not miss.index else cache.by_index(miss.index, miss.value)
    return any(
        obj is not None and int(obj["metadata"].get("resourceVersion") or 0) >= version
        for obj in found
    )


def _matches(informer: Informer, miss: Miss, obj: dict[str, Any]) -> bool:
    if not miss.index:  # a lookup by the cache's key: the object's name
        return bool(obj["metadata"].get("name") == miss.value)
    return informer.cache.matches(miss.index, miss.value, obj)
