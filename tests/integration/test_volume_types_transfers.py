"""Volume type encryption specs (and the `encrypted` flag), and volume transfers."""

from __future__ import annotations

from tests.integration.cloud import Cloud
from tests.integration.volume_support import (
    V3,
    available_volume,
    wait_gone,
    wait_status,
)


async def test_encryption_of_a_type(cloud: Cloud) -> None:
    vtype = await cloud.call("POST", f"{V3}/types", {"volume_type": {"name": "luks"}}, cloud.admin)
    base = f"{V3}/types/{vtype.body['volume_type']['id']}/encryption"
    assert (await cloud.call("GET", base, token=cloud.admin)).body == {}
    spec = {"provider": "luks", "cipher": "aes-xts-plain64", "key_size": 256}
    reply = await cloud.call("POST", base, {"encryption": spec}, cloud.admin)
    assert reply.status == 200, reply.body
    encryption_id = reply.body["encryption"]["encryption_id"]
    assert reply.body["encryption"]["control_location"] == "front-end"
    item = await cloud.call("GET", f"{base}/cipher", token=cloud.admin)
    assert item.body == {"cipher": "aes-xts-plain64"}
    update = {"encryption": {"key_size": 128, "control_location": "back-end"}}
    assert (await cloud.call("PUT", f"{base}/{encryption_id}", update, cloud.admin)).status == 200
    assert (await cloud.call("GET", base, token=cloud.admin)).body["key_size"] == 128
    volume = await available_volume(cloud, cloud.admin, volume_type="luks")
    assert volume["encrypted"] is True
    refused = await cloud.call("DELETE", f"{base}/{encryption_id}", token=cloud.admin)
    assert refused.status == 400


async def test_transfer_moves_a_volume_and_its_snapshots(cloud: Cloud) -> None:
    giver, taker = await cloud.tenant(), await cloud.tenant()
    volume = await available_volume(cloud, giver.token)
    snapshot = await cloud.call(
        "POST", f"{V3}/snapshots", {"snapshot": {"volume_id": volume["id"]}}, giver.token
    )
    snapshot_id = snapshot.body["snapshot"]["id"]
    await wait_status(cloud, f"{V3}/snapshots/{snapshot_id}", giver.token, "available", "snapshot")
    offer = {"transfer": {"volume_id": volume["id"], "name": "gift"}}
    reply = await cloud.call("POST", f"{V3}/os-volume-transfer", offer, giver.token)
    assert reply.status == 202, reply.body
    transfer = reply.body["transfer"]
    path = f"{V3}/volumes/{volume['id']}"
    shown = await cloud.call("GET", path, token=giver.token)
    assert shown.body["volume"]["status"] == "awaiting-transfer"
    accept = f"{V3}/os-volume-transfer/{transfer['id']}/accept"
    wrong = await cloud.call("POST", accept, {"accept": {"auth_key": "nope"}}, taker.token)
    assert wrong.status == 400
    right = {"accept": {"auth_key": transfer["auth_key"]}}
    assert (await cloud.call("POST", accept, right, taker.token)).status == 202
    moved = await wait_status(cloud, path, taker.token, "available")
    assert moved["os-vol-tenant-attr:tenant_id"] == taker.project_id
    assert moved["user_id"] == taker.user_id
    assert (await cloud.call("GET", path, token=giver.token)).status == 404
    mine = await cloud.call("GET", f"{V3}/snapshots/{snapshot_id}", token=taker.token)
    assert mine.status == 200 and mine.body["snapshot"]["status"] == "available"
    cascade = {"cascade": "true"}
    assert (await cloud.call("DELETE", path, token=taker.token, params=cascade)).status == 202
    await wait_gone(cloud, path, taker.token)
