"""A pod's link to the node: a Linux bridge on the host and a veth pair into the pod netns.

The bridge (e.g. ``unistack0``) carries the pods' gateway address; each pod gets a veth whose
host end, ``unistack`` + 7 hex chars of a hash of container id and ifname, is a bridge port in
hairpin mode (so a pod reaching itself through a Service DNAT gets its packets back), and whose
other end is created directly inside the pod netns under the CNI ifname, with a MAC derived from
the pod's IPv4 address.

``enable_forwarding`` sets ``net.ipv4.ip_forward=1`` and ``net.bridge.bridge-nf-call-iptables=1``:
the second sends bridged IPv4 through the netfilter ip hooks, so Service DNAT also applies when
both pods sit on the same bridge.

Each step is one ``ip -batch -`` exec: the ``*_lines`` functions build the batch (pure, unit
tested); ``LinuxPodLinks`` runs it. Used by the CNI plugin.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from unistack.dataplane import iproute

HOST_VETH_PREFIX = "unistack"
SYSCTLS = {
    "/proc/sys/net/ipv4/ip_forward": "1",
    "/proc/sys/net/bridge/bridge-nf-call-iptables": "1",
}


class BridgeSpec(NamedTuple):
    """The node bridge: its name, the gateway addresses it holds (CIDR), its MTU."""

    name: str
    addresses: tuple[str, ...] = ()
    mtu: int | None = None


class Route(NamedTuple):
    """A route inside the pod: destination CIDR and an optional next hop."""

    dst: str
    gw: str | None = None


class VethSpec(NamedTuple):
    """One pod interface: both veth ends and what the pod side gets configured with."""

    host_name: str
    ifname: str
    netns: str
    mac: str
    addresses: tuple[str, ...] = ()
    routes: tuple[Route, ...] = ()
    mtu: int | None = None
    hairpin: bool = True


class PodView(NamedTuple):
    """What a pod's plumbing looks like now (for CNI CHECK)."""

    addresses: tuple[str, ...]
    routes: tuple[Route, ...]
    host_master: str | None


class PodLinks(Protocol):
    """Plumbs pods into the node bridge."""

    def attach(self, bridge: BridgeSpec, veth: VethSpec) -> None: ...
    def configure(self, veth: VethSpec) -> None: ...
    def detach(self, host_name: str) -> bool: ...
    def mac_of(self, name: str) -> str: ...
    def inspect(self, netns: str, ifname: str, host_name: str) -> PodView: ...


def host_veth_name(container_id: str, ifname: str) -> str:
    """``unistack`` + 7 hex chars: 15 chars, the kernel's limit, stable per container+ifname."""
    digest = hashlib.sha256(f"{container_id}{ifname}".encode()).hexdigest()
    return HOST_VETH_PREFIX + digest[:7]


def mac_for(address: str | None) -> str:
    """A locally administered MAC ``0a:58:<IPv4 octets>``, or a random one without IPv4."""
    octets = [int(part) for part in address.split(".")] if address else list(os.urandom(4))
    return "0a:58:" + ":".join(f"{octet:02x}" for octet in octets)


def _mtu(mtu: int | None) -> list[str]:
    return ["mtu", str(mtu)] if mtu else []


def bridge_lines(bridge: BridgeSpec, exists: bool) -> list[str]:
    """Create the bridge if it is missing, give it its addresses and bring it up."""
    lines = (
        [] if exists else [" ".join(["link add", bridge.name, *_mtu(bridge.mtu), "type bridge"])]
    )
    lines += [f"address replace {cidr} dev {bridge.name}" for cidr in bridge.addresses]
    lines.append(f"link set {bridge.name} up")
    return lines


def veth_lines(bridge: str, veth: VethSpec) -> list[str]:
    """Create the veth pair with its pod end inside the netns and plug the host end in."""
    mtu = _mtu(veth.mtu)
    peer = ["peer name", veth.ifname, "address", veth.mac, *mtu, "netns", veth.netns]
    lines = [" ".join(["link add", veth.host_name, *mtu, "type veth", *peer])]
    lines.append(f"link set {veth.host_name} master {bridge}")
    if veth.hairpin:
        lines.append(f"link set dev {veth.host_name} type bridge_slave hairpin on")
    lines.append(f"link set {veth.host_name} up")
    return lines


def pod_lines(veth: VethSpec) -> list[str]:
    """Inside the pod netns: loopback up, the addresses, the interface up, the routes."""
    lines = ["link set lo up"]
    lines += [f"address add {cidr} dev {veth.ifname}" for cidr in veth.addresses]
    lines.append(f"link set {veth.ifname} up")
    for route in veth.routes:
        via = f" via {route.gw}" if route.gw else ""
        lines.append(f"route replace {route.dst}{via} dev {veth.ifname}")
    return lines


def enable_forwarding() -> None:
    """Turn on IPv4 forwarding and bridge netfilter (writes only what is not set yet)."""
    for path, value in SYSCTLS.items():
        with open(path, "r+") as f:
            if f.read().strip() != value:
                f.seek(0)
                f.write(value)


def link_exists(name: str) -> bool:
    """Whether the host has a link called ``name``."""
    return os.path.exists(f"/sys/class/net/{name}")


class LinuxPodLinks:
    """PodLinks with iproute2."""

    def attach(self, bridge: BridgeSpec, veth: VethSpec) -> None:
        """Ensure the bridge, then create and plug the veth (one exec on the host)."""
        lines = bridge_lines(bridge, link_exists(bridge.name)) + veth_lines(bridge.name, veth)
        iproute.ip_batch(lines)

    def configure(self, veth: VethSpec) -> None:
        """Address and route the pod end (one exec in the pod netns)."""
        iproute.ip_batch(pod_lines(veth), netns=veth.netns)

    def detach(self, host_name: str) -> bool:
        """Delete the veth (both ends go); False if it was not there."""
        if not link_exists(host_name):
            return False
        try:
            iproute.ip("link", "delete", host_name)
        except iproute.CommandError:
            if link_exists(host_name):
                raise
            return False
        return True

    def mac_of(self, name: str) -> str:
        """The MAC address of host link ``name``."""
        with open(f"/sys/class/net/{name}/address") as f:
            return f.read().strip()

    def inspect(self, netns: str, ifname: str, host_name: str) -> PodView:
        """The pod interface's addresses and routes, and the bridge the host end is in."""
        master = os.path.realpath(f"/sys/class/net/{host_name}/master")
        return PodView(
            tuple(pod_addresses(netns, ifname)),
            tuple(pod_routes(netns)),
            os.path.basename(master) if os.path.exists(master) else None,
        )


def delete_bridge(name: str) -> None:
    """Remove a bridge (tests and node teardown); a missing one is fine."""
    if link_exists(name):
        iproute.ip("link", "delete", name)


def pod_addresses(netns: str, ifname: str) -> list[str]:
    """The global addresses (CIDR) of ``ifname`` inside ``netns``; [] if it is missing."""
    try:
        links = iproute.ip_json("address", "show", "dev", ifname, netns=netns)
    except iproute.CommandError:
        return []
    return [
        f"{info['local']}/{info['prefixlen']}"
        for link in links
        for info in link.get("addr_info", [])
        if info.get("scope") == "global"
    ]


def pod_routes(netns: str, families: Sequence[str] = ("-4", "-6")) -> list[Route]:
    """The main-table routes inside ``netns`` (default shown as 0.0.0.0/0 or ::/0)."""
    found: list[Route] = []
    for family in families:
        for route in iproute.ip_json(family, "route", "show", netns=netns):
            dst = route.get("dst", "")
            if dst == "default":
                dst = "0.0.0.0/0" if family == "-4" else "::/0"
            found.append(Route(dst, route.get("gateway")))
    return found
