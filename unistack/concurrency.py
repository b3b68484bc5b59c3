"""Running independent calls at once, failing as one of them would.

`asyncio.gather` without `return_exceptions` raises the first error while the other calls run
on unwatched; a `TaskGroup` raises an `ExceptionGroup` that callers catching, say,
`TransportError` would not see. `at_once` waits for every call, then raises the first error
in the order given, or returns the results.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def at_once(*calls: Awaitable[T]) -> list[T]:
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]
