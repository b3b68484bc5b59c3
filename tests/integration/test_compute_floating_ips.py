"""Floating IPs through the compute API, answered by the Networking API."""

from __future__ import annotations

from tests.integration.cloud import Cloud
from tests.integration.test_compute_api import call

NET = "/network/v2.0"


async def test_allocate_list_release_from_a_pool(cloud: Cloud) -> None:
    body = {"network": {"name": "ext", "router:external": True}}
    network = await cloud.call("POST", f"{NET}/networks", body, cloud.admin)
    assert network.status == 201, network.body
    network_id = network.body["network"]["id"]
    subnet = {"network_id": network_id, "cidr": "203.0.113.0/24", "ip_version": 4}
    made = await cloud.call("POST", f"{NET}/subnets", {"subnet": subnet}, cloud.admin)
    assert made.status == 201, made.body
    tenant = await cloud.tenant()
    pools = await call(cloud, "GET", "/os-floating-ip-pools", tenant.token)
    assert {"name": "ext"} in pools.body["floating_ip_pools"]
    missing = await call(cloud, "POST", "/os-floating-ips", tenant.token, {"pool": "nope"})
    assert missing.status == 404
    allocated = await call(cloud, "POST", "/os-floating-ips", tenant.token, {"pool": "ext"})
    assert allocated.status == 200, allocated.body
    fip = allocated.body["floating_ip"]
    assert fip["pool"] == "ext" and fip["instance_id"] is None
    assert fip["ip"].startswith("203.0.113.")
    listed = await call(cloud, "GET", "/os-floating-ips", tenant.token)
    assert [f["id"] for f in listed.body["floating_ips"]] == [fip["id"]]
    other = await cloud.tenant()
    assert (await call(cloud, "GET", "/os-floating-ips", other.token)).body["floating_ips"] == []
    assert (
        await call(cloud, "DELETE", f"/os-floating-ips/{fip['id']}", tenant.token)
    ).status == 202
    gone = await call(cloud, "GET", f"/os-floating-ips/{fip['id']}", tenant.token)
    assert gone.status == 404


async def test_networks_proxy_lists_what_the_caller_sees(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    made = await cloud.call("POST", f"{NET}/networks", {"network": {"name": "mine"}}, tenant.token)
    assert made.status == 201, made.body
    network_id = made.body["network"]["id"]
    listed = await call(cloud, "GET", "/os-networks", tenant.token)
    assert {"id": network_id, "label": "mine"}.items() <= next(
        n for n in listed.body["networks"] if n["id"] == network_id
    ).items()
    shown = await call(cloud, "GET", f"/os-networks/{network_id}", tenant.token)
    assert shown.body["network"]["label"] == "mine"
    other = await cloud.tenant()
    assert (await call(cloud, "GET", f"/os-networks/{network_id}", other.token)).status == 404


async def test_tenant_networks_show_the_first_cidr(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    made = await cloud.call("POST", f"{NET}/networks", {"network": {"name": "t"}}, tenant.token)
    network_id = made.body["network"]["id"]
    subnet = {"network_id": network_id, "cidr": "10.44.0.0/24", "ip_version": 4}
    await cloud.call("POST", f"{NET}/subnets", {"subnet": subnet}, tenant.token)
    shown = await call(cloud, "GET", f"/os-tenant-networks/{network_id}", tenant.token)
    assert shown.body["network"] == {"id": network_id, "label": "t", "cidr": "10.44.0.0/24"}
