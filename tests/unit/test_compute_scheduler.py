"""The compute scheduler's decision, without I/O: filters, allocation ratios, weighing."""

from __future__ import annotations

import pytest

from unistack.iaas.compute.scheduler import (
    HostState,
    NoValidHost,
    Request,
    Resources,
    select_host,
)

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
