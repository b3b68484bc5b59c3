"""A keyed, rate-limited work queue with client-go's semantics, for asyncio.

Keys (strings such as `namespace/name`), never objects, go in. A key queued several times
before a worker takes it is handed out once; a key a worker is processing is not handed to a
second worker: added again meanwhile, it is marked dirty and queued when the first calls
`done`. `add_after` delays a key (the earliest pending time wins); `add_rate_limited` delays it
by the worse of a per-key exponential backoff (5 ms doubling to 1000 s, reset by `forget`)
and an overall token bucket (10 per second, bursts of 100). `unistack.runtime.controller`
drives workers off it; informer event handlers fill it.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

Clock = Callable[[], float]


class ExponentialBackoff:
    """Per-key delay: `base * 2**failures`, capped at `cap`; `forget` resets a key."""

    def __init__(self, base: float = 0.005, cap: float = 1000.0) -> None:
        self.base = base
        self.cap = cap
        self._failures: dict[str, int] = {}

    def when(self, key: str) -> float:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        if failures > 64:  # 2**64 * base is far beyond any cap
            return self.cap
        return min(self.base * 2**failures, self.cap)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def retries(self, key: str) -> int:
        return self._failures.get(key, 0)


class TokenBucket:
    """Overall rate: `qps` tokens a second, at most `burst` saved; a reservation may wait."""

    def __init__(self, qps: float = 10.0, burst: int = 100, clock: Clock = time.monotonic):
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def reserve(self) -> float:
        """Take a token; how long to wait until it is really there."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps


class RateLimiter:
    """client-go's default controller rate limiter: the max of backoff and bucket."""

    def __init__(
        self, backoff: ExponentialBackoff | None = None, bucket: TokenBucket | None = None
    ) -> None:
        self.backoff = backoff or ExponentialBackoff()
        self.bucket = bucket or TokenBucket()

    def when(self, key: str) -> float:
        return max(self.backoff.when(key), self.bucket.reserve())

    def forget(self, key: str) -> None:
        self.backoff.forget(key)

    def retries(self, key: str) -> int:
        return self.backoff.retries(key)


class WorkQueue:
    """FIFO of distinct keys, each processed by one worker at a time."""

    def __init__(self, name: str = "", rate_limiter: RateLimiter | None = None) -> None:
        self.name = name
        self.rate_limiter = rate_limiter or RateLimiter()
        self._queue: collections.deque[str] = collections.deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._delayed: dict[str, tuple[float, asyncio.TimerHandle]] = {}
        self._shutting_down = False

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: str) -> None:
        """Queue `key` unless it is queued already; mark it dirty if it is being processed."""
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._wake_one()

    async def get(self) -> str | None:
        """The next key, waiting for one; None once the queue is shut down and empty."""
        while not self._queue and not self._shutting_down:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                self._forget_waiter(waiter)
                raise
        if not self._queue:
            return None
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: str) -> None:
        """A worker finished `key`; queue it again if it was added meanwhile."""
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake_one()

    def add_after(self, key: str, delay: float) -> None:
        """Queue `key` after `delay` seconds (an earlier pending time for it wins)."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        ready = loop.time() + delay
        pending = self._delayed.get(key)
        if pending is not None:
            if pending[0] <= ready:
                return
            pending[1].cancel()
        self._delayed[key] = (ready, loop.call_at(ready, self._fire, key))

    def add_rate_limited(self, key: str) -> None:
        """Queue `key` again after its backoff (and the overall rate) allow it."""
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: str) -> None:
        """`key` succeeded: reset its backoff."""
        self.rate_limiter.forget(key)

    def retries(self, key: str) -> int:
        return self.rate_limiter.retries(key)

    def shutdown(self) -> None:
        """Stop accepting keys; wake every waiting worker (`get` returns None when empty)."""
        self._shutting_down = True
        for _, handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _fire(self, key: str) -> None:
        self._delayed.pop(key, None)
        self.add(key)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _forget_waiter(self, waiter: asyncio.Future[None]) -> None:
        """A cancelled `get`: pass a wake-up it may have consumed on to another worker."""
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        elif self._queue:
            self._wake_one()
