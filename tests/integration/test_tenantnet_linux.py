"""Tenant networks on a real kernel: bridges, VXLAN between emulated hosts, security groups.

Each test builds a small lab of network namespaces named `unistack-t<hex>-…`: "host"
namespaces where `LinuxL2(netns=…)` makes the tenant bridges (and, for two hosts, VXLAN over a
veth underlay between them), and "instance" namespaces plugged into a bridge with `plug_veth`
and given static addresses. Real packets then flow or are blocked: busybox ping, and a Python
TCP server/client pair. Security groups are applied in the host namespace through
`SecurityGroupFirewall` and the real `NftCommand`. Needs root, `ip`, `bridge`, `nft` and
busybox; skipped with the reason otherwise. Every namespace is deleted in `finally`, taking its
devices and nftables tables along.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from unistack.dataplane import tenantnames
from unistack.dataplane.nftables import NftCommand
from unistack.dataplane.secgroups import (
    AddressPair,
    PortFilter,
    SecurityGroupFirewall,
    SecurityRule,
)
from unistack.dataplane.tenantnet import LinuxL2, NetworkWiring, PortWiring, network_lines

BUSYBOX = "/usr/bin/busybox"
pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        os.geteuid() != 0
        or not all(shutil.which(tool) for tool in ("ip", "bridge", "nft"))
        or not os.path.exists(BUSYBOX),
        reason="needs root, ip, bridge, nft (iproute2, nftables) and /usr/bin/busybox",
    ),
]

NETWORK = "6a0f3c1e-9d2b-4c5e-8f7a-1b2c3d4e5f60"
VNI = 4242
SERVER = """
import socket
server = socket.create_server(("{address}", {port}))
while True:
    conn, _ = server.accept()
    conn.sendall(b"hello from the instance\\n")
    conn.close()
"""


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)


def ip(*args: str) -> None:
    result = sh("ip", *args)
    assert result.returncode == 0, f"ip {' '.join(args)}: {result.stderr}"


@dataclass
class Instance:
    netns: str
    address: str
    port: PortWiring

    @property
    def device(self) -> str:
        return tenantnames.port_device(self.port.port_id)

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.netns, *argv)

    def pings(self, target: str, source: str | None = None, wait: int = 3) -> bool:
        """One echo answered within `wait` seconds (short when a drop is expected)."""
        bind = ["-I", source] if source else []
        argv = [BUSYBOX, "ping", "-c", "1", "-W", str(wait), *bind, target]
        return self.run(*argv).returncode == 0

    def connects(self, target: str, port: int, wait: float = 3) -> bool:
        """A TCP connection that gets the server's greeting within `wait` seconds."""
        code = (
            "import socket,sys;"
            f"s=socket.create_connection(('{target}',{port}),timeout={wait});"
            "sys.exit(0 if b'hello' in s.makefile('rb').read() else 1)"
        )
        return self.run(sys.executable, "-c", code).returncode == 0


@dataclass
class Lab:
    """Namespaces and processes one test made, all removed by `close`."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def netns(self, role: str) -> str:
        name = f"unistack-t{self.tag}-{role}"
        ip("netns", "add", name)
        self.namespaces.append(name)
        return name

    def host(self, role: str) -> tuple[str, LinuxL2]:
        name = self.netns(role)
        ip("-n", name, "link", "set", "lo", "up")
        return name, LinuxL2(netns=name)

    def instance(self, l2: LinuxL2, index: int, network: str = NETWORK) -> Instance:
        netns = self.netns(f"i{index}")
        port = PortWiring(f"{index:02x}c0ffee-{self.tag}", network, f"fa:16:3e:00:00:{index:02x}")
        l2.plug_veth(port, f"/run/netns/{netns}", "eth0")
        address = f"10.50.0.{index}"
        ip("-n", netns, "address", "add", f"{address}/24", "dev", "eth0")
        ip("-n", netns, "link", "set", "lo", "up")
        return Instance(netns, address, port)

    def serve(self, instance: Instance, port: int) -> None:
        code = SERVER.format(address=instance.address, port=port)
        argv = ["ip", "netns", "exec", instance.netns, sys.executable, "-c", code]
        self.processes.append(subprocess.Popen(argv, stderr=subprocess.DEVNULL))
        probe = f"import socket;socket.create_connection(('{instance.address}',{port}),1)"
        for _ in range(100):
            if instance.run(sys.executable, "-c", probe).returncode == 0:
                return
            time.sleep(0.02)
        raise AssertionError("the test server did not start")

    def close(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()
        for name in self.namespaces:
            sh("ip", "netns", "delete", name)


@pytest.fixture
def lab() -> Iterator[Lab]:
    made = Lab()
    try:
        yield made
    finally:
        made.close()


def test_two_instances_on_one_bridge_ping(lab: Lab) -> None:
    _, l2 = lab.host("h1")
    wiring = NetworkWiring(NETWORK, mtu=1450)
    l2.ensure_network(wiring)
    l2.ensure_network(wiring)
    assert network_lines(wiring, l2.links()) == ([], False)  # nothing left to change
    bridge = l2.links()[tenantnames.bridge_name(NETWORK)]
    assert (bridge.kind, bridge.mtu, bridge.up) == ("bridge", 1450, True)
    assert bridge.data["stp_state"] == 0 and bridge.data["nf_call_iptables"] == 1

    first, second = lab.instance(l2, 1), lab.instance(l2, 2)
    l2.plug_veth(first.port, f"/run/netns/{first.netns}", "eth0")  # idempotent
    assert l2.links()[first.device].master == tenantnames.bridge_name(NETWORK)
    mac = first.run("cat", "/sys/class/net/eth0/address").stdout.strip()
    assert mac == first.port.mac
    assert first.pings(second.address)

    l2.unplug(second.port.port_id)
    l2.unplug(second.port.port_id)
    assert not first.pings(second.address, wait=1)
    assert "eth0" not in second.run("ip", "-br", "link").stdout


async def test_instances_on_two_hosts_reach_each_other_over_vxlan(lab: Lab) -> None:
    (host1, l2a), (host2, l2b) = lab.host("h1"), lab.host("h2")
    ip("link", "add", "uskunder0", "netns", host1, "type", "veth", "peer", "name", "uskunder1")
    ip("link", "set", "uskunder1", "netns", host2)
    for host, dev, address in ((host1, "uskunder0", "1"), (host2, "uskunder1", "2")):
        ip("-n", host, "address", "add", f"192.168.77.{address}/24", "dev", dev)
        ip("-n", host, "link", "set", dev, "up")
    # an address that is not a host yet: its fdb entry must go once the peer list drops it
    stale = NetworkWiring(NETWORK, VNI, 1450, "192.168.77.1", ("192.168.77.2", "192.168.77.9"))
    l2a.ensure_network(stale)
    l2a.ensure_network(NetworkWiring(NETWORK, VNI, 1450, "192.168.77.1", ("192.168.77.2",)))
    l2b.ensure_network(NetworkWiring(NETWORK, VNI, 1450, "192.168.77.2", ("192.168.77.1",)))
    assert l2a.flood_peers(tenantnames.vxlan_name(NETWORK)) == {"192.168.77.2"}
    vxlan = l2a.links()[tenantnames.vxlan_name(NETWORK)]
    assert (vxlan.data["id"], vxlan.master) == (VNI, tenantnames.bridge_name(NETWORK))

    near, far = lab.instance(l2a, 1), lab.instance(l2b, 2)
    assert near.pings(far.address)
    assert far.pings(near.address)

    # each host filters its own ports; the far port allows ICMP in and nothing out, so its
    # replies cross the VXLAN only as established traffic, and the near port lets nothing in
    icmp_in = (SecurityRule("ingress", protocol="icmp"),)
    await SecurityGroupFirewall(NftCommand(netns=host1)).apply([port_filter(near)])
    await SecurityGroupFirewall(NftCommand(netns=host2)).apply([port_filter(far, rules=icmp_in)])
    assert near.pings(far.address)
    assert not far.pings(near.address, wait=1)

    l2a.cleanup_all()
    assert l2a.list_devices() == []
    assert not near.pings(far.address, wait=1)


def test_a_tap_port_is_a_persistent_vnet_hdr_tap_in_the_bridge(lab: Lab) -> None:
    _, l2 = lab.host("h1")
    l2.ensure_network(NetworkWiring(NETWORK, mtu=1400))
    port = PortWiring("7ab1e000-0000-4000-8000-000000000001", NETWORK, "fa:16:3e:00:01:01", 1400)
    l2.plug_tap(port)
    l2.plug_tap(port)
    tap = l2.links()[tenantnames.port_device(port.port_id)]
    assert (tap.kind, tap.data["type"], tap.data["vnet_hdr"], tap.data["persist"]) == (
        "tun",
        "tap",
        True,
        True,
    )
    assert (tap.master, tap.mtu, tap.data["multi_queue"]) == (
        tenantnames.bridge_name(NETWORK),
        1400,
        False,
    )
    l2.unplug(port.port_id)
    assert l2.list_devices() == [tenantnames.bridge_name(NETWORK)]
    l2.remove_network(NETWORK)
    l2.remove_network(NETWORK)
    assert l2.list_devices() == []


def any_egress() -> tuple[SecurityRule, ...]:
    return (SecurityRule("egress"), SecurityRule("egress", ethertype="IPv6"))


def port_filter(instance: Instance, **changes: object) -> PortFilter:
    base = PortFilter(instance.device, instance.port.mac, (instance.address,), rules=any_egress())
    fields = {name: getattr(base, name) for name in PortFilter.__dataclass_fields__}
    return PortFilter(**{**fields, **changes})  # type: ignore[arg-type]


async def test_security_groups_filter_real_traffic(lab: Lab) -> None:
    host, l2 = lab.host("h1")
    l2.ensure_network(NetworkWiring(NETWORK, mtu=1450))
    client, server = lab.instance(l2, 1), lab.instance(l2, 2)
    lab.serve(server, 8080)
    firewall = SecurityGroupFirewall(NftCommand(netns=host))

    # the server allows nothing in and nothing out: only its anti-spoofing and state rules
    await firewall.apply([port_filter(client), port_filter(server, rules=())])
    assert not client.connects(server.address, 8080, wait=1)
    assert not client.pings(server.address, wait=1)

    # TCP from the client's group, ICMP from anywhere: the replies leave the server only
    # because they belong to connections it accepted (its egress allows nothing)
    rules = (
        SecurityRule(
            "ingress",
            protocol="tcp",
            port_range_min=8080,
            port_range_max=8080,
            remote_group_id="default",
            remote_ips=(client.address,),
        ),
        SecurityRule("ingress", protocol="icmp"),
    )
    await firewall.apply([port_filter(client), port_filter(server, rules=rules)])
    assert client.connects(server.address, 8080)
    assert client.pings(server.address)
    assert not server.pings(client.address, wait=1)  # no egress rule on the server

    # a source address the client does not own is dropped, until it is an allowed pair
    ip("-n", client.netns, "address", "add", "10.50.0.99/24", "dev", "eth0")
    assert not client.pings(server.address, source="10.50.0.99", wait=1)
    pair = (AddressPair("10.50.0.96/28"),)
    await firewall.apply(
        [port_filter(client, allowed_address_pairs=pair), port_filter(server, rules=rules)]
    )
    assert client.pings(server.address, source="10.50.0.99")

    # port security off on the server: no filter at all for it
    await firewall.apply(
        [port_filter(client), port_filter(server, rules=(), port_security_enabled=False)]
    )
    assert client.pings(server.address)
    assert client.connects(server.address, 8080)

    await firewall.remove()
    await firewall.remove()
    assert await NftCommand(netns=host).list_tables("unistack") == []


async def test_a_foreign_source_mac_is_dropped(lab: Lab) -> None:
    host, l2 = lab.host("h1")
    l2.ensure_network(NetworkWiring(NETWORK, mtu=1450))
    client, server = lab.instance(l2, 1), lab.instance(l2, 2)
    firewall = SecurityGroupFirewall(NftCommand(netns=host))
    open_server = port_filter(server, rules=(SecurityRule("ingress"),))
    await firewall.apply([port_filter(client), open_server])
    assert client.pings(server.address)
    ip("-n", client.netns, "link", "set", "eth0", "address", "fa:16:3e:00:00:77")
    ip("-n", server.netns, "neigh", "flush", "dev", "eth0")
    assert not client.pings(server.address, wait=1)
