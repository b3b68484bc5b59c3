"""The agent's Neutron L2 agent: this host's tenant networks and security groups, kept equal
to the ports bound here.

`TenantNetworking` watches Ports, Networks, security group rules and Nodes (informers from
`unistack.runtime`), as the service proxy (`unistack.agent.proxy`) watches Services: any change
marks the host dirty and, after a short coalescing delay, one sync decides with pure functions
and applies:

- `wanted_networks`: every network with a port bound to this host (`binding:host_id`), with
  its VXLAN id, MTU and the peers to flood to — the InternalIP of every other Node that has a
  port on the same network; `tenantnet.L2` makes the bridges and VXLAN devices and keeps the
  flood entries equal to the peers, and a network left with no port here is removed;
- a flat network is one L2 segment, its physical network, on every host that has it (as a
  flat provider network is one wire in Neutron). Hosts here have no shared wire to put it on,
  so they join its bridges by VXLAN too, on a VNI derived from the physical network's name
  (`physical_vni`, above the tenant range). An external flat network also always reaches the
  *uplink*, the one host where it meets the outside (`uplink_host`: the first Node, by name,
  whose agent says `unistack.io/external-uplink`; `up --hosts N` makes the machine that host).
  The uplink holds the subnet's gateway address and masquerades (`l3`), so a router on any
  host reaches the outside, and its floating IPs are reached from it, over one L2 — as the
  public network of a multinode DevStack spans its nodes;
- `port_filters`: each local port's security groups resolved into rules (a remote group
  becomes its member ports' addresses) with its MAC, addresses and allowed address pairs;
  `secgroups.SecurityGroupFirewall` swaps the host's one table.

Plugging a port's device (veth or tap) is the compute side's (`unistack.agent.instances`),
as os-vif plugs for nova-compute; it asks `ensure_network` here first, so a new network gets its
bridge with the peers already known.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from unistack.client.api import Client
from unistack.client.resources import NODES, ResourceRef
from unistack.dataplane import secgroups, tenantnames
from unistack.dataplane.tenantnet import L2, VXLAN_PORT, NetworkWiring
from unistack.runtime.informer import Informer
from unistack.runtime.syncloop import SyncLoop

Obj = dict[str, Any]
log = logging.getLogger(__name__)

GROUP, VERSION = "network.unistack.io", "v1"
PORTS = ResourceRef(GROUP, VERSION, "ports", True, "Port")
NETWORKS = ResourceRef(GROUP, VERSION, "networks", True, "Network")
RULES = ResourceRef(GROUP, VERSION, "securitygrouprules", True, "SecurityGroupRule")
INSTANCE_OWNERS = ("compute:",)  # device_owner prefixes of the ports the firewall filters
UPLINK_ANNOTATION = "unistack.io/external-uplink"  # "true": external networks meet the outside here
PHYSICAL_VNI_FIRST, PHYSICAL_VNI_LAST = 16_000_001, 16_777_215  # above the tenant VNIs


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _host_of(port: Obj) -> str:
    return str(_spec(port).get("binding:host_id") or "")


def internal_ip(node: Obj) -> str | None:
    for address in (node.get("status") or {}).get("addresses") or []:
        if address.get("type") == "InternalIP":
            return str(address.get("address"))
    return None


def physical_vni(physical_network: str) -> int:
    """The VNI that joins a physical network's bridges across hosts: above the tenant range
    (`unistack.iaas.network.allocations`), the same on every host without asking anyone."""
    digest = int.from_bytes(hashlib.sha256(physical_network.encode()).digest()[:8], "big")
    return PHYSICAL_VNI_FIRST + digest % (PHYSICAL_VNI_LAST - PHYSICAL_VNI_FIRST + 1)


def uplink_host(host: str, uplink: bool, nodes: Iterable[Obj]) -> str | None:
    """The host where the external networks meet the outside: the first, by name, of the
    Nodes announcing the uplink (this host's own say wins over its Node's, not yet seen)."""
    named = {
        str(node["metadata"]["name"])
        for node in nodes
        if (node["metadata"].get("annotations") or {}).get(UPLINK_ANNOTATION) == "true"
    }
    named.discard(host)
    if uplink:
        named.add(host)
    return min(named, default=None)


def _segment(spec: Obj) -> int | None:
    """The VNI a network's bridges are joined on across hosts, if any."""
    kind = spec.get("provider:network_type")
    if kind == "vxlan":
        return int(spec["provider:segmentation_id"])
    if kind == "flat" and spec.get("provider:physical_network"):
        return physical_vni(str(spec["provider:physical_network"]))
    return None


def wanted_networks(
    host: str, local_ip: str | None, ports: Iterable[Obj], networks: Iterable[Obj],
    nodes: Iterable[Obj], vxlan_port: int = VXLAN_PORT, uplink: bool = False,
) -> dict[str, NetworkWiring]:  # fmt: skip
    """The networks this host needs, by id, each with its VXLAN peers; `uplink` says this
    host may be where external networks meet the outside (`uplink_host`)."""
    nodes = list(nodes)
    addresses = {node["metadata"]["name"]: internal_ip(node) for node in nodes}
    hosts_of: dict[str, set[str]] = {}
    for port in ports:
        bound, network_id = _host_of(port), str(_spec(port).get("network_id") or "")
        if bound and network_id:
            hosts_of.setdefault(network_id, set()).add(bound)
    by_id = {network["metadata"]["name"]: _spec(network) for network in networks}
    outside = uplink_host(host, uplink, nodes)
    wanted = {}
    for network_id, hosts in hosts_of.items():
        if network_id not in by_id:
            continue
        spec = by_id[network_id]
        vni = _segment(spec)
        if outside and spec.get("router:external") and spec.get("provider:network_type") == "flat":
            hosts = hosts | {outside}
        if host not in hosts:
            continue
        others = (addresses.get(other) for other in hosts if other != host)
        peers = tuple(sorted({ip for ip in others if ip and ip != local_ip}))
        # VXLAN only once another host shares the network: a lone host needs no tunnel, and
        # two clouds on one machine (tests) would otherwise claim the same VNI
        tunnel = vni is not None and bool(peers)
        wanted[network_id] = NetworkWiring(
            network_id,
            vni if tunnel else None,
            int(spec.get("mtu") or 1450),
            local_ip if tunnel else None,
            peers,
            vxlan_port,
        )
    return wanted


def _addresses(port: Obj) -> tuple[str, ...]:
    return tuple(
        str(fixed["ip_address"])
        for fixed in _spec(port).get("fixed_ips") or []
        if fixed.get("ip_address")
    )


def _group_members(ports: Iterable[Obj]) -> dict[str, list[str]]:
    members: dict[str, list[str]] = {}
    for port in ports:
        for group in _spec(port).get("security_groups") or []:
            members.setdefault(str(group), []).extend(_addresses(port))
    return members


def _rule(spec: Obj, members: dict[str, list[str]]) -> secgroups.SecurityRule:
    remote_group = spec.get("remote_group_id")
    remote_ips = tuple(members.get(str(remote_group), ())) if remote_group else ()
    ethertype = str(spec.get("ethertype") or "IPv4")
    version = 4 if ethertype == "IPv4" else 6
    remote_ips = tuple(ip for ip in remote_ips if ipaddress.ip_address(ip).version == version)
    return secgroups.SecurityRule(
        direction=str(spec.get("direction")),
        ethertype=ethertype,
        protocol=spec.get("protocol"),
        port_range_min=spec.get("port_range_min"),
        port_range_max=spec.get("port_range_max"),
        remote_ip_prefix=spec.get("remote_ip_prefix"),
        remote_group_id=remote_group,
        remote_ips=remote_ips,
    )


def port_filters(host: str, ports: list[Obj], rules: Iterable[Obj]) -> list[secgroups.PortFilter]:
    """The firewall's view of every instance port bound to this host."""
    members = _group_members(ports)
    by_group: dict[str, list[secgroups.SecurityRule]] = {}
    for rule in rules:
        spec = _spec(rule)
        by_group.setdefault(str(spec.get("security_group_id")), []).append(_rule(spec, members))
    filters = []
    for port in ports:
        spec = _spec(port)
        owner = str(spec.get("device_owner") or "")
        if _host_of(port) != host or not owner.startswith(INSTANCE_OWNERS):
            continue
        groups = spec.get("security_groups") or []
        pairs = tuple(
            secgroups.AddressPair(str(pair["ip_address"]), pair.get("mac_address"))
            for pair in spec.get("allowed_address_pairs") or []
        )
        filters.append(
            secgroups.PortFilter(
                device=tenantnames.port_device(port["metadata"]["name"]),
                mac=str(spec.get("mac_address")),
                fixed_ips=_addresses(port),
                allowed_address_pairs=pairs,
                port_security_enabled=bool(spec.get("port_security_enabled", True)),
                rules=tuple(rule for group in groups for rule in by_group.get(str(group), [])),
            )
        )
    return sorted(filters, key=lambda item: item.device)


@dataclass
class Applied:
    networks: dict[str, NetworkWiring]
    filters: list[secgroups.PortFilter]


class TenantNetworking:
    """Keeps this host's bridges, VXLAN peers and security group table in line."""

    def __init__(
        self,
        client: Client,
        host: str,
        local_ip: str | None,
        l2: L2,
        firewall: secgroups.SecurityGroupFirewall,
        coalesce_delay: float = 0.05,
        retry_delay: float = 1.0,
        record: Path | None = None,
        vxlan_port: int = VXLAN_PORT,
        uplink: bool = False,
    ) -> None:
        self.host, self.local_ip = host, local_ip
        self.uplink = uplink  # external networks may meet the outside here (`uplink_host`)
        # told each network whose bridge was removed here (the L3 agent's addresses went too)
        self.removed_hooks: list[Callable[[str], None]] = []
        self.l2, self.firewall = l2, firewall
        self.vxlan_port = vxlan_port
        self.ports = Informer(client, PORTS)
        self.networks = Informer(client, NETWORKS)
        self.rules = Informer(client, RULES)
        self.nodes = Informer(client, NODES)
        self.applied = Applied({}, [])
        self.record = record  # every network wired here, so cleanup finds them after a crash
        self.wired: set[str] = set(recorded_networks(record)) if record else set()
        self._lock = asyncio.Lock()
        self.loop = SyncLoop(
            "tenant networking",
            self.sync,
            (self.ports, self.networks, self.rules, self.nodes),
            coalesce=coalesce_delay,
            retry=retry_delay,
        )

    def desired(self) -> Applied:
        ports = self.ports.cache.list()
        networks = wanted_networks(
            self.host,
            self.local_ip,
            ports,
            self.networks.cache.list(),
            self.nodes.cache.list(),
            self.vxlan_port,
            self.uplink,
        )
        return Applied(networks, port_filters(self.host, ports, self.rules.cache.list()))

    async def ensure_network(self, wiring: NetworkWiring) -> None:
        """The bridge for a port about to be plugged, with the peers known now (`instances`)."""
        known = self.desired().networks.get(wiring.network_id)
        async with self._lock:
            self._remember({wiring.network_id})
            await asyncio.to_thread(self.l2.ensure_network, known or wiring)
        self.loop.poke()  # the new port's filter follows once its binding is seen

    async def sync(self) -> None:
        async with self._lock:
            wanted = self.desired()  # under the lock: an `ensure_network` may have just run
            self._remember(set(wanted.networks))
            for network_id, wiring in wanted.networks.items():
                if self.applied.networks.get(network_id) != wiring:
                    await asyncio.to_thread(self.l2.ensure_network, wiring)
            for network_id in set(self.applied.networks) - set(wanted.networks):
                await asyncio.to_thread(self.l2.remove_network, network_id)
                for hook in self.removed_hooks:
                    hook(network_id)
            if wanted.filters != self.applied.filters or not self.applied.networks:
                await self.firewall.apply(wanted.filters)
            self.applied = wanted

    def _remember(self, networks: set[str]) -> None:
        if self.record is None or networks <= self.wired:
            return
        self.wired |= networks
        self.record.parent.mkdir(parents=True, exist_ok=True)
        self.record.write_bytes(orjson.dumps(sorted(self.wired)))

    async def run(self) -> None:
        await self.loop.run()


def recorded_networks(record: Path) -> list[str]:
    """The networks an agent wired on this host, from its record (none when absent)."""
    try:
        return [str(item) for item in orjson.loads(record.read_bytes())]
    except (OSError, orjson.JSONDecodeError):
        return []
