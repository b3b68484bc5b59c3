"""The Deployment and ReplicaSet controllers against the real API server, in-process.

Both controllers run as tasks over `AsgiTransport(ApiServer(SqliteStore(...)))`. No scheduler
or node agent runs, so the test plays the kubelet: it marks pods Running and Ready through the
status subresource. No garbage collector runs either, so deletion is checked through the
ownerReferences the collector would follow.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from tests.integration.harness import eventually, running
from unistack.client.api import Client
from unistack.client.resources import DEPLOYMENTS, PODS, REPLICASETS
from unistack.kube.deployment import HASH_LABEL, REVISION, DeploymentController
from unistack.kube.replicaset import ReplicaSetController

Obj = dict[str, Any]
pytestmark = pytest.mark.timeout(60)


def deployment(image: str = "busybox:1", replicas: int = 3) -> Obj:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
        },
    }


async def pods(client: Client) -> list[Obj]:
    listing = await client.list(PODS, "default")
    return [p for p in listing["items"] if not p["metadata"].get("deletionTimestamp")]


async def replicasets(client: Client) -> list[Obj]:
    return list((await client.list(REPLICASETS, "default"))["items"])


async def mark_ready(client: Client) -> None:
    """Play the kubelet: every pod not yet Ready becomes Running and Ready."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ready = {"type": "Ready", "status": "True", "lastTransitionTime": now}
    for pod in await pods(client):
        if pod.get("status", {}).get("phase") == "Running":
            continue
        status = {"phase": "Running", "conditions": [ready]}
        await client.patch(
            PODS, pod["metadata"]["name"], {"status": status}, namespace="default",
            subresource="status",
        )  # fmt: skip


async def rolled_out(client: Client, replicas: int) -> bool:
    """What `kubectl rollout status` waits for, with the pods made ready as they come."""
    await mark_ready(client)
    deploy = await client.get(DEPLOYMENTS, "web", "default")
    status = deploy.get("status", {})
    progressing = [c for c in status.get("conditions", []) if c["type"] == "Progressing"]
    return (
        status.get("observedGeneration") == deploy["metadata"]["generation"]
        and status.get("updatedReplicas") == replicas
        and status.get("replicas") == replicas
        and status.get("availableReplicas") == replicas
        and bool(progressing)
        and progressing[0]["reason"] == "NewReplicaSetAvailable"
    )


def controller_ref(obj: Obj) -> Obj:
    refs = [r for r in obj["metadata"].get("ownerReferences", []) if r.get("controller")]
    assert len(refs) == 1
    return refs[0]


async def test_a_deployment_rolls_out_scales_and_updates(client: Client) -> None:
    async with running(ReplicaSetController(client), DeploymentController(client)):
        deploy = await client.create(DEPLOYMENTS, deployment())

        async def three_pods() -> bool:
            return len(await pods(client)) == 3

        await eventually(three_pods)
        [rs] = await replicasets(client)
        digest = rs["metadata"]["labels"][HASH_LABEL]
        assert rs["metadata"]["name"] == f"web-{digest}"
        assert rs["metadata"]["annotations"][REVISION] == "1"
        assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", HASH_LABEL: digest}
        assert controller_ref(rs)["uid"] == deploy["metadata"]["uid"]
        for pod in await pods(client):
            assert pod["metadata"]["labels"] == {"app": "web", HASH_LABEL: digest}
            ref = controller_ref(pod)
            assert (ref["kind"], ref["uid"]) == ("ReplicaSet", rs["metadata"]["uid"])
            assert ref["blockOwnerDeletion"] is True

        await eventually(lambda: rolled_out(client, 3))
        deploy = await client.get(DEPLOYMENTS, "web", "default")
        assert deploy["status"]["readyReplicas"] == 3
        available = [c for c in deploy["status"]["conditions"] if c["type"] == "Available"]
        assert available[0]["status"] == "True"

        patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "b:2"}]}}}}
        await client.patch(DEPLOYMENTS, "web", patch, namespace="default", patch_type="strategic")
        await eventually(lambda: rolled_out(client, 3))
        by_revision = {r["metadata"]["annotations"][REVISION]: r for r in await replicasets(client)}
        assert sorted(by_revision) == ["1", "2"]
        assert by_revision["1"]["spec"]["replicas"] == 0
        assert by_revision["2"]["spec"]["replicas"] == 3
        new_uid = by_revision["2"]["metadata"]["uid"]
        assert all(controller_ref(p)["uid"] == new_uid for p in await pods(client))
        for pod in await pods(client):
            assert pod["spec"]["containers"][0]["image"] == "b:2"

        await client.patch(DEPLOYMENTS, "web", {"spec": {"replicas": 1}}, namespace="default")
        await eventually(lambda: rolled_out(client, 1))
        assert len(await pods(client)) == 1

        await client.delete(DEPLOYMENTS, "web", "default", propagation_policy="Background")
        for rs in await replicasets(client):
            assert controller_ref(rs)["uid"] == deploy["metadata"]["uid"]


async def test_a_replicaset_adopts_orphans_and_replaces_deleted_pods(client: Client) -> None:
    orphan = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "stray", "namespace": "default", "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "db", "image": "busybox"}]},
    }
    await client.create(PODS, orphan)
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "busybox"}]},
            },
        },
    }
    async with running(ReplicaSetController(client), DeploymentController(client)):
        created = await client.create(REPLICASETS, rs)

        async def two_owned() -> bool:
            found = await pods(client)
            owners = [
                controller_ref(p)["uid"] for p in found if p["metadata"].get("ownerReferences")
            ]
            return len(found) == 2 and owners == [created["metadata"]["uid"]] * 2

        await eventually(two_owned)
        assert "stray" in {p["metadata"]["name"] for p in await pods(client)}
        await client.delete(PODS, "stray", "default")
        await eventually(two_owned)

        async def status_ready() -> bool:
            await mark_ready(client)
            status = (await client.get(REPLICASETS, "db", "default")).get("status", {})
            return status.get("readyReplicas") == 2 and status.get("availableReplicas") == 2

        await eventually(status_ready)
