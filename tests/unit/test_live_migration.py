"""Live migration's pure parts: the destination's command line (devices at the source's PCI
slots, paused for the incoming state), the `os-migrateLive` body as each microversion has
it, the agent's checks of what the source is told, and how the agent sends a guest in the
background and says how it goes (over a hypervisor that only keeps state)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.unit.test_agent_instances import REQUEST, SERVER, Images, service
from unistack.agent import instancerequests, instanceroutes, instances
from unistack.client.api import Client
from unistack.client.transport import Response
from unistack.dataplane import qemuargs
from unistack.dataplane.instances import (
    Disk,
    FakeInstances,
    Incoming,
    InstanceError,
    InstanceSpec,
    Nic,
    NotSupported,
    PowerState,
)
from unistack.dataplane.netns import FakeNamespaces
from unistack.dataplane.tenantnet import FakeL2, NetworkWiring
from unistack.iaas.compute import agentdriver
from unistack.iaas.compute.agentdriver import AgentDriver
from unistack.openstack.compute import live_migration
from unistack.openstack.compute.migrations import server_migration_view
from unistack.openstack.microversion import Version
from unistack.openstack.web import OpenStackError

SPEC = InstanceSpec(
    server_id="vm-1",
    hostname="vm",
    vcpus=1,
    memory_mb=256,
    image_file=Path("/images/disk.qcow2"),
    ephemeral_gb=1,
    nics=(Nic("port-1", "fa:16:3e:00:00:01", "tap-one"),),
)


def device_options(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv) if word == "-device"]


def test_the_destination_puts_each_device_at_its_sources_slot_and_waits() -> None:
    paths = qemuargs.InstancePaths(Path("/srv/vm-1"))
    volume = Disk("vol-1", "/pool/vol-1", "vdb")
    _, disk_device = qemuargs.disk_names("vol-1")
    slots = {"root": 2, "ephemeral0": 5, "nic-tap-one": 4, disk_device: 3}
    argv = qemuargs.qemu_argv(SPEC, paths, disks=[volume], slots=slots, incoming=True)
    devices = device_options(argv)
    assert "virtio-blk-pci,drive=root,id=root,addr=0x2" in devices
    assert any(d.startswith("virtio-blk-pci,drive=ephemeral0") and d.endswith(",addr=0x5")
               for d in devices)  # fmt: skip
    as_json = [json.loads(d) for d in devices if d.startswith("{")]
    assert {d["id"]: d["addr"] for d in as_json} == {"nic-tap-one": "0x4", disk_device: "0x3"}
    assert argv[argv.index("-incoming") + 1] == "defer" and "-S" in argv
    # a boot of its own: QEMU places the devices, and the guest runs at once
    plain = qemuargs.qemu_argv(SPEC, paths, disks=[volume])
    assert "-incoming" not in plain and "-S" not in plain
    assert not any("addr" in d for d in device_options(plain))


def test_query_pci_becomes_the_slots_of_the_devices_with_an_id() -> None:
    buses = [
        {
            "bus": 0,
            "devices": [
                {"slot": 0, "function": 0, "qdev_id": ""},  # the host bridge
                {"slot": 1, "function": 1, "qdev_id": ""},  # the chipset's IDE
                {"slot": 2, "function": 0, "qdev_id": "root"},
                {"slot": 6, "function": 0, "qdev_id": "nic-tap-one"},
            ],
        }
    ]
    assert qemuargs.pci_slots(buses) == {"root": 2, "nic-tap-one": 6}


V21, V225, V230, V268 = (Version.parse(v) for v in ("2.1", "2.25", "2.30", "2.68"))


def test_the_migrate_live_body_follows_the_microversion() -> None:
    old = {"host": None, "block_migration": "yes", "disk_over_commit": False}
    assert live_migration.parse(old, V21) == (None, True)
    assert live_migration.parse({"host": "hv1", "block_migration": "auto"}, V225) == ("hv1", None)
    forced = {"host": "hv1", "block_migration": False, "force": "true"}
    assert live_migration.parse(forced, V230) == ("hv1", False)
    refused = [
        (old | {"block_migration": "auto"}, V21, "block_migration"),
        (old, V225, "'disk_over_commit' was unexpected"),
        ({"host": None, "block_migration": True, "force": True}, V225, "'force' was unexpected"),
        ({"host": None, "block_migration": True, "force": True}, V268, "'force' was unexpected"),
        ({"host": None}, V225, "'block_migration' is a required property"),
        ({"host": 5, "block_migration": True}, V225, "field/attribute host"),
        ({"host": None, "block_migration": "maybe"}, V225, "field/attribute block_migration"),
        (None, V225, "is not of type 'object'"),
    ]
    for body, version, message in refused:
        with pytest.raises(OpenStackError) as caught:
            live_migration.parse(body, version)
        assert caught.value.status == 400 and message in caught.value.message, body


def test_the_source_is_told_a_whole_destination() -> None:
    good = {"host": "10.0.0.2", "nbd_port": 49152, "migration_port": 49153, "exports": ["root"]}
    incoming = instanceroutes.incoming_of(good)
    assert (incoming.nbd_port, incoming.migration_port, incoming.exports) == (
        49152, 49153, ("root",),
    )  # fmt: skip
    for bad in (
        [],
        good | {"host": ""},
        good | {"nbd_port": 0},
        good | {"migration_port": True},
        good | {"migration_port": "49153"},
        good | {"exports": "root"},
    ):
        with pytest.raises(instancerequests.RequestError):
            instanceroutes.incoming_of(bad)


def test_an_instance_whose_driver_cannot_move_live_says_so(tmp_path: Path) -> None:
    made, _, _ = service(tmp_path)

    async def scenario() -> None:
        await made.spawn(instancerequests.parse_request(SERVER, REQUEST))
        with pytest.raises(NotSupported, match="cannot move live"):
            await made.live_slots(SERVER)
        wanted = instancerequests.parse_request("another", REQUEST)
        with pytest.raises(NotSupported, match="cannot move live"):
            await made.receive_live(wanted, {}, "10.0.0.2")
        assert made.recorded("another") is None  # nothing was recorded for it

    asyncio.run(scenario())


def test_a_servers_live_migration_shows_its_progress_as_nova_does() -> None:
    record = {
        "metadata": {"name": "0b1e6a52-0000-4000-8000-000000000001"},
        "spec": {
            "instance_uuid": "5e7e0000-0000-4000-8000-000000000001",
            "migration_type": "live-migration",
            "source_compute": "hv0",
            "source_node": "hv0",
            "created_at": "2026-11-25T10:00:00Z",
            "user_id": "u",
            "project_id": "p",
        },
        "status": {
            "status": "running",
            "dest_compute": "hv1",
            "memory_total_bytes": 512 << 20,
            "memory_processed_bytes": 100 << 20,
            "memory_remaining_bytes": 412 << 20,
            "disk_total_bytes": 1 << 30,
            "disk_processed_bytes": 1 << 30,
            "disk_remaining_bytes": 0,
        },
    }
    view = server_migration_view(record, Version.parse("2.80"))
    assert view["server_uuid"] == "5e7e0000-0000-4000-8000-000000000001"
    assert "instance_uuid" not in view and "migration_type" not in view
    assert (view["memory_remaining_bytes"], view["disk_remaining_bytes"]) == (412 << 20, 0)
    assert (view["dest_compute"], view["status"], view["user_id"]) == ("hv1", "running", "u")
    early = server_migration_view(record, Version.parse("2.23"))
    assert "uuid" not in early and "user_id" not in early


class MovingInstances(FakeInstances):
    """State only, and guests that move live: a copy holds until `let_go` is set, then ends
    as `failure` says (None: the guest left, paused here)."""

    def __init__(self) -> None:
        super().__init__()
        self.let_go = asyncio.Event()
        self.failure: str | None = None
        self.copying: dict[str, dict[str, int]] = {}
        self.left: set[str] = set()
        self.finished: list[bool] = []  # the `paused` of each finish_live
        self.strays: set[str] = set()  # copies an agent before this one left going
        self.abandoned: list[tuple[str, bool]] = []

    async def slots(self, server_id: str) -> dict[str, int]:
        return {}

    async def receive_live(self, spec: InstanceSpec, slots: object, host: str) -> Incoming:
        await self.spawn(spec)
        self._get(spec.server_id).power = PowerState.PAUSED
        return Incoming(host, 49152, 49153, ())

    async def send_live(self, server_id: str, incoming: Incoming) -> None:
        self.copying[server_id] = {"memory_total_bytes": 4096, "memory_processed_bytes": 1024}
        try:
            await self.let_go.wait()
        finally:
            del self.copying[server_id]
        if self.failure:
            raise InstanceError(self.failure)
        self.left.add(server_id)
        self._get(server_id).power = PowerState.PAUSED

    async def finish_live(self, server_id: str, console: str, paused: bool = False) -> None:
        self.finished.append(paused)
        if self._get(server_id).power != PowerState.RUNNING:  # resumed already: it runs on
            self._get(server_id).power = PowerState.PAUSED if paused else PowerState.RUNNING

    def progress(self, server_id: str) -> dict[str, int] | None:
        return self.copying.get(server_id)

    def steer(self, server_id: str, wish: str) -> bool:
        return server_id in self.copying

    async def departed(self, server_id: str) -> bool:
        return server_id in self.left

    async def abandon_stray(self, server_id: str, running: bool) -> bool:
        if server_id not in self.strays:
            return False
        self.strays.discard(server_id)
        self.abandoned.append((server_id, running))
        self._get(server_id).power = PowerState.RUNNING if running else PowerState.PAUSED
        return True


def moving_service(root: Path, driver: MovingInstances) -> instances.InstanceService:
    async def ensure_network(wiring: NetworkWiring) -> None:
        pass

    return instances.InstanceService(
        root / "servers",
        {"fake": driver},
        FakeL2(),
        Images(root),  # type: ignore[arg-type]
        ensure_network=ensure_network,
        registry="127.0.0.1:5000",
        namespaces=FakeNamespaces(),
    )


async def test_a_restarted_agent_undoes_the_copies_its_predecessor_left_going(
    tmp_path: Path,
) -> None:
    """At start the agent asks its driver to undo each live migration no one follows any
    more: the guest runs on, unless its owner had paused it."""
    driver = MovingInstances()
    made = moving_service(tmp_path, driver)
    held = "5e7e0000-0000-4000-8000-000000000002"
    for server_id in (SERVER, held):
        await made.spawn(instancerequests.parse_request(server_id, {**REQUEST, "nics": []}))
        driver._get(server_id).power = PowerState.PAUSED  # before its switch-over, for good
    await made.act(held, "pause", False)
    driver.strays = {SERVER, held}
    assert await moving_service(tmp_path, driver).resume() == []  # nothing to boot again
    assert sorted(driver.abandoned) == sorted([(SERVER, True), (held, False)])
    assert await driver.state(SERVER) == PowerState.RUNNING
    assert await driver.state(held) == PowerState.PAUSED
    await moving_service(tmp_path, driver).resume()
    assert len(driver.abandoned) == 2  # nothing left to undo


async def test_the_source_sends_in_the_background_and_says_how_it_goes(tmp_path: Path) -> None:
    driver = MovingInstances()
    made = moving_service(tmp_path, driver)
    other, idle = "5e7e0000-0000-4000-8000-000000000002", "5e7e0000-0000-4000-8000-000000000003"
    for server_id in (SERVER, other, idle):
        await made.spawn(instancerequests.parse_request(server_id, {**REQUEST, "nics": []}))
    app = web.Application()
    instanceroutes.add_routes(app, made)
    where = {"host": "10.254.0.2", "nbd_port": 49152, "migration_port": 49153, "exports": []}
    async with TestClient(TestServer(app)) as client:

        async def state(server_id: str) -> dict[str, object]:
            answer = await client.get(f"/instances/{server_id}/live-migrate")
            assert answer.status == 200, await answer.text()
            return dict(await answer.json())

        assert await state(SERVER) == {"state": "none"}
        sent = await client.post(f"/instances/{SERVER}/live-migrate", json=where)
        assert sent.status == 202 and await sent.json() == {"state": "running"}
        assert (await client.post(f"/instances/{other}/live-migrate", json=where)).status == 202
        await asyncio.sleep(0)
        going = await state(SERVER)
        assert going == {"state": "running", "progress": driver.copying[SERVER]}
        again = await client.post(f"/instances/{SERVER}/live-migrate", json=where)
        assert again.status == 409 and "already under way" in (await again.json())["message"]
        steered = await client.post(f"/instances/{SERVER}/live-migrate/force-complete")
        assert steered.status == 200
        bad = await client.get(f"/instances/{SERVER}/live-migrate?wait=31")
        assert bad.status == 400 and "wait must be" in (await bad.json())["message"]
        asyncio.get_running_loop().call_later(0.05, driver.let_go.set)
        waited = await client.get(f"/instances/{SERVER}/live-migrate?wait=20")
        done = await waited.json()  # heard at its end, well before the 20 s
        assert done["state"] == "completed" and "login:" in str(done["console"])
        # an agent that restarts knows a guest that left by its paused copy
        driver.left.add(SERVER)
        assert (await moving_service(tmp_path, driver).live_state(SERVER))["state"] == "completed"
        assert await moving_service(tmp_path, driver).live_state(idle) == {"state": "none"}
        assert (await state(other))["state"] == "completed"  # sent beside the first
        over = await client.post(f"/instances/{SERVER}/live-migrate", json=where)
        assert over.status == 202  # refused by the copy itself: the guest is gone from here
        async with asyncio.timeout(5):
            while (refused := await state(SERVER))["state"] == "running":
                await asyncio.sleep(0.01)
        gone = f"instance {SERVER} has already left this host"
        assert refused == {"state": "failed", "error": gone}
        assert (await client.delete(f"/instances/{SERVER}")).status == 200
        assert (await client.get(f"/instances/{SERVER}/live-migrate")).status == 404

    driver.let_go, driver.failure = asyncio.Event(), "the mirror broke"
    failing = moving_service(tmp_path, driver)
    failing.send_live(idle, instanceroutes.incoming_of(where))
    await asyncio.sleep(0)
    driver.let_go.set()
    async with asyncio.timeout(5):
        while (outcome := await failing.live_state(idle))["state"] == "running":
            await asyncio.sleep(0.01)
    assert outcome == {"state": "failed", "error": "the mirror broke"}
    assert await driver.state(idle) == PowerState.RUNNING  # it runs on here


class NodeProxy:
    """The API server's node proxy over two agents served in-process: `/api/v1/nodes/<host>/
    proxy/<path>` goes to that host's routes; a host in `silent` answers 503, as the proxy
    does for an agent it cannot reach."""

    def __init__(self, agents: dict[str, TestClient]) -> None:
        self.agents = agents
        self.silent: set[str] = set()

    async def request(
        self, method: str, path: str, *, params: Any = None, body: Any = None, headers: Any = None
    ) -> Response:
        host, rest = path.removeprefix("/api/v1/nodes/").split("/proxy", 1)
        if host in self.silent:
            return Response(503, {}, b'{"message": "no route to the agent"}')
        answer = await self.agents[host].request(
            method, rest, params=params, data=body, headers=headers
        )
        return Response(answer.status, dict(answer.headers), await answer.read())

    async def close(self) -> None:
        pass


@dataclass
class Steered:
    """A live migration's record, as far as a controller before took it."""

    started: bool
    switched: bool = False
    reports: list[dict[str, int]] = field(default_factory=list)

    def wish(self) -> str | None:
        return None

    async def report(self, progress: dict[str, int]) -> None:
        self.reports.append(progress)

    async def switch(self) -> None:
        self.switched = True


async def test_a_restarted_controller_takes_a_live_migration_up_where_the_hosts_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The controller's half against two agents (`AgentDriver`): a copy a controller before
    this one began is followed, not begun again, then the guest resumed at the destination;
    a source that does not answer keeps the destination (it may hold the guest); a guest
    already switched over is only resumed."""
    monkeypatch.setattr(agentdriver, "PROGRESS_INTERVAL_S", 0.05)  # each read's wait
    source_driver, dest_driver = MovingInstances(), MovingInstances()
    source = moving_service(tmp_path / "a", source_driver)
    dest = moving_service(tmp_path / "b", dest_driver)
    request = instancerequests.parse_request(SERVER, {**REQUEST, "nics": []})
    await source.spawn(request)
    await dest.receive_live(request, {}, "10.254.0.2")  # readied by the controller before
    source_app, dest_app = web.Application(), web.Application()
    instanceroutes.add_routes(source_app, source)
    instanceroutes.add_routes(dest_app, dest)
    async with (
        TestClient(TestServer(source_app)) as to_source,
        TestClient(TestServer(dest_app)) as to_dest,
    ):
        proxy = NodeProxy({"hv-a": to_source, "hv-b": to_dest})
        driver = AgentDriver(Client(proxy), caller=None, records=None)  # type: ignore[arg-type]
        server = {"metadata": {"name": SERVER}, "status": {"host": "hv-a"}}

        # the copy began: the source's answer says so, and it is followed to its end
        source.send_live(SERVER, Incoming("10.254.0.2", 49152, 49153, ()))
        asyncio.get_running_loop().call_later(0.3, source_driver.let_go.set)
        steering = Steered(started=True)
        outcome = await driver.live_migrate(server, "hv-b", "10.254.0.2", ("fake",), steering)
        assert steering.switched and steering.reports  # its progress was heard on the way
        assert outcome.power_state == int(PowerState.RUNNING)
        assert await dest_driver.state(SERVER) == PowerState.RUNNING
        assert await source_driver.departed(SERVER)  # paused there, for the controller to go

        # taken up after the switch-over: only resumed (again: it already runs)
        again = await driver.live_migrate(
            server, "hv-b", "10.254.0.2", ("fake",), Steered(started=True, switched=True)
        )
        assert again.power_state == int(PowerState.RUNNING)
        paused = {**server, "status": {"host": "hv-a", "vm_state": "paused"}}
        await driver.live_migrate(paused, "hv-b", "10.254.0.2", ("fake",), Steered(True, True))
        assert dest_driver.finished == [False, False, True]  # a paused guest stays paused

        # a source that does not answer: unknown, so the destination stays as it is
        proxy.silent.add("hv-a")
        with pytest.raises(agentdriver.SourceSilent):
            await driver.live_migrate(server, "hv-b", "10.254.0.2", ("fake",), Steered(True))
        assert dest.recorded(SERVER) is not None and SERVER in dest_driver.instances
