"""Ending a container's init process from the host, and reaping it.

`unistack.dataplane.containers` powers a server off by signalling its init (busybox init
takes SIGUSR2 as poweroff and SIGTERM as reboot) and kills it when it does not end in time.
The signal goes through a pidfd, so a recycled pid is never signalled, and the pidfd tells
the event loop when the process has ended. When the agent is a child subreaper
(`unistack.agent.runc`), a guest's init that runc leaves behind is the agent's child: it is
reaped here, or it would stay a zombie.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

KILL_WAIT_S = 5.0


async def end(pid: int, signum: int, timeout: float) -> None:
    """Send `signum` through a pidfd (no pid reuse race), SIGKILL after `timeout`, reap."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(pidfd, signum)
        if not await _exited(pidfd, timeout) and signum != signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            await _exited(pidfd, KILL_WAIT_S)
    finally:
        os.close(pidfd)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # our child when the agent is a subreaper


async def _exited(pidfd: int, timeout: float) -> bool:
    """Wait until the process behind `pidfd` has ended (the pidfd becomes readable)."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not ended.done():
            ended.set_result(None)

    loop.add_reader(pidfd, on_readable)
    try:
        await asyncio.wait_for(ended, timeout)
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(pidfd)
    return True


def reap_zombie(pid_file: Path) -> None:
    """Reap a guest init that ended on its own while we were its (subreaper) parent: runc
    forgets a stopped container's pid, so the one it wrote at boot is checked to be a zombie
    `init` whose parent is this process before it is waited for."""
    try:
        pid = int(pid_file.read_text())
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)
        comm, rest = fields[0].split("(", 1)[1], fields[1].split()
    except (OSError, ValueError, IndexError):
        return
    if comm == "init" and rest[0] == "Z" and int(rest[1]) == os.getpid():
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
