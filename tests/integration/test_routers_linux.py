"""Routers on a real kernel: a router namespace joining two tenant networks, SNAT and floating
IPs towards the external network, and the metadata service answering inside the router.

The lab: a "host" namespace `unistack-t<hex>-host` where `LinuxL2(netns=…)` makes the bridges
of two tenant networks and of the external network, and `LinuxRouters(host_netns=…)` plugs the
router `t<hex>` (namespace `unistack-router-t<hex>`) into them and gives the external bridge
its gateway address, as the real host gets 172.24.4.1; two "instance" namespaces
`unistack-t<hex>-a|b`, one per tenant network, with static addresses and a default route via
the router. The host namespace plays the outside world. Real packets: busybox ping and wget,
and a Python TCP server reporting who connected; IPv6 through the router, and its
advertisements (radvd) giving the instances their addresses and routes. Needs root, `ip`,
`nft` and busybox (and radvd for the advertisements); skipped with the reason otherwise. Every
namespace is deleted in `finally`.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from unistack.agent import instancemetadata, metadata
from unistack.dataplane import daemons, iproute, netns, radvd, tenantnames
from unistack.dataplane.radvd import LinuxRadvd
from unistack.dataplane.routers import (
    ExternalWiring,
    FloatingIp,
    LinuxRouters,
    RouterPort,
    RouterWiring,
    host_lines,
    inside_lines,
    parse_addresses,
    parse_macs,
    parse_routes,
    route_lines,
)
from unistack.dataplane.tenantnet import LinuxL2, NetworkWiring, PortWiring, parse_links

BUSYBOX = "/usr/bin/busybox"
pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        os.geteuid() != 0
        or not all(shutil.which(tool) for tool in ("ip", "nft"))
        or not os.path.exists(BUSYBOX),
        reason="needs root, ip (iproute2), nft (nftables) and /usr/bin/busybox",
    ),
]

NET_A, NET_B, EXT = (f"{n}a0f3c1e-9d2b-4c5e-8f7a-1b2c3d4e5f6{n}" for n in ("1", "2", "3"))
PORT_A, PORT_B = "a1111111-0000-4000-8000-000000000001", "b2222222-0000-4000-8000-000000000002"
RTR_A, RTR_B = "c3333333-0000-4000-8000-000000000003", "d4444444-0000-4000-8000-000000000004"
RTR_G = "e5555555-0000-4000-8000-000000000005"
EXT_CIDR, HOST_IP, ROUTER_IP, FLOATING = (
    "172.31.250.0/24",
    "172.31.250.1",
    "172.31.250.2",
    "172.31.250.50",
)
SERVER = """
import socket
server = socket.create_server(("0.0.0.0", {port}))
while True:
    conn, peer = server.accept()
    conn.sendall(("from " + peer[0] + "\\n").encode())
    conn.close()
"""


def sh(*argv: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class Lab:
    tag: str
    host: str
    router_id: str
    instances: dict[str, str]  # name → namespace
    radvd: LinuxRadvd

    def run(self, where: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", where, *argv)

    def ping(self, where: str, address: str) -> bool:
        return self.run(where, BUSYBOX, "ping", "-c", "1", "-W", "2", address).returncode == 0

    def ping6(self, where: str, address: str) -> bool:
        return self.run(where, BUSYBOX, "ping", "-6", "-c", "1", "-W", "2", address).returncode == 0

    def reaches(self, where: str, address: str) -> bool:
        """Ping until answered (a neighbour entry that failed before is retried) or 6 s."""
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            if self.ping(where, address):
                return True
        return False

    def connect(self, where: str, address: str, port: int) -> str:
        code = (
            "import socket,sys\n"
            f"s = socket.create_connection(({address!r}, {port}), timeout=3)\n"
            "sys.stdout.write(s.recv(100).decode())\n"
        )
        return self.run(where, sys.executable, "-c", code).stdout.strip()


def wiring(lab: Lab, floating: bool = True, snat: bool = True) -> RouterWiring:
    return RouterWiring(
        router_id=lab.router_id,
        interfaces=(
            RouterPort(RTR_A, NET_A, "fa:16:3e:00:00:0a", ("10.71.1.1/24",)),
            RouterPort(RTR_B, NET_B, "fa:16:3e:00:00:0b", ("10.71.2.1/24",)),
        ),
        gateway=RouterPort(RTR_G, EXT, "fa:16:3e:00:00:0c", (f"{ROUTER_IP}/24",), 1500),
        gateway_ip=HOST_IP,
        snat=snat,
        routes=(("10.99.0.0/16", "10.71.1.200"),),
        floating_ips=(FloatingIp(FLOATING, "10.71.2.10"),) if floating else (),
    )


def plug(lab: Lab, l2: LinuxL2, name: str, port_id: str, network: str, address: str) -> None:
    where = lab.instances[name]
    netns.LinuxNamespaces().create(where)
    mac = "fa:16:3e:00:01:02" if name == "b" else "fa:16:3e:00:01:01"
    l2.plug_veth(PortWiring(port_id, network, mac), netns.path_of(where), "eth0")
    gateway = address.rsplit(".", 1)[0] + ".1"
    iproute.ip_batch(
        [
            "link set lo up",
            f"address add {address}/24 dev eth0",
            f"route add default via {gateway}",
        ],
        where,
    )


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    tag = "t" + secrets.token_hex(3)
    instances = {n: f"unistack-{tag}-{n}" for n in ("a", "b")}
    made = Lab(tag, f"unistack-{tag}-host", tag, instances, LinuxRadvd(tmp_path / "radvd"))
    namespaces = netns.LinuxNamespaces()
    try:
        namespaces.create(made.host)
        l2 = LinuxL2(netns=made.host)
        for network, mtu in ((NET_A, 1450), (NET_B, 1450), (EXT, 1500)):
            l2.ensure_network(NetworkWiring(network, mtu=mtu))
        plug(made, l2, "a", PORT_A, NET_A, "10.71.1.10")
        plug(made, l2, "b", PORT_B, NET_B, "10.71.2.10")
        yield made
    finally:
        LinuxRouters(made.host, advertisements=made.radvd).cleanup_all([made.router_id])
        for name in [*made.instances.values(), made.host]:
            namespaces.delete(name)


def test_router_joins_networks_snats_and_translates_floating_ips(lab: Lab) -> None:
    routers = LinuxRouters(host_netns=lab.host)
    assert not lab.ping(lab.instances["a"], "10.71.2.10")  # no router yet
    routers.ensure_router(wiring(lab))
    routers.ensure_external(ExternalWiring(EXT, EXT_CIDR, f"{HOST_IP}/24"))
    # east-west: through the router, sources kept
    assert lab.reaches(lab.instances["a"], "10.71.2.10")
    server = subprocess.Popen(
        ["ip", "netns", "exec", lab.host, sys.executable, "-c", SERVER.format(port=7001)]
    )
    in_b = subprocess.Popen(
        ["ip", "netns", "exec", lab.instances["b"], sys.executable, "-c", SERVER.format(port=7002)]
    )
    try:
        time.sleep(0.5)
        assert lab.connect(lab.instances["a"], "10.71.2.10", 7002) == "from 10.71.1.10"
        # north: instance a has no floating IP, so it leaves as the router's gateway address
        assert lab.reaches(lab.instances["a"], HOST_IP)
        assert lab.connect(lab.instances["a"], HOST_IP, 7001) == f"from {ROUTER_IP}"
        # instance b leaves as its floating IP, and is reached on it from outside
        assert lab.connect(lab.instances["b"], HOST_IP, 7001) == f"from {FLOATING}"
        assert lab.reaches(lab.host, FLOATING)
        assert lab.connect(lab.host, FLOATING, 7002) == f"from {HOST_IP}"
        # hairpin: b's floating IP from a tenant network (a's, and b's own)
        assert lab.connect(lab.instances["a"], FLOATING, 7002) == f"from {ROUTER_IP}"
        assert lab.connect(lab.instances["b"], FLOATING, 7002) == f"from {ROUTER_IP}"
        # without SNAT, instance a's packets keep their source (and get no answer here)
        routers.ensure_router(wiring(lab, floating=False, snat=False))
        assert not lab.ping(lab.host, FLOATING)
        assert lab.connect(lab.instances["a"], HOST_IP, 7001) == ""
        # a host that stops being the uplink gives the gateway address up with the table
        routers.remove_external(EXT)
        addresses = parse_addresses(iproute.ip_json("addr", "show", netns=lab.host))
        assert addresses[tenantnames.bridge_name(EXT)] == set()
        assert not lab.ping(lab.instances["a"], HOST_IP)
    finally:
        for process in (server, in_b):
            process.kill()
            process.wait()


def test_ensure_router_is_idempotent_and_remove_takes_everything(lab: Lab) -> None:
    routers = LinuxRouters(host_netns=lab.host)
    wanted = wiring(lab)
    routers.ensure_router(wanted)
    routers.ensure_router(wanted)
    namespace = tenantnames.router_netns(lab.router_id)
    host_links = parse_links(iproute.ip_json("-d", "link", "show", netns=lab.host))
    entries = iproute.ip_json("-d", "link", "show", netns=namespace)
    addresses = parse_addresses(iproute.ip_json("addr", "show", netns=namespace))
    routes = parse_routes(iproute.ip_json("route", "show", netns=namespace))
    assert host_lines(wanted, host_links) == []
    assert inside_lines(wanted, parse_links(entries), parse_macs(entries), addresses) == []
    assert route_lines(wanted, routes) == []
    assert routes == {"default": HOST_IP, "10.99.0.0/16": "10.71.1.200"}
    assert f"{FLOATING}/32" in addresses["qg-" + RTR_G[:11]]
    assert lab.router_id in routers.list_routers()
    # an interface removed from the router goes from the namespace and the bridge
    routers.ensure_router(RouterWiring(lab.router_id, interfaces=wanted.interfaces[:1]))
    host_links = parse_links(iproute.ip_json("-d", "link", "show", netns=lab.host))
    assert tenantnames.router_port_device(RTR_B) not in host_links
    assert tenantnames.router_port_device(RTR_A) in host_links
    routers.cleanup_all(["some-other-clouds-router", lab.router_id])
    assert lab.router_id not in routers.list_routers()
    host_links = parse_links(iproute.ip_json("-d", "link", "show", netns=lab.host))
    assert not any(name.startswith(tenantnames.ROUTER_PORT_PREFIX) for name in host_links)


def test_ipv6_subnets_are_routed_and_reconciled(lab: Lab) -> None:
    """Dual-stack interfaces: the IPv6 addresses stay (no re-adding on the next reconcile,
    which `ip -batch` refused with `address already assigned`), each interface holds the
    link-local address of its MAC, and the router forwards IPv6 between its subnets."""
    routers = LinuxRouters(host_netns=lab.host)
    v4 = wiring(lab)
    dual = RouterWiring(
        router_id=lab.router_id,
        interfaces=tuple(
            replace(port, addresses=(*port.addresses, f"2001:db8:71:{n}::1/64"))
            for n, port in enumerate(v4.interfaces, start=1)
        ),
        gateway=v4.gateway,
        gateway_ip=v4.gateway_ip,
        routes=(*v4.routes, ("2001:db8:99::/48", "2001:db8:71:1::200")),
    )
    for name, n in (("a", 1), ("b", 2)):
        iproute.ip_batch(
            [
                f"address add 2001:db8:71:{n}::10/64 dev eth0 nodad",
                f"route add default via 2001:db8:71:{n}::1",
            ],
            lab.instances[name],
        )
    routers.ensure_router(dual)
    routers.ensure_router(dual)  # raised `File exists` when IPv6 addresses were not seen
    namespace = tenantnames.router_netns(lab.router_id)
    entries = iproute.ip_json("-d", "link", "show", netns=namespace)
    addresses = parse_addresses(iproute.ip_json("addr", "show", netns=namespace))
    assert inside_lines(dual, parse_links(entries), parse_macs(entries), addresses) == []
    link_local = "fe80::f816:3eff:fe00:a/64"  # from the port's MAC, fa:16:3e:00:00:0a
    assert addresses["qr-" + RTR_A[:11]] == {"10.71.1.1/24", "2001:db8:71:1::1/64", link_local}
    routes = parse_routes(iproute.ip_json("route", "show", netns=namespace))
    routes |= parse_routes(iproute.ip_json("-6", "route", "show", netns=namespace))
    assert routes["2001:db8:99::/48"] == "2001:db8:71:1::200"
    assert route_lines(dual, routes) == []
    deadline = time.monotonic() + 6
    while not lab.ping6(lab.instances["a"], "2001:db8:71:2::10"):
        assert time.monotonic() < deadline, "no IPv6 answer through the router"
    # the IPv6 subnet taken off the router: its address and route go, IPv4 stays
    routers.ensure_router(v4)
    addresses = parse_addresses(iproute.ip_json("addr", "show", netns=namespace))
    assert addresses["qr-" + RTR_A[:11]] == {"10.71.1.1/24", link_local}
    assert not lab.ping6(lab.instances["a"], "2001:db8:71:2::10")
    assert lab.reaches(lab.instances["a"], "10.71.2.10")


@pytest.mark.skipif(not shutil.which(radvd.RADVD), reason="needs radvd (Debian's radvd)")
def test_router_advertises_its_ipv6_subnets(lab: Lab) -> None:
    """radvd in the router: instances on SLAAC subnets take the prefix (their EUI-64
    address, as Neutron's IPAM gives their port) and a default route via the router's
    link-local address, and reach each other through it; no RA mode, no radvd."""
    routers = LinuxRouters(lab.host, advertisements=lab.radvd)
    v4 = wiring(lab)
    interfaces = tuple(
        replace(
            port,
            addresses=(*port.addresses, f"2001:db8:71:{n}::1/64"),
            advertise=((f"2001:db8:71:{n}::/64", "slaac"),),
        )
        for n, port in enumerate(v4.interfaces, start=1)
    )
    advertising = replace(v4, interfaces=interfaces)
    routers.ensure_router(advertising)
    pid = lab.radvd.running(lab.router_id)
    assert pid is not None
    routers.ensure_router(advertising)
    assert lab.radvd.running(lab.router_id) == pid  # unchanged: not started again

    def slaac(where: str, address: str, router: str) -> None:
        deadline = time.monotonic() + 20
        while True:
            shown = lab.run(where, "ip", "-6", "addr", "show", "dev", "eth0").stdout
            route = lab.run(where, "ip", "-6", "route", "show", "default").stdout
            if address in shown and f"via {router} " in route:
                return
            assert time.monotonic() < deadline, f"no SLAAC in {where}: {shown} {route}"
            time.sleep(0.2)

    a_address, b_address = "2001:db8:71:1:f816:3eff:fe00:101", "2001:db8:71:2:f816:3eff:fe00:102"
    slaac(lab.instances["a"], a_address, "fe80::f816:3eff:fe00:a")
    slaac(lab.instances["b"], b_address, "fe80::f816:3eff:fe00:b")
    deadline = time.monotonic() + 6
    while not lab.ping6(lab.instances["a"], b_address):
        assert time.monotonic() < deadline, "no IPv6 answer through the router"
    # the host's bridges hear the advertisements too, and take neither an address nor a route
    assert "inet6" not in lab.run(lab.host, "ip", "-6", "addr", "show", "scope", "global").stdout
    assert "proto ra" not in lab.run(lab.host, "ip", "-6", "route").stdout
    # no subnet with an RA mode left: radvd stops and its files go
    routers.ensure_router(v4)
    assert daemons.wait_gone(pid, 5)
    assert not lab.radvd.files(lab.router_id).directory.exists()
    routers.ensure_router(advertising)
    pid = lab.radvd.running(lab.router_id)
    assert pid is not None
    routers.remove_router(lab.router_id)
    assert daemons.wait_gone(pid, 5)


async def test_metadata_answers_inside_the_router(lab: Lab) -> None:
    routers = LinuxRouters(host_netns=lab.host)
    routers.ensure_router(wiring(lab))
    asked: list[tuple[str, str]] = []

    def lookup(router_id: str, source: str) -> instancemetadata.InstanceMetadata | None:
        asked.append((router_id, source))
        if source != "10.71.1.10":
            return None
        return instancemetadata.InstanceMetadata(
            uuid="uuid-of-a", name="a", hostname="a", project_id="p", availability_zone="nova",
            local_ipv4=source, public_keys={"k": "ssh-ed25519 AAAA a@b"},
        )  # fmt: skip

    proxies = metadata.MetadataProxies(lookup)
    await proxies.start(lab.router_id, netns.path_of(tenantnames.router_netns(lab.router_id)))
    try:

        async def wget(where: str, path: str) -> tuple[int, str]:
            process = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", where, BUSYBOX, "wget", "-qO-",
                f"http://169.254.169.254{path}",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await asyncio.wait_for(process.communicate(), 10)
            return process.returncode or 0, out.decode()

        code, body = await wget(lab.instances["a"], "/openstack/latest/meta_data.json")
        assert code == 0, body
        document = json.loads(body)
        assert document["uuid"] == "uuid-of-a"
        assert document["public_keys"] == {"k": "ssh-ed25519 AAAA a@b"}
        code, body = await wget(lab.instances["a"], "/latest/meta-data/public-keys/0/openssh-key")
        assert (code, body) == (0, "ssh-ed25519 AAAA a@b")
        assert asked[0] == (lab.router_id, "10.71.1.10")
        code, _ = await wget(lab.instances["b"], "/openstack/latest/meta_data.json")
        assert code != 0  # 404: not an instance this router knows
        # the metadata port is not open to the external network
        port = str(metadata.METADATA_PORT)
        probe = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", lab.host, "timeout", "3", BUSYBOX, "wget", "-qO-",
            f"http://{ROUTER_IP}:{port}/openstack",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await asyncio.wait_for(probe.communicate(), 10)
        assert probe.returncode != 0
    finally:
        await proxies.stop_all()
