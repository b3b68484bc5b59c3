"""A small process supervisor, like kubeadm's kubelet running static pods.

`Supervisor.run` starts every `ChildSpec` as its own process (own session, stdin /dev/null,
output appended to `<log_dir>/<name>.log`), restarts any child that exits with a backoff of 1 s
doubling to 30 s (reset once a child has stayed up for 60 s), and on SIGTERM, SIGINT or SIGHUP
forwards the signal to the children, waits up to a grace period and SIGKILLs the rest. While it
runs it keeps its pid in a pid file. The children call `bind_to_supervisor` so that they die
with it even if it is SIGKILLed. `launch` says which children `unistack up` supervises.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from unistack.cli.statedir import write_private

SUPERVISOR_PID_ENV = "UNISTACK_SUPERVISOR_PID"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PR_SET_PDEATHSIG = 1

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChildSpec:
    """One supervised process: a name (for its log file) and its argv."""

    name: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Backoff:
    """Restart delays: `initial`, doubling up to `maximum`; back to `initial` after a long run."""

    initial: float = 1.0
    maximum: float = 30.0
    reset_after: float = 60.0

    def next_delay(self, previous: float | None, uptime: float) -> float:
        if previous is None or uptime >= self.reset_after:
            return self.initial
        return min(previous * 2, self.maximum)


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    delay: float | None = None
    start_at: float = 0.0


class Supervisor:
    """Keeps a fixed set of child processes running until it is told to stop."""

    def __init__(
        self,
        children: Sequence[ChildSpec],
        log_dir: Path,
        pid_file: Path | None = None,
        backoff: Backoff | None = None,
        grace: float = 10.0,
        poll_interval: float = 0.2,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._children = [_Child(spec) for spec in children]
        self._log_dir = log_dir
        self._pid_file = pid_file
        self._backoff = backoff or Backoff()
        self._grace = grace
        self._poll_interval = poll_interval
        self._env = dict(os.environ if env is None else env)
        self._stop_signal: int | None = None

    def run(self) -> int:
        """Supervise until a stop signal arrives, then stop the children. Returns 0."""
        previous = {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}
        self._write_pid_file()
        try:
            self._loop()
        finally:
            self._stop_children()
            self._remove_pid_file()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_signal = self._stop_signal or signum

    def _loop(self) -> None:
        log.info("supervising %s", ", ".join(c.spec.name for c in self._children))
        while self._stop_signal is None:
            now = time.monotonic()
            for child in self._children:
                self._tend(child, now)
            time.sleep(self._poll_interval)
        log.info("received %s, stopping", signal.Signals(self._stop_signal).name)

    def _tend(self, child: _Child, now: float) -> None:
        if child.process is None:
            if now >= child.start_at:
                self._start(child, now)
            return
        code = child.process.poll()
        if code is not None:
            self._schedule_restart(child, now, f"exited with code {code}")

    def _start(self, child: _Child, now: float) -> None:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        env = {**self._env, SUPERVISOR_PID_ENV: str(os.getpid()), "PYTHONUNBUFFERED": "1"}
        with (self._log_dir / f"{child.spec.name}.log").open("ab") as output:
            output.write(_banner(f"starting {' '.join(child.spec.argv)}"))
            output.flush()
            try:
                child.process = subprocess.Popen(
                    child.spec.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            except OSError as error:
                child.started_at = now
                self._schedule_restart(child, now, f"failed to start: {error}")
                return
        child.started_at = now
        log.info("started %s (pid %d)", child.spec.name, child.process.pid)

    def _schedule_restart(self, child: _Child, now: float, why: str) -> None:
        uptime = now - child.started_at
        child.delay = self._backoff.next_delay(child.delay, uptime)
        child.start_at = now + child.delay
        child.process = None
        log.warning(
            "%s %s after %.1fs; restarting in %.1fs", child.spec.name, why, uptime, child.delay
        )

    def _stop_children(self) -> None:
        running = [c.process for c in self._children if c.process and c.process.poll() is None]
        for process in running:
            _signal(process, self._stop_signal or signal.SIGTERM)
        deadline = time.monotonic() + self._grace
        while any(p.poll() is None for p in running) and time.monotonic() < deadline:
            time.sleep(0.05)
        for process in running:
            if process.poll() is None:
                log.warning("pid %d did not stop in %.0fs, killing it", process.pid, self._grace)
                process.kill()
            process.wait()
        for child in self._children:
            child.process = None
        log.info("all children stopped")

    def _write_pid_file(self) -> None:
        if self._pid_file is not None:
            write_private(self._pid_file, f"{os.getpid()}\n", 0o644)

    def _remove_pid_file(self) -> None:
        if self._pid_file is not None and read_pid(self._pid_file) == os.getpid():
            self._pid_file.unlink(missing_ok=True)


def read_pid(pid_file: Path) -> int | None:
    """The pid in `pid_file`, or None if it is missing or garbled."""
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def bind_to_supervisor() -> None:
    """In a supervised child: get SIGTERM when the supervisor dies, even by SIGKILL.

    Does nothing outside a supervisor. Exits at once if the supervisor is already gone.
    """
    parent = os.environ.pop(SUPERVISOR_PID_ENV, None)
    if not parent:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):
        raise SystemExit("unistack: the supervisor that started this process is gone")


def _signal(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)


def _banner(text: str) -> bytes:
    stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    return f"--- {stamp} unistack supervisor: {text}\n".encode()
