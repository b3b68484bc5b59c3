"""Starting a container's init with its own clock, ending it from the host, and reaping it.

A guest's uptime starts at its boot, as a machine's does (Tempest tells a reboot by it):
`in_new_boot_clock` prefixes the command that starts the container (`runc run`) with
util-linux's `unshare --time`, whose boot-time offset takes the host's uptime off, so the
container's processes (born in that time namespace) read /proc/uptime from about zero.
runc (1.1 knows no time namespaces) records its init's start time as /proc/<pid>/stat shows
it to runc itself, on the new boot clock, while later runc calls, in the host's, read it on
the host's and would take the container for stopped: `settle_start_time` records the host's
reading in runc's state once `runc run` is done.

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
import shutil
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path

import orjson

KILL_WAIT_S = 5.0
HOST_UPTIME = Path("/proc/uptime")
TIME_OFFSETS = Path("/proc/self/timens_offsets")


def in_new_boot_clock(argv: Sequence[str], uptime_s: float | None) -> list[str]:
    """`argv` run in a new time namespace whose boot clock starts now; `argv` as it is when
    `uptime_s` (the host's) is unknown."""
    if uptime_s is None or uptime_s < 2:
        return list(argv)
    return ["unshare", "--time", "--boottime", str(-(int(uptime_s) - 1)), *argv]


def host_uptime() -> float | None:
    """The host's uptime in seconds, or None when time namespaces cannot be made here."""
    if not TIME_OFFSETS.exists() or shutil.which("unshare") is None or os.geteuid() != 0:
        return None
    try:
        return float(HOST_UPTIME.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def settle_start_time(container_state: Path, pid_file: Path) -> None:
    """Record init's start time as the host's clock shows it in runc's `state.json` (in
    runc's `<root>/<container id>`); nothing when either is gone."""
    state_file = container_state / "state.json"
    try:
        pid = int(pid_file.read_text())
        started = start_time(Path(f"/proc/{pid}/stat").read_text())
        state = orjson.loads(state_file.read_bytes())
    except (OSError, ValueError, IndexError, orjson.JSONDecodeError):
        return
    if state.get("init_process_pid") != pid or state.get("init_process_start") == started:
        return
    state["init_process_start"] = started
    with tempfile.NamedTemporaryFile("wb", dir=container_state, delete=False) as temporary:
        temporary.write(orjson.dumps(state))
    os.chmod(temporary.name, state_file.stat().st_mode & 0o777)
    os.replace(temporary.name, state_file)


def start_time(proc_stat: str) -> int:
    """Field 22 of /proc/<pid>/stat: the start time, in clock ticks since boot."""
    return int(proc_stat.rsplit(")", 1)[1].split()[19])


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
