"""The HAProxy runner: one master-worker HAProxy, its config checked, swapped, and reloaded.

`HAProxy(workdir)` keeps every file it makes under `workdir`: `haproxy.cfg` (what runs),
`haproxy.cfg.new` (a candidate while it is checked), `master.sock` (the master CLI),
`stats.sock` (the workers' admin socket, for the config to name) and `haproxy.log` (the
processes' output). `apply(text)` checks the text with `haproxy -c`, moves it into place
with an atomic rename, then starts HAProxy (`haproxy -W -db -f CFG -S master.sock`, in its
own session) or reloads it: SIGUSR2 makes the master re-execute itself on the new file and
start new workers on the same listening sockets, while the old workers finish the
connections they hold (so no connection is refused or cut). Progress is read from the
master CLI's `show proc`. `stop()` asks for a soft stop (SIGUSR1), then SIGTERM and SIGKILL
to the process group if it lingers. `unistack.controlplane.gateway` drives it with the text
`unistack.controlplane.haproxyconf.render` writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)


class HAProxyError(Exception):
    """HAProxy failed to start or to reload."""


class HAProxyConfigError(HAProxyError):
    """`haproxy -c` rejected a config (nothing was changed)."""


@dataclass(frozen=True, slots=True)
class ProcessTable:
    """The master CLI's `show proc`: current worker PIDs and the failed-reload count."""

    workers: frozenset[int]
    failed_reloads: int


def parse_show_proc(text: str) -> ProcessTable:
    """Parse `show proc`: the master line carries `[failed: N]`, then `# workers` lists the
    current workers (old ones, still draining, come under `# old workers`)."""
    workers: set[int] = set()
    failed, section = 0, ""
    for line in text.splitlines():
        if line.startswith("#"):
            section = line.lstrip("# ").strip()
            continue
        fields = line.split()
        if len(fields) < 2 or not fields[0].isdigit():
            continue
        if fields[1] == "master" and "[failed:" in line:
            failed = int(line.split("[failed:")[1].split("]")[0])
        elif fields[1] == "worker" and section == "workers":
            workers.add(int(fields[0]))
    return ProcessTable(frozenset(workers), failed)


class HAProxy:
    """One HAProxy master and its workers, every file under `workdir`."""

    def __init__(self, workdir: Path, binary: str = "haproxy", timeout: float = 10.0) -> None:
        self.workdir = Path(workdir)
        self.binary = binary
        self.timeout = timeout
        self.config_path = self.workdir / "haproxy.cfg"
        self.master_socket = self.workdir / "master.sock"
        self.stats_socket = self.workdir / "stats.sock"
        self.log_path = self.workdir / "haproxy.log"
        self.applied: str | None = None
        self.reloads = 0
        self._process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The master's PID while it runs."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def check(self, text: str) -> None:
        """Raise HAProxyConfigError with HAProxy's diagnostics unless `haproxy -c` accepts it."""
        candidate = self._write(self.workdir / "haproxy.cfg.new", text)
        try:
            await self._check_file(candidate)
        finally:
            candidate.unlink(missing_ok=True)

    async def apply(self, text: str) -> bool:
        """Make `text` the running config: check it, swap it in, start or reload. False when
        it is what already runs."""
        if text == self.applied and self.pid is not None:
            return False
        candidate = self._write(self.workdir / "haproxy.cfg.new", text)
        try:
            await self._check_file(candidate)
            os.replace(candidate, self.config_path)
        finally:
            candidate.unlink(missing_ok=True)
        if self.pid is None:
            await self._start()
        else:
            await self.reload()
        self.applied = text
        return True

    async def reload(self) -> None:
        """Reload the running master on the current file and wait for its new workers."""
        before = await self.process_table()
        assert self._process is not None
        self._process.send_signal(signal.SIGUSR2)
        await self._wait_for(lambda t: _reloaded(before, t), "reload")
        self.reloads += 1

    async def process_table(self) -> ProcessTable:
        """`show proc` from the master CLI (raises OSError while the master cannot answer)."""
        return parse_show_proc(await self.master_command("show proc"))

    async def master_command(self, command: str) -> str:
        """One command on the master CLI, its whole answer."""
        reader, writer = await asyncio.open_unix_connection(str(self.master_socket))
        try:
            writer.write(command.encode() + b"\n")
            await writer.drain()
            writer.write_eof()
            return (await reader.read()).decode(errors="replace")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def stop(self, grace: float = 5.0) -> None:
        """Soft-stop (workers finish their requests), then TERM and KILL the process group."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGUSR1)
            if not await _exited(process, grace):
                _signal_group(process.pid, signal.SIGTERM)
                if not await _exited(process, 2.0):
                    _signal_group(process.pid, signal.SIGKILL)
                    await process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        self.applied = None
        for path in (self.master_socket, self.stats_socket):
            path.unlink(missing_ok=True)

    def log_tail(self, lines: int = 20) -> str:
        """The end of HAProxy's output (for errors)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.master_socket.unlink(missing_ok=True)
        if self._log is not None:  # a master that died: its output file is done with
            self._log.close()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        argv = [self.binary, "-W", "-db", "-f", str(self.config_path)]
        argv += ["-S", f"{self.master_socket},mode,600"]
        self._process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        try:
            await self._wait_for(lambda t: bool(t.workers), "start")
        except HAProxyError:
            await self.stop(grace=0.5)
            raise

    async def _wait_for(self, done: Callable[[ProcessTable], bool], what: str) -> None:
        """Poll `show proc` until `done` holds; HAProxyError if the master dies, a reload
        fails, or `timeout` passes."""
        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            if self.pid is None:
                raise HAProxyError(f"haproxy exited during {what}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if done(await self.process_table()):
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise HAProxyError(f"haproxy {what} timed out:\n{self.log_tail()}")
            await asyncio.sleep(0.02)

    async def _check_file(self, path: Path) -> None:
        process = await asyncio.create_subprocess_exec(
            self.binary,
            "-c",
            "-f",
            str(path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise HAProxyConfigError(
                f"haproxy rejected the config:\n{output.decode(errors='replace')}"
            )

    def _write(self, path: Path, text: str) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        return path


def _reloaded(before: ProcessTable, after: ProcessTable) -> bool:
    """New workers only (the old ones moved to `# old workers`); raise if a reload failed."""
    if after.failed_reloads > before.failed_reloads:
        raise HAProxyError("haproxy failed to reload; the old workers keep serving")
    return bool(after.workers) and not after.workers & before.workers


async def _exited(process: asyncio.subprocess.Process, timeout: float) -> bool:
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        return False
    return True


def _signal_group(pid: int, signum: int) -> None:
    """Signal the process group HAProxy leads (its own session: the master and workers)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
