"""The DaemonSet controller against the real API server, in-process.

The controller runs as a task over `AsgiTransport(ApiServer(SqliteStore(...)))`. No scheduler
runs, so daemon pods stay unbound: the node each is for is read from its pinning affinity.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.integration.harness import eventually, running
from unistack.client.api import Client
from unistack.client.resources import DAEMONSETS, NODES, PODS
from unistack.kube.daemonset import DEFAULT_TOLERATIONS, DaemonSetController, target_node

Obj = dict[str, Any]
pytestmark = pytest.mark.timeout(60)


def node(name: str, taints: list[Obj] | None = None) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {"taints": taints or []},
    }


DAEMONSET = {
    "apiVersion": "apps/v1",
    "kind": "DaemonSet",
    "metadata": {"name": "agent", "namespace": "default"},
    "spec": {
        "selector": {"matchLabels": {"app": "agent"}},
        "template": {
            "metadata": {"labels": {"app": "agent"}},
            "spec": {"containers": [{"name": "agent", "image": "busybox"}]},
        },
    },
}


async def pods_by_node(client: Client) -> dict[str | None, list[Obj]]:
    listing = await client.list(PODS, "default")
    found: dict[str | None, list[Obj]] = {}
    for pod in listing["items"]:
        if not pod["metadata"].get("deletionTimestamp"):
            found.setdefault(target_node(pod), []).append(pod)
    return found


def on_nodes(client: Client, *names: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        found = await pods_by_node(client)
        return sorted(found, key=str) == sorted(names) and all(len(p) == 1 for p in found.values())

    return check


async def test_a_daemonset_runs_one_pod_per_eligible_node(client: Client) -> None:
    await client.create(NODES, node("n1"))
    await client.create(NODES, node("n2", [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]))
    async with running(DaemonSetController(client)):
        ds = await client.create(DAEMONSETS, DAEMONSET)
        await eventually(on_nodes(client, "n1"))
        [pod] = (await pods_by_node(client))["n1"]
        assert pod["metadata"]["name"].startswith("agent-")
        [ref] = pod["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["uid"], ref["controller"]) == (
            "DaemonSet",
            ds["metadata"]["uid"],
            True,
        )
        terms = pod["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"]
        assert terms == [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
        ]
        assert all(t in pod["spec"]["tolerations"] for t in DEFAULT_TOLERATIONS)

        async def status_counts() -> bool:
            status = (await client.get(DAEMONSETS, "agent", "default")).get("status", {})
            return (
                status.get("desiredNumberScheduled") == 1
                and status.get("currentNumberScheduled") == 1
                and status.get("observedGeneration") == 1
            )

        await eventually(status_counts)

        await client.create(NODES, node("n3"))
        await eventually(on_nodes(client, "n1", "n3"))

        await client.delete(NODES, "n1")
        await eventually(on_nodes(client, "n3"))
