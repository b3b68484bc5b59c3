"""The agent's compute service over fakes: requests checked, NICs plugged before the boot,
stop keeps what the next `up` resumes, and the HTTP routes answer in JSON."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from unistack.agent import instancerequests, instanceroutes, instances
from unistack.dataplane import tenantnames
from unistack.dataplane.instances import FakeInstances, InstanceError, PowerState
from unistack.dataplane.netns import FakeNamespaces
from unistack.dataplane.tenantnet import FakeL2, NetworkWiring

SERVER, PORT, NET = "5e7e0000-0000-4000-8000-000000000001", "p0r70000-1", "ne700000-1"
REQUEST = {
    "driver": "fake",
    "hostname": "web-1",
    "vcpus": 1,
    "memory_mb": 128,
    "image_id": "1ma9e000-1",
    "nics": [
        {
            "port_id": PORT,
            "mac": "fa:16:3e:00:00:01",
            "network_id": NET,
            "fixed_ips": ["10.0.0.5/24"],
            "gateway": "10.0.0.1",
            "mtu": 1450,
        }
    ],
    "public_keys": ["ssh-ed25519 AAAA test"],
}


class Images:
    """The registry side: an image id becomes a directory, as `ImageCache` would unpack it."""

    def __init__(self, root: Path) -> None:
        self.root, self.pulled = root, []

    async def unpack_artifact(self, image: str, **_: Any) -> Path:
        self.pulled.append(image)
        return self.root / image.rsplit(":", 1)[-1]

    async def pull_artifact(self, image: str, **_: Any) -> Path:
        self.pulled.append(image)
        return self.root / "disk"


def service(tmp_path: Path) -> tuple[instances.InstanceService, FakeInstances, FakeL2]:
    driver, l2 = FakeInstances(), FakeL2()

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
    )
    return made, driver, l2


def test_a_request_is_checked_field_by_field() -> None:
    parsed = instancerequests.parse_request(SERVER, REQUEST)
    assert parsed.nics[0].fixed_ips == ("10.0.0.5/24",) and parsed.image_kind == "filesystem"
    for broken, message in (
        ({**REQUEST, "vcpus": -1}, "vcpus"),
        ({**REQUEST, "ephemeral_gb": "1"}, "ephemeral_gb"),
        ({**REQUEST, "driver": ""}, "driver"),
        ({**REQUEST, "image_kind": "iso"}, "image_kind"),
        ({**REQUEST, "nics": [{"port_id": PORT}]}, "mac"),
        ({**REQUEST, "user_data": "not base64!"}, "user_data"),
        ({**REQUEST, "config_drive": {"../etc/passwd": ""}}, "relative"),
        ({**REQUEST, "config_drive": {"/openstack": ""}}, "relative"),
        ({**REQUEST, "config_drive": {"openstack/latest/user_data": "not base64!"}}, "base64"),
        ({**REQUEST, "config_drive": ["meta_data.json"]}, "config_drive"),
        ({**REQUEST, "personality": {"/etc/../../x": ""}}, "without '..'"),
        ({**REQUEST, "personality": {"/": ""}}, "name a file"),
        ({**REQUEST, "personality": {"/etc/motd": "not base64!"}}, "base64"),
        ([], "object"),
    ):
        with pytest.raises(instancerequests.RequestError, match=message):
            instancerequests.parse_request(SERVER, broken)


def test_the_config_drives_files_reach_the_driver_decoded(tmp_path: Path) -> None:
    made, driver, _ = service(tmp_path)
    files = {"openstack/latest/meta_data.json": base64.b64encode(b'{"uuid": "x"}').decode()}
    request = instancerequests.parse_request(SERVER, {**REQUEST, "config_drive": files})
    asyncio.run(made.spawn(request))
    assert driver.instances[SERVER].spec.config_drive == {
        "openstack/latest/meta_data.json": b'{"uuid": "x"}'
    }
    plain = instancerequests.parse_request(SERVER, REQUEST)
    assert plain.config_drive == {} and plain.personality == {}


def test_the_flavors_ephemeral_disk_reaches_the_driver(tmp_path: Path) -> None:
    made, driver, _ = service(tmp_path)
    request = instancerequests.parse_request(SERVER, {**REQUEST, "ephemeral_gb": 2})
    asyncio.run(made.spawn(request))
    assert driver.instances[SERVER].spec.ephemeral_gb == 2


def test_spawn_plugs_each_port_into_the_servers_namespace_then_boots(tmp_path: Path) -> None:
    made, driver, l2 = service(tmp_path)
    state = asyncio.run(made.spawn(instancerequests.parse_request(SERVER, REQUEST)))
    assert state == PowerState.RUNNING
    assert l2.calls == [("ensure_network", NET), ("plug_veth", PORT)]
    plugged = l2.ports[PORT]
    assert plugged.netns_path.endswith(tenantnames.server_netns(SERVER))
    spec = driver.instances[SERVER].spec
    assert spec.nics[0].device == "eth0" and spec.nics[0].gateway == "10.0.0.1"
    assert spec.image_layers == (tmp_path / "1ma9e000-1",) and spec.ephemeral_gb == 0
    assert made.images.pulled == ["127.0.0.1:5000/openstack/images:1ma9e000-1"]  # type: ignore[attr-defined]
    # A second spawn of a running instance does nothing.
    asyncio.run(made.spawn(instancerequests.parse_request(SERVER, REQUEST)))
    assert [call for call in driver.calls if call[0] == "spawn"] == [("spawn", SERVER)]


def test_a_vm_gets_taps_and_its_disk(tmp_path: Path) -> None:
    made, driver, l2 = service(tmp_path)
    vm = {**REQUEST, "image_kind": "disk", "kernel_id": "k"}
    asyncio.run(made.spawn(instancerequests.parse_request(SERVER, vm)))
    assert l2.ports[PORT].kind == "tap"
    spec = driver.instances[SERVER].spec
    assert spec.nics[0].device == tenantnames.port_device(PORT)
    assert spec.image_file == tmp_path / "disk" and spec.kernel == tmp_path / "disk"


def test_stop_all_keeps_the_wish_to_run_and_resume_boots_it_again(tmp_path: Path) -> None:
    made, _, l2 = service(tmp_path)
    asyncio.run(made.spawn(instancerequests.parse_request(SERVER, REQUEST)))
    assert asyncio.run(made.stop_all()) == [SERVER]
    assert asyncio.run(made.state(SERVER)) == PowerState.SHUTDOWN and PORT not in l2.ports
    assert asyncio.run(made.resume()) == [SERVER]
    assert asyncio.run(made.state(SERVER)) == PowerState.RUNNING and PORT in l2.ports
    # A server its owner stopped stays stopped after the host comes back.
    asyncio.run(made.act(SERVER, "stop", False))
    asyncio.run(made.stop_all())
    assert asyncio.run(made.resume()) == []


def test_a_paused_or_suspended_guest_is_held_so_again_when_the_host_comes_back(
    tmp_path: Path,
) -> None:
    made, driver, _ = service(tmp_path)
    asyncio.run(made.spawn(instancerequests.parse_request(SERVER, REQUEST)))
    for hold, held, back in (
        ("pause", PowerState.PAUSED, "unpause"),
        ("suspend", PowerState.SUSPENDED, "resume"),
    ):
        assert asyncio.run(made.act(SERVER, hold, False)) == held
        asyncio.run(made.stop_all())
        driver.instances.clear()  # the host came back: nothing runs
        assert asyncio.run(made.resume()) == [SERVER]
        assert asyncio.run(made.state(SERVER)) == held  # booted, and held as it was
        assert driver.calls[-2:] == [("spawn", SERVER), (hold, SERVER)]
        assert asyncio.run(made.act(SERVER, back, False)) == PowerState.RUNNING
        asyncio.run(made.stop_all())
        driver.instances.clear()
        asyncio.run(made.resume())
        assert driver.calls[-1] == ("spawn", SERVER)  # running again, as it was left
    asyncio.run(made.act(SERVER, "stop", False))
    with pytest.raises(InstanceError, match="cannot pause"):  # nothing runs to pause
        asyncio.run(made.act(SERVER, "pause", False))


def test_destroy_removes_the_instance_its_ports_and_its_record(tmp_path: Path) -> None:
    made, driver, l2 = service(tmp_path)
    asyncio.run(made.spawn(instancerequests.parse_request(SERVER, REQUEST)))
    asyncio.run(made.destroy(SERVER))
    assert SERVER not in driver.instances and PORT not in l2.ports
    assert made.recorded(SERVER) is None
    assert asyncio.run(made.state(SERVER)) == PowerState.NOSTATE


def _second(port: str, mac: str) -> instancerequests.NicRequest:
    body = {"port_id": port, "mac": mac, "network_id": "ne700000-2", "fixed_ips": ["10.1.0.7/24"]}
    return instancerequests.nic_request(body)


def test_an_attached_interface_gets_the_first_free_name_and_outlives_a_restart(
    tmp_path: Path,
) -> None:
    """Attach: eth1 plugged into the server's namespace and given to the driver, recorded; a
    detach frees eth1 and the next attach takes it, while the others keep their names
    through the host's restart (stop_all, then resume boots them with the same names)."""
    made, driver, l2 = service(tmp_path)
    asyncio.run(made.spawn(instancerequests.parse_request(SERVER, REQUEST)))
    assert asyncio.run(made.attach_interface(SERVER, _second("p0r70000-2", "fa:16:3e:00:00:02")))
    assert l2.ports["p0r70000-2"].ifname == "eth1" and "ne700000-2" in l2.networks
    third = _second("p0r70000-3", "fa:16:3e:00:00:03")
    assert asyncio.run(made.attach_interface(SERVER, third)) == "eth2"
    assert asyncio.run(made.attach_interface(SERVER, third)) == "eth2"  # attached already
    names = [nic.device for nic in driver.instances[SERVER].spec.nics]
    assert names == ["eth0", "eth1", "eth2"]

    asyncio.run(made.detach_interface(SERVER, "p0r70000-2"))
    assert "p0r70000-2" not in l2.ports
    assert [nic.device for nic in driver.instances[SERVER].spec.nics] == ["eth0", "eth2"]
    fourth = _second("p0r70000-4", "fa:16:3e:00:00:04")
    assert asyncio.run(made.attach_interface(SERVER, fourth)) == "eth1"
    asyncio.run(made.detach_interface(SERVER, "p0r70000-2"))  # not attached: nothing

    recorded = made.recorded(SERVER)
    assert recorded is not None
    assert [(n.port_id, n.device) for n in recorded.nics] == [
        (PORT, "eth0"), ("p0r70000-3", "eth2"), ("p0r70000-4", "eth1"),
    ]  # fmt: skip
    asyncio.run(made.stop_all())
    driver.instances.clear()  # the host came back: nothing runs
    assert asyncio.run(made.resume()) == [SERVER]
    booted = {nic.port_id: nic.device for nic in driver.instances[SERVER].spec.nics}
    assert booted == {PORT: "eth0", "p0r70000-3": "eth2", "p0r70000-4": "eth1"}
    assert {p: l2.ports[p].ifname for p in booted} == booted


def test_a_vm_gets_an_attached_interface_as_a_tap(tmp_path: Path) -> None:
    made, driver, l2 = service(tmp_path)
    vm = {**REQUEST, "image_kind": "disk"}
    asyncio.run(made.spawn(instancerequests.parse_request(SERVER, vm)))
    device = asyncio.run(made.attach_interface(SERVER, _second("p0r70000-2", "fa:16:3e:00:00:02")))
    assert device == tenantnames.port_device("p0r70000-2") and l2.ports["p0r70000-2"].kind == "tap"
    assert driver.instances[SERVER].spec.nics[-1].device == device


def test_an_interface_the_guest_refuses_is_unplugged_and_not_recorded(tmp_path: Path) -> None:
    made, driver, l2 = service(tmp_path)
    asyncio.run(made.spawn(instancerequests.parse_request(SERVER, REQUEST)))

    async def refuse(server_id: str, nic: object) -> None:
        raise instances.InstanceError("the guest said no")

    driver.attach_nic = refuse  # type: ignore[method-assign]
    with pytest.raises(instances.InstanceError, match="the guest said no"):
        asyncio.run(made.attach_interface(SERVER, _second("p0r70000-2", "fa:16:3e:00:00:02")))
    assert "p0r70000-2" not in l2.ports
    recorded = made.recorded(SERVER)
    assert recorded is not None and [n.port_id for n in recorded.nics] == [PORT]


def test_an_interface_of_a_server_not_booted_here_waits_for_its_boot(tmp_path: Path) -> None:
    """A server recorded stopped (it arrived so): the port is recorded, plugged at start."""
    made, driver, l2 = service(tmp_path)
    request = instancerequests.parse_request(SERVER, REQUEST)
    asyncio.run(made.spawn(request, power_on=False))
    asyncio.run(made.attach_interface(SERVER, _second("p0r70000-2", "fa:16:3e:00:00:02")))
    assert "p0r70000-2" not in l2.ports and SERVER not in driver.instances
    asyncio.run(made.act(SERVER, "start", False))
    assert [nic.device for nic in driver.instances[SERVER].spec.nics] == ["eth0", "eth1"]
    assert l2.ports["p0r70000-2"].ifname == "eth1"


async def _routes(tmp_path: Path) -> None:
    made, driver, _ = service(tmp_path)
    app = web.Application()
    instanceroutes.add_routes(app, made)
    async with TestClient(TestServer(app)) as client:
        answer = await client.put(f"/instances/{SERVER}", json=REQUEST)
        assert answer.status == 200 and (await answer.json()) == {"power_state": 1}
        bad = await client.put(f"/instances/{SERVER}", json={**REQUEST, "driver": "qemu"})
        assert bad.status == 400 and "no qemu driver" in (await bad.json())["message"]
        action = await client.post(f"/instances/{SERVER}/action", json={"action": "stop"})
        assert (await action.json())["power_state"] == int(PowerState.SHUTDOWN)
        wrong = await client.post(f"/instances/{SERVER}/action", json={"action": "explode"})
        assert wrong.status == 400
        console = await client.get(f"/instances/{SERVER}/console", params={"lines": "1"})
        assert (await console.json())["output"] == "web-1 login: "
        missing = await client.get("/instances/nope")
        assert missing.status == 404
        path = f"/instances/{SERVER}/password"
        assert (await client.post(path, json={"password": "Newpass1234"})).status == 200
        assert driver.instances[SERVER].password == "Newpass1234"
        assert (await client.post(path, json={"password": 7})).status == 400
        assert (await client.post("/instances/nope/password", json={"password": "x"})).status == 409
        nic = {"port_id": "p0r70000-2", "mac": "fa:16:3e:00:00:02", "network_id": NET}
        path = f"/instances/{SERVER}/interfaces"
        attached = await client.post(path, json=nic)
        assert (await attached.json()) == {"port_id": "p0r70000-2", "device": "eth1"}
        named = await client.post(path, json={**nic, "device": "eth7"})
        assert named.status == 400 and "device" in (await named.json())["message"]
        assert (await client.post(path, json={"port_id": "x"})).status == 400
        assert (await client.post("/instances/nope/interfaces", json=nic)).status == 404
        assert (await client.delete(f"{path}/p0r70000-2")).status == 200
        path, image = f"/instances/{SERVER}/action", {"image_id": "r35c0e00-1"}
        rescued = await client.post(path, json={"action": "rescue", "image": image})
        assert (await rescued.json()) == {"power_state": int(PowerState.RUNNING)}
        boot = driver.instances[SERVER].rescue
        assert boot is not None and boot.image_layers == (tmp_path / "r35c0e00-1",)
        vm_image = {**image, "image_kind": "disk"}  # a filesystem server boots no disk
        refused = await client.post(path, json={"action": "rescue", "image": vm_image})
        assert refused.status == 409 and "disk image" in (await refused.json())["message"]
        for body in ({"action": "rescue"}, {"action": "rescue", "image": {"image_kind": "x"}}):
            assert (await client.post(path, json=body)).status == 400
        assert (await client.post(path, json={"action": "unrescue"})).status == 200
        assert driver.instances[SERVER].rescue is None
        listed = await (await client.get("/instances")).json()
        assert listed["instances"][0]["id"] == SERVER
        assert (await client.delete(f"/instances/{SERVER}")).status == 200


def test_the_http_routes(tmp_path: Path) -> None:
    asyncio.run(_routes(tmp_path))
