"""Neutron routers on one host (the L3 agent's data plane): a network namespace per router.

A router `R` is the namespace `unistack-router-<R>` (`tenantnames.router_netns`) holding, per
interface port, the inside end `qr-<port id[:11]>` of a veth whose host end
`tenantnames.router_port_device(port)` sits in the tenant network's bridge, and the gateway
port likewise as `qg-<port id[:11]>` on the external network's bridge. Inside: the ports' MACs
and addresses, the floating IPs as /32 addresses on `qg` (so the router answers ARP for them on
the external network, as Neutron's legacy routers do), a default route via the external
subnet's gateway, the router's static routes (IPv4 and IPv6), forwarding on for both (an
IPv6 subnet is routed, not translated, as Neutron's), and one nftables table
(`render_table`, pure, swapped whole and atomically):

- prerouting: `169.254.169.254:80` arriving on any `qr-*` is redirected to the metadata port
  (the metadata proxy, `unistack.agent.metadata`, listens there inside the namespace), and each
  floating address is DNATed to its fixed address;
- postrouting, leaving `qg`: a floating IP's fixed address is SNATed to the floating one, then,
  with `enable_snat`, the tenant subnets to the gateway's own address; and, with `enable_snat`,
  what came in on a `qr` and was DNATed (a floating IP reached from a tenant network, the
  router's own or another's) to the gateway's address, so its answer returns through here;
- input: the metadata port answers only what came in on a `qr-*` interface.

Every inside end also holds the IPv6 link-local address made from its MAC (the kernel makes
none: tenant-facing links have address generation off), which neighbour discovery and router
advertisements speak from. With `advertisements` (`radvd.LinuxRadvd`), the interfaces' IPv6
subnets that have an `ipv6_ra_mode` are advertised by radvd in the namespace, so guests take
the prefix (SLAAC) and their default IPv6 route from the router, as Neutron's L3 agent does.

The host side (`ExternalWiring`, as DevStack's br-ex), on the uplink host only
(`unistack.agent.l3`): the external network's bridge gets the external subnet's gateway
address, so the host reaches the floating IPs, and the external subnet is masqueraded when the
host routes it elsewhere (table `unistack-ext-<bridge>`, `render_external_table`). Other hosts'
external bridges carry no address: their routers reach the gateway over the network's L2.

Like `tenantnet`, every call observes first (`ip -j` of links, addresses, routes), decides with
pure functions and applies the differences in one `ip -batch`: `ensure_router` twice changes
nothing the second time. `LinuxRouters(host_netns=NAME)` puts the host ends in a named namespace
(tests, emulated hosts). Removing a router deletes its namespace, which takes its veths (and so
their host ends) along. `cleanup_all(ids)` removes only the routers named: several clouds share
a machine's namespaces. `FakeRouters` records the same calls in memory.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from unistack.dataplane import iproute, netns, nftables, radvd, secgroups, tenantnames
from unistack.dataplane.tenantnet import Link, member_lines, parse_links

TABLE = "unistack-router"
METADATA_ADDRESS = "169.254.169.254"
METADATA_PORT = 9697  # Neutron's metadata proxy port
INTERFACE_PREFIX = "qr-"
GATEWAY_PREFIX = "qg-"
INSIDE_PREFIXES = (INTERFACE_PREFIX, GATEWAY_PREFIX)
EXTERNAL_TABLE_PREFIX = "unistack-ext-"


@dataclass(frozen=True, slots=True)
class RouterPort:
    """One router port: its id names both veth ends; `addresses` are `ip/prefix`."""

    port_id: str
    network_id: str
    mac: str
    addresses: tuple[str, ...]
    mtu: int = 1450
    advertise: tuple[tuple[str, str], ...] = ()  # (IPv6 prefix, its subnet's ipv6_ra_mode)


@dataclass(frozen=True, slots=True)
class FloatingIp:
    """A 1:1 NAT: `floating` (on the external network) stands for `fixed` (a tenant port's)."""

    floating: str
    fixed: str


@dataclass(frozen=True, slots=True)
class RouterWiring:
    """A router as its host wires it; `gateway_ip` is the external subnet's gateway."""

    router_id: str
    interfaces: tuple[RouterPort, ...] = ()
    gateway: RouterPort | None = None
    gateway_ip: str | None = None
    snat: bool = True
    routes: tuple[tuple[str, str], ...] = ()  # (destination CIDR, nexthop)
    floating_ips: tuple[FloatingIp, ...] = ()
    metadata_port: int | None = METADATA_PORT


@dataclass(frozen=True, slots=True)
class ExternalWiring:
    """The external network on the host: its bridge gets `gateway` (`ip/prefix` of `cidr`)."""

    network_id: str
    cidr: str
    gateway: str


class Routers(Protocol):
    """Router namespaces of one host, and the external network's host side."""

    def ensure_router(self, wiring: RouterWiring) -> None: ...
    def remove_router(self, router_id: str) -> None: ...
    def list_routers(self) -> list[str]: ...
    def cleanup_all(self, router_ids: Iterable[str]) -> None: ...
    def ensure_external(self, wiring: ExternalWiring) -> None: ...
    def remove_external(self, network_id: str) -> None: ...


# --- names -----------------------------------------------------------------------------------


def interface_name(port_id: str) -> str:
    """The inside end of an interface port: `qr-` + 11 characters of its id (Neutron's)."""
    return INTERFACE_PREFIX + port_id[:11]


def gateway_name(port_id: str) -> str:
    """The inside end of the gateway port: `qg-` + 11 characters of its id."""
    return GATEWAY_PREFIX + port_id[:11]


def inside_names(wiring: RouterWiring) -> dict[str, RouterPort]:
    """Every wanted inside interface by name."""
    named = {interface_name(port.port_id): port for port in wiring.interfaces}
    if wiring.gateway is not None:
        named[gateway_name(wiring.gateway.port_id)] = wiring.gateway
    return named


def router_id_of(netns_name: str) -> str:
    return netns_name.removeprefix(tenantnames.ROUTER_NETNS_PREFIX)


# --- deciding (pure) -------------------------------------------------------------------------


def host_lines(wiring: RouterWiring, links: Mapping[str, Link]) -> list[str]:
    """Create the missing veths (inside end straight into the router) and enslave host ends."""
    namespace = tenantnames.router_netns(wiring.router_id)
    lines: list[str] = []
    for inside, port in inside_names(wiring).items():
        name = tenantnames.router_port_device(port.port_id)
        link = links.get(name)
        if link is not None and link.kind != "veth":
            lines.append(f"link delete {name}")
            link = None
        if link is None:
            lines.append(
                f"link add {name} mtu {port.mtu} type veth peer name {inside}"
                f" address {port.mac} mtu {port.mtu} netns {namespace}"
            )
        bridge = tenantnames.bridge_name(port.network_id)
        lines += member_lines(name, bridge, port.mtu, link)
    return lines


def parse_addresses(entries: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    """IPv4 and IPv6 (global and link-local) `ip/prefix` per interface from decoded
    `ip -j addr show`."""
    found: dict[str, set[str]] = {}
    for entry in entries:
        infos = entry.get("addr_info") or []
        found[entry["ifname"]] = {
            f"{info['local']}/{info['prefixlen']}"
            for info in infos
            if info.get("family") == "inet"
            or (info.get("family") == "inet6" and info.get("scope") in ("global", "link"))
        }
    return found


def port_addresses(mac: str, addresses: Iterable[str]) -> set[str]:
    """What a port's inside end holds: its addresses and, made from its MAC, the IPv6
    link-local one that neighbour discovery and router advertisements speak from (the
    kernel makes none: tenant-facing links have address generation off)."""
    return {*addresses, f"{secgroups.link_local(mac)}/64"}


def address_add(address: str, device: str) -> str:
    """The `ip -batch` line adding a port's address; an IPv6 one without duplicate address
    detection (IPAM made it unique), so it is usable at once instead of tentative for ~1 s."""
    nodad = " nodad" if ":" in address else ""
    return f"address add {address} dev {device}{nodad}"


def wanted_addresses(wiring: RouterWiring) -> dict[str, set[str]]:
    """The addresses of every inside interface: the gateway also holds the floating IPs."""
    wanted = {
        name: port_addresses(port.mac, port.addresses)
        for name, port in inside_names(wiring).items()
    }
    if wiring.gateway is not None:
        floating = {f"{fip.floating}/32" for fip in wiring.floating_ips}
        wanted[gateway_name(wiring.gateway.port_id)] |= floating
    return wanted


def parse_macs(entries: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The MAC of every link from decoded `ip -j link show`."""
    return {entry["ifname"]: str(entry.get("address", "")) for entry in entries}


def inside_lines(
    wiring: RouterWiring,
    links: Mapping[str, Link],
    macs: Mapping[str, str],
    addresses: Mapping[str, set[str]],
) -> list[str]:
    """Inside the router: stale ports out, wanted ones up with their MAC, MTU and addresses."""
    wanted = inside_names(wiring)
    lines = [
        f"link delete {name}"
        for name in sorted(links)
        if name.startswith(INSIDE_PREFIXES) and name not in wanted
    ]
    lo = links.get("lo")
    if lo is None or not lo.up:
        lines.append("link set lo up")
    for name, port in sorted(wanted.items()):
        link = links.get(name)
        if link is not None and macs.get(name, port.mac) != port.mac:
            lines.append(f"link set {name} address {port.mac}")
        lines += member_lines(name, "", port.mtu, link)
    for name, want in sorted(wanted_addresses(wiring).items()):
        have = addresses.get(name, set())
        lines += [f"address del {a} dev {name}" for a in sorted(have - want)]
        lines += [address_add(a, name) for a in sorted(want - have)]
    return lines


def advertised(wiring: RouterWiring) -> list[radvd.Advertised]:
    """What the router advertises on its interfaces (never on the gateway)."""
    return [
        radvd.Advertised(interface_name(port.port_id), prefix, mode, port.mtu)
        for port in wiring.interfaces
        for prefix, mode in port.advertise
        if mode in radvd.RA_MODES
    ]


def _destination(text: str, gateway: str = "") -> str:
    """A route's destination as a key: `default` (IPv4) and `::/0` (IPv6) for the defaults,
    however given (`0.0.0.0/0`, or `default` with an IPv6 gateway), else the network."""
    if text == "default":
        return "::/0" if ":" in gateway else "default"
    network = ipaddress.ip_network(text, strict=False)
    if network.prefixlen == 0:
        return "default" if network.version == 4 else "::/0"
    return str(network)


def parse_routes(entries: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Routes with a next hop, destination → gateway, from decoded `ip -j route show` (or
    `ip -j -6 route show`: an IPv6 default route is `::/0`, IPv4's is `default`)."""
    return {
        _destination(str(entry["dst"]), str(entry["gateway"])): str(entry["gateway"])
        for entry in entries
        if entry.get("gateway") and entry.get("dst")
    }


def wanted_routes(wiring: RouterWiring) -> dict[str, str]:
    """The default route via the external gateway, then the router's static routes."""
    routes = {_destination(dst, hop): hop for dst, hop in wiring.routes}
    if wiring.gateway is not None and wiring.gateway_ip:
        routes[_destination("default", wiring.gateway_ip)] = wiring.gateway_ip
    return routes


def route_lines(wiring: RouterWiring, current: Mapping[str, str]) -> list[str]:
    """Replace what differs, delete next-hop routes no longer wanted."""
    wanted = wanted_routes(wiring)
    lines = [f"route del {dst}" for dst in sorted(current) if dst not in wanted]
    lines += [
        f"route replace {dst} via {hop}"
        for dst, hop in sorted(wanted.items())
        if current.get(dst) != hop
    ]
    return lines


def _subnet_of(address: str) -> str:
    return str(ipaddress.ip_interface(address).network)


def render_table(wiring: RouterWiring, table: str = TABLE) -> str:
    """The router's nftables table: metadata redirect, floating IP NAT, SNAT."""
    pre = ["type nat hook prerouting priority dstnat; policy accept;"]
    post = ["type nat hook postrouting priority srcnat; policy accept;"]
    accept = ["type filter hook input priority filter; policy accept;"]
    if wiring.metadata_port is not None:
        pre.append(
            f'iifname "{INTERFACE_PREFIX}*" ip daddr {METADATA_ADDRESS} tcp dport 80'
            f" redirect to :{wiring.metadata_port}"
        )
        accept.append(f'tcp dport {wiring.metadata_port} iifname != "{INTERFACE_PREFIX}*" drop')
    if wiring.gateway is not None:
        qg = gateway_name(wiring.gateway.port_id)
        for fip in sorted(wiring.floating_ips, key=lambda f: f.floating):
            pre.append(f"ip daddr {fip.floating} dnat to {fip.fixed}")
            post.append(f'oifname "{qg}" ip saddr {fip.fixed} snat to {fip.floating}')
        gateway_ips = [a for a in wiring.gateway.addresses if ":" not in a]
        subnets = sorted(
            {_subnet_of(a) for p in wiring.interfaces for a in p.addresses if ":" not in a}
        )
        if wiring.snat and gateway_ips:
            source = ipaddress.ip_interface(gateway_ips[0]).ip
            if subnets:
                post.append(f'oifname "{qg}" ip saddr {{ {", ".join(subnets)} }} snat to {source}')
            # hairpin: a floating IP reached from inside goes back out a `qr`; as the gateway
            # address, so the answer comes back through here to be translated (as Neutron's
            # DNAT-but-not-from-outside SNAT rule does)
            post.append(f'iifname "{INTERFACE_PREFIX}*" ct status dnat snat to {source}')
    chains = (("prerouting", pre), ("postrouting", post), ("input", accept))
    body = "".join(
        f"  chain {name} {{\n" + "".join(f"    {rule}\n" for rule in rules) + "  }\n"
        for name, rules in chains
    )
    return f"table ip {table} {{\n{body}}}\n"


def external_table_name(network_id: str) -> str:
    """The host's masquerade table for an external network: `unistack-ext-<bridge>`."""
    return EXTERNAL_TABLE_PREFIX + tenantnames.bridge_name(network_id)


def render_external_table(wiring: ExternalWiring) -> str:
    """Masquerade the external subnet when the host routes it elsewhere.

    Only what the host *routes* from the external bridge: with `nf_call_iptables` on the
    tenant bridges, packets bridged there (a floating IP's DNATed traffic still has an external
    source) also pass the host's postrouting hook and must keep their source, which is why
    `masquerade.ruleset` (source and destination only) does not fit."""
    bridge = tenantnames.bridge_name(wiring.network_id)
    table = external_table_name(wiring.network_id)
    return (
        f"table ip {table} {{\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f'    iifname "{bridge}" oifname != "{bridge}" ip saddr {wiring.cidr}'
        f" ip daddr != {wiring.cidr} masquerade\n"
        "  }\n"
        "}\n"
    )


def _ipv4(addresses: Iterable[str]) -> set[str]:
    return {address for address in addresses if ":" not in address}


def external_address_lines(wiring: ExternalWiring, addresses: Mapping[str, set[str]]) -> list[str]:
    """Give the external bridge the gateway address (and only that IPv4 address)."""
    bridge = tenantnames.bridge_name(wiring.network_id)
    have = _ipv4(addresses.get(bridge, set()))
    lines = [f"address del {a} dev {bridge}" for a in sorted(have - {wiring.gateway})]
    if wiring.gateway not in have:
        lines.append(f"address add {wiring.gateway} dev {bridge}")
    return lines


# --- acting ----------------------------------------------------------------------------------


@dataclass(slots=True)
class LinuxRouters:
    """Routers with iproute2 and nft; host ends in `host_netns` (None: the host itself)."""

    host_netns: str | None = None
    namespaces: netns.Namespaces = field(default_factory=netns.LinuxNamespaces)
    forwarding: set[str] = field(default_factory=set)  # routers whose ip_forward is set
    advertisements: radvd.LinuxRadvd | None = None  # None: no router advertisements

    def _exec(self, namespace: str | None, argv: Sequence[str], stdin: str | None = None) -> str:
        prefix = ["ip", "netns", "exec", namespace] if namespace else []
        return iproute.run([*prefix, *argv], stdin)

    def ensure_router(self, wiring: RouterWiring) -> None:
        """Namespace, veths, addresses, routes and NAT table as `wiring` says."""
        namespace = tenantnames.router_netns(wiring.router_id)
        if not self.namespaces.exists(namespace):
            self.namespaces.create(namespace)
            self.forwarding.discard(wiring.router_id)
        if wiring.router_id not in self.forwarding:
            forward = ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
            iproute.sysctl(*forward, netns=namespace)
            self.forwarding.add(wiring.router_id)
        host_links = parse_links(iproute.ip_json("-d", "link", "show", netns=self.host_netns))
        iproute.ip_batch(host_lines(wiring, host_links), self.host_netns)
        entries = iproute.ip_json("-d", "link", "show", netns=namespace)
        addresses = parse_addresses(iproute.ip_json("addr", "show", netns=namespace))
        lines = inside_lines(wiring, parse_links(entries), parse_macs(entries), addresses)
        iproute.ip_batch(lines, namespace)
        routes = parse_routes(iproute.ip_json("route", "show", netns=namespace))
        routes |= parse_routes(iproute.ip_json("-6", "route", "show", netns=namespace))
        iproute.ip_batch(route_lines(wiring, routes), namespace)
        script = nftables.replace_table_script("ip", TABLE, render_table(wiring))
        self._exec(namespace, ["nft", "-f", "-"], script)
        if self.advertisements is not None:
            self.advertisements.ensure(wiring.router_id, namespace, advertised(wiring))

    def remove_router(self, router_id: str) -> None:
        """End its radvd, delete the router's veths (their host ends at once: a namespace's
        own devices go only when the kernel gets round to it), then its namespace and table."""
        namespace = tenantnames.router_netns(router_id)
        if self.advertisements is not None:
            self.advertisements.stop(router_id)
        if self.namespaces.exists(namespace):
            links = parse_links(iproute.ip_json("link", "show", netns=namespace))
            iproute.ip_batch(
                [f"link delete {n}" for n in links if n.startswith(INSIDE_PREFIXES)], namespace
            )
            self.namespaces.delete(namespace)
        self.forwarding.discard(router_id)

    def list_routers(self) -> list[str]:
        """Ids of the router namespaces on this machine (every cloud's)."""
        return [
            router_id_of(name)
            for name in self.namespaces.list_with_prefix(tenantnames.ROUTER_NETNS_PREFIX)
        ]

    def cleanup_all(self, router_ids: Iterable[str]) -> None:
        """Remove the routers named (never another cloud's)."""
        present = set(self.list_routers())
        for router_id in router_ids:
            if router_id in present:
                self.remove_router(router_id)
            elif self.advertisements is not None:  # its namespace gone, radvd kept going
                self.advertisements.stop(router_id)

    def ensure_external(self, wiring: ExternalWiring) -> None:
        """The gateway address on the external bridge, and masquerade for the subnet."""
        addresses = parse_addresses(iproute.ip_json("addr", "show", netns=self.host_netns))
        iproute.ip_batch(external_address_lines(wiring, addresses), self.host_netns)
        table = external_table_name(wiring.network_id)
        script = nftables.replace_table_script("ip", table, render_external_table(wiring))
        self._exec(self.host_netns, ["nft", "-f", "-"], script)

    def remove_external(self, network_id: str) -> None:
        """Drop the gateway address and the masquerade table. The bridge goes with the
        network; it stays while other hosts' routers use it and this host is no longer the
        uplink, and the address must not (it would answer for the gateway twice)."""
        bridge = tenantnames.bridge_name(network_id)
        addresses = parse_addresses(iproute.ip_json("addr", "show", netns=self.host_netns))
        lines = [
            f"address del {a} dev {bridge}" for a in sorted(_ipv4(addresses.get(bridge, set())))
        ]
        iproute.ip_batch(lines, self.host_netns)
        script = nftables.delete_table_script("ip", external_table_name(network_id))
        self._exec(self.host_netns, ["nft", "-f", "-"], script)


# --- fake ------------------------------------------------------------------------------------


@dataclass
class FakeRouters:
    """In-memory routers for callers' tests; `calls` lists every operation in order."""

    routers: dict[str, RouterWiring] = field(default_factory=dict)
    externals: dict[str, ExternalWiring] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def ensure_router(self, wiring: RouterWiring) -> None:
        self.calls.append(("ensure_router", wiring.router_id))
        self.routers[wiring.router_id] = wiring

    def remove_router(self, router_id: str) -> None:
        self.calls.append(("remove_router", router_id))
        self.routers.pop(router_id, None)

    def list_routers(self) -> list[str]:
        return sorted(self.routers)

    def cleanup_all(self, router_ids: Iterable[str]) -> None:
        for router_id in list(router_ids):
            if router_id in self.routers:
                self.remove_router(router_id)

    def ensure_external(self, wiring: ExternalWiring) -> None:
        self.calls.append(("ensure_external", wiring.network_id))
        self.externals[wiring.network_id] = wiring

    def remove_external(self, network_id: str) -> None:
        self.calls.append(("remove_external", network_id))
        self.externals.pop(network_id, None)
