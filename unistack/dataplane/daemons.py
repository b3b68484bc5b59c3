"""The host daemons the agent starts and adopts again: dnsmasq per network (`dhcp`), radvd
per router (`radvd`), the volume servers and connections (`nbd`).

Each runs in the foreground of its own session, a child of the agent — which reaps it: the
agent is a child subreaper, so a daemonising process would be left a zombie — yet it
outlives an agent restart, and the next agent finds it through its pid file. A pid counts
only while the process's command line names `marker` (a path of its own: its config file, its
monitor socket), so a recycled pid is never taken for it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


class StartError(Exception):
    """The daemon ended, or did not get ready, at its start; the message is what it said."""


def running_pid(pidfile: Path, marker: str) -> int | None:
    """The live daemon of `pidfile` whose command line names `marker`, if any (an ended
    child is reaped on the way)."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    reap(pid)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if marker.encode() in cmdline and not is_zombie(pid) else None


def is_zombie(pid: int) -> bool:
    """Whether `pid` has ended and waits to be reaped (by a parent other than this one)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def reap(pid: int) -> None:
    """Collect `pid` if it is an ended child of this process."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_gone(pid: int, timeout: float) -> bool:
    """Whether `pid` ended within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap(pid)
        if not Path(f"/proc/{pid}").exists() or is_zombie(pid):
            return True
        time.sleep(0.02)
    return False


def catches(pid: int, sig: signal.Signals) -> bool:
    """Whether `pid` has a handler installed for `sig` (`SigCgt` in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    return False


def stop(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM (the daemon closes what it holds), then SIGKILL. A daemon leading its own
    process group (every one `start` made) takes the group along: a helper it forked (radvd
    forks one) is killed, and reaped when it was handed to this process, a subreaper."""
    try:
        leads = os.getpgid(pid) == pid
    except ProcessLookupError:
        leads = False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if wait_gone(pid, timeout):
            break
    if leads:
        _end_group(pid, timeout)


def _end_group(leader: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reaped, _ = os.waitpid(-leader, os.WNOHANG)
        except ChildProcessError:  # none of the group is left to reap here
            return
        if reaped == 0:
            time.sleep(0.02)


def start(
    argv: list[str], log: Path, ready: Callable[[int], bool], timeout: float = START_TIMEOUT
) -> int:
    """Start `argv` in a session of its own, its output in `log`; its pid once `ready(pid)`.
    StartError with the last line it wrote when it ends first or is not ready in time."""
    with open(log, "w+b") as output:
        started = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while not ready(started.pid):
            if started.poll() is not None or time.monotonic() > deadline:
                stop(started.pid)
                output.seek(0)
                said = output.read().decode(errors="replace").strip().splitlines()
                raise StartError(said[-1] if said else f"{argv[0]} did not start")
            time.sleep(0.02)
    return started.pid
