"""Address and VXLAN id allocation is race-free across workers: two allocators with their own
caches (as two gateway processes have) over one API server never hand out the same one."""

from __future__ import annotations

import asyncio

import pytest

from unistack.client.api import Client
from unistack.iaas import crds
from unistack.iaas.network import kinds
from unistack.iaas.network.allocations import INDEXERS, Allocator, Exhausted
from unistack.iaas.records import Records
from unistack.runtime.informer import SharedInformers

SUBNET = {
    "metadata": {"name": "subnet-1"},
    "spec": {"ip_version": 4, "allocation_pools": [{"start": "10.0.0.2", "end": "10.0.0.21"}]},
}


async def workers(client: Client) -> list[Records]:
    await crds.install(client, [kinds.ALLOCATIONS])
    made = []
    for _ in range(2):
        records = Records(
            client, [kinds.ALLOCATIONS], {kinds.ALLOCATIONS: INDEXERS}, SharedInformers(client)
        )
        await records.start()
        made.append(records)
    return made


async def test_two_workers_never_share_an_address(client: Client) -> None:
    first, second = await workers(client)
    allocators = [Allocator(first), Allocator(second)]
    taken = await asyncio.gather(
        *(allocators[i % 2].take_address(SUBNET, f"port-{i}") for i in range(20))
    )
    assert len(set(taken)) == 20
    with pytest.raises(Exhausted):
        await allocators[0].take_address(SUBNET, "one-too-many")
    await allocators[1].release_address("subnet-1", taken[0])
    await first.settle(kinds.ALLOCATIONS, None, f"subnet-1.{taken[0]}")
    assert await allocators[0].take_address(SUBNET, "again") == taken[0]
    vnis = await asyncio.gather(*(allocators[i % 2].take_vni(f"net-{i}") for i in range(6)))
    assert sorted(vnis) == [1, 2, 3, 4, 5, 6]
    for records in (first, second):
        await records.stop()
