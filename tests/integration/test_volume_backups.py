"""Volume backups through the Cinder facade on the fake backend (no pool here, so backups are
state only): create, the in-use and status rules, incremental records, list/show/update,
restore into a new or an existing volume, admin actions, records export/import, quotas."""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.integration.cloud import Cloud
from tests.integration.volume_support import (
    LATEST,
    V3,
    available_volume,
    wait_gone,
    wait_status,
)


async def _backup(cloud: Cloud, token: str, volume_id: str, **fields: Any) -> dict[str, Any]:
    body = {"backup": {"volume_id": volume_id, **fields}}
    reply = await cloud.call("POST", f"{V3}/backups", body, token=token, headers=LATEST)
    assert reply.status == 202, reply.body
    assert set(reply.body["backup"]) == {"id", "name", "links", "metadata"}
    path = f"{V3}/backups/{reply.body['backup']['id']}"
    return await wait_status(cloud, path, token, "available", member="backup")


async def test_backup_create_show_list_and_delete(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    volume = await available_volume(cloud, tenant.token, size=2, metadata={"k": "v"})
    backup = await _backup(cloud, tenant.token, volume["id"], name="b1", description="d")
    assert backup["size"] == 2 and backup["volume_id"] == volume["id"]
    assert backup["name"] == "b1" and backup["description"] == "d"
    assert backup["is_incremental"] is False and backup["has_dependent_backups"] is False
    assert backup["fail_reason"] is None and backup["snapshot_id"] is None
    await wait_status(cloud, f"{V3}/volumes/{volume['id']}", tenant.token, "available")
    listed = await cloud.call("GET", f"{V3}/backups", token=tenant.token)
    assert [(b["id"], b["name"]) for b in listed.body["backups"]] == [(backup["id"], "b1")]
    detail = await cloud.call("GET", f"{V3}/backups/detail", token=tenant.token)
    assert detail.body["backups"][0]["status"] == "available"
    other = await cloud.tenant()
    hidden = await cloud.call("GET", f"{V3}/backups/{backup['id']}", token=other.token)
    assert hidden.status == 404 and "itemNotFound" in hidden.body
    path = f"{V3}/backups/{backup['id']}"
    assert (await cloud.call("DELETE", path, token=tenant.token)).status == 202
    await wait_gone(cloud, path, tenant.token)


async def test_in_use_needs_force_and_other_statuses_are_refused(cloud: Cloud) -> None:
    volume = await available_volume(cloud, cloud.admin)
    action = f"{V3}/volumes/{volume['id']}/action"
    attach = {"os-attach": {"instance_uuid": volume["id"], "mountpoint": "/dev/vdb"}}
    assert (await cloud.call("POST", action, attach, token=cloud.admin)).status == 202
    body = {"backup": {"volume_id": volume["id"]}}
    refused = await cloud.call("POST", f"{V3}/backups", body, token=cloud.admin)
    assert refused.status == 400 and "force" in refused.body["badRequest"]["message"]
    await _backup(cloud, cloud.admin, volume["id"], force=True)
    await wait_status(cloud, f"{V3}/volumes/{volume['id']}", cloud.admin, "in-use")
    reset = {"os-reset_status": {"status": "error"}}
    assert (await cloud.call("POST", action, reset, token=cloud.admin)).status == 202
    refused = await cloud.call("POST", f"{V3}/backups", body, token=cloud.admin)
    assert refused.status == 400 and "error" in refused.body["badRequest"]["message"]
    missing = {"backup": {"volume_id": "00000000-0000-0000-0000-000000000000"}}
    assert (await cloud.call("POST", f"{V3}/backups", missing, token=cloud.admin)).status == 404


async def test_incremental_backups_and_dependents(cloud: Cloud) -> None:
    volume = await available_volume(cloud, cloud.admin)
    first = await cloud.call(
        "POST",
        f"{V3}/backups",
        {"backup": {"volume_id": volume["id"], "incremental": True}},
        token=cloud.admin,
    )
    assert first.status == 400  # nothing to be incremental to yet
    full = await _backup(cloud, cloud.admin, volume["id"])
    incremental = await _backup(cloud, cloud.admin, volume["id"], incremental=True)
    assert incremental["is_incremental"] is True
    shown = await cloud.call("GET", f"{V3}/backups/{full['id']}", token=cloud.admin)
    assert shown.body["backup"]["has_dependent_backups"] is True
    blocked = await cloud.call("DELETE", f"{V3}/backups/{full['id']}", token=cloud.admin)
    assert blocked.status == 400
    path = f"{V3}/backups/{incremental['id']}"
    assert (await cloud.call("DELETE", path, token=cloud.admin)).status == 202
    await wait_gone(cloud, path, cloud.admin)
    shown = await cloud.call("GET", f"{V3}/backups/{full['id']}", token=cloud.admin)
    assert shown.body["backup"]["has_dependent_backups"] is False


async def test_backup_of_a_snapshot_settles_the_snapshot(cloud: Cloud) -> None:
    volume = await available_volume(cloud, cloud.admin)
    body = {"snapshot": {"volume_id": volume["id"]}}
    reply = await cloud.call("POST", f"{V3}/snapshots", body, token=cloud.admin)
    snapshot_path = f"{V3}/snapshots/{reply.body['snapshot']['id']}"
    snapshot = await wait_status(cloud, snapshot_path, cloud.admin, "available", "snapshot")
    backup = await _backup(cloud, cloud.admin, volume["id"], snapshot_id=snapshot["id"])
    assert backup["snapshot_id"] == snapshot["id"]
    await wait_status(cloud, snapshot_path, cloud.admin, "available", "snapshot")


async def test_restore_into_new_and_existing_volumes(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    volume = await available_volume(cloud, tenant.token, size=2, metadata={"m": "1"})
    backup = await _backup(cloud, tenant.token, volume["id"])
    restore = f"{V3}/backups/{backup['id']}/restore"
    reply = await cloud.call("POST", restore, {"restore": {"name": "back"}}, token=tenant.token)
    assert reply.status == 202, reply.body
    assert reply.body["restore"]["backup_id"] == backup["id"]
    assert reply.body["restore"]["volume_name"] == "back"
    new_path = f"{V3}/volumes/{reply.body['restore']['volume_id']}"
    restored = await wait_status(cloud, new_path, tenant.token, "available")
    assert restored["size"] == 2 and restored["metadata"] == {"m": "1"}
    await wait_status(cloud, f"{V3}/backups/{backup['id']}", tenant.token, "available", "backup")
    small = await available_volume(cloud, tenant.token, size=1)
    reply = await cloud.call(
        "POST", restore, {"restore": {"volume_id": small["id"]}}, token=tenant.token
    )
    assert reply.status == 400 and "too small" in reply.body["badRequest"]["message"]
    target = await available_volume(cloud, tenant.token, size=3)
    reply = await cloud.call(
        "POST", restore, {"restore": {"volume_id": target["id"]}}, token=tenant.token
    )
    assert reply.status == 202 and reply.body["restore"]["volume_id"] == target["id"]
    over = await wait_status(cloud, f"{V3}/volumes/{target['id']}", tenant.token, "available")
    assert over["metadata"] == {"m": "1"} and over["size"] == 3
    await wait_status(cloud, f"{V3}/backups/{backup['id']}", tenant.token, "available", "backup")


async def test_update_needs_3_9_and_admin_actions(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    volume = await available_volume(cloud, tenant.token)
    backup = await _backup(cloud, tenant.token, volume["id"], name="old")
    path = f"{V3}/backups/{backup['id']}"
    body = {"backup": {"name": "new", "description": "nd"}}
    old = {"OpenStack-API-Version": "volume 3.8"}
    assert (await cloud.call("PUT", path, body, token=tenant.token, headers=old)).status == 404
    reply = await cloud.call("PUT", path, body, token=tenant.token, headers=LATEST)
    assert reply.status == 200 and reply.body["backup"]["name"] == "new"
    reset = {"os-reset_status": {"status": "error"}}
    action = f"{path}/action"
    assert (await cloud.call("POST", action, reset, token=tenant.token)).status == 403
    assert (await cloud.call("POST", action, reset, token=cloud.admin)).status == 202
    await wait_status(cloud, path, tenant.token, "error", member="backup")
    bad = {"os-reset_status": {"status": "creating"}}
    assert (await cloud.call("POST", action, bad, token=cloud.admin)).status == 400
    restore = await cloud.call("POST", f"{path}/restore", {"restore": {}}, token=tenant.token)
    assert restore.status == 400
    force = {"os-force_delete": {}}
    assert (await cloud.call("POST", action, force, token=cloud.admin)).status == 202
    await wait_gone(cloud, path, tenant.token)


async def test_export_and_import_a_backup_record(cloud: Cloud) -> None:
    volume = await available_volume(cloud, cloud.admin)
    backup = await _backup(cloud, cloud.admin, volume["id"], name="exported")
    reply = await cloud.call("GET", f"{V3}/backups/{backup['id']}/export_record", token=cloud.admin)
    assert reply.status == 200
    record = reply.body["backup-record"]
    assert record["backup_service"].startswith("cinder.backup.drivers")
    again = await cloud.call(
        "POST", f"{V3}/backups/import_record", {"backup-record": record}, token=cloud.admin
    )
    assert again.status == 400  # that backup id exists
    decoded = json.loads(base64.b64decode(record["backup_url"]))
    decoded["id"] = "5e2f7c1a-6b7d-4f57-9d1e-2b1a3c4d5e6f"
    url = base64.b64encode(json.dumps(decoded).encode()).decode()
    body = {"backup-record": {**record, "backup_url": url}}
    reply = await cloud.call("POST", f"{V3}/backups/import_record", body, token=cloud.admin)
    assert reply.status == 201 and reply.body["backup"]["id"] == decoded["id"]
    imported = await wait_status(
        cloud, f"{V3}/backups/{decoded['id']}", cloud.admin, "available", "backup"
    )
    assert imported["name"] == "exported"


async def test_backup_quotas_and_limits(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    quota = {"quota_set": {"backups": 1}}
    path = f"{V3}/os-quota-sets/{tenant.project_id}"
    assert (await cloud.call("PUT", path, quota, token=cloud.admin)).status == 200
    volume = await available_volume(cloud, tenant.token, size=2)
    await _backup(cloud, tenant.token, volume["id"])
    body = {"backup": {"volume_id": volume["id"]}}
    over = await cloud.call("POST", f"{V3}/backups", body, token=tenant.token)
    assert over.status == 413 and "backups" in over.body["overLimit"]["message"]
    usage = await cloud.call("GET", path, token=tenant.token, params={"usage": "true"})
    assert usage.body["quota_set"]["backups"]["in_use"] == 1
    assert usage.body["quota_set"]["backup_gigabytes"]["in_use"] == 2
    limits = await cloud.call("GET", f"{V3}/limits", token=tenant.token)
    assert limits.body["limits"]["absolute"]["totalBackupsUsed"] == 1
