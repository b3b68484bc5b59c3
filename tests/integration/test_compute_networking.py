"""Servers on networks: ports made and bound through the Networking API at boot, interfaces
attached and detached, floating IPs, security groups of a server, ports gone with it."""

from __future__ import annotations

from tests.integration.cloud import Cloud, Tenant
from tests.integration.test_compute_api import call
from tests.integration.test_compute_servers import boot, ready_cloud, wait_gone, wait_server

NET = "/network/v2.0"


async def network(cloud: Cloud, tenant: Tenant, name: str, cidr: str) -> str:
    made = await cloud.call("POST", f"{NET}/networks", {"network": {"name": name}}, tenant.token)
    assert made.status == 201, made.body
    network_id = str(made.body["network"]["id"])
    subnet = {"network_id": network_id, "cidr": cidr, "ip_version": 4}
    reply = await cloud.call("POST", f"{NET}/subnets", {"subnet": subnet}, tenant.token)
    assert reply.status == 201, reply.body
    return network_id


async def ports_of(cloud: Cloud, server_id: str) -> list[dict]:
    reply = await cloud.call(
        "GET", f"{NET}/ports", token=cloud.admin, params={"device_id": server_id}
    )
    return list(reply.body["ports"])


async def test_boot_on_a_network_attach_detach_and_teardown(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    first = await network(cloud, tenant, "blue", "10.30.0.0/24")
    second = await network(cloud, tenant, "green", "10.31.0.0/24")
    ambiguous = await boot(cloud, tenant.token, image)
    failed = await wait_server(cloud, ambiguous, tenant.token, "ERROR")
    assert "Multiple possible networks" in failed["fault"]["message"]
    server_id = await boot(cloud, tenant.token, image, networks=[{"uuid": first}])
    server = await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    assert [a["addr"][:8] for a in server["addresses"]["blue"]] == ["10.30.0."]
    (port,) = await ports_of(cloud, server_id)
    assert port["device_owner"] == "compute:nova" and port["binding:host_id"] == "hv0"
    path = f"/servers/{server_id}/os-interface"
    body = {"interfaceAttachment": {"net_id": second}}
    attached = await call(cloud, "POST", path, tenant.token, body)
    assert attached.status == 200, attached.body
    new_port = attached.body["interfaceAttachment"]["port_id"]
    assert attached.body["interfaceAttachment"]["net_id"] == second
    listed = await call(cloud, "GET", path, tenant.token)
    assert {i["port_id"] for i in listed.body["interfaceAttachments"]} == {port["id"], new_port}
    shown = await call(cloud, "GET", f"/servers/{server_id}", tenant.token)
    assert set(shown.body["server"]["addresses"]) == {"blue", "green"}
    ips = await call(cloud, "GET", f"/servers/{server_id}/ips/green", tenant.token)
    assert ips.body["green"][0]["version"] == 4
    detached = await call(cloud, "DELETE", f"{path}/{new_port}", tenant.token)
    assert detached.status == 202
    # done when it answers: its action has its event (Tempest waits for it to succeed)
    request_id = detached.headers["x-openstack-request-id"]
    action_path = f"/servers/{server_id}/os-instance-actions/{request_id}"
    action = (await call(cloud, "GET", action_path, cloud.admin)).body["instanceAction"]
    assert action["action"] == "detach_interface"
    assert [(e["event"], e["result"]) for e in action["events"]] == [
        ("compute_detach_interface", "Success")
    ]
    gone = await cloud.call("GET", f"{NET}/ports/{new_port}", token=cloud.admin)
    assert gone.status == 404
    groups = await call(cloud, "GET", f"/servers/{server_id}/os-security-groups", tenant.token)
    assert [g["name"] for g in groups.body["security_groups"]] == ["default"]
    missing = {"security_groups": [{"name": "nope"}], "networks": [{"uuid": first}]}
    body = {"server": {"name": "x", "imageRef": image, "flavorRef": "42", **missing}}
    assert (await call(cloud, "POST", "/servers", tenant.token, body)).status == 400
    assert (await call(cloud, "DELETE", f"/servers/{server_id}", tenant.token)).status == 204
    await wait_gone(cloud, server_id, tenant.token)
    assert await ports_of(cloud, server_id) == []


async def test_a_network_without_port_security_takes_a_server_with_no_group_named(
    cloud: Cloud,
) -> None:
    """Nova names no group for the implicit `default` (Networking applies it, or nothing
    where port security is off); a group named on such a network is still refused."""
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    network_id = await network(cloud, tenant, "open", "10.32.0.0/24")
    off = {"network": {"port_security_enabled": False}}
    changed = await cloud.call("PUT", f"{NET}/networks/{network_id}", off, tenant.token)
    assert changed.status == 200, changed.body
    server_id = await boot(cloud, tenant.token, image, networks=[{"uuid": network_id}])
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    (port,) = await ports_of(cloud, server_id)
    assert port["port_security_enabled"] is False and port["security_groups"] == []
    web = {"security_group": {"name": "web"}}
    assert (await cloud.call("POST", f"{NET}/security-groups", web, tenant.token)).status == 201
    named = {"security_groups": [{"name": "web"}]}
    refused = await boot(cloud, tenant.token, image, networks=[{"uuid": network_id}], **named)
    failed = await wait_server(cloud, refused, tenant.token, "ERROR")
    assert "security group" in failed["fault"]["message"].lower()
    for server in (server_id, refused):
        assert (await call(cloud, "DELETE", f"/servers/{server}", tenant.token)).status == 204
        await wait_gone(cloud, server, tenant.token)


async def test_device_tags_given_at_boot_are_kept(cloud: Cloud) -> None:
    """`networks[].tag` and `block_device_mapping_v2[].tag` (2.42 on) are recorded on the
    server: the interface list shows them from 2.70 and the metadata service lists the
    tagged devices (`agent.instancemetadata.tagged_devices`, read from the same status)."""
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    first = await network(cloud, tenant, "tagged", "10.32.0.0/24")
    second = await network(cloud, tenant, "plain", "10.33.0.0/24")
    body = {
        "server": {
            "name": "tagged",
            "imageRef": image,
            "flavorRef": "42",
            "networks": [{"uuid": first, "tag": "nic-a"}, {"uuid": second}],
        }
    }
    at = {"OpenStack-API-Version": "compute 2.42"}
    made = await cloud.call("POST", "/compute/v2.1/servers", body, tenant.token, headers=at)
    assert made.status == 202, made.body
    server_id = made.body["server"]["id"]
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    path = f"/compute/v2.1/servers/{server_id}/os-interface"
    listed = await cloud.call(
        "GET", path, token=tenant.token, headers={"OpenStack-API-Version": "compute 2.70"}
    )
    tags = {i["net_id"]: i["tag"] for i in listed.body["interfaceAttachments"]}
    assert tags == {first: "nic-a", second: None}
    await call(cloud, "DELETE", f"/servers/{server_id}", tenant.token)
    await wait_gone(cloud, server_id, tenant.token)
