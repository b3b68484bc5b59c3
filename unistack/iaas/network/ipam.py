"""Pure IP address management: CIDRs, gateways, allocation pools, the next free address.

No I/O: the facade validates a subnet with these functions and `allocations` walks
`candidates` to take the first address nobody holds. Neutron's rules: the gateway defaults to
the first host address, the pools default to every host address but the gateway, pools lie
inside the CIDR, do not overlap each other and do not contain the gateway; a network's subnets
do not overlap.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable, Iterator
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Pool = dict[str, str]


class IpamError(ValueError):
    """Input that Neutron rejects with 400; the message is Neutron's wording."""


def parse_cidr(text: Any, ip_version: int) -> Network:
    """The subnet's network; host bits set are an error as in Neutron."""
    if not isinstance(text, str):
        raise IpamError(f"Invalid input for cidr. Reason: '{text}' is not a valid IP subnet.")
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise IpamError(
            f"Invalid input for cidr. Reason: '{text}' is not a valid IP subnet."
        ) from exc
    if network.version != ip_version:
        raise IpamError("Cidr and IP version are not compatible.")
    if str(network) != text and "/" in text:
        raise IpamError(
            f"Invalid input for cidr. Reason: '{text}' isn't a recommended CIDR, "
            f"use '{network}' instead."
        )
    return network


def parse_any_cidr(text: Any) -> Network:
    """A CIDR of either IP version (read from the text), checked as `parse_cidr` does."""
    return parse_cidr(text, 6 if ":" in str(text) else 4)


def parse_address(text: Any, what: str = "ip_address") -> Address:
    try:
        return ipaddress.ip_address(str(text))
    except ValueError as exc:
        raise IpamError(
            f"Invalid input for {what}. Reason: '{text}' is not a valid IP address."
        ) from exc


def hosts_range(network: Network) -> tuple[int, int]:
    """The first and last usable host addresses, as integers."""
    first, last = int(network.network_address), int(network.broadcast_address)
    if network.num_addresses <= 2:
        return first, last
    if network.version == 4:
        return first + 1, last - 1
    return first + 1, last


def default_gateway(network: Network) -> str:
    first, _ = hosts_range(network)
    return str(ipaddress.ip_address(first))


def _split(first: int, last: int, hole: int | None) -> list[tuple[int, int]]:
    if hole is None or hole < first or hole > last:
        return [(first, last)] if first <= last else []
    parts = [(first, hole - 1), (hole + 1, last)]
    return [(a, b) for a, b in parts if a <= b]


def default_pools(network: Network, gateway: str | None) -> list[Pool]:
    first, last = hosts_range(network)
    hole = int(ipaddress.ip_address(gateway)) if gateway else None
    return [_pool(network.version, a, b) for a, b in _split(first, last, hole)]


def _pool(version: int, first: int, last: int) -> Pool:
    start = ipaddress.ip_address(first) if version == 4 else ipaddress.IPv6Address(first)
    end = ipaddress.ip_address(last) if version == 4 else ipaddress.IPv6Address(last)
    return {"start": str(start), "end": str(end)}


def pool_bounds(pool: Pool) -> tuple[int, int]:
    return int(ipaddress.ip_address(pool["start"])), int(ipaddress.ip_address(pool["end"]))


def validate_gateway(network: Network, gateway: str) -> None:
    address = parse_address(gateway, "gateway_ip")
    if address.version != network.version:
        raise IpamError(f"Invalid input for gateway_ip. Reason: '{gateway}' is not valid.")
    if address == network.network_address or (
        network.version == 4 and network.num_addresses > 2 and address == network.broadcast_address
    ):
        raise IpamError(f"Gateway ip {gateway} conflicts with allocation pool {network}")


def validate_pools(network: Network, pools: Any, gateway: str | None) -> list[Pool]:
    """Requested pools, checked: well formed, inside the CIDR, ordered, disjoint, no gateway."""
    if not isinstance(pools, list):
        raise IpamError("Invalid input for allocation_pools. Reason: not a list.")
    checked: list[Pool] = []
    for pool in pools:
        if not isinstance(pool, dict) or set(pool) != {"start", "end"}:
            raise IpamError(f"Invalid input for allocation_pools. Reason: {pool} is not valid.")
        start, end = parse_address(pool["start"], "start"), parse_address(pool["end"], "end")
        if start not in network or end not in network or int(start) > int(end):
            raise IpamError(
                f"The allocation pool {start}-{end} spans beyond the subnet cidr {network}."
            )
        checked.append({"start": str(start), "end": str(end)})
    ordered = sorted(checked, key=pool_bounds)
    for before, after in itertools.pairwise(ordered):
        if pool_bounds(before)[1] >= pool_bounds(after)[0]:
            raise IpamError(f"Found overlapping allocation pools: {before} and {after}")
    if gateway:
        hole = int(ipaddress.ip_address(gateway))
        for pool in checked:
            low, high = pool_bounds(pool)
            if low <= hole <= high:
                raise IpamError(
                    f"Gateway ip {gateway} conflicts with allocation pool "
                    f"{pool['start']}-{pool['end']}"
                )
    return checked


def overlapping(network: Network, others: Iterable[str]) -> str | None:
    """The first of `others` (CIDRs) that overlaps `network`, if any."""
    for other in others:
        candidate = ipaddress.ip_network(other, strict=False)
        if candidate.version == network.version and candidate.overlaps(network):
            return other
    return None


def candidates(pools: Iterable[Pool], taken: set[str], version: int) -> Iterator[str]:
    """Free addresses of `pools` in order, skipping those in `taken`."""
    for pool in pools:
        low, high = pool_bounds(pool)
        for value in range(low, high + 1):
            text = str(
                ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)
            )
            if text not in taken:
                yield text


def pool_size(pools: Iterable[Pool]) -> int:
    return sum(high - low + 1 for low, high in map(pool_bounds, pools))


def in_subnet(address: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def in_pools(address: str, pools: Iterable[Pool]) -> bool:
    value = int(ipaddress.ip_address(address))
    return any(low <= value <= high for low, high in map(pool_bounds, pools))


def eui64(cidr: str, mac: str) -> str:
    """The SLAAC address of `mac` in an IPv6 /64 (the universal/local bit flipped, ff:fe in
    the middle), as RFC 4291 appendix A and Neutron compute it."""
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 0x02
    interface = bytes([*octets[:3], 0xFF, 0xFE, *octets[3:]])
    network = ipaddress.IPv6Network(cidr, strict=False)
    return str(
        ipaddress.IPv6Address(int(network.network_address) | int.from_bytes(interface, "big"))
    )
