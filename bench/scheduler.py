"""Scheduler throughput: 10,000 pending pods onto 1,000 fake nodes, as kube-scheduler's
scheduler_perf "SchedulingBasic" measures it.

The nodes are Node objects with no agent behind them (4 cpu, 32 GiB, 110 pods each); the
pods ask for 100m cpu and 128 MiB and name their own `schedulerName`, so the cluster's
default scheduler leaves them alone and the scheduler under test — the same
`unistack.kube.scheduler.Scheduler`, started in its own process by this module's `main` —
does the work against the real API server, bindings and Events included. The real node of
the benchmark cluster is cordoned so that nothing is started on it. Throughput is the number
of pods bound divided by the time from the first binding to the last, as a watch sees them;
the per-second samples give the median as scheduler_perf reports it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

from bench.apiserver import Row
from bench.harness import Server, percentile

NODES = 1000
PODS = 10_000
NAMESPACE = "sched-bench"
SCHEDULER = "unistack-bench-scheduler"


def _node(index: int) -> bytes:
    return orjson.dumps(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": f"fake-{index:04d}",
                "labels": {
                    "kubernetes.io/hostname": f"fake-{index:04d}",
                    "topology.kubernetes.io/zone": f"zone-{index % 3}",
                },
            },
            "status": {
                "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }
    )


def _pod(index: int) -> bytes:
    requests = {"cpu": "100m", "memory": "128Mi"}
    return orjson.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"pod-{index:05d}", "labels": {"bench": "scheduler"}},
            "spec": {
                "schedulerName": SCHEDULER,
                "containers": [
                    {"name": "c", "image": "busybox", "resources": {"requests": requests}}
                ],
            },
        }
    )


async def _post_all(server: Server, path: str, bodies: list[bytes]) -> None:
    async with server.session() as session:
        semaphore = asyncio.Semaphore(32)

        async def one(body: bytes) -> None:
            async with semaphore, session.post(path, data=body) as response:
                if response.status not in (200, 201, 409):
                    raise RuntimeError(f"POST {path}: {response.status} {await response.text()}")

        await asyncio.gather(*(one(body) for body in bodies))


async def _request(server: Server, method: str, path: str, body: object) -> None:
    async with (
        server.session() as session,
        session.request(method, path, data=orjson.dumps(body)) as response,
    ):
        if response.status >= 400 and response.status != 409:
            raise RuntimeError(f"{method} {path}: {response.status} {await response.text()}")


async def _watch_bound(server: Server, version: str, bound_at: list[float]) -> None:
    path = (
        f"/api/v1/namespaces/{NAMESPACE}/pods?watch=1&resourceVersion={version}"
        "&labelSelector=bench%3Dscheduler"
    )
    seen: set[str] = set()
    async with server.session() as session, session.get(path, timeout=None) as response:
        async for line in response.content:
            pod = orjson.loads(line)["object"]
            name = pod["metadata"]["name"]
            if name not in seen and pod["spec"].get("nodeName"):
                seen.add(name)
                bound_at.append(time.perf_counter())
                if len(seen) >= PODS:
                    return


async def _pods_version(server: Server) -> str:
    async with (
        server.session() as session,
        session.get(f"/api/v1/namespaces/{NAMESPACE}/pods?limit=1") as response,
    ):
        return str((await response.json())["metadata"]["resourceVersion"])


async def _cordon_real_node(server: Server, name: str = "bench") -> None:
    """Mark the agent's Node unschedulable, once the agent has registered it."""
    body = orjson.dumps({"spec": {"unschedulable": True}})
    headers = {"Content-Type": "application/merge-patch+json"}
    async with server.session() as session:
        for _ in range(300):
            async with session.patch(f"/api/v1/nodes/{name}", data=body, headers=headers) as r:
                if r.status == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"node {name} did not register")


async def throughput(server: Server) -> list[Row]:
    await _request(server, "POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
    await _cordon_real_node(server)
    await _post_all(server, "/api/v1/nodes", [_node(i) for i in range(NODES)])
    pods = f"/api/v1/namespaces/{NAMESPACE}/pods"
    await _post_all(server, pods, [_pod(i) for i in range(PODS)])
    bound_at: list[float] = []
    watcher = asyncio.ensure_future(_watch_bound(server, await _pods_version(server), bound_at))
    command = [sys.executable, "-m", "bench.scheduler", str(server.state_dir / "kubeconfig")]
    apiserver = server.apiserver_pid()
    api_before = _cpu_seconds(apiserver)
    child = subprocess.Popen(command)
    try:
        await asyncio.wait_for(watcher, 600)
        scheduler_cpu = _cpu_seconds(child.pid)
        api_cpu = _cpu_seconds(apiserver) - api_before
    finally:
        child.terminate()
        child.wait(30)
    elapsed = bound_at[-1] - bound_at[0]
    rate = (len(bound_at) - 1) / elapsed
    per_second: dict[int, int] = {}
    for moment in bound_at:
        second = int(moment - bound_at[0])
        per_second[second] = per_second.get(second, 0) + 1
    full_seconds = [float(n) for s, n in per_second.items() if s < int(elapsed)]
    recorded = await _scheduled_events(server)
    median = percentile(full_seconds, 50) if full_seconds else rate
    name = f"scheduler ({PODS:,} pods, {NODES:,} nodes)"
    return [
        Row(f"{name}, average", rate, "pods/s", ">= 1,000", rate >= 1000),
        Row(f"{name}, median second", median, "pods/s", "-", True),
        Row(f"{name}, all bound after", elapsed, "s", "-", True),
        Row("scheduler CPU per pod", scheduler_cpu / PODS * 1000, "ms", "-", True),
        Row("API server CPU per pod scheduled", api_cpu / PODS * 1000, "ms", "-", True),
        Row("Scheduled Events recorded (the rest dropped)", recorded, "events", "-", True),
    ]


async def _scheduled_events(server: Server) -> int:
    """How many `Scheduled` Events reached the API server: the scheduler's recorder drops
    what does not fit its queue, as client-go's does, rather than slow the scheduling."""
    async with (
        server.session() as session,
        session.get(f"/api/v1/namespaces/{NAMESPACE}/events") as response,
    ):
        items = (await response.json())["items"]
    return sum(1 for event in items if event.get("reason") == "Scheduled")


def _cpu_seconds(pid: int | None) -> float:
    """User and system CPU time of a process so far."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def decisions() -> list[Row]:
    """The scheduler's own decisions, with no API: the same cache and `choose` over the same
    nodes and pods, each pod assumed onto the node chosen before the next is placed."""
    from unistack.kube.scheduler.cache import SchedulerCache
    from unistack.kube.scheduler.nodeinfo import PodQuery
    from unistack.kube.scheduler.scheduler import Bind, choose

    cache = SchedulerCache()
    for i in range(NODES):
        cache.set_node(orjson.loads(_node(i)))
    pods = [
        orjson.loads(_pod(i)) | {"metadata": {"name": f"p{i}", "namespace": "b"}}
        for i in range(PODS)
    ]
    start = 0
    began = time.perf_counter()
    for pod in pods:
        wanted = PodQuery(pod)
        decision, looked = choose(wanted, cache.nodes, start, cache.affinity_pods > 0)
        start = (start + looked) % NODES
        assert isinstance(decision, Bind)
        cache.assume(pod, decision.node, wanted.usage())
    rate = PODS / (time.perf_counter() - began)
    return [Row(f"scheduler decisions alone ({NODES:,} nodes)", rate, "pods/s", "-", True)]


def main(kubeconfig_path: str) -> None:
    """The scheduler under test, in its own process (run by `throughput`)."""
    from unistack.client import kubeconfig
    from unistack.client.api import Client
    from unistack.kube.scheduler.scheduler import Scheduler
    from unistack.runtime import events, process

    process.configure_logging()
    # More senders than the recorder's default, to measure with every Event recorded.
    senders = os.environ.get("UNISTACK_BENCH_EVENT_SENDERS")
    if senders:
        events.SENDERS = int(senders)

    async def run() -> None:
        client = Client(kubeconfig.load_transport(kubeconfig_path))
        try:
            await process.run_until_signalled(Scheduler(client, scheduler_name=SCHEDULER).run())
        finally:
            await client.close()

    asyncio.run(run())


if __name__ == "__main__":
    main(sys.argv[1])
