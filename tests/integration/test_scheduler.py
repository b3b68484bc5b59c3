"""The scheduler and the `pods/binding` subresource against the real API server, in-process.

`AsgiTransport(ApiServer(SqliteStore(...)))`: nodes with allocatable resources, pods with
requests, selectors and tolerations; the scheduler binds what fits, reports what does not
(PodScheduled=False and a FailedScheduling Event) and binds it once a node for it appears.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from unistack.client.api import ApiError, Client, Conflict, Invalid, NotFound
from unistack.client.resources import EVENTS, NODES, PODS
from unistack.kube.scheduler.scheduler import Scheduler

Obj = dict[str, Any]
pytestmark = pytest.mark.timeout(60)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def add_node(client: Client, name: str, cpu: str, **spec: Any) -> None:
    labels = spec.pop("labels", {})
    node = {"metadata": {"name": name, "labels": labels}, "spec": spec}
    created = await client.create(NODES, {"apiVersion": "v1", "kind": "Node", **node})
    created["status"] = {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}
    await client.update_status(NODES, created)


async def add_pod(client: Client, name: str, cpu: str = "100m", **spec: Any) -> Obj:
    container = {"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [container], **spec},
    }
    return await client.create(PODS, pod)


async def node_of(client: Client, name: str) -> str | None:
    pod = await client.get(PODS, name, "default")
    node: str | None = pod["spec"].get("nodeName")
    return node


def binding(pod: str, node: str) -> Obj:
    target = {"kind": "Node", "name": node}
    return {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod}, "target": target}


async def bind(client: Client, pod: str, node: str, body: Obj | None = None) -> Obj:
    path = PODS.path("default", pod, "binding")
    return await client.request_json("POST", path, body=body or binding(pod, node))


@contextlib.asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[None]:
    task = asyncio.create_task(scheduler.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --- the binding subresource ------------------------------------------------------------------


async def test_binding_sets_the_node_and_the_scheduled_condition(client: Client) -> None:
    await add_pod(client, "p")
    answer = await bind(client, "p", "n1")
    assert answer == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": 201,
    }
    pod = await client.get(PODS, "p", "default")
    assert pod["spec"]["nodeName"] == "n1"
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions["PodScheduled"] == "True"


async def test_binding_a_bound_pod_is_a_conflict(client: Client) -> None:
    await add_pod(client, "p")
    await bind(client, "p", "n1")
    with pytest.raises(Conflict) as caught:
        await bind(client, "p", "n2")
    assert caught.value.message == (
        'Operation cannot be fulfilled on pods/binding "p": pod p is already assigned to node "n1"'
    )
    assert await node_of(client, "p") == "n1"


async def test_binding_a_missing_pod_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound) as caught:
        await bind(client, "ghost", "n1")
    assert caught.value.message == 'pods "ghost" not found'


async def test_binding_needs_a_node_name_matching_pod_name_and_uid(client: Client) -> None:
    await add_pod(client, "p")
    with pytest.raises(Invalid):
        await bind(client, "p", "", {"metadata": {"name": "p"}, "target": {"kind": "Node"}})
    with pytest.raises(ApiError) as caught:
        await bind(client, "p", "n1", binding("other", "n1"))
    assert caught.value.status == 400
    stale = binding("p", "n1")
    stale["metadata"]["uid"] = "not-the-uid"
    with pytest.raises(Conflict):
        await bind(client, "p", "n1", stale)
    assert await node_of(client, "p") is None


async def test_discovery_lists_the_binding_subresource(client: Client) -> None:
    listing = await client.get_path("/api/v1")
    entry = next(r for r in listing["resources"] if r["name"] == "pods/binding")
    assert (entry["kind"], entry["verbs"]) == ("Binding", ["create"])


# --- the scheduler ----------------------------------------------------------------------------


async def test_scheduler_binds_what_fits_and_retries_the_rest_when_a_node_appears(
    client: Client,
) -> None:
    await add_node(client, "small", "1", labels={"disk": "hdd"})
    taint = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    await add_node(client, "tainted", "4", labels={"disk": "ssd"}, taints=[taint])
    toleration = {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}
    await add_pod(client, "fits", "500m", nodeSelector={"disk": "hdd"})
    await add_pod(client, "tolerant", "2", tolerations=[toleration])
    await add_pod(client, "big", "3")
    await add_pod(client, "elsewhere", "100m", schedulerName="other-scheduler")
    scheduler = Scheduler(client, backoff_initial=30)
    async with running(scheduler):
        await eventually(lambda: _is_bound(client, "fits", "small"))
        await eventually(lambda: _is_bound(client, "tolerant", "tainted"))
        await eventually(lambda: _unschedulable_message(client, "big"))
        big = await client.get(PODS, "big", "default")
        condition = _scheduled(big)
        assert condition["reason"] == "Unschedulable"
        assert condition["message"] == (
            "0/2 nodes are available: 1 Insufficient cpu, "
            "1 node(s) had untolerated taint {dedicated: db}."
        )
        await eventually(lambda: _has_event(client, "big", "FailedScheduling", "Warning"))
        await add_node(client, "large", "8")
        await eventually(lambda: _is_bound(client, "big", "large"))
        await eventually(lambda: _has_event(client, "big", "Scheduled", "Normal"))
        assert await node_of(client, "elsewhere") is None


async def test_scheduler_does_not_overcommit_a_node(client: Client) -> None:
    await add_node(client, "only", "1")
    for n in range(3):
        await add_pod(client, f"p{n}", "400m")
    scheduler = Scheduler(client, backoff_initial=30)
    async with running(scheduler):
        await eventually(lambda: _count_bound(client, 2))
        await eventually(lambda: _unschedulable_count(client, 1))
        pending = [p for p in await _pods(client) if not p["spec"].get("nodeName")]
        assert _scheduled(pending[0])["message"] == "0/1 nodes are available: 1 Insufficient cpu."
        bound = [p for p in await _pods(client) if p["spec"].get("nodeName")]
        await client.delete(PODS, bound[0]["metadata"]["name"], "default", grace_period=0)
        await eventually(lambda: _is_bound(client, pending[0]["metadata"]["name"], "only"))


# --- helpers ----------------------------------------------------------------------------------


def _scheduled(pod: Obj) -> Obj:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "PodScheduled"), {})


async def _pods(client: Client) -> list[Obj]:
    listing = await client.list(PODS, "default")
    return list(listing["items"])


async def _is_bound(client: Client, name: str, node: str) -> bool:
    return await node_of(client, name) == node


async def _unschedulable_message(client: Client, name: str) -> bool:
    pod = await client.get(PODS, name, "default")
    return _scheduled(pod).get("status") == "False"


async def _count_bound(client: Client, count: int) -> bool:
    return sum(bool(p["spec"].get("nodeName")) for p in await _pods(client)) == count


async def _unschedulable_count(client: Client, count: int) -> bool:
    pods = await _pods(client)
    return sum(_scheduled(p).get("reason") == "Unschedulable" for p in pods) == count


async def _has_event(client: Client, pod: str, reason: str, kind: str) -> bool:
    events = (await client.list(EVENTS, "default"))["items"]
    return any(
        e["involvedObject"]["name"] == pod and e["reason"] == reason and e["type"] == kind
        for e in events
    )


async def test_a_node_keeps_the_status_it_is_created_with(client: Client) -> None:
    """kube's node strategy keeps status on create: a kubelet registers its capacity in one
    request. Other kinds with a status subresource reset it."""
    status = {"capacity": {"cpu": "3", "memory": "8Gi", "pods": "110"}}
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "kubelet"}, "status": status}
    created = await client.create(NODES, node)
    assert created["status"]["allocatable"] == status["capacity"]  # defaulted from capacity
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "with-status", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running"},
    }
    assert (await client.create(PODS, pod)).get("status", {}).get("phase") != "Running"
