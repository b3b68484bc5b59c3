"""The gateway in-process: every service mounted, the catalog it bootstraps, request ids."""

from __future__ import annotations

from tests.integration.cloud import Cloud


async def test_catalog_lists_every_mounted_service(cloud: Cloud) -> None:
    reply = await cloud.call("GET", "/identity/v3/auth/catalog", token=cloud.admin)
    assert reply.status == 200
    types = {entry["type"]: entry for entry in reply.body["catalog"]}
    assert set(types) == {"identity", "compute", "image", "network", "block-storage", "volumev3"}
    compute = types["compute"]["endpoints"][0]["url"]
    assert compute == "http://unistack.local/compute/v2.1"
    assert reply.headers["x-openstack-request-id"].startswith("req-")


async def test_tenant_tokens_are_scoped_to_their_project(cloud: Cloud) -> None:
    tenant = await cloud.tenant()
    reply = await cloud.call("GET", "/identity/v3/auth/projects", token=tenant.token)
    assert [p["id"] for p in reply.body["projects"]] == [tenant.project_id]


async def test_services_call_each_other_with_a_service_token(cloud: Cloud) -> None:
    status, body = await cloud.platform.internal.call("GET", "/identity/v3/projects")
    assert status == 200
    assert "admin" in {project["name"] for project in body["projects"]}


async def test_internal_calls_send_bytes_as_octet_streams(cloud: Cloud) -> None:
    internal = cloud.platform.internal
    body = {"name": "snap", "disk_format": "raw", "container_format": "bare"}
    status, image = await internal.call("POST", "/image/v2/images", body)
    assert status == 201
    path = f"/image/v2/images/{image['id']}/file"
    status, _ = await internal.call("PUT", path, b"disk bytes")
    assert status == 204
    reply = await cloud.call("GET", path, token=cloud.admin)
    assert reply.raw == b"disk bytes"
