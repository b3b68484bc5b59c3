"""DHCP on a real kernel: dnsmasq in a network's DHCP namespace answers a client on the bridge.

The lab: a "host" namespace `unistack-t<hex>-host` where `LinuxL2(netns=…)` makes the tenant
network's bridge and `LinuxDhcp(host_netns=…)` plugs the DHCP namespace
`unistack-dhcp-<network>` into it; a "client" namespace `unistack-t<hex>-c` whose `eth0` (a veth
in the bridge, as an instance port) runs busybox `udhcpc`. With the port's MAC the client gets
the port's address, router, MTU and classless routes; after a reload (SIGHUP) a new port is
served; with an unknown MAC nothing answers. Needs root, `ip`, dnsmasq and busybox; skipped
with the reason otherwise. Every namespace and dnsmasq is removed in `finally`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from unistack.dataplane import dhcp, iproute, netns, tenantnames
from unistack.dataplane.dhcp import DhcpHost, DhcpSubnet, DhcpWiring, LinuxDhcp
from unistack.dataplane.tenantnet import LinuxL2, NetworkWiring, PortWiring

BUSYBOX = "/usr/bin/busybox"
pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        os.geteuid() != 0
        or not all(shutil.which(tool) for tool in ("ip", dhcp.DNSMASQ))
        or not os.path.exists(BUSYBOX),
        reason="needs root, ip (iproute2), dnsmasq (Debian's dnsmasq-base) and /usr/bin/busybox",
    ),
]

CIDR, GATEWAY, DHCP_IP = "10.77.0.0/24", "10.77.0.1", "10.77.0.2"
CLIENT_MAC, CLIENT_IP = "fa:16:3e:11:22:33", "10.77.0.17"
DHCP_MAC = "fa:16:3e:00:00:02"
SCRIPT = '#!/bin/sh\n[ "$1" = bound ] && env > "{out}"\nexit 0\n'


@dataclass
class Lab:
    host: str
    client: str
    network_id: str
    l2: LinuxL2
    dhcp: LinuxDhcp
    state: Path


def sh(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def wiring(network_id: str, hosts: tuple[DhcpHost, ...]) -> DhcpWiring:
    subnet = DhcpSubnet(
        "5ab0c1e2-0000-4000-8000-000000000001",
        CIDR,
        gateway=GATEWAY,
        dns_servers=("192.0.2.53",),
        host_routes=(("10.99.0.0/16", "10.77.0.254"),),
        metadata_via=GATEWAY,
    )
    return DhcpWiring(
        network_id,
        "d0000000-0000-4000-8000-0000000000d1",
        DHCP_MAC,
        (f"{DHCP_IP}/24",),
        mtu=1400,
        subnets=(subnet,),
        hosts=hosts,
    )


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    tag = secrets.token_hex(3)
    names = netns.LinuxNamespaces()
    host, client = f"unistack-t{tag}-host", f"unistack-t{tag}-c"
    network_id = f"{tag}00-0000-4000-8000-00000000dcdc"
    tmp_path.chmod(0o755)
    made = Lab(
        host, client, network_id, LinuxL2(netns=host), LinuxDhcp(tmp_path / "dhcp", host), tmp_path
    )
    try:
        names.create(host)
        names.create(client)
        made.l2.ensure_network(NetworkWiring(network_id, mtu=1400))
        yield made
    finally:
        made.dhcp.remove(network_id)
        for name in (client, host):
            names.delete(name)


def plug_client(lab: Lab, mac: str) -> None:
    port = PortWiring("c1000000-0000-4000-8000-0000000000c1", lab.network_id, mac, 1400)
    lab.l2.unplug(port.port_id)
    lab.l2.plug_veth(port, netns.path_of(lab.client), "eth0")


def ask(lab: Lab) -> dict[str, str]:
    """Run udhcpc once in the client; the environment of its `bound` event, or {}."""
    out = lab.state / "lease.env"
    out.unlink(missing_ok=True)
    script = lab.state / "udhcpc.sh"
    script.write_text(SCRIPT.format(out=out))
    script.chmod(0o755)
    sh(
        "ip", "netns", "exec", lab.client, BUSYBOX, "udhcpc", "-i", "eth0", "-n", "-q",
        "-t", "3", "-T", "1", "-O", "staticroutes", "-s", str(script),
    )  # fmt: skip
    if not out.exists():
        return {}
    return dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)


def test_known_mac_gets_its_address_router_mtu_and_routes(lab: Lab) -> None:
    lab.dhcp.ensure(wiring(lab.network_id, (DhcpHost(CLIENT_MAC, CLIENT_IP),)))
    namespace = tenantnames.dhcp_netns(lab.network_id)
    addresses = iproute.ip_json("addr", "show", netns=namespace)
    assert any(
        info.get("local") == DHCP_IP for entry in addresses for info in entry.get("addr_info", [])
    )
    pid = dhcp.dnsmasq_pid(lab.dhcp.files(lab.network_id))
    assert pid is not None
    lab.dhcp.ensure(wiring(lab.network_id, (DhcpHost(CLIENT_MAC, CLIENT_IP),)))
    assert dhcp.dnsmasq_pid(lab.dhcp.files(lab.network_id)) == pid  # nothing changed

    plug_client(lab, CLIENT_MAC)
    lease = ask(lab)
    assert lease.get("ip") == CLIENT_IP, lease
    assert lease.get("router") == GATEWAY
    assert lease.get("subnet") == "255.255.255.0"
    assert lease.get("mtu") == "1400"
    assert lease.get("dns") == "192.0.2.53"
    assert lease.get("serverid") == DHCP_IP
    routes = lease.get("staticroutes", "").split()
    assert routes == [
        "10.99.0.0/16", "10.77.0.254", "169.254.169.254/32", GATEWAY, "0.0.0.0/0", GATEWAY,
    ]  # fmt: skip


def test_reload_serves_a_new_port_and_unknown_macs_get_nothing(lab: Lab) -> None:
    lab.dhcp.ensure(wiring(lab.network_id, ()))
    pid = dhcp.dnsmasq_pid(lab.dhcp.files(lab.network_id))
    plug_client(lab, CLIENT_MAC)
    assert ask(lab) == {}  # static leases only: no answer for a MAC not in the hosts file

    lab.dhcp.ensure(wiring(lab.network_id, (DhcpHost(CLIENT_MAC, CLIENT_IP),)))
    assert dhcp.dnsmasq_pid(lab.dhcp.files(lab.network_id)) == pid  # SIGHUP, not a restart
    assert ask(lab).get("ip") == CLIENT_IP

    plug_client(lab, "fa:16:3e:99:99:99")
    assert ask(lab) == {}


def test_remove_stops_dnsmasq_and_deletes_everything(lab: Lab) -> None:
    lab.dhcp.ensure(wiring(lab.network_id, ()))
    files = lab.dhcp.files(lab.network_id)
    pid = dhcp.dnsmasq_pid(files)
    assert pid is not None and lab.network_id in lab.dhcp.list_networks()
    lab.dhcp.cleanup([lab.network_id])
    assert not Path(f"/proc/{pid}").exists()
    assert lab.network_id not in lab.dhcp.list_networks()
    assert not files.directory.exists()
    device = tenantnames.dhcp_port_device("d0000000-0000-4000-8000-0000000000d1")
    assert device not in {entry["ifname"] for entry in iproute.ip_json("link", netns=lab.host)}
