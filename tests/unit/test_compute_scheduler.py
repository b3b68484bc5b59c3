"""The compute scheduler's decision, without I/O: filters, allocation ratios, weighing; and
the host a server's volumes tie it to."""

from __future__ import annotations

import asyncio

import pytest

from unistack.iaas.compute.controller import ServerController
from unistack.iaas.compute.scheduler import (
    HostState,
    NoValidHost,
    Request,
    Resources,
    select_host,
)
from unistack.iaas.compute.volumes import VolumeError, pool_node

SMALL = Resources(1, 512, 1)


def host(name: str, **fields: object) -> HostState:
    total = fields.pop("total", Resources(4, 8192, 100))
    return HostState(name, total, **fields)  # type: ignore[arg-type]


def test_spreads_by_free_ram() -> None:
    busy = host("a", used=Resources(1, 4096, 10))
    idle = host("b")
    assert select_host(Request(SMALL), [busy, idle]).name == "b"


def test_allocation_ratios_allow_overcommit_of_cpu_not_disk() -> None:
    full_cpu = host("a", total=Resources(1, 8192, 100), used=Resources(15, 0, 0))
    assert select_host(Request(SMALL), [full_cpu]).name == "a"
    full_disk = host("b", used=Resources(0, 0, 100))
    with pytest.raises(NoValidHost, match="No valid host was found"):
        select_host(Request(SMALL), [full_disk])
    ram = host("c", total=Resources(4, 1000, 100), used=Resources(0, 1000, 0))
    assert select_host(Request(Resources(1, 500, 1)), [ram]).name == "c"
    with pytest.raises(NoValidHost):
        select_host(Request(Resources(1, 501, 1)), [ram])


def test_zone_forced_host_and_disabled_hosts_filter() -> None:
    hosts = [host("a", zone="az1"), host("b", zone="az2"), host("c", enabled=False)]
    assert select_host(Request(SMALL, zone="az2"), hosts).name == "b"
    assert select_host(Request(SMALL, host="a"), hosts).name == "a"
    with pytest.raises(NoValidHost):
        select_host(Request(SMALL, host="c"), hosts)
    with pytest.raises(NoValidHost):
        select_host(Request(SMALL), [])


def test_a_host_whose_agent_is_silent_takes_nothing() -> None:
    """Nova's ComputeFilter: a down compute service is no candidate, even with room."""
    silent, up = host("a", up=False), host("b", used=Resources(2, 6000, 50))
    assert select_host(Request(SMALL), [silent, up]).name == "b"
    with pytest.raises(NoValidHost):
        select_host(Request(SMALL, host="a"), [silent, up])


def test_affinity_and_anti_affinity() -> None:
    with_member = host("a", groups={"g": 1}, used=Resources(0, 4096, 0))
    empty = host("b")
    affinity = Request(SMALL, group_id="g", group_policy="affinity", group_members=1)
    assert select_host(affinity, [with_member, empty]).name == "a"
    first = Request(SMALL, group_id="g", group_policy="affinity", group_members=0)
    assert select_host(first, [empty]).name == "b"  # the first member may go anywhere
    anti = Request(SMALL, group_id="g", group_policy="anti-affinity", group_members=1)
    assert select_host(anti, [with_member, empty]).name == "b"
    with pytest.raises(NoValidHost):
        select_host(anti, [with_member])


def test_soft_policies_weigh_instead_of_filtering() -> None:
    with_member = host("a", groups={"g": 1}, used=Resources(0, 4096, 0))
    empty = host("b")
    soft = Request(SMALL, group_id="g", group_policy="soft-affinity", group_members=1)
    assert select_host(soft, [with_member, empty]).name == "a"
    soft_anti = Request(SMALL, group_id="g", group_policy="soft-anti-affinity", group_members=1)
    assert select_host(soft_anti, [with_member]).name == "a"
    assert select_host(soft_anti, [with_member, empty]).name == "b"


def test_a_server_prefers_the_host_of_its_volumes() -> None:
    hosts = [host("a"), host("b", used=Resources(1, 4096, 10))]
    assert select_host(Request(SMALL, volume_host="b"), hosts).name == "b"  # despite RAM
    assert select_host(Request(SMALL, volume_host="gone"), hosts).name == "a"
    full = host("b", used=Resources(0, 0, 100))  # no room there: elsewhere, connected
    assert select_host(Request(SMALL, volume_host="b"), [host("a"), full]).name == "a"
    forced = Request(SMALL, volume_host="b", host="a")  # the admin's host wins
    assert select_host(forced, hosts).name == "a"
    soft = Request(SMALL, volume_host="b", group_id="g", group_policy="soft-affinity")
    grouped = [host("a", groups={"g": 1}), host("b")]
    assert select_host(soft, grouped).name == "a"  # the group's wish weighs more


class Cinder:
    """The Block Storage API's volume bodies, by id (a volume not there is a 404)."""

    def __init__(self, hosts: dict[str, str]) -> None:
        self.hosts = hosts

    async def show(self, volume_id: str) -> dict:
        if volume_id not in self.hosts:
            raise VolumeError(404, f"Volume {volume_id} could not be found.")
        return {"id": volume_id, "os-vol-host-attr:host": self.hosts[volume_id]}


def volume_host(hosts: dict[str, str], server: dict) -> str | None:
    controller = ServerController(None, None, None, Cinder(hosts), None, None)  # type: ignore[arg-type]
    return asyncio.run(controller.volume_host(server))


def test_the_volumes_host_comes_from_the_mapping_and_what_was_attached_while_shelved() -> None:
    hosts = {
        "v1": "node1@unistack-pool#unistack",
        "v2": "node2@unistack-pool#unistack",
        "fake": "volnode@fake-backend#fake",  # no host's pool: anywhere
    }
    boot = {"source_type": "volume", "destination_type": "volume", "uuid": "v1"}
    image = {"source_type": "image", "destination_type": "volume", "uuid": "img"}
    assert volume_host(hosts, {"spec": {"block_device_mapping_v2": [boot, image]}}) == "node1"
    shelved = {"spec": {}, "status": {"volumes_attached": [{"volume_id": "v2"}]}}
    assert volume_host(hosts, shelved) == "node2"
    anywhere = {
        "spec": {"block_device_mapping_v2": [{**boot, "uuid": "fake"}, {**boot, "uuid": "nope"}]}
    }
    assert volume_host(hosts, anywhere) is None
    both = {"spec": {"block_device_mapping_v2": [boot]}, "status": shelved["status"]}
    assert volume_host(hosts, both) == "node1"  # a tie: the first volume's host
    hosts["v3"] = "node2@unistack-pool#unistack"
    more = {**both, "status": {"volumes_attached": [{"volume_id": "v2"}, {"volume_id": "v3"}]}}
    assert volume_host(hosts, more) == "node2"  # the host of most of them
    assert pool_node({"os-vol-host-attr:host": "node1@unistack-pool"}) == "node1"
    assert pool_node({"os-vol-host-attr:host": None}) is None


def test_same_host_and_different_host_hints_filter() -> None:
    hosts = [HostState(name, Resources(4, 4096, 40)) for name in ("a", "b", "c")]
    small = Resources(1, 64, 1)
    near = Request(small, same_hosts=frozenset({"b"}))
    assert select_host(near, hosts).name == "b"
    away = Request(small, different_hosts=frozenset({"a", "b"}))
    assert select_host(away, hosts).name == "c"
    with pytest.raises(NoValidHost):  # the servers named are nowhere: no host has them
        select_host(Request(small, same_hosts=frozenset()), hosts)
    with pytest.raises(NoValidHost):
        both = Request(small, same_hosts=frozenset({"a"}), different_hosts=frozenset({"a"}))
        select_host(both, hosts)
