"""Read-your-writes across replicas: what a request read and wrote, so that one that failed on
a stale cache can be served again.

A service answers reads from its informers' caches. With one replica that is consistent for
its clients, because each write returns only once the writer's own cache shows it
(`iaas.records`). With several replicas behind the gateway it is not: a client that disabled
a domain through one replica and deletes it through another a millisecond later can meet a
cache that still has it enabled; a network made through one can be missing from the other's.
Kubernetes' API server has the same problem with its watch cache and answers consistent
reads by waiting until the cache has caught up with the store (KEP-2340); this does the same,
but only when it matters.

During a request (`tracking()`), each cache the request reads from is noted with the number
of changes it had applied at that moment (`note_read`, by `iaas.records` and the identity
directory), and so is any write (`note_write`: by `Client` for every request that is not a
GET, and by the OpenStack gateway for a call to another service that is not one); a write
marks the requests an in-process request was made from too. If the request ends in a client
error and wrote nothing, the caller (`openstack.readyourwrites`) calls `catch_up`: each cache
read is brought up to the store (`Informer.catch_up`, in the runtime, which owns the caches);
if any of them changed since the request read it, the answer may have been stale and the
request is served again; if none did, the answer stands.

It lives with the client because the client notes every write, and the client may not import
the runtime; the caches are reached through the small `Cache` protocol below.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

CATCH_UP_TIMEOUT = 2.0


class Cache(Protocol):
    """A read cache that counts its changes and can catch up with the store (an Informer)."""

    changes: int

    async def catch_up(self, timeout: float = CATCH_UP_TIMEOUT) -> None: ...


@dataclass
class Tracked:
    reads: dict[int, tuple[Cache, int]] = field(default_factory=dict)  # id -> (cache, changes)
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


def note_read(cache: Cache) -> None:
    tracked = _current.get()
    if tracked is not None and id(cache) not in tracked.reads:
        tracked.reads[id(cache)] = (cache, cache.changes)


def note_write() -> None:
    """Something was written: this request, and any it was made from, must not run again."""
    tracked = _current.get()
    while tracked is not None:
        tracked.wrote = True
        tracked = tracked.outer


async def catch_up(tracked: Tracked, timeout: float = CATCH_UP_TIMEOUT) -> bool:
    """Bring each cache the request read up to the store; True if any of them had changed
    since the request read it (its answer may have come from a stale cache)."""
    caches = [cache for cache, _ in tracked.reads.values()]
    await asyncio.gather(*(cache.catch_up(timeout) for cache in caches))
    return any(cache.changes != seen for cache, seen in tracked.reads.values())
