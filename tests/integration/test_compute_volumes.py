"""Volume attachments of servers, through the Block Storage attachments API."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.integration.cloud import Cloud
from tests.integration.test_compute_api import active_image, call
from tests.integration.test_compute_servers import boot, ready_cloud, wait_gone, wait_server

V3 = "/volume/v3"


async def volume_status(cloud: Cloud, volume_id: str, token: str) -> str:
    reply = await cloud.call("GET", f"{V3}/volumes/{volume_id}", token=token)
    assert reply.status == 200, reply.body
    return str(reply.body["volume"]["status"])


async def available_volume(cloud: Cloud, token: str) -> str:
    reply = await cloud.call("POST", f"{V3}/volumes", {"volume": {"size": 1}}, token)
    assert reply.status == 202, reply.body
    volume_id = str(reply.body["volume"]["id"])
    async with asyncio.timeout(10):
        while await volume_status(cloud, volume_id, token) != "available":
            await asyncio.sleep(0.02)
    return volume_id


async def test_attach_and_detach_a_volume(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant, other = await cloud.tenant(), await cloud.tenant()
    server_id = await boot(cloud, tenant.token, image)
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    volume_id = await available_volume(cloud, tenant.token)
    path = f"/servers/{server_id}/os-volume_attachments"
    body = {"volumeAttachment": {"volumeId": volume_id}}
    attached = await call(cloud, "POST", path, tenant.token, body)
    assert attached.status == 200, attached.body
    assert attached.body["volumeAttachment"] == {
        "id": volume_id,
        "serverId": server_id,
        "volumeId": volume_id,
        "device": "/dev/vdb",
    }
    assert await volume_status(cloud, volume_id, tenant.token) == "in-use"
    again = await call(cloud, "POST", path, tenant.token, body)
    assert again.status == 400
    listed = await call(cloud, "GET", path, tenant.token)
    assert [a["volumeId"] for a in listed.body["volumeAttachments"]] == [volume_id]
    shown = await call(cloud, "GET", f"/servers/{server_id}", tenant.token)
    assert shown.body["server"]["os-extended-volumes:volumes_attached"] == [{"id": volume_id}]
    theirs = await available_volume(cloud, other.token)
    refused = await call(
        cloud, "POST", path, tenant.token, {"volumeAttachment": {"volumeId": theirs}}
    )
    assert refused.status == 404
    detached = await call(cloud, "DELETE", f"{path}/{volume_id}", tenant.token)
    assert detached.status == 202
    assert await volume_status(cloud, volume_id, tenant.token) == "available"
    assert (await call(cloud, "GET", f"{path}/{volume_id}", tenant.token)).status == 404
    await call(cloud, "POST", path, tenant.token, body)
    assert await volume_status(cloud, volume_id, tenant.token) == "in-use"
    assert (await call(cloud, "DELETE", f"/servers/{server_id}", tenant.token)).status == 204
    await wait_gone(cloud, server_id, tenant.token)
    assert await volume_status(cloud, volume_id, tenant.token) == "available"


async def test_boot_from_volume_and_bad_mappings(cloud: Cloud) -> None:
    await ready_cloud(cloud)
    tenant = await cloud.tenant()
    volume_id = await available_volume(cloud, tenant.token)
    mapping = {
        "boot_index": "0",
        "uuid": volume_id,
        "source_type": "volume",
        "destination_type": "volume",
        "delete_on_termination": True,
    }
    body = {"server": {"name": "bfv", "imageRef": "", "flavorRef": "42"}}
    body["server"]["block_device_mapping_v2"] = [mapping]
    refused = await call(cloud, "POST", "/servers", tenant.token, body)
    assert refused.status == 400
    assert "is not bootable" in refused.body["badRequest"]["message"]
    bootable = {"os-set_bootable": {"bootable": True}}
    reply = await cloud.call("POST", f"{V3}/volumes/{volume_id}/action", bootable, tenant.token)
    assert reply.status == 200, reply.body
    invalid = {**mapping, "destination_type": "invalid"}
    wrong = {"server": {**body["server"], "block_device_mapping_v2": [invalid]}}
    assert (await call(cloud, "POST", "/servers", tenant.token, wrong)).status == 400
    tags = {"block_device_mapping_v2": [{**mapping, "tag": "boot"}], "networks": "none"}
    tagged = {"server": {**body["server"], **tags}}
    at = {"OpenStack-API-Version": "compute 2.42"}
    made = await cloud.call("POST", "/compute/v2.1/servers", tagged, tenant.token, headers=at)
    assert made.status == 202, made.body
    server_id = made.body["server"]["id"]
    server = await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    assert server["image"] == ""
    assert server["os-extended-volumes:volumes_attached"] == [{"id": volume_id}]
    shown = await cloud.call(
        "GET",
        f"/compute/v2.1/servers/{server_id}/os-volume_attachments",
        token=tenant.token,
        headers={"OpenStack-API-Version": "compute 2.70"},
    )
    assert [(a["device"], a["tag"]) for a in shown.body["volumeAttachments"]] == [
        ("/dev/vda", "boot")
    ]
    assert await volume_status(cloud, volume_id, tenant.token) == "in-use"

    # rescued: before 2.87 never (no root disk of its own), from 2.87 with an image asking
    # for a stable device rescue (its hw_rescue_* properties) of a device the driver has
    action = f"/compute/v2.1/servers/{server_id}/action"
    floppy = await active_image(cloud, hw_rescue_device="floppy")
    stable = await active_image(cloud, hw_rescue_device="disk", hw_rescue_bus="scsi")
    plain = await active_image(cloud)
    v287 = {"OpenStack-API-Version": "compute 2.87"}
    for body, headers, message in (
        ({"rescue": {"rescue_image_ref": stable}}, at, "volume-backed"),
        ({"rescue": None}, v287, "without a rescue image"),
        ({"rescue": {"rescue_image_ref": plain}}, v287, f"image '{plain}' is not supported"),
        ({"rescue": {"rescue_image_ref": floppy}}, v287, "device 'floppy' is not supported"),
    ):
        refused = await cloud.call("POST", action, body, tenant.token, headers=headers)
        assert refused.status == 400 and message in refused.body["badRequest"]["message"]
    rescue = {"rescue": {"rescue_image_ref": stable}}
    rescued = await cloud.call("POST", action, rescue, tenant.token, headers=v287)
    assert rescued.status == 200, rescued.body
    await wait_server(cloud, server_id, tenant.token, "RESCUE")
    unrescued = await cloud.call("POST", action, {"unrescue": None}, tenant.token)
    assert unrescued.status == 202
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")

    await call(cloud, "DELETE", f"/servers/{server_id}", tenant.token)
    await wait_gone(cloud, server_id, tenant.token)
    async with asyncio.timeout(10):
        while (
            await cloud.call("GET", f"{V3}/volumes/{volume_id}", token=tenant.token)
        ).status != 404:
            await asyncio.sleep(0.05)


async def test_volume_proxy_reads_in_novas_shape(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    body = {"volume": {"size": 1, "display_name": "v1", "metadata": {"k": "v"}}}
    made = await call(cloud, "POST", "/os-volumes", tenant.token, body)
    assert made.status == 200, made.body
    volume = made.body["volume"]
    assert volume["displayName"] == "v1" and volume["size"] == 1
    listed = await call(cloud, "GET", "/os-volumes/detail", tenant.token)
    assert volume["id"] in {v["id"] for v in listed.body["volumes"]}
    shown = await call(cloud, "GET", f"/os-volumes/{volume['id']}", tenant.token)
    assert shown.body["volume"]["metadata"] == {"k": "v"}
    missing = await call(
        cloud, "GET", "/os-volumes/11111111-2222-3333-4444-555555555555", tenant.token
    )
    assert missing.status == 404
    async with asyncio.timeout(10):
        while await volume_status(cloud, volume["id"], tenant.token) != "available":
            await asyncio.sleep(0.02)
    assert (await call(cloud, "DELETE", f"/os-volumes/{volume['id']}", tenant.token)).status == 202


async def test_assisted_snapshots_need_an_attached_volume(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    server_id = await boot(cloud, tenant.token, image)
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    volume_id = await available_volume(cloud, tenant.token)
    snapshot = {"volume_id": volume_id, "create_info": {"snapshot_id": "s1", "type": "qcow2"}}
    path = "/os-assisted-volume-snapshots"
    refused = await call(cloud, "POST", path, cloud.admin, {"snapshot": snapshot})
    assert refused.status == 404
    attach = {"volumeAttachment": {"volumeId": volume_id}}
    await call(cloud, "POST", f"/servers/{server_id}/os-volume_attachments", tenant.token, attach)
    made = await call(cloud, "POST", path, cloud.admin, {"snapshot": snapshot})
    assert made.body == {"snapshot": {"id": "s1", "volumeId": volume_id}}
    assert (await call(cloud, "POST", path, tenant.token, {"snapshot": snapshot})).status == 403
    info = '{"volume_id": "' + volume_id + '"}'
    gone = await cloud.call(
        "DELETE", f"/compute/v2.1{path}/s1", token=cloud.admin, params={"delete_info": info}
    )
    assert gone.status == 204


async def test_snapshot_proxy(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    volume_id = await available_volume(cloud, tenant.token)
    body = {"snapshot": {"volume_id": volume_id, "display_name": "s1"}}
    made = await call(cloud, "POST", "/os-snapshots", tenant.token, body)
    assert made.status == 200, made.body
    snapshot = made.body["snapshot"]
    assert snapshot["volumeId"] == volume_id and snapshot["displayName"] == "s1"
    listed = await call(cloud, "GET", "/os-snapshots", tenant.token)
    assert snapshot["id"] in {s["id"] for s in listed.body["snapshots"]}
    shown = await call(cloud, "GET", f"/os-snapshots/{snapshot['id']}", tenant.token)
    assert shown.body["snapshot"]["size"] == 1


async def extend_events(cloud: Cloud, server_id: str) -> list[dict]:
    """The events of the server's `extend_volume` actions, as an admin sees them."""
    listed = await call(cloud, "GET", f"/servers/{server_id}/os-instance-actions", cloud.admin)
    found = []
    for action in listed.body["instanceActions"]:
        if action["action"] == "extend_volume":
            path = f"/servers/{server_id}/os-instance-actions/{action['request_id']}"
            shown = await call(cloud, "GET", path, cloud.admin)
            found += shown.body["instanceAction"]["events"]
    return found


async def test_extending_an_attached_volume_tells_the_server(cloud: Cloud) -> None:
    """Cinder (3.42) extends an in-use volume and sends Nova `volume-extended`: the server
    gets an `extend_volume` action whose `compute_extend_volume` event is a Success, as
    Tempest's extend test waits for. The event is 2.51's; for a volume the server does not
    have, the action says Error."""
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    server_id = await boot(cloud, tenant.token, image)
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    volume_id = await available_volume(cloud, tenant.token)
    path = f"/servers/{server_id}/os-volume_attachments"
    attached = await call(
        cloud, "POST", path, tenant.token, {"volumeAttachment": {"volumeId": volume_id}}
    )
    assert attached.status == 200, attached.body
    extend = {"os-extend": {"new_size": 2}}
    action = f"{V3}/volumes/{volume_id}/action"
    old = await cloud.call("POST", action, extend, tenant.token)
    assert old.status == 400  # in-use needs 3.42
    version = {"openstack-api-version": "volume 3.42"}
    grown = await cloud.call("POST", action, extend, tenant.token, headers=version)
    assert grown.status == 202, grown.body
    async with asyncio.timeout(10):
        while not await extend_events(cloud, server_id):
            await asyncio.sleep(0.02)
    [event] = await extend_events(cloud, server_id)
    assert (event["event"], event["result"]) == ("compute_extend_volume", "Success")
    assert await volume_status(cloud, volume_id, tenant.token) == "in-use"
    events = "/os-server-external-events"
    stray = {"events": [{"name": "volume-extended", "server_uuid": server_id, "tag": "nope"}]}
    too_early = await call(cloud, "POST", events, cloud.admin, stray)
    assert too_early.status == 400  # before 2.51 there is no such event
    sent = await cloud.call(
        "POST", f"/compute/v2.1{events}", stray, cloud.admin,
        headers={"openstack-api-version": "compute 2.51"},
    )  # fmt: skip
    assert sent.status == 200 and sent.body["events"][0]["code"] == 200
    results = sorted(e["result"] for e in await extend_events(cloud, server_id))
    assert results == ["Error", "Success"]


async def test_a_multiattach_volume_attaches_to_two_servers_from_2_60(cloud: Cloud) -> None:
    """A volume of a type with `multiattach="<is> True"` is multiattach; Nova attaches it
    only from 2.60 (400 before, in its words), then to a second server too; it stays in-use
    until the last server lets it go."""
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    kind = {"volume_type": {"name": "multi", "extra_specs": {"multiattach": "<is> True"}}}
    assert (await cloud.call("POST", f"{V3}/types", kind, cloud.admin)).status == 200
    made = await cloud.call(
        "POST", f"{V3}/volumes", {"volume": {"size": 1, "volume_type": "multi"}}, tenant.token
    )
    assert made.status == 202 and made.body["volume"]["multiattach"] is True
    volume_id = made.body["volume"]["id"]
    async with asyncio.timeout(10):
        while await volume_status(cloud, volume_id, tenant.token) != "available":
            await asyncio.sleep(0.02)
    servers = [await boot(cloud, tenant.token, image) for _ in range(2)]
    for server_id in servers:
        await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    body = {"volumeAttachment": {"volumeId": volume_id}}

    async def attach(server_id: str, version: str) -> Any:
        return await cloud.call(
            "POST", f"/compute/v2.1/servers/{server_id}/os-volume_attachments", body,
            tenant.token, headers={"openstack-api-version": f"compute {version}"},
        )  # fmt: skip

    early = await attach(servers[0], "2.59")
    assert early.status == 400
    assert (
        "only supported starting with compute API version 2.60"
        in early.body["badRequest"]["message"]
    )
    for server_id in servers:
        assert (await attach(server_id, "2.60")).status == 200
    shown = await cloud.call("GET", f"{V3}/volumes/{volume_id}", token=tenant.token)
    assert {a["server_id"] for a in shown.body["volume"]["attachments"]} == set(servers)
    path = f"/servers/{servers[0]}/os-volume_attachments/{volume_id}"
    assert (await call(cloud, "DELETE", path, tenant.token)).status == 202
    assert await volume_status(cloud, volume_id, tenant.token) == "in-use"
    path = f"/servers/{servers[1]}/os-volume_attachments/{volume_id}"
    assert (await call(cloud, "DELETE", path, tenant.token)).status == 202
    assert await volume_status(cloud, volume_id, tenant.token) == "available"
