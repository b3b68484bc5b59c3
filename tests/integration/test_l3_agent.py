"""The L3 agent against the in-process API server, with fake routers: it binds the router's
ports to its host, asks for the bridges, wires the router, follows floating IPs, and removes
the router when it goes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from unistack.agent import l3
from unistack.client.api import Client
from unistack.client.resources import NAMESPACES
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
        # the router wired anew: the external bridge's address is seen to again (its bridge
        # may have been made again under it, taking the address along)
        assert routers.calls.count(("ensure_external", EXT)) >= 2
        await client.delete(l3.ROUTERS, ROUTER, namespace=NS)
        await eventually(lambda: ROUTER not in routers.routers)
        assert EXT not in routers.externals
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
