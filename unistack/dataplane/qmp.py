"""QMP, the QEMU Machine Protocol: how the qemu driver talks to a running VM.

`unistack.dataplane.qemu` starts each VM with its monitor on a unix socket in the instance's
directory, so any process — the agent that started it, or the next one after a restart —
reaches it by path. This module is the small seam over the `qemu.qmp` package (the QEMU
project's own asyncio client, from PyPI): `connect` opens one session (QMP negotiation
included), `Monitor.execute` runs a command and turns QEMU's error replies into `QmpError`,
and `Monitor.events` collects asynchronous events (RESET, SHUTDOWN, DEVICE_DELETED) from
before the command that causes them, so none is missed.

A monitor socket serves one client at a time: callers hold a session briefly and keep one
session per VM at a time (the driver's per-instance lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from qemu.qmp import EventListener, QMPClient, QMPError

CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 10.0

# The library logs every dropped session at ERROR; a VM that powers off drops its monitor.
logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)


class QmpError(Exception):
    """The monitor is unreachable, or QEMU refused a command (the message says why)."""


class Monitor:
    """One QMP session with a VM."""

    def __init__(self, client: QMPClient) -> None:
        self._client = client

    async def execute(self, command: str, arguments: Mapping[str, object] | None = None) -> Any:
        try:
            return await asyncio.wait_for(
                self._client.execute(command, arguments), COMMAND_TIMEOUT_S
            )
        except (QMPError, TimeoutError, OSError) as error:
            raise QmpError(f"{command}: {error or type(error).__name__}") from None

    @contextlib.contextmanager
    def events(self, names: Iterable[str]) -> Iterator[EventListener]:
        """Collect the named events while the block runs (register before acting)."""
        listener = EventListener(tuple(names))
        with self._client.listen(listener):
            yield listener

    @staticmethod
    async def next_event(
        listener: EventListener, timeout: float, data: Mapping[str, object] | None = None
    ) -> dict[str, Any] | None:
        """The next collected event whose `data` has the given items; None after `timeout`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                event = await asyncio.wait_for(listener.get(), left)
            except TimeoutError:
                return None
            found: dict[str, Any] = dict(event)
            details: dict[str, Any] = found.get("data") or {}
            if all(details.get(key) == value for key, value in (data or {}).items()):
                return found
        return None


@contextlib.asynccontextmanager
async def connect(socket: Path, timeout: float = CONNECT_TIMEOUT_S) -> AsyncIterator[Monitor]:
    """A negotiated session on the monitor at `socket`, closed on exit."""
    client = QMPClient(socket.parent.name)
    try:
        await asyncio.wait_for(client.connect(str(socket)), timeout)
    except (QMPError, TimeoutError, OSError) as error:
        raise QmpError(f"cannot reach the monitor at {socket}: {error}") from None
    try:
        yield Monitor(client)
    finally:
        # after `quit` QEMU closes the monitor first: the reader's EOFError comes out here
        with contextlib.suppress(QMPError, OSError, EOFError):
            await client.disconnect()
