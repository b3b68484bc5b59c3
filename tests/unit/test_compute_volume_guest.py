"""A volume reaches the guest between Cinder's reservation and its completion, and leaves it
before the attachment goes; only on its own host; fake hosts have no guest to reach."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from unistack.iaas.compute import agentdriver
from unistack.iaas.compute.driver import FakeDriver
from unistack.iaas.compute.volumes import VolumeError, Volumes

Obj = dict[str, Any]
VOLUME = "7010e000-0000-4000-8000-000000000001"


class Cinder:
    """The attachments API as the compute side calls it; every call is logged."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def call(self, method: str, path: str, body: Any = None, **_: Any) -> tuple[int, Any]:
        self.log.append(f"{method} {path.removeprefix('/volume/v3')}")
        if method == "POST" and path.endswith("/attachments"):
            return 200, {"attachment": {"id": "a1"}}
        if method == "GET":
            return 200, {"attachment": {"id": "a1", "instance": "s1", "volume_id": VOLUME}}
        return 204, None


class Guest:
    def __init__(self, log: list[str], refuse: bool = False) -> None:
        self.log, self.refuse = log, refuse

    async def attach_volume(self, server_id: str, host: str, volume_id: str, device: str) -> None:
        self.log.append(f"guest attach {server_id} {host} {device}")
        if self.refuse:
            raise VolumeError(400, "Volume is on host b")

    async def detach_volume(self, server_id: str, volume_id: str) -> None:
        self.log.append(f"guest detach {server_id}")


def test_the_guest_gets_the_volume_before_the_attachment_completes() -> None:
    log: list[str] = []
    volumes = Volumes(Cinder(log), Guest(log))
    item = asyncio.run(volumes.attach("s1", VOLUME, "a", "/dev/vdb"))
    assert item == {"volume_id": VOLUME, "attachment_id": "a1", "device": "/dev/vdb"}
    assert log == [
        "POST /attachments",
        "guest attach s1 a /dev/vdb",
        "POST /attachments/a1/action",
    ]
    log.clear()
    asyncio.run(volumes.detach("a1"))
    assert log == ["GET /attachments/a1", "guest detach s1", "DELETE /attachments/a1"]


def test_a_refusing_guest_undoes_the_reservation_and_a_build_leaves_the_guest_alone() -> None:
    log: list[str] = []
    with pytest.raises(VolumeError, match="host b"):
        asyncio.run(Volumes(Cinder(log), Guest(log, refuse=True)).attach("s1", VOLUME, "a", "vdb"))
    assert log[-1] == "DELETE /attachments/a1" and "GET /attachments/a1" not in log
    log.clear()
    volumes = Volumes(Cinder(log), Guest(log))
    asyncio.run(volumes.attach("s1", VOLUME, "a", "/dev/vdb", plug=False))
    asyncio.run(volumes.detach("a1", unplug=False))
    assert not [line for line in log if line.startswith("guest")]


def test_a_volume_attaches_only_on_the_host_whose_pool_keeps_it() -> None:
    here = {"id": VOLUME, "os-vol-host-attr:host": "a@unistack-pool#pool"}
    agentdriver.check_same_host(here, "a")
    with pytest.raises(VolumeError, match=r"on host a and the server runs on host b.*iSCSI"):
        agentdriver.check_same_host(here, "b")
    with pytest.raises(VolumeError, match="no data on any host"):
        agentdriver.check_same_host({"id": VOLUME, "os-vol-host-attr:host": "x@lvm#lvm"}, "a")


class Nodes:
    def __init__(self, nodes: dict[str, Obj]) -> None:
        self.cache = self
        self.nodes = nodes

    def get(self, name: str) -> Obj | None:
        return self.nodes.get(name)


class Records:
    def __init__(self, servers: dict[str, Obj]) -> None:
        self.servers = servers

    def get(self, kind: Any, name: str) -> Obj | None:
        return self.servers.get(name)


class Agent:
    def __init__(self, servers: dict[str, Obj]) -> None:
        self.records = Records(servers)
        self.calls: list[tuple[str, str, str]] = []

    async def attach_volume(self, server_id: str, host: str, volume_id: str, device: str) -> None:
        self.calls.append(("attach", server_id, host))

    async def detach_volume(self, server_id: str, host: str, volume_id: str) -> None:
        self.calls.append(("detach", server_id, host))


def test_only_real_hosts_reach_a_guest() -> None:
    annotated = {"metadata": {"annotations": {agentdriver.DRIVERS_ANNOTATION: "container"}}}
    nodes = Nodes({"real": annotated, "plain": {"metadata": {}}})
    servers = {"s1": {"status": {"host": "real"}}, "s2": {"status": {"host": "plain"}}}
    agent = Agent(servers)
    drivers = agentdriver.HostDrivers(nodes, agent, FakeDriver())  # type: ignore[arg-type]
    asyncio.run(drivers.attach_volume("s1", "real", VOLUME, "/dev/vdb"))
    asyncio.run(drivers.attach_volume("s2", "plain", VOLUME, "/dev/vdb"))
    asyncio.run(drivers.detach_volume("s1", VOLUME))
    asyncio.run(drivers.detach_volume("s2", VOLUME))
    asyncio.run(drivers.detach_volume("gone", VOLUME))
    assert agent.calls == [("attach", "s1", "real"), ("detach", "s1", "real")]


def test_the_boot_request_lists_the_servers_volumes() -> None:
    server = {
        "status": {
            "volumes_attached": [
                {"volume_id": VOLUME, "attachment_id": "a1", "device": "/dev/vdb"},
                "junk",
            ]
        }
    }
    assert agentdriver.attached_volumes(server) == [{"volume_id": VOLUME, "device": "/dev/vdb"}]
