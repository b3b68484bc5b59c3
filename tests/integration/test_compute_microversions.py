"""Nova's microversions above 2.1 through the in-process gateway: each request names a
version, and the answer has that version's shape (servers, tags, keypairs, flavors, server
groups, hypervisors, services, quotas and limits, the retired proxies, instance actions,
migrations)."""

from __future__ import annotations

from typing import Any

from tests.integration.cloud import Cloud, Reply
from tests.integration.test_compute_api import PUBLIC_KEY, V21
from tests.integration.test_compute_servers import ready_cloud, wait_gone, wait_server
from tests.integration.test_compute_volumes import available_volume, volume_status
from unistack.openstack.microversion import Version


async def at(
    cloud: Cloud, version: str, method: str, path: str, token: str, body: Any = None
) -> Reply:
    path, _, query = path.partition("?")
    params = dict(part.split("=", 1) for part in query.split("&")) if query else None
    headers = {"OpenStack-API-Version": f"compute {version}"}
    return await cloud.call(method, f"{V21}{path}", body, token, headers, params)


async def boot_at(cloud: Cloud, version: str, token: str, image: str, **fields: Any) -> str:
    body: dict[str, Any] = {"server": {"name": "vm", "imageRef": image, "flavorRef": "42"}}
    if Version.parse(version).at_least("2.37"):
        body["server"]["networks"] = "none"  # required from 2.37
    body["server"] |= fields
    hints = body["server"].pop("hints", None)
    if hints:
        body["os:scheduler_hints"] = hints
    reply = await at(cloud, version, "POST", "/servers", token, body)
    assert reply.status == 202, reply.body
    return str(reply.body["server"]["id"])


async def test_version_document_offers_up_to_2_100(cloud: Cloud) -> None:
    root = await cloud.call("GET", "/compute/")
    assert root.body["versions"][1]["version"] == "2.100"
    reply = await at(cloud, "latest", "GET", "/flavors", cloud.admin)
    assert reply.headers["openstack-api-version"] == "compute 2.100"
    assert (await at(cloud, "2.101", "GET", "/flavors", cloud.admin)).status == 406


async def test_server_shape_follows_the_version(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    group = await at(
        cloud,
        "2.64",
        "POST",
        "/os-server-groups",
        tenant.token,
        {"server_group": {"name": "g", "policy": "anti-affinity"}},
    )
    assert group.status == 200, group.body
    group_id = group.body["server_group"]["id"]
    server_id = await boot_at(
        cloud,
        "2.100",
        tenant.token,
        image,
        description="my vm",
        tags=["a", "b"],
        hostname="web-1",
        hints={"group": group_id},
    )
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    old = (await at(cloud, "2.1", "GET", f"/servers/{server_id}", tenant.token)).body["server"]
    assert "locked" not in old and "description" not in old and "tags" not in old
    assert set(old["flavor"]) == {"id", "links"}
    new = (await at(cloud, "2.100", "GET", f"/servers/{server_id}", tenant.token)).body["server"]
    assert new["locked"] is False and new["locked_reason"] is None
    assert new["description"] == "my vm" and new["tags"] == ["a", "b"]
    assert new["flavor"]["original_name"] == "m1.nano" and new["flavor"]["ram"] == 128
    assert new["trusted_image_certificates"] is None
    assert new["server_groups"] == [group_id]
    assert new["pinned_availability_zone"] is None
    assert new["scheduler_hints"] == {"group": group_id}
    assert new["image"]["properties"] == {}
    assert new["OS-EXT-SRV-ATTR:hostname"] == "web-1"
    admin = (await at(cloud, "2.16", "GET", f"/servers/{server_id}", cloud.admin)).body["server"]
    assert admin["host_status"] == "UP"
    assert admin["OS-EXT-SRV-ATTR:reservation_id"].startswith("r-")
    listed = await at(cloud, "2.26", "GET", "/servers/detail?tags=a,b", tenant.token)
    assert [s["id"] for s in listed.body["servers"]] == [server_id]
    none = await at(cloud, "2.26", "GET", "/servers/detail?not-tags-any=b", tenant.token)
    assert none.body["servers"] == []
    strict = await at(cloud, "2.75", "GET", "/servers?bogus=1", tenant.token)
    assert strict.status == 400
    assert (await at(cloud, "2.74", "GET", "/servers?bogus=1", tenant.token)).status == 200


async def test_create_and_update_are_checked_per_version(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    body = {"server": {"name": "vm", "imageRef": image, "flavorRef": "42"}}
    reply = await at(cloud, "2.37", "POST", "/servers", tenant.token, body)
    assert reply.status == 400 and "networks" in reply.body["badRequest"]["message"]
    described = {"server": {**body["server"], "description": "x"}}
    assert (await at(cloud, "2.18", "POST", "/servers", tenant.token, described)).status == 400
    server_id = await boot_at(cloud, "2.19", tenant.token, image, description="x")
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    update = {"server": {"description": "changed"}}
    basic = await at(cloud, "2.19", "PUT", f"/servers/{server_id}", tenant.token, update)
    assert basic.body["server"]["description"] == "changed"
    assert "OS-EXT-STS:vm_state" not in basic.body["server"]
    full = await at(cloud, "2.75", "PUT", f"/servers/{server_id}", tenant.token, update)
    assert full.body["server"]["OS-EXT-STS:vm_state"] == "active"
    refused = await at(cloud, "2.18", "PUT", f"/servers/{server_id}", tenant.token, update)
    assert refused.status == 400


async def test_server_tags_api(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    server_id = await boot_at(cloud, "2.52", tenant.token, image)
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    tags = f"/servers/{server_id}/tags"
    assert (await at(cloud, "2.25", "GET", tags, tenant.token)).status == 404
    added = await at(cloud, "2.26", "PUT", f"{tags}/red", tenant.token)
    assert added.status == 201 and added.headers["location"].endswith(f"{tags}/red")
    assert (await at(cloud, "2.26", "PUT", f"{tags}/red", tenant.token)).status == 204
    assert (await at(cloud, "2.26", "GET", f"{tags}/red", tenant.token)).status == 204
    assert (await at(cloud, "2.26", "GET", f"{tags}/blue", tenant.token)).status == 404
    replaced = await at(cloud, "2.26", "PUT", tags, tenant.token, {"tags": ["x", "y"]})
    assert replaced.body == {"tags": ["x", "y"]}
    bad = await at(cloud, "2.26", "PUT", tags, tenant.token, {"tags": ["a/b"]})
    assert bad.status == 400
    assert (await at(cloud, "2.26", "DELETE", f"{tags}/x", tenant.token)).status == 204
    assert (await at(cloud, "2.26", "GET", tags, tenant.token)).body == {"tags": ["y"]}
    assert (await at(cloud, "2.26", "DELETE", tags, tenant.token)).status == 204
    assert (await at(cloud, "2.26", "GET", tags, tenant.token)).body == {"tags": []}


async def test_actions_at_later_versions(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    key = {"keypair": {"name": "k", "public_key": PUBLIC_KEY}}
    assert (await at(cloud, "2.2", "POST", "/os-keypairs", tenant.token, key)).status == 201
    server_id = await boot_at(cloud, "2.57", tenant.token, image)
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    action = f"/servers/{server_id}/action"
    rebuild = {"rebuild": {"imageRef": image, "key_name": "k", "user_data": "aGk="}}
    rebuilt = await at(cloud, "2.57", "POST", action, tenant.token, rebuild)
    assert rebuilt.status == 202, rebuilt.body
    assert rebuilt.body["server"]["key_name"] == "k"
    assert rebuilt.body["server"]["user_data"] == "aGk="
    assert (await at(cloud, "2.53", "POST", action, tenant.token, rebuild)).status == 400
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    lock = {"lock": {"locked_reason": "maintenance"}}
    assert (await at(cloud, "2.73", "POST", action, tenant.token, lock)).status == 202
    shown = await at(cloud, "2.73", "GET", f"/servers/{server_id}", tenant.token)
    assert shown.body["server"]["locked_reason"] == "maintenance"
    assert (await at(cloud, "2.73", "POST", action, tenant.token, {"unlock": None})).status == 202
    image_body = {"createImage": {"name": "snap"}}
    snapped = await at(cloud, "2.45", "POST", action, tenant.token, image_body)
    assert snapped.status == 202 and set(snapped.body) == {"image_id"}
    console = {"remote_console": {"protocol": "vnc", "type": "novnc"}}
    path = f"/servers/{server_id}/remote-consoles"
    assert (await at(cloud, "2.6", "POST", path, tenant.token, console)).status == 400


async def test_migrations_record_each_resize(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    server_id = await boot_at(cloud, "2.80", tenant.token, image)
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    action = f"/servers/{server_id}/action"
    assert (
        await at(cloud, "2.1", "POST", action, tenant.token, {"resize": {"flavorRef": "84"}})
    ).status == 202
    await wait_server(cloud, server_id, tenant.token, "VERIFY_RESIZE")
    found = (await at(cloud, "2.80", "GET", "/os-migrations", cloud.admin)).body["migrations"]
    assert [m["status"] for m in found] == ["finished"]
    assert found[0]["instance_uuid"] == server_id and found[0]["migration_type"] == "resize"
    assert found[0]["project_id"] == tenant.project_id and "uuid" in found[0]
    assert (
        await at(cloud, "2.1", "POST", action, tenant.token, {"confirmResize": None})
    ).status == 204
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    old = (await at(cloud, "2.1", "GET", "/os-migrations", cloud.admin)).body["migrations"]
    assert [m["status"] for m in old] == ["confirmed"] and "migration_type" not in old[0]
    assert (await at(cloud, "2.1", "GET", "/os-migrations", tenant.token)).status == 403
    own = await at(cloud, "2.23", "GET", f"/servers/{server_id}/migrations", cloud.admin)
    assert own.body == {"migrations": []}
    assert (await at(cloud, "2.1", "DELETE", f"/servers/{server_id}", tenant.token)).status == 204
    await wait_gone(cloud, server_id, tenant.token)
    path = f"/servers/{server_id}/os-instance-actions"
    assert (await at(cloud, "2.20", "GET", path, tenant.token)).status == 404
    actions = (await at(cloud, "2.58", "GET", path, tenant.token)).body["instanceActions"]
    assert {"create", "resize", "confirmResize", "delete"} <= {a["action"] for a in actions}
    assert all("updated_at" in a for a in actions)


async def test_keypairs_flavors_and_groups_per_version(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    key = {"keypair": {"name": "k", "public_key": PUBLIC_KEY, "type": "ssh"}}
    assert (await at(cloud, "2.1", "POST", "/os-keypairs", tenant.token, key)).status == 400
    made = await at(cloud, "2.2", "POST", "/os-keypairs", tenant.token, key)
    assert made.status == 201 and made.body["keypair"]["type"] == "ssh"
    listed = await at(cloud, "2.2", "GET", "/os-keypairs", tenant.token)
    assert listed.body["keypairs"][0]["keypair"]["type"] == "ssh"
    other = {"keypair": {"name": "theirs", "public_key": PUBLIC_KEY, "user_id": "someone"}}
    assert (await at(cloud, "2.10", "POST", "/os-keypairs", tenant.token, other)).status == 403
    assert (await at(cloud, "2.10", "POST", "/os-keypairs", cloud.admin, other)).status == 201
    theirs = await at(cloud, "2.10", "GET", "/os-keypairs?user_id=someone", cloud.admin)
    assert [k["keypair"]["name"] for k in theirs.body["keypairs"]] == ["theirs"]
    assert (await at(cloud, "2.2", "DELETE", "/os-keypairs/k", tenant.token)).status == 204

    flavor = {"flavor": {"name": "f", "ram": 64, "vcpus": 1, "disk": 0, "description": "d"}}
    assert (await at(cloud, "2.54", "POST", "/flavors", cloud.admin, flavor)).status == 400
    created = await at(cloud, "2.61", "POST", "/flavors", cloud.admin, flavor)
    assert created.body["flavor"]["description"] == "d"
    assert created.body["flavor"]["extra_specs"] == {} and created.body["flavor"]["swap"] == ""
    flavor_id = created.body["flavor"]["id"]
    change = {"flavor": {"description": "new"}}
    updated = await at(cloud, "2.75", "PUT", f"/flavors/{flavor_id}", cloud.admin, change)
    assert updated.body["flavor"]["description"] == "new" and updated.body["flavor"]["swap"] == 0
    brief = await at(cloud, "2.55", "GET", "/flavors", tenant.token)
    assert all(set(f) == {"id", "name", "links", "description"} for f in brief.body["flavors"])

    rules = {"max_server_per_host": 2}
    group = {"server_group": {"name": "g", "policy": "anti-affinity", "rules": rules}}
    made = await at(cloud, "2.64", "POST", "/os-server-groups", tenant.token, group)
    view = made.body["server_group"]
    assert view["policy"] == "anti-affinity" and view["rules"] == {"max_server_per_host": 2}
    assert "policies" not in view and view["project_id"] == tenant.project_id
    old = await at(cloud, "2.1", "GET", f"/os-server-groups/{view['id']}", tenant.token)
    assert old.body["server_group"]["policies"] == ["anti-affinity"]
    assert "user_id" not in old.body["server_group"]


async def test_admin_apis_per_version(cloud: Cloud) -> None:
    await ready_cloud(cloud)
    hypervisors = await at(cloud, "2.53", "GET", "/os-hypervisors?with_servers=true", cloud.admin)
    hypervisor = hypervisors.body["hypervisors"][0]
    assert len(str(hypervisor["id"])) == 36 and hypervisor["servers"] == []
    shown = await at(cloud, "2.53", "GET", f"/os-hypervisors/{hypervisor['id']}", cloud.admin)
    assert shown.body["hypervisor"]["cpu_info"] == {}
    assert shown.body["hypervisor"]["service"]["id"] != hypervisor["id"]
    assert (await at(cloud, "2.53", "GET", "/os-hypervisors/hv0/search", cloud.admin)).status == 404
    recent = await at(cloud, "2.88", "GET", f"/os-hypervisors/{hypervisor['id']}", cloud.admin)
    assert "vcpus" not in recent.body["hypervisor"] and "uptime" in recent.body["hypervisor"]

    services = (await at(cloud, "2.53", "GET", "/os-services", cloud.admin)).body["services"]
    compute = next(s for s in services if s["binary"] == "nova-compute")
    assert compute["forced_down"] is False and len(compute["id"]) == 36
    change = {"status": "disabled", "disabled_reason": "test"}
    path = f"/os-services/{compute['id']}"
    changed = await at(cloud, "2.53", "PUT", path, cloud.admin, change)
    assert changed.body["service"]["status"] == "disabled"
    assert changed.body["service"]["disabled_reason"] == "test"
    missing = "/os-services/00000000-0000-0000-0000-000000000000"
    assert (await at(cloud, "2.53", "PUT", missing, cloud.admin, change)).status == 404
    enable = {"status": "enabled"}
    assert (await at(cloud, "2.53", "PUT", path, cloud.admin, enable)).status == 200
    strict = await at(cloud, "2.75", "GET", "/os-services?bogus=1", cloud.admin)
    assert strict.status == 400

    quota = f"/os-quota-sets/{cloud.admin_project_id}"
    old = (await at(cloud, "2.1", "GET", quota, cloud.admin)).body["quota_set"]
    assert "floating_ips" in old and "injected_files" in old
    new = (await at(cloud, "2.57", "GET", quota, cloud.admin)).body["quota_set"]
    assert "floating_ips" not in new and "injected_files" not in new
    network_quota = {"quota_set": {"floating_ips": 3}}
    assert (await at(cloud, "2.36", "PUT", quota, cloud.admin, network_quota)).status == 400
    limits = (await at(cloud, "2.57", "GET", "/limits", cloud.admin)).body["limits"]["absolute"]
    assert "maxPersonality" not in limits and "maxImageMeta" not in limits
    assert "maxSecurityGroups" not in limits and "maxTotalInstances" in limits

    for path in ("/os-networks", "/images", "/os-volumes", "/os-security-groups"):
        assert (await at(cloud, "2.36", "GET", path, cloud.admin)).status == 404, path
    assert (await at(cloud, "2.35", "GET", "/images", cloud.admin)).status == 200
    assert (await at(cloud, "2.43", "GET", "/os-hosts", cloud.admin)).status == 404


async def test_volumes_attach_to_shelved_servers_from_2_20(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    server_id = await boot_at(cloud, "2.20", tenant.token, image)
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    action = f"/servers/{server_id}/action"
    assert (await at(cloud, "2.20", "POST", action, tenant.token, {"shelve": None})).status == 202
    await wait_server(cloud, server_id, tenant.token, "SHELVED_OFFLOADED")
    volume_id = await available_volume(cloud, tenant.token)
    path = f"/servers/{server_id}/os-volume_attachments"
    body = {"volumeAttachment": {"volumeId": volume_id}}
    assert (await at(cloud, "2.19", "POST", path, tenant.token, body)).status == 409
    attached = await at(cloud, "2.20", "POST", path, tenant.token, body)
    assert attached.status == 200, attached.body
    assert await volume_status(cloud, volume_id, tenant.token) == "in-use"
    detached = await at(cloud, "2.20", "DELETE", f"{path}/{volume_id}", tenant.token)
    assert detached.status == 202
