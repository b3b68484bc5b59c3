"""Pod startup and agent memory on the node agent's real runtime (runc, CNI, overlayfs).

Startup is measured as Kubernetes' pod startup SLI is: from the create request to the moment
a watch sees the pod Ready, for `COUNT` pods created 10 at a time, with the image already
present (one warm-up pod pulls it first). The agent's RSS is read before and with the pods
running; the difference over the count is the per-pod overhead. Needs root and runc; without
them it reports nothing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import orjson

from bench.apiserver import Row
from bench.harness import Server

COUNT = 100
NAMESPACE = "default"


def _pod(name: str) -> bytes:
    return orjson.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"bench": "startup"}},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}],
            },
        }
    )


def _ready(pod: dict) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _rss(pid: int | None) -> float:
    if pid is None:
        return 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _watch_ready(
    server: Server, ready_at: dict[str, float], want: int, prefix: str = ""
) -> None:
    path = f"/api/v1/namespaces/{NAMESPACE}/pods?watch=1&labelSelector=bench%3Dstartup"
    async with server.session() as session, session.get(path, timeout=None) as response:
        async for line in response.content:
            pod = orjson.loads(line)["object"]
            name = pod["metadata"]["name"]
            if name.startswith(prefix) and name not in ready_at and _ready(pod):
                ready_at[name] = time.perf_counter()
                if len(ready_at) >= want:
                    return


async def _create(server: Server, names: list[str], sent: dict[str, float]) -> None:
    async with server.session() as session:
        semaphore = asyncio.Semaphore(10)

        async def one(name: str) -> None:
            async with semaphore:
                sent[name] = time.perf_counter()
                async with session.post(
                    f"/api/v1/namespaces/{NAMESPACE}/pods", data=_pod(name)
                ) as r:
                    assert r.status == 201, await r.text()

        await asyncio.gather(*(one(n) for n in names))


async def startup(server: Server) -> list[Row]:
    if os.geteuid() != 0 or shutil.which("runc") is None:
        return []
    warm: dict[str, float] = {}
    watcher = asyncio.ensure_future(_watch_ready(server, warm, 1))
    await _create(server, ["warmup"], {})
    await asyncio.wait_for(watcher, 120)
    agent = server.service_pid(b"agent")
    before = _rss(agent)
    names = [f"start-{i}" for i in range(COUNT)]
    sent: dict[str, float] = {}
    ready_at: dict[str, float] = {}
    watcher = asyncio.ensure_future(_watch_ready(server, ready_at, COUNT, "start-"))
    await asyncio.sleep(0.2)
    began = time.perf_counter()
    await _create(server, names, sent)
    await asyncio.wait_for(watcher, 300)
    elapsed = time.perf_counter() - began
    after = _rss(agent)
    latencies = sorted(ready_at[n] - sent[n] for n in names)
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return [
        Row(f"pod startup p50 ({COUNT} pods, one node)", p50 * 1000, "ms", "-", True),
        Row(f"pod startup p99 ({COUNT} pods, one node)", p99 * 1000, "ms", "<= 1000", p99 <= 1.0),
        Row(f"{COUNT} pods Ready after", elapsed, "s", "-", True),
        Row(f"agent RSS with {COUNT + 1} pods", after, "MiB", "-", True),
        Row("agent RSS per pod", (after - before) / COUNT, "MiB", "-", True),
    ]
