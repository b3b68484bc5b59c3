"""The work queue's client-go semantics: dedupe, one worker per key, delays, rate limits."""

from __future__ import annotations

import asyncio

import pytest

from unistack.runtime.workqueue import ExponentialBackoff, RateLimiter, TokenBucket, WorkQueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_key_added_twice_is_handed_out_once() -> None:
    queue = WorkQueue()
    queue.add("a")
    queue.add("b")
    queue.add("a")
    assert len(queue) == 2
    assert await queue.get() == "a"
    assert await queue.get() == "b"
    assert len(queue) == 0


async def test_a_key_in_processing_is_not_handed_to_a_second_worker() -> None:
    queue = WorkQueue()
    queue.add("a")
    assert await queue.get() == "a"
    queue.add("a")  # changed while being processed: dirty, not queued
    assert len(queue) == 0
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    assert not second.done()
    queue.done("a")  # now it goes back
    assert await asyncio.wait_for(second, 1) == "a"


async def test_done_without_a_new_add_does_not_requeue() -> None:
    queue = WorkQueue()
    queue.add("a")
    key = await queue.get()
    assert key == "a"
    queue.done(key)
    assert len(queue) == 0


async def test_get_waits_for_an_add() -> None:
    queue = WorkQueue()
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.add("x")
    assert await asyncio.wait_for(waiting, 1) == "x"


async def test_a_cancelled_get_does_not_lose_a_key() -> None:
    queue = WorkQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.add("x")
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert await asyncio.wait_for(second, 1) == "x"


async def test_add_after_delays_and_the_earliest_time_wins() -> None:
    queue = WorkQueue()
    queue.add_after("a", 10)
    queue.add_after("a", 0.02)
    assert len(queue) == 0
    assert await asyncio.wait_for(queue.get(), 1) == "a"
    queue.done("a")
    await asyncio.sleep(0.05)
    assert len(queue) == 0  # the 10 s timer was replaced, not kept


async def test_add_after_with_no_delay_adds_now() -> None:
    queue = WorkQueue()
    queue.add_after("a", 0)
    assert len(queue) == 1


async def test_shutdown_wakes_waiting_workers_and_refuses_keys() -> None:
    queue = WorkQueue()
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.add_after("late", 0.01)
    queue.shutdown()
    assert await asyncio.wait_for(waiting, 1) is None
    queue.add("a")
    assert len(queue) == 0
    assert await queue.get() is None


async def test_shutdown_drains_what_is_queued_first() -> None:
    queue = WorkQueue()
    queue.add("a")
    queue.shutdown()
    assert await queue.get() == "a"
    assert await queue.get() is None


def test_backoff_doubles_from_5ms_to_1000s_per_key() -> None:
    backoff = ExponentialBackoff()
    delays = [backoff.when("a") for _ in range(4)]
    assert delays == pytest.approx([0.005, 0.01, 0.02, 0.04])
    assert backoff.when("b") == pytest.approx(0.005)
    for _ in range(100):
        last = backoff.when("a")
    assert last == 1000.0
    assert backoff.retries("a") == 104


def test_forget_resets_the_backoff() -> None:
    backoff = ExponentialBackoff()
    backoff.when("a")
    backoff.when("a")
    backoff.forget("a")
    assert backoff.retries("a") == 0
    assert backoff.when("a") == pytest.approx(0.005)


def test_token_bucket_allows_a_burst_then_paces_at_qps() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=10, burst=100, clock=clock)
    assert all(bucket.reserve() == 0 for _ in range(100))
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)
    clock.now = 10.0  # refills, but never beyond the burst
    assert bucket.reserve() == 0


def test_rate_limiter_takes_the_longer_of_backoff_and_bucket() -> None:
    clock = FakeClock()
    limiter = RateLimiter(bucket=TokenBucket(qps=10, burst=1, clock=clock))
    assert limiter.when("a") == pytest.approx(0.005)
    assert limiter.when("b") == pytest.approx(0.1)  # the bucket is empty
    limiter.forget("a")
    assert limiter.retries("a") == 0


async def test_add_rate_limited_backs_off_and_forget_resets() -> None:
    queue = WorkQueue()
    queue.add_rate_limited("a")
    assert queue.retries("a") == 1
    assert len(queue) == 0
    assert await asyncio.wait_for(queue.get(), 1) == "a"
    queue.forget("a")
    queue.done("a")
    assert queue.retries("a") == 0
