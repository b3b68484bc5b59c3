"""DHCP on tenant networks, as Neutron's DHCP agent serves it: a subnet made with the real
openstack CLI gets a DHCP port (`openstack port list --device-owner network:dhcp`), and from
inside a booted server's network namespace a DHCP request (busybox `udhcpc`, as any cloud image
sends one) is answered with the server's own address, the subnet's gateway and the network's
MTU by dnsmasq in the network's DHCP namespace. Deleting the network removes that namespace.
Needs root, runc, nftables and dnsmasq (without them the agent runs no instances or no DHCP).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import Cluster, in_netns, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("runc", "nft", "dnsmasq")),
        reason="real instances and DHCP need root, runc, nftables and dnsmasq (dnsmasq-base)",
    ),
]
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
SCRIPT = (
    '#!/bin/sh\n[ "$1" = bound ] && '
    'echo "ip=$ip router=$router mtu=$mtu serverid=$serverid"\nexit 0\n'
)


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def dhcp_ports(cluster: Cluster, network: str) -> list[dict]:
    return list(
        cluster.openstack_json(
            "port", "list", "--device-owner", "network:dhcp", "--network", network, "--long"
        )
    )


def ask_dhcp(server_id: str, script: Path) -> dict[str, str]:
    """One DHCP exchange from the server's eth0 (its address stays as it is)."""
    reply = subprocess.run(
        [*in_netns(f"unistack-server-{server_id}"), BUSYBOX, "udhcpc",
         "-i", "eth0", "-n", "-q", "-t", "5", "-T", "1", "-s", str(script)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    line = next((x for x in reply.stdout.splitlines() if x.startswith("ip=")), "")
    return dict(item.split("=", 1) for item in line.split())


def test_a_server_gets_its_address_by_dhcp(cluster: Cluster, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:6]
    net = f"dhcp-{suffix}"
    network = cluster.openstack_json("network", "create", net)
    cluster.openstack(
        "subnet", "create", f"{net}-v4", "--network", net, "--subnet-range", "10.66.0.0/24"
    )
    port = cluster.openstack_json("port", "create", "--network", net, f"{net}-port")
    wait_for(lambda: len(dhcp_ports(cluster, net)) == 1, "the DHCP port", 30)
    (dhcp_port,) = dhcp_ports(cluster, net)
    dhcp_ip = dhcp_port["Fixed IP Addresses"][0]["ip_address"]
    assert dhcp_ip.startswith("10.66.0.") and dhcp_port["Status"] == "ACTIVE"
    assert dhcp_ip != port["fixed_ips"][0]["ip_address"]
    script = tmp_path / "udhcpc.sh"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    shown = cluster.create_server(
        f"dhcp-{suffix}", "--image", "busybox", "--flavor", "m1.nano", "--network", net
    )
    server = shown
    try:
        address = str(shown["addresses"][net][0])
        lease: dict[str, str] = {}

        def answered() -> bool:
            lease.update(ask_dhcp(server["id"], script))
            return bool(lease)

        wait_for(answered, "a DHCP answer inside the server", 30)
        assert lease == {
            "ip": address, "router": "10.66.0.1", "mtu": str(network["mtu"]), "serverid": dhcp_ip,
        }  # fmt: skip
    finally:
        cluster.delete_servers(server["id"])
        cluster.openstack("port", "delete", port["id"])
    cluster.openstack("network", "delete", net)
    wait_for(
        lambda: f"unistack-dhcp-{network['id']}" not in namespaces(),
        "the DHCP namespace to go with the network",
        30,
    )
