"""Neutron under load: network, subnet, router, router interface and port, each created through
the API and timed twice — until the API answers, and until the host's data plane is wired.

"Wired" is observed on the host the cloud's agent runs on (this machine, in its own network
namespace: run as root beside a root `unistack up`), by the names
`unistack.dataplane.tenantnames` derives from the ids, so nothing is asked of the agent:

- subnet (DHCP on): the network's bridge `unistackn<6 hex>` exists, the DHCP namespace
  `unistack-dhcp-<network id>` exists and its DHCP port shows ACTIVE (bound to a host);
- router: its namespace `unistack-router-<router id>` exists;
- router interface: the interface port's bridge end `unistackr<6 hex>` exists and the port
  shows ACTIVE (the L3 agent bound it);
- port: the DHCP server knows it — its MAC is in the network's dnsmasq hosts file
  (`<state dir>/agent/dhcp/<network id>/hosts`), the static lease an instance will get.

The routers and DHCP servers of a cloud with extra hosts (`--hosts N`) may land in those
hosts' namespaces, where this process does not look: measure a one-host cloud.
A network alone is wired nowhere (the agents wire a network where it has a bound port), so
its row has no wire-up figure. Each step waits for its wiring before the next starts, so the
chain's figure is what a script creating all five and waiting for each sees. After each
iteration everything is deleted and the time until the bridge and both namespaces are gone
is measured too.

`python -m bench.network --state-dir DIR [--iterations 20]` against a running cloud (the
state dir of `unistack up`); without one a fresh `unistack up` is started and taken down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from rich.console import Console
from rich.table import Table

from bench import harness
from bench.compute import Cloud, cloud_at
from unistack.dataplane import tenantnames

HOST_POLL_SECONDS = 0.002  # a link or namespace lookup costs microseconds
API_POLL_SECONDS = 0.02
TIMEOUT_SECONDS = 60.0
STEPS = ("network", "subnet", "router", "router interface", "port")
CIDR = "10.98.0.0/24"  # tenant subnets may overlap, so every iteration may reuse it


@dataclass
class Timings:
    created: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})
    wired: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})
    chain: list[float] = field(default_factory=list)
    teardown: list[float] = field(default_factory=list)


@dataclass
class Api:
    http: aiohttp.ClientSession
    base: str  # the network endpoint, .../v2.0

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, self.base + path, json=body) as reply:
            if reply.status >= 400:
                raise RuntimeError(f"{method} {path}: {reply.status} {await reply.text()}")
            raw = await reply.read()
            return orjson.loads(raw) if raw else None


# --- what the host shows ---------------------------------------------------------------------


def link_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def dhcp_knows(state_dir: Path, network_id: str, mac: str) -> bool:
    try:
        return mac in (state_dir / "agent" / "dhcp" / network_id / "hosts").read_text()
    except OSError:
        return False


async def until(check: Callable[[], bool], what: str, poll: float = HOST_POLL_SECONDS) -> None:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(poll)


async def until_active(api: Api, query: str, what: str) -> None:
    """Until some port matching `query` shows ACTIVE."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while True:
        ports = (await api.call("GET", f"/ports?{query}"))["ports"]
        if any(port["status"] == "ACTIVE" for port in ports):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(API_POLL_SECONDS)


# --- one iteration ---------------------------------------------------------------------------


def _ms(since: float) -> float:
    return (harness.now() - since) * 1000


async def wire_up(
    api: Api, state_dir: Path, index: int, timings: Timings, made: dict[str, str]
) -> None:
    """Create the five, timing each; `made` collects the ids as they come, for the teardown
    (also when a step fails)."""
    chain = step = harness.now()
    network = await api.call("POST", "/networks", {"network": {"name": f"bench-net-{index}"}})
    network_id = made["network"] = network["network"]["id"]
    timings.created["network"].append(_ms(step))

    step = harness.now()
    body = {"network_id": network_id, "ip_version": 4, "cidr": CIDR, "name": f"bench-{index}"}
    subnet_id = (await api.call("POST", "/subnets", {"subnet": body}))["subnet"]["id"]
    timings.created["subnet"].append(_ms(step))
    bridge = tenantnames.bridge_name(network_id)
    await until(lambda: link_exists(bridge), f"bridge {bridge}")
    await until(lambda: netns_exists(tenantnames.dhcp_netns(network_id)), "DHCP namespace")
    query = f"network_id={network_id}&device_owner=network:dhcp"
    await until_active(api, query, "the DHCP port")
    timings.wired["subnet"].append(_ms(step))

    step = harness.now()
    router = await api.call("POST", "/routers", {"router": {"name": f"bench-rt-{index}"}})
    router_id = made["router"] = router["router"]["id"]
    timings.created["router"].append(_ms(step))
    namespace = tenantnames.router_netns(router_id)
    await until(lambda: netns_exists(namespace), f"namespace {namespace}")
    timings.wired["router"].append(_ms(step))

    step = harness.now()
    added = await api.call(
        "PUT", f"/routers/{router_id}/add_router_interface", {"subnet_id": subnet_id}
    )
    made["interface"] = subnet_id
    timings.created["router interface"].append(_ms(step))
    device = tenantnames.router_port_device(added["port_id"])
    await until(lambda: link_exists(device), f"router port {device}")
    await until_active(api, f"id={added['port_id']}", "the router interface port")
    timings.wired["router interface"].append(_ms(step))

    step = harness.now()
    port_body = {"network_id": network_id, "name": f"bench-port-{index}"}
    port = (await api.call("POST", "/ports", {"port": port_body}))["port"]
    made["port"] = port["id"]
    timings.created["port"].append(_ms(step))
    mac = port["mac_address"]
    await until(lambda: dhcp_knows(state_dir, network_id, mac), "the port's DHCP host entry")
    timings.wired["port"].append(_ms(step))
    timings.chain.append(_ms(chain))


async def tear_down(api: Api, made: dict[str, str]) -> None:
    """Delete what `wire_up` made, in dependency order; absent objects are fine."""
    router_id = made.get("router")
    actions: list[tuple[str, str, Any]] = []
    if router_id and "interface" in made:
        body = {"subnet_id": made["interface"]}
        actions.append(("PUT", f"/routers/{router_id}/remove_router_interface", body))
    if "port" in made:
        actions.append(("DELETE", f"/ports/{made['port']}", None))
    if router_id:
        actions.append(("DELETE", f"/routers/{router_id}", None))
    if "network" in made:
        actions.append(("DELETE", f"/networks/{made['network']}", None))
    for method, path, body in actions:
        with contextlib.suppress(RuntimeError):
            await api.call(method, path, body)


async def _gone(made: dict[str, str]) -> None:
    network_id, router_id = made["network"], made["router"]
    bridge = tenantnames.bridge_name(network_id)
    await until(lambda: not link_exists(bridge), f"bridge {bridge} to go")
    await until(lambda: not netns_exists(tenantnames.dhcp_netns(network_id)), "DHCP ns to go")
    await until(lambda: not netns_exists(tenantnames.router_netns(router_id)), "router ns to go")


async def run(cloud: Cloud, iterations: int) -> Timings:
    timings = Timings()
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        http.headers["X-Auth-Token"] = await _token(http, cloud)
        api = Api(http, f"{cloud.gateway}/network/v2.0")
        for index in range(iterations):
            made: dict[str, str] = {}
            try:
                await wire_up(api, cloud.state_dir, index, timings, made)
            finally:
                began = harness.now()
                await tear_down(api, made)
                if {"network", "router"} <= made.keys():
                    await _gone(made)
                    timings.teardown.append(_ms(began))
    return timings


async def _token(http: aiohttp.ClientSession, cloud: Cloud) -> str:
    user = {"name": cloud.username, "domain": {"id": "default"}, "password": cloud.password}
    scope = {"project": {"name": "admin", "domain": {"id": "default"}}}
    identity = {"methods": ["password"], "password": {"user": user}}
    body = {"auth": {"identity": identity, "scope": scope}}
    async with http.post(f"{cloud.auth_url}/v3/auth/tokens", json=body) as reply:
        reply.raise_for_status()
        return reply.headers["X-Subject-Token"]


# --- report ----------------------------------------------------------------------------------


def _ms_cell(values: list[float], p: float) -> str:
    return f"{harness.percentile(values, p):.0f} ms" if values else "—"


def _ratio(wired: list[float], created: list[float]) -> str:
    if not wired or not created:
        return "—"
    return f"{harness.percentile(wired, 50) / harness.percentile(created, 50):.1f}x"


def table(timings: Timings, iterations: int) -> Table:
    shown = Table(title=f"network wire-up ({iterations} iterations)")
    for column in ("step", "API p50", "API p99", "wired p50", "wired p99", "wired / API (p50)"):
        shown.add_column(column)
    rows = [(step, timings.created[step], timings.wired[step]) for step in STEPS]
    api_chain = [sum(values) for values in zip(*timings.created.values(), strict=True)]
    rows.append(("whole chain", api_chain, timings.chain))
    for name, created, wired in rows:
        shown.add_row(
            name,
            _ms_cell(created, 50),
            _ms_cell(created, 99),
            _ms_cell(wired, 50),
            _ms_cell(wired, 99),
            _ratio(wired, created),
        )
    teardown = timings.teardown
    shown.add_row(
        "delete all → bridge, namespaces gone",
        "",
        "",
        _ms_cell(teardown, 50),
        _ms_cell(teardown, 99),
        "",
    )
    return shown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.network")
    parser.add_argument("--state-dir", type=Path, help="a running unistack (default: start one)")
    parser.add_argument("--iterations", type=int, default=20, help="create-and-delete cycles")
    arguments = parser.parse_args(argv)
    console = Console()
    console.print(f"machine: {harness.machine()}")
    console.print(f"command: python -m bench.network {' '.join(argv or sys.argv[1:])}".rstrip())
    with cloud_at(arguments.state_dir, "unistacknet", "10.253.1.0/24") as cloud:
        timings = asyncio.run(run(cloud, arguments.iterations))
        console.print(table(timings, arguments.iterations))
    return 0


if __name__ == "__main__":
    sys.exit(main())
