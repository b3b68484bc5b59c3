"""Pod routes tagged proto 199, synced inside a scratch netns so the host is untouched."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import eventually, running
from unistack.agent import noderoutes
from unistack.client.api import Client
from unistack.client.resources import NODES
from unistack.dataplane import iproute, netns, routes

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
    pytest.mark.skipif(not shutil.which("ip"), reason="needs iproute2"),
]


@pytest.fixture
def space() -> Iterator[str]:
    name = f"unistack-test-{secrets.token_hex(4)}"
    netns.LinuxNamespaces().create(name)
    iproute.ip_batch(
        [
            "link add unistackr0 type bridge",
            "address add 10.213.250.1/24 dev unistackr0",
            "link set unistackr0 up",
            "route add 10.213.240.0/24 via 10.213.250.7",  # someone else's route
        ],
        netns=name,
    )
    yield name
    netns.LinuxNamespaces().delete(name)


def test_sync_adds_moves_and_removes_only_our_routes(space: str) -> None:
    pod_routes = routes.LinuxPodRoutes(netns=space)
    desired = {"10.213.251.0/24": "10.213.250.2", "10.213.252.0/24": "10.213.250.3"}
    assert len(pod_routes.sync(desired)) == 2
    assert pod_routes.observed() == desired
    assert pod_routes.sync(desired) == []
    changes = pod_routes.sync({"10.213.251.0/24": "10.213.250.4"})
    assert [c.action for c in changes] == ["delete", "replace"]
    assert pod_routes.observed() == {"10.213.251.0/24": "10.213.250.4"}
    routes.sync_pod_routes({}, netns=space)
    assert pod_routes.observed() == {}
    others = iproute.ip_json("route", "show", "10.213.240.0/24", netns=space)
    assert others and others[0]["gateway"] == "10.213.250.7"


def test_a_node_address_that_cannot_be_reached_keeps_no_other_route_out(space: str) -> None:
    """A gone host's address is off every link ("Nexthop has invalid gateway"): the other
    nodes' routes still go in, and the failure is reported with what was made."""
    pod_routes = routes.LinuxPodRoutes(netns=space)
    desired = {"10.213.251.0/24": "10.213.250.2", "10.213.252.0/24": "192.0.2.77"}
    with pytest.raises(routes.PartialSync) as failed:
        pod_routes.sync(desired)
    assert [change.dst for change in failed.value.made] == ["10.213.251.0/24"]
    assert pod_routes.observed() == {"10.213.251.0/24": "10.213.250.2"}


def node(name: str, cidr: str, address: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        "status": {"addresses": [{"type": "InternalIP", "address": address}]},
    }


async def test_the_agent_routes_to_other_nodes_pods_and_only_touches_its_own(
    space: str, client: Client, tmp_path: Path
) -> None:
    """NodeRoutes against the real API server in-process, in a scratch netns: a route per
    other node, moved with its address, removed with it and at `down`; another cluster's
    proto-199 route on the same host is left alone."""
    other_cluster = f"route add 10.213.245.0/24 via 10.213.250.9 proto {routes.UNISTACK_PROTO}"
    iproute.ip_batch([other_cluster], netns=space)
    host = routes.LinuxPodRoutes(netns=space)
    agent = noderoutes.NodeRoutes(client, "self", "10.213.250.1", tmp_path, host, coalesce_delay=0)
    await client.create(NODES, node("self", "10.213.251.0/24", "10.213.250.1"))
    await client.create(NODES, node("a", "10.213.252.0/24", "10.213.250.2"))
    await client.create(NODES, node("b", "10.213.253.0/24", "10.213.250.3"))
    foreign = {"10.213.245.0/24": "10.213.250.9"}

    async def ours_are(expected: dict[str, str]) -> bool:
        observed = await asyncio.to_thread(host.observed)
        return {dst: via for dst, via in observed.items() if dst not in foreign} == expected

    async with running(agent):
        want = {"10.213.252.0/24": "10.213.250.2", "10.213.253.0/24": "10.213.250.3"}
        await eventually(lambda: ours_are(want))
        moved = node("b", "10.213.253.0/24", "10.213.250.4")
        current = await client.get(NODES, "b")
        moved["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await client.update_status(NODES, moved)
        await eventually(lambda: ours_are({**want, "10.213.253.0/24": "10.213.250.4"}))
        await client.delete(NODES, "a")
        await eventually(lambda: ours_are({"10.213.253.0/24": "10.213.250.4"}))
    assert host.observed() == {"10.213.253.0/24": "10.213.250.4", **foreign}  # outlives a stop
    removed = noderoutes.remove_recorded(tmp_path, host)
    assert [(c.action, c.dst) for c in removed] == [("delete", "10.213.253.0/24")]
    assert host.observed() == foreign


def test_desired_routes_skip_this_node_its_address_and_other_families() -> None:
    nodes = [
        node("self", "10.9.1.0/24", "10.0.0.1"),
        node("same-host", "10.9.2.0/24", "10.0.0.1"),  # another agent in this netns
        node("v6-only", "10.9.3.0/24", "fd00::3"),
        node("no-address", "10.9.4.0/24", ""),
        {"metadata": {"name": "no-cidr"}, "spec": {}, "status": {}},
        node("bad", "not-a-cidr", "10.0.0.5"),
        node("other", "10.9.5.7/24", "10.0.0.6"),
    ]
    assert noderoutes.desired_routes(nodes, "self", "10.0.0.1") == {"10.9.5.0/24": "10.0.0.6"}
