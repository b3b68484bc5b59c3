"""Glance v2 through the in-process gateway: images with their data in the OCI store,
visibility across projects, members, tags, JSON patch, import, and Glance's errors."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import orjson

from tests.integration.cloud import Cloud
from unistack.images.store import ImageStore
from unistack.openstack.image.data import REPOSITORY

PATCH = {"content-type": "application/openstack-images-v2.1-json-patch"}
PATCH_V20 = {"content-type": "application/openstack-images-v2.0-json-patch"}
OCTETS = {"content-type": "application/octet-stream"}


async def new_image(cloud: Cloud, token: str, **attributes: object) -> dict:
    body = {"name": "img", "disk_format": "raw", "container_format": "bare", **attributes}
    reply = await cloud.call("POST", "/image/v2/images", body, token)
    assert reply.status == 201, reply.body
    return reply.body


async def test_versions_document_lists_current_v2(cloud: Cloud) -> None:
    reply = await cloud.call("GET", "/image/")
    assert reply.status == 300
    versions = reply.body["versions"]
    assert versions[0]["status"] == "CURRENT"
    assert all({"id", "links", "status"} <= set(v) for v in versions)
    assert versions[0]["links"][0]["href"] == "http://unistack.local/image/v2/"


async def test_upload_download_checksums_and_oci_manifest(cloud: Cloud) -> None:
    image = await new_image(cloud, cloud.admin, visibility="private", ramdisk_id="r1")
    assert image["status"] == "queued" and image["visibility"] == "private"
    assert image["ramdisk_id"] == "r1" and image["owner"] == cloud.admin_project_id
    path = f"/image/v2/images/{image['id']}/file"
    assert (await cloud.call("GET", path, token=cloud.admin)).status == 204
    data = bytes(range(256)) * 4100  # a bit over 1 MiB: crosses the write batch
    assert (await cloud.call("PUT", path, data, cloud.admin, OCTETS)).status == 204
    shown = (await cloud.call("GET", f"/image/v2/images/{image['id']}", token=cloud.admin)).body
    assert shown["status"] == "active" and shown["size"] == len(data)
    assert shown["virtual_size"] == len(data)
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    download = await cloud.call("GET", path, token=cloud.admin)
    assert download.status == 200 and download.raw == data
    assert download.headers["content-md5"] == shown["checksum"]
    # The same bytes are an OCI artifact in the registry's store.
    store = ImageStore(Path(cloud.platform.settings.image_store))
    manifest = store.get_manifest(REPOSITORY, image["id"])
    layer = orjson.loads(manifest.data)["layers"][0]
    assert layer["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    again = await cloud.call("PUT", path, b"x", cloud.admin, OCTETS)
    assert again.status == 409


async def test_bad_input_is_rejected_and_nothing_is_stored(cloud: Cloud) -> None:
    before = (await cloud.call("GET", "/image/v2/images", token=cloud.admin)).body["images"]
    for body, status in [
        ({"disk_format": "floppy"}, 400),
        ({"container_format": "crate"}, 400),
        ({"min_ram": -1}, 400),
        ({"os_glance_foo": "bar"}, 403),
        ({"status": "active"}, 403),
        ({"custom": 5}, 400),
        ({"id": "not-a-uuid"}, 400),
    ]:
        reply = await cloud.call("POST", "/image/v2/images", body, cloud.admin)
        assert reply.status == status, (body, reply.body)
        assert reply.body["title"] and str(status) in reply.body["code"]
    after = (await cloud.call("GET", "/image/v2/images", token=cloud.admin)).body["images"]
    assert after == before
    missing = await cloud.call("GET", "/image/v2/images/0000", token=cloud.admin)
    assert missing.status == 404
    unauthenticated = await cloud.call("GET", "/image/v2/images")
    assert unauthenticated.status == 401


async def test_visibility_across_projects(cloud: Cloud) -> None:
    alice, bob = await cloud.tenant(), await cloud.tenant()
    private = await new_image(cloud, alice.token, visibility="private")
    community = await new_image(cloud, alice.token, visibility="community")
    public = await new_image(cloud, cloud.admin, visibility="public")
    denied = await cloud.call("POST", "/image/v2/images", {"visibility": "public"}, alice.token)
    assert denied.status == 403

    async def listed(token: str, **query: str) -> set[str]:
        reply = await cloud.call("GET", "/image/v2/images", token=token, params=query)
        return {image["id"] for image in reply.body["images"]}

    assert {private["id"], community["id"], public["id"]} <= await listed(alice.token)
    seen_by_bob = await listed(bob.token)
    assert public["id"] in seen_by_bob and private["id"] not in seen_by_bob
    assert community["id"] not in seen_by_bob
    assert community["id"] in await listed(bob.token, visibility="community")
    path = f"/image/v2/images/{private['id']}"
    assert (await cloud.call("GET", path, token=bob.token)).status == 404
    assert (await cloud.call("DELETE", path, token=bob.token)).status == 404
    public_path = f"/image/v2/images/{public['id']}"
    assert (await cloud.call("DELETE", public_path, token=bob.token)).status == 403


async def test_members_share_an_image_and_only_the_member_accepts(cloud: Cloud) -> None:
    owner, consumer = await cloud.tenant(), await cloud.tenant()
    image = await new_image(cloud, owner.token)
    assert image["visibility"] == "shared"
    members = f"/image/v2/images/{image['id']}/members"
    reply = await cloud.call("POST", members, {"member": consumer.project_id}, owner.token)
    assert reply.status == 200 and reply.body["status"] == "pending"
    duplicate = await cloud.call("POST", members, {"member": consumer.project_id}, owner.token)
    assert duplicate.status == 409
    pending = await cloud.call(
        "GET",
        "/image/v2/images",
        token=consumer.token,
        params={"visibility": "shared", "member_status": "pending"},
    )
    assert [i["id"] for i in pending.body["images"]] == [image["id"]]
    default = await cloud.call("GET", "/image/v2/images", token=consumer.token)
    assert image["id"] not in {i["id"] for i in default.body["images"]}
    member = f"{members}/{consumer.project_id}"
    by_owner = await cloud.call("PUT", member, {"status": "accepted"}, owner.token)
    assert by_owner.status == 403
    invalid = await cloud.call("PUT", member, {"status": "maybe"}, consumer.token)
    assert invalid.status == 400
    accepted = await cloud.call("PUT", member, {"status": "accepted"}, consumer.token)
    assert accepted.status == 200 and accepted.body["status"] == "accepted"
    default = await cloud.call("GET", "/image/v2/images", token=consumer.token)
    assert image["id"] in {i["id"] for i in default.body["images"]}
    assert (await cloud.call("DELETE", member, token=owner.token)).status == 204
    gone = await cloud.call("GET", f"/image/v2/images/{image['id']}", token=consumer.token)
    assert gone.status == 404


async def test_patch_tags_protected_hidden_and_deactivate(cloud: Cloud) -> None:
    image = await new_image(cloud, cloud.admin)
    path = f"/image/v2/images/{image['id']}"
    ops = [
        {"op": "replace", "path": "/name", "value": "renamed"},
        {"op": "add", "path": "/os_distro", "value": "debian"},
        {"op": "replace", "path": "/protected", "value": True},
    ]
    reply = await cloud.call("PATCH", path, orjson.dumps(ops), cloud.admin, PATCH)
    assert reply.status == 200, reply.body
    assert reply.body["name"] == "renamed" and reply.body["os_distro"] == "debian"
    old_style = [{"remove": "/os_distro"}]
    reply = await cloud.call("PATCH", path, orjson.dumps(old_style), cloud.admin, PATCH_V20)
    assert "os_distro" not in reply.body
    wrong_type = await cloud.call("PATCH", path, orjson.dumps(ops), cloud.admin)
    assert wrong_type.status == 415
    assert (await cloud.call("PATCH", path, b"[{", cloud.admin, PATCH)).status == 400
    huge = orjson.dumps([{"op": "add", "path": "/big", "value": "x" * 200_000}])
    assert (await cloud.call("PATCH", path, huge, cloud.admin, PATCH)).status == 413
    reserved = [{"op": "add", "path": "/os_glance_x", "value": "1"}]
    assert (
        await cloud.call("PATCH", path, orjson.dumps(reserved), cloud.admin, PATCH)
    ).status == 403
    assert (await cloud.call("DELETE", path, token=cloud.admin)).status == 403
    assert (await cloud.call("PUT", f"{path}/tags/blue", token=cloud.admin)).status == 204
    tagged = await cloud.call("GET", "/image/v2/images", token=cloud.admin, params={"tag": "blue"})
    assert [i["id"] for i in tagged.body["images"]] == [image["id"]]
    assert (await cloud.call("DELETE", f"{path}/tags/red", token=cloud.admin)).status == 404
    hide = [{"op": "replace", "path": "/os_hidden", "value": True}]
    await cloud.call("PATCH", path, orjson.dumps(hide), cloud.admin, PATCH)
    listed = await cloud.call("GET", "/image/v2/images", token=cloud.admin)
    assert image["id"] not in {i["id"] for i in listed.body["images"]}
    # Deactivation needs data first; then downloads are refused to non-admins.
    deactivate = f"{path}/actions/deactivate"
    assert (await cloud.call("POST", deactivate, token=cloud.admin)).status == 400
    await cloud.call("PUT", f"{path}/file", b"disk", cloud.admin, OCTETS)
    assert (await cloud.call("POST", deactivate, token=cloud.admin)).status == 204
    shown = await cloud.call("GET", path, token=cloud.admin)
    assert shown.body["status"] == "deactivated"
    assert (await cloud.call("POST", f"{path}/actions/reactivate", token=cloud.admin)).status == 204


async def test_glance_direct_import_and_pagination(cloud: Cloud) -> None:
    info = await cloud.call("GET", "/image/v2/info/import", token=cloud.admin)
    assert info.body["import-methods"]["value"] == ["glance-direct"]
    image = await new_image(cloud, cloud.admin)
    path = f"/image/v2/images/{image['id']}"
    assert (await cloud.call("PUT", f"{path}/stage", b"staged", cloud.admin, OCTETS)).status == 204
    assert (await cloud.call("GET", path, token=cloud.admin)).body["status"] == "uploading"
    method = {"method": {"name": "glance-direct"}}
    assert (await cloud.call("POST", f"{path}/import", method, cloud.admin)).status == 202
    imported = (await cloud.call("GET", path, token=cloud.admin)).body
    assert imported["status"] == "active" and imported["size"] == 6
    tasks = (await cloud.call("GET", f"{path}/tasks", token=cloud.admin)).body["tasks"]
    assert [t["status"] for t in tasks] == ["success"]
    assert tasks[0]["input"]["import_req"] == method
    for index in range(4):
        await new_image(cloud, cloud.admin, name=f"page{index}")
    first = await cloud.call(
        "GET", "/image/v2/images", token=cloud.admin, params={"limit": "2", "sort": "name:asc"}
    )
    assert len(first.body["images"]) == 2 and "next" in first.body
    names = [i["name"] for i in first.body["images"]]
    assert names == sorted(names)
    schema = await cloud.call("GET", "/image/v2/schemas/image", token=cloud.admin)
    assert schema.body["name"] == "image" and "disk_format" in schema.body["properties"]


async def test_builtin_oci_image_becomes_a_public_glance_image(cloud: Cloud) -> None:
    """The registry's busybox image, once in the store, is offered to every project without
    a copy: the image's data is the OCI image's filesystem layer."""
    store = ImageStore(Path(cloud.platform.settings.image_store))
    archive = b"a container filesystem archive"
    layer, config = store.put_blob(archive), store.put_blob(b"{}")
    manifest = {
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer}],
    }
    store.put_manifest("library/busybox", "latest", orjson.dumps(manifest), "application/json")
    tenant = await cloud.tenant()
    # The gateway retries every 2 s until the registry has built it. The object is created,
    # then its status written (a CRD takes no status on create), so a list in between shows
    # it queued for a moment: wait for it active.
    for _ in range(50):
        reply = await cloud.call(
            "GET", "/image/v2/images", token=tenant.token, params={"name": "busybox"}
        )
        if [i for i in reply.body["images"] if i["status"] == "active"]:
            break
        await asyncio.sleep(0.1)
    [image] = reply.body["images"]
    assert image["visibility"] == "public" and image["status"] == "active"
    assert image["container_format"] == "docker" and image["size"] == len(archive)
    data = await cloud.call("GET", f"/image/v2/images/{image['id']}/file", token=tenant.token)
    assert data.raw == archive


async def test_metadefs_namespace_with_objects_properties_tags_and_types(cloud: Cloud) -> None:
    base = "/image/v2/metadefs/namespaces"
    types = await cloud.call("GET", "/image/v2/metadefs/resource_types", token=cloud.admin)
    assert "OS::Glance::Image" in {t["name"] for t in types.body["resource_types"]}
    body = {"namespace": "unistack-test", "visibility": "private", "protected": True}
    body["resource_type_associations"] = [{"name": "OS::Nova::Flavor", "prefix": "hw:"}]
    created = await cloud.call("POST", base, body, cloud.admin)
    assert created.status == 201 and created.body["protected"] is True
    assert (await cloud.call("POST", base, body, cloud.admin)).status == 409
    tenant = await cloud.tenant()
    hidden = await cloud.call("GET", f"{base}/unistack-test", token=tenant.token)
    assert hidden.status == 404
    by_member = await cloud.call("POST", base, {"namespace": "x"}, tenant.token)
    assert by_member.status == 403
    ns = f"{base}/unistack-test"
    prop = {"name": "hw:cpu_policy", "title": "CPU policy", "type": "string"}
    assert (await cloud.call("POST", f"{ns}/properties", prop, cloud.admin)).status == 201
    shown = await cloud.call("GET", f"{ns}/properties/hw:cpu_policy", token=cloud.admin)
    assert shown.body["title"] == "CPU policy"
    bad = await cloud.call("POST", f"{ns}/properties", {"name": "p"}, cloud.admin)
    assert bad.status == 400
    obj = {"name": "CPU", "description": "pinning", "properties": {}}
    assert (await cloud.call("POST", f"{ns}/objects", obj, cloud.admin)).status == 201
    renamed = await cloud.call("PUT", f"{ns}/objects/CPU", {"name": "Cores"}, cloud.admin)
    assert renamed.body["name"] == "Cores"
    tags = {"tags": [{"name": "a"}, {"name": "b"}]}
    assert (await cloud.call("POST", f"{ns}/tags", tags, cloud.admin)).status == 201
    assert (await cloud.call("POST", f"{ns}/tags/c", token=cloud.admin)).status == 201
    listed = await cloud.call("GET", f"{ns}/tags", token=cloud.admin)
    assert [t["name"] for t in listed.body["tags"]] == ["a", "b", "c"]
    full = await cloud.call("GET", ns, token=cloud.admin)
    assert [o["name"] for o in full.body["objects"]] == ["Cores"]
    assert full.body["resource_type_associations"][0]["prefix"] == "hw:"
    assert (await cloud.call("DELETE", ns, token=cloud.admin)).status == 403
    update = {"namespace": "unistack-test", "protected": False, "visibility": "public"}
    assert (await cloud.call("PUT", ns, update, cloud.admin)).body["visibility"] == "public"
    assert (await cloud.call("GET", ns, token=tenant.token)).status == 200
    assert (await cloud.call("DELETE", ns, token=cloud.admin)).status == 204
    assert (await cloud.call("GET", ns, token=cloud.admin)).status == 404
    schema = await cloud.call("GET", "/image/v2/schemas/metadefs/resource_type", token=cloud.admin)
    assert schema.body["name"] == "resource_type_association"
