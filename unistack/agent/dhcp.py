"""The agent's Neutron DHCP agent: a DHCP server for each network with a DHCP-enabled subnet
that this host serves.

`DhcpAgent` watches Networks, Subnets, Ports and Nodes; any change marks it dirty and, after
a short coalescing delay, one sync decides with the pure `plan` and acts:

- which host serves a network: rendezvous hashing of the network id over the hosts that run
  instances (`l3.l3_hosts`, `l3.router_host`), as routers are placed, so every agent agrees
  without talking and a host leaving moves only its networks;
- each served network needs one DHCP port (`dhcpports.is_agent_port`): made when missing
  (`create`), bound here when another host made it (`bind`), given an address on each
  DHCP-enabled IPv4 subnet and none elsewhere (`readdress`); DHCP ports of networks nobody
  serves any more (no DHCP subnet left) are deleted by the host the network hashes to;
- `wirings`: each served network whose port is complete, as a `dhcp.DhcpWiring` — the port's
  MAC and addresses, the subnets' gateway, DNS servers, host routes and the router interface
  that reaches the metadata service, and a static lease for every other port's address.

Acting writes ports through the API (`dhcpports`, the binding as `l3` binds router ports, so
the L2 agent keeps the network here and peers tunnel to it), asks `ensure_network` for the
bridge, then `dhcp.Dhcp.ensure`; servers of networks no longer wanted are removed. Every
network served is recorded on disk, so `cleanup` (`unistack down`) removes this cloud's DHCP
namespaces and dnsmasq processes and nobody else's.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from unistack.agent import dhcpports, l3
from unistack.client.api import Client
from unistack.client.resources import NODES, ResourceRef
from unistack.dataplane.dhcp import Dhcp, DhcpHost, DhcpSubnet, DhcpWiring
from unistack.dataplane.tenantnet import NetworkWiring
from unistack.runtime.informer import Informer
from unistack.runtime.syncloop import SyncLoop

Obj = dict[str, Any]
log = logging.getLogger(__name__)

GROUP, VERSION = "network.unistack.io", "v1"
PORTS = dhcpports.PORTS
SUBNETS = ResourceRef(GROUP, VERSION, "subnets", True, "Subnet")
NETWORKS = ResourceRef(GROUP, VERSION, "networks", True, "Network")
INTERFACE = "network:router_interface"

EnsureNetwork = Callable[[NetworkWiring], Awaitable[None]]


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def _live(objs: Iterable[Obj]) -> list[Obj]:
    return [obj for obj in objs if not obj["metadata"].get("deletionTimestamp")]


# --- deciding (pure) -------------------------------------------------------------------------


def dhcp_subnets(subnets: Iterable[Obj]) -> dict[str, list[Obj]]:
    """DHCP-enabled IPv4 subnets by network id, in a stable order."""
    found: dict[str, list[Obj]] = {}
    for subnet in sorted(_live(subnets), key=_name):
        spec = _spec(subnet)
        if spec.get("enable_dhcp", True) and spec.get("ip_version", 4) == 4 and spec.get("cidr"):
            found.setdefault(str(spec.get("network_id")), []).append(subnet)
    return found


def agent_ports(ports: Iterable[Obj]) -> dict[str, list[Obj]]:
    """The DHCP agents' ports by network id, oldest name first."""
    found: dict[str, list[Obj]] = {}
    for port in sorted(ports, key=_name):
        if dhcpports.is_agent_port(port):
            found.setdefault(str(_spec(port).get("network_id")), []).append(port)
    return found


def chosen_port(host: str, ports: list[Obj]) -> Obj:
    """The network's DHCP port to keep: one bound here, else the first."""
    mine = [port for port in ports if _spec(port).get("binding:host_id") == host]
    return (mine or ports)[0]


def address_changes(port: Obj, subnets: list[Obj]) -> tuple[list[Obj], list[Obj]]:
    """Subnets the port needs an address on, and fixed IPs it must give back."""
    wanted = {_name(subnet) for subnet in subnets}
    fixed = _spec(port).get("fixed_ips") or []
    have = {str(f.get("subnet_id")) for f in fixed}
    add = [subnet for subnet in subnets if _name(subnet) not in have]
    drop = [f for f in fixed if str(f.get("subnet_id")) not in wanted]
    return add, drop


def dhcp_subnet(subnet: Obj, ports: Iterable[Obj]) -> DhcpSubnet:
    """A subnet's DHCP options; metadata through a router interface on it, if there is one."""
    spec, subnet_id = _spec(subnet), _name(subnet)
    via = next(
        (
            str(fixed["ip_address"])
            for port in ports
            if _spec(port).get("device_owner") == INTERFACE
            for fixed in _spec(port).get("fixed_ips") or []
            if fixed.get("subnet_id") == subnet_id
        ),
        None,
    )
    routes = tuple(
        (str(r["destination"]), str(r["nexthop"])) for r in spec.get("host_routes") or []
    )
    return DhcpSubnet(
        subnet_id,
        str(spec["cidr"]),
        gateway=spec.get("gateway_ip") or None,
        dns_servers=tuple(str(s) for s in spec.get("dns_nameservers") or []),
        host_routes=routes,
        metadata_via=via,
    )


def dhcp_wiring(network: Obj, port: Obj, subnets: list[Obj], ports: list[Obj]) -> DhcpWiring:
    """A network's DHCP server: its port and a static lease for every other port's address."""
    cidrs = {_name(subnet): str(_spec(subnet)["cidr"]) for subnet in subnets}
    addresses = tuple(
        f"{f['ip_address']}/{ipaddress.ip_network(cidrs[f['subnet_id']]).prefixlen}"
        for f in _spec(port).get("fixed_ips") or []
        if f.get("subnet_id") in cidrs
    )
    hosts = tuple(
        DhcpHost(str(_spec(other).get("mac_address")), str(f["ip_address"]))
        for other in ports
        if _name(other) != _name(port) and _spec(other).get("mac_address")
        for f in _spec(other).get("fixed_ips") or []
        if f.get("subnet_id") in cidrs
    )
    return DhcpWiring(
        network_id=_name(network),
        port_id=_name(port),
        mac=str(_spec(port).get("mac_address")),
        addresses=addresses,
        mtu=int(_spec(network).get("mtu") or 1450),
        subnets=tuple(dhcp_subnet(subnet, ports) for subnet in subnets),
        hosts=tuple(sorted(hosts, key=lambda host: (host.mac, host.ip))),
    )


@dataclass
class DhcpPlan:
    """What one sync does: ports to write, then the servers this host runs."""

    create: list[str] = field(default_factory=list)  # network ids
    bind: list[Obj] = field(default_factory=list)
    readdress: list[tuple[Obj, list[Obj], list[Obj]]] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)
    wirings: dict[str, DhcpWiring] = field(default_factory=dict)


def plan(
    host: str,
    networks: Iterable[Obj],
    subnets: Iterable[Obj],
    ports: Iterable[Obj],
    nodes: Iterable[Obj],
) -> DhcpPlan:
    """Desired and observed → the DHCP ports to write and the servers to run here."""
    hosts = l3.l3_hosts(host, nodes)
    network_map = {_name(n): n for n in _live(networks)}
    served = {k: v for k, v in dhcp_subnets(subnets).items() if k in network_map}
    all_ports = _live(ports)
    by_network: dict[str, list[Obj]] = {}
    for port in all_ports:
        by_network.setdefault(str(_spec(port).get("network_id")), []).append(port)
    result = DhcpPlan()
    for network_id, found in agent_ports(all_ports).items():
        if network_id not in served and l3.router_host(network_id, hosts) == host:
            result.delete += found
    for network_id, network_subnets in sorted(served.items()):
        if l3.router_host(network_id, hosts) != host:
            continue
        found = agent_ports(by_network.get(network_id, [])).get(network_id, [])
        if not found:
            result.create.append(network_id)
            continue
        port = chosen_port(host, found)
        result.delete += [other for other in found if other is not port]
        spec = _spec(port)
        if spec.get("binding:host_id") != host or spec.get("device_id") != dhcpports.device_id(
            host, network_id
        ):
            result.bind.append(port)
        add, drop = address_changes(port, network_subnets)
        if add or drop:
            result.readdress.append((port, add, drop))
            continue
        result.wirings[network_id] = dhcp_wiring(
            network_map[network_id], port, network_subnets, by_network[network_id]
        )
    return result


# --- acting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DhcpOptions:
    coalesce_delay: float = 0.05
    retry_delay: float = 1.0
    record: Path | None = None  # every network served here, for cleanup


class DhcpAgent:
    """Keeps this host's DHCP ports and dnsmasq servers in line with the networks."""

    def __init__(
        self,
        client: Client,
        host: str,
        dhcp: Dhcp,
        ensure_network: EnsureNetwork | None = None,
        options: DhcpOptions | None = None,
    ) -> None:
        self.client, self.host, self.dhcp = client, host, dhcp
        self.ensure_network = ensure_network
        self.options = options or DhcpOptions()
        self.informers = {
            ref.plural: Informer(client, ref) for ref in (NETWORKS, SUBNETS, PORTS, NODES)
        }
        self.applied: dict[str, DhcpWiring] = {}
        self.loop = SyncLoop(
            "dhcp",
            self.sync,
            list(self.informers.values()),
            coalesce=self.options.coalesce_delay,
            retry=self.options.retry_delay,
        )

    def _list(self, plural: str) -> list[Obj]:
        return self.informers[plural].cache.list()

    def desired(self) -> DhcpPlan:
        return plan(
            self.host,
            self._list("networks"),
            self._list("subnets"),
            self._list("ports"),
            self._list("nodes"),
        )

    async def sync(self) -> None:
        wanted = self.desired()
        failed = not await self._write_ports(wanted)
        self._remember(set(wanted.wirings))
        for network_id, wiring in sorted(wanted.wirings.items()):
            try:
                await self._ensure(wiring)
            except Exception:
                log.exception("dhcp: network %s could not be served", network_id)
                failed = True
        for network_id in sorted(set(self.applied) - set(wanted.wirings) - set(wanted.create)):
            if any(_spec(p).get("network_id") == network_id for p, _, _ in wanted.readdress):
                continue  # served again once its port is readdressed
            await asyncio.to_thread(self.dhcp.remove, network_id)
            del self.applied[network_id]
        if failed:
            raise RuntimeError("some DHCP servers could not be wired")

    async def _write_ports(self, wanted: DhcpPlan) -> bool:
        """Create, bind, readdress and delete DHCP ports; whether all went through."""
        ok = True
        for what, step in self._port_steps(wanted):
            try:
                written = await step()
            except Exception as error:  # gone meanwhile, a conflict, a full subnet: next sync
                log.warning("dhcp: %s: %s", what, error)
                ok = False
                continue
            await self._see(written)
        return ok

    def _port_steps(self, wanted: DhcpPlan) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
        client, host, ports = self.client, self.host, self._list("ports")
        networks = {_name(n): n for n in self._list("networks")}
        subnets = dhcp_subnets(self._list("subnets"))
        steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        for network_id in wanted.create:
            network, served = networks[network_id], subnets[network_id]
            steps.append(
                (
                    f"creating the DHCP port of network {network_id}",
                    functools.partial(dhcpports.create_port, client, host, network, served, ports),
                )
            )
        for port in wanted.bind:
            bind = functools.partial(dhcpports.bind_port, client, host, port)
            steps.append((f"binding port {_name(port)}", bind))
        for port, add, drop in wanted.readdress:
            change = functools.partial(dhcpports.readdress_port, client, port, add, drop, ports)
            steps.append((f"readdressing port {_name(port)}", change))
        for port in wanted.delete:
            delete = functools.partial(dhcpports.delete_port, client, port)
            steps.append((f"deleting port {_name(port)}", delete))
        return steps

    async def _see(self, written: Any) -> None:
        """Wait until the port informer has a port just written (no second create)."""
        version = (written or {}).get("metadata", {}).get("resourceVersion")
        if isinstance(written, dict) and written.get("kind") == "Port" and version:
            try:
                await self.informers["ports"].wait_for_version(version, timeout=5.0)
            except TimeoutError:
                log.warning("dhcp: the port cache is slow to show %s", _name(written))

    async def _ensure(self, wiring: DhcpWiring) -> None:
        if self.applied.get(wiring.network_id) == wiring:
            return
        if self.ensure_network is not None:
            await self.ensure_network(NetworkWiring(wiring.network_id, mtu=wiring.mtu))
        await asyncio.to_thread(self.dhcp.ensure, wiring)
        self.applied[wiring.network_id] = wiring

    def _remember(self, networks: set[str]) -> None:
        record = self.options.record
        if record is None or networks <= recorded(record):
            return
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_bytes(orjson.dumps(sorted(recorded(record) | networks)))

    async def run(self) -> None:
        await self.loop.run()


def recorded(record: Path) -> set[str]:
    """The networks an agent served here, from its record."""
    try:
        return {str(item) for item in orjson.loads(record.read_bytes())}
    except (OSError, orjson.JSONDecodeError):
        return set()


def cleanup(record: Path, dhcp: Dhcp) -> list[str]:
    """Remove the recorded DHCP servers (`unistack down`)."""
    known = recorded(record)
    dhcp.cleanup(sorted(known))
    record.unlink(missing_ok=True)
    return [f"removed {len(known)} DHCP namespaces"] if known else []
