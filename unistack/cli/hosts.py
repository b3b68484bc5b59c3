"""Several hosts on one machine (`unistack up --hosts N`): each extra host is a network
namespace with its own agent, so it is a Node and a hypervisor of its own, and scheduling
across hosts and VXLAN between them are real.

Host 1 is the machine. Host i (2..N) is the namespace `unistack-host-<bridge>-<i>`, joined to
the machine by a veth (machine end `unistacku` + 6 hex, namespace end `eth0`) in the underlay
bridge `<bridge>u` that holds the underlay's first address (10.254.0.1/24 unless
`--hosts-cidr` says otherwise); host i takes the underlay's i-th address. With extra hosts the
machine's own agent announces the underlay address as its InternalIP too, so every agent
reaches every other directly (node routes and VXLAN need on-link neighbours), and the API
server and the registry listen on it (the serving certificate names it). The machine is the
external networks' uplink: only its agent holds their gateway addresses, and the extra hosts'
routers reach them over VXLAN on the underlay (jumbo frames, `UNDERLAY_MTU`), so floating IPs
answer from the machine whichever host runs their router. Each extra agent keeps
its state in `DIR/hosts/<i>/agent`, is Node `<node>-<i>`, and runs its pods in the next /24s
after the machine's pod CIDR.

An `up` with fewer hosts than the last one deletes the Nodes of the hosts it no longer runs
(`retired_nodes`), so their pods are removed by the pod garbage collector
(`unistack.kube.podgc`) and replaced on the hosts that run, instead of staying Terminating on
an unreachable Node for ever.

`setup` is idempotent (run by `up` before the supervisor starts the agents); `teardown`
removes namespaces, veths and the bridge (run by `down` after each extra agent cleaned up
inside its namespace).
"""

from __future__ import annotations

import hashlib
import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

from unistack.cli.hostoptions import HostOptions
from unistack.cli.statedir import StateDir

NETNS_DIR = Path("/run/netns")
# The underlay carries VXLAN: the public network's 1500-byte frames need 1550 (jumbo frames,
# as a real underlay for full-size overlays has)
UNDERLAY_MTU = 9000


@dataclass(frozen=True)
class ExtraHost:
    index: int
    netns: str
    address: str  # on the underlay
    veth: str  # the machine's end, in the underlay bridge
    pod_cidr: str
    node_name: str

    def root(self, state: StateDir) -> Path:
        return state.root / "hosts" / str(self.index) / "agent"


def enter(host: ExtraHost) -> tuple[str, ...]:
    """The argv prefix that runs a command on `host`: in its network namespace only. (`ip
    netns exec` would also remount /sys, hiding the cgroup hierarchies runc needs.)"""
    return ("nsenter", f"--net={NETNS_DIR / host.netns}", "--")


def underlay_bridge(options: HostOptions) -> str:
    return f"{options.bridge[:14]}u"


def underlay_gateway(options: HostOptions) -> str:
    return str(next(ipaddress.ip_network(options.hosts_cidr).hosts()))


def _pod_cidr(options: HostOptions, index: int) -> str:
    base = ipaddress.ip_network(options.pod_cidr)
    start = int(base.network_address) + (index - 1) * base.num_addresses
    return str(ipaddress.ip_network((start, base.prefixlen)))


def extra_hosts(options: HostOptions, node_name: str) -> list[ExtraHost]:
    """Hosts 2..N as `up --hosts N` makes them."""
    underlay = list(ipaddress.ip_network(options.hosts_cidr).hosts())
    if options.hosts > len(underlay):
        raise ValueError(f"{options.hosts_cidr} has no room for {options.hosts} hosts")
    found = []
    for index in range(2, options.hosts + 1):
        netns = f"unistack-host-{options.bridge}-{index}"
        digest = hashlib.sha256(netns.encode()).hexdigest()[:6]
        found.append(
            ExtraHost(
                index,
                netns,
                str(underlay[index - 1]),
                f"unistacku{digest}",
                _pod_cidr(options, index),
                f"{node_name}-{index}",
            )
        )
    return found


def retired_nodes(names: list[str], node_name: str, count: int) -> list[str]:
    """The Nodes among `names` that are extra hosts of this machine beyond the first `count`
    hosts (`<node>-<i>`, i > count): an earlier `up --hosts` ran them, this one does not."""
    prefix = f"{node_name}-"
    retired = []
    for name in names:
        index = name.removeprefix(prefix)
        if name.startswith(prefix) and index.isdigit() and int(index) > max(count, 1):
            retired.append(name)
    return sorted(retired)


def _ip(
    *argv: str, netns: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    return subprocess.run([*prefix, *argv], capture_output=True, text=True, check=check)


def _exists(name: str) -> bool:
    return _ip("link", "show", name, check=False).returncode == 0


def setup(options: HostOptions, node_name: str) -> list[ExtraHost]:
    """The underlay bridge, and per extra host its namespace, veth, address and route."""
    hosts = extra_hosts(options, node_name)
    if not hosts:
        return []
    bridge, prefix = underlay_bridge(options), ipaddress.ip_network(options.hosts_cidr).prefixlen
    if not _exists(bridge):
        _ip("link", "add", bridge, "type", "bridge")
    _ip("addr", "replace", f"{underlay_gateway(options)}/{prefix}", "dev", bridge)
    _ip("link", "set", bridge, "up")
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
    for host in hosts:
        if not (NETNS_DIR / host.netns).exists():
            _ip("netns", "add", host.netns)
        if not _exists(host.veth):
            peer = ("peer", "name", "eth0", "netns", host.netns)
            _ip("link", "add", host.veth, "type", "veth", *peer)
        _ip("link", "set", host.veth, "mtu", str(UNDERLAY_MTU), "master", bridge, "up")
        _ip("link", "set", "lo", "up", netns=host.netns)
        _ip("addr", "replace", f"{host.address}/{prefix}", "dev", "eth0", netns=host.netns)
        _ip("link", "set", "eth0", "mtu", str(UNDERLAY_MTU), "up", netns=host.netns)
        _ip("route", "replace", "default", "via", underlay_gateway(options), netns=host.netns)
        forward = ["ip", "netns", "exec", host.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"]
        subprocess.run(forward, capture_output=True, check=False)
    _ip("link", "set", bridge, "mtu", str(UNDERLAY_MTU))
    return hosts


def teardown(options: HostOptions, hosts: list[ExtraHost]) -> list[str]:
    """Remove what `setup` made for `hosts`; what was removed."""
    removed = []
    for host in hosts:
        if (NETNS_DIR / host.netns).exists():
            _ip("netns", "delete", host.netns, check=False)
            removed.append(host.netns)
        if _exists(host.veth):
            _ip("link", "delete", host.veth, check=False)
    bridge = underlay_bridge(options)
    if _exists(bridge):
        _ip("link", "delete", bridge, check=False)
        removed.append(bridge)
    return removed
