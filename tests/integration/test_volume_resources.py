"""Snapshots, clones, extend, metadata, volume types, quotas and the service listings."""

from __future__ import annotations

import asyncio

from tests.integration.cloud import Cloud
from tests.integration.volume_support import (
    V3,
    available_volume,
    create_volume,
    wait_gone,
    wait_status,
)
from unistack.iaas.volume import kinds


async def _snapshot(cloud: Cloud, token: str, volume_id: str, **fields: object) -> dict:
    body = {"snapshot": {"volume_id": volume_id, "name": "snap", **fields}}
    reply = await cloud.call("POST", f"{V3}/snapshots", body, token=token)
    assert reply.status == 202, reply.body
    path = f"{V3}/snapshots/{reply.body['snapshot']['id']}"
    return await wait_status(cloud, path, token, "available", member="snapshot")


async def test_snapshot_then_volume_from_it_and_a_clone(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    volume = await available_volume(cloud, tenant.token, size=2)
    snapshot = await _snapshot(cloud, tenant.token, volume["id"])
    assert snapshot["size"] == 2
    assert snapshot["os-extended-snapshot-attributes:project_id"] == tenant.project_id
    small = await create_volume(cloud, tenant.token, size=1, snapshot_id=snapshot["id"])
    assert small.status == 400
    restored = await available_volume(cloud, tenant.token, size=2, snapshot_id=snapshot["id"])
    assert restored["snapshot_id"] == snapshot["id"]
    clone = await available_volume(cloud, tenant.token, size=3, source_volid=volume["id"])
    assert clone["source_volid"] == volume["id"] and clone["size"] == 3
    path = f"{V3}/volumes/{volume['id']}"
    assert (await cloud.call("DELETE", path, token=tenant.token)).status == 400
    cascade = {"cascade": "true"}
    reply = await cloud.call("DELETE", path, token=tenant.token, params=cascade)
    assert reply.status == 202
    await wait_gone(cloud, path, tenant.token)
    await wait_gone(cloud, f"{V3}/snapshots/{snapshot['id']}", tenant.token)


async def test_snapshot_of_in_use_volume_needs_force(cloud: Cloud) -> None:
    volume = await available_volume(cloud, cloud.admin)
    action = f"{V3}/volumes/{volume['id']}/action"
    attach = {"os-attach": {"instance_uuid": volume["id"], "mountpoint": "/dev/vdb"}}
    assert (await cloud.call("POST", action, attach, token=cloud.admin)).status == 202
    body = {"snapshot": {"volume_id": volume["id"]}}
    reply = await cloud.call("POST", f"{V3}/snapshots", body, token=cloud.admin)
    assert reply.status == 400
    await _snapshot(cloud, cloud.admin, volume["id"], force=True)


async def test_extend_goes_through_extending(cloud: Cloud) -> None:
    volume = await available_volume(cloud, cloud.admin)
    action = f"{V3}/volumes/{volume['id']}/action"
    for bad in (0, 1, "abc", None):
        reply = await cloud.call(
            "POST", action, {"os-extend": {"new_size": bad}}, token=cloud.admin
        )
        assert reply.status == 400, bad
    reply = await cloud.call("POST", action, {"os-extend": {"new_size": 3}}, token=cloud.admin)
    assert reply.status == 202
    extended = await wait_status(cloud, f"{V3}/volumes/{volume['id']}", cloud.admin, "available")
    assert extended["size"] == 3


async def test_volume_metadata_api(cloud: Cloud) -> None:
    volume = await available_volume(cloud, cloud.admin, metadata={"a": "1"})
    path = f"{V3}/volumes/{volume['id']}/metadata"
    reply = await cloud.call("POST", path, {"metadata": {"b": "2"}}, token=cloud.admin)
    assert reply.body == {"metadata": {"a": "1", "b": "2"}}
    reply = await cloud.call("PUT", f"{path}/b", {"meta": {"b": "3"}}, token=cloud.admin)
    assert reply.status == 200 and reply.body == {"meta": {"b": "3"}}
    reply = await cloud.call("PUT", f"{path}/b", {"meta": {"c": "3"}}, token=cloud.admin)
    assert reply.status == 400
    assert (await cloud.call("DELETE", f"{path}/a", token=cloud.admin)).status == 200
    assert (await cloud.call("GET", f"{path}/a", token=cloud.admin)).status == 404
    reply = await cloud.call("PUT", path, {"metadata": {"z": "9"}}, token=cloud.admin)
    assert reply.body == {"metadata": {"z": "9"}}
    flag = {"os-update_readonly_flag": {"readonly": True}}
    await cloud.call("POST", f"{V3}/volumes/{volume['id']}/action", flag, token=cloud.admin)
    shown = await cloud.call("GET", f"{V3}/volumes/{volume['id']}", token=cloud.admin)
    assert shown.body["volume"]["metadata"]["readonly"] == "True"


async def test_private_volume_type_and_access(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    body = {"volume_type": {"name": "gold", "is_public": False, "extra_specs": {"tier": "1"}}}
    reply = await cloud.call("POST", f"{V3}/types", body, token=cloud.admin)
    assert reply.status == 200, reply.body
    type_id = reply.body["volume_type"]["id"]
    assert (await cloud.call("POST", f"{V3}/types", body, token=cloud.admin)).status == 409
    assert (await cloud.call("GET", f"{V3}/types/{type_id}", token=tenant.token)).status == 404
    assert (await create_volume(cloud, tenant.token, volume_type="gold")).status == 404
    add = {"addProjectAccess": {"project": tenant.project_id}}
    reply = await cloud.call("POST", f"{V3}/types/{type_id}/action", add, token=cloud.admin)
    assert reply.status == 202
    access = await cloud.call(
        "GET", f"{V3}/types/{type_id}/os-volume-type-access", token=cloud.admin
    )
    assert access.body["volume_type_access"] == [
        {"volume_type_id": type_id, "project_id": tenant.project_id}
    ]
    volume = await available_volume(cloud, tenant.token, volume_type="gold")
    assert volume["volume_type"] == "gold"
    assert (await cloud.call("DELETE", f"{V3}/types/{type_id}", token=cloud.admin)).status == 400
    specs = await cloud.call("GET", f"{V3}/types/{type_id}/extra_specs/tier", token=cloud.admin)
    assert specs.body == {"tier": "1"}
    listed = await cloud.call("GET", f"{V3}/types", token=tenant.token)
    assert {"__DEFAULT__", "gold"} <= {t["name"] for t in listed.body["volume_types"]}


async def test_quota_is_enforced_with_413(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    path = f"{V3}/os-quota-sets/{tenant.project_id}"
    update = {"quota_set": {"volumes": 1, "gigabytes": 5}}
    assert (await cloud.call("PUT", path, update, token=tenant.token)).status == 403
    reply = await cloud.call("PUT", path, update, token=cloud.admin)
    assert reply.status == 200 and reply.body["quota_set"]["volumes"] == 1
    assert (await create_volume(cloud, tenant.token, size=6)).status == 413
    await available_volume(cloud, tenant.token, size=2)
    over = await create_volume(cloud, tenant.token)
    assert over.status == 413 and "overLimit" in over.body
    usage = await cloud.call("GET", path, token=tenant.token, params={"usage": "true"})
    assert usage.body["quota_set"]["volumes"] == {"limit": 1, "in_use": 1, "reserved": 0}
    limits = await cloud.call("GET", f"{V3}/limits", token=tenant.token)
    assert limits.body["limits"]["absolute"]["totalGigabytesUsed"] == 2
    defaults = await cloud.call("GET", f"{path}/defaults", token=tenant.token)
    assert defaults.body["quota_set"]["volumes"] == 10


async def test_service_listings(cloud: Cloud) -> None:
    zones = await cloud.call("GET", f"{V3}/os-availability-zone", token=cloud.admin)
    assert zones.body["availabilityZoneInfo"][0]["zoneName"] == "nova"
    services = await cloud.call("GET", f"{V3}/os-services", token=cloud.admin)
    binaries = {(s["binary"], s["state"]) for s in services.body["services"]}
    assert binaries == {
        ("cinder-scheduler", "up"),
        ("cinder-backup", "up"),
        ("cinder-volume", "up"),
    }
    pools = await cloud.call(
        "GET", f"{V3}/scheduler-stats/get_pools", token=cloud.admin, params={"detail": "true"}
    )
    assert pools.body["pools"][0]["name"] == "volnode@fake-backend#fake"
    tenant = await cloud.tenant()
    assert (await cloud.call("GET", f"{V3}/os-services", token=tenant.token)).status == 403
    summary = await cloud.call(
        "GET",
        f"{V3}/volumes/summary",
        token=tenant.token,
        headers={"OpenStack-API-Version": "volume 3.12"},
    )
    assert summary.body == {"volume-summary": {"total_size": 0, "total_count": 0}}


async def test_volume_from_missing_image_is_a_bad_request(cloud: Cloud) -> None:
    reply = await create_volume(cloud, cloud.admin, imageRef="7d8b3e2a-0000-4000-8000-000000000000")
    assert reply.status == 400


async def test_type_no_backend_satisfies_ends_in_error_with_a_message(cloud: Cloud) -> None:
    specs = {"storage_protocol": "nvme-of-the-future", "vendor_name": "nobody"}
    body = {"volume_type": {"name": "bogus", "extra_specs": specs}}
    type_id = (await cloud.call("POST", f"{V3}/types", body, token=cloud.admin)).body[
        "volume_type"
    ]["id"]
    reply = await create_volume(cloud, cloud.admin, volume_type=type_id)
    path = f"{V3}/volumes/{reply.body['volume']['id']}"
    await wait_status(cloud, path, cloud.admin, "error")
    new = {"OpenStack-API-Version": "volume 3.3"}
    messages = await cloud.call("GET", f"{V3}/messages", token=cloud.admin, headers=new)
    (message,) = [
        m for m in messages.body["messages"] if m["resource_uuid"] == reply.body["volume"]["id"]
    ]
    assert message["event_id"] == "VOLUME_VOLUME_001_002"
    one = f"{V3}/messages/{message['id']}"
    assert (await cloud.call("DELETE", one, token=cloud.admin, headers=new)).status == 204
    assert (await cloud.call("GET", one, token=cloud.admin, headers=new)).status == 404
    matching = {
        "volume_type": {"name": "fake", "extra_specs": {"volume_backend_name": "fake-backend"}}
    }
    type_id = (await cloud.call("POST", f"{V3}/types", matching, token=cloud.admin)).body[
        "volume_type"
    ]["id"]
    await available_volume(cloud, cloud.admin, volume_type=type_id)


async def test_quota_class_default_changes_every_projects_defaults(cloud: Cloud) -> None:
    path = f"{V3}/os-quota-class-sets/default"
    shown = await cloud.call("GET", path, token=cloud.admin)
    assert shown.body["quota_class_set"]["id"] == "default"
    reply = await cloud.call("PUT", path, {"quota_class_set": {"volumes": 12}}, token=cloud.admin)
    assert reply.status == 200 and reply.body["quota_class_set"]["volumes"] == 12
    tenant = await cloud.tenant()
    defaults = await cloud.call(
        "GET", f"{V3}/os-quota-sets/{tenant.project_id}/defaults", token=tenant.token
    )
    assert defaults.body["quota_set"]["volumes"] == 12
    bad = {"quota_class_set": {"volumes_no-such-type": 1}}
    assert (await cloud.call("PUT", path, bad, token=cloud.admin)).status == 400


async def test_disable_and_freeze_services(cloud: Cloud) -> None:
    base = f"{V3}/os-services"
    service = {"host": "volnode@fake-backend", "binary": "cinder-volume"}
    no_reason = {**service, "disabled_reason": None}
    reply = await cloud.call("PUT", f"{base}/disable-log-reason", no_reason, token=cloud.admin)
    assert reply.status == 400
    reason = {**service, "disabled_reason": "maintenance"}
    reply = await cloud.call("PUT", f"{base}/disable-log-reason", reason, token=cloud.admin)
    assert reply.status == 200 and reply.body["status"] == "disabled"
    listed = await cloud.call("GET", base, token=cloud.admin, params={"binary": "cinder-volume"})
    assert listed.body["services"][0]["disabled_reason"] == "maintenance"
    reply = await cloud.call("PUT", f"{base}/enable", service, token=cloud.admin)
    assert reply.body["status"] == "enabled"
    wrong = {"host": "invalid_host", "binary": "cinder-volume"}
    assert (await cloud.call("PUT", f"{base}/enable", wrong, token=cloud.admin)).status == 404
    assert (await cloud.call("PUT", f"{base}/freeze", wrong, token=cloud.admin)).status == 400
    frozen = {"host": "volnode@fake-backend"}
    assert (await cloud.call("PUT", f"{base}/freeze", frozen, token=cloud.admin)).status == 200


async def test_retype_to_another_type(cloud: Cloud) -> None:
    body = {"volume_type": {"name": "silver"}}
    await cloud.call("POST", f"{V3}/types", body, token=cloud.admin)
    volume = await available_volume(cloud, cloud.admin)
    action = f"{V3}/volumes/{volume['id']}/action"
    retype = {"os-retype": {"new_type": "silver", "migration_policy": "never"}}
    assert (await cloud.call("POST", action, retype, token=cloud.admin)).status == 202
    shown = await cloud.call("GET", f"{V3}/volumes/{volume['id']}", token=cloud.admin)
    assert shown.body["volume"]["volume_type"] == "silver"
    assert shown.body["volume"]["multiattach"] is False
    # the type decides multiattach, both ways (Tempest's VolumeRetypeMultiattachTest)
    multi = {"volume_type": {"name": "shared", "extra_specs": {"multiattach": "<is> True"}}}
    await cloud.call("POST", f"{V3}/types", multi, token=cloud.admin)
    for name, expected in (("shared", True), ("silver", False)):
        retype = {"os-retype": {"new_type": name, "migration_policy": "never"}}
        assert (await cloud.call("POST", action, retype, token=cloud.admin)).status == 202
        shown = await cloud.call("GET", f"{V3}/volumes/{volume['id']}", token=cloud.admin)
        assert shown.body["volume"]["multiattach"] is expected


async def test_qos_specs_keys_and_type_association(cloud: Cloud) -> None:
    body = {"qos_specs": {"name": "fast", "consumer": "front-end", "read_iops_sec": "100"}}
    reply = await cloud.call("POST", f"{V3}/qos-specs", body, token=cloud.admin)
    assert reply.status == 200, reply.body
    qos = reply.body["qos_specs"]
    assert qos["specs"] == {"read_iops_sec": "100"} and qos["consumer"] == "front-end"
    path = f"{V3}/qos-specs/{qos['id']}"
    keys = {"qos_specs": {"iops_bytes": "5"}}
    assert (await cloud.call("PUT", path, keys, token=cloud.admin)).body == keys
    unset = {"keys": ["read_iops_sec"]}
    assert (await cloud.call("PUT", f"{path}/delete_keys", unset, token=cloud.admin)).status == 202
    shown = await cloud.call("GET", path, token=cloud.admin)
    assert shown.body["qos_specs"]["specs"] == {"iops_bytes": "5"}
    vtype = await cloud.call(
        "POST", f"{V3}/types", {"volume_type": {"name": "q"}}, token=cloud.admin
    )
    type_id = vtype.body["volume_type"]["id"]
    query = {"vol_type_id": type_id}
    reply = await cloud.call("GET", f"{path}/associate", token=cloud.admin, params=query)
    assert reply.status == 202
    shown = await cloud.call("GET", f"{V3}/types/{type_id}", token=cloud.admin)
    assert shown.body["volume_type"]["qos_specs_id"] == qos["id"]
    assert (await cloud.call("DELETE", path, token=cloud.admin)).status == 400
    reply = await cloud.call("GET", f"{path}/associations", token=cloud.admin)
    assert [a["id"] for a in reply.body["qos_associations"]] == [type_id]
    reply = await cloud.call("DELETE", path, token=cloud.admin, params={"force": "true"})
    assert reply.status == 202
    shown = await cloud.call("GET", f"{V3}/types/{type_id}", token=cloud.admin)
    assert shown.body["volume_type"]["qos_specs_id"] is None
    tenant = await cloud.tenant()
    assert (await cloud.call("GET", f"{V3}/qos-specs", token=tenant.token)).status == 403


async def test_volume_from_an_image_of_the_image_service(cloud: Cloud) -> None:
    body = {"name": "cirros", "disk_format": "raw", "container_format": "bare", "os_distro": "x"}
    image = (await cloud.call("POST", "/image/v2/images", body, cloud.admin)).body
    path = f"/image/v2/images/{image['id']}/file"
    octets = {"content-type": "application/octet-stream"}
    assert (await cloud.call("PUT", path, b"\0" * 4096, cloud.admin, octets)).status == 204
    volume = await available_volume(cloud, cloud.admin, imageRef=image["id"])
    assert volume["bootable"] == "true"
    metadata = volume["volume_image_metadata"]
    assert metadata["image_id"] == image["id"] and metadata["os_distro"] == "x"
    copy = await available_volume(cloud, cloud.admin, source_volid=volume["id"])
    assert copy["bootable"] == "true" and copy["volume_image_metadata"]["image_name"] == "cirros"


async def test_every_listed_host_shows_its_usage(cloud: Cloud) -> None:
    """A real pool's backend (`node@unistack-pool`, listed once it holds a volume) shows the
    volumes it holds, as the fake backend shows them all (Tempest's test_show_host)."""
    here = await available_volume(cloud, cloud.admin, size=1)
    there = await available_volume(cloud, cloud.admin, size=2)
    moved = {"status": {"host": "node1@unistack-pool#unistack"}}  # as its controller records
    stored = await cloud.client.list(kinds.VOLUMES.ref)
    namespace = next(
        v["metadata"]["namespace"] for v in stored["items"] if v["metadata"]["name"] == there["id"]
    )
    await cloud.client.patch(
        kinds.VOLUMES.ref, there["id"], moved, namespace=namespace, subresource="status"
    )

    async def volume_hosts() -> set[str]:
        hosts = (await cloud.call("GET", f"{V3}/os-hosts", token=cloud.admin)).body["hosts"]
        return {h["host_name"] for h in hosts if h["service"] == "cinder-volume"}

    async with asyncio.timeout(10):  # once the API's cache has seen the change
        while await volume_hosts() != {"volnode@fake-backend", "node1@unistack-pool"}:
            await asyncio.sleep(0.05)
    for host in await volume_hosts():
        shown = await cloud.call("GET", f"{V3}/os-hosts/{host}", token=cloud.admin)
        assert shown.status == 200, shown.body
    pool = await cloud.call("GET", f"{V3}/os-hosts/node1@unistack-pool", token=cloud.admin)
    total = pool.body["host"][0]["resource"]
    counted = (total["project"], total["volume_count"], total["total_volume_gb"])
    assert counted == ("(total)", "1", "2")
    assert here["id"] != there["id"]
    missing = await cloud.call("GET", f"{V3}/os-hosts/node2@unistack-pool", token=cloud.admin)
    assert missing.status == 404
    assert missing.body["itemNotFound"]["message"] == "Host node2@unistack-pool could not be found."
