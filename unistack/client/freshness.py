"""Read-your-writes across replicas: a request that failed on a stale cache is served again.

It lives with the client because the client notes every write (`Client` calls
`note_write`); the informers it waits on are the runtime's, used through their methods only.

A service answers reads from its informers' caches. With one replica that is consistent for
its clients, because each write returns only once the writer's own cache shows it
(`iaas.records`). With several replicas behind the gateway it is not: a client that disabled
a domain through one replica and deletes it through another a millisecond later can meet a
cache that still has it enabled; a network made through one can be missing from the other's.
Kubernetes' API server has the same problem with its watch cache and answers consistent
reads by waiting until the cache has caught up with the store (KEP-2340); this does the same,
but only when it matters.

During a request (`tracking()`), each informer the request reads from is noted with the
number of changes its cache had applied at that moment (`note_read`), and so is any write
(`note_write`: the client's writes, and a call to another service that is not a GET); a
write marks the requests an in-process request was made from too. If the request ends in a
client error and wrote nothing, the caller (the OpenStack gateway's middleware,
`openstack.readyourwrites`) calls `catch_up`: for every informer read it lists the kind from
the API server and waits until the cache holds what the list holds (nothing older, nothing
the store has deleted). If any of those caches changed since the request read it, the answer
may have been stale and the request is served again; if none did, the answer stands.
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


@dataclass
class Tracked:
    reads: dict[int, tuple[Informer, int]] = field(
        default_factory=dict
    )  # id -> (informer, changes)
    wrote: bool = False
    outer: Tracked | None = None  # the request this one was made from, in the same process


_current: ContextVar[Tracked | None] = ContextVar("unistack_freshness", default=None)


@contextlib.contextmanager
def tracking() -> Iterator[Tracked]:
    """Note the reads and writes of the code run inside (one request)."""
    tracked = Tracked(outer=_current.get())
    token = _current.set(tracked)
    try:
        yield tracked
    finally:
        _current.reset(token)


def note_read(informer: Informer) -> None:
    tracked = _current.get()
    if tracked is not None and id(informer) not in tracked.reads:
        tracked.reads[id(informer)] = (informer, informer.changes)


def note_write() -> None:
    """Something was written: this request, and any it was made from, must not run again."""
    tracked = _current.get()
    while tracked is not None:
        tracked.wrote = True
        tracked = tracked.outer


async def catch_up(tracked: Tracked, timeout: float = CATCH_UP_TIMEOUT) -> bool:
    """Bring each cache the request read up to the store; True if any of them had changed
    since the request read it (its answer may have come from a stale cache)."""
    informers = [informer for informer, _ in tracked.reads.values()]
    await asyncio.gather(*(_settle(informer, timeout) for informer in informers))
    return any(informer.changes != seen for informer, seen in tracked.reads.values())


async def _settle(informer: Informer, timeout: float) -> None:
    try:
        listing = await informer.client.list(informer.ref, informer.namespace)
    except Exception:  # the API server is away: nothing to wait for, the answer stands
        return
    listed = {
        _key(obj): int(obj["metadata"].get("resourceVersion") or 0)
        for obj in listing.get("items") or []
    }
    revision = int((listing.get("metadata") or {}).get("resourceVersion") or 0)
    with contextlib.suppress(TimeoutError):
        await informer.wait_until(functools.partial(_holds, informer, listed, revision), timeout)


def _holds(informer: Informer, listed: dict[str, int], revision: int) -> bool:
    """The cache has every listed object at its listed version or newer, and none that the
    list (at `revision`) no longer has, unless it is newer than the list."""
    cache = informer.cache
    for key, version in listed.items():
        cached = cache.get(key)
        if cached is None or _version(cached) < version:
            return False
    return all(_key(obj) in listed or _version(obj) > revision for obj in cache.list())


def _key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if namespace else str(meta["name"])


def _version(obj: dict[str, Any]) -> int:
    return int(obj["metadata"].get("resourceVersion") or 0)
