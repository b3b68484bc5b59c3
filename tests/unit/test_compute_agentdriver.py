"""Which driver runs a server, and what the host is told about its ports."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from unistack.agent import instancemetadata
from unistack.iaas.compute import agentdriver, kinds
from unistack.iaas.compute.driver import FakeDriver

Obj = dict[str, Any]


def test_images_choose_their_driver_and_the_host_must_offer_it() -> None:
    offered = ("container", "qemu")
    busybox = {"id": "b", "container_format": "docker", "disk_format": "raw"}
    disk = {"id": "d", "container_format": "bare", "disk_format": "qcow2"}
    pinned = {**disk, "id": "p", "hypervisor_type": "container"}
    assert agentdriver.choose_driver(busybox, offered) == "container"
    assert agentdriver.choose_driver(disk, offered) == "qemu"
    assert agentdriver.choose_driver(pinned, offered) == "container"
    with pytest.raises(agentdriver.AgentError, match="needs the qemu driver"):
        agentdriver.choose_driver(disk, ("container",))


def test_a_port_becomes_a_nic_with_prefix_gateway_and_dns() -> None:
    port = {
        "id": "p1",
        "mac_address": "fa:16:3e:00:00:09",
        "network_id": "n1",
        "fixed_ips": [
            {"subnet_id": "v4", "ip_address": "10.0.0.9"},
            {"subnet_id": "v6", "ip_address": "fd00::9"},
        ],
    }
    subnets = {
        "v4": {"cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.1", "dns_nameservers": ["9.9.9.9"]},
        "v6": {"cidr": "fd00::/64", "gateway_ip": "fd00::1", "ip_version": 6},
    }
    nic = instancemetadata.nic_of(port, subnets, {"mtu": 1450})
    assert nic == {
        "port_id": "p1",
        "mac": "fa:16:3e:00:00:09",
        "network_id": "n1",
        "fixed_ips": ["10.0.0.9/24", "fd00::9/64"],
        "gateway": "10.0.0.1",
        "dns_nameservers": ["9.9.9.9"],
        "mtu": 1450,
    }


class Nodes:
    def __init__(self, nodes: dict[str, Obj]) -> None:
        self.cache = self
        self.nodes = nodes

    def get(self, name: str) -> Obj | None:
        return self.nodes.get(name)


class Agent:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def spawn_with(self, server: Obj, host: str, offered: tuple[str, ...]) -> Any:
        self.calls.append(("spawn", host))

    async def action(self, server: Obj, action: str, hard: bool = False) -> Any:
        self.calls.append((action, server["status"]["host"]))


def test_real_hosts_get_the_agent_and_the_rest_the_fake() -> None:
    annotated = {"metadata": {"annotations": {agentdriver.DRIVERS_ANNOTATION: "container"}}}
    nodes = Nodes({"real": annotated, "plain": {"metadata": {}}})
    agent = Agent()
    drivers = agentdriver.HostDrivers(nodes, agent, FakeDriver())  # type: ignore[arg-type]
    server = {"metadata": {"name": "s1"}, "spec": {}, "status": {"host": "real"}}
    asyncio.run(drivers.spawn(server, "real"))
    asyncio.run(drivers.reboot(server, True))
    outcome = asyncio.run(drivers.spawn({**server, "status": {"host": "plain"}}, "plain"))
    assert agent.calls == [("spawn", "real"), ("reboot", "real")]
    assert outcome.power_state == 1 and outcome.console  # the fake's boot lines
    assert asyncio.run(drivers.console({**server, "status": {"host": "plain"}}, None)) is None


class Neutron:
    """The Networking API's answers for one server's ports, made in the order given."""

    def __init__(self, ports: list[Obj]) -> None:
        self.ports = ports

    async def call(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        if path.endswith("/ports"):
            return 200, {"ports": self.ports}
        if "/networks/" in path:
            return 200, {"network": {"id": path.rsplit("/", 1)[-1], "mtu": 1450}}
        return 200, {"subnets": []}


def test_nics_come_in_the_order_the_server_asked_for_its_ports() -> None:
    """Ports made beforehand (older) and one Nova made for a network: eth0 is still the
    first one asked for, the NIC the guest's default route goes through."""
    made = [
        {"id": "pre-1", "network_id": "n2", "created_at": "2026-11-25T10:00:00Z"},
        {"id": "pre-2", "network_id": "n2", "created_at": "2026-11-25T10:00:01Z"},
        {"id": "nova", "network_id": "n1", "created_at": "2026-11-25T10:00:05Z"},
        {"id": "later", "network_id": "n1", "created_at": "2026-11-25T10:00:09Z"},
    ]
    for port in made:
        port.update(mac_address="fa:16:3e:00:00:01", fixed_ips=[])
    driver = agentdriver.AgentDriver(None, Neutron(made), None)  # type: ignore[arg-type]
    asked = ["nova", "pre-1", "pre-2"]  # "later": attached afterwards, not in the list
    nics = asyncio.run(driver.nics("s1", asked))
    assert [nic["port_id"] for nic in nics] == ["nova", "pre-1", "pre-2", "later"]
    unordered = asyncio.run(driver.nics("s1"))
    assert [nic["port_id"] for nic in unordered] == ["pre-1", "pre-2", "nova", "later"]


class Keypairs:
    """The records' keypair index: alice's k1 (a stored public key keeps its newline)."""

    def indexed(self, kind: Any, index: str, value: str) -> list[Obj]:
        assert (kind, index) == (kinds.KEYPAIRS, "owner")
        spec = {"user_id": "alice", "name": "k1", "public_key": "ssh-ed25519 AAAA alice\n"}
        return [{"metadata": {"name": "alice-k1"}, "spec": spec}] if value == "alice/k1" else []


def test_a_server_asking_for_a_config_drive_gets_its_metadata_documents() -> None:
    """`--config-drive true` (or an image that requires one): the request carries the drive's
    files, rendered from the server, its key pair and its NICs as the host will plug them."""
    port = {
        "id": "p1",
        "network_id": "n1",
        "mac_address": "fa:16:3e:00:00:07",
        "fixed_ips": [{"subnet_id": "v4", "ip_address": "10.0.0.7"}],
    }

    class Networking(Neutron):
        async def call(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
            if path.endswith("/subnets"):
                return 200, {"subnets": [{"id": "v4", "cidr": "10.0.0.0/24", "ip_version": 4}]}
            return await super().call(method, path, body, params)

    driver = agentdriver.AgentDriver(None, Networking([port]), Keypairs())  # type: ignore[arg-type]
    spec = {"name": "web", "user_id": "alice", "key_name": "k1", "metadata": {"role": "web"}}
    server = {"metadata": {"name": "s1"}, "spec": {**spec, "config_drive": True}, "status": {}}
    image = {"id": "img", "disk_format": "raw"}
    request = asyncio.run(driver.request(server, "container", image))
    files = {k: base64.b64decode(v) for k, v in request["config_drive"].items()}
    meta = json.loads(files["openstack/latest/meta_data.json"])
    assert (meta["uuid"], meta["meta"]) == ("s1", {"role": "web"})
    assert meta["public_keys"] == {"k1": "ssh-ed25519 AAAA alice"}
    network = json.loads(files["openstack/latest/network_data.json"])
    assert network["links"][0]["ethernet_mac_address"] == "fa:16:3e:00:00:07"
    assert network["networks"][0]["ip_address"] == "10.0.0.7"
    assert json.loads(files["ec2/latest/meta-data.json"])["local-ipv4"] == "10.0.0.7"
    plain = {**server, "spec": spec}
    assert "config_drive" not in asyncio.run(driver.request(plain, "container", image))
    assert "personality" not in asyncio.run(driver.request(plain, "container", image))
    injected = {**spec, "personality": [{"path": "/a", "contents": "eA=="}] * 2}
    asked = asyncio.run(driver.request({**server, "spec": injected}, "container", image))
    assert asked["personality"] == {"/a": "eA=="}
    required = {**image, "img_config_drive": "mandatory"}
    assert "config_drive" in asyncio.run(driver.request(plain, "container", required))
