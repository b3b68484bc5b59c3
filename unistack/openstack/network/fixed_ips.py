"""A port's fixed IPs: which subnets and addresses a request means, and taking them.

With no `fixed_ips`, a port gets the next free address of the network's first IPv4 subnet, of
its first stateful IPv6 subnet, and its EUI-64 address (from the MAC) on every SLAAC or
DHCPv6-stateless subnet, as Neutron's IPAM does. A request names a subnet, an address, or
both; each is checked against the network. Taking is all or nothing: on a failure the
addresses already taken are given back.
"""

from __future__ import annotations

from typing import Any

from unistack.iaas.network import ipam, kinds
from unistack.iaas.network.allocations import AddressInUse, Exhausted
from unistack.iaas.records import Obj, spec_of
from unistack.openstack.network.service import NetworkService, bad, in_use

AUTO_MODES = ("slaac", "dhcpv6-stateless")


def is_auto(subnet: Obj) -> bool:
    spec = spec_of(subnet)
    return spec.get("ip_version") == 6 and spec.get("ipv6_address_mode") in AUTO_MODES


def _defaults(subnets: list[Obj]) -> list[tuple[Obj, str | None]]:
    ordered = sorted(subnets, key=lambda s: str(spec_of(s).get("created_at", "")))
    v4 = [s for s in ordered if spec_of(s).get("ip_version") == 4]
    v6 = [s for s in ordered if spec_of(s).get("ip_version") == 6 and not is_auto(s)]
    chosen = v4[:1] + v6[:1] + [s for s in ordered if is_auto(s)]
    return [(s, None) for s in chosen]


def _requests(
    service: NetworkService, network: Obj, requested: Any
) -> list[tuple[Obj, str | None]]:
    """(subnet, address or None) for each requested fixed IP, checked against the network."""
    network_id = network["metadata"]["name"]
    subnets = service.records.indexed(kinds.SUBNETS, "network", network_id)
    if requested is None:
        return _defaults(subnets)
    if not isinstance(requested, list):
        raise bad("Invalid input for fixed_ips. Reason: not a list.")
    wanted: list[tuple[Obj, str | None]] = []
    for entry in requested:
        if not isinstance(entry, dict) or set(entry) - {"subnet_id", "ip_address"}:
            raise bad(f"Invalid input for fixed_ips. Reason: {entry} is not valid.")
        wanted.append(_one_request(network_id, subnets, entry))
    return wanted


def _one_request(network_id: str, subnets: list[Obj], entry: Obj) -> tuple[Obj, str | None]:
    address = entry.get("ip_address")
    if address is not None:
        try:
            address = str(ipam.parse_address(address))
        except ipam.IpamError as exc:
            raise bad(str(exc)) from exc
    if entry.get("subnet_id"):
        subnet = next((s for s in subnets if s["metadata"]["name"] == entry["subnet_id"]), None)
        if subnet is None or (address and not ipam.in_subnet(address, spec_of(subnet)["cidr"])):
            raise bad(
                f"Invalid input for operation: Failed to create port on network {network_id}, "
                f"because fixed_ips included invalid subnet {entry['subnet_id']}.",
                "InvalidInput",
            )
        return subnet, address
    if address is None:
        raise bad("Invalid input for fixed_ips: an ip_address or subnet_id is required.")
    subnet = next((s for s in subnets if ipam.in_subnet(address, spec_of(s)["cidr"])), None)
    if subnet is None:
        raise bad(
            f"Invalid input for operation: IP address {address} is not a valid IP for any of the "
            "subnets on the specified network.",
            "InvalidIpForNetwork",
        )
    return subnet, address


async def allocate(
    service: NetworkService,
    network: Obj,
    port_id: str,
    requested: Any,
    mac: str,
    keep: frozenset[tuple[str, str]] = frozenset(),
) -> list[Obj]:
    """Take the addresses; on any failure give back those already taken."""
    taken: list[Obj] = []
    try:
        for subnet, address in _requests(service, network, requested):
            subnet_id = subnet["metadata"]["name"]
            if address is not None and (subnet_id, address) in keep:
                taken.append({"subnet_id": subnet_id, "ip_address": address})
                continue
            if address is None and is_auto(subnet):
                address = ipam.eui64(spec_of(subnet)["cidr"], mac)
            ip = await _take(service, network, subnet, port_id, address)
            taken.append({"subnet_id": subnet_id, "ip_address": ip})
    except BaseException:
        fresh = [
            (t["subnet_id"], t["ip_address"])
            for t in taken
            if (t["subnet_id"], t["ip_address"]) not in keep
        ]
        await service.allocator.release_all(fresh)
        raise
    return taken


async def _take(
    service: NetworkService, network: Obj, subnet: Obj, port_id: str, address: str | None
) -> str:
    subnet_id = subnet["metadata"]["name"]
    try:
        return await service.allocator.take_address(subnet, port_id, address)
    except AddressInUse as exc:
        raise in_use(
            "IpAddressAlreadyAllocated",
            f"IP address {address} already allocated in subnet {subnet_id}",
        ) from exc
    except Exhausted as exc:
        raise in_use(
            "IpAddressGenerationFailure",
            f"No more IP addresses available on network {network['metadata']['name']}.",
        ) from exc


async def reallocate(service: NetworkService, network: Obj, port: Obj, requested: Any) -> list[Obj]:
    """New fixed IPs for a port: keep those asked for again, take new ones, free the rest."""
    current = {(ip["subnet_id"], ip["ip_address"]) for ip in spec_of(port).get("fixed_ips") or []}
    port_id = port["metadata"]["name"]
    mac = str(spec_of(port).get("mac_address"))
    keep = frozenset(current)
    result = await allocate(service, network, port_id, requested or [], mac, keep)
    kept = {(ip["subnet_id"], ip["ip_address"]) for ip in result}
    await service.allocator.release_all(sorted(current - kept))
    return result
