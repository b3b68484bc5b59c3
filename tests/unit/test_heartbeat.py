"""`runtime.process.heartbeat`: the file a pod's exec probe reads is touched only while the
check passes, and goes when the heartbeat stops."""

from __future__ import annotations

import asyncio
from pathlib import Path

from unistack.runtime.process import heartbeat


async def test_the_file_is_fresh_only_while_the_check_passes(tmp_path: Path) -> None:
    beat = tmp_path / "controllers" / "heartbeat"
    passing = True

    async def check() -> None:
        if not passing:
            raise ConnectionRefusedError("the API server does not answer")

    task = asyncio.create_task(heartbeat(check, beat, period=0.05))
    try:
        for _ in range(100):
            if beat.exists():
                break
            await asyncio.sleep(0.01)
        first = beat.stat().st_mtime_ns
        await asyncio.sleep(0.2)
        assert beat.stat().st_mtime_ns > first  # beating
        passing = False
        await asyncio.sleep(0.1)
        stopped = beat.stat().st_mtime_ns
        await asyncio.sleep(0.2)
        assert beat.stat().st_mtime_ns == stopped  # missed beats: the file ages
        passing = True
        await asyncio.sleep(0.2)
        assert beat.stat().st_mtime_ns > stopped  # beating again
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not beat.exists()
