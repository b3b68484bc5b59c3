"""The Job controller against the real API server, in-process.

`JobController` runs as a task over `AsgiTransport(ApiServer(SqliteStore(...)))`. No kubelet
runs, so the test plays it: it marks pods Succeeded or Failed through the status subresource.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.harness import eventually, running
from unistack.client.api import Client
from unistack.client.resources import JOBS, PODS
from unistack.kube.job import JobController

Obj = dict[str, Any]
pytestmark = pytest.mark.timeout(60)


def job(**spec: Any) -> Obj:
    containers = [{"name": "work", "image": "busybox:1"}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "work", "namespace": "default"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": containers}}} | spec,
    }


async def running_pods(client: Client) -> list[Obj]:
    listing = await client.list(PODS, "default")
    finished = ("Succeeded", "Failed")
    return [p for p in listing["items"] if (p.get("status") or {}).get("phase") not in finished]


async def finish(client: Client, pod: Obj, phase: str) -> None:
    name = pod["metadata"]["name"]
    body = {"status": {"phase": phase}}
    await client.patch(PODS, name, body, namespace="default", subresource="status")


async def condition(client: Client) -> str | None:
    obj = await client.get(JOBS, "work", "default")
    conditions = (obj.get("status") or {}).get("conditions") or []
    return conditions[-1]["type"] if conditions else None


async def test_create_defaults_and_generates_the_selector(client: Client) -> None:
    created = await client.create(JOBS, job())
    uid = created["metadata"]["uid"]
    assert created["spec"]["selector"] == {
        "matchLabels": {"batch.kubernetes.io/controller-uid": uid}
    }
    assert created["spec"]["template"]["metadata"]["labels"]["job-name"] == "work"
    assert (created["spec"]["completions"], created["spec"]["backoffLimit"]) == (1, 6)


async def test_a_job_runs_its_completions_one_at_a_time(client: Client) -> None:
    await client.create(JOBS, job(completions=2, parallelism=1))
    async with running(JobController(client)):
        await eventually(lambda: _count_is(client, 1))
        first = (await running_pods(client))[0]
        assert first["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "work"
        await finish(client, first, "Succeeded")
        await eventually(lambda: _new_pod(client, first))
        await finish(client, (await running_pods(client))[0], "Succeeded")
        await eventually(lambda: _condition_is(client, "Complete"))
    done = await client.get(JOBS, "work", "default")
    assert done["status"]["succeeded"] == 2
    assert done["status"]["completionTime"]


async def test_a_job_past_its_backoff_limit_fails(client: Client) -> None:
    await client.create(JOBS, job(backoffLimit=1))
    async with running(JobController(client)):
        for _ in range(2):
            await eventually(lambda: _count_is(client, 1))
            await finish(client, (await running_pods(client))[0], "Failed")
        await eventually(lambda: _condition_is(client, "Failed"))
    failed = await client.get(JOBS, "work", "default")
    assert failed["status"]["conditions"][-1]["reason"] == "BackoffLimitExceeded"
    assert failed["status"]["failed"] == 2


async def _count_is(client: Client, count: int) -> bool:
    return len(await running_pods(client)) == count


async def _new_pod(client: Client, old: Obj) -> bool:
    pods = await running_pods(client)
    return len(pods) == 1 and pods[0]["metadata"]["name"] != old["metadata"]["name"]


async def _condition_is(client: Client, kind: str) -> bool:
    return await condition(client) == kind
