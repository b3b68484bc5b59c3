"""Routers, floating IPs, security groups, quotas, tags and IP availability of the network
service, through the whole gateway."""

from __future__ import annotations

import asyncio

from tests.integration.cloud import Cloud
from tests.integration.test_network_api import NET, make_network, make_subnet
from unistack.iaas.network import bootstrap


async def test_router_interfaces_and_floating_ips(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    network = await make_network(cloud, tenant.token)
    subnet = await make_subnet(cloud, tenant.token, network["id"], "10.9.0.0/24")
    public = bootstrap.public_network_id()
    body = {"router": {"name": "r", "external_gateway_info": {"network_id": public}}}
    reply = await cloud.call("POST", f"{NET}/routers", body, tenant.token)
    assert reply.status == 201, reply.body
    router = reply.body["router"]
    gateway = router["external_gateway_info"]
    assert gateway["enable_snat"] is True
    assert gateway["external_fixed_ips"][0]["ip_address"].startswith("172.24.4.")
    port = (
        await cloud.call(
            "POST", f"{NET}/ports", {"port": {"network_id": network["id"]}}, tenant.token
        )
    ).body["port"]
    fip_body = {"floatingip": {"floating_network_id": public, "port_id": port["id"]}}
    reply = await cloud.call("POST", f"{NET}/floatingips", fip_body, tenant.token)
    assert reply.status == 404
    assert reply.body["NeutronError"]["type"] == "ExternalGatewayForFloatingIPNotFound"
    path = f"{NET}/routers/{router['id']}/add_router_interface"
    reply = await cloud.call("PUT", path, {"subnet_id": subnet["id"]}, tenant.token)
    assert reply.status == 200 and reply.body["subnet_id"] == subnet["id"]
    interface = (
        await cloud.call("GET", f"{NET}/ports/{reply.body['port_id']}", token=tenant.token)
    ).body["port"]
    assert interface["fixed_ips"][0]["ip_address"] == "10.9.0.1"
    assert interface["device_owner"] == "network:router_interface"
    reply = await cloud.call("POST", f"{NET}/floatingips", fip_body, tenant.token)
    assert reply.status == 201, reply.body
    fip = reply.body["floatingip"]
    assert fip["router_id"] == router["id"] and fip["status"] == "ACTIVE"
    assert fip["fixed_ip_address"] == port["fixed_ips"][0]["ip_address"]
    reply = await cloud.call("DELETE", f"{NET}/routers/{router['id']}", token=tenant.token)
    assert reply.status == 409
    update = {"floatingip": {"port_id": None}}
    reply = await cloud.call("PUT", f"{NET}/floatingips/{fip['id']}", update, tenant.token)
    assert reply.body["floatingip"]["status"] == "DOWN"
    path = f"{NET}/routers/{router['id']}/remove_router_interface"
    assert (await cloud.call("PUT", path, {"subnet_id": subnet["id"]}, tenant.token)).status == 200
    assert (
        await cloud.call("DELETE", f"{NET}/floatingips/{fip['id']}", token=tenant.token)
    ).status == 204
    assert (
        await cloud.call("DELETE", f"{NET}/routers/{router['id']}", token=tenant.token)
    ).status == 204


async def test_default_security_group_and_rules(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    reply = await cloud.call("GET", f"{NET}/security-groups", token=tenant.token)
    (default,) = reply.body["security_groups"]
    assert default["name"] == "default" and len(default["security_group_rules"]) == 4
    reply = await cloud.call("DELETE", f"{NET}/security-groups/{default['id']}", token=tenant.token)
    assert reply.status == 409
    body = {"security_group": {"name": "default"}}
    assert (await cloud.call("POST", f"{NET}/security-groups", body, tenant.token)).status == 409
    body = {"security_group": {"name": "web"}}
    group = (await cloud.call("POST", f"{NET}/security-groups", body, tenant.token)).body[
        "security_group"
    ]
    rule = {"security_group_id": group["id"], "direction": "ingress", "protocol": "tcp",
            "port_range_min": 80, "port_range_max": 80}  # fmt: skip
    reply = await cloud.call(
        "POST", f"{NET}/security-group-rules", {"security_group_rule": rule}, tenant.token
    )
    assert reply.status == 201
    reply = await cloud.call(
        "POST", f"{NET}/security-group-rules", {"security_group_rule": rule}, tenant.token
    )
    assert reply.status == 409 and reply.body["NeutronError"]["type"] == "SecurityGroupRuleExists"
    bad = {**rule, "port_range_min": 90, "remote_ip_prefix": "::/0"}
    reply = await cloud.call(
        "POST", f"{NET}/security-group-rules", {"security_group_rule": bad}, tenant.token
    )
    assert reply.status == 400
    other = await cloud.tenant()
    reply = await cloud.call("GET", f"{NET}/security-groups/{group['id']}", token=other.token)
    assert reply.status == 404
    assert (
        await cloud.call("DELETE", f"{NET}/security-groups/{group['id']}", token=tenant.token)
    ).status == 204


async def test_quotas_are_enforced(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    body = {"quota": {"network": 1}}
    reply = await cloud.call("PUT", f"{NET}/quotas/{tenant.project_id}", body, tenant.token)
    assert reply.status == 403
    reply = await cloud.call("PUT", f"{NET}/quotas/{tenant.project_id}", body, cloud.admin)
    assert reply.status == 200 and reply.body["quota"]["network"] == 1
    await make_network(cloud, tenant.token)
    reply = await cloud.call("POST", f"{NET}/networks", {"network": {}}, tenant.token)
    assert reply.status == 409 and reply.body["NeutronError"]["type"] == "OverQuota"
    reply = await cloud.call("GET", f"{NET}/quotas/{tenant.project_id}/details", token=tenant.token)
    assert reply.body["quota"]["network"] == {"limit": 1, "used": 1, "reserved": 0}
    assert (
        await cloud.call("DELETE", f"{NET}/quotas/{tenant.project_id}", token=cloud.admin)
    ).status == 204
    reply = await cloud.call("GET", f"{NET}/quotas/{tenant.project_id}", token=tenant.token)
    assert reply.body["quota"]["network"] == 100


async def test_tags_and_tag_filters(cloud: Cloud) -> None:
    network = await make_network(cloud, cloud.admin)
    path = f"{NET}/networks/{network['id']}/tags"
    reply = await cloud.call("PUT", path, {"tags": ["red", "blue"]}, cloud.admin)
    assert reply.body["tags"] == ["red", "blue"]
    assert (await cloud.call("PUT", f"{path}/green", token=cloud.admin)).status == 201
    assert (await cloud.call("GET", f"{path}/green", token=cloud.admin)).status == 204
    assert (await cloud.call("DELETE", f"{path}/red", token=cloud.admin)).status == 204
    assert (await cloud.call("GET", f"{path}/red", token=cloud.admin)).status == 404
    reply = await cloud.call(
        "GET", f"{NET}/networks", token=cloud.admin, params={"tags": "blue,green"}
    )
    assert [n["id"] for n in reply.body["networks"]] == [network["id"]]
    reply = await cloud.call(
        "GET", f"{NET}/networks", token=cloud.admin, params={"not-tags-any": "blue"}
    )
    assert network["id"] not in [n["id"] for n in reply.body["networks"]]


async def test_ip_availability(cloud: Cloud) -> None:
    network = await make_network(cloud, cloud.admin)
    await make_subnet(cloud, cloud.admin, network["id"], "10.8.0.0/28")
    await cloud.call("POST", f"{NET}/ports", {"port": {"network_id": network["id"]}}, cloud.admin)
    reply = await cloud.call(
        "GET", f"{NET}/network-ip-availabilities/{network['id']}", token=cloud.admin
    )
    availability = reply.body["network_ip_availability"]
    assert availability["total_ips"] == 13 and availability["used_ips"] == 1


async def test_metering_labels_are_admin_only(cloud: Cloud) -> None:
    base = f"{NET}/metering/metering-labels"
    tenant = await cloud.tenant()
    body = {"metering_label": {"name": "m"}}
    assert (await cloud.call("POST", base, body, tenant.token)).status == 403
    label = (await cloud.call("POST", base, body, cloud.admin)).body["metering_label"]
    rules = f"{NET}/metering/metering-label-rules"
    rule = {
        "metering_label_id": label["id"],
        "direction": "ingress",
        "remote_ip_prefix": "10.0.0.0/24",
    }
    reply = await cloud.call("POST", rules, {"metering_label_rule": rule}, cloud.admin)
    assert reply.status == 201 and reply.body["metering_label_rule"]["excluded"] is False
    reply = await cloud.call("POST", rules, {"metering_label_rule": rule}, cloud.admin)
    assert reply.status == 409
    assert (await cloud.call("DELETE", f"{base}/{label['id']}", token=cloud.admin)).status == 204
    assert (await cloud.call("GET", rules, token=cloud.admin)).body["metering_label_rules"] == []


async def test_external_networks_hide_their_subnets_and_take_floating_ips_along(
    cloud: Cloud,
) -> None:
    external = await make_network(cloud, cloud.admin, **{"router:external": True})
    subnet = await make_subnet(cloud, cloud.admin, external["id"], "192.0.2.0/24")
    tenant = await cloud.tenant()
    reply = await cloud.call("GET", f"{NET}/networks/{external['id']}", token=tenant.token)
    assert reply.status == 200
    reply = await cloud.call("GET", f"{NET}/subnets/{subnet['id']}", token=tenant.token)
    assert reply.status == 404
    body = {"floatingip": {"floating_network_id": external["id"]}}
    reply = await cloud.call("POST", f"{NET}/floatingips", body, tenant.token)
    assert reply.status == 201 and reply.body["floatingip"]["floating_ip_address"] == "192.0.2.2"
    fip_id = reply.body["floatingip"]["id"]
    assert (
        await cloud.call("DELETE", f"{NET}/networks/{external['id']}", token=cloud.admin)
    ).status == 204
    assert (
        await cloud.call("GET", f"{NET}/floatingips/{fip_id}", token=tenant.token)
    ).status == 404


async def test_concurrent_tag_changes_are_all_kept(cloud: Cloud) -> None:
    network = await make_network(cloud, cloud.admin)
    path = f"{NET}/networks/{network['id']}/tags"
    names = [f"t{i}" for i in range(6)]
    replies = await asyncio.gather(
        *(cloud.call("PUT", f"{path}/{name}", token=cloud.admin) for name in names)
    )
    assert [r.status for r in replies] == [201] * len(names)
    reply = await cloud.call("GET", path, token=cloud.admin)
    assert sorted(reply.body["tags"]) == names


async def test_shared_subnet_pools_are_visible_to_others(cloud: Cloud) -> None:
    base = f"{NET}/subnetpools"
    body = {"subnetpool": {"name": "p", "prefixes": ["10.100.0.0/16"], "shared": True}}
    pool = (await cloud.call("POST", base, body, cloud.admin)).body["subnetpool"]
    body = {"subnetpool": {"name": "private", "prefixes": ["10.101.0.0/16"]}}
    private = (await cloud.call("POST", base, body, cloud.admin)).body["subnetpool"]
    tenant = await cloud.tenant()
    listed = (await cloud.call("GET", base, token=tenant.token)).body["subnetpools"]
    assert pool["id"] in {p["id"] for p in listed}
    assert private["id"] not in {p["id"] for p in listed}
    reply = await cloud.call("GET", f"{base}/{private['id']}", token=tenant.token)
    assert reply.status == 404 and reply.body["NeutronError"]["type"] == "SubnetPoolNotFound"
    reply = await cloud.call("DELETE", f"{base}/{pool['id']}", token=tenant.token)
    assert reply.status == 404
