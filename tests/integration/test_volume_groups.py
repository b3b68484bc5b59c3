"""Generic volume groups and group snapshots (3.13/3.14+)."""

from __future__ import annotations

from tests.integration.cloud import Cloud
from tests.integration.volume_support import (
    V3,
    available_volume,
    wait_gone,
    wait_status,
)

NEW = {"OpenStack-API-Version": "volume 3.20"}


async def _call(
    cloud: Cloud, method: str, path: str, body: object = None, params: dict | None = None
) -> object:
    reply = await cloud.call(
        method, f"{V3}{path}", body, token=cloud.admin, headers=NEW, params=params
    )
    assert reply.status in (200, 202, 204), (method, path, reply.body)
    return reply.body


async def test_group_of_volumes_its_snapshot_and_a_copy(cloud: Cloud) -> None:
    gtype = await _call(cloud, "POST", "/group_types", {"group_type": {"name": "g"}})
    vtype = await _call(cloud, "POST", "/types", {"volume_type": {"name": "in-group"}})
    type_id = vtype["volume_type"]["id"]  # type: ignore[index]
    body = {"group": {"group_type": gtype["group_type"]["id"], "volume_types": [type_id]}}  # type: ignore[index]
    group = (await _call(cloud, "POST", "/groups", body))["group"]  # type: ignore[index]
    volume = await available_volume(cloud, cloud.admin, volume_type=type_id, group_id=group["id"])
    shown = await cloud.call("GET", f"{V3}/volumes/{volume['id']}", token=cloud.admin, headers=NEW)
    assert shown.body["volume"]["group_id"] == group["id"]
    refused = await cloud.call("DELETE", f"{V3}/volumes/{volume['id']}", token=cloud.admin)
    assert refused.status == 400
    snapshot = await _call(
        cloud, "POST", "/group_snapshots", {"group_snapshot": {"group_id": group["id"]}}
    )
    snapshot_id = snapshot["group_snapshot"]["id"]  # type: ignore[index]
    path = f"{V3}/group_snapshots/{snapshot_id}"
    await wait_status(cloud, path, cloud.admin, "available", member="group_snapshot")
    source = {"create-from-src": {"group_snapshot_id": snapshot_id, "name": "copy"}}
    copy = (await _call(cloud, "POST", "/groups/action", source))["group"]  # type: ignore[index]
    detail = await _call(cloud, "GET", f"/groups/{copy['id']}", params={"list_volume": "true"})
    assert len(detail["group"]["volumes"]) == 1  # type: ignore[index]
    await _call(cloud, "DELETE", f"/group_snapshots/{snapshot_id}")
    await wait_gone(cloud, path, cloud.admin)
    for group_id in (group["id"], copy["id"]):
        await _call(
            cloud, "POST", f"/groups/{group_id}/action", {"delete": {"delete-volumes": True}}
        )
    await wait_gone(cloud, f"{V3}/volumes/{volume['id']}", cloud.admin)
    assert (await _call(cloud, "GET", "/groups"))["groups"] == []  # type: ignore[index]


async def test_groups_need_microversion_3_13(cloud: Cloud) -> None:
    assert (await cloud.call("GET", f"{V3}/groups", token=cloud.admin)).status == 404
