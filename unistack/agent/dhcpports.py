"""DHCP ports as the DHCP agent makes them: Port objects written through the API.

Neutron's DHCP agent asks the server for its port; this agent has no OpenStack credentials
and sits below `unistack.iaas` (it may not import the network service's allocator), so it
speaks the same protocol the facade's `iaas.network.allocations` speaks, through the
Kubernetes API: an address is taken by creating the `Allocation` object
`<subnet id>.<address>` in the shared namespace (AlreadyExists means someone holds it: try the
next free address of the subnet's allocation pools) and given back by deleting it; the Port
object then lives in its network's namespace with Neutron's attributes (`device_owner
network:dhcp`, `device_id dhcp<host uuid>-<network id>`, bound to this host, an `fa:16:3e`
MAC, the standard revision stamps), so the Neutron API lists it as any other port and
deleting the network releases it like its other ports. `unistack.agent.dhcp` decides what
to make, rebind, readdress or delete.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from unistack.client.api import AlreadyExists, Client, NotFound
from unistack.client.resources import ResourceRef

Obj = dict[str, Any]

GROUP, VERSION = "network.unistack.io", "v1"
PORTS = ResourceRef(GROUP, VERSION, "ports", True, "Port")
ALLOCATIONS = ResourceRef(GROUP, VERSION, "allocations", True, "Allocation")
SHARED_NAMESPACE = "openstack-shared"  # where Allocation objects live (iaas.tenancy)
DHCP_OWNER = "network:dhcp"
MAC_BASE = "fa:16:3e"


class Exhausted(Exception):
    """No free address is left in a subnet's pools."""


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


# --- pure ------------------------------------------------------------------------------------


def device_id(host: str, network_id: str) -> str:
    """Neutron's DHCP port device id: `dhcp<uuid5 of the host>-<network id>`."""
    return f"dhcp{uuid.uuid5(uuid.NAMESPACE_DNS, host)}-{network_id}"


def is_agent_port(port: Obj) -> bool:
    """A DHCP port a DHCP agent made (not a port a user merely gave that owner)."""
    spec = _spec(port)
    return spec.get("device_owner") == DHCP_OWNER and str(spec.get("device_id", "")).startswith(
        "dhcp"
    )


def allocation_name(subnet_id: str, address: str) -> str:
    """The Allocation object holding `address` (the facade's naming, IPv6 with dashes)."""
    parsed = ipaddress.ip_address(address)
    text = str(parsed) if parsed.version == 4 else parsed.exploded.replace(":", "-")
    return f"{subnet_id}.{text}"


def free_addresses(subnet: Obj, taken: set[str]) -> Iterator[str]:
    """The subnet's pool addresses in order, skipping `taken`."""
    for pool in _spec(subnet).get("allocation_pools") or []:
        low, high = (int(ipaddress.ip_address(pool[key])) for key in ("start", "end"))
        for value in range(low, high + 1):
            text = str(ipaddress.ip_address(value))
            if text not in taken:
                yield text


def addresses_in(subnet_id: str, ports: Iterable[Obj]) -> set[str]:
    """The addresses ports hold in a subnet (what the cache knows; the API has the last word)."""
    return {
        str(fixed.get("ip_address"))
        for port in ports
        for fixed in _spec(port).get("fixed_ips") or []
        if fixed.get("subnet_id") == subnet_id
    }


def random_mac(taken: set[str]) -> str:
    for _ in range(16):
        tail = ":".join(f"{secrets.randbelow(256):02x}" for _ in range(3))
        if f"{MAC_BASE}:{tail}" not in taken:
            return f"{MAC_BASE}:{tail}"
    raise RuntimeError("no free MAC address after several draws")


def now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def port_object(
    network: Obj, port_id: str, host: str, mac: str, fixed_ips: list[Obj]
) -> Obj:  # fmt: skip
    """The DHCP Port object of `network`, bound to `host`."""
    network_id, moment = _name(network), now_text()
    spec = {
        "project_id": _spec(network).get("project_id", ""),
        "network_id": network_id,
        "name": "",
        "description": "",
        "admin_state_up": True,
        "device_id": device_id(host, network_id),
        "device_owner": DHCP_OWNER,
        "binding:host_id": host,
        "allowed_address_pairs": [],
        "security_groups": [],
        "port_security_enabled": bool(_spec(network).get("port_security_enabled", True)),
        "mac_address": mac,
        "fixed_ips": fixed_ips,
        "tags": [],
        "created_at": moment,
        "updated_at": moment,
        "revision_number": 0,
    }
    metadata = {"name": port_id, "namespace": network["metadata"].get("namespace")}
    return {"apiVersion": PORTS.api_version, "kind": "Port", "metadata": metadata, "spec": spec}


# --- acting ----------------------------------------------------------------------------------


async def take_address(client: Client, subnet: Obj, owner: str, ports: Iterable[Obj]) -> str:
    """The first free pool address the API lets us hold (Exhausted when none)."""
    subnet_id = _name(subnet)
    for candidate in free_addresses(subnet, addresses_in(subnet_id, ports)):
        body = {
            "apiVersion": ALLOCATIONS.api_version,
            "kind": "Allocation",
            "metadata": {
                "name": allocation_name(subnet_id, candidate),
                "namespace": SHARED_NAMESPACE,
            },
            "spec": {"subnet_id": subnet_id, "ip_address": candidate, "owner": owner},
        }
        with contextlib.suppress(AlreadyExists):
            await client.create(ALLOCATIONS, body)
            return candidate
    raise Exhausted(subnet_id)


async def release_addresses(client: Client, fixed_ips: Iterable[Obj]) -> None:
    for fixed in fixed_ips:
        name = allocation_name(str(fixed["subnet_id"]), str(fixed["ip_address"]))
        with contextlib.suppress(NotFound):
            await client.delete(ALLOCATIONS, name, SHARED_NAMESPACE)


async def take_addresses(
    client: Client, subnets: Iterable[Obj], owner: str, ports: list[Obj]
) -> list[Obj]:
    """An address in each subnet; all or nothing."""
    taken: list[Obj] = []
    try:
        for subnet in subnets:
            address = await take_address(client, subnet, owner, ports)
            taken.append({"subnet_id": _name(subnet), "ip_address": address})
    except BaseException:
        await release_addresses(client, taken)
        raise
    return taken


async def create_port(
    client: Client, host: str, network: Obj, subnets: list[Obj], ports: list[Obj]
) -> Obj:
    """Make the network's DHCP port, bound to `host`, with an address on each subnet."""
    port_id = str(uuid.uuid4())
    fixed_ips = await take_addresses(client, subnets, port_id, ports)
    mac = random_mac({str(_spec(port).get("mac_address")) for port in ports})
    try:
        return await client.create(PORTS, port_object(network, port_id, host, mac, fixed_ips))
    except BaseException:
        await release_addresses(client, fixed_ips)
        raise


async def bind_port(client: Client, host: str, port: Obj) -> Obj:
    """Take over a DHCP port: bound here, with this host's device id."""
    network_id = str(_spec(port).get("network_id"))
    patch = {"spec": {"binding:host_id": host, "device_id": device_id(host, network_id)}}
    namespace = port["metadata"].get("namespace")
    return await client.patch(PORTS, _name(port), patch, namespace=namespace)


async def readdress_port(
    client: Client, port: Obj, add: list[Obj], drop: list[Obj], ports: list[Obj]
) -> Obj:
    """An address on each subnet of `add`; the fixed IPs in `drop` given back."""
    added = await take_addresses(client, add, _name(port), ports)
    gone = {(str(f["subnet_id"]), str(f["ip_address"])) for f in drop}
    kept = [
        fixed
        for fixed in _spec(port).get("fixed_ips") or []
        if (str(fixed.get("subnet_id")), str(fixed.get("ip_address"))) not in gone
    ]
    revision = int(_spec(port).get("revision_number", 0)) + 1
    patch = {
        "spec": {"fixed_ips": kept + added, "updated_at": now_text(), "revision_number": revision}
    }
    namespace = port["metadata"].get("namespace")
    try:
        updated = await client.patch(PORTS, _name(port), patch, namespace=namespace)
    except BaseException:
        await release_addresses(client, added)
        raise
    await release_addresses(client, drop)
    return updated


async def delete_port(client: Client, port: Obj) -> None:
    """Delete a DHCP port and give its addresses back."""
    with contextlib.suppress(NotFound):
        await client.delete(PORTS, _name(port), port["metadata"].get("namespace"))
    await release_addresses(client, _spec(port).get("fixed_ips") or [])
