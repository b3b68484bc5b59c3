"""How every `unistack serve ...` process runs its main coroutine: until it ends, or until
SIGTERM or SIGINT cancels it; a failure of the coroutine is raised, a signal is a clean stop.

`heartbeat` keeps a file's modification time fresh while a check passes: what an exec probe
of a pod that serves no port reads (its age says whether the process still works)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("UNISTACK_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def run_until_signalled(main: Coroutine[Any, Any, None]) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    running = asyncio.ensure_future(main)
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait([running, stop], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (running, stop):
            task.cancel()
        await asyncio.wait([running, stop])
    failure = running.exception() if not running.cancelled() else None
    if failure is not None:
        raise failure


async def heartbeat(
    check: Callable[[], Awaitable[object]], path: Path, period: float = 2.0
) -> None:
    """Touch `path` after every `check` that returns (rather than raises), every `period`
    seconds, until cancelled; the file is removed then."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        while True:
            try:  # not `wait_for`, which on Python 3.11 can swallow our own cancellation
                async with asyncio.timeout(period * 2):
                    await check()
            except Exception as exc:  # any failure is a missed beat, told by the file's age
                log.info("heartbeat check failed: %s", exc)
            else:
                path.touch()
            await asyncio.sleep(period)
    finally:
        path.unlink(missing_ok=True)
