"""Routers, SNAT, floating IPs and metadata with the real openstack CLI against `unistack up`.

Two tenant networks joined by a router: servers on them ping each other through the router's
namespace (`unistack-router-<id>`). With the router's gateway on the public network, a server
reaches the host's address there (the public subnet's gateway, as DevStack's br-ex) through
SNAT; a floating IP answers ping from the host, and TCP only once a security group rule lets
it in. Inside a server, the metadata service at 169.254.169.254 returns its uuid and the key
given at boot, and its config drive (a read-only tree at cloud-init's seed path in a system
container) holds the same documents. Commands run in the servers' network namespaces with
the host's busybox, as in `test_instances`. Needs root, runc and nftables.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.e2e.conftest import Cluster, in_netns, running, wait_for
from tests.e2e.test_instances import BUSYBOX, address_of, boot, in_server, tcp_open
from tests.e2e.test_volume_attach import in_guest

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("runc") is None or shutil.which("nft") is None,
        reason="real instances need root, runc and nftables",
    ),
]


def public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return raw.decode() + " e2e@unistack"


def pings(server_id: str, address: str) -> bool:
    return in_server(server_id, "ping", "-c", "1", "-W", "2", address).returncode == 0


def host_pings(address: str) -> bool:
    probe = subprocess.run(
        [BUSYBOX, "ping", "-c", "1", "-W", "2", address],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return probe.returncode == 0


def host_tcp(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2) as conn:
            return b"hello" in conn.recv(100)
    except OSError:
        return False


METADATA = "http://169.254.169.254/openstack/latest"


def metadata(server_id: str) -> dict | None:
    url = f"{METADATA}/meta_data.json"
    fetched = in_server(server_id, "wget", "-qO-", url, timeout=15)
    return json.loads(fetched.stdout) if fetched.returncode == 0 else None


def test_router_snat_floating_ip_and_metadata(cluster: Cluster, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:6]
    net1, net2, router, sg = f"r1-{suffix}", f"r2-{suffix}", f"rt-{suffix}", f"sg-{suffix}"
    key_file = tmp_path / "key.pub"
    key_file.write_text(public_key() + "\n")
    cluster.openstack("keypair", "create", "--public-key", str(key_file), f"key-{suffix}")
    for net, cidr in ((net1, "10.62.1.0/24"), (net2, "10.62.2.0/24")):
        cluster.openstack("network", "create", net)
        cluster.openstack("subnet", "create", f"{net}-v4", "--network", net, "--subnet-range", cidr)
    router_id = cluster.openstack_json("router", "create", router)["id"]
    for net in (net1, net2):
        cluster.openstack("router", "add", "subnet", router, f"{net}-v4")
    cluster.openstack("router", "set", router, "--external-gateway", "public")
    public = cluster.openstack_json("subnet", "show", "public-subnet")
    host_address = public["gateway_ip"]
    cluster.openstack("security", "group", "create", sg)
    cluster.openstack("security", "group", "rule", "create", sg, "--protocol", "icmp")
    servers: list[dict] = []
    fip = ""
    try:
        drive = ("--config-drive", "true", "--property", "role=web")
        servers.append(boot(cluster, f"ra-{suffix}", net1, "--key-name", f"key-{suffix}", *drive))
        servers.append(boot(cluster, f"rb-{suffix}", net2, "--security-group", sg))
        first, second = servers
        assert (
            f"unistack-router-{router_id}"
            in subprocess.run(
                ["ip", "netns", "list"], capture_output=True, text=True, check=False
            ).stdout
        )
        # east-west through the router
        there = address_of(second, net2)
        wait_for(lambda: pings(first["id"], there), "a ping across the router", 30)
        # north through SNAT: the host's address on the public network
        wait_for(lambda: pings(first["id"], host_address), "a ping to the host via SNAT", 30)
        # the floating IP answers from the host; TCP only once the group allows it
        fip = cluster.openstack_json("floating", "ip", "create", "public")["floating_ip_address"]
        cluster.openstack("server", "add", "floating", "ip", second["id"], fip)
        wait_for(lambda: host_pings(fip), "the floating IP to answer ping", 30)
        serve = "while true; do echo hello | nc -l -p 7777; done"
        with running([*in_netns(f"unistack-server-{second['id']}"), BUSYBOX, "sh", "-c", serve]):
            assert not host_tcp(fip, 7777)
            cluster.openstack(
                "security", "group", "rule", "create", sg,
                "--ingress", "--protocol", "tcp", "--dst-port", "7777",
            )  # fmt: skip
            wait_for(lambda: host_tcp(fip, 7777), "the rule to let TCP in on the floating IP", 30)
            # hairpin: a server behind the same router reaches the floating IP too. The
            # listener restarts nc after each connection, so the first try may find none.
            wait_for(lambda: tcp_open(first["id"], fip, 7777), "TCP to the floating IP", 15)
        # metadata: the server's own uuid and the key given at boot
        document: dict = {}

        def answered() -> bool:
            document.update(metadata(first["id"]) or {})
            return bool(document)

        wait_for(answered, "the metadata service", 30)
        assert document["uuid"] == first["id"]
        assert document["public_keys"] == {f"key-{suffix}": key_file.read_text().strip()}
        ec2 = in_server(
            first["id"], "wget", "-qO-", "http://169.254.169.254/latest/meta-data/instance-id"
        )
        assert ec2.stdout == first["id"]
        # its config drive holds the same documents, where cloud-init looks for a seeded one
        assert first["config_drive"] == "True"
        seed = "/var/lib/cloud/seed/config_drive/openstack/latest"
        seeded = json.loads(in_guest(cluster, first["id"], f"cat {seed}/meta_data.json"))
        assert seeded == document and seeded["meta"] == {"role": "web"}
        network = json.loads(in_guest(cluster, first["id"], f"cat {seed}/network_data.json"))
        served = in_server(first["id"], "wget", "-qO-", f"{METADATA}/network_data.json")
        assert network == json.loads(served.stdout)
        link = network["links"][0]
        port = cluster.openstack_json("port", "list", "--server", first["id"])[0]
        assert link["ethernet_mac_address"] == port["MAC Address"]
        assert network["networks"][0]["ip_address"] == address_of(first, net1)
        wrote = in_guest(cluster, first["id"], f"touch {seed}/x 2>/dev/null && echo yes || echo no")
        assert wrote.strip() == "no"  # read-only
    finally:
        cluster.openstack_cleanup(
            *(["server", "delete", "--wait", server["id"]] for server in servers),
            *([["floating", "ip", "delete", fip]] if fip else []),
            ["router", "unset", "--external-gateway", router],
            ["router", "remove", "subnet", router, f"{net1}-v4"],
            ["router", "remove", "subnet", router, f"{net2}-v4"],
            ["router", "delete", router],
            ["network", "delete", net1, net2],
            ["security", "group", "delete", sg],
            ["keypair", "delete", f"key-{suffix}"],
        )
    wait_for(
        lambda: (
            f"unistack-router-{router_id}"
            not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        ),
        "the router's namespace to go",
        30,
    )


def test_ipv6_slaac_subnets_are_advertised_and_routed(cluster: Cluster) -> None:
    """A router on two networks' IPv6 SLAAC subnets advertises them (radvd in its
    namespace): a server takes its default IPv6 route from the advertisement, and servers on
    the two networks ping each other over IPv6 through the router."""
    suffix = uuid.uuid4().hex[:6]
    net1, net2, router = f"s1-{suffix}", f"s2-{suffix}", f"rt6-{suffix}"
    for n, net in enumerate((net1, net2), start=1):
        cluster.openstack("network", "create", net)
        cluster.openstack(
            "subnet", "create", f"{net}-v4", "--network", net, "--subnet-range", f"10.63.{n}.0/24"
        )
        cluster.openstack(
            "subnet", "create", f"{net}-v6", "--network", net, "--ip-version", "6",
            "--ipv6-ra-mode", "slaac", "--ipv6-address-mode", "slaac",
            "--subnet-range", f"fd63:{n}::/64",
        )  # fmt: skip
    cluster.openstack("router", "create", router)
    for net in (net1, net2):
        cluster.openstack("router", "add", "subnet", router, f"{net}-v6")
    servers: list[dict] = []
    try:
        servers.append(boot(cluster, f"sa-{suffix}", net1))
        servers.append(boot(cluster, f"sb-{suffix}", net2))
        first, second = servers
        there = next(a for a in second["addresses"][net2] if ":" in str(a))
        assert str(there).startswith("fd63:2::")

        def advertised() -> bool:
            routes = in_server(first["id"], "ip", "-6", "route", "show", "default").stdout
            return "via fe80::" in routes

        wait_for(advertised, "a default IPv6 route from the router's advertisement", 30)
        ping6 = ("ping", "-6", "-c", "1", "-W", "2", str(there))
        wait_for(
            lambda: in_server(first["id"], *ping6).returncode == 0,
            "an IPv6 ping across the router",
            30,
        )
    finally:
        cluster.openstack_cleanup(
            *(["server", "delete", "--wait", server["id"]] for server in servers),
            ["router", "remove", "subnet", router, f"{net1}-v6"],
            ["router", "remove", "subnet", router, f"{net2}-v6"],
            ["router", "delete", router],
            ["network", "delete", net1, net2],
        )
