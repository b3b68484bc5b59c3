"""Pod startup, CPU per pod and agent memory on the node agent's real runtime (runc, CNI).

Startup is measured as Kubernetes' pod startup SLI is: from the create request to the moment
a watch sees the pod Ready, with the image already present (one warm-up pod pulls it first).
Two runs of `COUNT` pods each: a *burst* (created 10 at a time, so the figure is mostly
queueing) and a *paced* one (created at `PACED_RATE` per second, as the SLO is measured).

CPU per pod is the agent's own CPU plus that of its reaped children (the CNI plugin, `ip`,
`nft`, runc and, once they exit, the containers: runc's init process becomes the container's
process), read from `/proc/<agent>/stat` before and after; the API server's is read the same
way. It is reported for starting the burst (until all are Ready) and for deleting it (until
all are gone; this part also holds the containers' own CPU, reaped as they are killed). CPU is
what this benchmark tracks: wall-clock times depend on whatever else the machine runs.

The agent's RSS is read before and with the burst running; the difference over the count is
the per-pod overhead. Needs root and runc; without them it reports nothing.
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
PACED_RATE = 5.0  # pods created per second in the paced run
NAMESPACE = "default"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"


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


def cpu_seconds(pid: int | None) -> tuple[float, float]:
    """(utime + stime, cutime + cstime) of `pid`: fields 14-15 and 16-17 of /proc/<pid>/stat,
    its own CPU and that of the children it has reaped."""
    if pid is None:
        return 0.0, 0.0
    stat = Path(f"/proc/{pid}/stat").read_text()
    ticks = [int(v) for v in stat[stat.rindex(")") + 2 :].split()[11:15]]  # after "(comm)"
    hz = os.sysconf("SC_CLK_TCK")
    return (ticks[0] + ticks[1]) / hz, (ticks[2] + ticks[3]) / hz


async def _watch(
    server: Server, seen: dict[str, float], want: int, prefix: str, deleted: bool = False
) -> None:
    """Record in `seen` when each pod named `prefix...` is Ready (or, with `deleted`, gone)."""
    path = f"{PODS}?watch=1&labelSelector=bench%3Dstartup"
    async with server.session() as session, session.get(path, timeout=None) as response:
        async for line in response.content:
            event = orjson.loads(line)
            pod = event["object"]
            name = pod["metadata"]["name"]
            if not name.startswith(prefix) or name in seen:
                continue
            if (event["type"] == "DELETED") if deleted else _ready(pod):
                seen[name] = time.perf_counter()
                if len(seen) >= want:
                    return


async def _create(
    server: Server, names: list[str], sent: dict[str, float], rate: float | None = None
) -> None:
    """Create the pods, 10 requests at a time, or one every 1/`rate` seconds."""
    async with server.session() as session:
        semaphore = asyncio.Semaphore(10)

        async def one(name: str, delay: float) -> None:
            await asyncio.sleep(delay)
            async with semaphore:
                sent[name] = time.perf_counter()
                async with session.post(PODS, data=_pod(name)) as r:
                    assert r.status == 201, await r.text()

        delays = [i / rate if rate else 0.0 for i in range(len(names))]
        await asyncio.gather(*(one(n, d) for n, d in zip(names, delays, strict=True)))


async def _delete(server: Server, names: list[str]) -> list[str]:
    """Delete the pods; their uids."""
    uids = []
    async with server.session() as session:
        for name in names:
            async with session.delete(f"{PODS}/{name}") as r:
                assert r.status in (200, 202), await r.text()
                uids.append(orjson.loads(await r.read())["metadata"]["uid"])
    return uids


async def _cleaned_up(uids: list[str], timeout: float = 300) -> None:
    """Wait until the agent has removed the pods' network namespaces (its last step but the
    final delete, which a pod deleted with grace 0 does not wait for)."""
    deadline = time.monotonic() + timeout
    while any(os.path.exists(f"/run/netns/unistack-{uid}") for uid in uids):
        assert time.monotonic() < deadline, "pods were not cleaned up"
        await asyncio.sleep(0.1)


async def _run(
    server: Server, prefix: str, rate: float | None
) -> tuple[list[float], float, dict[str, float]]:
    """Create `COUNT` pods and wait until all are Ready: (sorted latencies, elapsed, cpu)."""
    names = [f"{prefix}{i}" for i in range(COUNT)]
    sent: dict[str, float] = {}
    ready_at: dict[str, float] = {}
    watcher = asyncio.ensure_future(_watch(server, ready_at, COUNT, prefix))
    await asyncio.sleep(0.2)
    cpu = _CpuMeter(server)
    began = time.perf_counter()
    await _create(server, names, sent, rate)
    await asyncio.wait_for(watcher, 300)
    elapsed = time.perf_counter() - began
    return sorted(ready_at[n] - sent[n] for n in names), elapsed, cpu.per_pod()


async def _delete_all(server: Server, prefix: str) -> dict[str, float]:
    """Delete the `COUNT` pods of `prefix`, wait until they and their sandboxes are gone;
    the CPU per pod."""
    names = [f"{prefix}{i}" for i in range(COUNT)]
    gone: dict[str, float] = {}
    watcher = asyncio.ensure_future(_watch(server, gone, COUNT, prefix, deleted=True))
    await asyncio.sleep(0.2)
    cpu = _CpuMeter(server)
    uids = await _delete(server, names)
    await asyncio.wait_for(watcher, 300)
    await _cleaned_up(uids)
    return cpu.per_pod()


class _CpuMeter:
    """CPU seconds of the agent (own and children's) and the API server since construction,
    per pod of a run."""

    def __init__(self, server: Server) -> None:
        self.agent = server.service_pid(b"agent")
        self.apiserver = server.apiserver_pid()
        self.start = self._now()

    def _now(self) -> dict[str, float]:
        own, children = cpu_seconds(self.agent)
        return {"agent": own, "children": children, "apiserver": sum(cpu_seconds(self.apiserver))}

    def per_pod(self) -> dict[str, float]:
        return {name: (value - self.start[name]) / COUNT for name, value in self._now().items()}


def _percentile(latencies: list[float], p: float) -> float:
    return latencies[min(len(latencies) - 1, int(len(latencies) * p))]


def _cpu_rows(what: str, cpu: dict[str, float]) -> list[Row]:
    agent = (cpu["agent"] + cpu["children"]) * 1000
    return [
        Row(f"{what}: agent + children CPU per pod", agent, "ms", "-", True),
        Row(f"{what}: agent's own CPU per pod", cpu["agent"] * 1000, "ms", "-", True),
        Row(f"{what}: agent's children's CPU per pod", cpu["children"] * 1000, "ms", "-", True),
        Row(f"{what}: API server CPU per pod", cpu["apiserver"] * 1000, "ms", "-", True),
    ]


async def startup(server: Server) -> list[Row]:
    if os.geteuid() != 0 or shutil.which("runc") is None:
        return []
    warm: dict[str, float] = {}
    watcher = asyncio.ensure_future(_watch(server, warm, 1, "warmup"))
    await _create(server, ["warmup"], {})
    await asyncio.wait_for(watcher, 120)
    agent = server.service_pid(b"agent")
    before = _rss(agent)
    burst, elapsed, start_cpu = await _run(server, "start-", None)
    after = _rss(agent)
    delete_cpu = await _delete_all(server, "start-")
    paced, _, _ = await _run(server, "paced-", PACED_RATE)
    await _delete_all(server, "paced-")
    p99 = _percentile(burst, 0.99)
    paced_p99 = _percentile(paced, 0.99)
    return [
        Row(
            f"pod startup p50 ({COUNT} pods, 10 at a time)",
            _percentile(burst, 0.5) * 1000,
            "ms",
            "-",
            True,
        ),
        Row(f"pod startup p99 ({COUNT} pods, 10 at a time)", p99 * 1000, "ms", "-", True),
        Row(f"{COUNT} pods Ready after", elapsed, "s", "-", True),
        *_cpu_rows("start", start_cpu),
        *_cpu_rows("delete", delete_cpu),
        Row(
            f"pod startup p50 ({COUNT} pods at {PACED_RATE:g}/s)",
            _percentile(paced, 0.5) * 1000,
            "ms",
            "-",
            True,
        ),
        Row(
            f"pod startup p99 ({COUNT} pods at {PACED_RATE:g}/s)",
            paced_p99 * 1000,
            "ms",
            "<= 1000",
            paced_p99 <= 1.0,
        ),
        Row(f"agent RSS with {COUNT + 1} pods", after, "MiB", "-", True),
        Row("agent RSS per pod", (after - before) / COUNT, "MiB", "-", True),
    ]
