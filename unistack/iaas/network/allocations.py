"""Race-free allocation of addresses and VXLAN ids through `Allocation` objects.

An address is taken by creating object `<subnet-id>.<address>` (IPv6 with dashes), a VXLAN id
by creating `vni.<n>`; the API server's AlreadyExists is the lock, so several gateway workers
(or hosts) never hand out the same one. The cache tells which are already taken, to skip them
without a round trip; a stale cache only costs a retry with the next candidate. Releasing is
deleting the object.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable

from unistack.client.api import NotFound
from unistack.iaas.network import ipam
from unistack.iaas.network.kinds import ALLOCATIONS
from unistack.iaas.records import Duplicate, Obj, Records, spec_of
from unistack.iaas.tenancy import SHARED_NAMESPACE

VNI_FIRST, VNI_LAST = 1, 16_000_000


class AddressInUse(Exception):
    """The requested address is held by someone else."""


class Exhausted(Exception):
    """No free address (or id) is left."""


def address_name(subnet_id: str, address: str) -> str:
    parsed = ipaddress.ip_address(address)
    text = str(parsed) if parsed.version == 4 else parsed.exploded.replace(":", "-")
    return f"{subnet_id}.{text}"


def vni_name(vni: int) -> str:
    return f"vni.{vni}"


def by_subnet(obj: Obj) -> list[str]:
    subnet = spec_of(obj).get("subnet_id")
    return [str(subnet)] if subnet else []


INDEXERS = {"subnet": by_subnet}


class Allocator:
    """Takes and releases addresses and VXLAN ids; `records` must index ALLOCATIONS by subnet."""

    def __init__(self, records: Records) -> None:
        self.records = records

    def taken(self, subnet_id: str) -> set[str]:
        held = self.records.indexed(ALLOCATIONS, "subnet", subnet_id)
        return {str(spec_of(obj).get("ip_address")) for obj in held}

    async def _claim(self, name: str, spec: Obj) -> bool:
        try:
            await self.records.create(ALLOCATIONS, name, spec)
        except Duplicate:
            return False
        return True

    async def take_address(self, subnet: Obj, owner: str, address: str | None = None) -> str:
        """`address` if free (else AddressInUse), or the first free one of the pools."""
        subnet_id = subnet["metadata"]["name"]
        spec = spec_of(subnet)
        if address is not None:
            claim = {"subnet_id": subnet_id, "ip_address": address, "owner": owner}
            if not await self._claim(address_name(subnet_id, address), claim):
                raise AddressInUse(address)
            return address
        pools = spec.get("allocation_pools") or []
        for candidate in ipam.candidates(pools, self.taken(subnet_id), spec["ip_version"]):
            claim = {"subnet_id": subnet_id, "ip_address": candidate, "owner": owner}
            if await self._claim(address_name(subnet_id, candidate), claim):
                return candidate
        raise Exhausted(subnet_id)

    async def release_address(self, subnet_id: str, address: str) -> None:
        await self._release(address_name(subnet_id, address))

    async def release_all(self, pairs: Iterable[tuple[str, str]]) -> None:
        for subnet_id, address in pairs:
            await self.release_address(subnet_id, address)

    async def take_vni(self, owner: str, wanted: int | None = None) -> int:
        if wanted is not None:
            if not await self._claim(vni_name(wanted), {"vni": wanted, "owner": owner}):
                raise AddressInUse(str(wanted))
            return wanted
        held = {spec_of(o).get("vni") for o in self.records.all(ALLOCATIONS)}
        for vni in range(VNI_FIRST, VNI_LAST + 1):
            if vni not in held and await self._claim(vni_name(vni), {"vni": vni, "owner": owner}):
                return vni
        raise Exhausted("vxlan")

    async def release_vni(self, vni: int) -> None:
        await self._release(vni_name(vni))

    async def _release(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            await self.records.client.delete(ALLOCATIONS.ref, name, SHARED_NAMESPACE)
        await self.records.settle(ALLOCATIONS, None, name)
