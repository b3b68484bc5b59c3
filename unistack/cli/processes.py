"""Other processes, as seen through /proc (Linux only).

`down` and `up` use this to tell whether a pid in a pid file is really unistack's supervisor
(its command line, not just a live pid), to find the supervisor's children, to signal them and
to wait for them to go. A process is named by its pid and its start time, so a recycled pid is
never signalled by mistake; a zombie counts as gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessId:
    """A process that existed: pid plus start time (clock ticks since boot)."""

    pid: int
    start_time: int


def command_line(pid: int) -> list[str] | None:
    """The argv of `pid`, or None if it has gone (or is a zombie with no argv)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]] or None


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (field 3, the state, comes first)."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def identify(pid: int) -> ProcessId | None:
    """The live (non-zombie) process `pid`, or None."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return ProcessId(pid, int(fields[19]))


def is_running(process: ProcessId) -> bool:
    """True while the same process (not a successor with its pid) is alive."""
    return identify(process.pid) == process


def children_of(pid: int) -> list[ProcessId]:
    """Live direct children of `pid`."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and fields[0] not in ("Z", "X") and int(fields[1]) == pid:
            found.append(ProcessId(int(entry.name), int(fields[19])))
    return found


def send(process: ProcessId, signum: int) -> None:
    """Signal `process` if it is still the same process."""
    if is_running(process):
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)


def wait_gone(processes: Iterable[ProcessId], timeout: float) -> list[ProcessId]:
    """Wait up to `timeout` seconds; return the processes still running."""
    remaining = list(processes)
    deadline = time.monotonic() + timeout
    while remaining:
        remaining = [p for p in remaining if is_running(p)]
        if not remaining or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return remaining


def terminate_now(processes: list[ProcessId], timeout: float = 5.0) -> list[ProcessId]:
    """SIGKILL the processes still running and wait for them; returns those it signalled."""
    running = [p for p in processes if is_running(p)]
    for process in running:
        send(process, signal.SIGKILL)
    wait_gone(running, timeout)
    return running
