"""The agent's Neutron L3 agent: the routers this host runs, their NAT, the external network's
host side and the metadata service behind each router.

`L3Agent` watches Routers, Ports, Subnets, Networks, FloatingIPs and Nodes (plus Servers and
Keypairs, which only the metadata answers read); any change marks it dirty and, after a short
coalescing delay, one sync decides with pure functions and applies through
`unistack.dataplane.routers.Routers`:

- `router_host`: which host runs a router — rendezvous hashing of the router id over the hosts
  that run instances (Nodes with a non-empty `unistack.io/instance-drivers` annotation, and
  this one): every agent computes the same answer without talking to the others, and a host
  leaving moves only its own routers;
- `wanted_routers`: each router of this host as a `RouterWiring` (interfaces, gateway,
  static routes, floating IPs, SNAT);
- `wanted_externals`: on the uplink host only (`networking.uplink_host`, where the external
  networks meet the outside), the external networks any router's gateway sits on
  (`ExternalWiring`: the host's address there is the subnet's gateway, and it masquerades the
  subnet). Routers on other hosts reach that address over the network's L2, which the L2
  agents stretch to the uplink (`networking.wanted_networks`); their own external bridges carry
  no address, as a network node's br-ex carries none in Neutron;
- `ports_to_bind`: the routers' ports not yet bound here. The L3 agent binds them itself
  (`binding:host_id`, a merge PATCH of the Port object), as Neutron binds router ports to the
  L3 agent's host: then the L2 side (`networking.TenantNetworking.wanted_networks`) keeps the
  ports' networks here and tells other hosts to tunnel to this one, with no second source of
  truth. Before plugging, the L3 agent still asks `ensure_network` for the bridges, so it does
  not wait for the binding to come back through the watch.

Each router's namespace also gets a metadata site (`metadata.MetadataProxies`), whose lookup
reads this agent's caches (`instancemetadata.find_instance`). Every router id wired is recorded on
disk, so `cleanup` (`unistack down`) removes this cloud's routers and nobody else's.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from unistack.agent import instancemetadata, metadata, networking
from unistack.client.api import ApiError, Client
from unistack.client.resources import NODES, ResourceRef
from unistack.dataplane import netns, tenantnames
from unistack.dataplane.routers import (
    ExternalWiring,
    FloatingIp,
    RouterPort,
    Routers,
    RouterWiring,
)
from unistack.dataplane.tenantnet import NetworkWiring
from unistack.runtime.informer import Informer
from unistack.runtime.syncloop import SyncLoop

Obj = dict[str, Any]
log = logging.getLogger(__name__)

GROUP, VERSION = "network.unistack.io", "v1"
ROUTERS = ResourceRef(GROUP, VERSION, "routers", True, "Router")
PORTS = ResourceRef(GROUP, VERSION, "ports", True, "Port")
SUBNETS = ResourceRef(GROUP, VERSION, "subnets", True, "Subnet")
NETWORKS = ResourceRef(GROUP, VERSION, "networks", True, "Network")
FLOATING_IPS = ResourceRef(GROUP, VERSION, "floatingips", True, "FloatingIP")
SERVERS = ResourceRef("compute.unistack.io", "v1", "servers", True, "Server")
KEYPAIRS = ResourceRef("compute.unistack.io", "v1", "keypairs", True, "Keypair")
INTERFACE = "network:router_interface"
GATEWAY = "network:router_gateway"
DRIVERS_ANNOTATION = "unistack.io/instance-drivers"

EnsureNetwork = Callable[[NetworkWiring], Awaitable[None]]


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


# --- deciding (pure) -------------------------------------------------------------------------


def l3_hosts(host: str, nodes: Iterable[Obj]) -> list[str]:
    """The hosts that may run routers: those running instances, and this one."""
    able = {
        _name(node)
        for node in nodes
        if (node["metadata"].get("annotations") or {}).get(DRIVERS_ANNOTATION)
    }
    return sorted(able | {host})


def router_host(router_id: str, hosts: Iterable[str]) -> str | None:
    """Rendezvous hashing: the host with the highest hash of (router, host)."""

    def weight(host: str) -> bytes:
        return hashlib.sha256(f"{router_id}/{host}".encode()).digest()

    return max(hosts, key=weight, default=None)


def ports_by_router(ports: Iterable[Obj]) -> dict[str, list[Obj]]:
    """Router interface and gateway ports, by router id."""
    found: dict[str, list[Obj]] = {}
    for port in ports:
        spec = _spec(port)
        if spec.get("device_owner") in (INTERFACE, GATEWAY) and spec.get("device_id"):
            found.setdefault(str(spec["device_id"]), []).append(port)
    return found


def router_port(port: Obj, networks: Mapping[str, Obj], subnets: Mapping[str, Obj]) -> RouterPort:
    """A port as the router's data plane needs it: addresses with their subnets' prefixes,
    and the IPv6 subnets it advertises (those with an `ipv6_ra_mode`)."""
    spec = _spec(port)
    addresses, advertise = [], []
    for fixed in spec.get("fixed_ips") or []:
        subnet = _spec(subnets.get(str(fixed.get("subnet_id")), {}))
        cidr = subnet.get("cidr")
        if cidr and fixed.get("ip_address"):
            network = ipaddress.ip_network(str(cidr), strict=False)
            addresses.append(f"{fixed['ip_address']}/{network.prefixlen}")
            if network.version == 6 and subnet.get("ipv6_ra_mode"):
                advertise.append((str(network), str(subnet["ipv6_ra_mode"])))
    network_id = str(spec.get("network_id"))
    mtu = int(_spec(networks.get(network_id, {})).get("mtu") or 1450)
    return RouterPort(
        _name(port),
        network_id,
        str(spec.get("mac_address")),
        tuple(addresses),
        mtu,
        tuple(sorted(set(advertise))),
    )


def gateway_ip(port: Obj, subnets: Mapping[str, Obj]) -> str | None:
    """The external subnet's gateway, the router's default route."""
    for fixed in _spec(port).get("fixed_ips") or []:
        found = _spec(subnets.get(str(fixed.get("subnet_id")), {})).get("gateway_ip")
        if found:
            return str(found)
    return None


def floating_ips_of(router_id: str, floating_ips: Iterable[Obj]) -> tuple[FloatingIp, ...]:
    """The associated floating IPs the router translates."""
    pairs = {
        FloatingIp(str(spec["floating_ip_address"]), str(spec["fixed_ip_address"]))
        for spec in map(_spec, floating_ips)
        if spec.get("router_id") == router_id
        and spec.get("port_id")
        and spec.get("fixed_ip_address")
        and spec.get("floating_ip_address")
    }
    return tuple(sorted(pairs, key=lambda pair: pair.floating))


def router_wiring(
    router: Obj,
    ports: Iterable[Obj],
    networks: Mapping[str, Obj],
    subnets: Mapping[str, Obj],
    floating_ips: Iterable[Obj],
    metadata_port: int | None = metadata.METADATA_PORT,
) -> RouterWiring:
    """A router object and its ports → what its namespace must hold."""
    router_id, spec = _name(router), _spec(router)
    mine = sorted(ports, key=_name)
    interfaces = tuple(
        router_port(p, networks, subnets) for p in mine if _spec(p)["device_owner"] == INTERFACE
    )
    gateways = [p for p in mine if _spec(p)["device_owner"] == GATEWAY]
    info = spec.get("external_gateway_info") or {}
    gateway = gateways[0] if gateways and info else None
    routes = tuple(
        sorted((str(r["destination"]), str(r["nexthop"])) for r in spec.get("routes") or [])
    )
    return RouterWiring(
        router_id=router_id,
        interfaces=interfaces,
        gateway=router_port(gateway, networks, subnets) if gateway else None,
        gateway_ip=gateway_ip(gateway, subnets) if gateway else None,
        snat=bool(info.get("enable_snat", True)),
        routes=routes,
        floating_ips=floating_ips_of(router_id, floating_ips) if gateway else (),
        metadata_port=metadata_port,
    )


def wanted_routers(
    host: str,
    routers: Iterable[Obj],
    ports: Iterable[Obj],
    networks: Iterable[Obj],
    subnets: Iterable[Obj],
    floating_ips: Iterable[Obj],
    nodes: Iterable[Obj],
) -> dict[str, RouterWiring]:
    """The routers this host runs, by id, each with its wiring."""
    hosts = l3_hosts(host, nodes)
    by_router = ports_by_router(ports)
    network_map = {_name(n): n for n in networks}
    subnet_map = {_name(s): s for s in subnets}
    fips = list(floating_ips)
    wanted = {}
    for router in routers:
        router_id = _name(router)
        if router["metadata"].get("deletionTimestamp") or router_host(router_id, hosts) != host:
            continue
        wanted[router_id] = router_wiring(
            router, by_router.get(router_id, []), network_map, subnet_map, fips
        )
    return wanted


def ports_to_bind(host: str, wanted: Mapping[str, RouterWiring], ports: Iterable[Obj]) -> list[Obj]:
    """The ports of this host's routers that are not bound to this host yet."""
    return [
        port
        for router_id, found in ports_by_router(ports).items()
        if router_id in wanted
        for port in found
        if _spec(port).get("binding:host_id") != host
    ]


def gateway_networks(
    wanted: Mapping[str, RouterWiring], routers: Iterable[Obj], ports: Iterable[Obj]
) -> set[str]:
    """The networks routers have gateways on: this host's routers', and those of every
    router's bound gateway port (wherever the router runs, the uplink serves its network)."""
    local = {w.gateway.network_id for w in wanted.values() if w.gateway is not None}
    live = {
        _name(router)
        for router in routers
        if not router["metadata"].get("deletionTimestamp")
        and _spec(router).get("external_gateway_info")
    }
    bound = {
        str(spec["network_id"])
        for spec in map(_spec, ports)
        if spec.get("device_owner") == GATEWAY
        and spec.get("device_id") in live
        and spec.get("binding:host_id")
        and spec.get("network_id")
    }
    return local | bound


def wanted_externals(gateways: set[str], subnets: Iterable[Obj]) -> dict[str, ExternalWiring]:
    """The external networks among `gateways` with an IPv4 gateway, by network id."""
    externals: dict[str, ExternalWiring] = {}
    for subnet in sorted(subnets, key=_name):
        spec = _spec(subnet)
        network_id, cidr, gateway = spec.get("network_id"), spec.get("cidr"), spec.get("gateway_ip")
        if network_id in gateways and cidr and gateway and spec.get("ip_version", 4) == 4:
            prefix = ipaddress.ip_network(str(cidr), strict=False).prefixlen
            externals.setdefault(
                str(network_id), ExternalWiring(str(network_id), str(cidr), f"{gateway}/{prefix}")
            )
    return externals


def networks_of(wiring: RouterWiring) -> dict[str, int]:
    """The networks a router is plugged into, with their MTU."""
    ports = [*wiring.interfaces, *([wiring.gateway] if wiring.gateway else [])]
    return {port.network_id: port.mtu for port in ports}


# --- acting ----------------------------------------------------------------------------------


@dataclass
class Applied:
    routers: dict[str, RouterWiring] = field(default_factory=dict)
    externals: dict[str, ExternalWiring] = field(default_factory=dict)


@dataclass(frozen=True)
class L3Options:
    coalesce_delay: float = 0.05
    retry_delay: float = 1.0
    record: Path | None = None  # every router and external network wired, for cleanup
    metadata: bool = True
    uplink: bool = True  # external networks may meet the outside here (`networking.uplink_host`)


class L3Agent:
    """Keeps this host's router namespaces, external network and metadata sites in line."""

    def __init__(
        self,
        client: Client,
        host: str,
        routers: Routers,
        ensure_network: EnsureNetwork | None = None,
        options: L3Options | None = None,
    ) -> None:
        self.client, self.host, self.routers = client, host, routers
        self.ensure_network = ensure_network
        self.options = options or L3Options()
        self.informers = {
            ref.plural: Informer(client, ref)
            for ref in (ROUTERS, PORTS, SUBNETS, NETWORKS, FLOATING_IPS, NODES, SERVERS, KEYPAIRS)
        }
        self.proxies = metadata.MetadataProxies(self.lookup)
        self.applied = Applied()
        # external networks a previous run wired: dropped at the first sync unless still wanted
        record = self.options.record
        self.stale_externals = recorded(record)["externals"] if record else set()
        # routers and external networks (by id) whose bridges the L2 agent removed since
        self.reapply: set[str] = set()
        lookups = ("servers", "keypairs")  # read by the metadata proxies, wire nothing
        self.loop = SyncLoop(
            "l3",
            self.sync,
            [i for plural, i in self.informers.items() if plural not in lookups],
            lookups=[self.informers[plural] for plural in lookups],
            coalesce=self.options.coalesce_delay,
            retry=self.options.retry_delay,
        )

    def _list(self, plural: str) -> list[Obj]:
        return self.informers[plural].cache.list()

    def desired(self) -> dict[str, RouterWiring]:
        return wanted_routers(
            self.host,
            self._list("routers"),
            self._list("ports"),
            self._list("networks"),
            self._list("subnets"),
            self._list("floatingips"),
            self._list("nodes"),
        )

    def lookup(self, router_id: str, source: str) -> instancemetadata.InstanceMetadata | None:
        """The instance behind `source` on one of this router's networks (metadata)."""
        wiring = self.applied.routers.get(router_id)
        if wiring is None:
            return None
        return instancemetadata.find_instance(
            [port.network_id for port in wiring.interfaces],
            source,
            self._list("ports"),
            self._list("servers"),
            self._list("keypairs"),
            self._list("floatingips"),
            {_name(subnet): subnet for subnet in self._list("subnets")},
            {_name(network): network for network in self._list("networks")},
        )

    async def sync(self) -> None:
        wanted = self.desired()
        self._remember(set(wanted), set())
        failed = False
        for port in ports_to_bind(self.host, wanted, self._list("ports")):
            try:
                await self._bind(port)
            except ApiError as error:  # gone meanwhile, or a conflict: the next sync sees
                log.warning("l3: binding port %s here: %s", _name(port), error)
                failed = True
        for router_id, wiring in sorted(wanted.items()):
            try:
                await self._ensure_router(wiring)
            except Exception:
                log.exception("l3: router %s could not be wired", router_id)
                failed = True
        wired = {k: w for k, w in self.applied.routers.items() if k in wanted}
        externals = self.desired_externals(wired)
        self._remember(set(), set(externals))
        for network_id, external in externals.items():
            # `reapply`: the L2 agent dropped the bridge since (when its last bound port
            # went, as when one router replaces another), and the address went with it
            changed = self.applied.externals.get(network_id) != external
            if changed or network_id in self.reapply:
                await self._ensure_external(external)
                self.reapply.discard(network_id)
        for router_id in set(self.applied.routers) - set(wanted):
            await self._remove_router(router_id)
        for network_id in (set(self.applied.externals) | self.stale_externals) - set(externals):
            await asyncio.to_thread(self.routers.remove_external, network_id)
            self.applied.externals.pop(network_id, None)
            self.reapply.discard(network_id)
        self.stale_externals = set()
        if failed:
            raise RuntimeError("some routers could not be wired")

    def bridge_removed(self, network_id: str) -> None:
        """The L2 agent removed a network's bridge (the L2 may see a port go before this
        agent sees the next one come): the routers plugged into it and this host's external
        address on it are wired again at the next sync, bridge first, if still wanted."""
        plugged = {r for r, w in self.applied.routers.items() if network_id in networks_of(w)}
        if network_id in self.applied.externals:
            plugged.add(network_id)
        if plugged:
            self.reapply |= plugged
            self.loop.poke()

    def desired_externals(self, wired: Mapping[str, RouterWiring]) -> dict[str, ExternalWiring]:
        """The external networks whose host side is here: all of them on the uplink host."""
        nodes = self._list("nodes")
        if networking.uplink_host(self.host, self.options.uplink, nodes) != self.host:
            return {}
        gateways = gateway_networks(wired, self._list("routers"), self._list("ports"))
        return wanted_externals(gateways, self._list("subnets"))

    async def _ensure_external(self, external: ExternalWiring) -> None:
        """The gateway address on the external bridge, made first if no router here has."""
        if self.ensure_network is not None:
            named = (n for n in self._list("networks") if _name(n) == external.network_id)
            mtu = int(_spec(next(named, {})).get("mtu") or 1500)
            await self.ensure_network(NetworkWiring(external.network_id, mtu=mtu))
        await asyncio.to_thread(self.routers.ensure_external, external)
        self.applied.externals[external.network_id] = external

    async def _bind(self, port: Obj) -> None:
        patch = {"spec": {"binding:host_id": self.host}}
        namespace = port["metadata"].get("namespace")
        await self.client.patch(PORTS, _name(port), patch, namespace=namespace)

    async def _ensure_router(self, wiring: RouterWiring) -> None:
        """Wire the router unless it is as applied (and its bridges were not made again)."""
        router_id = wiring.router_id
        if self.applied.routers.get(router_id) != wiring or router_id in self.reapply:
            if self.ensure_network is not None:
                for network_id, mtu in networks_of(wiring).items():
                    await self.ensure_network(NetworkWiring(network_id, mtu=mtu))
            await asyncio.to_thread(self.routers.ensure_router, wiring)
            self.applied.routers[router_id] = wiring
            self.reapply.discard(router_id)
        if self.options.metadata and wiring.metadata_port is not None:
            path = netns.path_of(tenantnames.router_netns(router_id))
            await self.proxies.start(router_id, path)

    async def _remove_router(self, router_id: str) -> None:
        await self.proxies.stop(router_id)
        await asyncio.to_thread(self.routers.remove_router, router_id)
        del self.applied.routers[router_id]
        self.reapply.discard(router_id)

    def _remember(self, routers: set[str], externals: set[str]) -> None:
        record = self.options.record
        if record is None:
            return
        known = recorded(record)
        if routers <= known["routers"] and externals <= known["externals"]:
            return
        body = {
            "routers": sorted(known["routers"] | routers),
            "externals": sorted(known["externals"] | externals),
        }
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_bytes(orjson.dumps(body))

    async def run(self) -> None:
        try:
            await self.loop.run()
        finally:
            await self.proxies.stop_all()


def recorded(record: Path) -> dict[str, set[str]]:
    """The routers and external networks an agent wired here, from its record."""
    try:
        data = orjson.loads(record.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        data = {}
    return {key: {str(item) for item in data.get(key) or []} for key in ("routers", "externals")}


def cleanup(record: Path, routers: Routers) -> list[str]:
    """Remove the recorded routers and external-network tables (`unistack down`)."""
    known = recorded(record)
    routers.cleanup_all(known["routers"])
    for network_id in sorted(known["externals"]):
        routers.remove_external(network_id)
    record.unlink(missing_ok=True)
    done = []
    if known["routers"]:
        done.append(f"removed {len(known['routers'])} router namespaces")
    return done
