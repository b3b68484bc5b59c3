"""The StatefulSet controller against the real API server, in-process.

The controller runs as a task over `AsgiTransport(ApiServer(SqliteStore(...)))`. No scheduler
or node agent runs, so the test plays the kubelet: it marks pods Running and Ready through the
status subresource, one at a time, to watch OrderedReady make them in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from tests.integration.harness import eventually, running
from unistack.client.api import Client, NotFound
from unistack.client.resources import PERSISTENTVOLUMECLAIMS, PODS, STATEFULSETS
from unistack.kube.statefulset import POD_NAME_LABEL, StatefulSetController

Obj = dict[str, Any]
pytestmark = pytest.mark.timeout(60)


def statefulset(replicas: int = 2) -> Obj:
    labels = {"app": "db"}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "serviceName": "web",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "db", "image": "busybox"}]},
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }


async def pod_names(client: Client) -> list[str]:
    listing = await client.list(PODS, "default")
    return sorted(
        p["metadata"]["name"]
        for p in listing["items"]
        if not p["metadata"].get("deletionTimestamp")
    )


async def claim_names(client: Client) -> list[str]:
    listing = await client.list(PERSISTENTVOLUMECLAIMS, "default")
    return sorted(c["metadata"]["name"] for c in listing["items"])


async def mark_ready(client: Client, name: str) -> None:
    """Play the kubelet for one pod: Running and Ready."""
    status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    await client.patch(PODS, name, {"status": status}, namespace="default", subresource="status")


async def test_pods_come_up_in_order_with_their_claims(client: Client) -> None:
    async with running(StatefulSetController(client)):
        await client.create(STATEFULSETS, statefulset(replicas=2))

        async def has(names: list[str]) -> bool:
            return await pod_names(client) == names

        await eventually(lambda: has(["web-0"]))
        await asyncio.sleep(0.3)
        assert await pod_names(client) == ["web-0"]  # web-1 waits for web-0 to be ready
        assert await claim_names(client) == ["data-web-0"]
        web0 = await client.get(PODS, "web-0", "default")
        assert web0["metadata"]["labels"][POD_NAME_LABEL] == "web-0"
        assert (web0["spec"]["hostname"], web0["spec"]["subdomain"]) == ("web-0", "web")
        claim_volumes = [v for v in web0["spec"]["volumes"] if "persistentVolumeClaim" in v]
        assert claim_volumes == [
            {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}}
        ]

        await mark_ready(client, "web-0")
        await eventually(lambda: has(["web-0", "web-1"]))
        assert await claim_names(client) == ["data-web-0", "data-web-1"]
        await mark_ready(client, "web-1")

        async def status_ready() -> bool:
            status = (await client.get(STATEFULSETS, "web", "default")).get("status", {})
            return status.get("readyReplicas") == 2 and status.get("updatedReplicas") == 2

        await eventually(status_ready)

        old_uid = (await client.get(PODS, "web-1", "default"))["metadata"]["uid"]
        await client.delete(PODS, "web-1", "default")

        async def recreated() -> bool:
            with contextlib.suppress(NotFound):
                pod = await client.get(PODS, "web-1", "default")
                return bool(pod["metadata"]["uid"] != old_uid)
            return False

        await eventually(recreated)

        await client.patch(STATEFULSETS, "web", {"spec": {"replicas": 1}}, namespace="default")
        await eventually(lambda: has(["web-0"]))
        assert await claim_names(client) == ["data-web-0", "data-web-1"]  # claims are retained
