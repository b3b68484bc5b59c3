"""Volumes into this host's instances, over fakes: a container gets a loop device on the
volume's file and a VM the file; attachments are recorded, so a boot after `unistack down`
attaches them again; detach and destroy free the loop devices; a volume of another host's pool
is connected first and let go after, and one that comes without a connection is refused with
the reason; the HTTP routes answer in JSON."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.unit.test_agent_instances import REQUEST, SERVER, Images
from unistack.agent import instancerequests, instanceroutes, instances, instancevolumes
from unistack.agent.instancevolumes import VolumeRequest
from unistack.dataplane import nbd
from unistack.dataplane.instances import Disk, FakeInstances, InstanceError
from unistack.dataplane.loopdev import FakeLoopDevices
from unistack.dataplane.netns import FakeNamespaces
from unistack.dataplane.tenantnet import FakeL2, NetworkWiring

VOLUME, OTHER = "7010e000-0000-4000-8000-000000000001", "7010e000-0000-4000-8000-000000000002"


class Pool:
    """The host's pool: the volumes it keeps, as files."""

    def __init__(self, root: Path, *kept: str) -> None:
        self.root, self.kept = root, set(kept)

    def volume_file(self, volume_id: str) -> Path:
        if volume_id not in self.kept:
            raise KeyError(volume_id)
        return self.root / "volumes" / volume_id


class Connections:
    """This host's connections to other hosts' volumes: each a file, as `nbd.NbdConnections`
    makes them (its real daemons are tests/integration/test_nbd_linux.py's)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[tuple[str, str]] = []

    def path(self, volume_id: str) -> Path:
        return self.root / f"{volume_id}.img"

    def connect(self, volume_id: str, target: nbd.NbdTarget, patience: float = 0) -> Path:
        self.calls.append(("connect", f"{volume_id}@{target.host}:{target.port}"))
        return self.path(volume_id)

    def disconnect(self, volume_id: str) -> None:
        self.calls.append(("disconnect", volume_id))


def service(
    tmp_path: Path, *kept: str, connections: Connections | None = None
) -> tuple[instances.InstanceService, FakeInstances, FakeLoopDevices]:
    driver, l2, loops = FakeInstances(), FakeL2(), FakeLoopDevices()

    async def ensure_network(wiring: NetworkWiring) -> None:
        l2.ensure_network(wiring)

    made = instances.InstanceService(
        tmp_path / "servers",
        {"fake": driver},
        l2,
        Images(tmp_path),  # type: ignore[arg-type]
        ensure_network=ensure_network,
        registry="127.0.0.1:5000",
        namespaces=FakeNamespaces(),
        volumes=Pool(tmp_path / "pool", *kept),
        loops=loops,
        connections=connections,  # type: ignore[arg-type]
    )
    return made, driver, loops


def test_device_names_and_volume_requests_are_checked() -> None:
    assert instancevolumes.device_target("/dev/vdb") == "vdb"
    assert instancevolumes.device_target("vdc") == "vdc"
    for bad in ("/dev/../etc/passwd", "/dev/", "/dev/VDB", "/tmp/vdb", ""):
        with pytest.raises(ValueError):
            instancevolumes.device_target(bad)
    with pytest.raises(ValueError, match="volume_id"):
        instancevolumes.parse_volume({"device": "/dev/vdb"})
    with pytest.raises(instancerequests.RequestError, match="device"):
        instancerequests.parse_request(SERVER, {**REQUEST, "volumes": [{"volume_id": VOLUME}]})


def test_a_device_holds_one_volume() -> None:
    first = instancevolumes.Attached(VOLUME, "vdb", "/pool/a")
    again = instancevolumes.with_volume([first], first)
    assert again == [first]
    with pytest.raises(InstanceError, match="holds volume"):
        instancevolumes.with_volume([first], instancevolumes.Attached(OTHER, "vdb", "/pool/b"))


def test_a_container_gets_a_loop_device_and_detach_frees_it(tmp_path: Path) -> None:
    made, driver, loops = service(tmp_path, VOLUME)
    asyncio.run(made.spawn(instancerequests.parse_request(SERVER, REQUEST)))
    asyncio.run(made.attach_volume(SERVER, VolumeRequest(VOLUME, "/dev/vdb")))
    asyncio.run(made.attach_volume(SERVER, VolumeRequest(VOLUME, "/dev/vdb")))  # idempotent
    file = tmp_path / "pool" / "volumes" / VOLUME
    assert driver.instances[SERVER].disks[VOLUME] == Disk(VOLUME, "/dev/loop0", "vdb")
    assert loops.devices == {"/dev/loop0": file}
    asyncio.run(made.detach_volume(SERVER, VOLUME))
    assert driver.instances[SERVER].disks == {} and loops.devices == {}
    assert made.volumes.listed(SERVER) == []
    asyncio.run(made.detach_volume(SERVER, VOLUME))  # again: nothing to do
    asyncio.run(made.detach_volume("no-such-server", VOLUME))


def test_an_extended_volume_is_resized_in_its_guest_only_where_it_is_attached(
    tmp_path: Path,
) -> None:
    made, driver, _ = service(tmp_path, VOLUME, OTHER)
    asyncio.run(made.spawn(instancerequests.parse_request(SERVER, REQUEST)))
    asyncio.run(made.attach_volume(SERVER, VolumeRequest(VOLUME, "/dev/vdb")))
    asyncio.run(made.extend_volume(SERVER, VOLUME))
    assert driver.calls[-1] == ("resize_disk", SERVER)
    with pytest.raises(InstanceError, match="not attached"):
        asyncio.run(made.extend_volume(SERVER, OTHER))
    with pytest.raises(InstanceError, match="no instance"):
        asyncio.run(made.extend_volume("no-such-server", VOLUME))
    assert [call for call in driver.calls if call[0] == "resize_disk"] == [("resize_disk", SERVER)]


def test_a_volume_of_another_host_is_connected_recorded_and_let_go(tmp_path: Path) -> None:
    connections = Connections(tmp_path / "connections")
    made, driver, loops = service(tmp_path, connections=connections)
    asyncio.run(made.spawn(instancerequests.parse_request(SERVER, REQUEST)))
    body = {"volume_id": OTHER, "device": "/dev/vdc", "connection": {
        "host": "10.254.0.2", "port": 10809, "export": OTHER}}  # fmt: skip
    asyncio.run(made.attach_volume(SERVER, instancevolumes.parse_volume(body)))
    assert connections.calls == [("connect", f"{OTHER}@10.254.0.2:10809")]
    assert loops.devices == {"/dev/loop0": connections.path(OTHER)}  # on the connection's file
    assert driver.instances[SERVER].disks[OTHER] == Disk(OTHER, "/dev/loop0", "vdc")
    [item] = made.volumes.listed(SERVER)  # recorded with its connection, for a restart
    assert item.connection == {"host": "10.254.0.2", "port": 10809, "export": OTHER}
    with pytest.raises(InstanceError, match="served by another host"):
        asyncio.run(made.extend_volume(SERVER, OTHER))
    asyncio.run(made.detach_volume(SERVER, OTHER))
    assert connections.calls[-1] == ("disconnect", OTHER) and loops.devices == {}
    with pytest.raises(ValueError, match="port"):
        instancevolumes.parse_volume({**body, "connection": {**body["connection"], "port": 0}})


def test_a_volume_on_two_servers_keeps_its_loop_device_until_the_last_lets_go(
    tmp_path: Path,
) -> None:
    """A multiattach volume: both containers get the file's one loop device; detaching (or
    deleting) one server leaves it to the other; `unistack down` frees it."""
    made, driver, loops = service(tmp_path, VOLUME)
    second = "5e1f0000-0000-4000-8000-0000000000b2"
    for server in (SERVER, second):
        asyncio.run(made.spawn(instancerequests.parse_request(server, REQUEST)))
        asyncio.run(made.attach_volume(server, VolumeRequest(VOLUME, "/dev/vdb")))
    assert driver.instances[second].disks[VOLUME].path == "/dev/loop0"
    asyncio.run(made.detach_volume(SERVER, VOLUME))
    assert list(loops.devices) == ["/dev/loop0"]  # the second server still writes on it
    asyncio.run(made.attach_volume(SERVER, VolumeRequest(VOLUME, "/dev/vdb")))
    asyncio.run(made.destroy(SERVER))
    assert list(loops.devices) == ["/dev/loop0"]
    assert asyncio.run(made.stop_all()) == [second]
    assert loops.devices == {}
    asyncio.run(made.resume())
    asyncio.run(made.detach_volume(second, VOLUME))
    assert loops.devices == {}


def test_a_password_goes_to_the_servers_driver(tmp_path: Path) -> None:
    made, driver, _ = service(tmp_path)
    asyncio.run(made.spawn(instancerequests.parse_request(SERVER, REQUEST)))
    asyncio.run(made.set_password(SERVER, "Newpass1234"))
    assert driver.instances[SERVER].password == "Newpass1234"
    with pytest.raises(InstanceError, match="no instance"):
        asyncio.run(made.set_password("no-such-server", "x"))


def test_a_vm_gets_the_volumes_file(tmp_path: Path) -> None:
    made, driver, loops = service(tmp_path, VOLUME)
    vm = {**REQUEST, "image_kind": "disk"}
    asyncio.run(made.spawn(instancerequests.parse_request(SERVER, vm)))
    asyncio.run(made.attach_volume(SERVER, VolumeRequest(VOLUME, "/dev/vdc")))
    disk = driver.instances[SERVER].disks[VOLUME]
    assert disk == Disk(VOLUME, str(tmp_path / "pool" / "volumes" / VOLUME), "vdc")
    assert loops.devices == {}


def test_a_volume_another_host_keeps_is_refused_with_the_reason(tmp_path: Path) -> None:
    made, _, loops = service(tmp_path)
    asyncio.run(made.spawn(instancerequests.parse_request(SERVER, REQUEST)))
    with pytest.raises(
        instancevolumes.VolumeNotHere,
        match=r"not in this host.s pool and came without a connection",
    ):
        asyncio.run(made.attach_volume(SERVER, VolumeRequest(VOLUME, "/dev/vdb")))
    assert made.volumes.listed(SERVER) == [] and loops.devices == {}
    with pytest.raises(LookupError):
        asyncio.run(made.attach_volume("no-such-server", VolumeRequest(VOLUME, "/dev/vdb")))


def test_volumes_of_the_request_boot_with_the_server_and_come_back_after_down(
    tmp_path: Path,
) -> None:
    made, driver, loops = service(tmp_path, VOLUME, OTHER)
    wanted = {**REQUEST, "volumes": [{"volume_id": VOLUME, "device": "/dev/vdb"}]}
    asyncio.run(made.spawn(instancerequests.parse_request(SERVER, wanted)))
    assert driver.instances[SERVER].spec.disks == (Disk(VOLUME, "/dev/loop0", "vdb"),)
    asyncio.run(made.attach_volume(SERVER, VolumeRequest(OTHER, "/dev/vdc")))
    assert asyncio.run(made.stop_all()) == [SERVER]
    assert loops.devices == {}  # `unistack down` leaves no loop device behind
    assert asyncio.run(made.resume()) == [SERVER]
    attached = driver.instances[SERVER].disks
    assert {d.target for d in attached.values()} == {"vdb", "vdc"} and len(loops.devices) == 2
    asyncio.run(made.destroy(SERVER))
    assert loops.devices == {} and made.volumes.listed(SERVER) == []


async def _routes(tmp_path: Path) -> None:
    made, _, _ = service(tmp_path, VOLUME)
    app = web.Application()
    instanceroutes.add_routes(app, made)
    async with TestClient(TestServer(app)) as client:
        await client.put(f"/instances/{SERVER}", json=REQUEST)
        path = f"/instances/{SERVER}/volumes"
        answer = await client.post(path, json={"volume_id": VOLUME, "device": "vdb"})
        assert answer.status == 200
        assert await answer.json() == {"volume_id": VOLUME, "device": "/dev/vdb"}
        bad = await client.post(path, json={"volume_id": VOLUME, "device": "/etc/x"})
        assert bad.status == 400 and "device" in (await bad.json())["message"]
        elsewhere = await client.post(path, json={"volume_id": OTHER, "device": "/dev/vdc"})
        assert elsewhere.status == 409
        assert "without a connection" in (await elsewhere.json())["message"]
        odd = {"volume_id": OTHER, "device": "/dev/vdc", "connection": {"host": "nowhere"}}
        refused = await client.post(path, json=odd)
        assert refused.status == 400 and "IP address" in (await refused.json())["message"]
        missing = await client.post("/instances/nope/volumes", json={"volume_id": VOLUME})
        assert missing.status == 400  # no device
        missing = await client.post(
            "/instances/nope/volumes", json={"volume_id": VOLUME, "device": "/dev/vdb"}
        )
        assert missing.status == 404
        assert (await client.delete(f"{path}/{VOLUME}")).status == 200


def test_the_http_routes(tmp_path: Path) -> None:
    asyncio.run(_routes(tmp_path))
