"""The control-plane operator against the real API server, in-process.

No Deployment controller runs, so the test writes Deployments' status itself where it needs
them ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any

import pytest

from tests.integration.harness import eventually, running
from unistack.client.api import AlreadyExists, ApiError, Client, NotFound
from unistack.client.resources import (
    DEPLOYMENTS,
    ENDPOINTSLICES,
    NAMESPACES,
    PODS,
    SECRETS,
    SERVICES,
)
from unistack.controlplane import kind, operator, presets, render

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
            return len(await deployments(client)) == len(presets.SERVICES)

        await eventually(rendered)
        services = await client.list(SERVICES, kind.NAMESPACE)
        others = {"dns", "registry", "gateway", "controllers"}
        apis = set(await deployments(client)) - others
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
        assert cp["status"]["ready"] == "9/9" and cp["status"]["release"] == "1.0"
        assert cp["status"]["services"]["compute"]["desired"] == 3

    # the ControlPlane owns what it rendered (the garbage collector deletes it with it)
    deployment = (await deployments(client))["compute-api"]
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == cp["metadata"]["uid"]


def dns_pod(name: str) -> Obj:
    labels = {"app.kubernetes.io/name": "dns"}
    container = {"name": "dns", "image": "busybox"}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": kind.NAMESPACE, "labels": labels},
            "spec": {"containers": [container]}}  # fmt: skip


async def set_ready(client: Client, name: str, ip: str, ready: bool) -> None:
    condition = {"type": "Ready", "status": "True" if ready else "False"}
    status = {"phase": "Running", "podIP": ip, "conditions": [condition]}
    await client.patch(
        PODS, name, {"status": status}, namespace=kind.NAMESPACE, subresource="status"
    )


async def test_operator_keeps_kube_dns_on_the_ready_dns_pods(client: Client) -> None:
    """The DNS pods live in the control plane's namespace; every pod's resolv.conf names
    kube-system/kube-dns: the operator keeps that Service's slice on the Ready ones."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": kind.NAMESPACE}}
    await client.create(NAMESPACES, namespace)
    with contextlib.suppress(AlreadyExists):
        system = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}
        await client.create(NAMESPACES, system)
    await operator.install_definition(client)
    await client.create(kind.REF, kind.new("1.0"), kind.NAMESPACE)
    for name, ip in (("dns-a", "10.0.0.3"), ("dns-b", "10.0.0.4")):
        await client.create(PODS, dns_pod(name), kind.NAMESPACE)
        await set_ready(client, name, ip, True)
    env = dataclasses.replace(ENV, cluster_dns="10.96.0.10")

    async def listed() -> list[str]:
        found = await client.get(ENDPOINTSLICES, render.DNS_SLICE, "kube-system")
        return [a for e in found["endpoints"] for a in e["addresses"]]

    async with running(operator.Operator(client, env, resync=0.5)):

        async def both() -> bool:
            with contextlib.suppress(NotFound):
                return await listed() == ["10.0.0.3", "10.0.0.4"]
            return False

        await eventually(both)
        service = await client.get(SERVICES, "kube-dns", "kube-system")
        assert service["spec"]["clusterIP"] == "10.96.0.10"
        await set_ready(client, "dns-a", "10.0.0.3", False)  # its probe failed

        async def one() -> bool:
            return await listed() == ["10.0.0.4"]

        await eventually(one)


async def test_rotated_token_keys_roll_the_api_pods(client: Client) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": kind.NAMESPACE}}
    await client.create(NAMESPACES, namespace)
    await operator.install_definition(client)
    await client.create(kind.REF, kind.new("1.0"), kind.NAMESPACE)
    secret = render.credential_secrets(kind.NAMESPACE, b"kubeconfig", b"pw", {"0": b"a", "1": b"b"})
    keys = await client.create(SECRETS, secret[1], kind.NAMESPACE)

    async def annotated() -> dict[str, str]:
        return {
            name: (d["spec"]["template"]["metadata"].get("annotations") or {}).get(
                render.KEYS_HASH, ""
            )
            for name, d in (await deployments(client)).items()
        }

    async with running(operator.Operator(client, ENV, resync=0.5)):

        async def rolled_to(digest: str) -> bool:
            found = await annotated()
            apis = {f"{s.name}-api" for s in presets.SERVICES if s.component == presets.API}
            return bool(found) and all(found.get(name) == digest for name in apis)

        await eventually(lambda: rolled_to(render.secret_hash(keys)))
        others = {name: v for name, v in (await annotated()).items() if not name.endswith("-api")}
        assert others and set(others.values()) == {""}  # DNS, gateway, controllers: no keys
        rotated = {**keys, "data": render.credential_secrets(
            kind.NAMESPACE, b"", b"", {"0": b"c", "1": b"b", "2": b"a"})[1]["data"]}  # fmt: skip
        updated = await client.update(SECRETS, rotated)
        assert render.secret_hash(updated) != render.secret_hash(keys)
        await eventually(lambda: rolled_to(render.secret_hash(updated)))


async def test_images_are_pinned_by_digest_and_a_moved_tag_rolls_them(client: Client) -> None:
    """On one machine the operator names each image by the digest its release's tag has in
    the image store: it renders nothing while the image is not there, and when a rebuild
    moves the tag (the source changed, `unistack up` again) every Deployment rolls."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": kind.NAMESPACE}}
    await client.create(NAMESPACES, namespace)
    await operator.install_definition(client)
    await client.create(kind.REF, kind.new("1.0"), kind.NAMESPACE)
    stored: dict[str, str] = {}
    pinned = dataclasses.replace(ENV, pin_images=True)

    async def images() -> set[str]:
        return {
            d["spec"]["template"]["spec"]["containers"][0]["image"]
            for d in (await deployments(client)).values()
        }

    async with running(operator.Operator(client, pinned, resync=0.5, resolve=stored.get)):
        await asyncio.sleep(1.5)  # the registry is still building the image
        assert await deployments(client) == {}
        stored["1.0"] = "sha256:" + "a" * 64
        tagged = "127.0.0.1:5000/unistack/controlplane:1.0"
        await eventually(lambda: images_are(images, {f"{tagged}@{stored['1.0']}"}))
        await eventually(lambda: rendered_all(client))  # the operator creates them in turn
        stored["1.0"] = "sha256:" + "b" * 64  # rebuilt under the same tag
        await eventually(lambda: images_are(images, {f"{tagged}@{stored['1.0']}"}))


async def rendered_all(client: Client) -> bool:
    return len(await deployments(client)) == len(presets.SERVICES)


async def images_are(found: Any, wanted: set[str]) -> bool:
    return bool(await found()) and await found() == wanted
