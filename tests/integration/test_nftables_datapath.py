"""The rendered service table on a real kernel: a ClusterIP reached through nftables DNAT.

Two network namespaces, `unistack-test-<hex>-node` and `-pod`, joined by a veth pair; the pod
namespace runs a one-line TCP server on 10.244.77.2:8000. The proxy's table, applied inside
the node namespace with the real `NftCommand` driver, sends 10.96.123.45:80 there: a
connection from the node namespace (the output hook path) gets the pod's answer, and a Service
without endpoints is refused at once (TCP reset from the filter chain). With forwarding on in
the node, the pod reaching its own Service through the node (prerouting path) works only
because the endpoint chain marks hairpin traffic for masquerade. Needs root, `nft` and `ip`;
skipped with the reason otherwise. The namespaces are deleted even when the test fails."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from unistack.agent.proxyrules import ProxySettings, render
from unistack.dataplane.nftables import NftCommand

Obj = dict[str, Any]
pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"),
        reason="needs root, nft and ip (iproute2)",
    ),
]

NODE_IP, POD_IP, CLUSTER_IP, EMPTY_IP = "10.244.77.1", "10.244.77.2", "10.96.123.45", "10.96.123.46"


@dataclass
class Namespaces:
    node: str
    pod: str


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def in_netns(netns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    command = ["ip", "netns", "exec", netns, *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)


def in_node(ns: Namespaces, *argv: str) -> subprocess.CompletedProcess[str]:
    return in_netns(ns.node, *argv)


def wire(ns: Namespaces, suffix: str) -> None:
    """veth node <-> pod, addresses, and a route for the service range on the node side."""
    node_if, pod_if = f"usk{suffix}a", f"usk{suffix}b"
    ip(*f"link add {node_if} netns {ns.node} type veth peer name {pod_if} netns {ns.pod}".split())
    for netns, ifname, address in ((ns.node, node_if, NODE_IP), (ns.pod, pod_if, POD_IP)):
        ip("-n", netns, "addr", "add", f"{address}/24", "dev", ifname)
        ip("-n", netns, "link", "set", ifname, "up")
        ip("-n", netns, "link", "set", "lo", "up")
    ip("-n", ns.node, "route", "add", "10.96.0.0/12", "dev", node_if)
    ip("-n", ns.pod, "route", "add", "default", "via", NODE_IP)


@pytest.fixture
async def namespaces() -> AsyncIterator[Namespaces]:
    suffix = secrets.token_hex(3)
    ns = Namespaces(f"unistack-test-{suffix}-node", f"unistack-test-{suffix}-pod")
    try:
        ip("netns", "add", ns.node)
        ip("netns", "add", ns.pod)
        wire(ns, suffix)
        yield ns
    finally:
        for name in (ns.node, ns.pod):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


SERVER = """
import socket
server = socket.create_server(("{address}", 8000))
while True:
    conn, _ = server.accept()
    conn.sendall(b"hello from the pod\\n")
    conn.close()
"""


@pytest.fixture
async def pod_server(namespaces: Namespaces) -> AsyncIterator[None]:
    """A TCP server in the pod namespace answering every connection with one line.

    (Not `http.server`: it resolves its own address at start, which times out here.)
    """
    argv = [
        "ip",
        "netns",
        "exec",
        namespaces.pod,
        sys.executable,
        "-c",
        SERVER.format(address=POD_IP),
    ]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(100):
            if in_node(namespaces, *connect(POD_IP, 8000)).returncode == 0:
                break
            await asyncio.sleep(0.02)
        yield
    finally:
        process.kill()
        await process.wait()


def connect(address: str, port: int) -> list[str]:
    """A Python one-liner that connects and prints what the server sends."""
    code = (
        "import socket,sys;"
        f"s=socket.create_connection(('{address}',{port}),timeout=3);"
        "sys.stdout.write(s.makefile('rb').read().decode())"
    )
    return [sys.executable, "-c", code]


def services() -> tuple[list[Obj], list[Obj]]:
    web: Obj = {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": CLUSTER_IP, "ports": [{"name": "http", "port": 80}]},
    }
    empty: Obj = {
        "metadata": {"name": "empty", "namespace": "default"},
        "spec": {"clusterIP": EMPTY_IP, "ports": [{"name": "http", "port": 80}]},
    }
    endpoint_slice: Obj = {
        "metadata": {
            "name": "web-1",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}],
        "endpoints": [{"addresses": [POD_IP], "conditions": {"ready": True}}],
    }
    return [web, empty], [endpoint_slice]


async def test_cluster_ip_reaches_the_pod_through_nftables(
    namespaces: Namespaces, pod_server: None
) -> None:
    driver = NftCommand(netns=namespaces.node)
    settings = ProxySettings(table="unistack-proxy-test")
    service_list, slices = services()
    await driver.apply_table("ip", settings.table, render(service_list, slices, settings))
    await driver.apply_table("ip", settings.table, render(service_list, slices, settings))
    assert await driver.list_tables("unistack-proxy") == [("ip", settings.table)]

    reply = await asyncio.to_thread(in_node, namespaces, *connect(CLUSTER_IP, 80))
    assert reply.returncode == 0, reply.stderr
    assert "hello from the pod" in reply.stdout

    refused = await asyncio.to_thread(in_node, namespaces, *connect(EMPTY_IP, 80))
    assert "ConnectionRefusedError" in refused.stderr, refused.stderr

    await driver.delete_table("ip", settings.table)
    await driver.delete_table("ip", settings.table)  # idempotent
    assert await driver.list_tables("unistack-") == []


async def test_a_pod_reaches_its_own_service_through_the_node(
    namespaces: Namespaces, pod_server: None
) -> None:
    """Prerouting path and hairpin: the pod's connection to its own ClusterIP is DNATed back to
    it by the node and must be masqueraded (else the pod sees a packet from itself)."""
    in_node(namespaces, "sysctl", "-qw", "net.ipv4.ip_forward=1").check_returncode()
    driver = NftCommand(netns=namespaces.node)
    settings = ProxySettings(table="unistack-proxy-test")
    await driver.apply_table("ip", settings.table, render(*services(), settings))
    try:
        reply = await asyncio.to_thread(in_netns, namespaces.pod, *connect(CLUSTER_IP, 80))
        assert reply.returncode == 0, reply.stderr
        assert "hello from the pod" in reply.stdout
    finally:
        await driver.delete_table("ip", settings.table)
