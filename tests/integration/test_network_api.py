"""The network service (Neutron v2.0) through the whole gateway: versions, extensions,
networks, subnets with IPAM, ports, isolation between projects."""

from __future__ import annotations

import asyncio
import ipaddress

from tests.integration.cloud import Cloud
from unistack.iaas.network import bootstrap

NET = "/network/v2.0"


async def make_network(cloud: Cloud, token: str, **extra: object) -> dict:
    reply = await cloud.call("POST", f"{NET}/networks", {"network": {"name": "n", **extra}}, token)
    assert reply.status == 201, reply.body
    return reply.body["network"]


async def make_subnet(
    cloud: Cloud, token: str, network_id: str, cidr: str, **extra: object
) -> dict:
    body = {"subnet": {"network_id": network_id, "cidr": cidr, "ip_version": 4, **extra}}
    reply = await cloud.call("POST", f"{NET}/subnets", body, token)
    assert reply.status == 201, reply.body
    return reply.body["subnet"]


async def test_versions_and_extensions(cloud: Cloud) -> None:
    reply = await cloud.call("GET", "/network/")
    assert reply.body["versions"][0]["id"] == "v2.0"
    assert reply.body["versions"][0]["links"][0]["href"].endswith("/network/v2.0/")
    reply = await cloud.call("GET", f"{NET}/extensions", token=cloud.admin)
    aliases = {e["alias"] for e in reply.body["extensions"]}
    assert {"router", "security-group", "quotas", "standard-attr-tag"} <= aliases
    reply = await cloud.call("GET", f"{NET}/extensions/nope", token=cloud.admin)
    assert reply.status == 404


async def test_public_network_exists(cloud: Cloud) -> None:
    params = {"router:external": "true"}
    reply = await cloud.call("GET", f"{NET}/networks", token=cloud.admin, params=params)
    (public,) = reply.body["networks"]
    assert public["id"] == bootstrap.public_network_id()
    assert public["provider:network_type"] == "flat"
    reply = await cloud.call(
        "GET", f"{NET}/subnets/{bootstrap.public_subnet_id()}", token=cloud.admin
    )
    subnet = reply.body["subnet"]
    assert subnet["gateway_ip"] == "172.24.4.1"
    assert subnet["allocation_pools"] == [{"start": "172.24.4.2", "end": "172.24.4.254"}]
    tenant = await cloud.tenant()
    reply = await cloud.call("GET", f"{NET}/networks", token=tenant.token)
    assert [n["name"] for n in reply.body["networks"]] == ["public"]
    assert "provider:network_type" not in reply.body["networks"][0]


async def test_network_lifecycle_and_vxlan_ids(cloud: Cloud) -> None:
    first = await make_network(cloud, cloud.admin)
    second = await make_network(cloud, cloud.admin, name="other")
    assert first["status"] == "ACTIVE" and first["mtu"] == 1450
    assert first["provider:segmentation_id"] != second["provider:segmentation_id"]
    assert first["project_id"] == cloud.admin_project_id
    body = {"network": {"name": "renamed"}}
    reply = await cloud.call("PUT", f"{NET}/networks/{first['id']}", body, cloud.admin)
    assert reply.body["network"]["name"] == "renamed"
    assert reply.body["network"]["revision_number"] == 1
    reply = await cloud.call("DELETE", f"{NET}/networks/{first['id']}", token=cloud.admin)
    assert reply.status == 204
    reply = await cloud.call("GET", f"{NET}/networks/{first['id']}", token=cloud.admin)
    assert reply.status == 404
    assert reply.body["NeutronError"]["type"] == "NetworkNotFound"


async def test_subnet_ipam_defaults_and_overlap(cloud: Cloud) -> None:
    network = await make_network(cloud, cloud.admin)
    subnet = await make_subnet(cloud, cloud.admin, network["id"], "10.1.0.0/24")
    assert subnet["gateway_ip"] == "10.1.0.1"
    assert subnet["allocation_pools"] == [{"start": "10.1.0.2", "end": "10.1.0.254"}]
    body = {"subnet": {"network_id": network["id"], "cidr": "10.1.0.128/25", "ip_version": 4}}
    reply = await cloud.call("POST", f"{NET}/subnets", body, cloud.admin)
    assert reply.status == 400
    assert "overlaps with another subnet" in reply.body["NeutronError"]["message"]
    body = {"subnet": {"network_id": network["id"], "cidr": "nonsense", "ip_version": 4}}
    assert (await cloud.call("POST", f"{NET}/subnets", body, cloud.admin)).status == 400
    reply = await cloud.call("GET", f"{NET}/networks/{network['id']}", token=cloud.admin)
    assert reply.body["network"]["subnets"] == [subnet["id"]]


async def test_ports_allocate_addresses_and_free_them(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    network = await make_network(cloud, tenant.token)
    subnet = await make_subnet(cloud, tenant.token, network["id"], "10.2.0.0/29")
    body = {"port": {"network_id": network["id"]}}
    replies = await asyncio.gather(
        *(cloud.call("POST", f"{NET}/ports", body, tenant.token) for _ in range(5))
    )
    assert [r.status for r in replies] == [201] * 5
    addresses = {r.body["port"]["fixed_ips"][0]["ip_address"] for r in replies}
    assert addresses == {f"10.2.0.{i}" for i in range(2, 7)}
    macs = {r.body["port"]["mac_address"] for r in replies}
    assert len(macs) == 5 and all(m.startswith("fa:16:3e:") for m in macs)
    reply = await cloud.call("POST", f"{NET}/ports", body, tenant.token)
    assert reply.status == 409
    assert reply.body["NeutronError"]["type"] == "IpAddressGenerationFailure"
    port = replies[0].body["port"]
    assert port["status"] == "DOWN"
    assert len(port["security_groups"]) == 1
    assert (
        await cloud.call("DELETE", f"{NET}/ports/{port['id']}", token=tenant.token)
    ).status == 204
    wanted = port["fixed_ips"][0]["ip_address"]
    body = {
        "port": {
            "network_id": network["id"],
            "fixed_ips": [{"subnet_id": subnet["id"], "ip_address": wanted}],
        }
    }
    reply = await cloud.call("POST", f"{NET}/ports", body, tenant.token)
    assert reply.status == 201 and reply.body["port"]["fixed_ips"][0]["ip_address"] == wanted
    reply = await cloud.call("POST", f"{NET}/ports", body, tenant.token)
    assert reply.status == 409
    assert reply.body["NeutronError"]["type"] == "IpAddressAlreadyAllocated"


async def test_compute_binds_a_port_through_the_internal_client(cloud: Cloud) -> None:
    network = await make_network(cloud, cloud.admin)
    await make_subnet(cloud, cloud.admin, network["id"], "10.3.0.0/24")
    internal = cloud.platform.internal
    body = {
        "port": {"network_id": network["id"], "device_id": "vm-1", "device_owner": "compute:nova"}
    }
    status, created = await internal.call("POST", f"{NET}/ports", body)
    assert status == 201, created
    port_id = created["port"]["id"]
    update = {"port": {"binding:host_id": "node-1"}}
    status, bound = await internal.call("PUT", f"{NET}/ports/{port_id}", update)
    assert status == 200 and bound["port"]["binding:vif_type"] == "bridge"
    assert bound["port"]["status"] == "ACTIVE"
    status, found = await internal.call("GET", f"{NET}/ports", params={"device_id": "vm-1"})
    assert [p["id"] for p in found["ports"]] == [port_id]
    reply = await cloud.call("DELETE", f"{NET}/networks/{network['id']}", token=cloud.admin)
    assert reply.status == 409 and reply.body["NeutronError"]["type"] == "NetworkInUse"
    status, _ = await internal.call("DELETE", f"{NET}/ports/{port_id}")
    assert status == 204
    reply = await cloud.call("DELETE", f"{NET}/networks/{network['id']}", token=cloud.admin)
    assert reply.status == 204


async def test_projects_do_not_see_each_other(cloud: Cloud) -> None:
    alice, bob = await cloud.tenant(), await cloud.tenant()
    network = await make_network(cloud, alice.token)
    reply = await cloud.call("GET", f"{NET}/networks/{network['id']}", token=bob.token)
    assert reply.status == 404
    reply = await cloud.call("DELETE", f"{NET}/networks/{network['id']}", token=bob.token)
    assert reply.status == 404
    body = {"port": {"network_id": network["id"]}}
    assert (await cloud.call("POST", f"{NET}/ports", body, bob.token)).status == 404
    shared = await make_network(cloud, cloud.admin, shared=True)
    reply = await cloud.call("GET", f"{NET}/networks", token=bob.token)
    assert shared["id"] in {n["id"] for n in reply.body["networks"]}
    assert network["id"] not in {n["id"] for n in reply.body["networks"]}
    reader = await cloud.tenant(role="reader")
    body = {"network": {"name": "nope"}}
    assert (await cloud.call("POST", f"{NET}/networks", body, reader.token)).status == 403


async def test_list_query_machinery(cloud: Cloud) -> None:
    for name in ("c", "a", "b"):
        await make_network(cloud, cloud.admin, name=name)
    params = {"sort_key": "name", "sort_dir": "asc", "fields": "name", "shared": "false"}
    reply = await cloud.call("GET", f"{NET}/networks", token=cloud.admin, params=params)
    names = [n["name"] for n in reply.body["networks"]]
    assert names == sorted(names) and set(reply.body["networks"][0]) == {"name"}
    params = {"limit": "2", "sort_key": "name", "sort_dir": "asc"}
    reply = await cloud.call("GET", f"{NET}/networks", token=cloud.admin, params=params)
    assert [n["name"] for n in reply.body["networks"]] == ["a", "b"]
    assert reply.body["networks_links"][0]["rel"] == "next"
    params["marker"] = reply.body["networks"][-1]["id"]
    reply = await cloud.call("GET", f"{NET}/networks", token=cloud.admin, params=params)
    assert [n["name"] for n in reply.body["networks"]] == ["c", "public"]


async def test_ipv6_slaac_ports_get_eui64_addresses(cloud: Cloud) -> None:
    network = await make_network(cloud, cloud.admin)
    v4 = await make_subnet(cloud, cloud.admin, network["id"], "10.4.0.0/24")
    body = {"subnet": {"network_id": network["id"], "cidr": "2001:db8::/64", "ip_version": 6,
                       "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"}}  # fmt: skip
    reply = await cloud.call("POST", f"{NET}/subnets", body, cloud.admin)
    assert reply.status == 201, reply.body
    v6 = reply.body["subnet"]
    assert v6["gateway_ip"] == "2001:db8::1"
    reply = await cloud.call(
        "POST", f"{NET}/ports", {"port": {"network_id": network["id"]}}, cloud.admin
    )
    port = reply.body["port"]
    octets = port["mac_address"].split(":")
    first = f"{int(octets[0], 16) ^ 2:02x}"
    suffix = f"{first}{octets[1]}:{octets[2]}ff:fe{octets[3]}:{octets[4]}{octets[5]}"
    addresses = {ip["subnet_id"]: ip["ip_address"] for ip in port["fixed_ips"]}
    assert addresses[v4["id"]] == "10.4.0.2"
    assert addresses[v6["id"]] == str(ipaddress.ip_address(f"2001:db8::{suffix}"))
    body["subnet"]["ipv6_address_mode"] = "dhcpv6-stateful"
    reply = await cloud.call("POST", f"{NET}/subnets", body, cloud.admin)
    assert reply.status == 400


async def test_bulk_create_and_read_only_attributes(cloud: Cloud) -> None:
    body = {"networks": [{"name": "bulk-1"}, {"name": "bulk-2"}]}
    reply = await cloud.call("POST", f"{NET}/networks", body, cloud.admin)
    assert reply.status == 201, reply.body
    made = reply.body["networks"]
    assert [n["name"] for n in made] == ["bulk-1", "bulk-2"]
    assert (await cloud.call("POST", f"{NET}/networks", {}, cloud.admin)).status == 400
    path = f"{NET}/networks/{made[0]['id']}"
    reply = await cloud.call("PUT", path, {"network": {"availability_zone_hints": []}}, cloud.admin)
    assert reply.status == 400
    assert "read-only attribute availability_zone_hints" in reply.body["NeutronError"]["message"]
    reply = await cloud.call("PUT", path, {"network": {"bogus": 1}}, cloud.admin)
    assert reply.status == 400 and "Unrecognized attribute" in reply.body["NeutronError"]["message"]


async def test_others_networks_and_projects_are_refused(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    shared = await make_network(cloud, cloud.admin, shared=True)
    body = {"subnet": {"network_id": shared["id"], "cidr": "10.5.0.0/24", "ip_version": 4}}
    reply = await cloud.call("POST", f"{NET}/subnets", body, tenant.token)
    assert reply.status == 403
    assert reply.body["NeutronError"]["type"] == "PolicyNotAuthorized"
    body = {"network": {"name": "theirs", "project_id": cloud.admin_project_id}}
    reply = await cloud.call("POST", f"{NET}/networks", body, tenant.token)
    assert reply.status == 403
    assert "create_network" in reply.body["NeutronError"]["message"]
