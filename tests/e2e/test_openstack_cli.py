"""The real `openstack` CLI against `unistack up`: identity (Keystone v3) through the gateway."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import Cluster

pytestmark = pytest.mark.e2e


def test_token_issue_as_admin(cluster: Cluster) -> None:
    token = cluster.openstack_json("token", "issue")
    assert token["id"] and token["project_id"] and token["user_id"]
    catalog = cluster.openstack_json("catalog", "list")
    assert "identity" in {entry["Type"] for entry in catalog}


def test_project_user_role_assignment_and_the_users_own_token(cluster: Cluster) -> None:
    suffix = uuid.uuid4().hex[:6]
    project, user = f"demo-{suffix}", f"alice-{suffix}"
    created = cluster.openstack_json("project", "create", project, "--description", "e2e")
    assert created["name"] == project and created["domain_id"] == "default"
    cluster.openstack_json("user", "create", user, "--password", "pw-e2e", "--project", project)
    cluster.openstack("role", "add", "--project", project, "--user", user, "member")
    assignments = cluster.openstack_json(
        "role", "assignment", "list", "--user", user, "--project", project, "--names"
    )
    assert [a["Role"] for a in assignments] == ["member"]
    as_user = {"OS_USERNAME": user, "OS_PASSWORD": "pw-e2e", "OS_PROJECT_NAME": project}
    token = cluster.openstack_json("token", "issue", **as_user)
    assert token["project_id"] == created["id"]
    # A member is not an administrator: Keystone's 403, in its own words.
    refused = cluster.openstack("user", "list", check=False, **as_user)
    assert refused.returncode != 0 and "identity:list_users" in refused.stderr
    # The same objects through the Kubernetes API.
    listed = cluster.kubectl("get", "projects.identity.unistack.io", "-o", "name").stdout
    assert f"project.identity.unistack.io/{created['id']}" in listed.split()
    cluster.openstack("role", "remove", "--project", project, "--user", user, "member")
    lost = cluster.openstack("token", "issue", check=False, **as_user)
    assert lost.returncode != 0 and "401" in lost.stderr
    cluster.openstack("user", "delete", user)
    cluster.openstack("project", "delete", project)
    names = {p["Name"] for p in cluster.openstack_json("project", "list")}
    assert project not in names


def test_image_create_upload_download_and_the_same_object_in_kubectl(
    cluster: Cluster, tmp_path: Path
) -> None:
    name = f"disk-{uuid.uuid4().hex[:6]}"
    disk = tmp_path / "disk.raw"
    disk.write_bytes(os.urandom(1536 * 1024))
    created = cluster.openstack_json(
        "image",
        "create",
        name,
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "--file",
        str(disk),
        "--property",
        "os_distro=debian",
    )
    assert created["status"] == "active" and created["size"] == disk.stat().st_size
    assert created["checksum"] == hashlib.md5(disk.read_bytes()).hexdigest()
    saved = tmp_path / "saved.raw"
    cluster.openstack("image", "save", "--file", str(saved), name)
    assert saved.read_bytes() == disk.read_bytes()
    listed = cluster.kubectl("get", "images.image.unistack.io", "-A", "-o", "name").stdout
    assert f"image.image.unistack.io/{created['id']}" in listed.split()
    # Built-in images are offered as public images.
    names = {image["Name"] for image in cluster.openstack_json("image", "list")}
    assert {name, "busybox"} <= names
    cluster.openstack("image", "delete", name)
    gone = cluster.openstack("image", "show", name, check=False)
    assert gone.returncode != 0
