"""The control-plane operator against the real API server, in-process.

No Deployment controller runs, so the test writes Deployments' status itself where it needs
them ready.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.harness import eventually, running
from unistack.client.api import ApiError, Client
from unistack.client.resources import DEPLOYMENTS, NAMESPACES, SERVICES
from unistack.controlplane import kind, operator, render

Obj = dict[str, Any]
pytestmark = pytest.mark.timeout(60)
ENV = render.Environment(
    registry="127.0.0.1:5000", internal_url="http://10.244.0.1:8080", images_dir="/images"
)


async def deployments(client: Client) -> dict[str, Obj]:
    found = await client.list(DEPLOYMENTS, kind.NAMESPACE)
    return {d["metadata"]["name"]: d for d in found["items"]}


async def test_operator_renders_heals_scales_and_reports(client: Client) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": kind.NAMESPACE}}
    await client.create(NAMESPACES, namespace)
    await operator.install_definition(client)
    with pytest.raises(ApiError) as rejected:
        await client.create(kind.REF, kind.new("1.0", size="huge"), kind.NAMESPACE)
    assert rejected.value.status == 422
    await client.create(kind.REF, kind.new("1.0", size="small"), kind.NAMESPACE)

    async with running(operator.Operator(client, ENV, resync=0.5)):

        async def rendered() -> bool:
            return len(await deployments(client)) == 7

        await eventually(rendered)
        services = await client.list(SERVICES, kind.NAMESPACE)
        apis = set(await deployments(client)) - {"dns", "controllers"}  # routed: the APIs
        assert {s["metadata"]["name"] for s in services["items"]} == apis
        assert {d["spec"]["replicas"] for d in (await deployments(client)).values()} == {2}

        # a deleted Deployment comes back
        await client.delete(DEPLOYMENTS, "identity-api", kind.NAMESPACE)

        async def healed() -> bool:
            return "identity-api" in await deployments(client)

        await eventually(healed)

        # an override scales one service
        patch = {"spec": {"services": {"compute": {"replicas": 3}}}}
        await client.patch(kind.REF, kind.NAME, patch, namespace=kind.NAMESPACE)

        async def scaled() -> bool:
            return (await deployments(client))["compute-api"]["spec"]["replicas"] == 3

        await eventually(scaled)

        # ready Deployments make the ControlPlane Ready
        for name, deployment in (await deployments(client)).items():
            replicas = deployment["spec"]["replicas"]
            status = {
                "observedGeneration": deployment["metadata"]["generation"],
                "replicas": replicas,
                "readyReplicas": replicas,
                "updatedReplicas": replicas,
            }
            await client.patch(
                DEPLOYMENTS, name, {"status": status}, namespace=kind.NAMESPACE,
                subresource="status",
            )  # fmt: skip

        async def reported() -> bool:
            cp = await client.get(kind.REF, kind.NAME, kind.NAMESPACE)
            return (cp.get("status") or {}).get("phase") == "Ready"

        await eventually(reported)
        cp = await client.get(kind.REF, kind.NAME, kind.NAMESPACE)
        assert cp["status"]["ready"] == "7/7" and cp["status"]["release"] == "1.0"
        assert cp["status"]["services"]["compute"]["desired"] == 3

    # the ControlPlane owns what it rendered (the garbage collector deletes it with it)
    deployment = (await deployments(client))["compute-api"]
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == cp["metadata"]["uid"]
