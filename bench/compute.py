"""Nova under load: Rally's boot-and-delete, and listing many servers.

The hypervisors' driver is the cloud's: `container` (a real system container per server)
when its agent runs as root, `fake` (state only) otherwise; the table's title says which.

- `boot_and_delete`: create a server (no network) → ACTIVE, then delete → gone, one after
  another as Rally's `NovaServers.boot_and_delete_server` does; p50 and p99 of each half.
- `list_many`: create servers until the cloud has N (default 5,000), then time
  `GET /servers/detail` with every page followed (what `openstack server list` asks for) and
  the real `openstack server list` command end to end (its ~1 s of Python start-up included).

The load talks to the gateway over HTTP like any client, with the admin's token; quotas of
the admin project are lifted first (the defaults allow 10 instances).

`python -m bench.compute [--state-dir DIR] [--servers 200] [--list 5000]`; without a state
dir a fresh `unistack up` is started and taken down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from rich.console import Console
from rich.table import Table

from bench import harness

WANTED_MICROVERSION = (2, 37)  # `networks: "none"`; older APIs get no networks field
POLL_SECONDS = 0.02
TIMEOUT_SECONDS = 60.0
LIST_TARGET_MS = 500.0


@dataclass(frozen=True)
class Cloud:
    state_dir: Path
    auth_url: str
    username: str
    password: str

    @classmethod
    def from_state(cls, state_dir: Path) -> Cloud:
        config = yaml.safe_load((state_dir / "clouds.yaml").read_text())["clouds"]["unistack"]
        auth = config["auth"]
        return cls(state_dir, auth["auth_url"].rstrip("/"), auth["username"], auth["password"])

    @property
    def gateway(self) -> str:
        return self.auth_url.rsplit("/identity", 1)[0]


@dataclass
class Session:
    http: aiohttp.ClientSession
    compute: str
    image_id: str
    flavor_id: str
    network_id: str | None = None  # boot with a port on it (Rally's usual setup), else none


async def _token(http: aiohttp.ClientSession, cloud: Cloud) -> tuple[str, str]:
    user = {"name": cloud.username, "domain": {"id": "default"}, "password": cloud.password}
    scope = {"project": {"name": "admin", "domain": {"id": "default"}}}
    identity = {"methods": ["password"], "password": {"user": user}}
    body = {"auth": {"identity": identity, "scope": scope}}
    async with http.post(f"{cloud.auth_url}/v3/auth/tokens", json=body) as reply:
        reply.raise_for_status()
        data = await reply.json()
        return reply.headers["X-Subject-Token"], data["token"]["project"]["id"]


async def _json(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Any:
    async with http.request(method, url, **kwargs) as reply:
        if reply.status >= 400:
            raise RuntimeError(f"{method} {url}: {reply.status} {await reply.text()}")
        raw = await reply.read()
        return orjson.loads(raw) if raw else None


async def _open(cloud: Cloud, http: aiohttp.ClientSession) -> Session:
    token, project_id = await _token(http, cloud)
    http.headers["X-Auth-Token"] = token
    compute = f"{cloud.gateway}/compute/v2.1"
    highest = (await _json(http, "GET", compute))["version"]["version"] or "2.1"
    major, minor = (int(part) for part in highest.split("."))
    chosen = "{}.{}".format(*min((major, minor), WANTED_MICROVERSION))
    http.headers["OpenStack-API-Version"] = f"compute {chosen}"
    http.headers["X-OpenStack-Nova-API-Version"] = chosen
    unlimited = {"instances": -1, "cores": -1, "ram": -1}
    await _json(http, "PUT", f"{compute}/os-quota-sets/{project_id}", json={"quota_set": unlimited})
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while True:  # the built-in image appears once the registry has built it
        images = await _json(http, "GET", f"{cloud.gateway}/image/v2/images?name=busybox")
        if images["images"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    flavors = (await _json(http, "GET", f"{compute}/flavors/detail"))["flavors"]
    smallest = min(flavors, key=lambda f: (f["ram"], f["vcpus"], f["disk"]))
    return Session(http, compute, images["images"][0]["id"], smallest["id"])


async def _create(session: Session, name: str) -> str:
    server: dict[str, Any] = {
        "name": name,
        "imageRef": session.image_id,
        "flavorRef": session.flavor_id,
    }
    if session.network_id:
        server["networks"] = [{"uuid": session.network_id}]
    elif session.http.headers["X-OpenStack-Nova-API-Version"] == "2.37":
        server["networks"] = "none"
    body = await _json(session.http, "POST", f"{session.compute}/servers", json={"server": server})
    return str(body["server"]["id"])


async def _wait_status(session: Session, server_id: str, wanted: str | None) -> None:
    """Until the server shows `wanted` (None: until it is gone)."""
    url = f"{session.compute}/servers/{server_id}"
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        async with session.http.get(url) as reply:
            if reply.status == 404 and wanted is None:
                return
            if reply.status == 200:
                status = (await reply.json())["server"]["status"]
                if status == wanted:
                    return
                if status == "ERROR":
                    raise RuntimeError(f"server {server_id} went to ERROR")
        await asyncio.sleep(POLL_SECONDS)
    raise TimeoutError(f"server {server_id} never became {wanted or 'gone'}")


async def boot_and_delete(session: Session, count: int) -> tuple[list[float], list[float]]:
    active, gone = [], []
    for index in range(count):
        start = harness.now()
        server_id = await _create(session, f"bench-{index}")
        await _wait_status(session, server_id, "ACTIVE")
        middle = harness.now()
        await _json(session.http, "DELETE", f"{session.compute}/servers/{server_id}")
        await _wait_status(session, server_id, None)
        active.append((middle - start) * 1000)
        gone.append((harness.now() - middle) * 1000)
    return active, gone


async def _list_all(session: Session) -> int:
    url: str | None = f"{session.compute}/servers/detail?all_tenants=1"
    seen = 0
    while url:
        body = await _json(session.http, "GET", url)
        seen += len(body["servers"])
        links = [link["href"] for link in body.get("servers_links", []) if link["rel"] == "next"]
        url = links[0] if links else None
    return seen


async def list_many(session: Session, total: int, in_flight: int = 16) -> tuple[int, list[float]]:
    have = await _list_all(session)
    names = iter(range(have, total))

    async def creator() -> None:
        for index in names:
            await _create(session, f"many-{index}")

    await asyncio.gather(*(creator() for _ in range(in_flight)))
    timings = []
    for _ in range(5):
        start = harness.now()
        seen = await _list_all(session)
        timings.append((harness.now() - start) * 1000)
    return seen, timings


def _cli_list_ms(cloud: Cloud) -> float:
    command = shutil.which("openstack", path=str(Path(sys.executable).parent))
    if command is None:
        return float("nan")
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(cloud.state_dir / "clouds.yaml")}
    env["OS_CLOUD"] = "unistack"
    start = harness.now()
    subprocess.run(
        [command, "server", "list", "--all-projects", "-f", "value", "-c", "ID"],
        env=env,
        check=True,
        capture_output=True,
    )
    return (harness.now() - start) * 1000


@contextlib.contextmanager
def cloud_at(
    state_dir: Path | None, bridge: str, pod_cidr: str, extra: tuple[str, ...] = ()
) -> Iterator[Cloud]:
    """The running cloud of `state_dir`, or a fresh `unistack up` on its own bridge and pod
    CIDR (and `extra` options) for the benchmark's run, taken down afterwards."""
    if state_dir is not None:
        yield Cloud.from_state(state_dir)
        return
    with harness.running_server(bridge, pod_cidr, extra) as server:
        yield Cloud.from_state(server.state_dir)


async def _hypervisor_types(session: Session) -> str:
    listed = await _json(session.http, "GET", f"{session.compute}/os-hypervisors/detail")
    return ", ".join(sorted({h["hypervisor_type"] for h in listed["hypervisors"]}))


async def _network(session: Session, cloud: Cloud, name: str) -> str:
    """The id of network `name`, made with a /24 subnet when it does not exist."""
    base = f"{cloud.gateway}/network/v2.0"
    found = (await _json(session.http, "GET", f"{base}/networks?name={name}"))["networks"]
    if found:
        return str(found[0]["id"])
    made = await _json(session.http, "POST", f"{base}/networks", json={"network": {"name": name}})
    subnet = {"network_id": made["network"]["id"], "ip_version": 4, "cidr": "10.99.0.0/24"}
    await _json(session.http, "POST", f"{base}/subnets", json={"subnet": subnet})
    return str(made["network"]["id"])


async def _run(cloud: Cloud, servers: int, listed: int, network: str | None = None) -> Table:
    table = Table(title="compute")
    for column in ("benchmark", "p50 / median", "p99", "target"):
        table.add_column(column)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        session = await _open(cloud, http)
        if network:
            session.network_id = await _network(session, cloud, network)
        wired = f", a port on {network}" if network else ", no network"
        table.title = f"compute ({await _hypervisor_types(session)} driver{wired})"
        if servers:
            active, gone = await boot_and_delete(session, servers)
            for name, values in (
                (f"create → ACTIVE ({servers})", active),
                (f"delete → gone ({servers})", gone),
            ):
                table.add_row(
                    name,
                    f"{harness.percentile(values, 50):.0f} ms",
                    f"{harness.percentile(values, 99):.0f} ms",
                    "Rally 5.1 s median (classic)",
                )
        if listed:
            seen, timings = await list_many(session, listed)
            median = harness.percentile(timings, 50)
            table.add_row(
                f"GET /servers/detail, {seen} servers, all pages",
                f"{median:.0f} ms",
                f"{max(timings):.0f} ms (max of 5)",
                f"≤ {LIST_TARGET_MS:.0f} ms",
            )
    if listed:
        table.add_row(
            "openstack server list (CLI, start-up included)",
            f"{_cli_list_ms(cloud):.0f} ms",
            "",
            "",
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compute")
    parser.add_argument("--state-dir", type=Path, help="a running unistack (default: start one)")
    parser.add_argument("--servers", type=int, default=200, help="boot-and-delete cycles")
    parser.add_argument("--list", type=int, default=5000, help="servers to list")
    parser.add_argument("--network", help="boot each server with a port on this network")
    arguments = parser.parse_args(argv)
    console = Console()
    console.print(f"machine: {harness.machine()}")
    console.print(f"command: python -m bench.compute {' '.join(argv or sys.argv[1:])}".rstrip())
    with cloud_at(arguments.state_dir, "unistacknova", "10.253.0.0/24") as cloud:
        table = asyncio.run(_run(cloud, arguments.servers, arguments.list, arguments.network))
        console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
