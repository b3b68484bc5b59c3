"""Servers through the in-process gateway and the compute controller: boot on the fake
driver, lists and filters, isolation, actions and their states, metadata, instance actions,
scheduling failures, quotas, server groups, deletion."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from tests.integration.cloud import Cloud
from tests.integration.test_compute_api import (
    active_image,
    add_hypervisor,
    call,
    eventually,
)
from unistack.iaas.compute import controller
from unistack.iaas.compute.driver import FakeDriver
from unistack.iaas.compute.kinds import SERVERS


async def wait_server(cloud: Cloud, server_id: str, token: str, status: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            reply = await call(cloud, "GET", f"/servers/{server_id}", token)
            assert reply.status == 200, reply.body
            server = reply.body["server"]
            if server["status"] == status and server["OS-EXT-STS:task_state"] is None:
                return dict(server)
            assert server["status"] != "ERROR" or status == "ERROR", server.get("fault")
            await asyncio.sleep(0.02)


async def wait_gone(cloud: Cloud, server_id: str, token: str) -> None:
    async with asyncio.timeout(10):
        while (await call(cloud, "GET", f"/servers/{server_id}", token)).status != 404:
            await asyncio.sleep(0.02)


async def boot(cloud: Cloud, token: str, image: str, **fields: Any) -> str:
    body = {"server": {"name": "vm", "imageRef": image, "flavorRef": "42", **fields}}
    hints = body["server"].pop("hints", None)
    if hints:
        body["os:scheduler_hints"] = hints
    reply = await call(cloud, "POST", "/servers", token, body)
    assert reply.status == 202, reply.body
    assert set(reply.body["server"]) <= {"id", "links", "OS-DCF:diskConfig", "security_groups"}
    return str(reply.body["server"]["id"])


async def ready_cloud(cloud: Cloud, hosts: int = 1) -> str:
    for n in range(hosts):
        await add_hypervisor(cloud.client, f"hv{n}")

    async def synced() -> bool:
        reply = await call(cloud, "GET", "/os-hypervisors/detail", cloud.admin)
        return sum(h["vcpus"] == 4 for h in reply.body["hypervisors"]) == hosts

    await eventually(synced)
    return await active_image(cloud)


async def test_server_boots_on_the_fake_driver_and_is_deleted(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    server_id = await boot(cloud, tenant.token, image, metadata={"role": "db"})
    server = await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    assert server["OS-EXT-STS:power_state"] == 1 and server["OS-EXT-STS:vm_state"] == "active"
    assert server["image"]["id"] == image and server["flavor"]["id"] == "42"
    assert server["tenant_id"] == tenant.project_id and server["user_id"] == tenant.user_id
    assert server["metadata"] == {"role": "db"} and server["hostId"]
    assert "OS-EXT-SRV-ATTR:host" not in server
    as_admin = await call(cloud, "GET", f"/servers/{server_id}", cloud.admin)
    assert as_admin.body["server"]["OS-EXT-SRV-ATTR:host"] == "hv0"
    hypervisors = await call(cloud, "GET", "/os-hypervisors/detail", cloud.admin)
    assert hypervisors.body["hypervisors"][0]["memory_mb_used"] == 128
    assert hypervisors.body["hypervisors"][0]["running_vms"] == 1
    console = await call(
        cloud,
        "POST",
        f"/servers/{server_id}/action",
        tenant.token,
        {"os-getConsoleOutput": {"length": 2}},
    )
    assert console.body["output"] == "vm login: \n"
    assert (await call(cloud, "DELETE", f"/servers/{server_id}", tenant.token)).status == 204
    await wait_gone(cloud, server_id, tenant.token)
    hypervisors = await call(cloud, "GET", "/os-hypervisors/detail", cloud.admin)
    assert hypervisors.body["hypervisors"][0]["memory_mb_used"] == 0


async def test_lists_filters_paging_and_isolation(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant, other = await cloud.tenant(), await cloud.tenant()
    first = await boot(cloud, tenant.token, image, name="web-1")
    second = await boot(cloud, tenant.token, image, name="db-1")
    theirs = await boot(cloud, other.token, image, name="web-9")
    listed = await call(cloud, "GET", "/servers", tenant.token)
    assert {s["id"] for s in listed.body["servers"]} == {first, second}
    assert set(listed.body["servers"][0]) == {"id", "name", "links"}
    named = await call(cloud, "GET", "/servers/detail?name=^web", tenant.token)
    assert [s["id"] for s in named.body["servers"]] == [first]
    paged = await call(cloud, "GET", "/servers?limit=1", tenant.token)
    assert len(paged.body["servers"]) == 1 and "servers_links" in paged.body
    assert (await call(cloud, "GET", f"/servers/{theirs}", tenant.token)).status == 404
    gone = await call(cloud, "DELETE", f"/servers/{theirs}", tenant.token)
    assert gone.status == 404
    assert gone.body["itemNotFound"]["message"] == f"Instance {theirs} could not be found."
    everyone = await call(cloud, "GET", "/servers?all_tenants=1", cloud.admin)
    assert {first, second, theirs} <= {s["id"] for s in everyone.body["servers"]}
    ignored = await call(cloud, "GET", "/servers?all_tenants=1", tenant.token)
    assert theirs not in {s["id"] for s in ignored.body["servers"]}
    await wait_server(cloud, first, tenant.token, "ACTIVE")
    active = await call(cloud, "GET", "/servers?status=ACTIVE", tenant.token)
    assert first in {s["id"] for s in active.body["servers"]}


async def test_bad_create_requests_are_400_and_store_nothing(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    missing_image = "11111111-2222-3333-4444-555555555555"
    for server, message in (
        ({"name": "x", "imageRef": missing_image, "flavorRef": "1"}, "could not be found"),
        ({"name": "x", "imageRef": "nope", "flavorRef": "1"}, "Invalid imageRef provided."),
        ({"name": "x", "imageRef": image, "flavorRef": "999"}, "Invalid flavorRef provided."),
        ({"name": "", "imageRef": image, "flavorRef": "1"}, "name"),
        ({"name": "x", "imageRef": image, "flavorRef": "1", "key_name": "nokey"}, "key_name"),
        ({"name": "x", "imageRef": image, "flavorRef": "1", "user_data": "***"}, "base 64"),
        ({"name": "x", "imageRef": image, "flavorRef": "1", "availability_zone": "mars"}, "zone"),
        ({"name": "x", "imageRef": image, "flavorRef": "1", "networks": [{"uuid": "z"}]}, "uuid"),
        ({"name": "x", "imageRef": image, "flavorRef": "1", "min_count": 2, "max_count": 1}, ""),
    ):
        reply = await call(cloud, "POST", "/servers", tenant.token, {"server": server})
        assert reply.status == 400, (server, reply.body)
        assert message in reply.body["badRequest"]["message"]
    assert (await call(cloud, "GET", "/servers", tenant.token)).body["servers"] == []


async def test_actions_change_state_and_are_recorded(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    server_id = await boot(cloud, tenant.token, image)
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    action = f"/servers/{server_id}/action"

    async def act(body: dict[str, Any], token: str = tenant.token) -> int:
        return (await call(cloud, "POST", action, token, body)).status

    assert await act({"reboot": {"type": "HARD"}}) == 202
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    assert await act({"os-stop": None}) == 202
    await wait_server(cloud, server_id, tenant.token, "SHUTOFF")
    refused = await call(cloud, "POST", action, tenant.token, {"reboot": {"type": "SOFT"}})
    assert refused.status == 409
    assert "while it is in vm_state stopped" in refused.body["conflictingRequest"]["message"]
    assert await act({"os-stop": None}) == 409
    assert await act({"os-start": None}) == 202
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    assert await act({"lock": None}, cloud.admin) == 202
    assert await act({"reboot": {"type": "SOFT"}}) == 409
    assert (await call(cloud, "DELETE", f"/servers/{server_id}", tenant.token)).status == 409
    meta = {"meta": {"k": "v"}}
    locked = await call(cloud, "PUT", f"/servers/{server_id}/metadata/k", tenant.token, meta)
    assert locked.status == 409, locked.body
    assert locked.body["conflictingRequest"]["message"] == f"Instance {server_id} is locked"
    volume = {"volumeAttachment": {"volumeId": "11111111-2222-3333-4444-555555555555"}}
    path = f"/servers/{server_id}/os-volume_attachments"
    assert (await call(cloud, "POST", path, tenant.token, volume)).status == 409
    assert await act({"unlock": None}) == 403
    assert await act({"unlock": None}, cloud.admin) == 202
    assert await act({"resize": {"flavorRef": "84"}}) == 202
    resized = await wait_server(cloud, server_id, tenant.token, "VERIFY_RESIZE")
    assert resized["flavor"]["id"] == "84"
    assert await act({"revertResize": None}) == 202
    reverted = await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    assert reverted["flavor"]["id"] == "42"
    assert await act({"rebuild": {"imageRef": image, "name": "again"}}) == 202
    rebuilt = await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    assert rebuilt["name"] == "again"
    for hold, state, power, back in (
        ("pause", "PAUSED", 3, "unpause"),
        ("suspend", "SUSPENDED", 7, "resume"),
    ):
        assert await act({back: None}) == 409  # it is not held yet
        assert await act({hold: None}) == 202
        held = await wait_server(cloud, server_id, tenant.token, state)
        assert held["OS-EXT-STS:power_state"] == power and held["OS-EXT-STS:task_state"] is None
        assert await act({hold: None}) == 409
        attach = {"volumeAttachment": {"volumeId": "11111111-2222-3333-4444-555555555555"}}
        attached = await call(cloud, "POST", f"/servers/{server_id}/os-volume_attachments",
                              tenant.token, attach)  # fmt: skip
        assert (attached.status == 409) is (state == "SUSPENDED"), attached.body  # as Nova
        assert await act({back: None}) == 202
        running = await wait_server(cloud, server_id, tenant.token, "ACTIVE")
        assert running["OS-EXT-STS:power_state"] == 1
    history = await call(cloud, "GET", f"/servers/{server_id}/os-instance-actions", tenant.token)
    names = [a["action"] for a in history.body["instanceActions"]]
    assert {"create", "reboot", "stop", "start", "lock", "unlock", "resize"} <= set(names)
    assert {"pause", "unpause", "suspend", "resume"} <= set(names)
    create = next(a for a in history.body["instanceActions"] if a["action"] == "create")
    path = f"/servers/{server_id}/os-instance-actions/{create['request_id']}"
    detail = await call(cloud, "GET", path, cloud.admin)
    assert detail.body["instanceAction"]["events"][0]["result"] == "Success"


async def test_metadata_and_update(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    server_id = await boot(cloud, tenant.token, image, metadata={"a": "1"})
    meta = f"/servers/{server_id}/metadata"
    merged = await call(cloud, "POST", meta, tenant.token, {"metadata": {"b": "2"}})
    assert merged.body == {"metadata": {"a": "1", "b": "2"}}
    item = await call(cloud, "PUT", f"{meta}/c", tenant.token, {"meta": {"c": "3"}})
    assert item.body == {"meta": {"c": "3"}}
    wrong = await call(cloud, "PUT", f"{meta}/c", tenant.token, {"meta": {"d": "3"}})
    assert wrong.status == 400
    assert (await call(cloud, "DELETE", f"{meta}/a", tenant.token)).status == 204
    assert (await call(cloud, "GET", f"{meta}/a", tenant.token)).status == 404
    replaced = await call(cloud, "PUT", meta, tenant.token, {"metadata": {"z": "9"}})
    assert replaced.body == {"metadata": {"z": "9"}}
    updated = await call(
        cloud, "PUT", f"/servers/{server_id}", tenant.token, {"server": {"name": "renamed"}}
    )
    assert updated.status == 200 and updated.body["server"]["name"] == "renamed"
    assert "key_name" not in updated.body["server"]


async def test_no_valid_host_is_an_error_with_a_fault(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    body = {"flavor": {"name": "huge", "ram": 40000, "vcpus": 1, "disk": 1}}
    huge = (await call(cloud, "POST", "/flavors", cloud.admin, body)).body["flavor"]["id"]
    server_id = await boot(cloud, cloud.admin, image, flavorRef=huge)
    server = await wait_server(cloud, server_id, cloud.admin, "ERROR")
    assert server["fault"]["code"] == 500
    assert "No valid host was found" in server["fault"]["message"]


async def test_quota_exceeded_is_403(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    quota = {"quota_set": {"instances": 1}}
    await call(cloud, "PUT", f"/os-quota-sets/{tenant.project_id}", cloud.admin, quota)
    await boot(cloud, tenant.token, image)
    body = {"server": {"name": "vm", "imageRef": image, "flavorRef": "42"}}
    reply = await call(cloud, "POST", "/servers", tenant.token, body)
    assert reply.status == 403
    assert reply.body["forbidden"]["message"].startswith("Quota exceeded for instances")


def files(count: int, path: str = "/etc/motd", size: int = 4) -> list[dict[str, str]]:
    body = base64.b64encode(b"x" * size).decode()
    return [{"path": f"{path}{n}", "contents": body} for n in range(count)]


async def stored_paths(cloud: Cloud, server_id: str) -> list[str]:
    """The personality paths the stored Server keeps."""
    listed = await cloud.client.list(SERVERS.ref)
    server = next(item for item in listed["items"] if item["metadata"]["name"] == server_id)
    return [item["path"] for item in server["spec"]["personality"]]


async def test_personality_files_are_checked_against_the_file_quotas(cloud: Cloud) -> None:
    """Nova's file injection checks (before 2.57): base64 contents (400), then the project's
    injected-file quotas (403, Nova's words); what passes is kept with the server and a
    rebuild replaces it, checked the same way."""
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    server = {"name": "vm", "imageRef": image, "flavorRef": "42"}
    for personality, status, message in (
        ([{"path": "/a", "contents": "not base64!"}], 400, "is not a 'base64'"),
        ({"path": "/a"}, 400, "personality"),
        (files(6), 403, "Personality file limit exceeded"),
        (files(1, "/" + "p" * 255), 403, "Personality file path exceeds maximum 255"),
        (files(1, size=10241), 403, "Personality file content exceeds maximum 10240"),
    ):
        body = {"server": {**server, "personality": personality}}
        reply = await call(cloud, "POST", "/servers", tenant.token, body)
        assert reply.status == status, (personality, reply.body)
        assert message in next(iter(reply.body.values()))["message"]
    assert (await call(cloud, "GET", "/servers", tenant.token)).body["servers"] == []
    server_id = await boot(cloud, tenant.token, image, personality=files(5, size=10240))
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    assert await stored_paths(cloud, server_id) == [f"/etc/motd{n}" for n in range(5)]
    action = f"/servers/{server_id}/action"
    too_many = {"rebuild": {"imageRef": image, "personality": files(6)}}
    assert (await call(cloud, "POST", action, tenant.token, too_many)).status == 403
    one = {"rebuild": {"imageRef": image, "personality": files(1, "/rebuilt")}}
    assert (await call(cloud, "POST", action, tenant.token, one)).status == 202
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    assert await stored_paths(cloud, server_id) == ["/rebuilt0"]


async def test_anti_affinity_spreads_and_affinity_packs(cloud: Cloud) -> None:
    image = await ready_cloud(cloud, hosts=2)
    tenant = await cloud.tenant()
    hosts: dict[str, set[str]] = {}
    for policy in ("anti-affinity", "affinity"):
        body = {"server_group": {"name": policy, "policies": [policy]}}
        group = (await call(cloud, "POST", "/os-server-groups", tenant.token, body)).body
        group_id = group["server_group"]["id"]
        servers = [
            await boot(cloud, tenant.token, image, hints={"group": group_id}) for _ in range(2)
        ]
        for server_id in servers:
            await wait_server(cloud, server_id, tenant.token, "ACTIVE")
        shown = [
            (await call(cloud, "GET", f"/servers/{s}", cloud.admin)).body["server"] for s in servers
        ]
        hosts[policy] = {s["OS-EXT-SRV-ATTR:host"] for s in shown}
        members = await call(cloud, "GET", f"/os-server-groups/{group_id}", tenant.token)
        assert set(members.body["server_group"]["members"]) == set(servers)
    assert len(hosts["anti-affinity"]) == 2
    assert len(hosts["affinity"]) == 1
    body = {"server_group": {"name": "full", "policies": ["anti-affinity"]}}
    group_id = (await call(cloud, "POST", "/os-server-groups", tenant.token, body)).body[
        "server_group"
    ]["id"]
    servers = [await boot(cloud, tenant.token, image, hints={"group": group_id}) for _ in range(3)]
    statuses = set()
    for server_id in servers:
        async with asyncio.timeout(10):
            while True:
                shown = (await call(cloud, "GET", f"/servers/{server_id}", tenant.token)).body
                if shown["server"]["status"] in ("ACTIVE", "ERROR"):
                    statuses.add(shown["server"]["status"])
                    break
                await asyncio.sleep(0.02)
    assert statuses == {"ACTIVE", "ERROR"}


async def test_admin_resets_state_and_sees_hosts_events_diagnostics(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    server_id = await boot(cloud, tenant.token, image)
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    action = f"/servers/{server_id}/action"
    reset = {"os-resetState": {"state": "error"}}
    assert (await call(cloud, "POST", action, tenant.token, reset)).status == 403
    assert (await call(cloud, "POST", action, cloud.admin, reset)).status == 202
    await wait_server(cloud, server_id, tenant.token, "ERROR")
    restore = await call(cloud, "POST", action, tenant.token, {"restore": None})
    assert restore.status == 409
    hosts = await call(cloud, "GET", "/os-hosts", cloud.admin)
    assert {"host_name": "hv0", "service": "compute", "zone": "nova"} in hosts.body["hosts"]
    assert {h["service"] for h in hosts.body["hosts"]} == {"compute", "scheduler", "conductor"}
    audit = await call(cloud, "GET", "/os-instance_usage_audit_log", cloud.admin)
    assert audit.body["instance_usage_audit_logs"]["num_hosts"] == 1
    bad = await call(cloud, "GET", "/os-instance_usage_audit_log/not-a-time", cloud.admin)
    assert bad.status == 400
    detail = await call(cloud, "GET", "/os-hosts/hv0", cloud.admin)
    projects = [row["resource"]["project"] for row in detail.body["host"]]
    assert projects == ["(total)", "(used_now)", "(used_max)", tenant.project_id]
    events = {"events": [{"name": "network-changed", "server_uuid": server_id}]}
    answered = await call(cloud, "POST", "/os-server-external-events", cloud.admin, events)
    assert answered.status == 200 and answered.body["events"][0]["code"] == 200
    diagnostics = await call(cloud, "GET", f"/servers/{server_id}/diagnostics", cloud.admin)
    assert diagnostics.body["driver"] == "fake"


async def test_quota_class_default_changes_every_projects_defaults(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    path = "/os-quota-class-sets/default"
    shown = await call(cloud, "GET", path, cloud.admin)
    assert shown.body["quota_class_set"]["id"] == "default"
    changed = await call(cloud, "PUT", path, cloud.admin, {"quota_class_set": {"instances": 7}})
    assert changed.body["quota_class_set"]["instances"] == 7
    quota = await call(cloud, "GET", f"/os-quota-sets/{tenant.project_id}", tenant.token)
    assert quota.body["quota_set"]["instances"] == 7


async def test_stopped_servers_stay_stopped_through_rebuild_and_resize(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    server_id = await boot(cloud, tenant.token, image)
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    action = f"/servers/{server_id}/action"
    await call(cloud, "POST", action, tenant.token, {"os-stop": None})
    await wait_server(cloud, server_id, tenant.token, "SHUTOFF")
    await call(cloud, "POST", action, tenant.token, {"rebuild": {"imageRef": image}})
    rebuilt = await wait_server(cloud, server_id, tenant.token, "SHUTOFF")
    assert rebuilt["OS-EXT-STS:power_state"] == 4
    await call(cloud, "POST", action, tenant.token, {"resize": {"flavorRef": "84"}})
    await wait_server(cloud, server_id, tenant.token, "VERIFY_RESIZE")
    assert (await call(cloud, "POST", action, tenant.token, {"confirmResize": None})).status == 204
    confirmed = await wait_server(cloud, server_id, tenant.token, "SHUTOFF")
    assert confirmed["flavor"]["id"] == "84"
    await call(cloud, "POST", action, tenant.token, {"pause": None})
    paused = await call(cloud, "POST", action, tenant.token, {"pause": None})
    assert paused.status == 409


async def test_rescue_and_unrescue(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    server_id = await boot(cloud, tenant.token, image)
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    action = f"/servers/{server_id}/action"
    for bad in ({"rescue_image_ref": "nope"}, {"colour": "red"}, "yes"):
        refused = await call(cloud, "POST", action, tenant.token, {"rescue": bad})
        assert refused.status == 400, (bad, refused.body)
    missing = {"rescue": {"rescue_image_ref": "8a1c9c7e-0000-4000-8000-000000000000"}}
    refused = await call(cloud, "POST", action, tenant.token, missing)
    assert refused.status == 400 and "could not be found" in refused.body["badRequest"]["message"]
    unrescued = await call(cloud, "POST", action, tenant.token, {"unrescue": None})
    assert unrescued.status == 409  # not rescued
    rescue = {"rescue": {"adminPass": "Rescue1234", "rescue_image_ref": image}}
    rescued = await call(cloud, "POST", action, tenant.token, rescue)
    assert rescued.status == 200 and rescued.body == {}
    shown = await wait_server(cloud, server_id, tenant.token, "RESCUE")
    assert shown["OS-EXT-STS:power_state"] == 1 and shown["OS-EXT-STS:task_state"] is None
    console = await call(cloud, "POST", action, tenant.token, {"os-getConsoleOutput": {}})
    assert f"rescue image {image}" in console.body["output"]
    refused = await call(cloud, "POST", action, tenant.token, {"reboot": {"type": "HARD"}})
    assert refused.status == 409
    again = await call(cloud, "POST", action, tenant.token, {"rescue": None})
    assert again.status == 409
    assert (await call(cloud, "POST", action, tenant.token, {"unrescue": None})).status == 202
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    events = await call(cloud, "GET", f"/servers/{server_id}/os-instance-actions", tenant.token)
    assert {"rescue", "unrescue"} <= {a["action"] for a in events.body["instanceActions"]}


async def test_shelve_offloads_and_unshelve_schedules_again(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    server_id = await boot(cloud, tenant.token, image, name="shelf")
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    action = f"/servers/{server_id}/action"
    assert (await call(cloud, "POST", action, tenant.token, {"shelve": None})).status == 202
    shelved = await wait_server(cloud, server_id, tenant.token, "SHELVED_OFFLOADED")
    assert shelved["OS-EXT-STS:power_state"] == 4
    kept = await cloud.call(
        "GET", "/image/v2/images", token=tenant.token, params={"name": "shelf-shelved"}
    )
    (kept_image,) = kept.body["images"]
    hypervisors = await call(cloud, "GET", "/os-hypervisors/detail", cloud.admin)
    assert hypervisors.body["hypervisors"][0]["running_vms"] == 0
    again = await call(cloud, "POST", action, tenant.token, {"shelve": None})
    assert again.status == 409
    assert (await call(cloud, "POST", action, tenant.token, {"unshelve": None})).status == 202
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    back = await call(cloud, "GET", f"/servers/{server_id}", cloud.admin)
    assert back.body["server"]["OS-EXT-SRV-ATTR:host"] == "hv0"
    gone = await cloud.call("GET", f"/image/v2/images/{kept_image['id']}", token=tenant.token)
    assert gone.status == 404


async def test_change_password_is_recorded_and_needs_an_active_server(cloud: Cloud) -> None:
    """`changePassword` (Nova's set_admin_password): 202 and a changePassword action that
    succeeded; 400 without adminPass; 409 for a server that is not ACTIVE."""
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    server_id = await boot(cloud, tenant.token, image)
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    action = f"/servers/{server_id}/action"
    change = {"changePassword": {"adminPass": "Newpass1234"}}
    assert (await call(cloud, "POST", action, tenant.token, change)).status == 202
    listed = await call(cloud, "GET", f"/servers/{server_id}/os-instance-actions", cloud.admin)
    [done] = [a for a in listed.body["instanceActions"] if a["action"] == "changePassword"]
    path = f"/servers/{server_id}/os-instance-actions/{done['request_id']}"
    events = (await call(cloud, "GET", path, cloud.admin)).body["instanceAction"]["events"]
    assert [(e["event"], e["result"]) for e in events] == [("compute_changePassword", "Success")]
    missing = await call(cloud, "POST", action, tenant.token, {"changePassword": {}})
    assert missing.status == 400 and "adminPass" in missing.body["badRequest"]["message"]
    await call(cloud, "POST", action, tenant.token, {"os-stop": None})
    await wait_server(cloud, server_id, tenant.token, "SHUTOFF")
    assert (await call(cloud, "POST", action, tenant.token, change)).status == 409


async def test_cold_migration_moves_to_another_host_and_reverts_or_confirms(cloud: Cloud) -> None:
    image = await ready_cloud(cloud, hosts=2)
    tenant = await cloud.tenant()
    server_id = await boot(cloud, tenant.token, image)
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    action = f"/servers/{server_id}/action"
    v256 = {"OpenStack-API-Version": "compute 2.56"}

    async def host_of() -> str:
        shown = await call(cloud, "GET", f"/servers/{server_id}", cloud.admin)
        return str(shown.body["server"]["OS-EXT-SRV-ATTR:host"])

    source = await host_of()
    other = ({"hv0", "hv1"} - {source}).pop()
    denied = await call(cloud, "POST", action, tenant.token, {"migrate": None})
    assert denied.status == 403, denied.body

    async def migrate(body: Any) -> Any:
        return await cloud.call("POST", f"/compute/v2.1{action}", body, cloud.admin, v256)

    extra = await migrate({"migrate": {"host": other, "force": True}})
    assert extra.status == 400 and "migrate" in extra.body["badRequest"]["message"]

    same = await migrate({"migrate": {"host": source}})
    assert same.status == 400
    assert same.body["badRequest"]["message"] == (
        "Cannot migrate to the host where the server exists."
    )
    nowhere = await migrate({"migrate": {"host": "no-such-host"}})
    assert nowhere.status == 400, nowhere.body
    assert nowhere.body["badRequest"]["message"] == "Compute host no-such-host could not be found."

    # reverted: back on its source (before 2.56 the body is not looked at: Tempest sends {})
    assert (await call(cloud, "POST", action, cloud.admin, {"migrate": {}})).status == 202
    await wait_server(cloud, server_id, tenant.token, "VERIFY_RESIZE")
    assert await host_of() == other
    listed = await call(cloud, "GET", f"/os-migrations?instance_uuid={server_id}", cloud.admin)
    (migration,) = listed.body["migrations"]
    assert migration["status"] == "finished"
    assert (migration["source_compute"], migration["dest_compute"]) == (source, other)
    assert (await call(cloud, "POST", action, tenant.token, {"revertResize": None})).status == 202
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    assert await host_of() == source

    # confirmed, to the host the admin named, from a stopped server: it stays stopped
    assert (await call(cloud, "POST", action, tenant.token, {"os-stop": None})).status == 202
    await wait_server(cloud, server_id, tenant.token, "SHUTOFF")
    assert (await migrate({"migrate": {"host": other}})).status == 202
    await wait_server(cloud, server_id, tenant.token, "VERIFY_RESIZE")
    assert (await call(cloud, "POST", action, tenant.token, {"confirmResize": None})).status == 204
    await wait_server(cloud, server_id, tenant.token, "SHUTOFF")
    assert await host_of() == other
    listed = await call(cloud, "GET", "/os-migrations?migration_type=migration", cloud.admin)
    statuses = {m["status"] for m in listed.body["migrations"] if m["instance_uuid"] == server_id}
    assert statuses == {"reverted", "confirmed"}
    history = await call(cloud, "GET", f"/servers/{server_id}/os-instance-actions", tenant.token)
    names = [a["action"] for a in history.body["instanceActions"]]
    assert names.count("migrate") == 2


async def test_cold_migration_with_nowhere_to_go_stays_put(cloud: Cloud) -> None:
    image = await ready_cloud(cloud, hosts=1)
    tenant = await cloud.tenant()
    server_id = await boot(cloud, tenant.token, image)
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    action = f"/servers/{server_id}/action"
    assert (await call(cloud, "POST", action, cloud.admin, {"migrate": None})).status == 202

    async def failed() -> bool:
        listed = await call(cloud, "GET", f"/os-migrations?instance_uuid={server_id}", cloud.admin)
        return [m["status"] for m in listed.body["migrations"]] == ["error"]

    await eventually(failed)
    shown = await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    assert shown["OS-EXT-STS:task_state"] is None
    history = await call(cloud, "GET", f"/servers/{server_id}/os-instance-actions", cloud.admin)
    migrate = next(a for a in history.body["instanceActions"] if a["action"] == "migrate")
    path = f"/servers/{server_id}/os-instance-actions/{migrate['request_id']}"
    detail = await call(cloud, "GET", path, cloud.admin)
    event = detail.body["instanceAction"]["events"][0]
    assert event["result"] == "Error" and event["event"] == "compute_resize_instance"


async def test_same_host_and_different_host_hints(cloud: Cloud) -> None:
    image = await ready_cloud(cloud, hosts=2)
    tenant = await cloud.tenant()
    first = await boot(cloud, tenant.token, image)
    await wait_server(cloud, first, tenant.token, "ACTIVE")
    away = await boot(cloud, tenant.token, image, hints={"different_host": [first]})
    near = await boot(cloud, tenant.token, image, hints={"same_host": first})

    async def host_of(server_id: str) -> str:
        await wait_server(cloud, server_id, tenant.token, "ACTIVE")
        shown = await call(cloud, "GET", f"/servers/{server_id}", cloud.admin)
        return str(shown.body["server"]["OS-EXT-SRV-ATTR:host"])

    assert await host_of(away) != await host_of(first)
    assert await host_of(near) == await host_of(first)
    body = {
        "server": {"name": "bad", "imageRef": image, "flavorRef": "42"},
        "os:scheduler_hints": {"same_host": "not-a-uuid"},
    }
    bad = await call(cloud, "POST", "/servers", tenant.token, body)
    assert bad.status == 400, bad.body
    assert "same_host" in bad.body["badRequest"]["message"]


async def test_servers_listed_by_their_reservation(cloud: Cloud) -> None:
    image = await ready_cloud(cloud)
    tenant = await cloud.tenant()
    await boot(cloud, tenant.token, image)
    server = {"name": "pair", "imageRef": image, "flavorRef": "42", "min_count": 2}
    made = await call(
        cloud,
        "POST",
        "/servers",
        tenant.token,
        {"server": {**server, "return_reservation_id": True}},
    )
    assert made.status == 202, made.body
    reservation = made.body["reservation_id"]
    path = f"/servers/detail?reservation_id={reservation}"
    listed = (await call(cloud, "GET", path, tenant.token)).body["servers"]
    assert len(listed) == 2  # of the three


async def test_unshelve_to_a_host_the_admin_names(cloud: Cloud) -> None:
    image = await ready_cloud(cloud, hosts=2)
    tenant = await cloud.tenant()
    server_id = await boot(cloud, tenant.token, image)
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    action = f"/servers/{server_id}/action"
    v291 = {"OpenStack-API-Version": "compute 2.91"}

    async def unshelve(token: str, body: Any) -> Any:
        return await cloud.call("POST", f"/compute/v2.1{action}", body, token, v291)

    for target in ("hv0", "hv1"):
        assert (await call(cloud, "POST", action, tenant.token, {"shelve": None})).status == 202
        await wait_server(cloud, server_id, tenant.token, "SHELVED_OFFLOADED")
        denied = await unshelve(tenant.token, {"unshelve": {"host": target}})
        assert denied.status == 403, denied.body
        nowhere = await unshelve(cloud.admin, {"unshelve": {"host": "nowhere"}})
        assert nowhere.status == 400, nowhere.body
        assert (await unshelve(cloud.admin, {"unshelve": {"host": target}})).status == 202
        await wait_server(cloud, server_id, tenant.token, "ACTIVE")
        shown = await call(cloud, "GET", f"/servers/{server_id}", cloud.admin)
        assert shown.body["server"]["OS-EXT-SRV-ATTR:host"] == target
    running = await unshelve(cloud.admin, {"unshelve": {"host": "hv0"}})
    assert running.status == 409, running.body


async def test_live_migration_checks_its_request_and_moves_the_running_server(
    cloud: Cloud,
) -> None:
    image = await ready_cloud(cloud, hosts=2)
    tenant = await cloud.tenant()
    server_id = await boot(cloud, tenant.token, image)
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    action = f"/servers/{server_id}/action"

    async def live(body: Any, version: str = "2.1", token: str | None = None) -> Any:
        headers = {"OpenStack-API-Version": f"compute {version}"}
        return await cloud.call(
            "POST", f"/compute/v2.1{action}", {"os-migrateLive": body}, token or cloud.admin,
            headers,
        )  # fmt: skip

    shown = await call(cloud, "GET", f"/servers/{server_id}", cloud.admin)
    source = str(shown.body["server"]["OS-EXT-SRV-ATTR:host"])
    other = ({"hv0", "hv1"} - {source}).pop()
    v21 = {"host": None, "block_migration": False, "disk_over_commit": False}
    denied = await live(v21, token=tenant.token)
    assert denied.status == 403, denied.body
    refusals = [
        ({"host": None, "block_migration": True}, "2.1", "'disk_over_commit' is a required"),
        ({**v21, "block_migration": "auto"}, "2.1", "block_migration"),
        (v21, "2.25", "Additional properties are not allowed ('disk_over_commit'"),
        ({"block_migration": "auto"}, "2.25", "'host' is a required property"),
        ({"host": None, "block_migration": "auto", "force": True}, "2.68", "'force' was unexp"),
        ({"host": source, "block_migration": "auto"}, "2.25", "to current host"),
        ({"host": "no-such-host", "block_migration": "auto"}, "2.25", "could not be found"),
        # its root disk is on its host, and no host shares its disks
        ({"host": None, "block_migration": False}, "2.25", "not on shared storage"),
    ]
    for body, version, message in refusals:
        refused = await live(body, version)
        assert refused.status == 400, (body, refused.body)
        assert message in refused.body["badRequest"]["message"], (body, refused.body)

    moved = await live({"host": other, "block_migration": "auto", "force": False}, "2.30")
    assert moved.status == 202, moved.body
    await eventually(lambda: _host_and_status(cloud, server_id, (other, "ACTIVE")))
    listed = await call(cloud, "GET", f"/os-migrations?instance_uuid={server_id}", cloud.admin)
    (migration,) = listed.body["migrations"]
    assert (migration["status"], migration["source_compute"], migration["dest_compute"]) == (
        "completed", source, other,
    )  # fmt: skip
    # back again, to the scheduler's choice: the only other host
    assert (await live({"host": None, "block_migration": "auto"}, "2.25")).status == 202
    await eventually(lambda: _host_and_status(cloud, server_id, (source, "ACTIVE")))
    # a paused server moves paused, and stays so there
    assert (await call(cloud, "POST", action, tenant.token, {"pause": None})).status == 202
    await wait_server(cloud, server_id, tenant.token, "PAUSED")
    assert (await live({"host": other, "block_migration": "auto"}, "2.25")).status == 202
    await eventually(lambda: _host_and_status(cloud, server_id, (other, "PAUSED")))
    paused = await call(cloud, "GET", f"/servers/{server_id}", cloud.admin)
    assert paused.body["server"]["OS-EXT-STS:power_state"] == 3
    assert (await call(cloud, "POST", action, tenant.token, {"unpause": None})).status == 202
    await wait_server(cloud, server_id, tenant.token, "ACTIVE")
    history = await call(cloud, "GET", f"/servers/{server_id}/os-instance-actions", cloud.admin)
    names = [a["action"] for a in history.body["instanceActions"]]
    assert names.count("live-migration") == 3
    # done: nothing in progress to show, abort or force
    own = f"/compute/v2.1/servers/{server_id}/migrations"
    v224 = {"OpenStack-API-Version": "compute 2.24"}
    shown = await cloud.call("GET", own, None, cloud.admin, v224)
    assert shown.status == 200 and shown.body["migrations"] == []
    number = migration["id"]
    aborted = await cloud.call("DELETE", f"{own}/{number}", None, cloud.admin, v224)
    assert (
        aborted.status == 409 and "task_state None" in aborted.body["conflictingRequest"]["message"]
    )
    force = {"force_complete": None}
    forced = await cloud.call("POST", f"{own}/{number}/action", force, cloud.admin, v224)
    assert forced.status == 409, forced.body
    early = {"OpenStack-API-Version": "compute 2.21"}
    assert (
        await cloud.call("POST", f"{own}/{number}/action", force, cloud.admin, early)
    ).status == 404
    denied = await cloud.call("DELETE", f"{own}/{number}", None, tenant.token, v224)
    assert denied.status == 403, denied.body
    stopped = await call(cloud, "POST", action, tenant.token, {"os-stop": None})
    assert stopped.status == 202
    await wait_server(cloud, server_id, tenant.token, "SHUTOFF")
    refused = await live({"host": None, "block_migration": "auto"}, "2.25")
    assert refused.status == 409, refused.body  # only a running (or paused) server moves live


async def test_a_live_migration_runs_beside_other_work_and_outlives_its_controller(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy holds the controller's attention only for itself: another server reboots
    meanwhile. A controller that stops in the middle (here its task dies, as a restarted or
    re-elected one would leave it) is followed by one that takes the migration up where it
    is — to the same host, after the switch-over only resuming — and it completes once."""
    monkeypatch.setattr(controller, "MOVING_RECHECK_S", 0.2)
    calls: list[tuple[str, bool, bool]] = []
    held = asyncio.Event()
    moving = FakeDriver.live_migrate

    async def interrupted(self: FakeDriver, server: Any, dest: str, steering: Any) -> Any:
        calls.append((dest, steering.started, steering.switched))
        if len(calls) == 1:
            await held.wait()
            raise RuntimeError("the controller stopped while the copy ran")
        if len(calls) == 2:
            await steering.switch()
            raise RuntimeError("the controller stopped after the switch-over")
        return await moving(self, server, dest, steering)

    monkeypatch.setattr(FakeDriver, "live_migrate", interrupted)
    image = await ready_cloud(cloud, hosts=3)
    tenant = await cloud.tenant()
    server_id, other_id = [await boot(cloud, tenant.token, image) for _ in range(2)]
    for booted in (server_id, other_id):
        await wait_server(cloud, booted, tenant.token, "ACTIVE")
    live = {"os-migrateLive": {"host": None, "block_migration": "auto"}}
    headers = {"OpenStack-API-Version": "compute 2.25"}
    action = f"/compute/v2.1/servers/{server_id}/action"
    assert (await cloud.call("POST", action, live, cloud.admin, headers)).status == 202
    await eventually(lambda: _true(len(calls) == 1))
    rebooted = await call(
        cloud, "POST", f"/servers/{other_id}/action", tenant.token, {"reboot": {"type": "HARD"}}
    )
    assert rebooted.status == 202, rebooted.body
    await wait_server(cloud, other_id, tenant.token, "ACTIVE")  # while the copy is held
    shown = await call(cloud, "GET", f"/servers/{server_id}", cloud.admin)
    assert shown.body["server"]["OS-EXT-STS:task_state"] == "migrating"
    held.set()
    dest = calls[0][0]
    await eventually(lambda: _host_and_status(cloud, server_id, (dest, "ACTIVE")))
    assert calls == [(dest, False, False), (dest, True, False), (dest, True, True)]
    listed = await call(cloud, "GET", f"/os-migrations?instance_uuid={server_id}", cloud.admin)
    (migration,) = listed.body["migrations"]
    assert (migration["status"], migration["dest_compute"]) == ("completed", dest)
    history = await call(cloud, "GET", f"/servers/{server_id}/os-instance-actions", cloud.admin)
    names = [a["action"] for a in history.body["instanceActions"]]
    assert names.count("live-migration") == 1


async def _true(value: bool) -> bool:
    return value


async def _host_and_status(cloud: Cloud, server_id: str, wanted: tuple[str, str]) -> bool:
    shown = (await call(cloud, "GET", f"/servers/{server_id}", cloud.admin)).body["server"]
    return (shown["OS-EXT-SRV-ATTR:host"], shown["status"]) == wanted
