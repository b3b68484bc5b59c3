"""The Endpoints and EndpointSlice controller against the real API server, in-process.

`EndpointsController` runs as a task over `AsgiTransport(ApiServer(SqliteStore(...)))`. No
kubelet runs, so the test gives pods their IP and Ready condition through the status
subresource. No garbage collector runs either, so slices are checked by their owner.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.harness import eventually, running
from unistack.client.api import Client, NotFound
from unistack.client.resources import ENDPOINTS, ENDPOINTSLICES, PODS, SERVICES
from unistack.kube.endpointslices import EndpointsController

Obj = dict[str, Any]
pytestmark = pytest.mark.timeout(60)


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {
        "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
    },
}


def pod(name: str) -> Obj:
    container = {"name": "web", "image": "busybox:1",
                 "ports": [{"name": "http", "containerPort": 8080}]}  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [container]},
    }


async def set_ready(client: Client, name: str, ip: str, ready: bool) -> None:
    condition = {"type": "Ready", "status": "True" if ready else "False"}
    status = {"phase": "Running", "podIP": ip, "conditions": [condition]}
    await client.patch(PODS, name, {"status": status}, namespace="default", subresource="status")


async def endpoints(client: Client) -> Obj | None:
    try:
        return await client.get(ENDPOINTS, "web", "default")
    except NotFound:
        return None


async def slices(client: Client) -> list[Obj]:
    listing = await client.list(
        ENDPOINTSLICES, "default", label_selector="kubernetes.io/service-name=web"
    )
    return list(listing["items"])


def addresses(endpoints: Obj | None, key: str) -> list[str]:
    subsets = (endpoints or {}).get("subsets") or []
    return sorted(a["ip"] for s in subsets for a in s.get(key) or [])


async def test_endpoints_follow_pod_readiness_and_the_service(client: Client) -> None:
    service = await client.create(SERVICES, SERVICE)
    for name in ("web-a", "web-b"):
        await client.create(PODS, pod(name))
    await set_ready(client, "web-a", "10.1.0.1", True)
    await set_ready(client, "web-b", "10.1.0.2", True)
    async with running(EndpointsController(client)):

        async def both_ready() -> bool:
            return addresses(await endpoints(client), "addresses") == ["10.1.0.1", "10.1.0.2"]

        await eventually(both_ready)
        current = await endpoints(client)
        assert current is not None
        (subset,) = current["subsets"]
        assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
        target = subset["addresses"][0]["targetRef"]
        assert (target["kind"], target["name"]) == ("Pod", "web-a")

        async def one_slice_ready() -> bool:
            found = await slices(client)
            return len(found) == 1 and len(found[0]["endpoints"]) == 2

        await eventually(one_slice_ready)
        (endpoint_slice,) = await slices(client)
        assert endpoint_slice["metadata"]["name"].startswith("web-")
        assert endpoint_slice["addressType"] == "IPv4"
        assert endpoint_slice["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
        (owner,) = endpoint_slice["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == (
            "Service", service["metadata"]["uid"], True)  # fmt: skip

        await set_ready(client, "web-b", "10.1.0.2", False)

        async def b_not_ready() -> bool:
            current = await endpoints(client)
            return addresses(current, "notReadyAddresses") == ["10.1.0.2"]

        await eventually(b_not_ready)
        assert addresses(await endpoints(client), "addresses") == ["10.1.0.1"]

        async def slice_not_ready() -> bool:
            (endpoint_slice,) = await slices(client)
            ready = {
                e["addresses"][0]: e["conditions"]["ready"] for e in endpoint_slice["endpoints"]
            }
            return ready == {"10.1.0.1": True, "10.1.0.2": False}

        await eventually(slice_not_ready)

        await client.delete(SERVICES, "web", "default")

        async def gone() -> bool:
            return await endpoints(client) is None

        await eventually(gone)


async def test_services_without_selector_keep_their_endpoints(client: Client) -> None:
    manual = {**SERVICE, "spec": {"ports": [{"port": 80}]}}
    await client.create(SERVICES, manual)
    mine = {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "web", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}]}  # fmt: skip
    await client.create(ENDPOINTS, mine)
    await client.create(PODS, pod("web-a"))
    await set_ready(client, "web-a", "10.1.0.1", True)
    async with running(EndpointsController(client)):
        await asyncio.sleep(0.5)
        assert addresses(await endpoints(client), "addresses") == ["192.0.2.1"]
        assert await slices(client) == []
        await client.delete(SERVICES, "web", "default")
        await asyncio.sleep(0.3)
        assert await endpoints(client) is not None
