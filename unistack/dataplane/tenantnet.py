"""Tenant networks on one host (Neutron's L2 agent): a bridge per network, VXLAN, instance ports.

Each OpenStack network present on a host is a Linux bridge `unistackn…` (no address, STP off,
forward delay 0, IPv6 address generation off so the host says nothing into tenant networks, router
advertisements ignored (`accept_ra` 0: a tenant router's prefix and default route are not the
host's), and `nf_call_iptables`/`nf_call_ip6tables` on: `secgroups` needs bridged packets to
pass conntrack).
Hosts are joined by a VXLAN device `unistackx…` per network (VNI = the segmentation id, UDP
4789, source `local_ip`) enslaved to the bridge; broadcast and unknown unicast go to every peer
host by head-end replication (one all-zero-MAC fdb entry per peer, kept equal to `peers`).

The VXLAN device *learns* (`learning`, the kernel default): the agent only knows peer hosts, not
which MAC sits behind which host (Neutron's l2population), so without learning every unicast
frame would be flooded to all peers. With learning, the first reply teaches the device the
remote MAC's host and traffic becomes point to point; learned entries age out (300 s) and a MAC
that moves is relearned from its next frame. Spoofed source MACs cannot poison this table
because `secgroups` drops them on the sending host.

An instance port is a device `unistackp…` in the bridge: the host end of a veth whose other end
is created inside the instance's namespace (containers), or a persistent tap with vnet_hdr that
QEMU opens with `-netdev tap,ifname=…,script=no,downscript=no` (VMs).

Every operation first lists the links (`ip -j -d link show`, one exec), decides with pure
functions what differs, and applies only that in one `ip -batch` (and one `bridge -batch` for
fdb entries): a second call with the same input changes nothing. `LinuxL2(netns=NAME)` runs all
of it inside a named network namespace (tests and `--hosts N` emulate hosts that way).
`FakeL2` records the same operations in memory. Names come from `tenantnames`; the agent calls
this module and `secgroups`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from unistack.dataplane import iproute, tenantnames

VXLAN_PORT = 4789
FLOOD_MAC = "00:00:00:00:00:00"
_BRIDGE_OPTIONS = {
    "stp_state": 0,
    "forward_delay": 0,
    "nf_call_iptables": 1,
    "nf_call_ip6tables": 1,
}


@dataclass(frozen=True, slots=True)
class NetworkWiring:
    """A network as one host needs it: VXLAN when `vni` and `local_ip` are both given."""

    network_id: str
    vni: int | None = None
    mtu: int = 1450
    local_ip: str | None = None
    peers: tuple[str, ...] = ()
    port: int = VXLAN_PORT  # UDP; two clouds on one machine tunnel on different ports


@dataclass(frozen=True, slots=True)
class PortWiring:
    """An instance port: its id names the device, `mac` is what the instance end gets."""

    port_id: str
    network_id: str
    mac: str
    mtu: int = 1450


class Link(NamedTuple):
    """One observed link: what `ip -j -d link show` says, reduced to what is decided on."""

    name: str
    kind: str
    master: str | None
    mtu: int
    up: bool
    addrgen_off: bool
    data: Mapping[str, Any]


class L2(Protocol):
    """Bridges, VXLAN and instance ports of the tenant networks on one host."""

    def ensure_network(self, wiring: NetworkWiring) -> None: ...
    def remove_network(self, network_id: str) -> None: ...
    def plug_veth(self, port: PortWiring, netns_path: str, ifname: str) -> None: ...
    def plug_tap(self, port: PortWiring) -> None: ...
    def unplug(self, port_id: str) -> None: ...
    def list_devices(self) -> list[str]: ...
    def cleanup_all(self) -> None: ...


# --- observing -------------------------------------------------------------------------------


def parse_links(entries: Iterable[Mapping[str, Any]]) -> dict[str, Link]:
    """Links by name from decoded `ip -j -d link show` output."""
    links = {}
    for entry in entries:
        info = entry.get("linkinfo", {})
        links[entry["ifname"]] = Link(
            name=entry["ifname"],
            kind=info.get("info_kind", ""),
            master=entry.get("master"),
            mtu=int(entry.get("mtu", 0)),
            up="UP" in entry.get("flags", []),
            addrgen_off=entry.get("inet6_addr_gen_mode") == "none",
            data=info.get("info_data", {}),
        )
    return links


def parse_flood_peers(entries: Iterable[Mapping[str, Any]]) -> set[str]:
    """The peers of the all-zero-MAC entries in decoded `bridge -j fdb show dev VXLAN` output."""
    return {e["dst"] for e in entries if e.get("mac") == FLOOD_MAC and "dst" in e}


# --- deciding (pure) -------------------------------------------------------------------------


def wants_vxlan(wiring: NetworkWiring) -> bool:
    """VXLAN only between hosts: a segmentation id and a local underlay address are needed."""
    return wiring.vni is not None and wiring.local_ip is not None


def vxlan_matches(link: Link, wiring: NetworkWiring) -> bool:
    """Whether an existing VXLAN device has the identity `wiring` asks for (else recreate)."""
    data = link.data
    return (
        link.kind == "vxlan"
        and data.get("id") == wiring.vni
        and data.get("local") == wiring.local_ip
        and data.get("port") == wiring.port
        and bool(data.get("learning", True))
    )


def member_lines(name: str, master: str, mtu: int, link: Link | None) -> list[str]:
    """Bring a bridge member (or the bridge, master "") to mtu, no IPv6 address, enslaved, up."""
    lines = []
    if link is None or link.mtu != mtu:
        lines.append(f"link set {name} mtu {mtu}")
    if link is None or not link.addrgen_off:
        lines.append(f"link set {name} addrgenmode none")
    if master and (link is None or link.master != master):
        lines.append(f"link set {name} master {master}")
    if link is None or not link.up:
        lines.append(f"link set {name} up")
    return lines


def bridge_lines(wiring: NetworkWiring, links: Mapping[str, Link]) -> list[str]:
    """Create or correct the network's bridge."""
    name = tenantnames.bridge_name(wiring.network_id)
    link = links.get(name)
    options = " ".join(f"{key} {value}" for key, value in _BRIDGE_OPTIONS.items())
    lines = []
    if link is not None and link.kind != "bridge":
        lines.append(f"link delete {name}")
        link = None
    if link is None:
        lines.append(f"link add {name} type bridge {options}")
    elif any(link.data.get(key) != value for key, value in _BRIDGE_OPTIONS.items()):
        lines.append(f"link set {name} type bridge {options}")
    return lines + member_lines(name, "", wiring.mtu, link)


def vxlan_lines(wiring: NetworkWiring, links: Mapping[str, Link]) -> tuple[list[str], bool]:
    """Create, correct or remove the VXLAN device; also whether it is new (no fdb entries)."""
    name = tenantnames.vxlan_name(wiring.network_id)
    link = links.get(name)
    if not wants_vxlan(wiring):
        return ([f"link delete {name}"] if link else []), False
    lines = []
    if link is not None and not vxlan_matches(link, wiring):
        lines.append(f"link delete {name}")
        link = None
    if link is None:
        lines.append(
            f"link add {name} type vxlan id {wiring.vni}"
            f" dstport {wiring.port} local {wiring.local_ip} learning"
        )
    bridge = tenantnames.bridge_name(wiring.network_id)
    return lines + member_lines(name, bridge, wiring.mtu, link), link is None


def network_lines(wiring: NetworkWiring, links: Mapping[str, Link]) -> tuple[list[str], bool]:
    """All `ip` lines for a network, and whether its VXLAN device is (re)created."""
    vxlan, fresh = vxlan_lines(wiring, links)
    return bridge_lines(wiring, links) + vxlan, fresh


def fdb_lines(vxlan: str, current: set[str], peers: Sequence[str]) -> list[str]:
    """`bridge` lines making the flood entries of `vxlan` exactly `peers`."""
    wanted = set(peers)
    add = [f"fdb append {FLOOD_MAC} dev {vxlan} dst {peer}" for peer in sorted(wanted - current)]
    remove = [f"fdb del {FLOOD_MAC} dev {vxlan} dst {peer}" for peer in sorted(current - wanted)]
    return add + remove


def veth_lines(port: PortWiring, netns_path: str, ifname: str, link: Link | None) -> list[str]:
    """Create (or replace a wrong kind of) host device as a veth with its peer in the instance."""
    name = tenantnames.port_device(port.port_id)
    bridge = tenantnames.bridge_name(port.network_id)
    lines = []
    if link is not None and link.kind != "veth":
        lines.append(delete_line(link))
        link = None
    if link is None:
        lines.append(
            f"link add {name} type veth peer name {ifname}"
            f" address {port.mac} mtu {port.mtu} netns {netns_path}"
        )
    return lines + member_lines(name, bridge, port.mtu, link)


def tap_matches(link: Link) -> bool:
    """A persistent single-queue tap with vnet_hdr, as QEMU's virtio-net wants."""
    data = link.data
    return (
        link.kind == "tun"
        and data.get("type") == "tap"
        and bool(data.get("vnet_hdr"))
        and not data.get("multi_queue")
    )


def tap_lines(port: PortWiring, link: Link | None) -> list[str]:
    """Create (or replace a wrong kind of) host device as a persistent tap in the bridge."""
    name = tenantnames.port_device(port.port_id)
    lines = []
    if link is not None and not tap_matches(link):
        lines.append(delete_line(link))
        link = None
    if link is None:
        lines.append(f"tuntap add dev {name} mode tap vnet_hdr user 0")
    bridge = tenantnames.bridge_name(port.network_id)
    return lines + member_lines(name, bridge, port.mtu, link)


def delete_line(link: Link) -> str:
    """Delete one link: taps need `tuntap del` (tun has no rtnetlink delete)."""
    if link.kind == "tun":
        return f"tuntap del dev {link.name} mode {link.data.get('type', 'tap')}"
    return f"link delete {link.name}"


def cleanup_order(links: Mapping[str, Link]) -> list[Link]:
    """Tenant devices, ports first, then VXLAN devices, then bridges."""
    rank = {tenantnames.VXLAN_PREFIX: 1, tenantnames.BRIDGE_PREFIX: 2}
    tenant = [link for name, link in links.items() if tenantnames.is_tenant_device(name)]
    return sorted(tenant, key=lambda link: (rank.get(link.name[:9], 0), link.name))


# --- acting ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinuxL2:
    """L2 with iproute2, on the host or inside the named network namespace `netns`."""

    netns: str | None = None
    deaf: set[str] = field(default_factory=set, compare=False)  # bridges ignoring RAs

    def links(self) -> dict[str, Link]:
        """Every link of the (host or emulated-host) namespace."""
        return parse_links(iproute.ip_json("-d", "link", "show", netns=self.netns))

    def _bridge_argv(self) -> list[str]:
        """iproute2's `bridge` tool, in the same namespace as `ip` runs."""
        return ["bridge" if part == "ip" else part for part in iproute.ip_argv(self.netns)]

    def _bridge_batch(self, lines: Sequence[str]) -> None:
        if lines:
            iproute.run([*self._bridge_argv(), "-batch", "-"], "\n".join(lines) + "\n")

    def flood_peers(self, vxlan: str) -> set[str]:
        """The peers the VXLAN device floods to now."""
        out = iproute.run([*self._bridge_argv(), "-j", "fdb", "show", "dev", vxlan])
        return parse_flood_peers(json.loads(out) if out.strip() else [])

    def ensure_network(self, wiring: NetworkWiring) -> None:
        """Bridge, VXLAN and flood entries as `wiring` says; nothing done when already so."""
        lines, fresh = network_lines(wiring, self.links())
        iproute.ip_batch(lines, self.netns)
        bridge = tenantnames.bridge_name(wiring.network_id)
        if bridge not in self.deaf:  # a tenant router's advertisements are not the host's
            iproute.sysctl(f"net.ipv6.conf.{bridge}.accept_ra=0", netns=self.netns)
            self.deaf.add(bridge)
        if wants_vxlan(wiring):
            vxlan = tenantnames.vxlan_name(wiring.network_id)
            current = set() if fresh else self.flood_peers(vxlan)
            peers = [peer for peer in wiring.peers if peer != wiring.local_ip]
            self._bridge_batch(fdb_lines(vxlan, current, peers))

    def remove_network(self, network_id: str) -> None:
        """Delete the network's VXLAN device and bridge (ports left in it are released)."""
        links = self.links()
        names = (tenantnames.vxlan_name(network_id), tenantnames.bridge_name(network_id))
        self._delete([links[name] for name in names if name in links])
        self.deaf.discard(names[1])

    def _require_bridge(self, port: PortWiring, links: Mapping[str, Link]) -> None:
        if tenantnames.bridge_name(port.network_id) not in links:
            raise LookupError(f"network {port.network_id} has no bridge here: ensure it first")

    def plug_veth(self, port: PortWiring, netns_path: str, ifname: str) -> None:
        """The port as a veth: host end in the bridge, `ifname` with the port MAC in netns."""
        links = self.links()
        self._require_bridge(port, links)
        link = links.get(tenantnames.port_device(port.port_id))
        iproute.ip_batch(veth_lines(port, netns_path, ifname, link), self.netns)
        if link is None or link.kind != "veth":
            iproute.ip_batch([f"link set {ifname} up"], netns=netns_path)

    def plug_tap(self, port: PortWiring) -> None:
        """The port as a persistent tap in the bridge, for QEMU to open."""
        links = self.links()
        self._require_bridge(port, links)
        link = links.get(tenantnames.port_device(port.port_id))
        iproute.ip_batch(tap_lines(port, link), self.netns)

    def unplug(self, port_id: str) -> None:
        """Remove the port's device (a veth takes its instance end along)."""
        link = self.links().get(tenantnames.port_device(port_id))
        self._delete([link] if link else [])

    def list_devices(self) -> list[str]:
        """Names of the tenant devices (bridges, VXLAN, ports, router and DHCP ends), sorted."""
        return sorted(name for name in self.links() if tenantnames.is_tenant_device(name))

    def cleanup_all(self) -> None:
        """Remove every tenant device (`unistack down`, crash cleanup)."""
        self._delete(cleanup_order(self.links()))

    def _delete(self, links: Sequence[Link]) -> None:
        """Delete in one batch; when it fails (a device went meanwhile), one by one."""
        try:
            iproute.ip_batch([delete_line(link) for link in links], self.netns)
        except iproute.CommandError:
            remaining = self.links()
            for link in links:
                if link.name in remaining:
                    iproute.ip_batch([delete_line(link)], self.netns)


# --- fake ------------------------------------------------------------------------------------


@dataclass
class FakePort:
    """What `FakeL2` knows of a plugged port."""

    wiring: PortWiring
    kind: str
    netns_path: str | None = None
    ifname: str | None = None


@dataclass
class FakeL2:
    """An in-memory L2 for callers' tests; `calls` lists every operation in order."""

    networks: dict[str, NetworkWiring] = field(default_factory=dict)
    ports: dict[str, FakePort] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def ensure_network(self, wiring: NetworkWiring) -> None:
        self.calls.append(("ensure_network", wiring.network_id))
        self.networks[wiring.network_id] = wiring

    def remove_network(self, network_id: str) -> None:
        self.calls.append(("remove_network", network_id))
        self.networks.pop(network_id, None)

    def _plug(self, port: FakePort) -> None:
        if port.wiring.network_id not in self.networks:
            raise LookupError(f"network {port.wiring.network_id} has no bridge here")
        self.ports[port.wiring.port_id] = port

    def plug_veth(self, port: PortWiring, netns_path: str, ifname: str) -> None:
        self.calls.append(("plug_veth", port.port_id))
        self._plug(FakePort(port, "veth", netns_path, ifname))

    def plug_tap(self, port: PortWiring) -> None:
        self.calls.append(("plug_tap", port.port_id))
        self._plug(FakePort(port, "tap"))

    def unplug(self, port_id: str) -> None:
        self.calls.append(("unplug", port_id))
        self.ports.pop(port_id, None)

    def list_devices(self) -> list[str]:
        names = [tenantnames.bridge_name(n) for n in self.networks]
        names += [tenantnames.vxlan_name(n) for n, w in self.networks.items() if wants_vxlan(w)]
        names += [tenantnames.port_device(p) for p in self.ports]
        return sorted(names)

    def cleanup_all(self) -> None:
        self.calls.append(("cleanup_all", ""))
        self.networks.clear()
        self.ports.clear()
