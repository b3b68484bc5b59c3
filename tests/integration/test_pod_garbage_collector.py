"""The pod garbage collector against the real API server, in-process: a pod bound to a Node
that was deleted is failed and removed once the quarantine has passed; a terminating pod on a
node tainted out-of-service is removed though no agent finishes it; pods on live nodes are
left to their agents."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import eventually, running
from unistack.agent import node as agentnode
from unistack.client.api import Client, NotFound
from unistack.client.resources import NODES, PODS
from unistack.kube.podgc import OUT_OF_SERVICE, PodGarbageCollector

Obj = dict[str, Any]
pytestmark = pytest.mark.timeout(60)


def _host(name: str, root: Path) -> Obj:
    return agentnode.node_object(name, "127.0.0.1", 10250, "10.244.9.0/24", "runc", root)


def _pod(name: str, node: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
    }


async def _gone(client: Client, name: str) -> bool:
    try:
        await client.get(PODS, name, "default")
    except NotFound:
        return True
    return False


async def test_pods_of_a_deleted_node_are_failed_then_removed(
    client: Client, tmp_path: Path
) -> None:
    for name in ("hv-live", "hv-retired"):
        await client.create(NODES, _host(name, tmp_path))
    await client.create(PODS, _pod("stays", "hv-live"))
    orphan = await client.create(PODS, _pod("orphan", "hv-retired"))
    seen: list[Obj] = []

    async def watch() -> None:
        version = orphan["metadata"]["resourceVersion"]
        async for event in client.watch(PODS, "default", resource_version=version):
            if event.object["metadata"]["name"] == "orphan":
                seen.append({"type": event.type, "status": event.object.get("status") or {}})

    async with running(PodGarbageCollector(client, quarantine=1.0)):
        watcher = asyncio.create_task(watch())
        try:
            await asyncio.sleep(0.5)
            assert not await _gone(client, "orphan")  # its node is there: the agent's business
            await client.delete(NODES, "hv-retired")
            await eventually(lambda: _gone(client, "orphan"), timeout=20)
            await asyncio.sleep(0.2)
        finally:
            watcher.cancel()
        assert not await _gone(client, "stays")
    assert [event["type"] for event in seen][-1] == "DELETED"
    failed = [event["status"] for event in seen if event["status"].get("phase") == "Failed"]
    assert failed, seen
    condition = next(c for c in failed[0]["conditions"] if c["type"] == "DisruptionTarget")
    assert (condition["reason"], condition["message"]) == (
        "DeletionByPodGC",
        "PodGC: node no longer exists",
    )


async def test_a_terminating_pod_on_an_out_of_service_node_is_removed(
    client: Client, tmp_path: Path
) -> None:
    await client.create(NODES, _host("hv-down", tmp_path))
    await client.create(PODS, _pod("stuck", "hv-down"))
    await client.delete(PODS, "stuck", "default")  # graceful: waits for an agent that is gone
    stuck = await client.get(PODS, "stuck", "default")
    assert stuck["metadata"]["deletionTimestamp"]

    async with running(PodGarbageCollector(client, quarantine=1.0)):
        await asyncio.sleep(0.5)
        assert not await _gone(client, "stuck")  # Ready, not tainted: still the agent's
        status = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
        await client.patch(NODES, "hv-down", status, subresource="status")
        taint = {"key": OUT_OF_SERVICE, "value": "nodeshutdown", "effect": "NoExecute"}
        await client.patch(NODES, "hv-down", {"spec": {"taints": [taint]}})
        await eventually(lambda: _gone(client, "stuck"), timeout=20)
