"""The real OpenStack Keystone beside unistack's identity service: same load, figures as ratios.

`real_keystone` builds (once per machine) a virtualenv with Keystone from PyPI, bootstraps it on
SQLite with fernet tokens and serves it with gunicorn; `measure` puts the same load on any
Keystone v3 auth URL (token issue, token validate, `GET /v3/projects`) and reads worker RSS;
`compare` turns two sets of figures into ratios against the issue's targets. `harness` supplies
`machine` and `rss_mib`; `__main__` runs the other benchmarks.

`python -m bench.keystone [--unistack-url http://127.0.0.1:8080/identity/v3 --password X]`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from rich.console import Console
from rich.table import Table

from bench import harness

KEYSTONE_VERSION = "30.0.0"
ADMIN_PASSWORD = "bench-admin-secret"

# Lowest acceptable ratio of unistack's figure to Keystone's (the issue's targets).
TARGETS = {"token issue": 1.3, "token validate": 20.0, "GET /v3/projects": 20.0}


@dataclass(frozen=True)
class Target:
    """A Keystone v3 endpoint to measure and the admin credentials to measure it with."""

    auth_url: str  # ends in /v3
    username: str
    password: str
    project: str = "admin"
    domain: str = "Default"
    server_pid: int | None = None  # a gunicorn master, or a single server process
    first_token_seconds: float = math.nan

    def worker_pids(self) -> list[int]:
        """The server's worker processes: its children (less a multiprocessing resource
        tracker, as uvicorn's workers have), or the server itself if it has none."""
        if self.server_pid is None:
            return []
        workers = [pid for pid in _children(self.server_pid) if not _is_resource_tracker(pid)]
        return workers or [self.server_pid]


@dataclass(frozen=True)
class Figure:
    """One measured figure of one service, with the answers that were not 2xx."""

    name: str
    value: float
    unit: str
    higher_is_better: bool = True
    errors: int = 0


@dataclass(frozen=True)
class Comparison:
    """One figure for both services; `ratio` > 1 means unistack does better."""

    name: str
    theirs: Figure
    ours: Figure | None
    target: float | None

    @property
    def ratio(self) -> float:
        if self.ours is None or not self.ours.value or not self.theirs.value:
            return math.nan
        if self.theirs.higher_is_better:
            return self.ours.value / self.theirs.value
        return self.theirs.value / self.ours.value

    @property
    def met(self) -> bool | None:
        if self.target is None or math.isnan(self.ratio):
            return None
        return self.ratio >= self.target


# --- the real Keystone ------------------------------------------------------------------------


def keystone_venv(version: str = KEYSTONE_VERSION) -> Path:
    """A virtualenv with Keystone `version` and gunicorn, built on first use and kept."""
    default = Path.home() / ".cache" / "unistack" / "keystone-venv"
    venv = Path(os.environ.get("UNISTACK_KEYSTONE_VENV", default))
    marker = venv / "unistack-keystone-version"
    if marker.exists() and marker.read_text() == version:
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, f"keystone=={version}", "gunicorn"], check=True)
    marker.write_text(version)
    return venv


def _keystone_conf(state: Path, hash_rounds: int) -> Path:
    repositories = {name: state / name for name in ("fernet", "receipts", "credentials")}
    for path in repositories.values():
        path.mkdir(mode=0o700)
    conf = state / "keystone.conf"
    conf.write_text(
        f"[DEFAULT]\nuse_stderr = true\n"
        f"[database]\nconnection = sqlite:///{state / 'keystone.db'}\n"
        f"[token]\nprovider = fernet\n"
        f"[fernet_tokens]\nkey_repository = {repositories['fernet']}\n"
        f"[fernet_receipts]\nkey_repository = {repositories['receipts']}\n"
        f"[credential]\nkey_repository = {repositories['credentials']}\n"
        f"[identity]\npassword_hash_algorithm = bcrypt\npassword_hash_rounds = {hash_rounds}\n"
        # Keystone's default: no shared cache, but memoised within a request; `enabled = false`
        # would also turn that off and make every validation ~10x slower than deployed ones
        f"[cache]\nenabled = true\nbackend = dogpile.cache.null\n"
    )
    return conf


def _bootstrap(venv: Path, conf: Path, url: str, password: str) -> None:
    """db_sync, key repositories and the admin user, project, role and endpoints."""
    owner = ["--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())]
    admin = ["--bootstrap-password", password, "--bootstrap-region-id", "RegionOne"]
    endpoints = ["--bootstrap-admin-url", url, "--bootstrap-public-url", url]
    steps = [
        ["db_sync"],
        ["fernet_setup", *owner],
        ["credential_setup", *owner],
        ["bootstrap", *admin, *endpoints],
    ]
    for step in steps:
        manage = [str(venv / "bin" / "keystone-manage"), "--config-file", str(conf), *step]
        done = subprocess.run(manage, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"keystone-manage {step[0]} failed:\n{done.stderr[-4000:]}")


def _gunicorn_conf(state: Path, port: int, workers: int) -> None:
    """gunicorn reads this from its working directory: Keystone parses the worker's argv with
    oslo.config and exits on any gunicorn flag, so gunicorn is started with none."""
    (state / "gunicorn.conf.py").write_text(
        f'bind = "127.0.0.1:{port}"\nworkers = {workers}\n'
        f'wsgi_app = "keystone.wsgi.api:application"\n'
    )


def _start_gunicorn(venv: Path, state: Path, conf: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OS_KEYSTONE_CONFIG_FILES": str(conf)}
    env.pop("VIRTUAL_ENV", None)
    with (state / "gunicorn.log").open("wb") as log:
        return subprocess.Popen(
            [str(venv / "bin" / "gunicorn")],
            cwd=state,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, ended as one below
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the gunicorn master and its workers (the process group it leads), and only those."""
    for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
            return


@contextmanager
def real_keystone(
    workers: int = 2, hash_rounds: int = 12, version: str = KEYSTONE_VERSION
) -> Iterator[Target]:
    """Keystone `version` on SQLite with fernet tokens under `workers` gunicorn workers."""
    venv = keystone_venv(version)
    state = Path(tempfile.mkdtemp(prefix="unistack-keystone-"))
    port = _free_port()
    target = Target(f"http://127.0.0.1:{port}/v3", "admin", ADMIN_PASSWORD)
    try:
        conf = _keystone_conf(state, hash_rounds)
        _bootstrap(venv, conf, target.auth_url, target.password)
        _gunicorn_conf(state, port, workers)
        began = harness.now()
        process = _start_gunicorn(venv, state, conf)
        try:
            _wait_for_token(target, process, state / "gunicorn.log")
            first = harness.now() - began
            yield dataclasses.replace(target, server_pid=process.pid, first_token_seconds=first)
        finally:
            _stop(process)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _wait_for_token(target: Target, process: subprocess.Popen[bytes], log: Path) -> None:
    request = urllib.request.Request(
        f"{target.auth_url}/auth/tokens",
        data=json.dumps(_password_auth(target)).encode(),
        headers={"Content-Type": "application/json"},
    )
    stop = time.monotonic() + 120
    while time.monotonic() < stop and process.poll() is None:
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError),
            urllib.request.urlopen(request, timeout=30) as response,
        ):
            if response.status == 201:
                return
        time.sleep(0.05)
    raise RuntimeError(f"Keystone gave no token:\n{log.read_text()[-4000:]}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # after the parenthesised command come state, then the parent's pid
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return children


def _is_resource_tracker(pid: int) -> bool:
    try:
        return b"multiprocessing.resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


# --- the load, for any Keystone v3 auth URL ---------------------------------------------------


def _password_auth(target: Target) -> dict[str, object]:
    domain = {"name": target.domain}
    user = {"name": target.username, "domain": domain, "password": target.password}
    return {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": user}},
            "scope": {"project": {"name": target.project, "domain": domain}},
        }
    }


async def _issue_token(session: aiohttp.ClientSession, target: Target) -> str:
    url = f"{target.auth_url}/auth/tokens"
    async with session.post(url, json=_password_auth(target)) as response:
        await response.read()
        if response.status != 201:
            raise RuntimeError(f"POST {url}: {response.status} {await response.text()}")
        return response.headers["X-Subject-Token"]


Request = Callable[[], Awaitable[int]]


async def _throughput(request: Request, concurrency: int, seconds: float) -> tuple[float, int]:
    """`concurrency` clients sending `request` for `seconds`: 2xx answers per second, errors."""
    answered = errors = 0
    stop = time.monotonic() + seconds

    async def client() -> None:
        nonlocal answered, errors
        while time.monotonic() < stop:
            try:
                status = await request()
            except (TimeoutError, aiohttp.ClientError):
                status = 0
            if 200 <= status < 300:
                answered += 1
            else:
                errors += 1

    began = harness.now()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return answered / (harness.now() - began), errors


def _sender(session: aiohttp.ClientSession, method: str, url: str, **kwargs: object) -> Request:
    async def send() -> int:
        async with session.request(method, url, **kwargs) as response:  # type: ignore[arg-type]
            await response.read()
            return response.status

    return send


async def measure(target: Target, concurrency: int = 8, seconds: float = 5.0) -> list[Figure]:
    """Token issue, token validate and `GET /v3/projects` rates, worker RSS, time to a token."""
    connector = aiohttp.TCPConnector(limit=concurrency)  # keep-alive where the server allows
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        admin, subject = [await _issue_token(session, target) for _ in range(2)]
        tokens = f"{target.auth_url}/auth/tokens"
        loads = {
            "token issue": _sender(session, "POST", tokens, json=_password_auth(target)),
            "token validate": _sender(
                session, "GET", tokens, headers={"X-Auth-Token": admin, "X-Subject-Token": subject}
            ),
            "GET /v3/projects": _sender(
                session, "GET", f"{target.auth_url}/projects", headers={"X-Auth-Token": admin}
            ),
        }
        figures = []
        for name, request in loads.items():
            rate, errors = await _throughput(request, concurrency, seconds)
            figures.append(Figure(name, rate, "/s", errors=errors))
    return [*figures, _rss_per_worker(target), _first_token(target)]


def _rss_per_worker(target: Target) -> Figure:
    sizes = [harness.rss_mib(pid) for pid in target.worker_pids()]
    mean = sum(sizes) / len(sizes) if sizes else math.nan
    return Figure("RSS per worker", mean, "MiB", higher_is_better=False)


def _first_token(target: Target) -> Figure:
    return Figure("start to first token", target.first_token_seconds, "s", higher_is_better=False)


def compare(ours: list[Figure], theirs: list[Figure]) -> list[Comparison]:
    """Each of Keystone's figures beside unistack's of the same name, with the issue's target."""
    by_name = {figure.name: figure for figure in ours}
    return [Comparison(f.name, f, by_name.get(f.name), TARGETS.get(f.name)) for f in theirs]


# --- the report -------------------------------------------------------------------------------


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.keystone", description=__doc__)
    parser.add_argument("--unistack-url", help="unistack's identity v3 URL, to compare with")
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password", default="")
    parser.add_argument("--project", default="admin")
    parser.add_argument("--domain", default="Default")
    parser.add_argument("--unistack-pid", type=int, help="unistack's server, for its RSS")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hash-rounds", type=int, default=12, help="bcrypt cost, both sides")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--keystone-version", default=KEYSTONE_VERSION)
    return parser.parse_args(argv)


async def _measure_both(arguments: argparse.Namespace) -> list[Comparison]:
    load = {"concurrency": arguments.concurrency, "seconds": arguments.seconds}
    with real_keystone(arguments.workers, arguments.hash_rounds, arguments.keystone_version) as ks:
        theirs = await measure(ks, **load)
    ours: list[Figure] = []
    if arguments.unistack_url:
        unistack = Target(
            arguments.unistack_url.rstrip("/"),
            arguments.username,
            arguments.password,
            arguments.project,
            arguments.domain,
            arguments.unistack_pid,
        )
        ours = await measure(unistack, **load)
    return compare(ours, theirs)


def _cell(figure: Figure | None) -> str:
    if figure is None or math.isnan(figure.value):
        return "—"
    errors = f" ({figure.errors} errors)" if figure.errors else ""
    return f"{figure.value:,.1f} {figure.unit}{errors}"


def _table(rows: list[Comparison], title: str) -> Table:
    table = Table(title=title)
    for column in ("figure", "real Keystone", "unistack", "ratio", "target", "met"):
        table.add_column(column)
    for row in rows:
        ratio = "—" if math.isnan(row.ratio) else f"{row.ratio:,.1f}x"
        target = "—" if row.target is None else f"≥ {row.target:g}x"
        met = {None: "—", True: "yes", False: "NO"}[row.met]
        table.add_row(row.name, _cell(row.theirs), _cell(row.ours), ratio, target, met)
    return table


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(argv)
    console = Console()
    console.print(f"machine: {harness.machine()}")
    console.print(
        f"Keystone {arguments.keystone_version}: SQLite, fernet tokens, bcrypt cost "
        f"{arguments.hash_rounds}, {arguments.workers} gunicorn workers; "
        f"{arguments.concurrency} clients for {arguments.seconds:g} s per figure"
    )
    console.print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    rows = asyncio.run(_measure_both(arguments))
    console.print(_table(rows, "Keystone v3: the real one beside unistack's"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
