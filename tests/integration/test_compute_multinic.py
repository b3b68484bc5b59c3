"""Nova's multinic actions up to 2.43, `addFixedIp` and `removeFixedIp`: a fixed IP added on a
network goes on the server's port there (400 without one), removing it takes the address off
(and the port away when it was its only one); gone from 2.44, with Nova's 400s for bad
input."""

from __future__ import annotations

from tests.integration.cloud import Cloud
from tests.integration.test_compute_api import call
from tests.integration.test_compute_networking import NET, network, ports_of
from tests.integration.test_compute_servers import boot, ready_cloud, wait_server

V244 = {"X-OpenStack-Nova-API-Version": "2.44"}


def fixed_ips(server: dict) -> set[str]:
    return {
        a["addr"]
        for entries in server["addresses"].values()
        for a in entries
        if a["OS-EXT-IPS:type"] == "fixed"
    }


async def test_add_and_remove_a_fixed_ip(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    net = await network(cloud, tenant, "blue", "10.40.0.0/24")
    server_id = await boot(cloud, tenant.token, image, networks=[{"uuid": net}])
    before = fixed_ips(await wait_server(cloud, server_id, tenant.token, "ACTIVE"))
    assert len(before) == 1
    action = f"/servers/{server_id}/action"
    added = await call(cloud, "POST", action, tenant.token, {"addFixedIp": {"networkId": net}})
    assert added.status == 202, added.body
    shown = (await call(cloud, "GET", f"/servers/{server_id}", tenant.token)).body["server"]
    after = fixed_ips(shown)
    assert before < after and len(after) == 2
    (new_ip,) = after - before
    assert new_ip.startswith("10.40.0.")
    (port,) = await ports_of(cloud, server_id)  # the same port, with two addresses
    assert {ip["ip_address"] for ip in port["fixed_ips"]} == after
    ips = await call(cloud, "GET", f"/servers/{server_id}/ips", tenant.token)
    assert {a["addr"] for a in ips.body["addresses"]["blue"]} == after
    removed = await call(
        cloud, "POST", action, tenant.token, {"removeFixedIp": {"address": new_ip}}
    )
    assert removed.status == 202, removed.body
    shown = (await call(cloud, "GET", f"/servers/{server_id}", tenant.token)).body["server"]
    assert fixed_ips(shown) == before
    (port,) = await ports_of(cloud, server_id)
    assert [ip["ip_address"] for ip in port["fixed_ips"]] == sorted(before)
    elsewhere = await network(cloud, tenant, "other", "10.43.0.0/24")
    refused = await call(cloud, "POST", action, tenant.token,
                         {"addFixedIp": {"networkId": elsewhere}})  # fmt: skip
    assert refused.status == 400 and "could not be found for instance" in str(refused.body)
    again = await call(cloud, "POST", action, tenant.token, {"removeFixedIp": {"address": new_ip}})
    assert again.status == 400 and "does not have fixed IP" in again.body["badRequest"]["message"]


async def test_remove_one_of_two_addresses_keeps_the_port(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    net = await network(cloud, tenant, "green", "10.41.0.0/24")
    server_id = await boot(cloud, tenant.token, image, networks=[{"uuid": net}])
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    (port,) = await ports_of(cloud, server_id)
    subnet = port["fixed_ips"][0]["subnet_id"]
    second = {"port": {"fixed_ips": [*port["fixed_ips"], {"subnet_id": subnet}]}}
    grown = await cloud.call("PUT", f"{NET}/ports/{port['id']}", second, cloud.admin)
    assert grown.status == 200, grown.body
    extra = grown.body["port"]["fixed_ips"][1]["ip_address"]
    action = f"/servers/{server_id}/action"
    body = {"removeFixedIp": {"address": extra}}
    assert (await call(cloud, "POST", action, tenant.token, body)).status == 202
    (kept,) = await ports_of(cloud, server_id)
    assert kept["id"] == port["id"] and kept["fixed_ips"] == port["fixed_ips"]


async def test_bad_input_and_gone_from_2_44(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    net = await network(cloud, tenant, "red", "10.42.0.0/24")
    server_id = await boot(cloud, tenant.token, image, networks=[{"uuid": net}])
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    action = f"/servers/{server_id}/action"
    for body in (
        {"addFixedIp": {}},
        {"addFixedIp": {"networkId": net, "extra": 1}},
        {"addFixedIp": {"networkId": True}},
        {"addFixedIp": {"networkId": "00000000-0000-4000-8000-000000000000"}},
        {"removeFixedIp": {"address": "not-an-ip"}},
        {"removeFixedIp": {}},
    ):
        reply = await call(cloud, "POST", action, tenant.token, body)
        assert reply.status == 400, (body, reply.body)
        assert reply.body["badRequest"]["code"] == 400
    assert len(await ports_of(cloud, server_id)) == 1
    for body in ({"addFixedIp": {"networkId": net}}, {"removeFixedIp": {"address": "10.42.0.9"}}):
        reply = await cloud.call("POST", f"/compute/v2.1{action}", body, tenant.token, headers=V244)
        assert reply.status == 404, reply.body
    assert len(await ports_of(cloud, server_id)) == 1
