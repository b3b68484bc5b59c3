"""A server's addresses as Nova shows them: the fixed ones recorded on the server when its
ports were plugged (`status.addresses`, by `iaas.compute.ports.Networking`) and the floating
ones the Networking API holds for those ports now.

Nova learns of a floating IP from Neutron's `network-changed` event and refreshes its
network info cache; here the floating IPs are read when servers are shown — one Networking
call per request, for a whole page of a list at a time (`ServerAddresses.of_servers`) — so
an association, a disassociation or a deleted floating IP shows at once, whichever API made
it. What a server has (`Floating`) is hashable: it is part of the key of the server's cached
view (`view_cache`), so a list still encodes only the servers that changed.

`with_floating` is pure: each floating IP follows the fixed entries of the network of the
fixed address it points at, typed `floating`, with that address's MAC (its port's), as
Nova's full view has them; a floating IP whose fixed address the server does not record is
left out. Used by `servers` (show, list with details, update), `server_actions` (rebuild)
and `server_details` (`/ips`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from unistack.iaas.compute.ports import Networking
from unistack.iaas.records import spec_of, status_of

Obj = dict[str, Any]
Floating = tuple[tuple[str, str], ...]  # (fixed address, floating address) pairs, sorted


def by_port(fips: Iterable[Obj]) -> dict[str, list[Obj]]:
    """Floating IPs (Neutron's view) under the port each is associated with."""
    ports: dict[str, list[Obj]] = {}
    for fip in fips:
        if fip.get("port_id") and fip.get("floating_ip_address"):
            ports.setdefault(str(fip["port_id"]), []).append(fip)
    return ports


def floating_of(server: Obj, ports: dict[str, list[Obj]]) -> Floating:
    """The server's floating IPs: those associated with any of its ports."""
    pairs = {
        (str(fip.get("fixed_ip_address")), str(fip["floating_ip_address"]))
        for port_id in status_of(server).get("ports") or []
        for fip in ports.get(str(port_id), [])
    }
    return tuple(sorted(pairs))


def with_floating(addresses: Obj, floating: Floating) -> Obj:
    """The addresses with the floating IPs after each network's fixed entries (a new dict;
    `addresses`, from a cached object, is left as it is)."""
    shown: Obj = {}
    for network, entries in addresses.items():
        added = [
            floating_entry(entry, address)
            for entry in entries
            if entry.get("OS-EXT-IPS:type", "fixed") == "fixed"
            for fixed, address in floating
            if fixed == entry.get("addr")
        ]
        shown[network] = [*entries, *added]
    return shown


def floating_entry(fixed: Obj, address: str) -> Obj:
    """A floating address as the detail view lists it, with the MAC of its fixed one."""
    return {
        "version": 6 if ":" in address else 4,
        "addr": address,
        "OS-EXT-IPS:type": "floating",
        "OS-EXT-IPS-MAC:mac_addr": fixed.get("OS-EXT-IPS-MAC:mac_addr") or "",
    }


def shown_server(server: Obj, floating: Floating) -> Obj:
    """The server to show: a copy whose status lists its floating IPs too (never the cached
    object changed), or the server itself when it has none."""
    if not floating:
        return server
    status = status_of(server)
    addresses = with_floating(status.get("addresses") or {}, floating)
    return {**server, "status": {**status, "addresses": addresses}}


def only_project(servers: Iterable[Obj]) -> str | None:
    """The project every server belongs to, if they share one: it narrows the call."""
    projects = {str(spec_of(server).get("project_id") or "") for server in servers}
    return projects.pop() if len(projects) == 1 else None


class ServerAddresses:
    def __init__(self, networking: Networking) -> None:
        self.networking = networking

    async def of_servers(self, servers: list[Obj]) -> dict[str, Floating]:
        """Each server's floating IPs (by server id), from one Networking call."""
        port_ids = {str(p) for server in servers for p in status_of(server).get("ports") or []}
        fips = await self.networking.floating_ips(port_ids, only_project(servers) or None)
        ports = by_port(fips)
        return {server["metadata"]["name"]: floating_of(server, ports) for server in servers}

    async def current(self, server: Obj) -> Obj:
        """The server with its floating IPs, to show."""
        floating = await self.of_servers([server])
        return shown_server(server, floating[server["metadata"]["name"]])
