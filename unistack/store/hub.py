"""In-memory fan-out of committed events to watchers.

The store publishes every committed event here once; each watcher gets it from memory, never
by re-reading the database. A watcher that falls more than `capacity` events behind is ended
(as kube-apiserver ends slow watchers); its client resumes from the last revision it saw.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Iterable

from unistack.store.types import Event

_CLOSED = object()


class Watcher:
    """One watch: a prefix, and a queue of events the store has committed under it."""

    def __init__(self, hub: Hub, prefix: str, capacity: int) -> None:
        self._hub = hub
        self.prefix = prefix
        self._capacity = capacity
        self._queue: collections.deque[Event | object] = collections.deque()
        self._wakeup = asyncio.Event()
        self.closed = False
        self.overflowed = False

    def offer(self, events: Iterable[Event]) -> None:
        if self.closed:
            return
        for event in events:
            if event.key.startswith(self.prefix):
                self._queue.append(event)
        if len(self._queue) > self._capacity:
            self.overflowed = True
            self.close()
        self._wakeup.set()

    @property
    def pending(self) -> bool:
        """Events are queued that the watch has not taken yet."""
        return bool(self._queue)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._queue.append(_CLOSED)
            self._wakeup.set()
            self._hub.remove(self)

    async def batches(self) -> AsyncIterator[list[Event]]:
        """Yield the events queued since the last batch, until the watch is closed."""
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch: list[Event] = []
            while self._queue:
                item = self._queue.popleft()
                if item is _CLOSED:
                    if batch:
                        yield batch
                    return
                batch.append(item)  # type: ignore[arg-type]
            if batch:
                yield batch

    async def next_batch(self, timeout: float | None = None) -> list[Event] | None:
        """The events queued since the last call: [] after `timeout`, None once closed."""
        if not self._queue:
            self._wakeup.clear()
            try:
                async with asyncio.timeout(timeout):  # no extra task per wait, unlike wait_for
                    await self._wakeup.wait()
            except TimeoutError:
                return []
        batch: list[Event] = []
        while self._queue:
            item = self._queue.popleft()
            if item is _CLOSED:
                if batch:
                    self._queue.appendleft(item)
                    return batch
                return None
            batch.append(item)  # type: ignore[arg-type]
        return batch

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        async for batch in self.batches():
            for event in batch:
                yield event


class Hub:
    """Registry of live watchers; `publish` hands each committed event to all of them."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._watchers: set[Watcher] = set()
        self._capacity = capacity

    def subscribe(self, prefix: str) -> Watcher:
        watcher = Watcher(self, prefix, self._capacity)
        self._watchers.add(watcher)
        return watcher

    def remove(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def publish(self, events: list[Event]) -> None:
        for watcher in list(self._watchers):
            watcher.offer(events)

    def close_all(self) -> None:
        for watcher in list(self._watchers):
            watcher.close()

    def __len__(self) -> int:
        return len(self._watchers)
