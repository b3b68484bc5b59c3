"""Nova v2.1 through the in-process gateway: version documents, microversions, flavors,
keypairs, hypervisors and zones, quotas and limits, server groups. (Servers are in
test_compute_servers.py, which shares the helpers here.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tests.integration.cloud import Cloud, Reply
from unistack.client.api import Client
from unistack.client.resources import NODES

V21 = "/compute/v2.1"
OCTETS = {"content-type": "application/octet-stream"}
PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBRXO8fL+2WJnmkBjF5pUC0zjT0rRMyCEvGTq1dTxeMs test@host"
)


async def add_hypervisor(
    client: Client, name: str, cpu: str = "4", memory: str = "8Gi", zone: str | None = None
) -> None:
    labels = {"topology.kubernetes.io/zone": zone} if zone else {}
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}
    created = await client.create(NODES, node)
    capacity = {"cpu": cpu, "memory": memory, "ephemeral-storage": "100Gi", "pods": "110"}
    conditions = [{"type": "Ready", "status": "True"}]
    created["status"] = {"capacity": capacity, "allocatable": capacity, "conditions": conditions}
    await client.update_status(NODES, created)


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def active_image(cloud: Cloud, **attributes: Any) -> str:
    body = {"name": "cirros", "disk_format": "raw", "container_format": "bare"}
    body |= {"visibility": "public", **attributes}
    reply = await cloud.call("POST", "/image/v2/images", body, cloud.admin)
    assert reply.status == 201, reply.body
    image_id = str(reply.body["id"])
    path = f"/image/v2/images/{image_id}/file"
    assert (await cloud.call("PUT", path, b"\0" * 1024, cloud.admin, OCTETS)).status == 204
    return image_id


async def call(cloud: Cloud, method: str, path: str, token: str, body: Any = None) -> Reply:
    path, _, query = path.partition("?")
    params = dict(part.split("=", 1) for part in query.split("&")) if query else None
    return await cloud.call(method, f"{V21}{path}", body, token, params=params)


# --- versions --------------------------------------------------------------------------------


async def test_version_documents_and_microversion_negotiation(cloud: Cloud) -> None:
    root = await cloud.call("GET", "/compute/")
    assert root.status == 200
    assert [v["id"] for v in root.body["versions"]] == ["v2.0", "v2.1"]
    current = root.body["versions"][1]
    assert current["status"] == "CURRENT" and current["min_version"] == "2.1"
    doc = await cloud.call("GET", "/compute/v2.1", token=cloud.admin)
    assert doc.body["version"]["links"] == current["links"]
    assert doc.headers["x-openstack-nova-api-version"] == "2.1"
    assert doc.headers["x-openstack-request-id"].startswith("req-")
    too_new = {"X-OpenStack-Nova-API-Version": "2.999"}
    reply = await cloud.call("GET", f"{V21}/flavors", token=cloud.admin, headers=too_new)
    assert reply.status == 406 and "notAceptable" in reply.body
    latest = {"OpenStack-API-Version": "compute latest"}
    reply = await cloud.call("GET", f"{V21}/flavors", token=cloud.admin, headers=latest)
    assert reply.headers["openstack-api-version"].startswith("compute 2.")
    assert (await cloud.call("GET", f"{V21}/flavors")).status == 401


# --- flavors ---------------------------------------------------------------------------------


async def test_devstack_flavors_exist_and_filter(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    reply = await call(cloud, "GET", "/flavors/detail", tenant.token)
    by_name = {f["name"]: f for f in reply.body["flavors"]}
    assert by_name["m1.tiny"] | {"links": []} == {
        "id": "1",
        "name": "m1.tiny",
        "ram": 512,
        "vcpus": 1,
        "disk": 1,
        "swap": "",
        "OS-FLV-EXT-DATA:ephemeral": 0,
        "OS-FLV-DISABLED:disabled": False,
        "os-flavor-access:is_public": True,
        "rxtx_factor": 1.0,
        "links": [],
    }
    assert by_name["m1.nano"]["id"] == "42" and by_name["m1.micro"]["ram"] == 192
    big = await call(cloud, "GET", "/flavors?minRam=8192", tenant.token)
    assert {f["name"] for f in big.body["flavors"]} == {"m1.large", "m1.xlarge"}
    assert set(big.body["flavors"][0]) == {"id", "name", "links"}
    paged = await call(cloud, "GET", "/flavors?limit=2", tenant.token)
    assert len(paged.body["flavors"]) == 2 and paged.body["flavors_links"][0]["rel"] == "next"
    missing = await call(cloud, "GET", "/flavors/nope", tenant.token)
    assert missing.status == 404
    assert missing.body == {
        "itemNotFound": {"code": 404, "message": "Flavor nope could not be found."}
    }


async def test_admin_manages_flavors_extra_specs_and_private_access(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    body = {"flavor": {"name": "private", "ram": 64, "vcpus": 1, "disk": 0}}
    body["flavor"]["os-flavor-access:is_public"] = False
    assert (await call(cloud, "POST", "/flavors", tenant.token, body)).status == 403
    created = await call(cloud, "POST", "/flavors", cloud.admin, body)
    assert created.status == 200, created.body
    flavor_id = created.body["flavor"]["id"]
    again = await call(cloud, "POST", "/flavors", cloud.admin, body)
    assert again.status == 409
    listed = await call(cloud, "GET", "/flavors", tenant.token)
    assert flavor_id not in {f["id"] for f in listed.body["flavors"]}
    action = {"addTenantAccess": {"tenant": tenant.project_id}}
    access = await call(cloud, "POST", f"/flavors/{flavor_id}/action", cloud.admin, action)
    assert access.status == 200
    assert {"flavor_id": flavor_id, "tenant_id": tenant.project_id} in access.body["flavor_access"]
    dup = await call(cloud, "POST", f"/flavors/{flavor_id}/action", cloud.admin, action)
    assert dup.status == 409
    listed = await call(cloud, "GET", "/flavors", tenant.token)
    assert flavor_id in {f["id"] for f in listed.body["flavors"]}
    specs = {"extra_specs": {"hw:cpu_policy": "shared", "quota:vif": "1"}}
    reply = await call(cloud, "POST", f"/flavors/{flavor_id}/os-extra_specs", cloud.admin, specs)
    assert reply.body == specs
    key = f"/flavors/{flavor_id}/os-extra_specs/quota:vif"
    assert (await call(cloud, "GET", key, tenant.token)).body == {"quota:vif": "1"}
    mismatch = await call(cloud, "PUT", key, cloud.admin, {"other": "x"})
    assert mismatch.status == 400
    assert (await call(cloud, "DELETE", key, cloud.admin)).status == 200
    assert (await call(cloud, "GET", key, cloud.admin)).status == 404
    assert (await call(cloud, "DELETE", f"/flavors/{flavor_id}", cloud.admin)).status == 202
    assert (await call(cloud, "GET", f"/flavors/{flavor_id}", cloud.admin)).status == 404


async def test_flavor_input_is_checked(cloud: Cloud) -> None:
    for flavor in (
        {"name": "x", "ram": 0, "vcpus": 1, "disk": 1},
        {"name": "x", "ram": 64, "vcpus": "many", "disk": 1},
        {"name": " x", "ram": 64, "vcpus": 1, "disk": 1},
        {"name": "x", "ram": 64, "vcpus": 1, "disk": 1, "id": "bad/id"},
    ):
        reply = await call(cloud, "POST", "/flavors", cloud.admin, {"flavor": flavor})
        assert reply.status == 400, flavor
        assert reply.body["badRequest"]["code"] == 400


# --- keypairs --------------------------------------------------------------------------------


async def test_keypairs_generated_imported_and_per_user(cloud: Cloud) -> None:
    alice, bob = await cloud.tenant(), await cloud.tenant()
    made = await call(cloud, "POST", "/os-keypairs", alice.token, {"keypair": {"name": "k1"}})
    assert made.status == 200, made.body
    assert made.body["keypair"]["private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert made.body["keypair"]["public_key"].startswith("ssh-rsa ")
    assert len(made.body["keypair"]["fingerprint"].split(":")) == 16
    body = {"keypair": {"name": "k2", "public_key": PUBLIC_KEY}}
    imported = await call(cloud, "POST", "/os-keypairs", alice.token, body)
    assert imported.status == 200 and "private_key" not in imported.body["keypair"]
    dup = await call(cloud, "POST", "/os-keypairs", alice.token, body)
    assert dup.status == 409
    bad = {"keypair": {"name": "k3", "public_key": "ssh-rsa not-a-key"}}
    assert (await call(cloud, "POST", "/os-keypairs", alice.token, bad)).status == 400
    listed = await call(cloud, "GET", "/os-keypairs", alice.token)
    assert [k["keypair"]["name"] for k in listed.body["keypairs"]] == ["k1", "k2"]
    shown = await call(cloud, "GET", "/os-keypairs/k2", alice.token)
    assert shown.body["keypair"]["user_id"] == alice.user_id
    assert isinstance(shown.body["keypair"]["id"], int)
    assert (await call(cloud, "GET", "/os-keypairs", bob.token)).body["keypairs"] == []
    assert (await call(cloud, "GET", "/os-keypairs/k2", bob.token)).status == 404
    assert (await call(cloud, "DELETE", "/os-keypairs/k2", alice.token)).status == 202
    assert (await call(cloud, "GET", "/os-keypairs/k2", alice.token)).status == 404


# --- hypervisors, zones -----------------------------------------------------------------------


async def test_hypervisors_are_nodes_on_the_fake_driver(cloud: Cloud) -> None:
    await add_hypervisor(cloud.client, "hv1", cpu="8", memory="16Gi", zone="az1")
    await eventually(lambda: _hypervisor_ready(cloud))
    listed = await call(cloud, "GET", "/os-hypervisors/detail", cloud.admin)
    (hypervisor,) = listed.body["hypervisors"]
    assert hypervisor["hypervisor_type"] == "fake"
    assert hypervisor["vcpus"] == 8 and hypervisor["memory_mb"] == 16384
    assert hypervisor["state"] == "up" and hypervisor["status"] == "enabled"
    shown = await call(cloud, "GET", f"/os-hypervisors/{hypervisor['id']}", cloud.admin)
    assert shown.body["hypervisor"]["hypervisor_hostname"] == "hv1"
    stats = await call(cloud, "GET", "/os-hypervisors/statistics", cloud.admin)
    assert stats.body["hypervisor_statistics"]["count"] == 1
    tenant = await cloud.tenant()
    assert (await call(cloud, "GET", "/os-hypervisors", tenant.token)).status == 403
    zones = await call(cloud, "GET", "/os-availability-zone", tenant.token)
    assert zones.body["availabilityZoneInfo"] == [
        {"zoneName": "az1", "zoneState": {"available": True}, "hosts": None}
    ]
    detail = await call(cloud, "GET", "/os-availability-zone/detail", cloud.admin)
    assert "hv1" in detail.body["availabilityZoneInfo"][0]["hosts"]


async def _hypervisor_ready(cloud: Cloud) -> bool:
    reply = await call(cloud, "GET", "/os-hypervisors/detail", cloud.admin)
    return any(h["vcpus"] == 8 for h in reply.body["hypervisors"])


# --- quotas, limits ----------------------------------------------------------------------------


async def test_quota_sets_defaults_update_and_limits(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    path = f"/os-quota-sets/{tenant.project_id}"
    shown = await call(cloud, "GET", path, tenant.token)
    assert shown.body["quota_set"]["instances"] == 10
    assert shown.body["quota_set"]["id"] == tenant.project_id
    update = {"quota_set": {"instances": 3, "cores": 5}}
    assert (await call(cloud, "PUT", path, tenant.token, update)).status == 403
    changed = await call(cloud, "PUT", path, cloud.admin, update)
    assert changed.status == 200 and changed.body["quota_set"]["instances"] == 3
    assert "id" not in changed.body["quota_set"]
    bad = await call(cloud, "PUT", path, cloud.admin, {"quota_set": {"wings": 2}})
    assert bad.status == 400
    detail = await call(cloud, "GET", f"{path}/detail", tenant.token)
    assert detail.body["quota_set"]["cores"] == {"limit": 5, "in_use": 0, "reserved": 0}
    limits = await call(cloud, "GET", "/limits", tenant.token)
    assert limits.body["limits"]["absolute"]["maxTotalInstances"] == 3
    assert limits.body["limits"]["rate"] == []
    defaults = await call(cloud, "GET", f"{path}/defaults", tenant.token)
    assert defaults.body["quota_set"]["instances"] == 10
    assert (await call(cloud, "DELETE", path, cloud.admin)).status == 202
    assert (await call(cloud, "GET", path, tenant.token)).body["quota_set"]["instances"] == 10
    other = await cloud.tenant()
    assert (await call(cloud, "GET", path, other.token)).status == 403


# --- server groups -----------------------------------------------------------------------------


async def test_server_groups_per_project(cloud: Cloud) -> None:
    tenant, other = await cloud.tenant(), await cloud.tenant()
    body = {"server_group": {"name": "g", "policies": ["anti-affinity"]}}
    made = await call(cloud, "POST", "/os-server-groups", tenant.token, body)
    assert made.status == 200, made.body
    group = made.body["server_group"]
    assert group["policies"] == ["anti-affinity"] and group["members"] == []
    assert set(group) == {"id", "name", "policies", "members", "metadata"}
    soft = {"server_group": {"name": "g", "policies": ["soft-affinity"]}}
    assert (await call(cloud, "POST", "/os-server-groups", tenant.token, soft)).status == 400
    listed = await call(cloud, "GET", "/os-server-groups", tenant.token)
    assert [g["id"] for g in listed.body["server_groups"]] == [group["id"]]
    assert (await call(cloud, "GET", "/os-server-groups", other.token)).body["server_groups"] == []
    path = f"/os-server-groups/{group['id']}"
    assert (await call(cloud, "GET", path, other.token)).status == 404
    assert (await call(cloud, "DELETE", path, other.token)).status == 404
    assert (await call(cloud, "DELETE", path, tenant.token)).status == 204
    assert (await call(cloud, "GET", path, tenant.token)).status == 404


# --- services, usage -------------------------------------------------------------------------


async def test_services_list_and_disabling_compute_cordons_the_node(cloud: Cloud) -> None:
    await add_hypervisor(cloud.client, "hv1")
    await eventually(lambda: _hypervisor_count(cloud, 1))
    listed = await call(cloud, "GET", "/os-services", cloud.admin)
    binaries = {s["binary"] for s in listed.body["services"]}
    assert binaries == {"nova-compute", "nova-scheduler", "nova-conductor"}
    only = await call(cloud, "GET", "/os-services?binary=nova-compute&host=hv1", cloud.admin)
    assert [s["zone"] for s in only.body["services"]] == ["nova"]
    body = {"host": "hv1", "binary": "nova-compute", "disabled_reason": "maintenance"}
    off = await call(cloud, "PUT", "/os-services/disable-log-reason", cloud.admin, body)
    assert off.body["service"]["status"] == "disabled"
    node = await cloud.client.get(NODES, "hv1")
    assert node["spec"]["unschedulable"] is True
    only = await call(cloud, "GET", "/os-services?binary=nova-compute&host=hv1", cloud.admin)
    assert only.body["services"][0]["disabled_reason"] == "maintenance"
    zones = await call(cloud, "GET", "/os-availability-zone", cloud.admin)
    assert zones.body["availabilityZoneInfo"][0]["zoneState"]["available"] is False
    on = await call(cloud, "PUT", "/os-services/enable", cloud.admin, body)
    assert on.body["service"] == {"host": "hv1", "binary": "nova-compute", "status": "enabled"}
    node = await cloud.client.get(NODES, "hv1")
    assert node["spec"]["unschedulable"] is False
    assert "compute.unistack.io/disabled-reason" not in node["metadata"].get("annotations", {})
    only = await call(cloud, "GET", "/os-services?binary=nova-compute&host=hv1", cloud.admin)
    assert only.body["services"][0]["status"] == "enabled"
    tenant = await cloud.tenant()
    assert (await call(cloud, "GET", "/os-services", tenant.token)).status == 403


async def _hypervisor_count(cloud: Cloud, count: int) -> bool:
    reply = await call(cloud, "GET", "/os-hypervisors", cloud.admin)
    return len(reply.body["hypervisors"]) == count


async def test_usage_needs_a_sane_period_and_admin_for_all(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    bad = "/os-simple-tenant-usage?start=2030-01-02T00:00:00&end=2030-01-01T00:00:00"
    assert (await call(cloud, "GET", bad, cloud.admin)).status == 400
    assert (await call(cloud, "GET", "/os-simple-tenant-usage", tenant.token)).status == 403
    listed = await call(cloud, "GET", "/os-simple-tenant-usage", cloud.admin)
    assert listed.status == 200 and "tenant_usages" in listed.body


async def test_request_ids_are_answered_in_both_headers(cloud: Cloud) -> None:
    reply = await call(cloud, "GET", "/flavors", cloud.admin)
    assert reply.headers["x-compute-request-id"] == reply.headers["x-openstack-request-id"]


# --- aggregates, hosts -----------------------------------------------------------------------


async def test_aggregates_group_hosts_and_give_them_a_zone(cloud: Cloud) -> None:
    await add_hypervisor(cloud.client, "hv1")
    await eventually(lambda: _hypervisor_count(cloud, 1))
    tenant = await cloud.tenant()
    body = {"aggregate": {"name": "fast", "availability_zone": "az-fast"}}
    assert (await call(cloud, "POST", "/os-aggregates", tenant.token, body)).status == 403
    made = await call(cloud, "POST", "/os-aggregates", cloud.admin, body)
    assert made.status == 200, made.body
    aggregate = made.body["aggregate"]
    assert isinstance(aggregate["id"], int) and "hosts" not in aggregate
    assert (await call(cloud, "POST", "/os-aggregates", cloud.admin, body)).status == 409
    action = f"/os-aggregates/{aggregate['id']}/action"
    missing = await call(cloud, "POST", action, cloud.admin, {"add_host": {"host": "nope"}})
    assert missing.status == 404
    added = await call(cloud, "POST", action, cloud.admin, {"add_host": {"host": "hv1"}})
    assert added.body["aggregate"]["hosts"] == ["hv1"]
    assert added.body["aggregate"]["metadata"] == {"availability_zone": "az-fast"}
    twice = await call(cloud, "POST", action, cloud.admin, {"add_host": {"host": "hv1"}})
    assert twice.status == 409
    zones = await call(cloud, "GET", "/os-availability-zone", tenant.token)
    assert [z["zoneName"] for z in zones.body["availabilityZoneInfo"]] == ["az-fast"]
    meta = {"set_metadata": {"metadata": {"ssd": "true"}}}
    tagged = await call(cloud, "POST", action, cloud.admin, meta)
    assert tagged.body["aggregate"]["metadata"]["ssd"] == "true"
    busy = await call(cloud, "DELETE", f"/os-aggregates/{aggregate['id']}", cloud.admin)
    assert busy.status == 400
    await call(cloud, "POST", action, cloud.admin, {"remove_host": {"host": "hv1"}})
    gone = await call(cloud, "DELETE", f"/os-aggregates/{aggregate['id']}", cloud.admin)
    assert gone.status == 200
    assert (
        await call(cloud, "GET", f"/os-aggregates/{aggregate['id']}", cloud.admin)
    ).status == 404
    hosts = await call(cloud, "PUT", "/os-hosts/nope", cloud.admin, {"status": "enable"})
    assert hosts.status == 404


async def test_extensions_list_the_families_served(cloud: Cloud) -> None:
    listed = await call(cloud, "GET", "/extensions", cloud.admin)
    assert "os-keypairs" in {e["alias"] for e in listed.body["extensions"]}
    shown = await call(cloud, "GET", "/extensions/os-consoles", cloud.admin)
    assert shown.body["extension"]["alias"] == "os-consoles"
    assert (await call(cloud, "GET", "/extensions/os-nope", cloud.admin)).status == 404
