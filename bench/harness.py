"""Start a real unistack API server for a benchmark and talk to it over HTTPS.

The server is the same process `unistack up` runs (uvicorn + SQLite in a temporary state
dir); the load comes from this process through aiohttp, so server and client each have a core.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml


@dataclass(frozen=True)
class Server:
    state_dir: Path
    base: str
    token: str
    ca_file: Path

    def session(self, limit: int = 64) -> aiohttp.ClientSession:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        connector = aiohttp.TCPConnector(ssl=context, limit=limit)
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        return aiohttp.ClientSession(self.base, connector=connector, headers=headers)

    def apiserver_pid(self) -> int | None:
        """The pid of the API server child of this state dir's supervisor."""
        return self.service_pid(b"apiserver")

    def service_pid(self, service: bytes) -> int | None:
        """The pid of one `unistack serve <service>` child of this state dir's supervisor."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if (
                service in cmdline
                and b"serve" in cmdline
                and str(self.state_dir).encode() in cmdline
            ):
                return int(entry.name)
        return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unistack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "unistack.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


# The cores this benchmark may use, as it started: `_separate_cores` narrows this process's
# own affinity while a server runs, and every later server must be split from the whole set.
_ALL_CORES = frozenset(os.sched_getaffinity(0))


@contextmanager
def running_server(
    bridge: str = "unistackbench", pod_cidr: str = "10.250.0.0/24", extra: tuple[str, ...] = ()
) -> Iterator[Server]:
    """A fresh `unistack up` in a temporary state dir, taken down afterwards; `extra` are
    more options of `up`."""
    state = Path(tempfile.mkdtemp(prefix="unistack-bench-"))
    port = _free_port()
    # Its own bridge, pod CIDR and ports, beside any unistack the developer runs here.
    host = ["--bridge", bridge, "--pod-cidr", pod_cidr, "--node-name", "bench", *extra]
    for flag in ("--registry-port", "--agent-port", "--dns-port", "--openstack-port"):
        host += [flag, str(_free_port())]
    up = _unistack("up", "--detach", "--state-dir", str(state), "--port", str(port), *host)
    if up.returncode != 0:
        raise RuntimeError(f"unistack up failed: {up.stdout}\n{up.stderr}")
    try:
        kubeconfig = yaml.safe_load((state / "kubeconfig").read_text())
        token = kubeconfig["users"][0]["user"]["token"]
        server = Server(state, f"https://127.0.0.1:{port}", token, state / "pki" / "ca.crt")
        _separate_cores(server)
        yield server
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, _ALL_CORES)  # the next server gets the same split
        _unistack("down", "--state-dir", str(state))
        shutil.rmtree(state, ignore_errors=True)


def _separate_cores(server: Server) -> None:
    """Give the API server core 0 and everything else here (this load generator, its child
    processes, the controllers) the other cores, as clients on other machines would be.
    On one core, or where affinity cannot be set, everything shares as it is."""
    cores = sorted(_ALL_CORES)
    pid = server.apiserver_pid()
    if len(cores) < 2 or pid is None:
        return
    try:
        os.sched_setaffinity(pid, {cores[0]})
        os.sched_setaffinity(0, set(cores[1:]))
        for other in _pids_of(server.state_dir):
            if other != pid:
                os.sched_setaffinity(other, set(cores[1:]))
    except OSError:
        return


def _pids_of(state_dir: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(state_dir).encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def describe_cores() -> str:
    cores = sorted(_ALL_CORES)
    return (
        "API server pinned to one core, load and controllers on the rest"
        if len(cores) > 1
        else "one core shared"
    )


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def machine() -> str:
    cpus = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpus} cores, {mem:.0f} GiB, Python {sys.version.split()[0]}"


def now() -> float:
    return time.perf_counter()
