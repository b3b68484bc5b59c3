"""A server's floating IPs in its addresses: associated through the Networking API (a PUT of
the floating IP's `port_id`) or the compute API's `addFloatingIp`, they show in the server,
the list with details and `/ips` next to the fixed address, under its network's name, with
its port's MAC; disassociated or deleted, they go."""

from __future__ import annotations

from typing import Any

from tests.integration.cloud import Cloud, Tenant
from tests.integration.test_compute_api import call
from tests.integration.test_compute_networking import network, ports_of
from tests.integration.test_compute_servers import boot, ready_cloud, wait_server
from unistack.iaas.network import bootstrap

NET = "/network/v2.0"
OLD = {"X-OpenStack-Nova-API-Version": "2.43"}  # the floating IP actions end there


async def routed_server(cloud: Cloud, tenant: Tenant) -> tuple[str, dict[str, Any]]:
    """A server on network `blue`, routed to the public network: its id and its port."""
    image = await ready_cloud(cloud)
    blue = await network(cloud, tenant, "blue", "10.60.0.0/24")
    subnet = (await cloud.call("GET", f"{NET}/subnets", token=tenant.token)).body["subnets"][0]
    gateway = {"network_id": bootstrap.public_network_id()}
    router = {"router": {"name": "r", "external_gateway_info": gateway}}
    made = await cloud.call("POST", f"{NET}/routers", router, tenant.token)
    assert made.status == 201, made.body
    path = f"{NET}/routers/{made.body['router']['id']}/add_router_interface"
    joined = await cloud.call("PUT", path, {"subnet_id": subnet["id"]}, tenant.token)
    assert joined.status == 200, joined.body
    server_id = await boot(cloud, tenant.token, image, networks=[{"uuid": blue}])
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    (port,) = await ports_of(cloud, server_id)
    return server_id, port


async def floating_ip(cloud: Cloud, tenant: Tenant) -> dict[str, Any]:
    body = {"floatingip": {"floating_network_id": bootstrap.public_network_id()}}
    made = await cloud.call("POST", f"{NET}/floatingips", body, tenant.token)
    assert made.status == 201, made.body
    return dict(made.body["floatingip"])


async def associate(cloud: Cloud, tenant: Tenant, fip_id: str, port_id: str | None) -> None:
    change = {"floatingip": {"port_id": port_id}}
    reply = await cloud.call("PUT", f"{NET}/floatingips/{fip_id}", change, tenant.token)
    assert reply.status == 200, reply.body


async def shown(cloud: Cloud, server_id: str, token: str) -> dict[str, Any]:
    """The server's addresses as show, the list with details and `/ips` have them, which
    must agree (the plain `/ips` on version and address)."""
    one = await call(cloud, "GET", f"/servers/{server_id}", token)
    listed = await call(cloud, "GET", "/servers/detail", token)
    ips = await call(cloud, "GET", f"/servers/{server_id}/ips", token)
    assert one.status == listed.status == ips.status == 200
    addresses = dict(one.body["server"]["addresses"])
    (entry,) = [s for s in listed.body["servers"] if s["id"] == server_id]
    assert entry["addresses"] == addresses
    plain = {
        n: [{"version": a["version"], "addr": a["addr"]} for a in e] for n, e in addresses.items()
    }
    assert ips.body["addresses"] == plain
    return addresses


def floating_entry(address: str, mac: str) -> dict[str, Any]:
    return {
        "version": 4,
        "addr": address,
        "OS-EXT-IPS:type": "floating",
        "OS-EXT-IPS-MAC:mac_addr": mac,
    }


async def test_a_floating_ip_associated_through_networking_shows_and_goes(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    server_id, port = await routed_server(cloud, tenant)
    fixed = port["fixed_ips"][0]["ip_address"]
    fip = await floating_ip(cloud, tenant)
    before = await shown(cloud, server_id, tenant.token)
    assert [a["addr"] for a in before["blue"]] == [fixed]
    await associate(cloud, tenant, fip["id"], port["id"])
    after = await shown(cloud, server_id, tenant.token)
    assert after["blue"] == [
        *before["blue"],
        floating_entry(fip["floating_ip_address"], port["mac_address"]),
    ]
    assert after["blue"][0]["OS-EXT-IPS:type"] == "fixed"
    await associate(cloud, tenant, fip["id"], None)
    assert await shown(cloud, server_id, tenant.token) == before
    await associate(cloud, tenant, fip["id"], port["id"])
    assert len((await shown(cloud, server_id, tenant.token))["blue"]) == 2
    deleted = await cloud.call("DELETE", f"{NET}/floatingips/{fip['id']}", token=tenant.token)
    assert deleted.status == 204
    assert await shown(cloud, server_id, tenant.token) == before


async def test_add_and_remove_floating_ip_actions(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    server_id, port = await routed_server(cloud, tenant)
    fip = await floating_ip(cloud, tenant)
    address = fip["floating_ip_address"]
    path = f"/compute/v2.1/servers/{server_id}/action"
    body = {"addFloatingIp": {"address": address}}
    added = await cloud.call("POST", path, body, tenant.token, OLD)
    assert added.status == 202, added.body
    addresses = await shown(cloud, server_id, tenant.token)
    assert addresses["blue"][1] == floating_entry(address, port["mac_address"])
    admin = await call(cloud, "GET", "/servers/detail?all_tenants=1", cloud.admin)
    (entry,) = [s for s in admin.body["servers"] if s["id"] == server_id]
    assert entry["addresses"] == addresses
    body = {"removeFloatingIp": {"address": address}}
    removed = await cloud.call("POST", path, body, tenant.token, OLD)
    assert removed.status == 202, removed.body
    assert [
        a["OS-EXT-IPS:type"] for a in (await shown(cloud, server_id, tenant.token))["blue"]
    ] == ["fixed"]


async def test_a_rebuilt_server_answers_with_its_floating_ip(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    server_id, port = await routed_server(cloud, tenant)
    fip = await floating_ip(cloud, tenant)
    await associate(cloud, tenant, fip["id"], port["id"])
    server = (await call(cloud, "GET", f"/servers/{server_id}", tenant.token)).body["server"]
    body = {"rebuild": {"imageRef": server["image"]["id"]}}
    path = f"/compute/v2.1/servers/{server_id}/action"
    latest = {"X-OpenStack-Nova-API-Version": "2.75"}
    rebuilt = await cloud.call("POST", path, body, tenant.token, latest)
    assert rebuilt.status == 202, rebuilt.body
    entry = floating_entry(fip["floating_ip_address"], port["mac_address"])
    assert rebuilt.body["server"]["addresses"]["blue"][1] == entry
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    assert (await shown(cloud, server_id, tenant.token))["blue"][1] == entry


async def test_networking_lists_a_ports_floating_ips_by_index_as_it_filters(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    _, port = await routed_server(cloud, tenant)
    held, spare = await floating_ip(cloud, tenant), await floating_ip(cloud, tenant)
    await associate(cloud, tenant, held["id"], port["id"])

    async def listed(token: str, **params: str) -> list[str]:
        reply = await cloud.call("GET", f"{NET}/floatingips", token=token, params=params)
        assert reply.status == 200, reply.body
        return [f["id"] for f in reply.body["floatingips"]]

    assert await listed(tenant.token, port_id=port["id"]) == [held["id"]]
    assert await listed(cloud.admin, port_id=port["id"], status="DOWN") == []
    assert await listed(tenant.token, port_id="") == [spare["id"]]
    both = sorted([held["id"], spare["id"]])
    assert await listed(cloud.admin, project_id=tenant.project_id) == both
    assert await listed(cloud.admin, project_id=tenant.project_id, status="ACTIVE") == [held["id"]]
    other = await cloud.tenant()
    assert await listed(other.token, port_id=port["id"]) == []
    assert await listed(other.token, project_id=tenant.project_id) == []
