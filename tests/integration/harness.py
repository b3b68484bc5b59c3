"""Helpers for in-process controller tests: run controllers as tasks, wait for a condition."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol


class Runnable(Protocol):
    async def run(self) -> None: ...


@contextlib.asynccontextmanager
async def running(*controllers: Runnable) -> AsyncIterator[None]:
    """Run the controllers as tasks for the body of the `async with`, then cancel them."""
    tasks = [asyncio.create_task(controller.run()) for controller in controllers]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 15, interval: float = 0.05
) -> None:
    """Poll `check` until it holds; fail with TimeoutError after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(interval)
