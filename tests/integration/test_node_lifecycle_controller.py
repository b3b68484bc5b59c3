"""The node lifecycle controller against the real API server, in-process, with the agent's
own registration and heartbeat (`unistack.agent.node`): a host that stops renewing its
Lease goes Unknown and unreachable-tainted, so neither scheduler places work there; when its
agent registers again it is Ready and untainted. A Node without a heartbeat is left alone."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import eventually, running
from unistack.agent import node as agentnode
from unistack.client.api import Client
from unistack.client.resources import NODES, PODS
from unistack.iaas.compute.hosts import node_ready
from unistack.kube.nodelifecycle import UNKNOWN_REASON, UNREACHABLE, NodeLifecycleController

Obj = dict[str, Any]
pytestmark = pytest.mark.timeout(60)


def _host(name: str, root: Path) -> Obj:
    return agentnode.node_object(name, "127.0.0.1", 10250, "10.244.9.0/24", "runc", root)


def _pod(name: str, node: str, seconds: int | None) -> Obj:
    toleration: Obj = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
    if seconds is not None:
        toleration["tolerationSeconds"] = seconds
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "image": "busybox"}],
            "tolerations": [toleration],
        },
    }


async def test_a_silent_hosts_pods_are_evicted_as_their_tolerations_say(
    client: Client, tmp_path: Path
) -> None:
    """Tolerating the unreachable taint for 0 s: deleted once the node is tainted; for
    an hour, or for ever: kept."""
    registered = await agentnode.register(client, _host("hv-gone", tmp_path))
    await agentnode.renew_lease(client, "hv-gone", registered["metadata"]["uid"])
    for name, seconds in (("at-once", 0), ("in-an-hour", 3600), ("never", None)):
        await client.create(PODS, _pod(name, "hv-gone", seconds))

    async def evicted() -> bool:
        pod = await client.get(PODS, "at-once", "default")
        return bool(pod["metadata"].get("deletionTimestamp"))

    async with running(NodeLifecycleController(client, grace=1.0)):
        await eventually(evicted, timeout=20)
        await asyncio.sleep(0.5)
        for kept in ("in-an-hour", "never"):
            pod = await client.get(PODS, kept, "default")
            assert not pod["metadata"].get("deletionTimestamp"), kept


async def test_a_silent_host_is_marked_unreachable_and_recovers(
    client: Client, tmp_path: Path
) -> None:
    registered = await agentnode.register(client, _host("hv-silent", tmp_path))
    await agentnode.renew_lease(client, "hv-silent", registered["metadata"]["uid"])  # one heartbeat
    manual = _host("hv-manual", tmp_path)  # registered, never heartbeats: not judged
    await client.create(NODES, manual)

    async def unreachable() -> bool:
        found = await client.get(NODES, "hv-silent")
        keys = {(t["key"], t["effect"]) for t in found["spec"].get("taints") or []}
        return not node_ready(found) and keys == {
            (UNREACHABLE, "NoSchedule"),
            (UNREACHABLE, "NoExecute"),
        }

    async with running(NodeLifecycleController(client, grace=1.5)):
        await eventually(unreachable, timeout=20)
        silent = await client.get(NODES, "hv-silent")
        ready = next(c for c in silent["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("Unknown", UNKNOWN_REASON)

        # the agent starts again: it registers (Ready) and renews its Lease
        await agentnode.register(client, _host("hv-silent", tmp_path))
        await agentnode.renew_lease(client, "hv-silent", registered["metadata"]["uid"])

        async def recovered() -> bool:
            found = await client.get(NODES, "hv-silent")
            return node_ready(found) and not found["spec"].get("taints")

        await eventually(recovered, timeout=20)
        await asyncio.sleep(0.5)
        untouched = await client.get(NODES, "hv-manual")
        assert node_ready(untouched) and not untouched["spec"].get("taints")
