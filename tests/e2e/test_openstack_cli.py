"""The real `openstack` CLI against `unistack up`: identity (Keystone v3) through the gateway."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import Cluster, wait_for

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


def test_network_server_volume_and_floating_ip_with_the_cli(cluster: Cluster) -> None:
    """The issue's list: network, subnet, router, port, security group rule, floating IP;
    server create / show / reboot / delete; volume create / attach / detach / delete."""
    tag = uuid.uuid4().hex[:6]
    net, sub, router, vm, vol = (f"{kind}-{tag}" for kind in ("net", "sub", "r", "vm", "vol"))
    cluster.openstack("network", "create", net)
    subnet = cluster.openstack_json(
        "subnet", "create", sub, "--network", net, "--subnet-range", "10.42.0.0/24"
    )
    assert subnet["gateway_ip"] == "10.42.0.1"
    cluster.openstack("router", "create", router, "--external-gateway", "public")
    cluster.openstack("router", "add", "subnet", router, sub)
    rule = cluster.openstack_json(
        "security", "group", "rule", "create", "default", "--protocol", "tcp", "--dst-port", "22"
    )
    assert rule["port_range_min"] == 22
    server = cluster.openstack_json(
        "server",
        "create",
        vm,
        "--image",
        "busybox",
        "--flavor",
        "m1.tiny",
        "--network",
        net,
        "--wait",
    )
    assert server["status"] == "ACTIVE"
    shown = cluster.openstack_json("server", "show", vm)
    assert net in shown["addresses"] and "10.42.0." in str(shown["addresses"])
    ports = cluster.openstack_json("port", "list", "--server", vm)
    assert len(ports) == 1
    floating = cluster.openstack_json("floating", "ip", "create", "public")
    cluster.openstack("server", "add", "floating", "ip", vm, floating["floating_ip_address"])
    cluster.openstack("server", "reboot", "--wait", vm)
    volume = cluster.openstack_json("volume", "create", "--size", "1", vol)
    wait_for(
        lambda: cluster.openstack_json("volume", "show", vol)["status"] == "available",
        "the volume to become available",
    )
    cluster.openstack("server", "add", "volume", vm, vol)
    wait_for(
        lambda: cluster.openstack_json("volume", "show", vol)["status"] == "in-use",
        "the volume to be attached",
    )
    cluster.openstack("server", "remove", "volume", vm, vol)
    wait_for(
        lambda: cluster.openstack_json("volume", "show", vol)["status"] == "available",
        "the volume to be detached",
    )
    cluster.openstack("volume", "delete", volume["id"])
    cluster.openstack("server", "delete", "--wait", vm)
    assert (
        cluster.openstack_json("port", "list", "--network", net, "--device-owner", "compute:nova")
        == []
    )
    listed = cluster.kubectl("get", "servers.compute.unistack.io", "-A", "-o", "name").stdout
    assert server["id"] not in listed
    hypervisors = cluster.openstack_json("hypervisor", "list")
    # A root agent runs servers as system containers; without root they are state only.
    real = os.geteuid() == 0 and shutil.which("runc") is not None
    types = {h["Hypervisor Hostname"]: h["Hypervisor Type"] for h in hypervisors}
    assert types["e2e-agent"] == ("container" if real else "fake")
