"""Attaching volumes: the attachments API Nova uses (3.27/3.44) and the classic actions."""

from __future__ import annotations

from tests.integration.cloud import Cloud
from tests.integration.volume_support import V3, available_volume, wait_gone

NEW = {"OpenStack-API-Version": "volume 3.44"}
INSTANCE = "6a1c5b55-2f3e-4a0e-9d5c-7f0b7c1f1a11"
CONNECTOR = {"host": "volnode", "initiator": "iqn.fake", "mountpoint": "/dev/vdb"}


async def test_attachments_api_as_nova_calls_it_with_a_service_token(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    volume = await available_volume(cloud, tenant.token)
    internal = cloud.platform.internal
    body = {"attachment": {"volume_uuid": volume["id"], "instance_uuid": INSTANCE}}
    status, created = await internal.call("POST", f"{V3}/attachments", body, headers=NEW)
    assert status == 200, created
    attachment = created["attachment"]
    assert attachment["status"] == "reserved" and attachment["instance"] == INSTANCE
    volume_path = f"{V3}/volumes/{volume['id']}"
    assert (await internal.call("GET", volume_path))[1]["volume"]["status"] == "reserved"
    path = f"{V3}/attachments/{attachment['id']}"
    status, updated = await internal.call(
        "PUT", path, {"attachment": {"connector": CONNECTOR}}, headers=NEW
    )
    assert status == 200 and updated["attachment"]["connection_info"]["data"]["volume_id"]
    status, _ = await internal.call("POST", f"{path}/action", {"os-complete": None}, headers=NEW)
    assert status == 204
    shown = (await cloud.call("GET", volume_path, token=tenant.token)).body["volume"]
    assert shown["status"] == "in-use"
    assert shown["attachments"][0]["server_id"] == INSTANCE
    assert shown["attachments"][0]["attachment_id"] == attachment["id"]
    refused = await cloud.call("DELETE", volume_path, token=tenant.token)
    assert refused.status == 400
    status, _ = await internal.call("DELETE", path, headers=NEW)
    assert status == 200
    shown = (await cloud.call("GET", volume_path, token=tenant.token)).body["volume"]
    assert shown["status"] == "available" and shown["attachments"] == []


async def test_attachment_with_connector_is_attaching_at_once(cloud: Cloud) -> None:
    volume = await available_volume(cloud, cloud.admin)
    body = {
        "attachment": {
            "volume_uuid": volume["id"],
            "instance_uuid": INSTANCE,
            "connector": CONNECTOR,
        }
    }
    reply = await cloud.call("POST", f"{V3}/attachments", body, token=cloud.admin, headers=NEW)
    assert reply.status == 200 and reply.body["attachment"]["status"] == "attaching"
    shown = await cloud.call("GET", f"{V3}/volumes/{volume['id']}", token=cloud.admin)
    assert shown.body["volume"]["status"] == "attaching"
    again = await cloud.call("POST", f"{V3}/attachments", body, token=cloud.admin, headers=NEW)
    assert again.status == 400  # not multiattach


async def test_attachments_need_microversion_3_27(cloud: Cloud) -> None:
    reply = await cloud.call("GET", f"{V3}/attachments", token=cloud.admin)
    assert reply.status == 404


async def test_classic_attach_and_detach(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    volume = await available_volume(cloud, tenant.token)
    action = f"{V3}/volumes/{volume['id']}/action"
    path = f"{V3}/volumes/{volume['id']}"

    async def act(body: dict, status: int = 202) -> None:
        reply = await cloud.call("POST", action, body, token=tenant.token)
        assert reply.status == status, (body, reply.body)

    async def status() -> str:
        return (await cloud.call("GET", path, token=tenant.token)).body["volume"]["status"]

    await act({"os-reserve": None})
    assert await status() == "attaching"
    await act({"os-reserve": None}, 400)
    await act({"os-unreserve": None})
    assert await status() == "available"
    await act({"os-reserve": None})
    reply = await cloud.call(
        "POST", action, {"os-initialize_connection": {"connector": CONNECTOR}}, token=tenant.token
    )
    assert reply.status == 200 and "connection_info" in reply.body
    await act({"os-attach": {"instance_uuid": INSTANCE, "mountpoint": "/dev/vdb"}})
    assert await status() == "in-use"
    await act({"os-begin_detaching": None})
    assert await status() == "detaching"
    await act({"os-roll_detaching": None})
    assert await status() == "in-use"
    await act({"os-begin_detaching": None})
    await act({"os-terminate_connection": {"connector": CONNECTOR}})
    await act({"os-detach": {}})
    assert await status() == "available"


async def test_reset_status_and_force_delete_are_for_admins(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    volume = await available_volume(cloud, tenant.token)
    action = f"{V3}/volumes/{volume['id']}/action"
    reset = {"os-reset_status": {"status": "error"}}
    assert (await cloud.call("POST", action, reset, token=tenant.token)).status == 403
    assert (await cloud.call("POST", action, reset, token=cloud.admin)).status == 202
    shown = await cloud.call("GET", f"{V3}/volumes/{volume['id']}", token=tenant.token)
    assert shown.body["volume"]["status"] == "error"
    reply = await cloud.call("POST", action, {"os-force_delete": {}}, token=cloud.admin)
    assert reply.status == 202
    await wait_gone(cloud, f"{V3}/volumes/{volume['id']}", cloud.admin)
