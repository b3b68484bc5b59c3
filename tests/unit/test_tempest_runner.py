"""The Tempest runner's own logic: clouds.yaml, discovery, tempest.conf, the subunit summary.

`discover` is tested against a loopback HTTP server that answers the Keystone, Nova, Glance,
Neutron and Cinder calls with realistic bodies: what is under test is discover's requests and
parsing, not the services. `run` is tested with a stand-in `tempest` executable that prints a
real subunit stream. Installing Tempest itself is not tested here (it needs PyPI).
"""

from __future__ import annotations

import base64
import configparser
import dataclasses
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from unistack.verify import subunit, tempest

# A subunit v2 stream written by python-subunit 1.4.6's StreamResultToBytes (the library is in
# Tempest's virtualenv, not in this one). For each of six tests: `inprogress`, a text/plain
# attachment whose UTF-8 ("m\u00b3") contains the 0xB3 signature byte, then the final status
# (success, fail, success, skip, fail for a setUpClass, xfail); before each test, a line
# printed outside subunit. The library's own reader gives the same 18 events as
# `decode_subunit`. Recipe: StreamResultToBytes(out).status(test_id=..., test_status=...,
# timestamp=..., test_tags={"worker-0"}) and .status(test_id=..., file_name=...,
# file_bytes=..., mime_type="text/plain; charset=utf8", eof=True, timestamp=...).
SAMPLE_STREAM = base64.b64decode(
    "V0FSTklORzogYSBsaW5lIHByaW50ZWQgb3V0c2lkZSBzdWJ1bml0CrMrgkBpawULwABAT3RlbXBlc3QuYXBpLmlk"
    "ZW50aXR5LmFkbWluLnYzLnRlc3RfdXNlcnMuVXNlcnNWM1Rlc3RKU09OLnRlc3RfY3JlYXRlX3VzZXJbaWQtMV0B"
    "CHdvcmtlci0wtUlO67MrcEDLawULwABAT3RlbXBlc3QuYXBpLmlkZW50aXR5LmFkbWluLnYzLnRlc3RfdXNlcnMu"
    "VXNlcnNWM1Rlc3RKU09OLnRlc3RfY3JlYXRlX3VzZXJbaWQtMV0YdGV4dC9wbGFpbjsgY2hhcnNldD11dGY4EHB5"
    "dGhvbmxvZ2dpbmc6JydAQDIwMjYgSU5GTyB2b2x1bWUgb2YgMTAgbcKzIChpdHMgVVRGLTggaG9sZHMgdGhlIHNp"
    "Z25hdHVyZSBieXRlKQq2IoyLsyuDQGlrBQvAAEBPdGVtcGVzdC5hcGkuaWRlbnRpdHkuYWRtaW4udjMudGVzdF91"
    "c2Vycy5Vc2Vyc1YzVGVzdEpTT04udGVzdF9jcmVhdGVfdXNlcltpZC0xXQEId29ya2VyLTBALE8pV0FSTklORzog"
    "YSBsaW5lIHByaW50ZWQgb3V0c2lkZSBzdWJ1bml0CrMrgkB2awULwABAXHRlbXBlc3QuYXBpLmNvbXB1dGUuc2Vy"
    "dmVycy50ZXN0X2NyZWF0ZV9zZXJ2ZXIuU2VydmVyc1Rlc3RKU09OLnRlc3RfbGlzdF9zZXJ2ZXJzW2lkLTIsc21v"
    "a2VdAQh3b3JrZXItMEeSRZezK3BA2GsFC8AAQFx0ZW1wZXN0LmFwaS5jb21wdXRlLnNlcnZlcnMudGVzdF9jcmVh"
    "dGVfc2VydmVyLlNlcnZlcnNUZXN0SlNPTi50ZXN0X2xpc3Rfc2VydmVyc1tpZC0yLHNtb2tlXRh0ZXh0L3BsYWlu"
    "OyBjaGFyc2V0PXV0ZjgQcHl0aG9ubG9nZ2luZzonJ0BAMjAyNiBJTkZPIHZvbHVtZSBvZiAxMCBtwrMgKGl0cyBV"
    "VEYtOCBob2xkcyB0aGUgc2lnbmF0dXJlIGJ5dGUpCqgmIeKzK4ZAdmsFC8AAQFx0ZW1wZXN0LmFwaS5jb21wdXRl"
    "LnNlcnZlcnMudGVzdF9jcmVhdGVfc2VydmVyLlNlcnZlcnNUZXN0SlNPTi50ZXN0X2xpc3Rfc2VydmVyc1tpZC0y"
    "LHNtb2tlXQEId29ya2VyLTCAcoVrV0FSTklORzogYSBsaW5lIHByaW50ZWQgb3V0c2lkZSBzdWJ1bml0CrMrgkBw"
    "awULwABAVnRlbXBlc3QuYXBpLmNvbXB1dGUuZmxhdm9ycy50ZXN0X2ZsYXZvcnMuRmxhdm9yc1YyVGVzdEpTT04u"
    "dGVzdF9nZXRfZmxhdm9yW2lkLTMsc21va2VdAQh3b3JrZXItMFrLVoCzK3BA0msFC8AAQFZ0ZW1wZXN0LmFwaS5j"
    "b21wdXRlLmZsYXZvcnMudGVzdF9mbGF2b3JzLkZsYXZvcnNWMlRlc3RKU09OLnRlc3RfZ2V0X2ZsYXZvcltpZC0z"
    "LHNtb2tlXRh0ZXh0L3BsYWluOyBjaGFyc2V0PXV0ZjgQcHl0aG9ubG9nZ2luZzonJ0BAMjAyNiBJTkZPIHZvbHVt"
    "ZSBvZiAxMCBtwrMgKGl0cyBVVEYtOCBob2xkcyB0aGUgc2lnbmF0dXJlIGJ5dGUpCrvdoL6zK4NAcGsFC8AAQFZ0"
    "ZW1wZXN0LmFwaS5jb21wdXRlLmZsYXZvcnMudGVzdF9mbGF2b3JzLkZsYXZvcnNWMlRlc3RKU09OLnRlc3RfZ2V0"
    "X2ZsYXZvcltpZC0zLHNtb2tlXQEId29ya2VyLTAqfxUvV0FSTklORzogYSBsaW5lIHByaW50ZWQgb3V0c2lkZSBz"
    "dWJ1bml0CrMrgkB9awULwABAY3RlbXBlc3QuYXBpLm5ldHdvcmsudGVzdF9uZXR3b3Jrcy5OZXR3b3Jrc1Rlc3Qu"
    "dGVzdF9jcmVhdGVfdXBkYXRlX2RlbGV0ZV9uZXR3b3JrX3N1Ym5ldFtpZC00LHNtb2tlXQEId29ya2VyLTCmRnZ5"
    "sytwQN9rBQvAAEBjdGVtcGVzdC5hcGkubmV0d29yay50ZXN0X25ldHdvcmtzLk5ldHdvcmtzVGVzdC50ZXN0X2Ny"
    "ZWF0ZV91cGRhdGVfZGVsZXRlX25ldHdvcmtfc3VibmV0W2lkLTQsc21va2VdGHRleHQvcGxhaW47IGNoYXJzZXQ9"
    "dXRmOBBweXRob25sb2dnaW5nOicnQEAyMDI2IElORk8gdm9sdW1lIG9mIDEwIG3CsyAoaXRzIFVURi04IGhvbGRz"
    "IHRoZSBzaWduYXR1cmUgYnl0ZSkK8oHz1rMrhUB9awULwABAY3RlbXBlc3QuYXBpLm5ldHdvcmsudGVzdF9uZXR3"
    "b3Jrcy5OZXR3b3Jrc1Rlc3QudGVzdF9jcmVhdGVfdXBkYXRlX2RlbGV0ZV9uZXR3b3JrX3N1Ym5ldFtpZC00LHNt"
    "b2tlXQEId29ya2VyLTBouNPSV0FSTklORzogYSBsaW5lIHByaW50ZWQgb3V0c2lkZSBzdWJ1bml0CrMrgkBYawUL"
    "wAA/c2V0VXBDbGFzcyAodGVtcGVzdC5hcGkudm9sdW1lLnRlc3Rfdm9sdW1lc19nZXQuVm9sdW1lc0dldFRlc3Qp"
    "AQh3b3JrZXItMCVryFKzK3BAumsFC8AAP3NldFVwQ2xhc3MgKHRlbXBlc3QuYXBpLnZvbHVtZS50ZXN0X3ZvbHVt"
    "ZXNfZ2V0LlZvbHVtZXNHZXRUZXN0KRh0ZXh0L3BsYWluOyBjaGFyc2V0PXV0ZjgQcHl0aG9ubG9nZ2luZzonJ0BA"
    "MjAyNiBJTkZPIHZvbHVtZSBvZiAxMCBtwrMgKGl0cyBVVEYtOCBob2xkcyB0aGUgc2lnbmF0dXJlIGJ5dGUpCnew"
    "XwqzK4ZAWGsFC8AAP3NldFVwQ2xhc3MgKHRlbXBlc3QuYXBpLnZvbHVtZS50ZXN0X3ZvbHVtZXNfZ2V0LlZvbHVt"
    "ZXNHZXRUZXN0KQEId29ya2VyLTC2DkHEV0FSTklORzogYSBsaW5lIHByaW50ZWQgb3V0c2lkZSBzdWJ1bml0CrMr"
    "gkCEawULwABAanRlbXBlc3QuYXBpLmltYWdlLnYyLnRlc3RfaW1hZ2VzLkJhc2ljT3BlcmF0aW9uc0ltYWdlc1Rl"
    "c3QudGVzdF9yZWdpc3Rlcl91cGxvYWRfZ2V0X2ltYWdlX2ZpbGVbaWQtNSxzbW9rZV0BCHdvcmtlci0wmf4IuLMr"
    "cEDmawULwABAanRlbXBlc3QuYXBpLmltYWdlLnYyLnRlc3RfaW1hZ2VzLkJhc2ljT3BlcmF0aW9uc0ltYWdlc1Rl"
    "c3QudGVzdF9yZWdpc3Rlcl91cGxvYWRfZ2V0X2ltYWdlX2ZpbGVbaWQtNSxzbW9rZV0YdGV4dC9wbGFpbjsgY2hh"
    "cnNldD11dGY4EHB5dGhvbmxvZ2dpbmc6JydAQDIwMjYgSU5GTyB2b2x1bWUgb2YgMTAgbcKzIChpdHMgVVRGLTgg"
    "aG9sZHMgdGhlIHNpZ25hdHVyZSBieXRlKQq9Y5rMsyuHQIRrBQvAAEBqdGVtcGVzdC5hcGkuaW1hZ2UudjIudGVz"
    "dF9pbWFnZXMuQmFzaWNPcGVyYXRpb25zSW1hZ2VzVGVzdC50ZXN0X3JlZ2lzdGVyX3VwbG9hZF9nZXRfaW1hZ2Vf"
    "ZmlsZVtpZC01LHNtb2tlXQEId29ya2VyLTBWqVrO"
)
SAMPLE_OUTCOMES = {
    "tempest.api.identity.admin.v3.test_users.UsersV3TestJSON.test_create_user[id-1]": "passed",
    "tempest.api.compute.servers.test_create_server.ServersTestJSON"
    ".test_list_servers[id-2,smoke]": "failed",
    "tempest.api.compute.flavors.test_flavors.FlavorsV2TestJSON"
    ".test_get_flavor[id-3,smoke]": "passed",
    "tempest.api.network.test_networks.NetworksTest"
    ".test_create_update_delete_network_subnet[id-4,smoke]": "skipped",
    "setUpClass (tempest.api.volume.test_volumes_get.VolumesGetTest)": "failed",
    "tempest.api.image.v2.test_images.BasicOperationsImagesTest"
    ".test_register_upload_get_image_file[id-5,smoke]": "passed",
}

PROJECT_ID = "5b2e6f5c0a5f4d6e9c1e2a3b4c5d6e7f"
IMAGE_ID = "0c9f3b4e-6a1d-4c55-9a8e-2f7d6c5b4a31"
ALT_IMAGE_ID = "7d1e2c3b-4a59-4e68-8f7a-6b5c4d3e2f10"
PUBLIC_NET_ID = "a4e5f6a7-b8c9-4d0e-9f1a-2b3c4d5e6f70"
KERNEL_ID = "53ea9c6f-0364-59ce-a0e4-c8d700df5461"
RAMDISK_ID = "1a253df2-a80b-5f6b-8eef-75231d6814f2"
VM_IMAGES_PATH = "/image/v2/images?name=unistack-vm&visibility=public&status=active"
VM_ROOT_DISK = {
    "id": "b5fb9029-1ac6-56ff-917a-5f9841c5fde7",
    "name": "unistack-vm",
    "status": "active",
    "disk_format": "qcow2",
    "container_format": "bare",
    "kernel_id": KERNEL_ID,
    "ramdisk_id": RAMDISK_ID,
    "os_command_line": "console=ttyS0 panic=-1 quiet cryptomgr.notests",
    "hw_disk_bus": "virtio",
}


def access(auth_url: str = "http://127.0.0.1:8080/identity") -> tempest.CloudAccess:
    return tempest.CloudAccess(auth_url, "admin", "s3cret", "admin", region_name="RegionOne")


# --- clouds.yaml -----------------------------------------------------------------------------


def test_load_cloud_reads_the_named_cloud(tmp_path: Path) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        "clouds:\n"
        "  other: {auth: {auth_url: http://x}}\n"
        "  unistack:\n"
        "    region_name: RegionTwo\n"
        "    auth:\n"
        "      auth_url: http://127.0.0.1:8080/identity/v3\n"
        "      username: admin\n"
        "      password: s3cret\n"
        "      project_name: admin\n"
        "      user_domain_name: Default\n"
        "      project_domain_name: Default\n"
    )
    cloud = tempest.load_cloud(clouds)
    assert cloud == tempest.CloudAccess(
        "http://127.0.0.1:8080/identity/v3", "admin", "s3cret", "admin", region_name="RegionTwo"
    )
    assert cloud.identity_v3 == "http://127.0.0.1:8080/identity/v3"
    assert access("http://h/identity/").identity_v3 == "http://h/identity/v3"


def test_load_cloud_says_what_is_missing(tmp_path: Path) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds:\n  unistack:\n    auth: {auth_url: http://x}\n")
    with pytest.raises(tempest.VerifyError, match="no usable cloud 'unistack'"):
        tempest.load_cloud(clouds)
    with pytest.raises(tempest.VerifyError, match="cannot read"):
        tempest.load_cloud(tmp_path / "absent.yaml")


# --- discovery against a loopback server -----------------------------------------------------


class FakeCloud(BaseHTTPRequestHandler):
    """Keystone, Nova, Glance, Neutron and Cinder under one gateway, as unistack serves them."""

    server: FakeCloudServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.record()
        if self.path == f"/volume/v3/{PROJECT_ID}/types":
            made = {"id": "t-made", **body["volume_type"]}
            self.server.volume_types.append(made)
            return self.reply(200, {"volume_type": made})
        self.server.auth_body = body
        if self.path != "/identity/v3/auth/tokens":
            return self.reply(404, {})
        self.reply(
            201,
            self.server.token_body or {"token": self.token()},
            {"x-subject-token": "gAAAA-token"},
        )  # as uvicorn

    def do_GET(self) -> None:
        self.record()
        bodies = self.bodies()
        if self.path not in bodies:
            return self.reply(404, {"error": self.path})
        self.reply(200, bodies[self.path])

    def record(self) -> None:
        self.server.requests.append((self.command, self.path, self.headers.get("X-Auth-Token")))

    def reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def base(self) -> str:
        return f"http://{self.headers['Host']}"

    def token(self) -> dict[str, Any]:
        services = [
            ("identity", "/identity"),
            ("compute", "/compute/v2.1"),
            ("image", "/image"),
            ("network", "/network"),
        ]
        if self.server.with_volume:
            services.append(("block-storage", f"/volume/v3/{PROJECT_ID}"))
        catalog = [
            {
                "type": kind,
                "name": kind,
                "id": kind,
                "endpoints": [
                    {
                        "interface": i,
                        "region": "RegionOne",
                        "region_id": "RegionOne",
                        "url": f"{self.base()}{path}",
                        "id": f"{kind}-{i}",
                    }
                    for i in ("internal", "public")
                ],
            }
            for kind, path in services
        ]
        return {
            "methods": ["password"],
            "expires_at": "2026-11-24T05:00:00.000000Z",
            "user": {"id": "u1", "name": "admin", "domain": {"id": "default", "name": "Default"}},
            "project": {"id": PROJECT_ID, "name": "admin", "domain": {"id": "default"}},
            "roles": [{"id": "r1", "name": "admin"}],
            "catalog": catalog,
        }

    def bodies(self) -> dict[str, Any]:
        return {
            "/compute/v2.1/": {
                "version": {
                    "id": "v2.1",
                    "status": "CURRENT",
                    "version": "2.96",
                    "min_version": "2.1",
                    "links": [],
                }
            },
            "/compute/v2.1/flavors/detail": {
                "flavors": [
                    {"id": "3", "name": "m1.medium", "ram": 4096, "vcpus": 2, "disk": 40},
                    {"id": "1", "name": "m1.tiny", "ram": 512, "vcpus": 1, "disk": 1},
                    {"id": "2", "name": "m1.small", "ram": 2048, "vcpus": 1, "disk": 20},
                ]
            },
            "/compute/v2.1/os-hypervisors/detail": {
                "hypervisors": [
                    {"id": "a", "state": "up", "status": "enabled"},
                    {"id": "b", "state": "up", "status": "enabled"},
                    {"id": "c", "state": "down", "status": "enabled"},
                    {"id": "d", "state": "up", "status": "disabled"},
                ]
            },
            "/image/v2/images?visibility=public&status=active&sort=name:asc": {
                "images": [
                    {"id": IMAGE_ID, "name": "cirros", "status": "active"},
                    {"id": "queued-one", "name": "empty", "status": "queued"},
                    {"id": ALT_IMAGE_ID, "name": "cirros-alt", "status": "active"},
                ],
                "first": "/v2/images",
                "schema": "/v2/schemas/images",
            },
            VM_IMAGES_PATH: {"images": self.server.vm_images},
            "/network/v2.0/networks?router:external=true": {
                "networks": [{"id": PUBLIC_NET_ID, "name": "public", "router:external": True}]
            },
            "/network/v2.0/extensions": {
                "extensions": [{"alias": "router"}, {"alias": "external-net"}]
            },
            f"/volume/v3/{PROJECT_ID}/types?is_public=None": {
                "volume_types": self.server.volume_types
            },
            "/volume/v3/": {
                "versions": [
                    {
                        "id": "v3.0",
                        "status": "CURRENT",
                        "version": "3.70",
                        "min_version": "3.0",
                        "links": [],
                    }
                ]
            },
        }


class FakeCloudServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakeCloud)
        self.requests: list[tuple[str, str, str | None]] = []
        self.auth_body: Any = None
        self.with_volume = True
        self.token_body: Any = None  # None: a realistic token
        self.volume_types: list[dict[str, Any]] = [{"id": "t0", "name": "__DEFAULT__"}]
        self.vm_images: list[dict[str, Any]] = [VM_ROOT_DISK]

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@pytest.fixture
def fake_cloud() -> Iterator[FakeCloudServer]:
    server = FakeCloudServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def cloud_of(server: FakeCloudServer) -> tempest.CloudAccess:
    return access(f"http://127.0.0.1:{server.port}/identity")


def test_discover_reads_what_the_config_needs(fake_cloud: FakeCloudServer) -> None:
    facts = tempest.discover(cloud_of(fake_cloud))
    assert facts.catalog_types == {
        "keystone": "identity",
        "nova": "compute",
        "glance": "image",
        "neutron": "network",
        "cinder": "block-storage",
    }
    assert facts.images == (IMAGE_ID, ALT_IMAGE_ID)
    assert facts.flavors == ("1", "2", "3")
    assert facts.vm_flavors == ("1", "2", "3")  # each has the tiny VM's 512 MB
    assert facts.public_network == tempest.Network(PUBLIC_NET_ID, "public")
    assert facts.network_extensions == ("external-net", "router")
    assert facts.compute_microversions == tempest.Microversions("2.1", "2.96")
    assert facts.volume_microversions == tempest.Microversions("3.0", "3.70")
    assert facts.compute_nodes == 2  # the down and the disabled take no servers


def built_vm_image(folder: Path) -> Path:
    folder.mkdir()
    (folder / "disk.qcow2").write_bytes(b"QFI\xfb")
    return folder


def test_discover_offers_the_built_vm_root_disk_as_registered(
    fake_cloud: FakeCloudServer, tmp_path: Path
) -> None:
    vm = built_vm_image(tmp_path / "vm")
    facts = tempest.discover(cloud_of(fake_cloud), vm)
    assert facts.scenario_image == tempest.ScenarioImage(
        file=vm / "disk.qcow2",
        disk_format="qcow2",
        container_format="bare",
        properties={
            "kernel_id": KERNEL_ID,
            "ramdisk_id": RAMDISK_ID,
            "os_command_line": "console=ttyS0 panic=-1 quiet cryptomgr.notests",
        },
        image_id=VM_ROOT_DISK["id"],
    )


def test_discover_offers_no_vm_image_unless_built_here_and_registered(
    fake_cloud: FakeCloudServer, tmp_path: Path
) -> None:
    assert tempest.discover(cloud_of(fake_cloud), tmp_path / "absent").scenario_image is None
    assert not any(path == VM_IMAGES_PATH for _, path, _ in fake_cloud.requests)
    assert tempest.discover(cloud_of(fake_cloud)).scenario_image is None
    fake_cloud.vm_images = []  # built, but this cloud did not register it
    vm = built_vm_image(tmp_path / "vm")
    assert tempest.discover(cloud_of(fake_cloud), vm).scenario_image is None
    fake_cloud.vm_images = [{**VM_ROOT_DISK, "kernel_id": None}]  # not the bootable one
    assert tempest.discover(cloud_of(fake_cloud), vm).scenario_image is None


def test_discover_authenticates_as_the_admin_project(fake_cloud: FakeCloudServer) -> None:
    tempest.discover(cloud_of(fake_cloud))
    auth = fake_cloud.auth_body["auth"]
    assert auth["identity"] == {
        "methods": ["password"],
        "password": {
            "user": {"name": "admin", "password": "s3cret", "domain": {"name": "Default"}}
        },
    }
    assert auth["scope"] == {"project": {"name": "admin", "domain": {"name": "Default"}}}
    method, path, token = fake_cloud.requests[0]
    assert (method, path, token) == ("POST", "/identity/v3/auth/tokens", None)
    later = fake_cloud.requests[1:]
    assert later and all(token == "gAAAA-token" for _, _, token in later)


def test_discover_makes_a_multiattach_volume_type_once(fake_cloud: FakeCloudServer) -> None:
    """As DevStack does for Tempest: a type with multiattach="<is> True", made when the
    cloud has none, then found; tempest.conf names it."""
    assert tempest.discover(cloud_of(fake_cloud)).multiattach_type == "multiattach"
    made = [t for t in fake_cloud.volume_types if t["name"] == "multiattach"]
    assert made and made[0]["extra_specs"] == {"multiattach": "<is> True"}
    facts = tempest.discover(cloud_of(fake_cloud))
    posts = [path for method, path, _ in fake_cloud.requests if method == "POST"]
    assert posts.count(f"/volume/v3/{PROJECT_ID}/types") == 1
    assert facts.multiattach_type == "multiattach"


def test_discover_marks_a_missing_service_unavailable(fake_cloud: FakeCloudServer) -> None:
    fake_cloud.with_volume = False
    facts = tempest.discover(cloud_of(fake_cloud))
    assert not facts.available("cinder")
    assert facts.volume_microversions is None
    services = tempest.tempest_config(facts, Path("/ws"))["service_available"]
    assert services["cinder"] == "false"
    assert services["nova"] == "true"


def test_discover_reports_a_reply_without_a_token(fake_cloud: FakeCloudServer) -> None:
    fake_cloud.token_body = {"error": "no token here"}
    with pytest.raises(tempest.VerifyError, match="without an expected field"):
        tempest.discover(cloud_of(fake_cloud))


def test_discover_reports_a_refused_login(fake_cloud: FakeCloudServer) -> None:
    cloud = access(f"http://127.0.0.1:{fake_cloud.port}/nowhere")
    with pytest.raises(tempest.VerifyError, match="404"):
        tempest.discover(cloud)


# --- tempest.conf ----------------------------------------------------------------------------


def full_facts() -> tempest.CloudFacts:
    return tempest.CloudFacts(
        access=access(),
        catalog_types={
            "keystone": "identity",
            "nova": "compute",
            "glance": "image",
            "neutron": "network",
            "cinder": "volumev3",
        },
        images=(IMAGE_ID, ALT_IMAGE_ID),
        flavors=("1", "2"),
        public_network=tempest.Network(PUBLIC_NET_ID, "public"),
        network_extensions=("external-net", "router"),
        compute_microversions=tempest.Microversions("2.1", "2.96"),
        volume_microversions=tempest.Microversions("3.0", "3.70"),
        multiattach_type="multiattach",
        compute_nodes=2,
    )


def read_config(path: Path) -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    assert config.read(path) == [str(path)]
    return config


def test_write_config_has_the_keys_tempest_needs(tmp_path: Path) -> None:
    path = tempest.write_config(full_facts(), tmp_path)
    assert path == tmp_path / "etc" / "tempest.conf"
    assert path.stat().st_mode & 0o777 == 0o600
    config = read_config(path)
    assert dict(config["auth"]) == {
        "use_dynamic_credentials": "true",
        "admin_username": "admin",
        "admin_password": "s3cret",
        "admin_project_name": "admin",
        "admin_domain_name": "Default",
        **dict(config["DEFAULT"]),  # configparser shows DEFAULT's keys in every section
    }
    assert config["identity"]["uri_v3"] == "http://127.0.0.1:8080/identity/v3"
    assert config["identity"]["auth_version"] == "v3"
    assert config["identity"]["region"] == "RegionOne"
    assert config["DEFAULT"]["log_dir"] == str(tmp_path / "logs")
    assert config["oslo_concurrency"]["lock_path"] == str(tmp_path / "tempest_lock")
    services = config["service_available"]
    assert [services[s] for s in ("nova", "neutron", "cinder", "glance", "swift")] == [
        "true",
        "true",
        "true",
        "true",
        "false",
    ]
    assert config["validation"]["run_validation"] == "true"


def test_validation_logs_in_as_root_with_a_key_through_a_floating_ip(tmp_path: Path) -> None:
    validation = read_config(tempest.write_config(full_facts(), tmp_path))["validation"]
    assert validation["run_validation"] == "true"
    assert (validation["connect_method"], validation["auth_method"]) == ("floating", "keypair")
    assert validation["network_for_ssh"] == "public"  # the public network's name
    assert validation["image_ssh_user"] == validation["image_alt_ssh_user"] == "root"
    assert validation["security_group"] == validation["security_group_rules"] == "true"
    assert int(validation["ssh_timeout"]) >= 60
    features = read_config(tmp_path / "etc" / "tempest.conf")["compute-feature-enabled"]
    assert features["metadata_service"] == features["hostname_fqdn_sanitization"] == "true"
    assert features["dhcp_domain"] == ""  # the metadata's hostname has no domain appended


def test_write_config_uses_the_discovered_resources(tmp_path: Path) -> None:
    config = read_config(tempest.write_config(full_facts(), tmp_path))
    compute = config["compute"]
    assert (compute["image_ref"], compute["image_ref_alt"]) == (IMAGE_ID, ALT_IMAGE_ID)
    assert (compute["flavor_ref"], compute["flavor_ref_alt"]) == ("1", "2")
    assert (compute["min_microversion"], compute["max_microversion"]) == ("2.1", "2.96")
    assert int(compute["build_timeout"]) > 0
    assert compute["min_compute_nodes"] == "2"  # Tempest's multi-host tests run
    network = config["network"]
    assert network["public_network_id"] == PUBLIC_NET_ID
    assert network["floating_network_name"] == "public"
    assert network["project_network_cidr"] == tempest.PROJECT_NETWORK_CIDR
    features = config["network-feature-enabled"]
    assert (features["ipv6"], features["floating_ips"]) == ("true", "true")
    assert features["api_extensions"] == "external-net,router"
    volume = config["volume"]
    assert volume["catalog_type"] == "volumev3"  # the type the catalog has
    assert (volume["min_microversion"], volume["max_microversion"]) == ("3.0", "3.70")
    assert volume["volume_type_multiattach"] == "multiattach"
    assert config["compute-feature-enabled"]["volume_multiattach"] == "true"


def test_write_config_turns_off_what_the_cloud_lacks(tmp_path: Path) -> None:
    facts = tempest.CloudFacts(access=access(), catalog_types={"keystone": "identity"})
    config = read_config(tempest.write_config(facts, tmp_path))
    assert config["service_available"]["nova"] == "false"
    assert config["compute"]["image_ref"] == ""
    assert not config.has_option("compute", "max_microversion")  # Tempest then skips them
    assert not config.has_option("network", "public_network_id")
    assert config["network-feature-enabled"]["floating_ips"] == "false"
    assert config["validation"]["run_validation"] == "false"  # no floating IP to reach
    assert not config.has_option("validation", "connect_method")
    assert not config.has_option("network-feature-enabled", "api_extensions")
    assert config["volume"]["catalog_type"] == "block-storage"
    assert not config.has_option("volume", "volume_type_multiattach")
    assert config["compute-feature-enabled"]["volume_multiattach"] == "false"
    assert config["identity-feature-enabled"]["api_v2"] == "false"
    assert config["compute-feature-enabled"]["live_migration"] == "false"  # one host
    assert config["compute-feature-enabled"]["resize"] == "true"  # served, on the fake driver


def vm_scenario_image(command_line: str) -> tempest.ScenarioImage:
    properties = {"kernel_id": KERNEL_ID, "ramdisk_id": RAMDISK_ID}
    properties["os_command_line"] = command_line
    return tempest.ScenarioImage(Path("/vm/disk.qcow2"), "qcow2", "bare", properties)


def test_scenario_tests_upload_the_vm_root_disk_with_its_boot_properties(tmp_path: Path) -> None:
    image = vm_scenario_image("console=ttyS0 panic=-1 quiet")
    facts = dataclasses.replace(full_facts(), scenario_image=image)
    scenario = read_config(tempest.write_config(facts, tmp_path))["scenario"]
    assert scenario["img_file"] == "/vm/disk.qcow2"
    assert (scenario["img_disk_format"], scenario["img_container_format"]) == ("qcow2", "bare")
    assert scenario["img_properties"] == (
        f"kernel_id:{KERNEL_ID},ramdisk_id:{RAMDISK_ID},"
        "os_command_line:console=ttyS0 panic=-1 quiet"
    )
    assert scenario["target_dir"] == "/mnt"  # the root disk: the timestamp survives a reboot


def test_vm_servers_boot_tempests_servers_from_the_vm_and_move_them_live(tmp_path: Path) -> None:
    image = dataclasses.replace(vm_scenario_image("console=ttyS0"), image_id="vm-image")
    facts = dataclasses.replace(full_facts(), scenario_image=image, vm_flavors=("1", "2"))
    config = read_config(tempest.write_config(facts, tmp_path, vm_servers=True))
    compute = config["compute"]
    assert (compute["image_ref"], compute["image_ref_alt"]) == ("vm-image", "vm-image")
    assert (compute["flavor_ref"], compute["flavor_ref_alt"]) == ("1", "2")
    features = config["compute-feature-enabled"]
    assert features["live_migration"] == features["block_migration_for_live_migration"] == "true"
    assert features["volume_backed_live_migration"] == "true"
    one_host = dataclasses.replace(facts, compute_nodes=1)
    config = read_config(tempest.write_config(one_host, tmp_path, vm_servers=True))
    assert config["compute-feature-enabled"]["live_migration"] == "false"  # nowhere to go
    plain = read_config(tempest.write_config(facts, tmp_path))
    assert plain["compute"]["image_ref"] == IMAGE_ID
    assert plain["compute-feature-enabled"]["live_migration"] == "false"  # a container
    with pytest.raises(tempest.VerifyError, match="tiny VM image"):
        tempest.write_config(full_facts(), tmp_path, vm_servers=True)


def test_without_the_vm_image_tempest_keeps_its_scenario_defaults(tmp_path: Path) -> None:
    config = read_config(tempest.write_config(full_facts(), tmp_path))
    assert not config.has_section("scenario")


def test_dict_option_leaves_out_what_oslo_would_not_read_back() -> None:
    """oslo.config splits a dict option at commas and strips each side: a command line with
    a comma would fail the whole option, so it is left out (compute then boots the root disk
    with the VM image's default command line). Colons and inner spaces survive."""
    assert tempest.dict_option({"a": "x y:z", "b": "2"}) == "a:x y:z,b:2"
    assert tempest.dict_option({"a": "ip=1,2", "b": "2"}) == "b:2"
    assert tempest.dict_option({"a": " padded", "b": "2"}) == "b:2"
    assert tempest.dict_option({"a:b": "1", "c": "2"}) == "c:2"
    assert tempest.dict_option({}) == ""


def test_one_image_and_flavor_serve_as_their_own_alternates() -> None:
    facts = tempest.CloudFacts(
        access=access(), catalog_types={}, images=(IMAGE_ID,), flavors=("1",)
    )
    compute = tempest.tempest_config(facts, Path("/ws"))["compute"]
    assert compute["image_ref_alt"] == IMAGE_ID
    assert compute["flavor_ref_alt"] == "1"


# --- the subunit stream and the summary ------------------------------------------------------


def test_decode_subunit_reads_a_real_stream() -> None:
    events = list(subunit.decode_subunit(SAMPLE_STREAM))
    assert len(events) == 18
    first = "tempest.api.identity.admin.v3.test_users.UsersV3TestJSON.test_create_user[id-1]"
    assert events[:3] == [
        subunit.SubunitEvent(first, "inprogress"),
        subunit.SubunitEvent(first, None),  # the attachment
        subunit.SubunitEvent(first, "success"),
    ]


def test_decode_subunit_skips_a_corrupted_packet() -> None:
    damaged = bytearray(SAMPLE_STREAM)
    damaged[SAMPLE_STREAM.index(b"test_create_user") + 2] ^= 0xFF  # breaks that packet's CRC
    events = list(subunit.decode_subunit(bytes(damaged)))
    assert len(events) == 17


def test_final_outcomes_of_the_sample() -> None:
    assert subunit.final_outcomes(subunit.decode_subunit(SAMPLE_STREAM)) == SAMPLE_OUTCOMES


def test_a_class_skipped_in_setup_gives_its_tests_that_outcome() -> None:
    listed = "tempest.api.volume.test_volumes_get.VolumesGetTest"
    events = [
        subunit.SubunitEvent(f"{listed}.test_get[id-1,smoke]", "exists"),
        subunit.SubunitEvent(f"{listed}.test_clone[id-2]", "exists"),
        subunit.SubunitEvent("tempest.api.image.v2.test_images.ImagesTest.test_a[id-3]", "exists"),
        subunit.SubunitEvent(f"setUpClass ({listed})", "skip"),
        subunit.SubunitEvent("tempest.api.image.v2.test_images.ImagesTest.test_a[id-3]", "success"),
    ]
    assert subunit.final_outcomes(events) == {
        f"{listed}.test_get[id-1,smoke]": "skipped",
        f"{listed}.test_clone[id-2]": "skipped",
        "tempest.api.image.v2.test_images.ImagesTest.test_a[id-3]": "passed",
    }


def test_service_of_a_test() -> None:
    assert subunit.service_of("tempest.api.compute.servers.test_x.T.test_y[id-1]") == "compute"
    assert subunit.service_of("setUpClass (tempest.api.volume.test_v.VolumesTest)") == "volume"
    assert subunit.service_of("tempest.scenario.test_minimum_basic.T.test_b[id-2]") == "scenario"
    assert subunit.service_of("something.else") == "other"


def test_summarize_counts_per_service() -> None:
    summary = subunit.summarize(SAMPLE_OUTCOMES)
    assert (summary.passed, summary.failed, summary.skipped) == (3, 2, 1)
    assert summary.by_service == {
        "compute": {"passed": 1, "failed": 1, "skipped": 0},
        "identity": {"passed": 1, "failed": 0, "skipped": 0},
        "image": {"passed": 1, "failed": 0, "skipped": 0},
        "network": {"passed": 0, "failed": 0, "skipped": 1},
        "volume": {"passed": 0, "failed": 1, "skipped": 0},
    }
    assert summary.failures == sorted(t for t, o in SAMPLE_OUTCOMES.items() if o == "failed")


def test_run_saves_the_stream_and_the_summary(tmp_path: Path) -> None:
    sample = tmp_path / "sample.subunit"
    sample.write_bytes(SAMPLE_STREAM)
    fake_tempest = tmp_path / "tempest"
    fake_tempest.write_text(f'#!/bin/sh\necho "$@" > args\ncat {sample}\nexit 1\n')
    fake_tempest.chmod(0o755)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    summary = tempest.run(fake_tempest, workspace, r"tempest\.api", 4)
    assert (workspace / "args").read_text().split() == [
        "run",
        "--config-file",
        str(workspace / "etc" / "tempest.conf"),
        "--regex",
        r"tempest\.api",
        "--concurrency",
        "4",
        "--subunit",
    ]
    assert (workspace / "results.subunit").read_bytes() == SAMPLE_STREAM
    saved = json.loads((workspace / "summary.json").read_text())
    assert saved == summary.as_json()
    assert (saved["passed"], saved["failed"], saved["skipped"]) == (3, 2, 1)
    assert set(saved["by_service"]) == {"compute", "identity", "image", "network", "volume"}


def test_print_summary_shows_a_row_per_service() -> None:
    console = Console(record=True, width=120)
    tempest.print_summary(subunit.summarize(SAMPLE_OUTCOMES), console)
    text = console.export_text()
    for service in ("compute", "identity", "image", "network", "volume", "total"):
        assert service in text
    assert "FAILED setUpClass (tempest.api.volume.test_volumes_get.VolumesGetTest)" in text


def test_ensure_tempest_is_a_no_op_when_installed(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "tempest").touch()
    (tmp_path / tempest.INSTALLED_MARKER).write_text("\n".join(tempest.TEMPEST_REQUIREMENTS) + "\n")
    assert tempest.ensure_tempest(tmp_path) == tmp_path / "bin" / "tempest"
    assert sorted(os.listdir(tmp_path)) == ["bin", tempest.INSTALLED_MARKER]  # nothing was added
