"""How every `unistack serve ...` process runs its main coroutine: until it ends, or until
SIGTERM or SIGINT cancels it; a failure of the coroutine is raised, a signal is a clean stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Coroutine
from typing import Any


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
