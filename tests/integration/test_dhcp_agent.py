"""The DHCP agent against the in-process API server, with a fake DHCP driver: it makes the
network's DHCP port (an address taken through an `Allocation` object, as the Neutron facade
takes them, so neither hands out the same address twice), bound to its host, serves every
other port as a static lease, and deletes the port (giving its address back) and the server
when DHCP is turned off."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from unistack.agent import dhcp, dhcpports
from unistack.client.api import Client, NotFound
from unistack.client.resources import NAMESPACES
from unistack.dataplane.dhcp import DhcpHost, FakeDhcp
from unistack.dataplane.tenantnet import NetworkWiring
from unistack.iaas import crds
from unistack.iaas.network import kinds as network_kinds
from unistack.iaas.network.allocations import address_name

NS = "project-d"
NET = "0d000000-0000-4000-8000-000000000001"
POOL = [{"start": "10.5.0.2", "end": "10.5.0.20"}]


def obj(ref: Any, name: str, spec: dict[str, Any], namespace: str = NS) -> dict[str, Any]:
    metadata = {"name": name, "namespace": namespace}
    return {"apiVersion": ref.api_version, "kind": ref.kind, "metadata": metadata, "spec": spec}


async def eventually(check: Any, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def dhcp_ports(client: Client) -> list[dict[str, Any]]:
    listed = await client.list(dhcpports.PORTS, namespace=NS)
    return [p for p in listed["items"] if p["spec"].get("device_owner") == "network:dhcp"]


async def test_dhcp_agent_makes_serves_and_removes_the_dhcp_port(client: Client) -> None:
    await crds.install(client, list(network_kinds.ALL))
    for name in (NS, dhcpports.SHARED_NAMESPACE):
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        await client.create(NAMESPACES, body)
    subnet = {"network_id": NET, "cidr": "10.5.0.0/24", "ip_version": 4, "enable_dhcp": True,
              "gateway_ip": "10.5.0.1", "allocation_pools": POOL}  # fmt: skip
    vm = {"network_id": NET, "mac_address": "fa:16:3e:aa:00:01", "device_owner": "compute:nova",
          "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.5.0.2"}]}  # fmt: skip
    held = {"subnet_id": "s1", "ip_address": "10.5.0.2", "owner": "vm"}
    for ref, item in (
        (dhcp.NETWORKS, obj(dhcp.NETWORKS, NET, {"mtu": 1450, "project_id": "p"})),
        (dhcp.SUBNETS, obj(dhcp.SUBNETS, "s1", subnet)),
        (dhcp.PORTS, obj(dhcp.PORTS, "vm", vm)),
        (
            dhcpports.ALLOCATIONS,
            obj(
                dhcpports.ALLOCATIONS,
                address_name("s1", "10.5.0.2"),
                held,
                dhcpports.SHARED_NAMESPACE,
            ),
        ),
        (  # the facade took 10.5.0.3 a moment ago; the agent's cache has no port holding it
            dhcpports.ALLOCATIONS,
            obj(
                dhcpports.ALLOCATIONS,
                address_name("s1", "10.5.0.3"),
                {**held, "ip_address": "10.5.0.3"},
                dhcpports.SHARED_NAMESPACE,
            ),
        ),
    ):
        await client.create(ref, item)
    fake = FakeDhcp()
    ensured: list[str] = []

    async def ensure_network(wiring: NetworkWiring) -> None:
        ensured.append(wiring.network_id)

    agent = dhcp.DhcpAgent(client, "host-a", fake, ensure_network)
    task = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: NET in fake.served)
        (made,) = await dhcp_ports(client)
        assert made["spec"]["binding:host_id"] == "host-a" and ensured == [NET]
        assert made["spec"]["fixed_ips"] == [{"subnet_id": "s1", "ip_address": "10.5.0.4"}]
        allocation = address_name("s1", "10.5.0.4")
        found = await client.get(dhcpports.ALLOCATIONS, allocation, dhcpports.SHARED_NAMESPACE)
        assert found["spec"]["owner"] == made["metadata"]["name"]
        wiring = fake.served[NET]
        assert wiring.addresses == ("10.5.0.4/24",)
        assert wiring.hosts == (DhcpHost("fa:16:3e:aa:00:01", "10.5.0.2"),)

        second = {**vm, "mac_address": "fa:16:3e:aa:00:02",
                  "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.5.0.9"}]}  # fmt: skip
        await client.create(dhcp.PORTS, obj(dhcp.PORTS, "vm2", second))
        await eventually(lambda: len(fake.served[NET].hosts) == 2)

        patch = {"spec": {"enable_dhcp": False}}
        await client.patch(dhcp.SUBNETS, "s1", patch, namespace=NS)
        await eventually(lambda: NET not in fake.served)
        assert await dhcp_ports(client) == []
        with contextlib.suppress(NotFound):
            await client.get(dhcpports.ALLOCATIONS, allocation, dhcpports.SHARED_NAMESPACE)
            raise AssertionError("the DHCP port's address was not given back")
        assert fake.calls.count(("ensure", NET)) == 2
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
