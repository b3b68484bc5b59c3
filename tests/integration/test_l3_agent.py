"""The L3 agent against the in-process API server, with fake routers: it binds the router's
ports to its host, asks for the bridges, wires the router, follows floating IPs, and removes
the router when it goes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from unistack.agent import l3, networking
from unistack.client.api import Client
from unistack.client.resources import NAMESPACES, NODES
from unistack.dataplane.routers import FakeRouters, FloatingIp
from unistack.dataplane.tenantnet import NetworkWiring
from unistack.iaas import crds
from unistack.iaas.compute import kinds as compute_kinds
from unistack.iaas.network import kinds as network_kinds

NS = "project-a"
ROUTER, NET, EXT = "r1000000-0000-4000-8000-000000000001", "n-tenant", "n-public"


def obj(ref: Any, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": ref.api_version,
        "kind": ref.kind,
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


def port(name: str, owner: str, network: str, subnet: str, ip: str) -> dict[str, Any]:
    spec = {
        "device_owner": owner, "device_id": ROUTER, "network_id": network,
        "mac_address": "fa:16:3e:00:00:01", "fixed_ips": [{"subnet_id": subnet, "ip_address": ip}],
    }  # fmt: skip
    return obj(l3.PORTS, name, spec)


async def eventually(check: Any, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_l3_agent_wires_binds_and_removes(client: Client) -> None:
    await crds.install(client, [*network_kinds.ALL, *compute_kinds.ALL])
    await client.create(
        NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    )
    objects = [
        (l3.NETWORKS, obj(l3.NETWORKS, NET, {"mtu": 1450})),
        (l3.NETWORKS, obj(l3.NETWORKS, EXT, {"mtu": 1500, "router:external": True})),
        (l3.SUBNETS, obj(l3.SUBNETS, "s1", {"network_id": NET, "cidr": "10.0.0.0/24"})),
        (
            l3.SUBNETS,
            obj(
                l3.SUBNETS,
                "s2",
                {
                    "network_id": EXT,
                    "cidr": "172.24.9.0/24",
                    "gateway_ip": "172.24.9.1",
                    "ip_version": 4,
                },
            ),
        ),
        (l3.PORTS, port("p-if", l3.INTERFACE, NET, "s1", "10.0.0.1")),
        (l3.PORTS, port("p-gw", l3.GATEWAY, EXT, "s2", "172.24.9.5")),
        (
            l3.ROUTERS,
            obj(l3.ROUTERS, ROUTER, {"external_gateway_info": {"network_id": EXT}, "routes": []}),
        ),
    ]
    for ref, item in objects:
        await client.create(ref, item, namespace=NS)
    routers = FakeRouters()
    ensured: list[str] = []

    async def ensure_network(wiring: NetworkWiring) -> None:
        ensured.append(wiring.network_id)

    agent = l3.L3Agent(client, "host-a", routers, ensure_network, l3.L3Options(metadata=False))
    task = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: ROUTER in routers.routers)
        assert sorted(set(ensured)) == [EXT, NET]
        assert routers.routers[ROUTER].gateway_ip == "172.24.9.1"
        assert EXT in routers.externals
        for name in ("p-if", "p-gw"):
            bound = await client.get(l3.PORTS, name, namespace=NS)
            assert bound["spec"]["binding:host_id"] == "host-a"
        fip = {"router_id": ROUTER, "port_id": "vm", "fixed_ip_address": "10.0.0.7",
               "floating_ip_address": "172.24.9.50"}  # fmt: skip
        await client.create(l3.FLOATING_IPS, obj(l3.FLOATING_IPS, "f1", fip), namespace=NS)
        expected = (FloatingIp("172.24.9.50", "10.0.0.7"),)
        await eventually(lambda: routers.routers[ROUTER].floating_ips == expected)
        # the L2 agent removed the tenant network's bridge: the router is plugged again (its
        # bridge asked for first), the external address, on another bridge, is left alone
        calls = len(routers.calls)
        asked = len(ensured)
        agent.bridge_removed(NET)
        await eventually(lambda: ("ensure_router", ROUTER) in routers.calls[calls:])
        assert ("ensure_external", EXT) not in routers.calls[calls:]
        assert NET in ensured[asked:]
        await client.delete(l3.ROUTERS, ROUTER, namespace=NS)
        await eventually(lambda: ROUTER not in routers.routers)
        assert EXT not in routers.externals
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_only_the_uplink_holds_the_external_gateway(client: Client) -> None:
    """Two agents: the router runs on host-b, whose external bridge gets no address; host-a,
    the uplink, runs no router and still holds the gateway (its bridge asked for first)."""
    await crds.install(client, [*network_kinds.ALL, *compute_kinds.ALL])
    await client.create(
        NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    )
    hosts = ["host-a", "host-b"]
    router_id = next(
        f"r{n:07d}-0000-4000-8000-000000000001"
        for n in range(100)
        if l3.router_host(f"r{n:07d}-0000-4000-8000-000000000001", hosts) == "host-b"
    )
    for name, said in (
        ("host-a", {networking.UPLINK_ANNOTATION: "true"}),
        ("host-b", {l3.DRIVERS_ANNOTATION: "container"}),
    ):
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
        node["metadata"]["annotations"] = said
        await client.create(NODES, node)
    subnet = {"network_id": EXT, "cidr": "172.24.9.0/24", "gateway_ip": "172.24.9.1"}
    gateway = port("p-gw", l3.GATEWAY, EXT, "s2", "172.24.9.5")
    gateway["spec"]["device_id"] = router_id
    for ref, item in (
        (l3.NETWORKS, obj(l3.NETWORKS, EXT, {"mtu": 1500, "router:external": True})),
        (l3.SUBNETS, obj(l3.SUBNETS, "s2", subnet)),
        (l3.PORTS, gateway),
        (l3.ROUTERS, obj(l3.ROUTERS, router_id, {"external_gateway_info": {"network_id": EXT}})),
    ):
        await client.create(ref, item, namespace=NS)
    fakes = {host: FakeRouters() for host in hosts}
    ensured: dict[str, list[NetworkWiring]] = {host: [] for host in hosts}
    agents = {}
    for host in hosts:

        async def ensure_network(wiring: NetworkWiring, host: str = host) -> None:
            ensured[host].append(wiring)

        options = l3.L3Options(metadata=False, uplink=host == "host-a")
        agents[host] = l3.L3Agent(client, host, fakes[host], ensure_network, options)
    tasks = [asyncio.create_task(agent.run()) for agent in agents.values()]
    try:
        await eventually(lambda: router_id in fakes["host-b"].routers)
        await eventually(lambda: EXT in fakes["host-a"].externals)  # once host-b bound the port
        assert fakes["host-a"].externals[EXT].gateway == "172.24.9.1/24"
        assert fakes["host-a"].routers == {} and fakes["host-b"].externals == {}
        assert NetworkWiring(EXT, mtu=1500) in ensured["host-a"]
        # the L2 agent made the uplink's bridge again: the address is seen to again
        before = fakes["host-a"].calls.count(("ensure_external", EXT))
        agents["host-a"].bridge_removed(EXT)
        await eventually(lambda: fakes["host-a"].calls.count(("ensure_external", EXT)) > before)
        await client.delete(l3.ROUTERS, router_id, namespace=NS)
        await client.delete(l3.PORTS, "p-gw", namespace=NS)
        await eventually(lambda: EXT not in fakes["host-a"].externals)
        assert router_id not in fakes["host-b"].routers
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
