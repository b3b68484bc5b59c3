"""The metadata service without namespaces: who is asking, and Nova's and EC2's answers."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from unistack.agent import instancemetadata, metadata

Obj = dict[str, Any]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0 me@laptop"
SERVER_ID = "5e1f0000-0000-4000-8000-000000000001"


def obj(name: str, spec: Obj) -> Obj:
    return {"metadata": {"name": name, "namespace": "p"}, "spec": spec}


PORTS = [
    obj(
        "vm-port",
        {
            "network_id": "net-1",
            "device_owner": "compute:nova",
            "device_id": SERVER_ID,
            "fixed_ips": [{"subnet_id": "s", "ip_address": "10.0.0.5"}],
        },
    ),
    obj(
        "router-port",
        {
            "network_id": "net-1",
            "device_owner": "network:router_interface",
            "device_id": "r",
            "fixed_ips": [{"subnet_id": "s", "ip_address": "10.0.0.1"}],
        },
    ),
]
SERVERS = [
    obj(
        SERVER_ID,
        {
            "name": "Web Server 1",
            "project_id": "proj",
            "user_id": "alice",
            "key_name": "k1",
            "user_data": base64.b64encode(b"#!/bin/sh\necho hi\n").decode(),
            "metadata": {"role": "web"},
            "availability_zone": None,
        },
    )
]
KEYPAIRS = [
    obj("bob/k1", {"user_id": "bob", "name": "k1", "public_key": "ssh-rsa BOB"}),
    obj("alice/k1", {"user_id": "alice", "name": "k1", "public_key": KEY + "\n"}),
]
FIPS = [
    obj(
        "f",
        {"port_id": "vm-port", "fixed_ip_address": "10.0.0.5", "floating_ip_address": "172.24.4.9"},
    )
]


def lookup(router_id: str, source: str) -> instancemetadata.InstanceMetadata | None:
    return instancemetadata.find_instance(["net-1"], source, PORTS, SERVERS, KEYPAIRS, FIPS)


def test_the_source_address_on_the_routers_networks_finds_the_server() -> None:
    found = lookup("r", "10.0.0.5")
    assert found is not None
    assert found.uuid == SERVER_ID
    assert found.hostname == "web-server-1"
    assert found.public_keys == {"k1": KEY}  # alice's k1, not bob's
    assert found.public_ipv4 == "172.24.4.9"
    assert found.availability_zone == "nova"
    assert found.user_data == b"#!/bin/sh\necho hi\n"
    # another network's address, a router's own address: nobody
    assert (
        instancemetadata.find_instance(["net-2"], "10.0.0.5", PORTS, SERVERS, KEYPAIRS, FIPS)
        is None
    )
    assert lookup("r", "10.0.0.1") is None


async def get(path: str, source_lookup: metadata.Lookup = lookup) -> tuple[int, str]:
    """GET `path` as the instance 10.0.0.5 (the test client itself connects from 127.0.0.1)."""
    app = metadata.make_app("r", lambda router_id, _: source_lookup(router_id, "10.0.0.5"))
    async with TestClient(TestServer(app)) as client:
        response = await client.get(path)
        return response.status, await response.text()


async def test_openstack_paths() -> None:
    status, body = await get("/openstack")
    assert status == 200 and body.splitlines()[-1] == "latest"
    status, body = await get("/openstack/latest/meta_data.json")
    assert status == 200
    document = json.loads(body)
    assert document["uuid"] == SERVER_ID
    assert document["name"] == "Web Server 1"
    assert document["public_keys"] == {"k1": KEY}
    assert document["project_id"] == "proj"
    assert document["meta"] == {"role": "web"}
    assert await get("/openstack/latest/user_data") == (200, "#!/bin/sh\necho hi\n")
    assert (await get("/openstack/2012-08-10/meta_data.json"))[0] == 200
    assert (await get("/openstack/1999-01-01/meta_data.json"))[0] == 404


async def test_ec2_paths() -> None:
    assert await get("/latest/meta-data/instance-id") == (200, SERVER_ID)
    assert await get("/latest/meta-data/hostname") == (200, "web-server-1")
    assert await get("/latest/meta-data/local-ipv4") == (200, "10.0.0.5")
    assert await get("/latest/meta-data/public-ipv4") == (200, "172.24.4.9")
    assert await get("/latest/meta-data/public-keys") == (200, "0=k1")
    assert await get("/latest/meta-data/public-keys/0/") == (200, "openssh-key")
    assert await get("/latest/meta-data/public-keys/0/openssh-key") == (200, KEY)
    assert await get("/2009-04-04/user-data") == (200, "#!/bin/sh\necho hi\n")
    status, listing = await get("/latest/meta-data/")
    assert status == 200 and "instance-id" in listing.splitlines()
    assert (await get("/latest/meta-data/nothing-here"))[0] == 404


async def test_unknown_instances_get_404() -> None:
    assert (await get("/openstack/latest/meta_data.json", lambda r, s: None))[0] == 404


def test_meta_data_lists_the_tagged_nics_and_disks_only() -> None:
    """Nova lists a device in `devices` only when it was given a tag (at boot: `networks[].tag`,
    `block_device_mapping_v2[].tag`; or at attach); Tempest's device tagging tests find NICs
    by MAC and expect no entry once the tagged devices are detached."""
    ports = [
        obj(name, {**PORTS[0]["spec"], "mac_address": mac})
        for name, mac in (("vm-port", "fa:16:3e:00:00:01"), ("second", "fa:16:3e:00:00:02"))
    ]
    status = {
        "ports": ["vm-port", "second"],
        "port_tags": {"second": "net-2"},
        "volumes_attached": [
            {"volume_id": "boot-vol", "device": "/dev/vda", "tag": "boot"},
            {"volume_id": "plain-vol", "device": "/dev/vdb"},
        ],
    }
    server = {**SERVERS[0], "status": status}
    found = instancemetadata.find_instance(["net-1"], "10.0.0.5", ports, [server], KEYPAIRS, FIPS)
    assert found is not None
    document = instancemetadata.meta_data_json(found)
    assert document["devices"] == [
        {"type": "nic", "bus": "pci", "mac": "fa:16:3e:00:00:02", "tags": ["net-2"]},
        {
            "type": "disk",
            "bus": "virtio",
            "serial": "boot-vol",
            "path": "/dev/vda",
            "tags": ["boot"],
        },
    ]
    untagged = {**SERVERS[0], "status": {"ports": ["vm-port", "second"]}}
    found = instancemetadata.find_instance(["net-1"], "10.0.0.5", ports, [untagged], KEYPAIRS, FIPS)
    assert found is not None and instancemetadata.meta_data_json(found)["devices"] == []


NICS = (
    {
        "port_id": "vm-port-0000-aaaa",
        "mac": "fa:16:3e:00:00:05",
        "network_id": "net-1",
        "fixed_ips": ["10.0.0.5/24", "fd00::5/64"],
        "gateway": "10.0.0.1",
        "dns_nameservers": ["9.9.9.9"],
        "mtu": 1450,
    },
    {
        "port_id": "second",
        "mac": "fa:16:3e:00:00:06",
        "network_id": "net-2",
        "fixed_ips": ["10.9.0.7/16"],
        "gateway": "10.0.0.1",  # another subnet's: no route through it here
        "dns_nameservers": ["9.9.9.9", "1.1.1.1"],
        "mtu": 1500,
    },
)


def test_network_data_has_a_link_per_nic_and_a_network_per_address() -> None:
    document = instancemetadata.network_data_json(NICS)
    assert document["links"][0] == {
        "id": "tapvm-port-000",
        "vif_id": "vm-port-0000-aaaa",
        "type": "bridge",
        "mtu": 1450,
        "ethernet_mac_address": "fa:16:3e:00:00:05",
    }
    v4, v6, other = document["networks"]
    assert (v4["id"], v4["type"], v4["link"]) == ("network0", "ipv4", "tapvm-port-000")
    assert (v4["ip_address"], v4["netmask"]) == ("10.0.0.5", "255.255.255.0")
    assert v4["routes"] == [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"}]
    assert (v6["type"], v6["ip_address"], v6["routes"]) == ("ipv6", "fd00::5", [])
    assert (other["link"], other["netmask"], other["routes"]) == ("tapsecond", "255.255.0.0", [])
    assert other["network_id"] == "net-2"
    assert document["services"] == [
        {"type": "dns", "address": "9.9.9.9"},
        {"type": "dns", "address": "1.1.1.1"},
    ]


async def test_the_service_answers_network_data_from_the_ports_subnets() -> None:
    """The router's caches give the instance's subnets and network: its address with the
    subnet's prefix and gateway, the network's MTU."""
    ports = [obj("vm-port", {**PORTS[0]["spec"], "mac_address": "fa:16:3e:00:00:05"}), PORTS[1]]
    subnets = {"s": obj("s", {"cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.1", "ip_version": 4})}
    networks = {"net-1": obj("net-1", {"mtu": 1450})}

    def found(router_id: str, source: str) -> instancemetadata.InstanceMetadata | None:
        return instancemetadata.find_instance(
            ["net-1"], source, ports, SERVERS, KEYPAIRS, FIPS, subnets, networks
        )

    status, body = await get("/openstack/latest/network_data.json", found)
    document = json.loads(body)
    assert status == 200
    assert document["links"][0]["ethernet_mac_address"] == "fa:16:3e:00:00:05"
    assert document["links"][0]["mtu"] == 1450
    assert document["networks"][0]["ip_address"] == "10.0.0.5"
    assert document["networks"][0]["routes"][0]["gateway"] == "10.0.0.1"


def test_a_config_drive_has_novas_layout_with_the_same_documents() -> None:
    found = lookup("r", "10.0.0.5")
    assert found is not None
    instance = dataclasses.replace(found, nics=NICS)
    files = instancemetadata.drive_files(instance)
    for version in instancemetadata.OPENSTACK_VERSIONS:
        assert json.loads(files[f"openstack/{version}/meta_data.json"])["uuid"] == SERVER_ID
        assert files[f"openstack/{version}/user_data"] == b"#!/bin/sh\necho hi\n"
    latest = json.loads(files["openstack/latest/meta_data.json"])
    assert latest == instancemetadata.meta_data_json(instance)
    network = json.loads(files["openstack/latest/network_data.json"])
    assert network == instancemetadata.network_data_json(NICS)
    ec2 = json.loads(files["ec2/latest/meta-data.json"])
    assert ec2["instance-id"] == SERVER_ID
    assert ec2["public-keys"] == {"0": {"openssh-key": KEY}}
    assert files["ec2/2009-04-04/user-data"] == b"#!/bin/sh\necho hi\n"
    without = instancemetadata.drive_files(dataclasses.replace(instance, user_data=None))
    assert not any(path.endswith(("user_data", "user-data")) for path in without)


async def test_personality_files_are_listed_and_served_as_novas_content() -> None:
    contents = base64.b64encode(b"hello\xff").decode()
    spec = {**SERVERS[0]["spec"], "personality": [{"path": "/etc/motd", "contents": contents}]}
    server = {**SERVERS[0], "spec": spec}

    def found(router_id: str, source: str) -> instancemetadata.InstanceMetadata | None:
        return instancemetadata.find_instance(["net-1"], source, PORTS, [server], KEYPAIRS, FIPS)

    status, body = await get("/openstack/latest/meta_data.json", found)
    assert status == 200
    listed = json.loads(body)["files"]
    assert listed == [{"path": "/etc/motd", "content_path": "/content/0000"}]
    app = metadata.make_app("r", lambda router_id, _: found(router_id, "10.0.0.5"))
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/openstack/content/0000")
        assert (response.status, await response.read()) == (200, b"hello\xff")
        assert (await client.get("/openstack/content/0001")).status == 404
    instance = found("r", "10.0.0.5")
    assert instance is not None
    drive = instancemetadata.drive_files(instance)
    assert drive["openstack/content/0000"] == b"hello\xff"
    assert "files" not in json.loads((await get("/openstack/latest/meta_data.json"))[1])
