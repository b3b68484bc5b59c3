"""Security groups and port security for the tenant ports of one host, as nftables tables.

`render_table(ports)` (pure) turns every port's filter into ONE bridge-family table, applied
atomically through `nftables.Nftables`. Its `forward` chain (and `input`, for frames to the
host) makes one lookup per direction: `iifname vmap @egress-ports` jumps to the sending port's
`egress-<device>` chain, which `return`s when the frame may leave, then `oifname vmap
@ingress-ports` jumps to the receiving port's `ingress-<device>` chain. Ports without port
security have no entry and pass untouched. Semantics follow Neutron's iptables firewall:

- egress: first the shared chain `egress-spoof` looks the input device up with the frame's
  source MAC (`port-macs`), ARP sender or IP source (`port-sources-ip`, `port-sources-ip6`:
  fixed IPs and allowed address pairs, IP or CIDR, each with its MAC, plus the MAC's IPv6
  link-local address) and drops a mismatch, and anything that is not ARP, IPv4 or IPv6; a DHCP
  request from 0.0.0.0 and DAD/MLD from :: pass. Then DHCP/DHCPv6 server replies and router
  advertisements from an instance are dropped; ARP, DHCP(v6) requests and neighbour discovery
  leave; established/related returns, invalid drops, NEW must match an egress rule;
- ingress: ARP, DHCP(v6) replies and ICMPv6 neighbour discovery pass; established/related
  accepted, invalid dropped, NEW must match an ingress rule; everything else is dropped.

Everything per port but the rules lives in named sets keyed by device (one kernel set each
rather than anonymous sets per port: 100 ports load 3x faster). A remote group is a named set of
its members' addresses, shared by every rule that resolves to the same members.

Conntrack in a bridge table needs `nf_conntrack_bridge`, which this kernel lacks
(CONFIG_NF_CONNTRACK_BRIDGE unset, no modules: `ct state` in a bridge table is refused with
EPROTO). The real alternative is br_netfilter (built in): with `nf_call_iptables` on the bridge
(`tenantnet` sets it), bridged IPv4/IPv6 frames go through the inet hooks, where conntrack runs.
Inet chains only see the *bridge* as iif/oif, never the port (measured; nft has no physdev
match), so they cannot filter per port. So a second, constant table `render_conntrack_table()`
(`inet`, prerouting after conntrack) copies the conntrack state of packets arriving on a tenant
bridge into two bits of the packet mark (`ESTABLISHED_BIT`, `INVALID_BIT`; the service proxy uses
0x4000), and the bridge table, which runs later at bridge forward, reads them. Conntrack zones
are not separated per network: overlapping tenant addresses on one host share zone 0.

`SecurityGroupFirewall` applies both tables. `tenantnames` names the port devices.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from unistack.dataplane import nftables

TABLE = "unistack-sg"
CONNTRACK_TABLE = "unistack-sg-ct"
ESTABLISHED_BIT = 0x00200000
INVALID_BIT = 0x00400000
BRIDGE_PATTERN = "unistackn*"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_DEVICE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_GROUP = re.compile(r"[^A-Za-z0-9]")
_FAMILY = {"IPv4": "ip", "IPv6": "ip6"}
# Neutron's protocol names (and the numbers it also accepts) → IP protocol number
PROTOCOLS = {
    "tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132, "dccp": 33,
    "udplite": 136, "gre": 47, "esp": 50, "ah": 51, "igmp": 2, "vrrp": 112, "ipip": 4,
    "ipv6-encap": 41, "ospf": 89, "pgm": 113, "rsvp": 46, "egp": 8, "ipv6-route": 43,
    "ipv6-frag": 44, "ipv6-nonxt": 59, "ipv6-opts": 60,
}  # fmt: skip
_NFT_PROTO = {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp", 132: "sctp"}
_PORTED = {6, 17, 132, 33, 136}  # protocols whose rules may carry a port range
_OWN_ND = ("nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-solicit")
_MLD = ("mld-listener-query", "mld-listener-report", "mld2-listener-report")


@dataclass(frozen=True, slots=True)
class SecurityRule:
    """One resolved rule: a remote group arrives as its members' addresses (`remote_ips`)."""

    direction: str
    ethertype: str = "IPv4"
    protocol: str | None = None
    port_range_min: int | None = None
    port_range_max: int | None = None
    remote_ip_prefix: str | None = None
    remote_group_id: str | None = None
    remote_ips: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AddressPair:
    """An allowed address pair: an IP or CIDR, sent with `mac` (None: the port's MAC)."""

    ip_address: str
    mac_address: str | None = None


@dataclass(frozen=True, slots=True)
class PortFilter:
    """What the firewall needs of one port on this host."""

    device: str
    mac: str
    fixed_ips: tuple[str, ...] = ()
    allowed_address_pairs: tuple[AddressPair, ...] = ()
    port_security_enabled: bool = True
    rules: tuple[SecurityRule, ...] = ()


# --- addresses -------------------------------------------------------------------------------


def _mac(value: str) -> str:
    mac = value.lower()
    if not _MAC.match(mac):
        raise ValueError(f"invalid MAC address {value!r}")
    return mac


def link_local(mac: str) -> ipaddress.IPv6Address:
    """The EUI-64 IPv6 link-local address of `mac` (Neutron allows it as a source)."""
    octets = bytes.fromhex(_mac(mac).replace(":", ""))
    eui = bytes([octets[0] ^ 0x02]) + octets[1:3] + b"\xff\xfe" + octets[3:]
    return ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + eui)


def source_pairs(port: PortFilter) -> dict[str, list[IPNetwork]]:
    """Allowed (MAC → source networks) of a port, each MAC's networks collapsed."""
    own = _mac(port.mac)
    pairs: dict[str, list[IPNetwork]] = {own: []}
    for address in port.fixed_ips:
        pairs[own].append(ipaddress.ip_network(address))
    for pair in port.allowed_address_pairs:
        mac = _mac(pair.mac_address) if pair.mac_address else own
        pairs.setdefault(mac, []).append(ipaddress.ip_network(pair.ip_address, strict=False))
    for mac, networks in pairs.items():
        networks.append(ipaddress.ip_network(link_local(mac)))
    return {mac: collapse(networks) for mac, networks in pairs.items()}


def collapse(networks: Iterable[IPNetwork]) -> list[IPNetwork]:
    """Merged, sorted networks (v4 first): nft interval sets refuse overlapping elements."""
    networks = list(networks)
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def element(network: IPNetwork) -> str:
    """A set element: a bare address for a host network, CIDR otherwise."""
    host = network.prefixlen == network.max_prefixlen
    return str(network.network_address) if host else str(network)


def source_elements(device: str, pairs: Mapping[str, list[IPNetwork]], version: int) -> list[str]:
    """`"device" . mac . address` elements of one IP version, for the port-sources sets."""
    return [
        f'"{device}" . {mac} . {element(net)}'
        for mac, nets in pairs.items()
        for net in nets
        if net.version == version
    ]


# --- rules -----------------------------------------------------------------------------------


class RemoteSet(NamedTuple):
    """A named set of a remote group's addresses of one IP version."""

    name: str
    kind: str
    elements: tuple[str, ...]


RemoteKey = tuple[str, str, tuple[str, ...]]


def protocol_number(rule: SecurityRule) -> int | None:
    """The IP protocol of a rule (None: any); `icmp` on IPv6 means ICMPv6, as in Neutron."""
    name = (rule.protocol or "").lower()
    if name in ("", "any"):
        return None
    number = int(name) if name.isdigit() else PROTOCOLS.get(name)
    if number is None or not 0 <= number <= 255:
        raise ValueError(f"unknown protocol {rule.protocol!r}")
    if number == 1 and rule.ethertype == "IPv6":
        return 58
    if number == 58 and rule.ethertype == "IPv4":
        raise ValueError("protocol icmpv6 with ethertype IPv4")
    return number


def port_match(rule: SecurityRule, number: int) -> str:
    """Ports for TCP-like protocols, ICMP type (min) and code (max) for ICMP, else nothing."""
    low, high = rule.port_range_min, rule.port_range_max
    if number in (1, 58):
        icmp = "icmp" if number == 1 else "icmpv6"
        parts = [f"{icmp} type {low}"] if low is not None else []
        parts += [f"{icmp} code {high}"] if low is not None and high is not None else []
        return " ".join(parts)
    if number not in _PORTED or (low in (None, 1) and high in (None, 65535)):
        return ""
    low = low if low is not None else 1
    high = high if high is not None else 65535
    return f"th dport {low}" if low == high else f"th dport {low}-{high}"


def family_of(rule: SecurityRule) -> str:
    """`ip` or `ip6`, from the rule's ethertype."""
    family = _FAMILY.get(rule.ethertype)
    if family is None:
        raise ValueError(f"unknown ethertype {rule.ethertype!r}")
    return family


def remote_key(rule: SecurityRule) -> RemoteKey:
    """What decides a remote group's set: IP version, group, members."""
    return (family_of(rule), rule.remote_group_id or "", rule.remote_ips)


def remote_set(key: RemoteKey) -> RemoteSet | None:
    """The set for a remote group's members of the key's IP version; None when there are none.

    Its name is the group id and a digest of the members: ports whose rules resolve the same
    group to the same members share one set.
    """
    family, group, addresses = key
    version = 4 if family == "ip" else 6
    networks = [ipaddress.ip_network(address, strict=False) for address in addresses]
    elements = tuple(element(n) for n in collapse(n for n in networks if n.version == version))
    if not elements:
        return None
    digest = hashlib.sha256(f"{family}|{','.join(elements)}".encode()).hexdigest()[:8]
    name = f"remote-{family}-{_GROUP.sub('', group)[:8]}-{digest}"
    return RemoteSet(name, "ipv4_addr" if version == 4 else "ipv6_addr", elements)


def remote_match(
    rule: SecurityRule, family: str, sets: Mapping[RemoteKey, RemoteSet | None]
) -> str | None:
    """Match on the remote end; None when nothing can match (an empty remote group)."""
    side = "saddr" if rule.direction == "ingress" else "daddr"
    if rule.remote_group_id is not None:
        key = remote_key(rule)
        found = sets[key] if key in sets else remote_set(key)
        return None if found is None else f"{family} {side} @{found.name}"
    if rule.remote_ip_prefix:
        network = ipaddress.ip_network(rule.remote_ip_prefix, strict=False)
        if network.version != (4 if family == "ip" else 6):
            raise ValueError(f"{rule.remote_ip_prefix} is not an {rule.ethertype} prefix")
        return "" if network.prefixlen == 0 else f"{family} {side} {element(network)}"
    return ""


def rule_line(
    rule: SecurityRule, verdict: str, sets: Mapping[RemoteKey, RemoteSet | None] | None = None
) -> str | None:
    """One nft rule for a security group rule, or None when it cannot match anything."""
    family = family_of(rule)
    remote = remote_match(rule, family, sets or {})
    if remote is None:
        return None
    number = protocol_number(rule)
    parts = [f"meta protocol {family}", remote]
    if number is not None:
        parts += [f"meta l4proto {_NFT_PROTO.get(number, number)}", port_match(rule, number)]
    return " ".join(part for part in [*parts, verdict] if part)


def rule_lines(
    rules: Iterable[SecurityRule],
    direction: str,
    verdict: str,
    sets: Mapping[RemoteKey, RemoteSet | None],
) -> list[str]:
    """The distinct nft rules of one direction, in the order given."""
    lines = [rule_line(rule, verdict, sets) for rule in rules if rule.direction == direction]
    return list(dict.fromkeys(line for line in lines if line is not None))


def remote_sets(ports: Sequence[PortFilter]) -> dict[RemoteKey, RemoteSet | None]:
    """Every remote group the rules use, resolved once."""
    keys = {remote_key(r) for p in ports for r in p.rules if r.remote_group_id is not None}
    return {key: remote_set(key) for key in keys}


# --- chains ----------------------------------------------------------------------------------


def _state_lines(accept: str) -> list[str]:
    return [
        f"meta mark & {INVALID_BIT:#010x} != 0 drop",
        f"meta mark & {ESTABLISHED_BIT:#010x} != 0 {accept}",
    ]


def spoof_chain() -> list[str]:
    """Shared by every port's egress chain: drops what its sender may not send, else returns.

    Source MAC, ARP sender and IPv4/IPv6 source are looked up with the input device in the
    `port-*` sets; a DHCP request from 0.0.0.0 and DAD/MLD from :: are let through.
    """
    return [
        "iifname . ether saddr != @port-macs drop",
        "ether type != @ethertypes drop",
        "iifname . arp saddr ether . arp saddr ip @port-sources-ip return",
        "ether type arp drop",
        "ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 return",
        "iifname . ether saddr . ip saddr != @port-sources-ip drop",
        "ip6 saddr :: icmpv6 type @unspecified-source-icmpv6 return",
        "iifname . ether saddr . ip6 saddr != @port-sources-ip6 drop",
    ]


def egress_chain(port: PortFilter, sets: Mapping[RemoteKey, RemoteSet | None]) -> list[str]:
    """What may leave the port: `return` lets the frame go on to the receiver's checks."""
    return [
        "jump egress-spoof",
        "meta protocol ip udp sport 67 udp dport 68 drop",
        "meta protocol ip6 udp sport 547 udp dport 546 drop",
        "icmpv6 type nd-router-advert drop",
        "ether type arp return",
        "meta protocol ip udp sport 68 udp dport 67 return",
        "meta protocol ip6 udp sport 546 udp dport 547 return",
        "icmpv6 type @egress-icmpv6 return",
        *_state_lines("return"),
        *rule_lines(port.rules, "egress", "return", sets),
        "drop",
    ]


def ingress_chain(port: PortFilter, sets: Mapping[RemoteKey, RemoteSet | None]) -> list[str]:
    """What may reach the port."""
    return [
        "ether type != @ethertypes drop",
        "ether type arp accept",
        "meta protocol ip udp sport 67 udp dport 68 accept",
        "meta protocol ip6 udp sport 547 udp dport 546 accept",
        "icmpv6 type @ingress-icmpv6 accept",
        *_state_lines("accept"),
        *rule_lines(port.rules, "ingress", "accept", sets),
        "drop",
    ]


def chain_name(direction: str, device: str) -> str:
    """`egress-<device>` / `ingress-<device>`."""
    if not _DEVICE.match(device):
        raise ValueError(f"invalid device name {device!r}")
    return f"{direction}-{device}"


# --- tables ----------------------------------------------------------------------------------


def _block(header: str, body: Sequence[str], indent: str = "\t") -> list[str]:
    return [f"{indent}{header} {{", *(f"{indent}\t{line}" for line in body), f"{indent}}}"]


def _set(name: str, kind: str, elements: Sequence[str], interval: bool = False) -> list[str]:
    body = [f"type {kind}", *(["flags interval"] if interval else [])]
    body += [f"elements = {{ {', '.join(elements)} }}"] if elements else []
    return _block(f"set {name}", body)


def _vmap(name: str, direction: str, ports: Sequence[PortFilter]) -> list[str]:
    entries = [f'"{p.device}" : jump {chain_name(direction, p.device)}' for p in ports]
    body = ["type ifname : verdict"]
    body += [f"elements = {{ {', '.join(entries)} }}"] if entries else []
    return _block(f"map {name}", body)


def constant_sets() -> list[str]:
    """Ethertypes and ICMPv6 types the chains test against."""
    return [
        *_set("ethertypes", "ether_type", ["arp", "ip", "ip6"]),
        *_set("unspecified-source-icmpv6", "icmpv6_type", ["nd-neighbor-solicit", *_MLD]),
        *_set("egress-icmpv6", "icmpv6_type", [*_OWN_ND, *_MLD]),
        *_set("ingress-icmpv6", "icmpv6_type", [*_OWN_ND, "nd-router-advert", *_MLD]),
    ]


def port_sets(ports: Sequence[PortFilter]) -> list[str]:
    """Which MACs and (MAC, source) pairs each port's device may send."""
    macs: list[str] = []
    v4: list[str] = []
    v6: list[str] = []
    for port in ports:
        chain_name("egress", port.device)  # validates the device name
        pairs = source_pairs(port)
        macs += [f'"{port.device}" . {mac}' for mac in pairs]
        v4 += source_elements(port.device, pairs, 4)
        v6 += source_elements(port.device, pairs, 6)
    return [
        *_set("port-macs", "ifname . ether_addr", macs),
        *_set("port-sources-ip", "ifname . ether_addr . ipv4_addr", v4, interval=True),
        *_set("port-sources-ip6", "ifname . ether_addr . ipv6_addr", v6, interval=True),
    ]


def render_table(ports: Sequence[PortFilter], table: str = TABLE) -> str:
    """The whole bridge table for the ports of this host (pure)."""
    filtered = sorted((p for p in ports if p.port_security_enabled), key=lambda p: p.device)
    sets = remote_sets(filtered)
    lines = [f"table bridge {table} {{", *constant_sets(), *port_sets(filtered)]
    for found in sorted({s for s in sets.values() if s is not None}):
        lines += _set(found.name, found.kind, found.elements, interval=True)
    lines += _vmap("egress-ports", "egress", filtered) + _vmap("ingress-ports", "ingress", filtered)
    hook = "type filter hook {} priority filter; policy accept;"
    forward = [hook.format("forward"), "iifname vmap @egress-ports", "oifname vmap @ingress-ports"]
    lines += _block("chain forward", forward)
    lines += _block("chain input", [hook.format("input"), "iifname vmap @egress-ports"])
    lines += _block("chain egress-spoof", spoof_chain())
    for port in filtered:
        lines += _block(f"chain {chain_name('egress', port.device)}", egress_chain(port, sets))
        lines += _block(f"chain {chain_name('ingress', port.device)}", ingress_chain(port, sets))
    return "\n".join([*lines, "}"]) + "\n"


def render_conntrack_table(table: str = CONNTRACK_TABLE) -> str:
    """The inet table that hands conntrack's verdict on bridged packets to the bridge table."""
    on_bridge, mark = f'iifname "{BRIDGE_PATTERN}"', "meta mark set meta mark"
    keep = ~(ESTABLISHED_BIT | INVALID_BIT) & 0xFFFFFFFF
    body = [
        "type filter hook prerouting priority mangle; policy accept;",
        f"{on_bridge} {mark} & {keep:#010x}",
        f"{on_bridge} ct state established,related {mark} | {ESTABLISHED_BIT:#010x}",
        f"{on_bridge} ct state invalid {mark} | {INVALID_BIT:#010x}",
    ]
    return "\n".join([f"table inet {table} {{", *_block("chain prerouting", body), "}"]) + "\n"


@dataclass(frozen=True, slots=True)
class SecurityGroupFirewall:
    """Applies the two tables through an `Nftables` driver (real, or fake in tests)."""

    nft: nftables.Nftables
    table: str = TABLE
    conntrack_table: str = CONNTRACK_TABLE

    async def apply(self, ports: Sequence[PortFilter]) -> None:
        """Make the host's filters exactly `ports` (each table swapped atomically)."""
        ct = render_conntrack_table(self.conntrack_table)
        await self.nft.apply_table("inet", self.conntrack_table, ct)
        await self.nft.apply_table("bridge", self.table, render_table(ports, self.table))

    async def remove(self) -> None:
        """Remove both tables (`unistack down`); absent tables are fine."""
        await self.nft.delete_table("bridge", self.table)
        await self.nft.delete_table("inet", self.conntrack_table)
