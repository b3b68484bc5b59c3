"""The gateway with a real HAProxy: no failed request while a replica dies or the routes change.

The in-process API server holds two gateway Services in `unistack-system` (`nova-api` at
`/compute`, `glance-api` at `/image`) and their Endpoints, written by the test itself (no
endpoints controller runs). Each replica is a real process, a tiny HTTP server on a free
127.0.0.1 port answering `/healthz` and `/compute/...`. `Gateway` renders the config and runs
HAProxy through the runner on a free port, while threads send GETs (and some POSTs) over
keep-alive connections:

1. one replica of two is SIGKILLed under load: no GET fails (HAProxy retries the ones in
   flight on the other replica, marks the dead one DOWN), and the dead server shows DOWN;
2. the Endpoints change twice while requests flow (a new replica in, an old one out and then
   killed): each change is a seamless reload, and no request at all fails;
3. `/image`, whose Service has no ready endpoint, answers 503 with Glance's JSON error body,
   and an unknown path 404 with Keystone's.

The runner alone, too: a config `haproxy -c` rejects changes nothing (file, workers), the
same text applied twice reloads once, and `stop` leaves no process or socket.

Needs the `haproxy` binary (Debian package `haproxy`); skipped with the reason otherwise.
Every process started here is killed even when the test fails.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import eventually
from unistack.cli import selfhost
from unistack.client.api import Client
from unistack.client.resources import ENDPOINTS, NAMESPACES, SERVICES
from unistack.controlplane.gateway import Gateway, GatewaySettings
from unistack.controlplane.haproxy import HAProxy, HAProxyConfigError
from unistack.controlplane.haproxyconf import GatewayConfig, Route, render

Obj = dict[str, Any]
NS = "unistack-system"
pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        not shutil.which("haproxy"), reason="needs haproxy (Debian package haproxy)"
    ),
]

REPLICA = r"""
import json, pathlib, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME, MARKERS = sys.argv[1], pathlib.Path(sys.argv[2])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        # headers and body in one write, as a framework's small JSON answer goes: a SIGKILL
        # then ends a reply before it began (HAProxy retries it), never between its headers
        # and its body (CI saw that once: IncompleteRead), which no proxy that streams
        # responses can mend
        self._headers_buffer.append(b"\r\n" + data)
        self.flush_headers()

    def do_GET(self):
        if self.path.endswith("/slow"):  # tell the test a slow request is in flight here
            (MARKERS / f"{NAME}.slow").touch()
            time.sleep(1.0)
        elif self.path != "/healthz":
            time.sleep(0.005)
        self.reply({"backend": NAME, "path": self.path})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.reply({"backend": NAME, "echo": body.decode()})


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # health checks and killed peers reset connections: not news


server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@dataclass
class Replica:
    name: str
    process: subprocess.Popen[bytes]
    port: int

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=5)


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Callable[[str], Replica]]:
    """Start named replica processes; all are killed at the end of the test."""
    started: list[Replica] = []

    def start(name: str) -> Replica:
        argv = [sys.executable, "-c", REPLICA, name, str(tmp_path)]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, start_new_session=True)
        replica = Replica(name, process, 0)
        started.append(replica)
        assert process.stdout is not None
        replica.port = int(process.stdout.readline())
        return replica

    try:
        yield start
    finally:
        for replica in started:
            replica.kill()


@dataclass
class Load:
    """Threads sending requests to the gateway over keep-alive connections until stopped."""

    port: int
    fresh_connections: bool = False  # a new connection for every request
    ok: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    backends: Counter[str] = field(default_factory=Counter)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, clients: int, post_every: int) -> None:
        for index in range(clients):
            every = post_every if index == 0 else 0
            thread = threading.Thread(target=self._run, args=(every,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=15)

    def snapshot(self) -> tuple[Counter[str], int]:
        with self.lock:
            return Counter(self.ok), len(self.failures)

    def _run(self, post_every: int) -> None:
        connection: http.client.HTTPConnection | None = None
        sent = 0
        while not self.stopping.is_set():
            sent += 1
            method = "POST" if post_every and sent % post_every == 0 else "GET"
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                self._one(connection, method, sent)
            except (OSError, http.client.HTTPException) as exc:
                self._record(method, failure=f"{method}: {exc!r}")
                connection.close()
                connection = None
            if self.fresh_connections and connection is not None:
                connection = None
        if connection is not None:
            connection.close()

    def _one(self, connection: http.client.HTTPConnection, method: str, sent: int) -> None:
        body = json.dumps({"n": sent}) if method == "POST" else None
        headers = {"Content-Type": "application/json"} if body else {}
        connection.request(method, f"/compute/v2.1/servers/{sent}", body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            self._record(method, failure=f"{method}: {response.status} {data[:200]!r}")
        else:
            self._record(method, backend=json.loads(data)["backend"])
        if response.will_close or self.fresh_connections:
            connection.close()

    def _record(self, method: str, *, failure: str = "", backend: str = "") -> None:
        with self.lock:
            if failure:
                self.failures.append(failure)
            else:
                self.ok[method] += 1
                self.backends[backend] += 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def gateway_service(name: str, path: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"unistack.io/gateway": "true"},
            "annotations": {"unistack.io/gateway-path": path},
        },
        "spec": {"ports": [{"name": "http", "port": 8080, "targetPort": 8080}]},
    }


def endpoints_of(name: str, *replicas: Replica) -> Obj:
    """Ready addresses, one subset per replica (each listens on its own port)."""
    subsets = [
        {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": r.port}]}
        for r in replicas
    ]
    body: Obj = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": NS},
    }
    if subsets:
        body["subsets"] = subsets
    return body


async def set_endpoints(client: Client, name: str, *replicas: Replica) -> None:
    current = await client.get(ENDPOINTS, name, NS)
    body = endpoints_of(name, *replicas)
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    await client.update(ENDPOINTS, body)


@dataclass
class Running:
    gateway: Gateway
    port: int


@pytest.fixture
async def gateway(client: Client, tmp_path: Path) -> AsyncIterator[Running]:
    port = free_port()
    # Round robin: the tests spread one client's requests over the replicas.
    config = GatewayConfig(bind_host="127.0.0.1", bind_port=port, balance="roundrobin")
    settings = GatewaySettings(workdir=tmp_path / "unistack-gateway", config=config)
    gateway = Gateway(client, settings)
    task = asyncio.create_task(gateway.run())
    try:
        yield Running(gateway, port)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        pid = gateway.haproxy.pid
        if pid is not None:  # run() stops it; this is the last resort if that failed
            os.killpg(pid, signal.SIGKILL)


def http_get(port: int, path: str) -> tuple[int, Obj]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


async def show_stat(running: Running) -> list[dict[str, str]]:
    """The current worker's `show stat`, through the master CLI."""
    text = await running.gateway.haproxy.master_command("@1 show stat")
    header, *rows = [line for line in text.splitlines() if line.strip()]
    columns = header.lstrip("# ").split(",")
    return [dict(zip(columns, row.split(","), strict=False)) for row in rows]


async def backend_stats(running: Running, backend: str) -> dict[str, str]:
    """The backend's own row: `wretr` retries, `wredis` redispatches, ..."""
    stats = await show_stat(running)
    return next(s for s in stats if s["pxname"] == backend and s["svname"] == "BACKEND")


async def server_status(running: Running, backend: str) -> dict[str, str]:
    """Each server's status (UP, DOWN, ...) in a backend."""
    stats = await show_stat(running)
    return {
        s["svname"]: s["status"]
        for s in stats
        if s["pxname"] == backend and s["svname"] not in ("FRONTEND", "BACKEND")
    }


async def in_flight_on(
    replica: Replica, port: int, markers: Path
) -> list[asyncio.Future[tuple[int, Obj]]]:
    """Send slow GETs (one every 0.1 s) until one is being served by `replica`."""
    sent: list[asyncio.Future[tuple[int, Obj]]] = []
    marker = markers / f"{replica.name}.slow"
    while not marker.exists():
        assert len(sent) < 50, "no slow request reached the replica"
        sent.append(asyncio.ensure_future(asyncio.to_thread(http_get, port, "/compute/slow")))
        await asyncio.sleep(0.1)
    return sent


async def test_gateway_survives_a_killed_replica_and_reloads(
    client: Client, gateway: Running, replicas: Callable[[str], Replica], tmp_path: Path
) -> None:
    first, second = replicas("first"), replicas("second")
    await client.create(
        NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    )
    await client.create(SERVICES, gateway_service("nova-api", "/compute"))
    await client.create(ENDPOINTS, endpoints_of("nova-api", first, second))
    await client.create(SERVICES, gateway_service("glance-api", "/image"))
    await client.create(ENDPOINTS, endpoints_of("glance-api"))

    def config_names(*ports: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            applied = gateway.gateway.haproxy.applied or ""
            return all(f"127.0.0.1:{p}\n" in applied for p in ports)

        return check

    await eventually(config_names(first.port, second.port))
    load = Load(gateway.port)
    try:
        load.start(clients=3, post_every=4)
        await eventually(
            lambda: _holds(load.backends["first"] > 20 and load.backends["second"] > 20)
        )

        # 1. a replica dies under load, with a slow GET in flight on it: no GET fails
        slow = await in_flight_on(first, gateway.port, tmp_path)
        first.kill()
        await asyncio.sleep(2.0)
        killed_phase, failed = load.snapshot()
        get_failures = [f for f in load.failures if f.startswith("GET")]
        assert get_failures == [], get_failures
        slow_answers = await asyncio.gather(*slow)
        assert [code for code, _ in slow_answers] == [200] * len(slow)
        assert {body["backend"] for _, body in slow_answers} == {"second"}
        retried = await backend_stats(gateway, "unistack-nova-api")
        assert int(retried["wredis"]) >= 1, retried
        status = await server_status(gateway, "unistack-nova-api")
        assert status[f"127.0.0.1_{first.port}"].startswith("DOWN"), status
        assert status[f"127.0.0.1_{second.port}"].startswith("UP"), status
        post_failures_at_kill = failed

        # 2. the backend set changes twice while requests flow: nothing fails
        third = replicas("third")
        reloads = gateway.gateway.haproxy.reloads
        await set_endpoints(client, "nova-api", second, third)
        await eventually(config_names(second.port, third.port))
        seen = load.backends["third"]
        await eventually(lambda: _holds(load.backends["third"] > seen + 20))
        await set_endpoints(client, "nova-api", third)
        await eventually(lambda: _holds(f"127.0.0.1:{second.port}\n" not in _applied(gateway)))
        await asyncio.sleep(0.5)  # old workers finish what their connections still send
        second.kill()  # the replica that left the Endpoints goes away, as a pod would
        served_by_second = load.backends["second"]
        await asyncio.sleep(1.0)
        assert gateway.gateway.haproxy.reloads >= reloads + 2
        assert load.backends["second"] == served_by_second
        ok, failed = load.snapshot()
        assert failed == post_failures_at_kill, load.failures
        assert ok["GET"] > killed_phase["GET"] + 50 and ok["POST"] > killed_phase["POST"] + 10
    finally:
        load.stop()
    print(f"\nrequests ok {dict(load.ok)}, failed {load.failures}")
    print(f"by replica {dict(load.backends)}; at the kill: {retried['wretr']} retries,")
    print(f"{retried['wredis']} redispatches, {len(slow)} slow GETs all answered")

    # 3. a path whose Service has no ready endpoint, and a path nobody serves
    status_code, body = await asyncio.to_thread(http_get, gateway.port, "/image/v2/images")
    assert status_code == 503
    assert body["code"] == "503 Service Unavailable" and "no ready replica" in body["message"]
    status_code, body = await asyncio.to_thread(http_get, gateway.port, "/nowhere")
    assert (status_code, body["error"]["code"]) == (404, 404)


async def test_two_gateways_share_the_port_and_one_stops_failing_nothing(
    client: Client, replicas: Callable[[str], Replica], tmp_path: Path
) -> None:
    """As the gateway's pods and the bootstrap's do: each HAProxy binds the port with
    SO_REUSEPORT; one stops (a soft stop, its listener closed, its queued connections moved
    to the other's by `tcp_migrate_req`) while clients open a new connection per request."""
    sysctl = selfhost.TCP_MIGRATE_REQ
    if not sysctl.exists() or not os.access(sysctl, os.W_OK):
        pytest.skip("needs root and Linux 5.14+ (net.ipv4.tcp_migrate_req)")
    before = sysctl.read_text().strip()
    first = replicas("first")
    await client.create(
        NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    )
    await client.create(SERVICES, gateway_service("nova-api", "/compute"))
    await client.create(ENDPOINTS, endpoints_of("nova-api", first))
    port = free_port()
    config = GatewayConfig(bind_host="127.0.0.1", bind_port=port)

    def settings(name: str) -> GatewaySettings:
        beat = tmp_path / f"{name}.heartbeat"
        return GatewaySettings(workdir=tmp_path / name, config=config, heartbeat=beat)

    old, new = Gateway(client, settings("old")), Gateway(client, settings("new"))
    tasks = [asyncio.create_task(g.run()) for g in (old, new)]
    load = Load(port, fresh_connections=True)
    try:
        assert selfhost.allow_request_migration()
        for gateway in (old, new):
            await eventually(lambda g=gateway: _holds(g.settings.heartbeat.exists()))
        load.start(clients=4, post_every=3)
        served = {}
        for gateway in (old, new):  # the kernel spreads new connections over both
            running = Running(gateway, port)
            await eventually(lambda r=running: _served(r, more_than=20))
        served["old"] = await _frontend_sessions(Running(old, port))
        tasks[0].cancel()
        await asyncio.gather(tasks[0], return_exceptions=True)
        assert old.haproxy.pid is None and not old.settings.heartbeat.exists()
        ok, _ = load.snapshot()
        await eventually(lambda: _holds(load.snapshot()[0]["GET"] > ok["GET"] + 100))
    finally:
        load.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sysctl.write_text(before)
    assert load.failures == [], load.failures[:5]
    assert not new.settings.heartbeat.exists()  # stopped too
    print(f"\nrequests ok {dict(load.ok)}, none failed; the old gateway served {served['old']}")


async def _frontend_sessions(running: Running) -> int:
    """The frontend's total sessions (`stot`)."""
    stats = await show_stat(running)
    return sum(int(s["stot"]) for s in stats if s["svname"] == "FRONTEND")


async def _served(running: Running, more_than: int) -> bool:
    return await _frontend_sessions(running) > more_than


def _applied(running: Running) -> str:
    return running.gateway.haproxy.applied or ""


async def _holds(value: bool) -> bool:
    return value


async def test_the_runner_refuses_a_bad_config_and_keeps_serving(tmp_path: Path) -> None:
    haproxy = HAProxy(tmp_path / "unistack-haproxy")
    config = GatewayConfig(
        bind_host="127.0.0.1", bind_port=free_port(), stats_socket=str(haproxy.stats_socket)
    )
    good = render(config, [Route("/image", "unistack-glance-api", ())])
    try:
        assert await haproxy.apply(good) is True
        assert await haproxy.apply(good) is False  # the same text: no reload
        workers = (await haproxy.process_table()).workers
        with pytest.raises(HAProxyConfigError, match="unknown keyword"):
            await haproxy.apply(good + "    no-such-keyword on\n")
        assert haproxy.config_path.read_text() == good
        assert (await haproxy.process_table()).workers == workers
        status, body = await asyncio.to_thread(http_get, config.bind_port, "/image")
        assert status == 503 and body["title"] == "Service Unavailable"
        await haproxy.reload()
        assert (await haproxy.process_table()).workers.isdisjoint(workers)
    finally:
        await haproxy.stop()
    assert haproxy.pid is None and not haproxy.master_socket.exists()
