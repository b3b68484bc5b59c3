"""DHCP for tenant networks on one host (Neutron's DHCP agent's data plane): dnsmasq in a
namespace per network.

A network `N` served here is the namespace `unistack-dhcp-<N>` (`tenantnames.dhcp_netns`)
holding the inside end `ns-<port id[:11]>` of a veth whose host end
`tenantnames.dhcp_port_device(port)` sits in the network's bridge (made by `tenantnet`); the
inside end carries the DHCP port's MAC, MTU and addresses. dnsmasq (Debian's `dnsmasq-base`)
runs inside, as Neutron runs it: static leases only (`dhcp-range=set:subnetN,<network
address>,static,<netmask>,<lease>` per IPv4 subnet, so an unknown MAC gets no answer), a hosts
file of `MAC,host-<ip>,<ip>` per port address, an options file per subnet tag (router or an
empty router option when the subnet has none, DNS servers, classless static routes — option 121
and Microsoft's 249 — made of the host routes, 169.254.169.254 via the router when one serves
the subnet, and the default route, since a client honouring 121 ignores option 3), the MTU
forced (option 26, which clients rarely ask for), the domain, and no DNS (`port=0`).

Files live in `<state dir>/<network id>/`: `dnsmasq.conf`, `hosts`, `opts`, `leases`,
`dnsmasq.pid`, `dnsmasq.log`. Rendering is pure (`render_config`, `render_hosts`,
`render_opts`); `LinuxDhcp.ensure` observes (links, addresses, the files, the process), writes
only what differs and then: a changed `dnsmasq.conf` or a dead process restarts dnsmasq, a
changed hosts or options file sends SIGHUP (dnsmasq rereads both), nothing changed does
nothing. dnsmasq runs as `unistack.dataplane.daemons` runs a host daemon: a child of the
agent that outlives it and is adopted through its pid file (the pid counts only while its
command line names this network's config). dnsmasq drops to `nobody` when it can
still read its files there (`dnsmasq_user`), else stays root (state dirs are often 0700).
`cleanup(ids)` removes only the networks named: several clouds share a machine. `FakeDhcp`
records the same calls in memory. The agent's reconciler is `unistack.agent.dhcp`.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from unistack.dataplane import daemons, iproute, netns, tenantnames
from unistack.dataplane.routers import (
    address_add,
    parse_addresses,
    parse_macs,
    port_addresses,
)
from unistack.dataplane.tenantnet import Link, member_lines, parse_links

INTERFACE_PREFIX = "ns-"
METADATA_ROUTE = "169.254.169.254/32"
DEFAULT_LEASE = 86400
DEFAULT_DOMAIN = "openstacklocal"
DNSMASQ = "dnsmasq"


@dataclass(frozen=True, slots=True)
class DhcpSubnet:
    """An IPv4 subnet served: its options come from the Neutron subnet."""

    subnet_id: str
    cidr: str
    gateway: str | None = None
    dns_servers: tuple[str, ...] = ()
    host_routes: tuple[tuple[str, str], ...] = ()  # (destination CIDR, nexthop)
    metadata_via: str | None = None  # the router address reaching 169.254.169.254


@dataclass(frozen=True, slots=True)
class DhcpHost:
    """One static lease: a port's MAC and one of its addresses."""

    mac: str
    ip: str


@dataclass(frozen=True, slots=True)
class DhcpWiring:
    """A network's DHCP server on this host: its port (id, MAC, `ip/prefix` addresses) and
    what it hands out."""

    network_id: str
    port_id: str
    mac: str
    addresses: tuple[str, ...]
    mtu: int = 1450
    subnets: tuple[DhcpSubnet, ...] = ()
    hosts: tuple[DhcpHost, ...] = ()
    domain: str = DEFAULT_DOMAIN
    lease_seconds: int = DEFAULT_LEASE


@dataclass(frozen=True, slots=True)
class DhcpFiles:
    """Where one network's dnsmasq keeps its files."""

    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "dnsmasq.conf"

    @property
    def hosts(self) -> Path:
        return self.directory / "hosts"

    @property
    def opts(self) -> Path:
        return self.directory / "opts"

    @property
    def leases(self) -> Path:
        return self.directory / "leases"

    @property
    def pid(self) -> Path:
        return self.directory / "dnsmasq.pid"

    @property
    def log(self) -> Path:
        return self.directory / "dnsmasq.log"


class Dhcp(Protocol):
    """The DHCP servers of the networks served from one host."""

    def ensure(self, wiring: DhcpWiring) -> None: ...
    def remove(self, network_id: str) -> None: ...
    def list_networks(self) -> list[str]: ...
    def cleanup(self, network_ids: Iterable[str]) -> None: ...


# --- names -----------------------------------------------------------------------------------


def interface_name(port_id: str) -> str:
    """The inside end of the DHCP port: `ns-` + 11 characters of its id (Neutron's)."""
    return INTERFACE_PREFIX + port_id[:11]


def host_name(address: str) -> str:
    """The name a lease carries: `host-` and the address with dashes, as Neutron's."""
    return "host-" + address.replace(".", "-").replace(":", "-")


def network_id_of(netns_name: str) -> str:
    return netns_name.removeprefix(tenantnames.DHCP_NETNS_PREFIX)


# --- rendering (pure) ------------------------------------------------------------------------


def subnet_tag(index: int) -> str:
    return f"subnet{index}"


def served_subnets(wiring: DhcpWiring) -> list[DhcpSubnet]:
    """The IPv4 subnets, in a stable order (tags follow it)."""
    v4 = [s for s in wiring.subnets if ipaddress.ip_network(s.cidr, strict=False).version == 4]
    return sorted(v4, key=lambda subnet: subnet.subnet_id)


def range_line(index: int, subnet: DhcpSubnet, lease_seconds: int) -> str:
    network = ipaddress.ip_network(subnet.cidr, strict=False)
    return (
        f"dhcp-range=set:{subnet_tag(index)},{network.network_address},static,"
        f"{network.netmask},{lease_seconds}s"
    )


def render_config(wiring: DhcpWiring, files: DhcpFiles, user: str = "nobody") -> str:
    """dnsmasq's configuration: DHCP only on the port's interface, static leases."""
    lines = [
        f"# unistack DHCP for network {wiring.network_id}: generated, do not edit",
        f"user={user}",
        "port=0",
        f"interface={interface_name(wiring.port_id)}",
        "bind-interfaces",
        "except-interface=lo",
        "no-hosts",
        "no-resolv",
        "log-dhcp",
        f"log-facility={files.log}",
        f"pid-file={files.pid}",
        f"dhcp-leasefile={files.leases}",
        f"dhcp-hostsfile={files.hosts}",
        f"dhcp-optsfile={files.opts}",
        f"domain={wiring.domain}",
        f"dhcp-lease-max={max(len(wiring.hosts), 16)}",
    ]
    for index, subnet in enumerate(served_subnets(wiring)):
        lines.append(range_line(index, subnet, wiring.lease_seconds))
        lines.append(f"dhcp-option-force=tag:{subnet_tag(index)},option:mtu,{wiring.mtu}")
    return "\n".join(lines) + "\n"


def render_hosts(wiring: DhcpWiring) -> str:
    """One static lease per port address: `MAC,host-<ip>,<ip>`."""
    hosts = sorted(set(wiring.hosts), key=lambda host: (host.mac, host.ip))
    return "".join(f"{h.mac},{host_name(h.ip)},{h.ip}\n" for h in hosts if ":" not in h.ip)


def classless_routes(subnet: DhcpSubnet) -> list[tuple[str, str]]:
    """Option 121's routes: the host routes, the metadata address, then the default route."""
    routes = [(str(ipaddress.ip_network(d, strict=False)), hop) for d, hop in subnet.host_routes]
    destinations = {destination for destination, _ in routes}
    if subnet.metadata_via and METADATA_ROUTE not in destinations:
        routes.append((METADATA_ROUTE, subnet.metadata_via))
    if subnet.gateway and "0.0.0.0/0" not in destinations:
        routes.append(("0.0.0.0/0", subnet.gateway))
    return routes


def subnet_options(index: int, subnet: DhcpSubnet) -> list[str]:
    tag = f"tag:{subnet_tag(index)}"
    lines = [f"{tag},option:router,{subnet.gateway}" if subnet.gateway else f"{tag},option:router"]
    if subnet.dns_servers:
        lines.append(f"{tag},option:dns-server,{','.join(subnet.dns_servers)}")
    routes = classless_routes(subnet)
    if routes and (subnet.host_routes or subnet.metadata_via):
        pairs = ",".join(f"{destination},{hop}" for destination, hop in routes)
        lines.append(f"{tag},option:classless-static-route,{pairs}")
        lines.append(f"{tag},249,{pairs}")
    return lines


def render_opts(wiring: DhcpWiring) -> str:
    """The per-subnet options, one `tag:subnetN,option:…` line each."""
    lines = [
        line
        for index, subnet in enumerate(served_subnets(wiring))
        for line in subnet_options(index, subnet)
    ]
    return "".join(f"{line}\n" for line in lines)


def host_lines(wiring: DhcpWiring, links: Mapping[str, Link]) -> list[str]:
    """Create the veth (inside end straight into the namespace) unless it is there; enslave."""
    name = tenantnames.dhcp_port_device(wiring.port_id)
    link = links.get(name)
    lines: list[str] = []
    if link is not None and link.kind != "veth":
        lines.append(f"link delete {name}")
        link = None
    if link is None:
        inside, namespace = (
            interface_name(wiring.port_id),
            tenantnames.dhcp_netns(wiring.network_id),
        )
        lines.append(
            f"link add {name} mtu {wiring.mtu} type veth peer name {inside}"
            f" address {wiring.mac} mtu {wiring.mtu} netns {namespace}"
        )
    bridge = tenantnames.bridge_name(wiring.network_id)
    return lines + member_lines(name, bridge, wiring.mtu, link)


def inside_lines(
    wiring: DhcpWiring,
    links: Mapping[str, Link],
    macs: Mapping[str, str],
    addresses: Mapping[str, set[str]],
) -> list[str]:
    """Inside the namespace: other ports out, lo and the port up with MAC, MTU, addresses."""
    name = interface_name(wiring.port_id)
    lines = [
        f"link delete {other}"
        for other in sorted(links)
        if other.startswith(INTERFACE_PREFIX) and other != name
    ]
    lo = links.get("lo")
    if lo is None or not lo.up:
        lines.append("link set lo up")
    link = links.get(name)
    if link is not None and macs.get(name, wiring.mac) != wiring.mac:
        lines.append(f"link set {name} address {wiring.mac}")
    lines += member_lines(name, "", wiring.mtu, link)
    have, want = addresses.get(name, set()), port_addresses(wiring.mac, wiring.addresses)
    lines += [f"address del {a} dev {name}" for a in sorted(have - want)]
    lines += [address_add(a, name) for a in sorted(want - have)]
    return lines


@dataclass(frozen=True, slots=True)
class FileChanges:
    """Which of dnsmasq's files a new rendering changes."""

    config: bool
    reloadable: bool  # the hosts or options file


def file_changes(current: Mapping[str, str | None], wanted: Mapping[str, str]) -> FileChanges:
    """Compare rendered files (by role: config, hosts, opts) with what is on disk."""
    return FileChanges(
        config=current.get("config") != wanted["config"],
        reloadable=any(current.get(role) != wanted[role] for role in ("hosts", "opts")),
    )


def process_action(running: bool, changes: FileChanges) -> str | None:
    """`start` (not running), `restart` (config changed), `reload` (SIGHUP) or nothing."""
    if not running:
        return "start"
    if changes.config:
        return "restart"
    if changes.reloadable:
        return "reload"
    return None


def dnsmasq_user(modes: Iterable[int]) -> str:
    """`nobody` (dnsmasq's own default) when it can reach its files — every directory above
    them searchable by others (`modes`) — else `root`: dnsmasq rereads the hosts and options
    files on SIGHUP after dropping privileges."""
    return "nobody" if all(mode & 0o001 for mode in modes) else "root"


# --- acting ----------------------------------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _write(path: Path, text: str) -> None:
    """Atomically, world-readable: dnsmasq rereads it as `nobody` after SIGHUP."""
    partial = path.with_suffix(path.suffix + ".new")
    partial.write_text(text)
    partial.chmod(0o644)
    os.replace(partial, path)


def _ancestor_modes(directory: Path) -> list[int]:
    return [path.stat().st_mode for path in (directory, *directory.parents)]


def dnsmasq_pid(files: DhcpFiles) -> int | None:
    """The running dnsmasq of these files, if any (its command line names their config)."""
    return daemons.running_pid(files.pid, f"--conf-file={files.config}")


@dataclass(slots=True)
class LinuxDhcp:
    """dnsmasq per network, state under `state_dir`; host ends in `host_netns` (None: host)."""

    state_dir: Path
    host_netns: str | None = None
    namespaces: netns.Namespaces = field(default_factory=netns.LinuxNamespaces)
    binary: str = DNSMASQ
    deaf: set[str] = field(default_factory=set)  # networks whose port ignores RAs

    def files(self, network_id: str) -> DhcpFiles:
        tenantnames.dhcp_netns(network_id)  # validates the id before it names a directory
        return DhcpFiles(self.state_dir / network_id)

    def ensure(self, wiring: DhcpWiring) -> None:
        """Namespace, veth, addresses, files and a running dnsmasq as `wiring` says."""
        namespace = tenantnames.dhcp_netns(wiring.network_id)
        if not self.namespaces.exists(namespace):
            self.namespaces.create(namespace)
        host_links = parse_links(iproute.ip_json("-d", "link", "show", netns=self.host_netns))
        iproute.ip_batch(host_lines(wiring, host_links), self.host_netns)
        entries = iproute.ip_json("-d", "link", "show", netns=namespace)
        addresses = parse_addresses(iproute.ip_json("addr", "show", netns=namespace))
        lines = inside_lines(wiring, parse_links(entries), parse_macs(entries), addresses)
        iproute.ip_batch(lines, namespace)
        if wiring.network_id not in self.deaf:  # the port's addresses are the port's own only
            ignored = ("all", "default", interface_name(wiring.port_id))
            iproute.sysctl(*(f"net.ipv6.conf.{i}.accept_ra=0" for i in ignored), netns=namespace)
            self.deaf.add(wiring.network_id)
        self._ensure_process(wiring, namespace)

    def _ensure_process(self, wiring: DhcpWiring, namespace: str) -> None:
        files = self.files(wiring.network_id)
        files.directory.mkdir(parents=True, exist_ok=True)
        files.directory.chmod(0o755)
        wanted = {
            "config": render_config(wiring, files, dnsmasq_user(_ancestor_modes(files.directory))),
            "hosts": render_hosts(wiring),
            "opts": render_opts(wiring),
        }
        current = {role: _read(getattr(files, role)) for role in wanted}
        pid = dnsmasq_pid(files)
        action = process_action(pid is not None, file_changes(current, wanted))
        for role, text in wanted.items():
            if current[role] != text:
                _write(getattr(files, role), text)
        if action == "reload" and pid is not None:
            os.kill(pid, signal.SIGHUP)
        elif action is not None:
            if pid is not None:
                daemons.stop(pid)
            self._start(files, namespace)

    def _start(self, files: DhcpFiles, namespace: str) -> None:
        """dnsmasq in the foreground of its own session (`daemons.start`), ready once it wrote
        its pid. It enters only the network namespace (`nsenter --net`, which execs it):
        `ip netns exec` would give it a mount namespace of its own, pinning every mount of
        the moment — another cloud's volume pool among them — for as long as it runs."""
        argv = [
            "nsenter", f"--net=/run/netns/{namespace}", self.binary, "--keep-in-foreground",
            f"--conf-file={files.config}",
        ]  # fmt: skip
        errors = files.directory / "dnsmasq.err"
        try:
            daemons.start(argv, errors, lambda pid: dnsmasq_pid(files) == pid)
        except daemons.StartError as error:
            raise iproute.CommandError(argv, -1, str(error)) from None

    def remove(self, network_id: str) -> None:
        """Stop dnsmasq, delete the veth (its host end at once), the namespace and the files."""
        files = self.files(network_id)
        pid = dnsmasq_pid(files)
        if pid is not None:
            daemons.stop(pid)
        namespace = tenantnames.dhcp_netns(network_id)
        if self.namespaces.exists(namespace):
            links = parse_links(iproute.ip_json("link", "show", netns=namespace))
            inside = [f"link delete {n}" for n in links if n.startswith(INTERFACE_PREFIX)]
            iproute.ip_batch(inside, namespace)
            self.namespaces.delete(namespace)
        self.deaf.discard(network_id)
        shutil.rmtree(files.directory, ignore_errors=True)

    def list_networks(self) -> list[str]:
        """Ids of the DHCP namespaces on this machine (every cloud's)."""
        prefix = tenantnames.DHCP_NETNS_PREFIX
        return [network_id_of(name) for name in self.namespaces.list_with_prefix(prefix)]

    def cleanup(self, network_ids: Iterable[str]) -> None:
        """Remove the DHCP servers of the networks named (never another cloud's)."""
        for network_id in network_ids:
            self.remove(network_id)


# --- fake ------------------------------------------------------------------------------------


@dataclass
class FakeDhcp:
    """In-memory DHCP servers for callers' tests; `calls` lists every operation in order."""

    served: dict[str, DhcpWiring] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def ensure(self, wiring: DhcpWiring) -> None:
        self.calls.append(("ensure", wiring.network_id))
        self.served[wiring.network_id] = wiring

    def remove(self, network_id: str) -> None:
        self.calls.append(("remove", network_id))
        self.served.pop(network_id, None)

    def list_networks(self) -> list[str]:
        return sorted(self.served)

    def cleanup(self, network_ids: Iterable[str]) -> None:
        for network_id in list(network_ids):
            if network_id in self.served:
                self.remove(network_id)
