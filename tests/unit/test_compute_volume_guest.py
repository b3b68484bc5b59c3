"""A volume reaches the guest between Cinder's reservation and its completion, and leaves it
before the attachment goes; from its own host's pool, or served by the host that keeps it;
fake hosts have no guest to reach."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from unistack.client.api import ApiError
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


class NodeProxy:
    """The API server's node proxy as `AgentDriver` calls it: each call logged, the volume's
    host serving it over NBD unless `refuse`."""

    def __init__(self, refuse: bool = False) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.refuse = refuse

    async def request_json(self, method: str, path: str, body: Any = None) -> Obj:
        self.calls.append((method, path, body))
        if self.refuse:
            raise ApiError(409, "Conflict", {"message": "qemu-storage-daemon: address in use"})
        if method == "POST":
            return {"driver_volume_type": "nbd", "data": {"host": "10.0.0.1", "port": 10809}}
        return {}


class VolumeApi:
    def __init__(self, where: str) -> None:
        self.where = where

    async def call(self, method: str, path: str, **_: Any) -> tuple[int, Any]:
        return 200, {"volume": {"id": VOLUME, "os-vol-host-attr:host": self.where}}


def test_a_volume_of_another_host_is_served_by_that_host_and_let_go_after() -> None:
    proxy = NodeProxy()
    driver = agentdriver.AgentDriver(proxy, VolumeApi("a@unistack-pool#pool"), None)  # type: ignore[arg-type]
    here = {"id": VOLUME, "os-vol-host-attr:host": "a@unistack-pool#pool"}
    assert asyncio.run(driver.connect(here, "a")) is None and proxy.calls == []
    assert asyncio.run(driver.connect(here, "b")) == {"host": "10.0.0.1", "port": 10809}
    served = f"/api/v1/nodes/a/proxy/volumes/{VOLUME}/connection"
    assert proxy.calls == [("POST", served, {"host": "b"})]
    asyncio.run(driver.disconnect(VOLUME, "b"))
    asyncio.run(driver.disconnect(VOLUME, "a"))  # its own host: nothing to end
    assert proxy.calls[1:] == [("DELETE", f"{served}/b", None)]
    with pytest.raises(VolumeError, match="no data on any host"):
        asyncio.run(driver.connect({"id": VOLUME, "os-vol-host-attr:host": "x@lvm#lvm"}, "a"))
    refusing = agentdriver.AgentDriver(NodeProxy(refuse=True), None, None)  # type: ignore[arg-type]
    with pytest.raises(VolumeError, match="cannot be served to host b: qemu-storage-daemon"):
        asyncio.run(refusing.connect(here, "b"))


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
